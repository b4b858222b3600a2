"""What needs an instructor's look, submission by submission.

Each submission gets a list of (flag, reason) pairs: plain data that the class page,
the gradebook and anything else can show. Flags are generic on purpose; a new kind is
one more pair, not a new column.
"""

from __future__ import annotations

from .assignment import default_assignment
from .results import SubmissionResult

Flag = tuple[str, str]


def challenge_flags(result: SubmissionResult) -> list[Flag]:
    """Question 7: an accuracy that collapses on perturbed images, an interval straddling
    the threshold (unless the rubric says to ignore that), retraining, its budget, a
    self-reported accuracy above what the grader measured."""
    c = result.challenge or {}
    q = default_assignment().challenge or "challenge"
    flags: list[Flag] = []
    if c.get("memorisation_flag"):
        p = c.get("perturbed") or {}
        flags.append(
            (
                "memorised",
                f"{q} accuracy falls from {100 * p.get('clean_accuracy', 0):.1f}% to {100 * p.get('accuracy', 0):.1f}% "
                "on slightly perturbed images: it recognises public images rather than generalising",
            )
        )
    threshold, ci, acc = c.get("threshold"), c.get("val_ci"), c.get("val_accuracy")
    if (
        c.get("near_threshold", True)
        and isinstance(threshold, (int, float))
        and isinstance(ci, (list, tuple))
        and len(ci) == 2
        and all(isinstance(v, (int, float)) for v in ci)
        and ci[0] < threshold <= ci[1]
    ):
        shown = f"{100 * acc:.1f}% " if isinstance(acc, (int, float)) else ""
        flags.append(
            (
                "near threshold",
                f"{q} validation accuracy {shown}(95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}%) "
                f"straddles the {100 * threshold:g}% threshold",
            )
        )
    if c.get("mode") == "retrain":
        flags.append(("retrained", f"no usable {q} checkpoint: the grader retrained the model from the student's code"))
    if c.get("over_budget"):
        flags.append(("over budget", f"{q} retraining ran past its time budget"))
    if c.get("flagged"):
        flags.append(("self-report", f"the self-reported {q} accuracy is above the grader's confidence interval"))
    return flags


def needs_a_look(results: list[SubmissionResult]) -> list[list[Flag]]:
    """The flags of each result, in order."""
    by_hash: dict[str, list[str]] = {}
    by_checkpoint: dict[str, list[str]] = {}
    for r in results:
        if r.student.get("source_sha256") or r.sha256:
            by_hash.setdefault(r.student.get("source_sha256") or r.sha256, []).append(r.name)
        if r.student.get("checkpoint_sha256"):
            by_checkpoint.setdefault(r.student["checkpoint_sha256"], []).append(r.name)
    out = []
    for r in results:
        flags: list[Flag] = []
        if r.status != "graded":
            flags.append((r.status, r.reason or "no reason recorded"))
        elif trouble(r):
            flags.append(("timeout", trouble(r)))
        if r.status == "graded" and r.max_score > 0 and r.raw_score == 0:
            flags.append(("all zero", "no check earned a point"))
        twins = [n for n in by_hash.get(r.student.get("source_sha256") or r.sha256, []) if n != r.name]
        if twins:
            flags.append(("identical", "the notebook or module is byte-identical to " + ", ".join(twins)))
        else:
            same = [n for n in by_checkpoint.get(r.student.get("checkpoint_sha256", ""), []) if n != r.name]
            if same:
                what = default_assignment().challenge or "challenge"
                flags.append(("same checkpoint", f"the {what} checkpoint is byte-identical to " + ", ".join(same)))
        flags.extend(challenge_flags(r))
        for a in r.adjustments:
            if a["kind"] == "override":
                flags.append(("override", f"{a['target']}: {a['before']:g} → {a['after']:g} points ({a['reason']})"))
            elif a["kind"] == "late":
                flags.append(("late", f"{a['points']:g} points: {a['reason']}"))
        if r.student.get("late") and not any(a["kind"] == "late" for a in r.adjustments):
            days = r.student.get("days_late")
            flags.append(
                ("late", f"{days} day(s) late; no late penalty set" if days else "marked late; no late penalty set")
            )
        out.append(flags)
    return out


def trouble(result: SubmissionResult) -> str:
    """Why a graded submission ran out of time somewhere, or "" if it did not."""
    cells = [c.label for c in result.cells if c.status == "timeout"]
    checks = [c.id for c in result.checks if c.status == "timeout"]
    parts = []
    if cells:
        parts.append("timed out in " + ", ".join(cells))
    if checks:
        parts.append(f"{len(checks)} check(s) timed out: " + ", ".join(checks[:5]) + (" …" if len(checks) > 5 else ""))
    return "; ".join(parts)
