"""What needs an instructor's look, submission by submission.

Each submission gets a list of (flag, reason) pairs: plain data that the class page,
the gradebook and anything else can show. Flags are generic on purpose; a new kind is
one more pair, not a new column.
"""

from __future__ import annotations

from .results import SubmissionResult

Flag = tuple[str, str]


def challenge_flags(result: SubmissionResult) -> list[Flag]:
    """Question 7: an accuracy that collapses on perturbed images, an interval straddling
    the threshold (unless the rubric says to ignore that), retraining, its budget, a
    self-reported accuracy above what the grader measured."""
    c = result.challenge or {}
    flags: list[Flag] = []
    if c.get("memorisation_flag"):
        p = c.get("perturbed") or {}
        flags.append(
            (
                "memorised",
                f"Q7 accuracy falls from {100 * p.get('clean_accuracy', 0):.1f}% to {100 * p.get('accuracy', 0):.1f}% "
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
                f"Q7 validation accuracy {shown}(95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}%) "
                f"straddles the {100 * threshold:g}% threshold",
            )
        )
    if c.get("mode") == "retrain":
        flags.append(("retrained", "no usable Q7 checkpoint: the grader retrained the model from the student's code"))
    if c.get("over_budget"):
        flags.append(("over budget", "Q7 retraining ran past its time budget"))
    if c.get("flagged"):
        flags.append(("self-report", "the self-reported Q7 accuracy is above the grader's confidence interval"))
    return flags


def needs_a_look(results: list[SubmissionResult]) -> list[list[Flag]]:
    """The flags of each result, in order."""
    from .views import trouble

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
                flags.append(("same checkpoint", "the Q7 checkpoint is byte-identical to " + ", ".join(same)))
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
