"""The adversarial corpus: each test is an attack a hostile submission makes on the real
grader (real submissions on disk, real workers, real reports), and asserts its outcome:
nothing leaks, no points are gained, the batch finishes within its limits and the other
submissions are unaffected. Attacks on the worker's own walls (network, hidden folders,
signals) live in test_sandbox.py; these are the ones that go through the grader's
trusted side."""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import reference_solution
from grader.engine import grade_submission
from grader.render import write_results_json
from grader.report import write_submission_reports
from grader.sandbox import Limits

REFERENCE_DIR = Path(reference_solution.__file__).resolve().parent
LIMITS = Limits(cell_seconds=20, submission_seconds=120, output_chars=2_000, memory_bytes=8 << 30)
SECRET = f"host-secret-{uuid.uuid4().hex}"

CORRECT_Q1 = """
import torch
import torch.nn.functional as F


def flatten(x):
    return x.reshape(x.shape[0], -1)


def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    x = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
    x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))
    return flatten(x).mm(fc_w) + fc_b
"""


def module(*cells: str) -> str:
    """A .py submission made of cells."""
    return "\n".join(f"# %%\n{textwrap.dedent(c).strip()}\n" for c in cells)


def grade(path: Path, out: Path, **kwargs):
    """Grade like the batch does, and write every output a person reads."""
    kwargs.setdefault("questions", {"Q1"})
    result = grade_submission(path=path, run_seed=7, limits=LIMITS, hide=[REFERENCE_DIR], **kwargs)
    write_results_json(result, out)
    write_submission_reports(result, out)
    return result


def outputs(out: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(out.iterdir()) if p.is_file())


# -- 1. links in a submission --------------------------------------------------------------------------


LEAK_CELL = """
import os
for name in sorted(os.listdir(".")):
    try:
        print(name, open(name, "rb").read(200))
    except OSError as exc:
        print(name, "unreadable", exc)
"""


@pytest.fixture
def host_secret(tmp_path):
    """A private file of the grader's machine (what /etc/shadow or the dataset cache is)."""
    secret = tmp_path / "host" / "shadow"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    return secret


@pytest.mark.parametrize("how", ["symlink", "hardlink", "symlinked folder"])
def test_linked_companion_files_are_refused_and_said_so(tmp_path, host_secret, how):
    """best_model.pt -> the host's secret file, labels.npy -> the dataset cache: the
    trusted side reads neither, the worker never gets them, the report says why."""
    folder = tmp_path / "subs" / "mallory"
    folder.mkdir(parents=True)
    (folder / "hw.py").write_text(module(CORRECT_Q1, LEAK_CELL))
    from grader.data import DEFAULT_CACHE_DIR

    cache = Path(os.environ.get("CIFAR10_CACHE") or DEFAULT_CACHE_DIR).expanduser()
    if how == "symlink":
        (folder / "best_model.pt").symlink_to(host_secret)
        (folder / "labels.npy").symlink_to(cache)
    elif how == "hardlink":
        os.link(host_secret, folder / "best_model.pt")
    else:
        (folder / "weights").symlink_to(host_secret.parent)
    out = tmp_path / "out"
    result = grade(folder, out)
    assert result.status == "graded", result.reason
    assert SECRET not in outputs(out)
    assert SECRET not in json.dumps(result.to_dict())
    refused = [n for n in result.notes if "refused" in n]
    assert refused, result.notes
    assert "link" in " ".join(refused)
    assert "refused" in (out / "report-student.html").read_text()
    assert result.score == result.max_score, "the rest of the submission is graded as usual"


def test_a_linked_main_file_or_submission_is_invalid_not_read(tmp_path, host_secret):
    subs = tmp_path / "subs"
    (subs / "mallory").mkdir(parents=True)
    (subs / "mallory" / "hw.py").symlink_to(host_secret)
    (subs / "eve.py").symlink_to(host_secret)
    for path in (subs / "mallory", subs / "eve.py"):
        out = tmp_path / "out" / path.name
        result = grade(path, out)
        assert result.status == "invalid"
        assert "symbolic link" in result.reason
        assert SECRET not in outputs(out)


def test_a_lone_notebooks_linked_checkpoint_is_refused(tmp_path, host_secret):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "mallory.py").write_text(module(CORRECT_Q1, LEAK_CELL))
    (subs / "mallory.pt").symlink_to(host_secret)
    out = tmp_path / "out"
    result = grade(subs / "mallory.py", out)
    assert SECRET not in outputs(out)
    assert any("mallory.pt is a symbolic link" in n for n in result.notes), result.notes


def test_a_fifo_companion_does_not_block_the_grader(tmp_path):
    folder = tmp_path / "mallory"
    folder.mkdir()
    (folder / "hw.py").write_text(module(CORRECT_Q1))
    os.mkfifo(folder / "best_model.pt")
    started = time.monotonic()
    result = grade(folder, tmp_path / "out")
    assert time.monotonic() - started < 60
    assert any("not a regular file" in n for n in result.notes), result.notes
