"""A lone notebook or module and the checkpoint saved beside it are one submission."""

from __future__ import annotations

import pytest

from grader.submission import _companions, checkpoint_beside, content_hash, discover


def touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(name.encode())


@pytest.mark.parametrize("checkpoint", ["best_model.pt", "best_model.pth", "model.safetensors", "hw.pt"])
def test_a_lone_notebook_takes_the_checkpoint_beside_it(tmp_path, checkpoint):
    touch(tmp_path, "hw.ipynb", checkpoint, "notes.txt")
    assert discover(tmp_path) == [tmp_path / "hw.ipynb"]  # one submission, not two
    assert checkpoint_beside(tmp_path / "hw.ipynb") == tmp_path / checkpoint
    files, _ = _companions(tmp_path / "hw.ipynb")
    assert list(files.values()) == [checkpoint.encode()]
    assert next(iter(files)).startswith("best_model.")


def test_the_checkpoint_changes_the_content_hash(tmp_path):
    touch(tmp_path, "hw.py")
    alone = content_hash(tmp_path / "hw.py")
    touch(tmp_path, "best_model.pt")
    assert content_hash(tmp_path / "hw.py") != alone


def test_files_sharing_a_student_prefix_are_paired(tmp_path):
    touch(
        tmp_path,
        "smithjohn_12345_67890_hw.ipynb",
        "smithjohn_12345_67891_best_model.pt",
        "doejane_late_23456_67900_cifar.ipynb",
        "doejane_late_23456_67901_weights.pth",
        "leeann_34567_67910_hw.py",
    )
    assert checkpoint_beside(tmp_path / "smithjohn_12345_67890_hw.ipynb").name == "smithjohn_12345_67891_best_model.pt"
    assert checkpoint_beside(tmp_path / "doejane_late_23456_67900_cifar.ipynb").name.startswith("doejane_late_23456")
    assert checkpoint_beside(tmp_path / "leeann_34567_67910_hw.py") is None  # no checkpoint of hers
    assert len(discover(tmp_path)) == 3


def test_an_ambiguous_checkpoint_is_left_alone(tmp_path):
    touch(tmp_path, "alice.ipynb", "bob.ipynb", "best_model.pt")
    assert checkpoint_beside(tmp_path / "alice.ipynb") is None
    assert checkpoint_beside(tmp_path / "bob.ipynb") is None
    touch(tmp_path, "alice_best_model.pt")
    assert checkpoint_beside(tmp_path / "alice.ipynb").name == "alice_best_model.pt"
    touch(tmp_path, "solo.ipynb")
    other = tmp_path / "other"
    other.mkdir()
    touch(other, "hw.ipynb", "a.pt", "b.pt")  # two checkpoints for one notebook: which?
    assert checkpoint_beside(other / "hw.ipynb") is None
