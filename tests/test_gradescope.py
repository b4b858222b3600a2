"""Gradescope: the built autograder.zip, run as Gradescope runs it.

The zip is unpacked into a temporary root laid out like Gradescope's (``source/``,
``submission/``, ``results/``, ``submission_metadata.json``). setup.sh's installation is
replaced by the current environment: its Python, with the grader imported from the wheel
inside the zip; setup.sh's last step (decoding CIFAR-10 into the cache) runs for real,
from a cache the session already filled. Then ``run_autograder`` grades one submission
at a time, and every results.json is checked against Gradescope's specification.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import examples_source
import pytest
from gradescope_schema import validate

from grader import gradescope
from grader.render import gradescope as gradescope_json
from grader.results import CheckResult, SubmissionResult
from grader.rubric import DEFAULT_RUBRIC
from grader.sandbox import unreadable_by_others, worker_runtime

EXAMPLES = examples_source.EXAMPLES
BASH = shutil.which("bash") or "/bin/bash"

METADATA = {
    "id": 123456,
    "created_at": "2026-11-02T10:30:00.000000-08:00",
    "assignment": {
        "due_date": "2026-11-01T23:00:00.000000-08:00",
        "late_due_date": None,
        "title": "Homework 5",
        "total_points": "100.0",
    },
    "users": [{"email": "ada@example.edu", "id": 42, "name": "Ada Lovelace"}],
    "previous_submissions": [],
}


class Image:
    """The autograder as Gradescope would have built it, in a temporary root."""

    def __init__(self, root: Path, zip_path: Path):
        self.root, self.zip = root, zip_path
        self.bin = root.parent / "bin"  # python3: this environment's interpreter
        self.site = root.parent / "site"  # the wheel from the zip, unpacked: what pip would install

    def env(self, *, path: str | None = None) -> dict[str, str]:
        env = dict(os.environ, AUTOGRADER_ROOT=str(self.root), PYTHONPATH=str(self.site))
        env["PATH"] = path if path is not None else f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return env

    def run(self, files: dict[str, Path | str], *, metadata: dict | None = None, path: str | None = None):
        """Put one submission in place, run run_autograder, return (results, stdout)."""
        for folder in ("submission", "results"):
            shutil.rmtree(self.root / folder, ignore_errors=True)
            (self.root / folder).mkdir()
        for name, content in files.items():
            target = self.root / "submission" / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)  # follows the examples' symlinked checkpoints
            else:
                target.write_text(content)
        meta = self.root / "submission_metadata.json"
        meta.unlink(missing_ok=True)
        if metadata is not None:
            meta.write_text(json.dumps(metadata))
        done = subprocess.run(
            [BASH, str(self.root / "run_autograder")],
            cwd=self.root,
            env=self.env(path=path),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        doc = json.loads((self.root / "results" / "results.json").read_text())
        validate(doc)
        return doc, done.stdout + done.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory, cifar10, cifar10_path, cifar10_cache) -> Image:
    # Not under pytest's own temporary folder, which only its owner may enter: an
    # unprivileged worker must reach the grader installed here, as it reaches /autograder.
    base = Path(tempfile.mkdtemp(prefix="gradescope-"))
    base.chmod(0o755)
    zip_path = gradescope.build_autograder(out=base / "autograder.zip", data=Path(cifar10_path))
    image = Image(base / "autograder", zip_path)
    source = image.root / "source"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(source)
        (wheel,) = [n for n in zf.namelist() if n.startswith("wheels/") and n.endswith(".whl")]
    with zipfile.ZipFile(source / wheel) as zf:
        zf.extractall(image.site)
    shutil.copy(source / "run_autograder", image.root / "run_autograder")
    (image.root / "run_autograder").chmod(0o755)
    image.bin.mkdir()
    shim = image.bin / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    (source / "cache").symlink_to(Path(cifar10_cache).resolve(), target_is_directory=True)
    # setup.sh's last step, for real: the dataset in the zip, decoded (here: found in the cache).
    prepared = subprocess.run(
        ["python3", "-m", "grader", "gradescope", "prepare", "--source", str(source)],
        env=image.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prepared.returncode == 0 and "49000" not in prepared.stdout, prepared.stdout + prepared.stderr
    assert "50000 training and 10000 test images" in prepared.stdout
    where = subprocess.run(
        ["python3", "-c", "import grader, reference_solution; print(grader.__file__, reference_solution.__file__)"],
        env=image.env(),
        capture_output=True,
        text=True,
        cwd=image.root,
    ).stdout.split()
    assert all(Path(p).is_relative_to(image.site) for p in where), where  # the wheel's code, not the checkout's
    yield image
    shutil.rmtree(base, ignore_errors=True)


def test_the_zip_holds_what_gradescope_needs(image):
    with zipfile.ZipFile(image.zip) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        setup = zf.read("setup.sh").decode()
        config = json.loads(zf.read("config.json"))
    assert {"setup.sh", "run_autograder", "rubric.toml", "config.json"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert config["data"] in names and config["data"].endswith(".tar.gz")
    assert "download.pytorch.org/whl/cpu" in setup  # CPU torch unless told otherwise
    wheel = next(n for n in names if n.endswith(".whl"))
    with zipfile.ZipFile(image.root / "source" / wheel) as zf:
        inside = set(zf.namelist())
    assert {
        "grader/gradescope.py",
        "grader/assignments/cifar10/rubric.toml",
        "reference_solution/__init__.py",
    } <= inside
    assert not any("__pycache__" in n for n in inside)


def test_the_filled_template_with_its_checkpoint_scores_100(image):
    files = {p.name: p for p in (EXAMPLES / "filled_template").iterdir()}
    doc, stdout = image.run(files, metadata=METADATA)
    failed = [f"{t['number']} {t['name']}: {t['output']}" for t in doc["tests"] if t["status"] != "passed"]
    assert doc["score"] == 100, failed
    assert doc["extra_data"]["submission"]["challenge"]["mode"] == "checkpoint"  # not retrained
    (entry,) = doc["leaderboard"]
    assert entry["name"] == "Validation accuracy" and 0.7 <= entry["value"] <= 1
    assert doc["extra_data"]["gradescope"]["users"][0]["id"] == 42
    assert doc["extra_data"]["submission"]["name"] == "Ada Lovelace"
    student = doc["extra_data"]["submission"]["student"]
    assert student["student_id"] == "42" and student["flagged_late"] and student["lms"] == "gradescope"
    # What students see at once: visible points, hidden checks' number and worth, the lateness.
    assert "Submitted 11 h 30 min after the due date" in doc["output"]
    hidden = [t for t in doc["tests"] if t["visibility"] == "after_published"]
    assert hidden and f"{len(hidden)} hidden checks worth" in doc["output"]
    assert "100" not in doc["output"]
    assert [t["number"] for t in doc["tests"][:3]] == ["1.1", "1.2", "1.3"]
    assert {t["tags"][0] for t in doc["tests"]} == {f"Q{i}" for i in range(1, 8)}
    assert "run_autograder: Ada Lovelace: graded, 100 / 100" in stdout


def test_the_missing_relu_example_scores_91_with_the_diff_in_markdown(image):
    doc, _ = image.run({p.name: p for p in (EXAMPLES / "missing_relu_q6").iterdir()})
    assert doc["score"] == 91
    lost = {t["tags"][0] for t in doc["tests"] if t["score"] < t["max_score"]}
    assert lost == {"Q6"}
    architecture = next(t for t in doc["tests"] if t["extra_data"]["id"] == "Q6.architecture")
    assert architecture["output_format"] == "md" and "```" in architecture["output"]
    assert "missing" in architecture["output"].split("```")[1]  # the layer diff, as a table
    assert "leaderboard" in doc


def test_a_broken_notebook_scores_0_with_its_reason(image):
    doc, _ = image.run({"homework.ipynb": EXAMPLES / "broken_notebook.ipynb"})
    assert doc["score"] == 0 and doc["tests"]
    assert "could not be graded" in doc["output"] and "not valid JSON" in doc["output"]
    assert "leaderboard" not in doc


def test_a_submission_that_kills_the_grader_still_gets_a_results_file(image):
    """Without namespaces (unshare not on PATH), the student's code is a child of the
    grader: it plants a perfect results.json and kills its parent. As root (Gradescope's
    case) it runs under a uid of its own and can do neither; otherwise the run still ends
    with a results file, with no points and a plain message."""
    results = image.root / "results" / "results.json"
    planted = json.dumps({"score": 100, "tests": []})
    module = textwrap.dedent(
        f"""\
        import os, signal
        open({str(results)!r}, "w").write({planted!r})
        os.kill(os.getppid(), signal.SIGKILL)
        """
    )
    if os.geteuid() == 0 and (unreadable := unreadable_by_others([*worker_runtime()[:2], image.site])):
        pytest.skip(f"other users cannot read {unreadable}, so an unprivileged worker cannot run Python here")
    doc, stdout = image.run({"homework.py": module}, path=str(image.bin))
    assert doc["score"] == 0
    if os.geteuid() == 0:
        # As root the worker switched to a uid of its own: it can neither write the
        # results nor signal the grader, which grades it as usual.
        assert "unprivileged uid" in stdout
        assert doc["tests"] and doc["output"] != gradescope.CRASH_MESSAGE
        assert "no namespaces, unprivileged uid" in json.dumps(doc)
    else:
        assert doc["tests"] == [] and doc["output"] == gradescope.CRASH_MESSAGE
        assert doc["extra_data"]["exit_status"] == 128 + 9
        assert "stopped with exit status 137" in stdout


def test_a_crash_inside_the_grader_becomes_a_results_file_without_traceback(tmp_path, capsys):
    """A grader that fails (here: its config.json is missing) writes every check with no
    points and the plain message; the traceback goes to stdout, which only instructors see."""
    (tmp_path / "source").mkdir()
    shutil.copy(DEFAULT_RUBRIC, tmp_path / "source" / "rubric.toml")
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "hw.py").write_text("x = 1\n")
    doc = gradescope.run_autograder(root=tmp_path)
    validate(doc)
    assert json.loads((tmp_path / "results" / "results.json").read_text()) == doc
    assert doc["score"] == 0 and len(doc["tests"]) > 20
    assert gradescope.CRASH_MESSAGE in doc["output"]
    assert "Traceback" not in json.dumps(doc) and "Traceback" in capsys.readouterr().out


def test_submission_metadata(tmp_path):
    path = tmp_path / "submission_metadata.json"
    assert gradescope.read_metadata(path) == {}  # absent
    path.write_text("{not json")
    assert gradescope.read_metadata(path) == {}
    group = {**METADATA, "users": [{"name": "Ada", "id": 1}, {"name": "Bob", "id": 2}]}
    on_time = {**METADATA, "created_at": "2026-11-01T22:59:00-08:00"}
    for raw, name, lateness in ((group, "Ada & Bob", "Submitted 11 h 30 min after"), (on_time, "Ada Lovelace", "")):
        path.write_text(json.dumps(raw))
        got = gradescope.read_metadata(path)
        assert got["name"] == name and got["due_date"] == METADATA["assignment"]["due_date"]
        assert got.get("lateness", "").startswith(lateness) and bool(got.get("lateness")) == bool(lateness)
        assert got["late_seconds"] == (41400 if lateness else 0)


def test_results_json_for_gradescope_hides_what_students_may_not_see():
    checks = [
        CheckResult("Q1.a", "Q1", "a", "passed", 2.0, 2.0, "visible", "fine"),
        CheckResult("Q1.b", "Q1", "b", "failed", 0.0, 3.0, "hidden", "x <b>wrong</b> *here*", {"traceback": "secret"}),
        CheckResult("Q7.c", "Q7", "c", "passed", 5.0, 5.0, "hidden", "ok"),
    ]
    result = SubmissionResult("s", "s.py", "", "graded", checks=checks, challenge={"val_accuracy": 0.71234})
    doc = gradescope_json(result)
    validate(doc)
    assert [t["number"] for t in doc["tests"]] == ["1.1", "1.2", "7.1"]
    assert [t["visibility"] for t in doc["tests"]] == ["visible", "after_published", "after_published"]
    assert doc["output"].startswith("**Visible checks: 2 / 2 points.** 2 hidden checks worth 8 points")
    assert not {"5", "7", "10"} & set(doc["output"].replace(".", " ").split())  # hidden points earned, totals
    assert doc["tests"][1]["output"] == r"x &lt;b&gt;wrong&lt;/b&gt; \*here\*"  # student text stays text
    assert "secret" not in json.dumps(doc["tests"])  # the grader's own traceback is for instructors
    assert doc["leaderboard"] == [{"name": "Validation accuracy", "value": 0.7123, "order": "desc"}]


def test_build_refuses_what_cannot_work(tmp_path, capsys):
    from grader.cli import main

    out = tmp_path / "autograder.zip"
    assert main(["gradescope", "build", "--out", str(out)]) == 2
    assert "--data PATH" in capsys.readouterr().err
    bad = tmp_path / "rubric.toml"
    bad.write_text("[Q1]\nchecks.no_such_check = { points = 1 }\n")
    assert main(["gradescope", "build", "--download", "--rubric", str(bad), "--out", str(out)]) == 2
    assert "no_such_check" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    assert main(["gradescope", "build", "--download", "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("config.json"))["download"] is True
        assert not any(n.startswith("data/") for n in zf.namelist())


def test_an_uploaded_folder_is_the_submission(tmp_path):
    upload = tmp_path / "submission"
    (upload / "hw5").mkdir(parents=True)
    (upload / "__MACOSX").mkdir()
    assert gradescope.submission_folder(upload) == upload / "hw5"  # a zip of a folder, unpacked as it is
    (upload / "best_model.pt").write_bytes(b"")
    assert gradescope.submission_folder(upload) == upload


def test_a_late_penalty_is_in_the_score_and_explained():
    checks = [CheckResult("Q1.a", "Q1", "a", "passed", 4.0, 4.0, "visible", "fine")]
    penalty = {"kind": "late", "target": "total", "question": None, "points": -1.0, "reason": "1 day late: 25%"}
    result = SubmissionResult("s", "s.py", "", "graded", checks=checks, adjustments=[penalty])
    doc = gradescope_json(result)
    validate(doc)
    assert doc["score"] == 3 and doc["tests"][0]["score"] == 4
    assert "Late penalty: -1 points (1 day late: 25%)." in doc["output"]
