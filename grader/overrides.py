"""Hand overrides: an instructor's changes to a grade, with the reason, kept in one file.

``overrides.toml`` has one table per student (their login, id, name or e-mail, or the
folder name of their reports) and, in it, the new points of a check or of a whole
question, each with a reason the student will read::

    [smithjohn]
    Q3 = { points = 9, reason = "layers right; the grader could not find them (renamed class)" }
    "Q7.accuracy" = { points = 30, reason = "checkpoint re-uploaded after the deadline, approved" }

Overrides are applied when reports are rendered: editing the file and re-running
``grade`` re-renders every report from the cache, without regrading.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .assignment import default_assignment
from .results import SubmissionResult

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class OverridesError(Exception):
    """The overrides file is unreadable or names something unknown."""


@dataclass(frozen=True)
class Override:
    student: str  # as written in the file
    target: str  # "Q3" or "Q3.layers"
    points: float
    reason: str


@dataclass(frozen=True)
class Overrides:
    items: tuple[Override, ...]
    path: str

    def for_student(self, aliases: set[str]) -> list[Override]:
        from .intake import normal

        return [o for o in self.items if normal(o.student) in aliases]


def load_overrides(path: str | Path | None, *, rubric=None) -> Overrides | None:
    """Read and check an overrides file; with ``rubric``, every target must exist in it
    and every new score must be between 0 and the target's points."""
    if path is None:
        return None
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OverridesError(f"cannot read the overrides file {path}: {exc}") from None
    items = []
    for student, table in doc.items():
        if not isinstance(table, dict):
            example = default_assignment().questions[min(2, len(default_assignment().questions) - 1)]
            raise OverridesError(
                f'{path}: [{student}] must be a table of overrides, e.g. {example} = {{ points = 9, reason = "..." }}'
            )
        for target, spec in table.items():
            where = f"{path}: [{student}] {target}"
            if not isinstance(spec, dict) or "points" not in spec or not str(spec.get("reason", "")).strip():
                raise OverridesError(f'{where} needs points and a reason: {{ points = 9, reason = "..." }}')
            try:
                points = float(spec["points"])
            except (TypeError, ValueError):
                raise OverridesError(f"{where}: points must be a number") from None
            if rubric is not None:
                most = _max_points(target, rubric)
                if most is None:
                    raise OverridesError(f"{where}: no such question or check in the rubric")
                if not 0 <= points <= most:
                    raise OverridesError(f"{where}: {points:g} points is outside 0 to {most:g}")
            items.append(Override(str(student), str(target), points, str(spec["reason"]).strip()))
    return Overrides(tuple(items), str(path))


def _max_points(target: str, rubric) -> float | None:
    if target in default_assignment().questions:
        points = [e.points for cid, e in rubric.entries.items() if cid.split(".")[0] == target]
        return sum(points) if points else None
    entry = rubric.entries.get(target)
    return entry.points if entry else None


def apply_overrides(result: SubmissionResult, overrides: Overrides) -> list[dict]:
    """The adjustments the student's overrides make to ``result``: check overrides first,
    then question overrides set what the whole question is worth (checks included)."""
    from .intake import normal

    mine = overrides.for_student(aliases_of(result.student) | {normal(result.name)})
    adjustments: list[dict] = []
    checks = {c.id: c for c in result.checks}
    questions = default_assignment().questions
    for o in sorted(mine, key=lambda o: o.target in questions):
        if o.target in questions:
            scores = {q.id: q.score for q in result.questions()}
            now = scores.get(o.target)
            if now is None:
                continue  # the question was not graded in this run
            now += sum(a["points"] for a in adjustments if a["question"] == o.target)
            question = o.target
        elif o.target in checks:
            check = checks[o.target]
            now, question = check.score, check.question
            now += sum(a["points"] for a in adjustments if a["target"] == o.target)
        else:
            continue
        adjustments.append(
            {
                "kind": "override",
                "target": o.target,
                "question": question,
                "points": round(o.points - now, 4),
                "before": round(now, 4),
                "after": o.points,
                "reason": o.reason,
            }
        )
    return adjustments


ALIAS_KEYS = ("name", "student_id", "login", "email", "lms_submission_id", "folder")


def aliases_of(student: dict) -> set[str]:
    """The words an instructor may use for a student: in overrides, extensions, --only."""
    from .intake import normal

    return {normal(student[k]) for k in ALIAS_KEYS if isinstance(student.get(k), str) and student[k]}


def unmatched(overrides: Overrides | None, all_aliases: list[set[str]]) -> list[str]:
    """Students named in the overrides file that match no submission (a typo, most often)."""
    if overrides is None:
        return []
    from .intake import normal

    known = set().union(*all_aliases) if all_aliases else set()
    return sorted({o.student for o in overrides.items if normal(o.student) not in known})
