"""The ``grade`` command: help, exit statuses, and the thin layer over the API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grader.cli import main


def grade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, timeout=600)


def test_help_explains_the_command():
    done = grade("--help")
    assert done.returncode == 0
    for phrase in (
        "--self-check",
        "--data",
        "--out",
        "--jobs",
        "results.json",
        "gradebook.csv",
        "exit status",
        "grade assign",
    ):
        assert phrase in done.stdout


def test_a_missing_folder_is_a_clear_error_with_status_2(tmp_path):
    done = grade(str(tmp_path / "nope"), "--no-data")
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_a_missing_dataset_is_a_clear_error_with_status_2(tmp_path):
    (tmp_path / "subs").mkdir()
    done = grade(str(tmp_path / "subs"), "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "--data" in done.stderr and "Traceback" not in done.stderr


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "give a folder" in capsys.readouterr().err


def test_unknown_questions_are_refused(tmp_path):
    (tmp_path / "subs").mkdir()
    with pytest.raises(SystemExit, match="unknown question"):
        main([str(tmp_path / "subs"), "--no-data", "--questions", "Q9"])


def test_a_batch_of_bad_submissions_still_exits_0(tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "broken.ipynb").write_text("{")
    done = grade(str(tmp_path / "subs"), "--no-data", "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "broken" / "results.json").exists()


def test_assign_check_reports_an_up_to_date_template():
    done = grade("assign", "--check")
    assert done.returncode == 0, done.stderr
