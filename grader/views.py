"""View models of the HTML reports: plain data (strings, numbers, lists, dicts) computed
from the results model, so that the templates only draw. The same reading of a check's
details serves the Gradescope output (render.check_markdown)."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from . import details
from .assignment import default_assignment
from .charts import ci_chart, histogram, line_chart
from .flags import trouble
from .results import STATUSES, CellRun, CheckResult, SubmissionResult, cell_labels, question_ranges, summary, where

OUTPUT_EXCERPT_CHARS = 4000  # of a cell's stdout or stderr; training logs can be long
VALUE_CHARS = 300  # of one value in a check's details table


# -- formatting ------------------------------------------------------------------------------


def fmt_number(value: Any) -> str:
    """A number as a person reads it: 4 significant digits, inf as ∞, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)  # as in Python: nesterov=True
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.4g}"
    return str(value)


def fmt_points(value: float) -> str:
    return f"{value:g}"


def fmt_percent(value: Any, digits: int = 1) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—"
    return f"{100 * value:.{digits}f}%"


def fmt_value(value: Any) -> str:
    """Any JSON-like value, on one line and cut to a readable length."""
    text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else fmt_number(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + " …"


def excerpt(text: str, limit: int = OUTPUT_EXCERPT_CHARS) -> str:
    """The start and the end of a long output (the end of a log says how it finished)."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    return f"{text[:head]}\n… {len(text) - limit:,} characters left out …\n{text[-tail:]}"


def fmt_detail(key: str, value: Any) -> str:
    """A value of a check's details; accuracies (fractions) read better as percentages."""
    if "acc" in key and isinstance(value, float) and 0 <= value <= 1:
        return fmt_percent(value, 1)
    return fmt_value(value)


def fraction_class(score: float, max_score: float) -> str:
    """The colour of a score bar: good, partial or poor."""
    if max_score <= 0:
        return "none"
    f = score / max_score
    return "good" if f >= 0.9 else "partial" if f >= 0.5 else "poor"


def bar_width(score: float, max_score: float) -> str:
    return f"{100 * max(0.0, min(1.0, score / max_score)) if max_score > 0 else 0:.1f}"


# -- errors mapped to the student's cells ------------------------------------------------------


def readable_traceback(text: str, labels: dict[int, str]) -> str:
    """The worker names a cell's code '<cell 12>' after its index; show the label the
    student sees in their notebook instead ('cell 13', or 'lines 40-55' of a .py)."""

    def label(match: re.Match) -> str:
        index = int(match.group(1))
        return f'"{labels.get(index, f"cell index {index}")}"'

    return re.sub(r'"<cell (\d+)>"', label, text or "")


def error_view(error: dict | None, labels: dict[int, str]) -> dict | None:
    if not isinstance(error, dict):
        return None
    return {
        "type": str(error.get("type") or "Error"),
        "message": str(error.get("message") or ""),
        "where": where(error, labels),
        "traceback": excerpt(readable_traceback(str(error.get("traceback") or ""), labels), 8000),
    }


# -- check details -----------------------------------------------------------------------------

PARITY_LABELS = {
    "max_abs_err": "max absolute error",
    "rel_err": "relative error",
    "grad_rel_err": "gradient relative error",
    "train_mode_rel_err": "relative error in training mode",
    "tolerance": "relative tolerance",
}
VALUE_LABELS = {
    "loss_before": "held-out loss before training",
    "loss_after": "held-out loss after training",
    "accuracy_before": "held-out accuracy before training",
    "accuracy_after": "held-out accuracy after training",
    "steps": "training steps",
    "batch_size": "batch size",
    "type": "type",
}


def same_setting(required: Any, found: Any) -> bool:
    if isinstance(required, (int, float)) and isinstance(found, (int, float)):
        return math.isclose(float(required), float(found), rel_tol=1e-9, abs_tol=1e-12)
    return required == found


def detail_blocks(check: CheckResult, labels: dict[int, str], *, student_view: bool) -> list[dict]:
    """A check's details as blocks a template can draw, one per part, by its kind (see
    details.py): parity numbers, per-tensor errors, a layer diff, optimizer settings,
    Kaiming stds, an error, what was substituted, and any other values."""
    blocks = []
    for part in details.parts(check.details):
        block = PART_BLOCKS[part["kind"]](part, labels)
        if block is None or (block["kind"] == "internal" and student_view):
            continue  # the grader's own traceback (a bug in a check) names grader code: instructors only
        blocks.append(block)
    return blocks


def _parity_block(part: details.Parity, labels: dict[int, str]) -> dict:
    tolerance = part.get("tolerance")

    def verdict(key: str, value: float) -> str:
        if tolerance is None or key not in ("rel_err", "grad_rel_err", "train_mode_rel_err"):
            return ""
        return "ok" if value <= tolerance else "bad"

    figures = [(k, part.get(k)) for k in PARITY_LABELS]
    rows = [(PARITY_LABELS[k], fmt_number(v), verdict(k, v)) for k, v in figures if isinstance(v, (int, float))]
    return {"kind": "values", "title": "Numerical parity", "rows": rows}


def _tensors_block(part: details.TensorErrors, labels: dict[int, str]) -> dict:
    rows = [
        (name, fmt_number(v.get("max_abs_err")), fmt_number(v.get("rel_err"))) for name, v in part["tensors"].items()
    ]
    return {"kind": "tensors", "rows": rows}


def _layer_diff_block(part: details.LayerDiff, labels: dict[int, str]) -> dict:
    rows = [{k: str(r.get(k, "")) for k in ("expected", "found", "status")} for r in part["rows"]]
    return {"kind": "diff", "rows": rows}


def _layer_lists_block(part: details.LayerLists, labels: dict[int, str]) -> dict:
    expected, found = part["expected"], part["found"]
    rows = []
    for i in range(max(len(expected), len(found))):
        e = str(expected[i]) if i < len(expected) else ""
        f = str(found[i]) if i < len(found) else ""
        status = "same" if e == f else "missing" if not f else "extra" if not e else "changed"
        rows.append({"expected": e, "found": f, "status": status})
    return {"kind": "diff", "rows": rows}


def _settings_block(part: details.Settings, labels: dict[int, str]) -> dict:
    found = part["found"]
    rows = [
        {
            "name": k,
            "required": fmt_number(v),
            "found": fmt_number(found.get(k)),
            "ok": same_setting(v, found.get(k)),
        }
        for k, v in part["required"].items()
    ]
    return {"kind": "settings", "type": str(part.get("type", "")), "rows": rows}


def _init_std_block(part: details.InitStd, labels: dict[int, str]) -> dict:
    rows = []
    for name, value in part["std"].items():
        value = value if isinstance(value, dict) else {}  # as read back from JSON
        found, expected = value.get("found"), value.get("expected")
        ratio = (
            found / expected
            if isinstance(found, (int, float)) and isinstance(expected, (int, float)) and expected
            else None
        )
        rows.append(
            {
                "name": str(name),
                "found": fmt_number(found),
                "expected": fmt_number(expected),
                "ratio": fmt_number(ratio),
            }
        )
    return {"kind": "std", "rows": rows}


def _error_block(part: details.CodeError, labels: dict[int, str]) -> dict:
    return {"kind": "error", "error": error_view(dict(part["error"]), labels)}


def _internal_block(part: details.InternalError, labels: dict[int, str]) -> dict | None:
    return {"kind": "internal", "traceback": str(part["traceback"])} if part.get("traceback") else None


def _substitution_block(part: details.Substitution, labels: dict[int, str]) -> dict | None:
    if not part["substituted"]:
        return None
    rows = [(str(what), str(by), "") for what, by in part["substituted"].items()]
    return {"kind": "values", "title": "Run with the specification's version of", "rows": rows}


def _values_block(part: details.Learning | details.Measurement | details.Values, labels: dict[int, str]) -> dict:
    named = part["values"] if part["kind"] == "values" else {k: v for k, v in part.items() if k != "kind"}
    rows = [(VALUE_LABELS.get(k, k.replace("_", " ")), fmt_detail(k, v), "") for k, v in named.items()]
    return {"kind": "values", "title": "Details", "rows": rows}


# How each kind of part is drawn: the one place that knows them all.
PART_BLOCKS: dict[str, Callable[[Any, dict[int, str]], dict | None]] = {
    "parity": _parity_block,
    "tensors": _tensors_block,
    "layer_diff": _layer_diff_block,
    "layer_lists": _layer_lists_block,
    "settings": _settings_block,
    "init_std": _init_std_block,
    "error": _error_block,
    "internal": _internal_block,
    "substitution": _substitution_block,
    "learning": _values_block,
    "measurement": _values_block,
    "values": _values_block,
}


# -- page models -------------------------------------------------------------------------------


def cell_view(cell: CellRun, labels: dict[int, str]) -> dict:
    return {
        "label": cell.label,
        "questions": ", ".join(cell.questions) or "—",
        "status": cell.status,
        "duration": f"{cell.duration:.1f} s",
        "error": error_view(cell.error, labels),
        "stdout": excerpt(cell.stdout),
        "stderr": excerpt(cell.stderr),
        "stdout_chars": len(cell.stdout),
        "stderr_chars": len(cell.stderr),
    }


def challenge_view(challenge: dict) -> dict | None:
    """Question 7's measurements: accuracies with CIs, flags, and the training curves."""
    if not challenge:
        return None
    c = challenge
    threshold = c.get("threshold")
    rows: list[dict[str, Any]] = []
    judged: dict[str, Any] = c["eval_set"] if isinstance(c.get("eval_set"), dict) else {}
    judged_name = str(judged.get("short") or "validation")
    for name, acc_key, ci_key, n_key in (
        (judged_name, "val_accuracy", "val_ci", "val_images"),
        ("test", "test_accuracy", "test_ci", "test_images"),
    ):
        acc: Any = c.get(acc_key)
        ci: Any = c.get(ci_key)
        if not isinstance(acc, (int, float)) or (name == "test" and judged_name == "test set"):
            continue
        ci_ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci)
        rows.append(
            {
                "name": name,
                "accuracy": fmt_percent(acc, 2),
                "ci": f"{fmt_percent(ci[0], 2)} – {fmt_percent(ci[1], 2)}" if ci_ok else "—",
                "images": fmt_number(c.get(n_key)),
                "meets": acc >= threshold if isinstance(threshold, (int, float)) else None,
                "raw": (name, acc, list(ci) if ci_ok else None),
            }
        )
    history = c.get("history") if isinstance(c.get("history"), dict) else None
    curves = []
    if history:
        epochs = history.get("epoch") or list(
            range(1, 1 + len(history.get("train_loss") or history.get("val_acc") or []))
        )
        if history.get("train_loss"):
            curves.append(line_chart("training loss", epochs, history["train_loss"]))
        if history.get("val_acc"):
            curves.append(
                line_chart(
                    "validation accuracy",
                    epochs,
                    history["val_acc"],
                    percent=True,
                    target=threshold if isinstance(threshold, (int, float)) else None,
                    target_label=f"required {fmt_percent(threshold, 0)}",
                )
            )
    mode = c.get("mode", "")
    self_reported = c.get("self_reported")
    facts = [
        (
            "how it was measured",
            {
                "checkpoint": "the student's saved checkpoint, evaluated by the grader",
                "retrain": "retrained by the grader from the student's code",
                "none": "no model could be evaluated",
            }.get(mode, str(mode or "—")),
        ),
        ("required accuracy", fmt_percent(threshold, 0)),
        (
            "self-reported accuracy",
            fmt_percent(self_reported, 2) if isinstance(self_reported, (int, float)) else "not reported",
        ),
    ]
    if judged:
        facts.append(("images judged", f"{judged.get('name', '—')}: {judged.get('reason', '')}"))
    perturbed = c.get("perturbed") if isinstance(c.get("perturbed"), dict) else None
    if perturbed and isinstance(perturbed.get("accuracy"), (int, float)):
        facts.append(
            (
                "on perturbed copies",
                f"{fmt_percent(perturbed['accuracy'])} on {fmt_number(perturbed.get('images'))} images shifted, "
                f"mirrored, re-encoded or noisy ({fmt_percent(perturbed.get('clean_accuracy'))} unchanged)"
                + ("; collapses: no accuracy credit, flagged" if perturbed.get("collapsed") else ""),
            )
        )
    unusual = c.get("unusual_state") if isinstance(c.get("unusual_state"), dict) else None
    if unusual:
        extra = sum(v for k, v in unusual.items() if k.endswith("_elements") and isinstance(v, int))
        facts.append(("state outside ordinary layers", f"{fmt_number(extra)} values"))
    if "margin" in c:
        facts.append(("allowed gap to self-report", fmt_percent(c.get("margin"), 1)))
    if "epochs" in c:
        facts.append(("epochs", fmt_number(c.get("epochs"))))
    if "train_seconds" in c:
        facts.append(("training time", f"{fmt_number(c.get('train_seconds'))} s"))
    return {
        "mode": mode,
        "rows": rows,
        "facts": facts,
        "flagged": bool(c.get("flagged")),
        "memorised": bool(c.get("memorisation_flag")),
        "near_threshold": bool(c.get("near_threshold")),
        "over_budget": bool(c.get("over_budget")),
        "self_reported": fmt_percent(self_reported, 2) if isinstance(self_reported, (int, float)) else None,
        "ci_chart": ci_chart(
            [r["raw"] for r in rows], threshold, self_reported if isinstance(self_reported, (int, float)) else None
        ),
        "curves": curves,
    }


