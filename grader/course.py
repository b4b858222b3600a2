"""The course file: the assignment as the LMS knows it, and the late policy.

An instructor writes it once per assignment and passes ``--course course.toml``::

    [assignment]
    name = "HW05 PyTorch"      # the gradebook column (Canvas: "HW05 PyTorch (4321)" with canvas_id)
    canvas_id = 4321            # optional: Canvas matches the column by this id
    points = 100                # optional: the LMS's points; totals are scaled to it

    [late]
    due = 2026-03-01T23:59:00-05:00
    penalty_per_day = 10        # percent, per day or part of a day late
    max_penalty = 50            # percent at most
    grace_minutes = 15          # a submission this close after the due time is on time
    penalty_of = "earned"       # or "max": a percent of the points earned, or of the maximum
    days_when_unknown = 1       # days charged when the LMS says "late" without a time (Canvas)

    [late.extensions]           # per student (login, id, name or e-mail): a new due date
    smithjohn = 2026-03-03T23:59:00-05:00

Lateness comes from the LMS: Gradescope's submission time, Canvas's LATE mark. The
penalty is applied when rendering (``apply_policies``), never cached with the grading, so
editing this file and re-running re-renders every report without regrading.
"""

from __future__ import annotations

import copy
import datetime
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .overrides import Overrides, aliases_of, apply_overrides
from .results import SubmissionResult

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class CourseError(Exception):
    """The course file is unreadable or inconsistent; the message says where."""


@dataclass(frozen=True)
class LatePolicy:
    due: datetime.datetime | None = None
    penalty_per_day: float = 0.0  # percent
    max_penalty: float = 100.0  # percent
    grace_minutes: float = 0.0
    penalty_of: str = "earned"  # "earned" or "max"
    days_when_unknown: int = 1
    extensions: dict[str, datetime.datetime] = field(default_factory=dict)  # normalised alias -> due


@dataclass(frozen=True)
class Course:
    name: str = ""
    canvas_id: str = ""
    points: float | None = None
    late: LatePolicy = field(default_factory=LatePolicy)


def _datetime(value: object, where: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise CourseError(f"{where}: give the time zone, e.g. 2026-03-01T23:59:00-05:00 or ...Z")
        return value
    if isinstance(value, datetime.date):
        raise CourseError(f"{where}: give a time and a time zone, e.g. {value}T23:59:00-05:00")
    raise CourseError(f"{where}: expected a date and time such as 2026-03-01T23:59:00-05:00, found {value!r}")


def load_course(path: str | Path | None) -> Course:
    """Read a course file (an empty Course when ``path`` is None)."""
    if path is None:
        return Course()
    from .intake import normal

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CourseError(f"cannot read the course file {path}: {exc}") from None
    unknown = set(doc) - {"assignment", "late"}
    if unknown:
        raise CourseError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; use [assignment] and [late]")
    assignment, late = doc.get("assignment", {}), doc.get("late", {})
    try:
        points = float(assignment["points"]) if "points" in assignment else None
        policy = LatePolicy(
            due=_datetime(late["due"], f"{path}: late.due") if "due" in late else None,
            penalty_per_day=float(late.get("penalty_per_day", 0)),
            max_penalty=float(late.get("max_penalty", 100)),
            grace_minutes=float(late.get("grace_minutes", 0)),
            penalty_of=str(late.get("penalty_of", "earned")),
            days_when_unknown=int(late.get("days_when_unknown", 1)),
            extensions={
                normal(k): _datetime(v, f"{path}: late.extensions.{k}") for k, v in late.get("extensions", {}).items()
            },
        )
    except (TypeError, ValueError) as exc:
        raise CourseError(f"{path}: {exc}") from None
    if policy.penalty_of not in ("earned", "max"):
        raise CourseError(f'{path}: late.penalty_of must be "earned" or "max"')
    if not 0 <= policy.penalty_per_day <= 100 or not 0 <= policy.max_penalty <= 100:
        raise CourseError(f"{path}: late penalties are percents between 0 and 100")
    return Course(str(assignment.get("name", "")), str(assignment.get("canvas_id", "")), points, policy)


def lateness(student: dict, policy: LatePolicy) -> tuple[bool, int | None, str]:
    """(late, days late or None when unknown, why) for a student's identity dict."""
    aliases = aliases_of(student)
    extended = next((policy.extensions[a] for a in aliases if a and a in policy.extensions), None)
    due = extended or policy.due
    submitted = student.get("submitted_at") or ""
    if submitted and due is not None:
        try:
            when = datetime.datetime.fromisoformat(submitted)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            over = (when - due).total_seconds() - 60 * policy.grace_minutes
            days = max(0, math.ceil(over / 86400))
            what = f"submitted {when.isoformat()}, due {due.isoformat()}" + (" (extended)" if extended else "")
            return days > 0, days, what
    if student.get("flagged_late"):
        if extended is not None:
            return False, None, f"marked late by the LMS, but the due date was extended to {extended.isoformat()}"
        return True, None, "marked late by the LMS, which gives no submission time"
    return False, 0 if due is not None and submitted else None, ""


def late_penalty(result: SubmissionResult, policy: LatePolicy) -> dict | None:
    """The late penalty as an adjustment of the total, or None."""
    late, days, why = lateness(result.student, policy)
    if not late or policy.penalty_per_day <= 0:
        return None
    charged = days if days is not None else policy.days_when_unknown
    percent = min(policy.max_penalty, policy.penalty_per_day * charged)
    base = result.score if policy.penalty_of == "earned" else result.max_score
    points = round(min(result.score, base * percent / 100), 4)
    day_text = f"{days} day(s) late" if days is not None else f"late (counted as {charged} day(s))"
    return {
        "kind": "late",
        "target": "total",
        "question": "",
        "points": -points,
        "reason": f"{day_text}: {percent:g}% of the {'points earned' if policy.penalty_of == 'earned' else 'maximum'}; {why}",
    }


def apply_policies(
    result: SubmissionResult, *, student: dict, overrides: Overrides | None = None, course: Course | None = None
) -> SubmissionResult:
    """A copy of a graded result with the student's identity, the instructor's overrides
    and the late penalty, each recorded with its reason (the cached grading is untouched)."""
    out = copy.deepcopy(result)
    out.student, out.adjustments = dict(student), []
    if student.get("name"):
        out.name = student["name"]
    course = course or Course()
    late, days, _ = lateness(out.student, course.late)
    out.student["late"], out.student["days_late"] = late, days
    if out.status != "graded":
        return out
    if overrides is not None:
        out.adjustments.extend(apply_overrides(out, overrides))
    penalty = late_penalty(out, course.late)
    if penalty:
        out.adjustments.append(penalty)
    return out
