"""Files rendered from the results model: each submission's results.json, and the
batch's CSV gradebook and summary.json. (The HTML reports are in report.py; writers.py
lists every output a batch writes.)"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from .assignment import default_assignment
from .results import CheckResult, SubmissionResult, cell_labels, question_ranges
from .views import detail_blocks  # the HTML report's reading of the checks' details

# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_results_json(result: SubmissionResult, folder: Path, *, instructor_extra: dict | None = None) -> Path:
    """``instructor_extra`` joins extra_data, which only the instructor sees (the
    similarity analysis's top match, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    doc = gradescope(result)
    if instructor_extra:
        doc["extra_data"].update(instructor_extra)
    # Written beside, then renamed over: an interrupted batch never leaves half a file.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    partial.replace(path)
    return path


# After the first columns: who (from the LMS), lateness, how the final score was reached,
# and what needs a look. ``score`` is the final score (overrides and late penalty included).
IDENTITY_COLUMNS = ["name", "student_id", "lms_submission_id", "late", "days_late"]
EXTRA_COLUMNS = ["raw_score", "late_penalty", "overrides", "grading_seconds", "q7_accuracy", "needs_a_look"]


def gradebook_csv(results: list[SubmissionResult], similar: list[dict | None] | None = None) -> str:
    """The gradebook; with ``similar`` (from the similarity analysis, one entry per
    result), each student's strongest match and its score, for the instructor: the
    gradebook is not shown to students."""
    from .flags import needs_a_look

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    similar_columns = ["similar_to", "similarity"] if similar is not None else []
    questions = default_assignment().questions
    writer.writerow(
        [
            "submission",
            "file",
            "status",
            "score",
            "max_score",
            *questions,
            "reason",
            *IDENTITY_COLUMNS,
            *EXTRA_COLUMNS,
            *similar_columns,
        ]
    )
    for n, (r, flags) in enumerate(zip(results, needs_a_look(results))):
        scores = {q.id: f"{q.score:g}" for q in r.questions()}
        student = r.student
        penalty = -sum(a["points"] for a in r.adjustments if a["kind"] == "late")
        accuracy = r.challenge.get("val_accuracy") if r.challenge else None
        days = student.get("days_late")
        row = [
            r.name,
            r.source,
            r.status,
            f"{r.score:g}",
            f"{r.max_score:g}",
            *(scores.get(q, "") for q in questions),
            r.reason,
            student.get("name", r.name),
            student.get("student_id", ""),
            student.get("lms_submission_id", ""),
            "true" if student.get("late") else "false",
            "" if days is None else days,
            f"{r.raw_score:g}",
            f"{penalty:g}",
            "; ".join(
                f"{a['target']}={a['after']:g} ({a['reason']})" for a in r.adjustments if a["kind"] == "override"
            ),
            f"{r.duration:.1f}",
            f"{accuracy:.4f}" if isinstance(accuracy, (int, float)) else "",
            "; ".join(f"{flag}: {why}" for flag, why in flags),
        ]
        if similar is not None:
            match = similar[n]
            row += [match["with"], f"{match['score']:.2f}"] if match else ["", ""]
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


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
    tests: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
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
