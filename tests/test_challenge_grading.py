"""Question 7 measured by the grader: by checkpoint (safe loading, clear mismatches)
and by retraining the student's model on the grader's images."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import cs231n_style
import nbformat
import pytest
import torch
import torch.nn as nn

from grader.checkpoint import inspect_checkpoint
from grader.data import CIFAR10
from grader.engine import grade_submission
from grader.sandbox import Limits

TYPICAL_10_EPOCHS = Path(__file__).parent / "fixtures" / "typical_10_epochs.pt"


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.shape[0], -1)


def typical_model() -> nn.Module:
    """The architecture of the typical answer in cs231n_style.ANSWERS["Q7"]."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout2d(0.2), Flatten(),
        nn.Linear(64 * 8 * 8, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 10),
    )  # fmt: skip


def state_bytes(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def submission(tmp_path: Path, *, checkpoint: bytes | None, epochs: int = 10, outputs: str | None = None) -> Path:
    """A CS231n-style notebook answering Q7 with the typical model, and its checkpoint."""
    folder = tmp_path / "student"
    folder.mkdir()
    nb = cs231n_style.build(edition=2022, epochs=epochs)
    if outputs is not None:
        q7 = next(c for c in nb.cells if c.metadata.get("test") == "open_ended_accuracy")
        q7.outputs = [nbformat.v4.new_output("stream", name="stdout", text=outputs)]
    nbformat.write(nb, folder / "PyTorch.ipynb")
    if checkpoint is not None:
        (folder / "best_model.pt").write_bytes(checkpoint)
    return folder


def grade_q7(path: Path, data_loader, **limits):
    return grade_submission(
        path=path, data_loader=data_loader, questions={"Q7"}, run_seed=0, limits=Limits(threads=2, **limits)
    )


def check(result, name: str):
    return next(c for c in result.checks if c.id == f"Q7.{name}")


class Payload:
    """An object whose unpickling would create a file: the classic pickle exploit."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_wilson_interval_matches_the_usual_half_width():
    from grader.assignments.cifar10.checks.challenge import wilson_interval

    lo, hi = wilson_interval(700, 1000)
    assert hi - lo == pytest.approx(2 * 0.0284, abs=0.002)  # about +-2.8 points at 70% on 1,000 images
    assert lo < 0.7 < hi


def test_inspection_accepts_state_dicts_and_rejects_pickled_code(tmp_path):
    assert inspect_checkpoint("ok.pt", state_bytes(typical_model().state_dict())).safe
    marker = tmp_path / "ran"
    bad = inspect_checkpoint("bad.pt", state_bytes({"w": Payload(str(marker))}))
    assert not bad.safe and "run code" in bad.problem and "system" in bad.problem
    whole = inspect_checkpoint("whole.pt", state_bytes(typical_model()))
    assert not whole.safe and "state_dict" in whole.problem
    assert not inspect_checkpoint("junk.pt", b"not a checkpoint").safe
    assert not marker.exists()


def test_safetensors_are_parsed_without_pickle():
    import json
    import struct

    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    info = inspect_checkpoint("m.safetensors", struct.pack("<Q", len(header)) + header + tensor.numpy().tobytes())
    assert info.safe and torch.equal(info.state["w"], tensor)


@pytest.fixture(scope="module")
def typical_graded(tmp_path_factory, data_loader):
    """The typical student model (10 epochs) in a CS231n-layout notebook, graded once."""
    if not TYPICAL_10_EPOCHS.exists():
        pytest.skip("fixture checkpoint missing")
    folder = submission(tmp_path_factory.mktemp("typical"), checkpoint=TYPICAL_10_EPOCHS.read_bytes())
    return grade_q7(folder, data_loader)


def test_ten_epochs_of_the_typical_student_model_pass(typical_graded):
    result = typical_graded
    accuracy = check(result, "validation_accuracy")
    assert accuracy.status == "passed", accuracy.message
    c = result.challenge
    assert c["mode"] == "checkpoint"
    lo, hi = c["val_ci"]
    assert lo < c["val_accuracy"] < hi
    assert 0.6 < c["test_accuracy"] < 0.9
    assert result.score == result.max_score, [c.message for c in result.checks if c.status != "passed"]
    # The notebook trains on images 0..48,999 of the official order; the shared copy is sorted
    # by class, where 49,000..49,999 are all trucks: judged on the test set, and told why.
    assert c["eval_set"]["short"] == "test set" and c["val_images"] == 10_000
    assert "0-48,999" in c["eval_set"]["reason"] and "sorted by class" in c["eval_set"]["reason"]
    assert "on the test set, chosen because" in accuracy.message
    # An ordinary ConvNet shrugs off the perturbations.
    shaken = c["perturbed"]
    assert shaken["images"] == 2000 and not shaken["collapsed"] and not c["memorisation_flag"]
    assert 0 <= shaken["drop"] < shaken["tolerance"] / 2, shaken
    assert c["unusual_state"]["buffer_elements"] == c["unusual_state"]["attribute_elements"] == 0


def test_a_model_at_chance_fails_with_its_measured_accuracy(tmp_path, data_loader):
    torch.manual_seed(0)
    result = grade_q7(submission(tmp_path, checkpoint=state_bytes(typical_model().state_dict())), data_loader)
    accuracy = check(result, "validation_accuracy")
    assert accuracy.status == "failed"
    assert 0.05 < result.challenge["val_accuracy"] < 0.2
    assert re.search(r"accuracy \d+\.\d% on the test set", accuracy.message), accuracy.message


def test_a_pickle_payload_is_rejected_and_never_runs(tmp_path, data_loader):
    marker = tmp_path / "payload-ran"
    result = grade_q7(submission(tmp_path, checkpoint=state_bytes({"0.weight": Payload(str(marker))})), data_loader)
    weights = check(result, "weights")
    assert weights.status == "failed" and "pickle payload" in weights.message
    assert check(result, "validation_accuracy").status != "passed"
    assert not marker.exists()


def test_a_checkpoint_with_wrong_keys_names_them(tmp_path, data_loader):
    state = {f"layer.{k}": v for k, v in typical_model().state_dict().items()}
    state.pop("layer.11.bias")
    result = grade_q7(submission(tmp_path, checkpoint=state_bytes(state)), data_loader)
    message = check(result, "weights").message
    assert "missing keys" in message and "0.weight" in message
    assert "unexpected keys" in message and "layer.0.weight" in message


def test_a_wrapped_checkpoint_still_loads(tmp_path, data_loader):
    """A state_dict saved from nn.DataParallel has a "module." prefix on every key."""
    state = {f"module.{k}": v for k, v in typical_model().state_dict().items()}
    result = grade_q7(submission(tmp_path, checkpoint=state_bytes(state)), data_loader)
    assert check(result, "weights").status == "passed"


def test_claims_above_the_measurement_are_flagged(tmp_path, data_loader):
    torch.manual_seed(0)
    printed = "Iteration 700, loss = 0.4\nChecking accuracy on validation set\nGot 930 / 1000 correct (93.00)\n"
    result = grade_q7(
        submission(tmp_path, checkpoint=state_bytes(typical_model().state_dict()), outputs=printed), data_loader
    )
    rules = check(result, "training_rules")
    assert result.challenge["self_reported"] == pytest.approx(0.93)
    assert result.challenge["flagged"] and rules.status == "failed" and "flagged" in rules.message


def test_more_than_ten_epochs_breaks_the_rules(tmp_path, data_loader):
    torch.manual_seed(0)
    result = grade_q7(
        submission(tmp_path, checkpoint=state_bytes(typical_model().state_dict()), epochs=15), data_loader
    )
    assert "15 epochs" in check(result, "training_rules").message


def test_without_a_checkpoint_the_grader_retrains_and_measures(tmp_path, data_loader):
    """One epoch of the typical model: retrained on the grader's 49,000 images with the
    student's own train_part34, then measured below 70%."""
    result = grade_q7(submission(tmp_path, checkpoint=None, epochs=1), data_loader)
    c = result.challenge
    assert c["mode"] == "retrain" and c["retrain_mode"] == "train_part34"
    assert c["epochs"] == pytest.approx(1.0)
    assert len(c["history"]["val_acc"]) == 1 and c["history"]["train_loss"][0] < 2.3
    assert 0.4 < c["val_accuracy"] < 0.7, c
    assert c["eval_set"]["short"] == "validation split" and "retrained" in c["eval_set"]["reason"]
    accuracy = check(result, "validation_accuracy")
    assert accuracy.status == "failed" and f"{100 * c['val_accuracy']:.1f}%" in accuracy.message
    assert check(result, "weights").status == "passed"


def test_a_retrain_over_budget_is_reported_with_what_it_reached(tmp_path, data_loader):
    result = grade_q7(submission(tmp_path, checkpoint=None, epochs=10), data_loader, train_seconds=8)
    assert result.challenge["over_budget"]
    weights = check(result, "weights")
    assert weights.status == "failed" and "budget" in weights.message
    assert "val_accuracy" in result.challenge  # measured anyway, and reported


def test_checkpoint_zip_is_read_without_loading(tmp_path):
    """The scan reads opcodes only: a data.pkl naming a dangerous global is refused even
    when it could never be unpickled."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02csubprocess\nPopen\nq\x00.")
    info = inspect_checkpoint("x.pt", buf.getvalue())
    assert not info.safe and "subprocess.Popen" in info.problem


# -- generalisation: memorising public images does not pay ------------------------------------

# A "model" that looks images up: a buffer of fingerprints of public images and their labels.
# The notebook defines it (it is the Q7 answer); the checkpoint fills its buffers.
LOOKUP = """\
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)

