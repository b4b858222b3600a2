"""From the LMS download to the LMS gradebook: Canvas, Moodle and Gradescope exports
(zips with several students, a late one, a split checkpoint, a duplicate, accented
names), identity in every output, overrides, the late policy, the exported gradebooks,
--only, and a batch interrupted with SIGINT then resumed.

Parsing, the late policy, overrides and the exports are tested as pure functions; the
end-to-end tests grade tiny modules on Question 1 only, so each takes seconds."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from tiny import CORRECT_Q1, Q1_NO_RELU, notebook

from grader.batch import BatchError, grade_batch
from grader.cli import main
from grader.course import Course, LatePolicy, apply_policies, lateness, load_course
from grader.export import canvas_csv, export, gradescope_csv, moodle_csv
from grader.intake import Entry, Identity, IntakeError, assign_folders, gather
from grader.overrides import OverridesError, load_overrides
from grader.results import CheckResult, SubmissionResult
from grader.rubric import load_rubric

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = (REPO / "examples" / "filled_template" / "best_model.pt").read_bytes()


def make_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.flag_bits |= 0x800  # UTF-8 names, as the LMSs write them
            zf.writestr(info, content)
    return path


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def grade(source: Path, out: Path, **kwargs) -> list[SubmissionResult]:
    return grade_batch(
        submissions=source, out=out, require_data=False, questions=["Q1"], progress=False, seed=1, jobs=2, **kwargs
    )


# -- layouts and identity (pure) ----------------------------------------------------------------


def canvas_files() -> dict[str, str | bytes]:
    shared = notebook(CORRECT_Q1)  # (cell ids are random: one notebook, written twice)
    return {
        "smithjohn_12345_67890_hw05.ipynb": shared,
        "smithjohn_12345_67891_best_model-1.pt": CHECKPOINT,  # the checkpoint uploaded as a second file
        "doejane_LATE_23456_67892_hw05.ipynb": notebook(Q1_NO_RELU),
        "garcíaana_34567_67893_hw05.ipynb": shared,  # byte-identical to smithjohn's notebook
        "leebo_45678_67894_notes.docx": b"PK\x03\x04 not a notebook",
    }


def test_canvas_names_give_identity_lateness_and_one_submission_per_student(tmp_path):
    intake = gather(make_zip(tmp_path / "hw05.zip", canvas_files()), workdir=tmp_path / "work")
    assert intake.layouts == ["canvas"]
    by_id = {e.identity.student_id: e for e in intake.entries}
    assert set(by_id) == {"12345", "23456", "34567"}
    smith = by_id["12345"]
    assert smith.identity.login == "smithjohn" and smith.identity.lms_submission_id == "67890"
    assert smith.path.is_dir() and sorted(p.name for p in smith.path.iterdir()) == ["best_model.pt", "hw05.ipynb"]
    assert by_id["23456"].identity.flagged_late and not smith.identity.flagged_late
    assert by_id["34567"].identity.name == "garcíaana" and by_id["34567"].folder == "garcíaana_34567"
    assert ("leebo_45678_67894_notes.docx", "not a notebook, module or checkpoint (.docx)") in intake.skipped


def test_moodle_folders_keep_accented_names(tmp_path):
    folder = tmp_path / "download"
    (folder / "Ana García_34567_assignsubmission_file_").mkdir(parents=True)
    (folder / "Ana García_34567_assignsubmission_file_" / "hw05.ipynb").write_text(notebook(CORRECT_Q1))
    (folder / "Bo Lee_45678_assignsubmission_file_hw05.py").write_text(CORRECT_Q1)
    (folder / "Bo Lee_45678_assignsubmission_file_best_model.pt").write_bytes(CHECKPOINT)
    (folder / "Bo Lee_45678_assignsubmission_onlinetext_").mkdir()
    intake = gather(folder, workdir=tmp_path / "work")
    assert intake.layouts == ["moodle"]
    entries = {e.identity.name: e for e in intake.entries}
    assert set(entries) == {"Ana García", "Bo Lee"}
    assert entries["Ana García"].folder == "Ana_García_34567" and entries["Ana García"].identity.student_id == "34567"
    assert sorted(p.name for p in entries["Bo Lee"].path.iterdir()) == ["best_model.pt", "hw05.py"]
    assert any("onlinetext" in why for _, why in intake.skipped)


GRADESCOPE_METADATA = """\
:submission_1001:
  :submitters:
  - :name: Jane Doe
    :sid: '23456'
    :email: jane@example.edu
  :created_at: 2026-03-03 10:00:00.123456000 -05:00
  :score: 0.0
