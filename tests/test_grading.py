"""Grading whole submissions: the template's layouts, CS231n-style editions, invalid
input, determinism, and the batch's outputs (results.json, gradebook, cache)."""

from __future__ import annotations

import csv
import json

import cs231n_style
import nbformat
import pytest

from grader.assign import render_script, script_to_notebook
from grader.assignment import default_assignment
from grader.batch import BatchError, grade_batch
from grader.engine import grade_submission

Q1_TO_Q6 = {"Q1", "Q2", "Q3", "Q4", "Q5", "Q6"}


def lost(result) -> dict[str, float]:
    return {q.id: q.max_score - q.score for q in result.questions() if q.score < q.max_score}


@pytest.fixture(scope="module")
def filled_script() -> str:
    return render_script(filled=True)


@pytest.mark.parametrize("edition", [2018, 2019, 2021, 2022, 2025])
def test_cs231n_style_notebooks_get_full_marks_on_q1_to_q6(tmp_path, edition, data_loader):
    path = tmp_path / "PyTorch.ipynb"
    nbformat.write(cs231n_style.build(edition=edition), path)
    result = grade_submission(path=path, questions=Q1_TO_Q6, data_loader=data_loader, run_seed=edition)
    assert result.layout == "cs231n"
    assert not lost(result), [f"{c.id}: {c.message}" for c in result.checks if c.status != "passed"]
    if edition >= 2021:
        assert any("Google Drive mount" in n for n in result.notes)


def test_an_unanswered_cs231n_skeleton_scores_zero_without_crashing(tmp_path):
    path = tmp_path / "PyTorch.ipynb"
    nbformat.write(cs231n_style.build(answers={}, edition=2019), path)
    result = grade_submission(path=path, run_seed=0)
    assert result.status == "graded" and result.score == 0 and result.max_score == 100


def test_the_empty_template_scores_zero_and_every_cell_names_its_question(tmp_path):
    path = tmp_path / "empty.ipynb"
    path.write_text(nbformat.writes(script_to_notebook(render_script(filled=False))))
    result = grade_submission(path=path, run_seed=0)
    assert result.status == "graded" and result.score == 0 and result.max_score == 100
    errors = {r.error["message"] for r in result.cells if r.error and r.error["type"] == "NotImplementedError"}
    for q in (1, 2, 3, 5, 6, 7):  # Question 4 is the forward pass of the class Question 3 builds
        assert any(f"Question {q} is not answered" in m for m in errors), errors


def test_the_same_bytes_get_the_same_score_whatever_the_probe_seed(tmp_path, filled_script, data_loader):
    """Probe inputs change with every grading run; the verdicts must not."""
    from mutations import BUGS, apply

    bug = next(m for m in BUGS if m.name == "q2-fan-in-from-the-wrong-axis")
    path = tmp_path / "student.py"
    path.write_text(apply(bug, filled_script))
    first = grade_submission(path=path, questions=Q1_TO_Q6, data_loader=data_loader, run_seed=1)
    second = grade_submission(path=path, questions=Q1_TO_Q6, data_loader=data_loader, run_seed=2)
    assert [(c.id, c.status, c.score) for c in first.checks] == [(c.id, c.status, c.score) for c in second.checks]
    assert lost(first) == lost(second) and set(lost(first)) == {"Q2"}


def test_broken_inputs_become_graded_results_with_a_reason(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "not-json.ipynb").write_text('{"cells": [')
    (folder / "empty-file.ipynb").write_text("")
    (folder / "binary.py").write_bytes(b"\xff\xfe\x00garbage")
    (folder / "two-notebooks").mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        (folder / "two-notebooks" / name).write_text(nbformat.writes(nbformat.v4.new_notebook()))
    (folder / "nothing-inside").mkdir()
    results = grade_batch(submissions=folder, out=tmp_path / "out", require_data=False, progress=False, jobs=2)
    assert [r.status for r in results] == ["invalid"] * 5
    for r in results:
        assert r.reason and r.score == 0 and r.max_score == 100 and len(r.checks) > 20
    reasons = {r.name: r.reason for r in results}
    assert "not valid JSON" in reasons["not-json"]
    assert "several candidates" in reasons["two-notebooks"]
    assert "no .ipynb or .py" in reasons["nothing-inside"]


def test_batch_outputs_and_a_resumed_run(tmp_path, filled_script):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "alice.py").write_text(filled_script)
    (folder / "=HYPERLINK(evil).py").write_text("raise SystemExit(3)\n")
    out = tmp_path / "reports"
    first = grade_batch(submissions=folder, out=out, require_data=False, questions=["Q1"], progress=False, seed=1)
    names = {r.name for r in first}
    assert names == {"alice", "=HYPERLINK(evil)"}

    doc = json.loads((out / "alice" / "results.json").read_text())
    assert doc["score"] == doc["extra_data"]["max_score"] == 12
    assert {t["name"].split()[0] for t in doc["tests"]} == {"Q1"}
    assert all({"name", "score", "max_score", "status", "output", "visibility"} <= set(t) for t in doc["tests"])

    rows = list(csv.reader((out / "gradebook.csv").open()))
    assert rows[0][:5] == ["submission", "file", "status", "score", "max_score"] and rows[0][5:12] == list(
        default_assignment().questions
    )
    evil = next(row for row in rows if "HYPERLINK" in row[0])
    assert evil[0].startswith("'=") and evil[1].startswith("'=")  # a spreadsheet will not run it
    assert (out / "index.html").exists() and (out / "alice" / "report.html").exists()

    (folder / "bob.py").write_text(filled_script)
    second = {
        r.name: r
        for r in grade_batch(submissions=folder, out=out, require_data=False, questions=["Q1"], progress=False)
    }
    assert second["alice"].graded_at == next(r for r in first if r.name == "alice").graded_at  # from the cache
    assert second["bob"].score == 12


def test_a_missing_folder_or_dataset_stops_the_batch_with_a_reason(tmp_path):
    with pytest.raises(BatchError, match="does not exist"):
        grade_batch(submissions=tmp_path / "nope", out=tmp_path / "out", require_data=False)
    (tmp_path / "subs").mkdir()
    with pytest.raises(BatchError, match="--no-data"):
        grade_batch(submissions=tmp_path / "subs", out=tmp_path / "out", data=str(tmp_path / "no-such-data"))