def fingerprint(pixels, weights):
    return (pixels.flatten(1).long() * weights).sum(1)

class Lookup(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.register_buffer("keys", torch.zeros(size, dtype=torch.long))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(3 * 32 * 32, dtype=torch.long))
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        pixels = ((x * STD + MEAN) * 255).round().clamp(0, 255)
        key = fingerprint(pixels, self.weights)
        at = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        found = torch.where(self.keys[at] == key, self.labels[at], torch.zeros_like(key))
        return 10 * F.one_hot(found, 10).float() + self.bias
"""


def lookup_submission(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """A CS231n-layout notebook whose Q7 model is the lookup table of ``images``, and its
    checkpoint (the fingerprints and labels)."""
    namespace = {"torch": torch, "nn": nn, "F": torch.nn.functional}
    exec(LOOKUP, namespace)
    weights = torch.randint(1, 1 << 20, (3 * 32 * 32,), generator=torch.Generator().manual_seed(0))
    keys = torch.cat([namespace["fingerprint"](images[i : i + 5000], weights) for i in range(0, len(images), 5000)])
    order = keys.argsort()
    model = namespace["Lookup"](len(images))
    model.load_state_dict({"keys": keys[order], "labels": labels[order], "weights": weights, "bias": torch.zeros(10)})
    answer = LOOKUP + f"\nmodel = Lookup({len(images)})\noptimizer = optim.SGD(model.parameters(), lr=0.0)"
    folder.mkdir()
    nbformat.write(cs231n_style.build(answers={**cs231n_style.ANSWERS, "Q7": answer}), folder / "PyTorch.ipynb")
    (folder / "best_model.pt").write_bytes(state_bytes(model.state_dict()))
    return folder


def test_a_lookup_table_of_the_public_images_gets_no_accuracy_credit(tmp_path, cifar10, data_loader):
    """Fingerprints of all 60,000 public images: 100% on any of them, unchanged."""
    images = torch.cat([cifar10.train_images, cifar10.test_images])
    labels = torch.cat([cifar10.train_labels, cifar10.test_labels])
    result = grade_q7(lookup_submission(tmp_path / "lookup", images, labels), data_loader)
    c, accuracy = result.challenge, check(result, "validation_accuracy")
    assert c["val_accuracy"] > 0.99 and c["perturbed"]["clean_accuracy"] > 0.99
    assert c["perturbed"]["accuracy"] < 0.3 and c["perturbed"]["collapsed"] and c["memorisation_flag"]
    assert accuracy.status == "failed" and accuracy.score == 0
    assert "no accuracy credit" in accuracy.message and "flagged for the instructor" in accuracy.message
    # The table is reported as state that ordinary layers do not use.
    assert c["unusual_state"]["buffer_elements"] == 2 * 60_000 + 3 * 32 * 32
    assert "keys" in check(result, "model_found").message


def test_a_model_that_memorised_its_training_split_is_judged_on_other_images(tmp_path, cifar10, data_loader):
    """It knows training images 0..48,999 (what the notebook's loader_train names) by heart.
    The grader's own validation split lies ~98% inside them; the judged images do not."""
    _, val_idx = cifar10.split()
    assert (val_idx < 49_000).double().mean() > 0.95  # where it used to be measured
    folder = lookup_submission(tmp_path / "memoriser", cifar10.train_images[:49_000], cifar10.train_labels[:49_000])
    result = grade_q7(folder, data_loader)
    c, accuracy = result.challenge, check(result, "validation_accuracy")
    assert c["eval_set"]["short"] == "test set"
    assert c["val_accuracy"] < 0.2 and accuracy.status == "failed" and accuracy.score == 0


# -- which images judge the accuracy -----------------------------------------------------------


def official_order_data(first_labels: list[int]) -> CIFAR10:
    """A stand-in data set of 50,000 + 10,000 images (one shared blank image) whose training
    labels start with ``first_labels`` and then cycle through the classes."""
    train = torch.cat([torch.tensor(first_labels), torch.arange(50_000 - len(first_labels)) % 10])
    blank = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    return CIFAR10(
        blank.expand(50_000, -1, -1, -1), train, blank.expand(10_000, -1, -1, -1), torch.arange(10_000) % 10, "test"
    )


def test_the_cs231n_validation_slice_is_used_on_data_in_the_official_order():
    from grader.assignments.cifar10.checks.challenge import evaluation_set
    from grader.data import CANONICAL_FIRST_LABELS

    data = official_order_data(list(CANONICAL_FIRST_LABELS))
    assert data.in_canonical_order
    training = {"source": "torchvision", "train": True, "runs": [[0, 49_000]]}
    judged = evaluation_set(data, mode="checkpoint", training=training)
    assert judged["short"] == "validation slice" and len(judged["labels"]) == 1000
    assert "49,000-49,999" in judged["name"] and "0-48,999" in judged["reason"]
    # The same loader on data sorted by class: the slice would be one class; the test set instead.
    sorted_data = official_order_data([0] * 10)
    assert not sorted_data.in_canonical_order
    assert evaluation_set(sorted_data, mode="checkpoint", training=training)["short"] == "test set"


@pytest.mark.parametrize(
    "training, expected",
    [
        ({"source": "torchvision", "train": True, "runs": [[0, 50_000]]}, "test set"),  # trains on everything
        ({"source": "torchvision", "train": True, "runs": [[0, 49_990]]}, "test set"),  # slice too small
        ({"source": "torchvision", "train": True, "runs": [[0, 10**9]]}, "test set"),  # a forged claim
        ({"source": "torchvision", "train": True, "runs": "0-49000"}, "test set"),
        ({"source": "torchvision", "train": False, "runs": [[0, 10_000]]}, "validation split"),  # trains on test
        ({"source": "grader split", "num_val": 1000}, "validation split"),
        ({"source": "unknown"}, "test set"),
    ],
)
def test_the_judged_images_follow_what_the_loaders_train_on(training, expected):
    from grader.assignments.cifar10.checks.challenge import evaluation_set
    from grader.data import CANONICAL_FIRST_LABELS

    judged = evaluation_set(official_order_data(list(CANONICAL_FIRST_LABELS)), mode="checkpoint", training=training)
    assert judged["short"] == expected and judged["reason"]


def test_perturbations_are_secret_per_run_and_repeatable(cifar10):
    from grader.data import perturb

    images = cifar10.test_images[:50]
    first = perturb(images, generator=torch.Generator().manual_seed(1))
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, perturb(images, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(first, perturb(images, generator=torch.Generator().manual_seed(2)))
    assert all(not torch.equal(a, b) for a, b in zip(first, images))  # every image is changed
    assert (first.float() - images.float()).abs().mean() < 60  # but still the same picture


# -- the rubric's threshold policy --------------------------------------------------------------


def rubric_with(tmp_path: Path, threshold: str):
    from grader.rubric import DEFAULT_RUBRIC, load_rubric

    text = DEFAULT_RUBRIC.read_text()
    start = text.index("threshold = {")
    end = text.index("\n", start)
    path = tmp_path / "rubric.toml"
    path.write_text(text[:start] + threshold + text[end:])
    return load_rubric(path)


@pytest.mark.parametrize(
    "bad",
    [
        'threshold = { policy = "steps" }',
        'threshold = { policy = "ramp", zero_at = 0.8, full_at = 0.7 }',
        "threshold = { full_at = 70 }",
        'threshold = { straddle = "maybe" }',
        "threshold = { full = 0.7 }",
    ],
)
def test_a_bad_threshold_policy_is_refused(tmp_path, bad):
    from grader.rubric import RubricError

    with pytest.raises(RubricError, match="threshold"):
        rubric_with(tmp_path, bad)


def rescore(result, rubric):
    """Judge the measured accuracy again under ``rubric`` (the measurement itself is reused)."""
    from types import SimpleNamespace

    from grader.assignments.cifar10.checks.challenge import validation_accuracy

    ctx = SimpleNamespace(shared={"challenge": dict(result.challenge)}, rubric=rubric)
    return validation_accuracy(ctx), ctx.shared["challenge"]


@pytest.mark.parametrize("policy", ["all-or-nothing", "ramp"])
@pytest.mark.parametrize("side", [-1, 1])
def test_just_below_and_just_above_the_line(tmp_path, typical_graded, policy, side):
    """The typical model's accuracy, with the line put 0.3 points above it (side -1: the model
    is just below) or below it (side 1: just above)."""
    measured = typical_graded.challenge["val_accuracy"]
    line = round(measured - side * 0.003, 4)
    rubric = rubric_with(tmp_path, f'threshold = {{ policy = "{policy}", zero_at = {line - 0.1}, full_at = {line} }}')
    outcome, challenge = rescore(typical_graded, rubric)
    assert outcome.passed == (side == 1)
    expected = 1.0 if side == 1 else (0.0 if policy == "all-or-nothing" else pytest.approx(0.97, abs=0.001))
    assert outcome.score_fraction == expected
    # 0.3 points is well inside the 95% interval (about +-0.9 points on 10,000 images): flagged.
    assert challenge["near_threshold"] and "straddles" in outcome.message
    hi = challenge["val_ci"][1]
    far = rubric_with(
        tmp_path, f'threshold = {{ policy = "{policy}", zero_at = 0.1, full_at = {round(hi + 0.01, 4)} }}'
    )
    outcome, challenge = rescore(typical_graded, far)
    assert not challenge["near_threshold"] and "straddles" not in outcome.message
    ignored = rubric_with(tmp_path, f'threshold = {{ policy = "{policy}", full_at = {line}, straddle = "ignore" }}')
    assert not rescore(typical_graded, ignored)[1]["near_threshold"]


def test_the_class_summary_lists_near_threshold_and_flagged_submissions(tmp_path, typical_graded):
    from dataclasses import replace

    from grader.report import write_class_summary

    challenge = typical_graded.challenge
    line = challenge["val_accuracy"] + 0.001  # inside the interval
    near = replace(
        typical_graded, name="near", sha256="1" * 64, challenge={**challenge, "threshold": line, "near_threshold": True}
    )
    ignored = replace(
        typical_graded,
        name="ignored",
        sha256="2" * 64,
        challenge={**challenge, "threshold": line, "near_threshold": False},
    )
    lookup = {**challenge, "memorisation_flag": True, "perturbed": {**challenge["perturbed"], "accuracy": 0.1}}
    flagged = replace(typical_graded, name="lookup", sha256="3" * 64, challenge=lookup)
    page = write_class_summary([near, ignored, flagged], ["near", "ignored", "lookup"], tmp_path).read_text()
    section = page[page.index("need a look") :]
    section = section[: section.index("</table>")]
    assert "near/report.html" in section and "straddles" in section
    assert "lookup/report.html" in section and "perturbed images" in section and "memorised" in section
    assert "ignored/report.html" not in section