:submission_1002:
  :submitters:
  - :name: José Núñez
    :sid: '34567'
    :email: jose@example.edu
  :created_at: 2026-03-01 20:00:00.000000000 -05:00
  :score: 0.0
"""


def test_gradescope_export_metadata_names_each_submission(tmp_path):
    source = make_zip(
        tmp_path / "export.zip",
        {
            "assignment_99_export/submission_metadata.yml": GRADESCOPE_METADATA,
            "assignment_99_export/submission_1001/hw05.ipynb": notebook(CORRECT_Q1),
            "assignment_99_export/submission_1002/hw05.py": CORRECT_Q1,
        },
    )
    intake = gather(source, workdir=tmp_path / "work")
    assert intake.layouts == ["gradescope"]
    jane, jose = intake.entries
    assert (jane.identity.name, jane.identity.student_id, jane.identity.email) == (
        "Jane Doe",
        "23456",
        "jane@example.edu",
    )
    assert jane.identity.lms_submission_id == "1001" and jane.identity.submitted_at.startswith("2026-03-03T10:00:00")
    assert jose.identity.name == "José Núñez" and jose.folder == "José_Núñez_34567"


def test_a_zip_cannot_escape_or_fill_the_disk(tmp_path, monkeypatch):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.py", CORRECT_Q1)
        zf.writestr("/absolute.py", CORRECT_Q1)
        link = zipfile.ZipInfo("link.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("alice.py", CORRECT_Q1)
    intake = gather(archive, workdir=tmp_path / "work")
    assert [e.identity.name for e in intake.entries] == ["alice"]
    reasons = dict(intake.skipped)
    assert "outside the download" in reasons["../escape.py"] and "outside the download" in reasons["/absolute.py"]
    assert "symbolic link" in reasons["link.py"]
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "work" / "escape.py").exists()

    import grader.intake

    monkeypatch.setattr(grader.intake, "MAX_ZIP_BYTES", 1000)
    bomb = make_zip(tmp_path / "bomb.zip", {"big.py": "#" * 5000})
    with pytest.raises(IntakeError, match="refusing"):
        gather(bomb, workdir=tmp_path / "work2")
    monkeypatch.setattr(grader.intake, "MAX_ZIP_FILES", 3)
    with pytest.raises(IntakeError, match="holds 4 files"):
        gather(make_zip(tmp_path / "many.zip", {f"s{i}.py": "" for i in range(4)}), workdir=tmp_path / "work3")


def test_folder_names_are_unique_and_stable(tmp_path):
    (tmp_path / "dup").mkdir()
    names = ["dup.py", "dup", "dup-2.py", "a b.py", "a_b.py", "index.html.py"]
    for name in names:
        if name != "dup":
            (tmp_path / name).write_text("")

    def entries() -> list[Entry]:
        return [Entry(tmp_path / n, Identity(name=Path(n).stem), files=[n]) for n in names]

    first, second = entries(), entries()
    assign_folders(first)
    assign_folders(list(reversed(second)))
    folders = [e.folder for e in first]
    assert len(set(folders)) == len(folders), folders
    assert folders == [e.folder for e in second]  # the others' order does not matter
    assert folders[:3] == ["dup.py", "dup", "dup-2"] and "index.html" not in folders


def test_results_of_dup_py_dup_folder_and_dup_2_never_overwrite_each_other(tmp_path):
    subs = tmp_path / "subs"
    (subs / "dup").mkdir(parents=True)
    (subs / "dup.py").write_bytes(b"\xff not utf-8 one")
    (subs / "dup-2.py").write_bytes(b"\xff not utf-8 two")
    results = grade_batch(submissions=subs, out=tmp_path / "out", require_data=False, progress=False)
    assert len(results) == 3
    sources = {
        json.loads((tmp_path / "out" / f / "results.json").read_text())["extra_data"]["submission"]["source"]
        for f in ("dup", "dup.py", "dup-2")
    }
    assert sources == {"dup", "dup.py", "dup-2.py"}


def test_empty_input_is_an_error_that_lists_what_was_skipped(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "essay.docx").write_text("no")
    (subs / "gone.ipynb").symlink_to(tmp_path / "nowhere.ipynb")
    with pytest.raises(BatchError, match="no submission found") as error:
        grade_batch(submissions=subs, out=tmp_path / "out", require_data=False, progress=False)
    assert "essay.docx" in str(error.value) and "dangling symbolic link" in str(error.value)
    done = subprocess.run(
        [sys.executable, "-m", "grader", str(subs), "--no-data", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "no submission found" in done.stderr and "Traceback" not in done.stderr


# -- late policy, overrides, exports (pure) --------------------------------------------------------


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


POLICY = LatePolicy(
    due=at("2026-03-01T23:59:00-05:00"),
    penalty_per_day=10,
    max_penalty=30,
    grace_minutes=15,
    extensions={"smithjohn": at("2026-03-04T23:59:00-05:00")},
)


@pytest.mark.parametrize(
    ("student", "expected"),
    [
        ({"submitted_at": "2026-03-02T00:10:00-05:00"}, (False, 0)),  # within the grace period
        ({"submitted_at": "2026-03-02T00:20:00-05:00"}, (True, 1)),  # a part of a day counts as a day
        ({"submitted_at": "2026-03-03T10:00:00-05:00"}, (True, 2)),
        ({"submitted_at": "2026-03-03T10:00:00-05:00", "login": "smithjohn"}, (False, 0)),  # extension
        ({"flagged_late": True}, (True, None)),  # Canvas says late, without a time
        ({"flagged_late": True, "login": "SmithJohn"}, (False, None)),  # ... but the student has an extension
        ({}, (False, None)),
    ],
)
def test_lateness(student, expected):
    assert lateness(student, POLICY)[:2] == expected


def result_of(name: str, scores: dict[str, float]) -> SubmissionResult:
    rubric = load_rubric()
    checks = [
        CheckResult(cid, cid.split(".")[0], cid, "passed", scores.get(cid, 0.0), e.points, e.visibility, "")
        for cid, e in rubric.entries.items()
        if cid.startswith(("Q1.", "Q3."))
    ]
    return SubmissionResult(name=name, source=f"{name}.ipynb", sha256="x", status="graded", checks=checks)


def test_overrides_and_late_penalty_change_the_final_score_with_their_reasons(tmp_path):
    (tmp_path / "overrides.toml").write_text(
        '[smithjohn]\nQ3 = { points = 9, reason = "layers right; class renamed" }\n'
        '"Q1.forward_parity" = { points = 4, reason = "tolerance too tight for float16" }\n'
    )
    overrides = load_overrides(tmp_path / "overrides.toml", rubric=load_rubric())
    raw = result_of("smithjohn", {"Q1.output_shape": 2, "Q1.any_batch_size": 2, "Q3.layers": 4})  # 8 points
    course = Course(late=POLICY)
    student = {"login": "smithjohn", "student_id": "12345", "submitted_at": "2026-03-06T12:00:00-05:00"}
    final = apply_policies(raw, student=student, overrides=overrides, course=course)
    assert raw.score == 8 and raw.adjustments == []  # the graded result is untouched
    q = {s.id: s.score for s in final.questions()}
    assert q == {"Q1": 8, "Q3": 9}
    assert final.raw_score == 8
    late = next(a for a in final.adjustments if a["kind"] == "late")
    # Due (extended) 2026-03-04 23:59, submitted 03-06 12:00: 2 days (a part of a day counts), 20% of 17.
    assert late["points"] == -3.4 and "2 day(s) late" in late["reason"]
    assert final.score == 13.6
    assert final.student["late"] and final.student["days_late"] == 2


def test_overrides_file_mistakes_are_refused(tmp_path):
    rubric = load_rubric()
    for text, match in (
        ('[a]\nQ9 = { points = 1, reason = "x" }\n', "no such question"),
        ('[a]\nQ1 = { points = 99, reason = "x" }\n', "outside 0 to 12"),
        ("[a]\nQ1 = { points = 3 }\n", "needs points and a reason"),
        ("a = 3\n", "must be a table"),
    ):
        (tmp_path / "o.toml").write_text(text)
        with pytest.raises(OverridesError, match=match):
            load_overrides(tmp_path / "o.toml", rubric=rubric)


def test_course_file_needs_time_zones(tmp_path):
    (tmp_path / "course.toml").write_text("[late]\ndue = 2026-03-01T23:59:00\n")
    with pytest.raises(Exception, match="time zone"):
        load_course(tmp_path / "course.toml")


def test_exported_gradebooks_follow_each_lms():
    course = Course(name="HW05", canvas_id="4321", points=50)
    r = result_of("smithjohn", {"Q1.output_shape": 2})
    r.student = {"name": "smithjohn", "login": "smithjohn", "student_id": "12345", "email": "s@x.edu", "days_late": 1}
    r.adjustments = [{"kind": "late", "target": "total", "question": "", "points": -1, "reason": "1 day late"}]
    canvas = list(csv.reader(io.StringIO(canvas_csv([r], course))))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "HW05 (4321)"]
    assert canvas[1][0] == "Points Possible" and canvas[1][5] == "50"
    assert canvas[2][:2] == ["smithjohn", "12345"] and canvas[2][5] == f"{round(1 * 50 / 21, 2):g}"
    moodle = list(csv.DictReader(io.StringIO(moodle_csv([r], course))))
    assert moodle[0]["Identifier"] == "Participant 12345" and moodle[0]["Maximum Grade"] == "50"
    assert "late penalty -1 (1 day late)" in moodle[0]["Feedback comments"]
    gradescope = list(csv.DictReader(io.StringIO(gradescope_csv([r], Course()))))
    assert gradescope[0]["SID"] == "12345" and gradescope[0]["Total Score"] == "1"
    assert gradescope[0]["Lateness (H:M:S)"] == "24:00:00"


# -- end to end ---------------------------------------------------------------------------------


COURSE = """\
[assignment]
name = "HW05"
canvas_id = 4321

