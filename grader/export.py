"""The gradebook each LMS imports, from a graded batch.

``grade export --format canvas|moodle|gradescope-csv`` reads ``reports/batch.json`` and
each submission's ``results.json`` and writes one CSV with the final scores (overrides
and late penalty included; ``--overrides`` and ``--course`` re-apply edited files first).

- canvas: Canvas's gradebook import (Grades > Import): Student, ID, SIS User ID,
  SIS Login ID, Section, then one column named after the assignment ("HW05 (4321)" when
  the course file gives its Canvas id). Canvas matches students by ID.
- moodle: the assignment's offline grading worksheet (Grading action > Upload grading
  worksheet): Identifier ("Participant 34567"), Full name, Email address, Status, Grade,
  Maximum Grade, Grade can be changed, Last modified (submission), Last modified (grade),
  Feedback comments. Moodle matches students by Identifier.
- gradescope-csv: Name, SID, Email, Total Score, Max Points, Status, Submission ID,
  Submission Time, Lateness (H:M:S), as Gradescope's own score export.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from .course import Course, apply_policies, load_course
from .overrides import load_overrides
from .render import csv_cell
from .results import SubmissionResult

FORMATS = ("canvas", "moodle", "gradescope-csv")


class ExportError(Exception):
    """Nothing to export, or an unknown format; the message says why."""


def scaled(result: SubmissionResult, course: Course) -> float:
    """The final score on the LMS's scale (the course file's points, else the rubric's)."""
    if course.points is None or not result.max_score:
        return result.score
    return round(result.score * course.points / result.max_score, 2)


def feedback(result: SubmissionResult) -> str:
    """One line for the LMS's comment column: score, and every change with its reason."""
    parts = [f"autograder: {result.raw_score:g}/{result.max_score:g}"]
    for a in result.adjustments:
        what = "late penalty" if a["kind"] == "late" else f"override {a['target']}"
        parts.append(f"{what} {a['points']:+g} ({a['reason']})")
    if result.status != "graded":
        parts.append(f"{result.status}: {result.reason}")
    return "; ".join(parts)


# A gradebook is a list of columns: each a header and how to fill it for one result.
Column = tuple[str, Callable[[SubmissionResult, Course], str]]


def _student(key: str) -> Callable[[SubmissionResult, Course], str]:
    return lambda r, course: "" if r.student.get(key) is None else str(r.student[key])


def _name(r: SubmissionResult, course: Course) -> str:
    return r.student.get("name") or r.name


def _score(r: SubmissionResult, course: Course) -> str:
    return f"{scaled(r, course):g}"


def _maximum(r: SubmissionResult, course: Course) -> str:
    return f"{course.points if course.points is not None else r.max_score:g}"


def _lateness(r: SubmissionResult, course: Course) -> str:
    days = r.student.get("days_late")
    return f"{24 * days}:00:00" if isinstance(days, int) and days else ("0:00:00" if days == 0 else "")


def _fixed(text: str) -> Callable[[SubmissionResult, Course], str]:
    return lambda r, course: text


MOODLE: list[Column] = [
    ("Identifier", lambda r, c: f"Participant {r.student['student_id']}" if r.student.get("student_id") else ""),
    ("Full name", _name),
    ("Email address", _student("email")),
    ("Status", _fixed("Submitted for grading")),
    ("Grade", _score),
    ("Maximum Grade", _maximum),
    ("Grade can be changed", _fixed("Yes")),
    ("Last modified (submission)", _student("submitted_at")),
    ("Last modified (grade)", _fixed("")),
    ("Feedback comments", lambda r, c: feedback(r)),
]

GRADESCOPE: list[Column] = [
    ("Name", _name),
    ("SID", _student("student_id")),
    ("Email", _student("email")),
    ("Total Score", _score),
    ("Max Points", _maximum),
    ("Status", lambda r, c: "Graded" if r.status == "graded" else r.status.capitalize()),
    ("Submission ID", _student("lms_submission_id")),
    ("Submission Time", _student("submitted_at")),
    ("Lateness (H:M:S)", _lateness),
]


def _canvas_columns(course: Course) -> list[Column]:
    """Canvas matches rows by ID; the login in its file names is not the SIS login: left out.
    The score's column is named after the assignment."""
    column = course.name or "Autograder"
    if course.canvas_id:
        column = f"{column} ({course.canvas_id})"
    blank = _fixed("")
    return [
        ("Student", _name),
        ("ID", _student("student_id")),
        ("SIS User ID", blank),
        ("SIS Login ID", blank),
        ("Section", blank),
        (column, _score),
    ]


def _table(columns: list[Column], results: list[SubmissionResult], course: Course) -> list[list[str]]:
    return [[header for header, _ in columns]] + [[cell(r, course) for _, cell in columns] for r in results]


def canvas_csv(results: list[SubmissionResult], course: Course) -> str:
    rows = _table(_canvas_columns(course), results, course)
    if results:  # Canvas reads the assignment's points from a row of its own, after the header
        rows.insert(1, ["Points Possible", "", "", "", "", _maximum(results[0], course)])
    return _csv(rows)


def moodle_csv(results: list[SubmissionResult], course: Course) -> str:
    return _csv(_table(MOODLE, results, course))


def gradescope_csv(results: list[SubmissionResult], course: Course) -> str:
    return _csv(_table(GRADESCOPE, results, course))


def _csv(rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def load_batch(out: Path) -> tuple[list[SubmissionResult], dict]:
    """The results of the batch in ``out`` (its batch.json and results.json files)."""
    index_path = Path(out) / "batch.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"no graded batch in {out} ({exc}); run grade on the submissions first") from None
    results = []
    for entry in index.get("entries", []):
        if not entry.get("done"):
            continue
        cached = Path(out) / ".cache" / entry["cache"]
        try:
            result = SubmissionResult.from_dict(json.loads(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ExportError(f"the graded result of {entry['folder']} is missing ({exc}); run grade again") from None
        result.name, result.student, result.adjustments = entry["name"], entry["student"], entry["adjustments"]
        results.append(result)
    return results, index


# The LMS gradebooks by format (the batch's writers register the same, writers.GRADEBOOKS).
GRADEBOOK_RENDERERS = {"canvas": canvas_csv, "moodle": moodle_csv, "gradescope-csv": gradescope_csv}


def gradebook_name(format: str) -> str:
    """The file a gradebook is written to: "canvas" -> canvas.csv."""
    return f"{format.removesuffix('-csv')}.csv"


def export(
    *, out: Path, format: str, dest: Path | None = None, overrides: Path | None = None, course: Path | None = None
) -> tuple[Path, dict]:
    """Write the ``format`` gradebook of the batch in ``out``; returns its path and the
    batch index. The overrides and course files are those given, else those the batch
    was graded with, read again as they are now (an edit needs no regrading)."""
    if format not in GRADEBOOK_RENDERERS:
        raise ExportError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    results, index = load_batch(out)
    if not results:
        raise ExportError(f"the batch in {out} has no graded submission yet")
    overrides = overrides or index.get("overrides")
    course_path = course or index.get("course")
    loaded = load_course(course_path)
    if overrides or course_path:
        rules = load_overrides(overrides)
        results = [apply_policies(r, student=r.student, overrides=rules, course=loaded) for r in results]
    dest = dest or Path(out) / gradebook_name(format)
    dest.write_text(GRADEBOOK_RENDERERS[format](results, loaded), encoding="utf-8")
    return dest, index
