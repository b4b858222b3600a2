"""The one results model. Every output (results.json, the gradebook, the HTML reports,
the self-check's terminal lines) is rendered from a ``SubmissionResult``."""

from __future__ import annotations

import dataclasses
import re
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

    def unanswered(self) -> list[str]:
        """Questions not answered yet: no check passed, and a cell of the question
        raised the template's NotImplementedError or a check said the answer is missing.
        Feedback groups them in one line so that the real failures stand out."""
        out = []
        for q in QUESTIONS:
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


# -- Gradescope's results.json (https://gradescope-autograders.readthedocs.io/en/latest/specs/)

# What a hidden check is before grades are published: Gradescope shows students nothing of
# an "after_published" test, and hides the total while any test is hidden.
GRADESCOPE_VISIBILITY = {"visible": "visible", "hidden": "after_published"}
LEADERBOARD_NAME = "Validation accuracy"


def gradescope(result: SubmissionResult, *, lines: list[str] | None = None) -> dict[str, Any]:
    """results.json in Gradescope's autograder format.

    One test per check, numbered "question.check" ("1.3") and tagged with its question;
    outputs are Markdown so that layer diffs and parity tables keep their columns. The
    top-level output is what every student sees at once: the visible checks' points, and
    only the number and worth of the hidden ones (never their points or the total), like
    report-student.html. ``lines`` are further sentences for it (lateness, say).
    """
    labels = cell_labels(result)
    tests, numbers = [], dict.fromkeys(QUESTIONS, 0)
    for c in result.checks:
        numbers[c.question] = numbers.get(c.question, 0) + 1
        tests.append(
            {
                "name": f"{c.question} {c.title}",
                "number": f"{c.question.lstrip('Q')}.{numbers[c.question]}",
                "score": c.score,
                "max_score": c.max_score,
                "status": "passed" if c.status == "passed" else "failed",
                "output": check_markdown(c, labels),
                "output_format": "md",
                "tags": [c.question],
                "visibility": GRADESCOPE_VISIBILITY[c.visibility],
                "extra_data": {"id": c.id, "status": c.status},
            }
        )
    doc: dict[str, Any] = {
        "score": result.score,
        "execution_time": max(1, round(result.duration)),
        "output": summary_markdown(result, lines or []),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        # Stored by Gradescope for instructors, never shown to students; the checks'
        # details are in the tests' outputs, the cells' output in the HTML reports.
        "extra_data": {
            "submission": {k: v for k, v in result.to_dict().items() if k not in ("checks", "cells")},
            "max_score": result.max_score,
        },
    }
    accuracy = result.challenge.get("val_accuracy")
    if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
        doc["leaderboard"] = [{"name": LEADERBOARD_NAME, "value": round(float(accuracy), 4), "order": "desc"}]
    return doc


def summary_markdown(result: SubmissionResult, lines: list[str]) -> str:
    visible = [c for c in result.checks if c.visibility == "visible"]
    hidden = [c for c in result.checks if c.visibility == "hidden"]
    parts = []
    if result.status != "graded":
        what = "could not be graded" if result.status == "invalid" else "could not be graded to the end"
        parts.append(f"**This submission {what}:** {md_text(result.reason)}")
    points = f"{sum(c.score for c in visible):g} / {sum(c.max_score for c in visible):g}"
    if hidden:
        worth = f"{sum(c.max_score for c in hidden):g}"
        parts.append(
            f"**Visible checks: {points} points.** {len(hidden)} hidden check{'s' if len(hidden) != 1 else ''}"
            f" worth {worth} points in total {'are' if len(hidden) != 1 else 'is'} graded as well;"
            " their results are shown after grading is published."
        )
    else:
        parts.append(f"**Score: {points} points.**")
    if result.unanswered():
        parts.append(f"{question_ranges(result.unanswered())} not answered yet.")
    for a in result.adjustments:  # the late penalty and hand overrides, with their reasons
        what = "Late penalty" if a.get("kind") == "late" else "Adjusted by your instructor"
        parts.append(f"{what}: {a.get('points', 0):+g} points ({md_text(a.get('reason', ''))}).")
    parts.extend(md_text(line) for line in lines)
    if result.notes:
        parts.append("\n".join(f"- {md_text(note)}" for note in result.notes))
    return "\n\n".join(parts)


def check_markdown(check: CheckResult, labels: dict[int, str]) -> str:
    """A check's message and its details (tables as aligned text), in Markdown."""
    from .views import detail_blocks  # the HTML report's reading of the same details

    parts = [md_text(check.message or check.status)]
    for block in detail_blocks(check, labels, student_view=True):
        kind, rows = block["kind"], block.get("rows", [])
        if kind == "values":
            text = _text_table(
                [block["title"], ""], [[n, f"{v} ({verdict})" if verdict else v] for n, v, verdict in rows]
            )
        elif kind == "tensors":
            text = _text_table(["tensor", "max absolute error", "relative error"], rows)
        elif kind == "diff":
            text = _text_table(["expected", "found", ""], [[r["expected"], r["found"], r["status"]] for r in rows])
        elif kind == "settings":
            head = f"optimizer ({block['type']})" if block.get("type") else "optimizer"
            text = _text_table(
                [head, "required", "found", ""],
                [[r["name"], r["required"], r["found"], "ok" if r["ok"] else "WRONG"] for r in rows],
            )
        elif kind == "std":
            text = _text_table(
                ["weight", "std found", "Kaiming std sqrt(2 / fan_in)", "ratio"],
                [[r["name"], r["found"], r["expected"], r["ratio"]] for r in rows],
            )
        elif kind == "error" and block.get("error"):
            error = block["error"]
            where_ = f" (raised in {error['where']})" if error["where"] else ""
            parts.append(md_text(f"{error['type']}: {error['message']}{where_}"))
            text = error["traceback"]
        else:
            continue
        if text:
            parts.append(_fenced(text))
    return "\n\n".join(parts)


def md_text(text: str) -> str:
    """Plain text as Markdown that renders as written: no markup, links or HTML from a student."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]#|])", r"\\\1", text)


def _fenced(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


def _text_table(header: list[str], rows: list) -> str:
    table = [[str(v) for v in header], *([str(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table)