def submission_view(result: SubmissionResult, *, student_view: bool) -> dict:
    """Everything report.html.j2 draws, computed here so the template stays simple."""
    labels = cell_labels(result)
    shown = [c for c in result.checks if not (student_view and c.visibility == "hidden")]
    hidden = [c for c in result.checks if c.visibility == "hidden"]
    questions = []
    unanswered = result.unanswered()
    for q in result.questions():
        checks = [c for c in shown if c.question == q.id]
        q_hidden = [c for c in hidden if c.question == q.id]
        changed = sum(a["points"] for a in result.adjustments if a.get("question") == q.id)
        score = sum(c.score for c in checks) + changed if student_view else q.score
        max_score = sum(c.max_score for c in checks) if student_view else q.max_score
        questions.append(
            {
                "id": q.id,
                "title": q.title,
                "score": fmt_points(round(score, 4)),
                "max_score": fmt_points(round(max_score, 4)),
                "bar": bar_width(score, max_score),
                "bar_class": fraction_class(score, max_score),
                "passed": sum(c.status == "passed" for c in checks),
                "total": len(checks),
                "hidden_count": len(q_hidden),
                "hidden_points": fmt_points(sum(c.max_score for c in q_hidden)),
                "unanswered": q.id in unanswered,
                "checks": [
                    {
                        "id": c.id,
                        "title": c.title,
                        "status": c.status,
                        "score": fmt_points(c.score),
                        "max_score": fmt_points(c.max_score),
                        "hidden": c.visibility == "hidden",
                        "message": c.message,
                        "duration": f"{c.duration:.2f} s",
                        "blocks": detail_blocks(c, labels, student_view=student_view),
                    }
                    for c in checks
                ],
            }
        )
    adjusted = sum(a["points"] for a in result.adjustments)
    score = sum(c.score for c in shown) + adjusted
    max_score = sum(c.max_score for c in shown)
    cells = [cell_view(c, labels) for c in result.cells]
    return {
        "student_view": student_view,
        "identity": identity_view(result),
        "adjustments": [
            {
                "kind": a["kind"],
                "target": a["target"],
                "points": f"{a['points']:+g}",
                "change": f"{a['before']:g} → {a['after']:g}" if "before" in a else f"{a['points']:+g}",
                "reason": a["reason"],
            }
            for a in result.adjustments
        ],
        "raw_score": fmt_points(result.raw_score),
        "name": result.name,
        "source": result.source,
        "status": result.status,
        "reason": result.reason,
        "kind": result.kind,
        "layout": result.layout,
        "sha256": result.sha256[:12],
        "graded_at": result.graded_at,
        "grader_version": result.grader_version,
        "duration": f"{result.duration:.1f} s",
        "score": fmt_points(round(score, 4)),
        "max_score": fmt_points(round(max_score, 4)),
        "bar": bar_width(score, max_score),
        "bar_class": fraction_class(score, max_score),
        "status_counts": {s: sum(c.status == s for c in shown) for s in STATUSES},
        "hidden_count": len(hidden),
        "hidden_points": fmt_points(round(sum(c.max_score for c in hidden), 4)),
        "questions": questions,
        "notes": result.notes,
        "unanswered": question_ranges(unanswered) if unanswered else "",
        "cells": cells,
        "failing_cells": [c for c in cells if c["status"] not in ("ok", "skipped")],
        "challenge": challenge_view(result.challenge),
    }


