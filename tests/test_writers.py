"""The output writers (writers.py): every registered writer writes its file from the
results model, and one that fails is reported without costing the others' files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_report import sample_class

import grader.report
from grader.batch import grade_batch
from grader.export import FORMATS
from grader.writers import GRADEBOOKS, WRITERS, Batch, selected, write_all


def expected_files(out: Path, folders: list[str], writers) -> list[Path]:
    return [
        out / folder / w.name if w.per_submission else out / w.name
        for w in writers
        for folder in (folders if w.per_submission else [None])
    ]


def test_every_registered_writer_writes_its_file(tmp_path):
    results, folders = sample_class()
    paths, problems = write_all(WRITERS, Batch(results, folders), tmp_path)
    assert problems == []
    for path in expected_files(tmp_path, folders, WRITERS):
        assert path in paths and path.stat().st_size > 0, path
    # Each file holds what the results say, not a placeholder.
    carol = json.loads((tmp_path / "carol" / "results.json").read_text())
    assert carol["score"] == results[0].score and len(carol["tests"]) == len(results[0].checks)
    rows = list(csv.DictReader((tmp_path / "gradebook.csv").open()))
    assert [r["submission"] for r in rows] == folders
    assert json.loads((tmp_path / "summary.json").read_text())["submissions"] == len(results)
    index = (tmp_path / "index.html").read_text()
    assert all(f'href="{f}/report.html"' in index for f in folders)
    assert (tmp_path / "erin" / "report-student.html").exists()


def test_the_lms_gradebooks_are_writers_too(tmp_path):
    assert set(GRADEBOOKS) == set(FORMATS)
    results, folders = sample_class()
    paths, problems = write_all(list(GRADEBOOKS.values()), Batch(results, folders), tmp_path)
    assert problems == [] and sorted(p.name for p in paths) == ["canvas.csv", "gradescope.csv", "moodle.csv"]
    assert "carol" in (tmp_path / "canvas.csv").read_text()


def test_writers_are_selected_by_kind_and_html():
    names = lambda ws: [w.name for w in ws]  # noqa: E731
    assert names(selected(per_submission=True)) == ["results.json", "report.html"]
    assert names(selected(per_submission=True, html=False)) == ["results.json"]
    assert names(selected(per_submission=False)) == ["gradebook.csv", "summary.json", "index.html"]
    assert names(selected(per_submission=False, html=False)) == ["gradebook.csv", "summary.json"]


class Broken:
    name = "broken.txt"
    per_submission = False

    def write(self, batch: Batch, out: Path) -> list[Path]:
        raise RuntimeError("disk full")


def test_a_failing_writer_is_reported_and_the_others_still_write(tmp_path):
    results, folders = sample_class()
    writers = [*WRITERS[:2], Broken(), *WRITERS[2:]]
    paths, problems = write_all(writers, Batch(results, folders), tmp_path)
    assert problems == ["broken.txt could not be written: RuntimeError: disk full"]
    for path in expected_files(tmp_path, folders, WRITERS):
        assert path in paths and path.exists(), path
    assert not (tmp_path / "broken.txt").exists()


def test_a_batch_keeps_every_other_output_when_one_writer_fails(tmp_path, monkeypatch):
    """Through the whole batch: the HTML reports cannot be written; results.json, the
    gradebook and the class page still are, and the failure is in the result's notes
    and among the warnings."""

    def fail(result, folder):
        raise OSError("read-only folder")

    monkeypatch.setattr(grader.report, "write_submission_reports", fail)
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "alice.py").write_text("raise SystemExit(3)\n")
    out, warnings = tmp_path / "out", []
    (result,) = grade_batch(
        submissions=folder,
        out=out,
        require_data=False,
        questions=["Q1"],
        progress=False,
        similarity=False,
        warn=warnings.append,
    )
    problem = "report.html could not be written: OSError: read-only folder"
    assert problem in result.notes
    assert warnings == [f"alice: {problem}"]
    assert json.loads((out / "alice" / "results.json").read_text())["tests"]
    for name in ("gradebook.csv", "summary.json", "index.html"):
        assert (out / name).exists(), name
    assert not (out / "alice" / "report.html").exists()


@pytest.mark.parametrize("reports", [True, False])
def test_no_reports_leaves_out_only_the_html(tmp_path, reports):
    results, folders = sample_class()
    paths, _ = write_all(selected(per_submission=False, html=reports), Batch(results, folders), tmp_path)
    assert (tmp_path / "index.html").exists() == reports
    assert (tmp_path / "gradebook.csv") in paths
