"""The rubric: points and visibility of every check, read from one TOML file.

The default, ``grader/rubric.toml``, totals 100. An instructor copies it, edits the
numbers and passes ``--rubric FILE``. Every check the grader knows must appear in the
file and every entry must name a known check, so a typo cannot silently drop points.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_RUBRIC = Path(__file__).with_name("rubric.toml")
VISIBILITIES = ("visible", "hidden")


class RubricError(Exception):
    """The rubric file is unreadable or does not match the grader's checks."""


@dataclass(frozen=True)
class Entry:
    points: float
    visibility: str


@dataclass(frozen=True)
class Rubric:
    titles: dict[str, str]  # question id -> title
    entries: dict[str, Entry]  # check id -> points and visibility
    path: str
    sha256: str

    @property
    def total(self) -> float:
        return sum(e.points for e in self.entries.values())


def load_rubric(path: str | Path | None = None) -> Rubric:
    """Read and validate a rubric (the default one when ``path`` is None)."""
    from .checks import all_checks

    path = Path(path) if path else DEFAULT_RUBRIC
    try:
        raw = path.read_bytes()
        doc = tomllib.loads(raw.decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RubricError(f"cannot read the rubric {path}: {exc}") from None
    titles, entries = {}, {}
    for question, section in doc.items():
        if not isinstance(section, dict):
            raise RubricError(f"{path}: [{question}] must be a table")
        titles[question] = str(section.get("title", question))
        for name, spec in section.get("checks", {}).items():
            check_id = f"{question}.{name}"
            try:
                entry = Entry(float(spec["points"]), str(spec.get("visibility", "visible")))
            except (KeyError, TypeError, ValueError):
                raise RubricError(f"{path}: {check_id} needs a number of points") from None
            if entry.visibility not in VISIBILITIES or entry.points < 0:
                raise RubricError(f"{path}: {check_id} has visibility {entry.visibility!r} or negative points")
            entries[check_id] = entry
    known = set(all_checks())
    unknown, missing = sorted(set(entries) - known), sorted(known - set(entries))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown checks: " + ", ".join(unknown))
        if missing:
            parts.append("checks without points: " + ", ".join(missing))
        raise RubricError(f"{path} does not match the grader's checks ({'; '.join(parts)})")
    return Rubric(titles, entries, str(path), hashlib.sha256(raw).hexdigest())
