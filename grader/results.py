"""The one results model. Every output (results.json, the gradebook, the HTML reports,
the self-check's terminal lines) is rendered from a ``SubmissionResult``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

QUESTIONS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7")
# Statuses of a check. Only "passed" earns points; the others say why not.
STATUSES = ("passed", "failed", "error", "timeout", "skipped")


@dataclass
class CheckResult:
    id: str  # "Q1.forward_parity"
    question: str  # "Q1"
    title: str
    status: str
    score: float
    max_score: float
    visibility: str  # "visible" or "hidden"
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0


@dataclass
class CellRun:
    """How one cell of the submission ran in the worker."""

    index: int
    label: str  # "cell 12" or "lines 40-55"
    questions: list[str]
    status: str  # ok | error | syntax-error | timeout | crashed | skipped
    stdout: str = ""
    stderr: str = ""
    error: dict[str, Any] | None = None
    duration: float = 0.0


@dataclass
class QuestionScore:
    id: str
    title: str
    score: float
    max_score: float
    passed: int
    total: int


@dataclass
class SubmissionResult:
    name: str
    source: str
    sha256: str
    status: str  # "graded", "invalid" or "crashed"
    reason: str = ""
    kind: str = ""  # "notebook" or "module"
    layout: str = ""  # "template", "cs231n" or "unknown"
    checks: list[CheckResult] = field(default_factory=list)
    cells: list[CellRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    challenge: dict[str, Any] = field(default_factory=dict)
    question_titles: dict[str, str] = field(default_factory=dict)
    grader_version: str = ""
    rubric_sha: str = ""
    duration: float = 0.0
    graded_at: str = ""
    # Who submitted (intake.Identity as a dict), and the hand overrides and late penalty
    # applied when rendering (course.apply_policies): {"kind", "target", "question",
    # "points" (the change), "reason"}. Neither is part of the cached grading.
    student: dict[str, Any] = field(default_factory=dict)
    adjustments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def raw_score(self) -> float:
        """The checks' points, before overrides and the late penalty."""
        return round(sum(c.score for c in self.checks), 4)

    @property
    def score(self) -> float:
        """The final score: the checks' points with overrides and the late penalty."""
        return round(self.raw_score + sum(a["points"] for a in self.adjustments), 4)

    @property
    def max_score(self) -> float:
        return round(sum(c.max_score for c in self.checks), 4)

    def questions(self) -> list[QuestionScore]:
        out = []
        for q in QUESTIONS:
            checks = [c for c in self.checks if c.question == q]
            if not checks:
                continue
            changed = sum(a["points"] for a in self.adjustments if a.get("question") == q)
            out.append(
                QuestionScore(
                    id=q,
                    title=self.question_titles.get(q, q),
                    score=round(sum(c.score for c in checks) + changed, 4),
                    max_score=round(sum(c.max_score for c in checks), 4),
                    passed=sum(c.status == "passed" for c in checks),
                    total=len(checks),
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubmissionResult:
        data = dict(data)
        data["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
        data["cells"] = [CellRun(**c) for c in data.get("cells", [])]
        return cls(**data)


# -- errors mapped to the student's cells


def cell_labels(result: SubmissionResult) -> dict[int, str]:
    return {c.index: c.label for c in result.cells}


def where(error: dict, labels: dict[int, str]) -> str:
    """Where the student's code raised an error, as they know it ("cell 13, line 4"); "" if elsewhere."""
    label = labels.get(error.get("cell"))  # type: ignore[arg-type]
    if label is None:
        return ""
    return label + (f", line {error['line']}" if error.get("line") else "")


def gradescope(result: SubmissionResult, *, student_view: bool = False) -> dict[str, Any]:
    """results.json in Gradescope's autograder schema.

    Each test's name begins with its question id. Hidden checks keep their score but,
    in the student view, not their message.
    """
    tests = []
    for c in result.checks:
        hidden = c.visibility == "hidden"
        output = c.message
        if hidden and student_view:
            output = "Hidden check: details are shown after grading is published."
        tests.append(
            {
                "name": f"{c.question} {c.title}",
                "score": c.score,
                "max_score": c.max_score,
                "status": "passed" if c.status == "passed" else "failed",
                "output": output,
                "visibility": "after_published" if hidden else "visible",
                "extra_data": {"id": c.id, "status": c.status},
            }
        )
    summary = f"{result.score:g} / {result.max_score:g}"
    if result.status != "graded":
        summary = f"{result.status} submission: {result.reason}\n" + summary
    doc: dict[str, Any] = {
        "score": result.score,
        "max_score": result.max_score,
        "output": summary,
        "execution_time": round(result.duration, 2),
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    if not student_view:
        doc["extra_data"] = {"submission": result.to_dict()}
    return doc
