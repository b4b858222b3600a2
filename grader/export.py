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


def canvas_csv(results: list[SubmissionResult], course: Course) -> str:
    column = course.name or "Autograder"
    if course.canvas_id:
        column = f"{column} ({course.canvas_id})"
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column]]
    if results:
        points = course.points if course.points is not None else results[0].max_score
        rows.append(["Points Possible", "", "", "", "", f"{points:g}"])
    for r in results:
        s = r.student
        rows.append(
            # Canvas matches rows by ID; the login in its file names is not the SIS login: left out.
            [s.get("name") or r.name, s.get("student_id", ""), "", "", "", f"{scaled(r, course):g}"]
        )
    return _csv(rows)


def moodle_csv(results: list[SubmissionResult], course: Course) -> str:
    rows = [
        [
            "Identifier",
            "Full name",
            "Email address",
            "Status",
            "Grade",
            "Maximum Grade",
            "Grade can be changed",
            "Last modified (submission)",
            "Last modified (grade)",
            "Feedback comments",
        ]
    ]
    for r in results:
        s = r.student
        maximum = course.points if course.points is not None else r.max_score
        rows.append(
            [
                f"Participant {s['student_id']}" if s.get("student_id") else "",
                s.get("name") or r.name,
                s.get("email", ""),
                "Submitted for grading",
                f"{scaled(r, course):g}",
                f"{maximum:g}",
                "Yes",
                s.get("submitted_at", ""),
                "",
                feedback(r),
            ]
        )
    return _csv(rows)


def gradescope_csv(results: list[SubmissionResult], course: Course) -> str:
    rows = [
        [
            "Name",
            "SID",
            "Email",
            "Total Score",
            "Max Points",
            "Status",
            "Submission ID",
            "Submission Time",
            "Lateness (H:M:S)",
        ]
    ]
    for r in results:
        s = r.student
        days = s.get("days_late")
        lateness = f"{24 * days}:00:00" if isinstance(days, int) and days else ("0:00:00" if days == 0 else "")
        rows.append(
            [
                s.get("name") or r.name,
                s.get("student_id", ""),
                s.get("email", ""),
                f"{scaled(r, course):g}",
                f"{course.points if course.points is not None else r.max_score:g}",
                "Graded" if r.status == "graded" else r.status.capitalize(),
                s.get("lms_submission_id", ""),
                s.get("submitted_at", ""),
                lateness,
            ]
        )
    return _csv(rows)


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