def identity_view(result: SubmissionResult) -> list[tuple[str, str]]:
    """Who submitted and when, as the LMS says: label and value pairs (empty for a plain folder)."""
    s = result.student or {}
    rows = [
        ("student", s.get("name", "")),
        ("student id", s.get("student_id", "")),
        ("e-mail", s.get("email", "")),
        (f"{s.get('lms', 'LMS').capitalize()} submission", s.get("lms_submission_id", "")),
        ("submitted", s.get("submitted_at", "")),
    ]
    if s.get("late"):
        days = s.get("days_late")
        rows.append(("late", f"{days} day(s)" if days else "yes"))
    return [(label, str(value)) for label, value in rows if value]


# -- the class summary -------------------------------------------------------------------------


SIMILAR_PAIRS_SHOWN = 100  # the class page lists at most this many flagged pairs


def similarity_view(analysis, links: dict[str, str]) -> dict | None:
    """The flagged pairs of a similarity analysis (grader/similarity.py) for the class
    page: names, score, questions, other evidence, and both sides' matching regions."""
    if analysis is None:
        return None
    pairs = []
    for m in [*analysis.flagged(), *analysis.flagged_archive()][:SIMILAR_PAIRS_SHOWN]:
        views = analysis.views(m)
        pairs.append(
            {
                "a": m.a,
                "a_link": links.get(m.a),
                "b": m.b,
                "b_link": None if m.archive else links.get(m.b),
                "archive": m.archive,
                "score": f"{m.score:.2f}",
                "questions": ", ".join(m.questions) or "—",
                "evidence": m.evidence,
                "views": [
                    {"question": q, "left": left, "right": right} for q, (left, right) in views.items() if left or right
                ],
            }
        )
    flagged = len(analysis.flagged()) + len(analysis.flagged_archive())
    return {
        "pairs": pairs,
        "flagged": flagged,
        "more": max(0, flagged - len(pairs)),
        "threshold": f"{analysis.threshold:g}",
        "submissions": analysis.submissions,
    }


