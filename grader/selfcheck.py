"""The student's self-check: the public checks of the real grader, in seconds, with an
explanation of every failure.

    grade --self-check hw05.ipynb                        from a terminal
    from grader import self_check; self_check()          from the notebook itself

It runs the same engine as the instructor's grading, but only the checks the rubric
marks "visible", so it never shows hidden inputs or expected values; it needs neither
the reference solution nor the dataset (checks that need the images say so).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, TextIO

from .assignment import default_assignment
from .results import SubmissionResult, cell_labels, question_ranges
from .rubric import Rubric, load_rubric

# What the hidden checks cover, in general terms, for the closing paragraph.
HIDDEN_COVERAGE = (
    "agreement with a reference implementation on secret random inputs (outputs and gradients), "
    "exact optimizer and update steps, short training runs on real images, "
    "constructor arguments, and the provided helpers your answers rely on"
)
FAILING = ("failed", "error", "timeout")


def _notebook_history() -> list[str] | None:
    """The cells this IPython kernel has executed, in order (None outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    history = list(shell.user_ns.get("In", []))[1:]
    return [src for src in history if src.strip() and "self_check(" not in src]


def _history_submission(sources: list[str]):
    from .preprocess import Cell, prepare
    from .submission import Submission

    cells = prepare([Cell(index=i, source=src, label=f"In [{i + 1}]") for i, src in enumerate(sources)])
    digest = hashlib.sha256("\n".join(sources).encode()).hexdigest()
    return Submission(
        name="this notebook",
        path=Path("this_notebook.ipynb"),
        kind="notebook",
        sha256=digest,
        cells=cells,
        files=_checkpoint_beside(),
    )


def _checkpoint_beside(folder: Path = Path(".")) -> dict[str, bytes]:
    """The Question 7 checkpoint saved in the notebook's folder (best_model.pt, or
    another preferred name), which a student's notebook writes beside itself."""
    from .checkpoint import PREFERRED_NAMES
    from .submission import MAX_COMPANION_BYTES

    for name in PREFERRED_NAMES:
        path = folder / name
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_COMPANION_BYTES:
            return {path.name: path.read_bytes()}
    return {}


def _file_submission(path: Path):
    """The notebook or module at ``path``, with the checkpoint beside it when the
    submission itself names none (a lone file's own pairing comes first)."""
    from .checkpoint import pick_checkpoint
    from .submission import load_submission

    submission = load_submission(path)
    if path.is_file() and pick_checkpoint(submission.files) is None:
        submission.files.update(_checkpoint_beside(path.parent))
    return submission


def _data_loader(data: str | None, cache_dir: str | None):
    """A loader for CIFAR-10 if it can be found, else None (checks that need it skip)."""
    from .data import DataError, load_cifar10

    try:
        dataset = load_cifar10(data, cache_dir=cache_dir)
    except DataError:
        if data is not None:
            raise
        return None
    return lambda: dataset


def render(result: SubmissionResult, rubric: Rubric) -> tuple[str, bool]:
    """The terminal text for a self-check result, and whether every public check passed."""
    lines = [f"Self-check of {result.source} (public checks only)", ""]
    if result.status != "graded":
        lines += [f"  Could not check this submission: {result.reason}", ""]
        return "\n".join(lines), False
    ok = True
    unanswered = result.unanswered()
    for q in result.questions():
        checks = [c for c in result.checks if c.question == q.id]
        failing = [c for c in checks if c.status in FAILING]
        skipped = [c for c in checks if c.status == "skipped"]
        ok &= not failing
        if q.id in unanswered:
            verdict = "not answered yet"
        elif failing:
            verdict = f"FAIL  {len(failing)} of {len(checks)} checks"
        elif skipped and len(skipped) == len(checks):
            verdict = "skipped"
        else:
            verdict = "pass" + (f" ({len(skipped)} skipped)" if skipped else "")
        lines.append(f"  {q.id}  {q.title[:46]:<46} {q.score:>5g}/{q.max_score:<4g} {verdict}")
    problems = [c for c in result.checks if c.status in FAILING and c.question not in unanswered]
    if problems:
        lines += ["", "What to fix:"]
        for c in problems:
            lines.append(f"  {c.question}  {c.title}")
            lines.append(f"      {c.message}")
    if unanswered:
        points = sum(c.max_score for c in result.checks if c.question in unanswered)
        lines += ["", f"Not answered yet: {question_ranges(unanswered)} ({points:g} points)."]
    skipped = [c for c in result.checks if c.status == "skipped" and c.question not in unanswered]
    if skipped:
        lines += ["", "Not checked:"]
        lines += [f"  {c.question}  {c.title}: {c.message}" for c in skipped]
    broken = [  # the template's "not answered yet" errors are already summed up above
        r
        for r in result.cells
        if r.status != "ok" and r.error and not (unanswered and "not answered yet" in str(r.error.get("message")))
    ]
    if broken:
        labels = cell_labels(result)
        lines += ["", "Cells that raised an error:"]
        for r in broken:
            err: dict[str, Any] = r.error or {}
            raised_in = labels.get(err.get("cell", -1), r.label)
            where = raised_in + (f", line {err['line']}" if err.get("line") else "")
            if raised_in != r.label:
                where += f" (while running {r.label})"
            lines.append(f"  {where}: {err.get('type')}: {str(err.get('message'))[:200]}")
    hidden = {cid: e for cid, e in rubric.entries.items() if e.visibility == "hidden"}
    hidden_points = sum(e.points for e in hidden.values())
    lines += [
        "",
        f"Public checks: {result.score:g} of {result.max_score:g} points"
        + (" — every check that ran passed" if ok else "")
        + (f" ({sum(c.max_score for c in skipped):g} points not checked)." if skipped else "."),
        f"Hidden checks: {len(hidden)} more checks worth {hidden_points:g} points run when your submission is graded.",
        f"They cover {HIDDEN_COVERAGE}.",
        "Passing every public check is a good sign, not yet full marks.",
    ]
    return "\n".join(lines), ok


def self_check(
    path: str | Path | None = None,
    *,
    data: str | None = None,
    cache_dir: str | None = None,
    rubric: str | Path | None = None,
    stream: TextIO | None = None,
    retrain: bool = False,
    variant: str | Path | None = None,
) -> int:
    """Run the public checks on a notebook or module (or, inside Jupyter with no path,
    on the cells this notebook has run), print what to fix, and return 0 if every
    public check passed, 1 otherwise. Question 7 is measured from the checkpoint beside
    the notebook; without one it is retrained only with ``retrain=True`` (minutes).
    ``variant`` (a file) checks against a variant of the homework (``grade assign --variant``)."""
    variants = default_assignment().variants()
    from .engine import grade_submission
    from .submission import InvalidSubmission

    stream = stream or sys.stdout
    loaded = load_rubric(rubric)
    try:
        varied = variants.load_variant(variant) if variant is not None else None
        if varied is not None:
            loaded = variants.rubric_for_variant(loaded, varied, explicit=rubric is not None)
        loader = _data_loader(data, cache_dir)
    except Exception as exc:
        print(f"self-check: {exc}", file=stream)
        return 2
    if path is None:
        history = _notebook_history()
        if history is None:
            print("self-check: give the notebook or module to check, e.g. grade --self-check hw05.ipynb", file=stream)
            return 2
        submission = _history_submission(history)
    else:
        try:
            submission = _file_submission(Path(path))
        except InvalidSubmission:
            submission = None  # graded from the path, which records why it is invalid
    result = grade_submission(
        path=Path(path) if submission is None and path is not None else None,
        submission=submission,
        rubric=loaded,
        data_loader=loader,
        visible_only=True,
        retrain=retrain,
        variant=varied,
    )
    text, ok = render(result, loaded)
    print(text, file=stream)
    return 0 if ok else 1
