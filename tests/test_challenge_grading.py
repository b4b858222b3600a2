"""Question 7 measured by the grader: by checkpoint (safe loading, clear mismatches)
and by retraining the student's model on the grader's images."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import cs231n_style
import nbformat
import pytest
import torch
import torch.nn as nn

from grader.checkpoint import inspect_checkpoint
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
    from grader.checks.challenge import wilson_interval

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


@pytest.mark.skipif(not TYPICAL_10_EPOCHS.exists(), reason="fixture checkpoint missing")
def test_ten_epochs_of_the_typical_student_model_pass(tmp_path, data_loader):
    result = grade_q7(submission(tmp_path, checkpoint=TYPICAL_10_EPOCHS.read_bytes()), data_loader)
    accuracy = check(result, "validation_accuracy")
    assert accuracy.status == "passed", accuracy.message
    assert result.challenge["mode"] == "checkpoint"
    lo, hi = result.challenge["val_ci"]
    assert lo < result.challenge["val_accuracy"] < hi
    assert 0.6 < result.challenge["test_accuracy"] < 0.9
    assert result.score == result.max_score, [c.message for c in result.checks if c.status != "passed"]


def test_a_model_at_chance_fails_with_its_measured_accuracy(tmp_path, data_loader):
    torch.manual_seed(0)
    result = grade_q7(submission(tmp_path, checkpoint=state_bytes(typical_model().state_dict())), data_loader)
    accuracy = check(result, "validation_accuracy")
    assert accuracy.status == "failed"
    assert 0.05 < result.challenge["val_accuracy"] < 0.2
    assert "accuracy 9" in accuracy.message or "accuracy 1" in accuracy.message
    assert "on the test set" in accuracy.message and "%" in accuracy.message


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