[late]
due = 2026-03-01T23:59:00-05:00
penalty_per_day = 10
max_penalty = 50
days_when_unknown = 1
"""


def test_a_canvas_download_graded_end_to_end(tmp_path):
    source = make_zip(tmp_path / "submissions.zip", canvas_files())
    (tmp_path / "course.toml").write_text(COURSE)
    (tmp_path / "overrides.toml").write_text(
        '["garcíaana"]\nQ1 = { points = 10, reason = "shared notebook; see email" }\n'
    )
    out = tmp_path / "reports"
    kwargs = {"course": tmp_path / "course.toml", "overrides": tmp_path / "overrides.toml"}
    results = {r.student["student_id"]: r for r in grade(source, out, **kwargs)}

    smith, doe, garcia = results["12345"], results["23456"], results["34567"]
    assert smith.score == 12 and not smith.adjustments  # paired: one submission with its checkpoint
    assert doe.student["late"] and doe.raw_score < 12
    assert doe.score == pytest.approx(doe.raw_score * 0.9)  # late by Canvas's mark: one day charged
    assert garcia.score == 10 and garcia.adjustments[0]["reason"] == "shared notebook; see email"

    book = {row["student_id"]: row for row in rows(out / "gradebook.csv")}
    assert book["23456"]["late"] == "true" and book["23456"]["lms_submission_id"] == "67892"
    assert book["12345"]["name"] == "smithjohn" and book["12345"]["late"] == "false"
    assert "identical" in book["34567"]["needs_a_look"] and "override" in book["34567"]["needs_a_look"]
    page = (out / "index.html").read_text()
    assert "shared notebook; see email" in page and "leebo_45678_67894_notes.docx" in page
    assert "shared notebook; see email" in (out / "garcíaana_34567" / "report-student.html").read_text()
    assert "late penalty" in (out / "doejane_23456" / "report.html").read_text()

    path, _ = export(out=out, format="canvas")
    canvas = {row["ID"]: row for row in rows(path)}
    assert canvas["12345"]["HW05 (4321)"] == "12" and canvas["34567"]["HW05 (4321)"] == "10"
    assert float(canvas["23456"]["HW05 (4321)"]) == pytest.approx(doe.score)
    assert main(["export", "--format", "moodle", "--out", str(out)]) == 0  # the command
    assert {row["Identifier"] for row in rows(out / "moodle.csv")} >= {"Participant 12345", "Participant 23456"}

    # An edited overrides file changes the export without regrading.
    (tmp_path / "overrides.toml").write_text('[34567]\nQ1 = { points = 6, reason = "copied" }\n')
    path, _ = export(out=out, format="canvas")  # the batch's overrides file, read again
    assert {row["ID"]: row for row in rows(path)}["34567"]["HW05 (4321)"] == "6"

    # --only regrades one student and leaves the others' reports untouched.
    smith_report = out / "smithjohn_12345" / "report.html"
    before = smith_report.stat().st_mtime_ns
    again = {r.student["student_id"]: r for r in grade(source, out, only=["doejane"], **kwargs)}
    assert again["23456"].graded_at >= doe.graded_at and again["23456"].duration != doe.duration
    assert smith_report.stat().st_mtime_ns == before and again["12345"].score == 12
    assert len(rows(out / "gradebook.csv")) == 3
    with pytest.raises(BatchError, match="matches no submission"):
        grade(source, out, only=["nobody"])


def test_moodle_and_gradescope_downloads_graded_end_to_end(tmp_path):
    moodle = make_zip(
        tmp_path / "moodle.zip",
        {
            "Ana García_34567_assignsubmission_file_/hw05.ipynb": notebook(CORRECT_Q1),
            "Ana García_34567_assignsubmission_file_/best_model.pt": CHECKPOINT,
            "Bo Lee_45678_assignsubmission_file_/hw05.ipynb": notebook(CORRECT_Q1),  # identical to Ana's
        },
    )
    results = {r.name: r for r in grade(moodle, tmp_path / "moodle-out")}
    assert set(results) == {"Ana García", "Bo Lee"} and results["Ana García"].score == 12
    assert (tmp_path / "moodle-out" / "Ana_García_34567" / "report.html").exists()
    path, _ = export(out=tmp_path / "moodle-out", format="moodle")
    worksheet = {row["Identifier"]: row for row in rows(path)}
    assert (
        worksheet["Participant 34567"]["Full name"] == "Ana García" and worksheet["Participant 34567"]["Grade"] == "12"
    )

    gradescope = make_zip(
        tmp_path / "gradescope.zip",
        {
            "submission_metadata.yml": GRADESCOPE_METADATA,
            "submission_1001/hw05.ipynb": notebook(Q1_NO_RELU),
            "submission_1002/hw05.ipynb": notebook(CORRECT_Q1),
        },
    )
    (tmp_path / "course.toml").write_text(COURSE)
    out = tmp_path / "gs-out"
    results = {r.student["student_id"]: r for r in grade(gradescope, out, course=tmp_path / "course.toml")}
    jane, jose = results["23456"], results["34567"]
    assert jane.student["days_late"] == 2 and jane.score == pytest.approx(jane.raw_score * 0.8)
    assert not jose.student["late"] and jose.score == 12
    path, _ = export(out=out, format="gradescope-csv")
    exported = {row["SID"]: row for row in rows(path)}
    assert exported["34567"]["Name"] == "José Núñez" and exported["34567"]["Total Score"] == "12"
    assert exported["23456"]["Lateness (H:M:S)"] == "48:00:00"


def test_an_interrupted_batch_keeps_what_finished_and_resumes(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(3):  # each takes a few seconds, so that the batch is caught midway
        (subs / f"student{i}.py").write_text(f"import time\ntime.sleep(2)  # {i}\n" + CORRECT_Q1)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "grader",
        str(subs),
        "--no-data",
        "--questions",
        "Q1",
        "--jobs",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 240
    while not (out / "student0" / "results.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 20  # queued work was cancelled, not waited for
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("grade: interrupted:") and "Traceback" not in stderr
    index = json.loads((out / "batch.json").read_text())
    assert index["partial"] is True and 1 <= index["graded"] < 3
    assert "Partial results" in (out / "index.html").read_text()
    first = json.loads((out / "student0" / "results.json").read_text())["extra_data"]["submission"]["graded_at"]

    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "student0: 12/12 (cached)" in done.stderr
    index = json.loads((out / "batch.json").read_text())
    assert index["partial"] is False and index["graded"] == 3
    assert json.loads((out / "student0" / "results.json").read_text())["extra_data"]["submission"]["graded_at"] == first
    assert os.path.exists(out / "student2" / "report.html")


def test_the_class_page_flags_what_needs_a_look(tmp_path):
    from grader.flags import needs_a_look
    from grader.report import write_class_summary

    near = result_of("near", {"Q1.output_shape": 2})
    near.challenge = {"threshold": 0.7, "val_accuracy": 0.695, "val_ci": [0.666, 0.723], "mode": "retrain"}
    clear = result_of("clear", {"Q1.output_shape": 2})
    clear.challenge = {"threshold": 0.7, "val_accuracy": 0.80, "val_ci": [0.775, 0.824], "mode": "checkpoint"}
    zero = result_of("zero", {})
    zero.sha256 = "other"
    for r in (near, clear):
        r.student = {"checkpoint_sha256": "same"}
    flags = [dict(f) for f in needs_a_look([near, clear, zero])]
    assert "straddles the 70% threshold" in flags[0]["near threshold"] and "retrained" in flags[0]
    assert "near threshold" not in flags[1] and "retrained" not in flags[1]
    assert flags[0]["identical"].endswith("clear")  # same sha256 "x"
    assert flags[2]["all zero"] == "no check earned a point" and "identical" not in flags[2]
    page = write_class_summary([near, clear, zero], ["near", "clear", "zero"], tmp_path).read_text()
    assert "straddles the 70% threshold" in page and "69.5%" in page  # the Q7 accuracy column


def test_a_zip_of_one_students_folder_is_one_submission(tmp_path):
    source = make_zip(
        tmp_path / "alice.zip", {"alice/hw05.ipynb": notebook(CORRECT_Q1), "alice/best_model.pt": CHECKPOINT}
    )
    (entry,) = gather(source, workdir=tmp_path / "work").entries
    assert entry.identity.name == "alice" and entry.path.is_dir()
