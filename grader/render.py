"""Files rendered from the results model: each submission's results.json, and the
batch's CSV gradebook and summary.json. (The HTML reports are in report.py; writers.py
lists every output a batch writes.)"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .results import QUESTIONS, SubmissionResult, gradescope

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
    writer.writerow(
        [
            "submission",
            "file",
            "status",
            "score",
            "max_score",
            *QUESTIONS,
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
            *(scores.get(q, "") for q in QUESTIONS),
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
    for q in QUESTIONS:
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