def class_view(
    results: list[SubmissionResult],
    folders: list[str],
    *,
    skipped: list[tuple[str, str]] | None = None,
    partial: bool = False,
    similarity=None,
) -> dict:
    from .flags import needs_a_look

    figures = summary(results)
    questions = [q for q in default_assignment().questions if any(c.question == q for r in results for c in r.checks)]
    titles = next((r.question_titles for r in results if r.question_titles), {})
    students: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for r, folder, flags in zip(results, folders, needs_a_look(results)):
        link = f"{folder}/report.html"
        scores = {q.id: q for q in r.questions()}
        accuracy = (r.challenge or {}).get("val_accuracy")
        students.append(
            {
                "name": r.name,
                "student_id": r.student.get("student_id", ""),
                "late": bool(r.student.get("late")),
                "flags": [flag for flag, _ in flags],
                "seconds": f"{r.duration:.1f}",
                "seconds_sort": r.duration,
                "q7": fmt_percent(accuracy, 1),
                "q7_sort": accuracy if isinstance(accuracy, (int, float)) else -1,
                "link": link,
                "status": r.status,
                "graded": r.status == "graded",
                "score": fmt_points(r.score),
                "score_sort": r.score if r.status == "graded" else -1,
                "max_score": fmt_points(r.max_score),
                "bar": bar_width(r.score, r.max_score),
                "bar_class": fraction_class(r.score, r.max_score),
                "timeouts": bool(trouble(r)),
                "questions": [
                    {
                        "score": fmt_points(scores[q].score) if q in scores else "—",
                        "sort": scores[q].score if q in scores and r.status == "graded" else -1,
                        "class": fraction_class(scores[q].score, scores[q].max_score)
                        if q in scores and r.status == "graded"
                        else "none",
                    }
                    for q in questions
                ],
            }
        )
        problems.extend({"name": r.name, "link": link, "kind": flag, "reason": why} for flag, why in flags)
    graded = figures["graded"]
    per_question = []
    for q in questions:
        f = figures["questions"].get(q)
        if f is None:
            continue
        per_question.append(
            {
                "id": q,
                "title": titles.get(q, q),
                "mean": f"{f['mean_score']:.2f}",
                "max_score": fmt_points(f["max_score"]),
                "mean_bar": bar_width(f["mean_score"], f["max_score"]),
                "mean_class": fraction_class(f["mean_score"], f["max_score"]),
                "full_marks": fmt_percent(f["full_marks_rate"], 0),
                "full_marks_bar": f"{100 * f['full_marks_rate']:.1f}",
            }
        )
    most_failed = [
        {**m, "rate": fmt_percent(m["failed"] / graded, 0), "bar": f"{100 * m['failed'] / graded:.1f}"}
        for m in figures["most_failed"]
        if graded
    ]
    totals = [r.score for r in results if r.status == "graded"]
    max_score = figures["max_score"] or 0.0
    return {
        "questions": questions,
        "students": students,
        "problems": problems,
        "partial": partial,
        "skipped": [{"path": path, "reason": why} for path, why in skipped or []],
        "identities": any(r.student.get("student_id") for r in results),
        "submissions": figures["submissions"],
        "graded": graded,
        "invalid": len(figures["invalid"]),
        "crashed": len(figures["crashed"]),
        "timeouts": sum(p["kind"] == "timeout" for p in problems),
        "mean": f"{figures['mean_score']:.1f}" if figures["mean_score"] is not None else "—",
        "median": f"{statistics.median(totals):g}" if totals else "—",
        "max_score": fmt_points(max_score),
        "histogram": histogram(totals, max_score, figures["mean_score"]) if totals else Markup(""),
        "per_question": per_question,
        "most_failed": most_failed,
        "similar": similarity_view(similarity, {f: f"{f}/report.html" for f in folders}),
    }
