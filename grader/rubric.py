"""The rubric: points and visibility of every check, read from one TOML file.

The default is the homework's own (``grader/assignments/cifar10/rubric.toml``, totalling
100). An instructor copies it, edits the numbers and passes ``--rubric FILE``. Every check the grader knows must appear in the
file and every entry must name a known check, so a typo cannot silently drop points.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .assignment import Assignment, default_assignment
from .checks import all_checks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_RUBRIC = default_assignment().rubric
VISIBILITIES = ("visible", "hidden")


class RubricError(Exception):
    """The rubric file is unreadable or does not match the grader's checks."""


@dataclass(frozen=True)
class Entry:
    points: float
    visibility: str


POLICIES = ("all-or-nothing", "ramp")
STRADDLE = ("flag", "ignore")


@dataclass(frozen=True)
class Threshold:
    """How Question 7's accuracy earns its points.

    ``all-or-nothing``: full points at ``full_at`` or above, none below. ``ramp``: none at
    ``zero_at`` or below, full at ``full_at``, linear in between. ``straddle``: when the 95%
    confidence interval of the measurement contains ``full_at``, "flag" the submission for a
    look (the class summary lists it) or "ignore" it.
    """

    policy: str = "all-or-nothing"
    full_at: float = 0.70
    zero_at: float = 0.60
    straddle: str = "flag"

    def fraction(self, accuracy: float) -> float:
        """The share of the accuracy check's points that ``accuracy`` earns."""
        if accuracy >= self.full_at:
            return 1.0
        if self.policy == "all-or-nothing" or accuracy <= self.zero_at:
            return 0.0
        return (accuracy - self.zero_at) / (self.full_at - self.zero_at)


@dataclass(frozen=True)
class Rubric:
    titles: dict[str, str]  # question id -> title
    entries: dict[str, Entry]  # check id -> points and visibility
    path: str
    sha256: str
    threshold: Threshold = Threshold()

    @property
    def total(self) -> float:
        return sum(e.points for e in self.entries.values())


def load_rubric(path: str | Path | None = None, *, assignment: Assignment | None = None) -> Rubric:
    """Read a rubric of the homework (its own when ``path`` is None) and validate it
    against the homework's checks."""
    assignment = assignment or default_assignment()
    return read_rubric(Path(path) if path else assignment.rubric, checks=all_checks(assignment))


def read_rubric(path: Path, *, checks: Collection[str]) -> Rubric:
    """Read a rubric and check that it gives points to exactly the checks ``checks``."""
    try:
        raw = path.read_bytes()
        doc = tomllib.loads(raw.decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RubricError(f"cannot read the rubric {path}: {exc}") from None
    titles, entries, threshold = {}, {}, Threshold()
    for question, section in doc.items():
        if not isinstance(section, dict):
            raise RubricError(f"{path}: [{question}] must be a table")
        titles[question] = str(section.get("title", question))
        if "threshold" in section:
            threshold = _threshold(section["threshold"], f"{path}: [{question}] threshold")
        for name, spec in section.get("checks", {}).items():
            check_id = f"{question}.{name}"
            try:
                entry = Entry(float(spec["points"]), str(spec.get("visibility", "visible")))
            except (KeyError, TypeError, ValueError):
                raise RubricError(f"{path}: {check_id} needs a number of points") from None
            if entry.visibility not in VISIBILITIES or entry.points < 0:
                raise RubricError(f"{path}: {check_id} has visibility {entry.visibility!r} or negative points")
            entries[check_id] = entry
    known = set(checks)
    unknown, missing = sorted(set(entries) - known), sorted(known - set(entries))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown checks: " + ", ".join(unknown))
        if missing:
            parts.append("checks without points: " + ", ".join(missing))
        raise RubricError(f"{path} does not match the grader's checks ({'; '.join(parts)})")
    return Rubric(titles, entries, str(path), hashlib.sha256(raw).hexdigest(), threshold)


def _threshold(spec: object, where: str) -> Threshold:
    """Read and check a ``threshold = { ... }`` table."""
    if not isinstance(spec, dict):
        raise RubricError(f'{where} must be a table such as {{ policy = "ramp", zero_at = 0.6, full_at = 0.7 }}')
    unknown = sorted(set(spec) - {"policy", "full_at", "zero_at", "straddle"})
    if unknown:
        raise RubricError(f"{where} has unknown keys: {', '.join(unknown)} (known: policy, full_at, zero_at, straddle)")
    default = Threshold()
    try:
        threshold = Threshold(
            policy=str(spec.get("policy", default.policy)),
            full_at=float(spec.get("full_at", default.full_at)),
            zero_at=float(spec.get("zero_at", default.zero_at)),
            straddle=str(spec.get("straddle", default.straddle)),
        )
    except (TypeError, ValueError):
        raise RubricError(f"{where}: full_at and zero_at must be accuracies between 0 and 1") from None
    if threshold.policy not in POLICIES:
        raise RubricError(f"{where}: policy must be one of {', '.join(POLICIES)}, not {threshold.policy!r}")
    if threshold.straddle not in STRADDLE:
        raise RubricError(f"{where}: straddle must be one of {', '.join(STRADDLE)}, not {threshold.straddle!r}")
    if not 0 <= threshold.zero_at < threshold.full_at <= 1:
        raise RubricError(f"{where}: need 0 <= zero_at < full_at <= 1 (accuracies as fractions, 0.7 for 70%)")
    return threshold
