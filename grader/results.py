"""The one results model. Every output (results.json, the gradebook, the HTML reports,
the self-check's terminal lines) is rendered from a ``SubmissionResult``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .assignment import default_assignment

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
    ran_after_error: list = field(default_factory=list)  # (first, last) lines run after its error


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
        for q in default_assignment().questions:
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

    def unanswered(self) -> list[str]:
        """Questions not answered yet: no check passed, and a cell of the question
        raised the template's NotImplementedError or a check said the answer is missing.
        Feedback groups them in one line so that the real failures stand out."""
        out = []
        for q in default_assignment().questions:
            checks = [c for c in self.checks if c.question == q]
            if not checks or any(c.status == "passed" for c in checks):
                continue
            raised = any(q in r.questions and (r.error or {}).get("type") == "NotImplementedError" for r in self.cells)
            if raised or any("not answered yet" in c.message for c in checks):
                out.append(q)
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


def question_ranges(questions: list[str]) -> str:
    """["Q2", "Q3", "Q4", "Q6"] -> "Q2-Q4, Q6"."""
    numbers = sorted(int(q[1:]) for q in questions)
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"Q{r[0]}" if len(r) == 1 else f"Q{r[0]}-Q{r[-1]}" for r in runs)


def summary(results: list[SubmissionResult]) -> dict:
    """Class-level figures: totals, per-question pass rates, most failed checks."""
    graded = [r for r in results if r.status == "graded"]
    failures: dict[str, int] = {}
    titles: dict[str, str] = {}
    for r in graded:
        for c in r.checks:
            titles[c.id] = f"{c.question} {c.title}"
            if c.status != "passed":
                failures[c.id] = failures.get(c.id, 0) + 1
    per_question = {}
    for q in default_assignment().questions:
        scored = [s for r in graded for s in r.questions() if s.id == q]
        if scored:
            per_question[q] = {
                "mean_score": sum(s.score for s in scored) / len(scored),
                "max_score": scored[0].max_score,
                "full_marks_rate": sum(s.score >= s.max_score for s in scored) / len(scored),
            }
    return {
        "submissions": len(results),
        "graded": len(graded),
        "invalid": [{"name": r.name, "reason": r.reason} for r in results if r.status == "invalid"],
        "crashed": [{"name": r.name, "reason": r.reason} for r in results if r.status == "crashed"],
        "timeouts": [
            {
                "name": r.name,
                "checks": [c.id for c in r.checks if c.status == "timeout"],
                "cells": [c.label for c in r.cells if c.status == "timeout"],
            }
            for r in results
            if any(c.status == "timeout" for c in r.checks) or any(c.status == "timeout" for c in r.cells)
        ],
        "mean_score": sum(r.score for r in graded) / len(graded) if graded else None,
        "max_score": results[0].max_score if results else None,
        "questions": per_question,
        "most_failed": [
            {"id": k, "title": titles[k], "failed": n}
            for k, n in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        ],
    }
