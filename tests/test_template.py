"""The student template: generated from the answer key (and never drifting from it), and
working when run top to bottom with nbclient on a small dataset."""

from __future__ import annotations

import subprocess
import sys

import nbclient
import nbformat
import pytest
import torch
from PIL import Image

from grader.assign import NOTEBOOK_NAME, assign, render_script, script_to_notebook
from grader.data import CLASSES
from grader.preprocess import identify_questions
from grader.submission import load_submission

TEMPLATE = f"{NOTEBOOK_NAME}.ipynb"


def test_the_committed_template_and_examples_match_what_the_answer_key_generates():
    assert assign(check=True) == [], "run `grade assign` and commit the result"


def test_every_answer_is_a_placeholder_in_the_template_and_real_code_in_the_filled_one():
    empty, filled = render_script(filled=False), render_script(filled=True)
    for q in range(1, 8):
        assert empty.count(f"# >>> Question {q}: your answer starts here") >= 1
        assert f'raise NotImplementedError("Question {q} is not answered yet' in empty
        assert f"Question {q} is not answered yet" not in filled
    assert "BEGIN SOLUTION" not in empty and "BEGIN SOLUTION" not in filled


def test_the_grader_finds_every_answer_cell_without_guessing(tmp_path):
    path = tmp_path / TEMPLATE
    path.write_text(nbformat.writes(script_to_notebook(render_script(filled=False))))
    submission = load_submission(path)
    assert submission.layout == "template" and submission.template_version
    tagged = {q for c in submission.cells for q in c.questions}
    assert tagged == {"Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7"}
    # The visible markers alone are enough (metadata lost on copy and paste, say).
    for cell in submission.cells:
        cell.metadata = {}
    assert {q for c in identify_questions(submission.cells) for q in c.questions} == tagged


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> str:
    """CIFAR-10 in the class-folder layout, 110 training and 2 test images per class:
    enough for the assignment's 100-per-class validation split."""
    root = tmp_path_factory.mktemp("small-cifar10")
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 110), ("test", 2)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                base = torch.full((32, 32, 3), 25 * c, dtype=torch.uint8)
                noise = torch.randint(0, 40, (32, 32, 3), dtype=torch.uint8, generator=gen)
                Image.fromarray((base + noise).numpy()).save(folder / f"{i:04d}.png")
    return str(root)


def run_notebook(script: str, folder, dataset: str, monkeypatch):
    monkeypatch.setenv("CIFAR10_DATA", dataset)
    monkeypatch.setenv("CIFAR10_CACHE", str(folder / "cache"))
    nb = script_to_notebook(script)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return nb


def test_the_template_runs_up_to_the_first_unanswered_question_and_names_it(tmp_path, small_dataset, monkeypatch):
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failure:
        run_notebook(render_script(filled=False), tmp_path, small_dataset, monkeypatch)
    assert "Question 1 is not answered yet" in str(failure.value)


def test_the_filled_template_runs_end_to_end_and_saves_a_weights_only_checkpoint(tmp_path, small_dataset, monkeypatch):
    nb = run_notebook(render_script(filled=True), tmp_path, small_dataset, monkeypatch)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "torch.Size([64, 10])" in outputs and "Checking accuracy on test set" in outputs
    state = torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_without_data_the_template_stops_with_the_data_layers_message(tmp_path, monkeypatch):
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failure:
        run_notebook(render_script(filled=False), tmp_path, str(tmp_path / "no-such-folder"), monkeypatch)
    assert "DataError" in str(failure.value) and "--data" in str(failure.value)


def test_the_module_form_runs_as_a_script(tmp_path, small_dataset):
    env = {"CIFAR10_DATA": small_dataset, "CIFAR10_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    empty = tmp_path / "empty.py"
    empty.write_text(render_script(filled=False))
    done = subprocess.run(
        [sys.executable, str(empty)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode != 0 and "Question 1 is not answered yet" in done.stderr
