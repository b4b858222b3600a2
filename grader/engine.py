"""Grading one submission: run its cells in a worker, then run every check.

The engine owns the trusted side of a grading run. It starts the worker, feeds it the
submission's cells, and gives each check a ``Context`` through which the check asks the
worker for data and reaches the reference solution and the dataset. Whatever happens,
it returns a ``SubmissionResult``: an unreadable submission, a cell that kills the
worker, a check that hangs or a bug in a check each become a recorded reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import secrets
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .assignment import Assignment, default_assignment
from .bounds import bound_result
from .checks import CheckFailed, CheckSpec, Context, DataUnavailable, Outcome, all_checks
from .details import internal_error, of, student_error, values
from .results import CellRun, CheckResult, SubmissionResult, question_ranges
from .rubric import Rubric, load_rubric
from .sandbox import Limits, OutOfTurn, StudentError, Worker, WorkerError, WorkerTimeout
from .submission import InvalidSubmission, Submission, content_hash, load_submission, submission_name
from .version import __version__
from .warm import WarmWorkers

WORKER_SEED = 0  # the student's own code always runs from the same seed


class BudgetSpent(Exception):
    """The submission's time budget (Limits.submission_seconds) is used up."""


class StudentSession:
    """A worker that has run the submission's cells.

    If the worker dies or hangs, the next request starts a new one and replays the
    cells, leaving out any cell that killed a worker before.
    """

    def __init__(
        self,
        submission: Submission,
        *,
        limits: Limits,
        hide: list[Path],
        private_root: Path,
        isolate: bool | None,
        skip: set[str] | None = None,
        warm: WarmWorkers | None = None,
        assignment: Assignment | None = None,
    ):
        self.submission = submission
        self.warm = warm  # launched workers to take instead of starting one (batches)
        self.assignment = assignment or default_assignment()
        # Probes measured against their own budget (Limits.train_seconds), not the submission's.
        self.own_budget = self.assignment.own_budget_probes
        # Cells that only answer questions outside the run are not executed (the
        # challenge's training when --questions leaves it out).
        self.cells = [c for c in submission.cells if not (c.questions and set(c.questions) <= (skip or set()))]
        self.limits = limits
        self.hide = hide
        self.private_root = private_root
        self.isolate = isolate
        self.worker: Worker | None = None
        self.runs: dict[int, CellRun] = {}
        self.poison: set[int] = set()  # cells that killed a worker
        self.restarts = 0
        self.last_cell = None  # the last cell the worker answered for
        # When the submission's time is up; grading moves it on by time spent retraining.
        self.deadline = time.monotonic() + limits.submission_seconds

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def _start(self) -> Worker:
        self.last_cell = None
        homework = self.assignment.worker_module
        if self.warm is not None:
            worker = self.warm.take(hide=self.hide, limits=self.limits, isolate=self.isolate, homework=homework)
        else:
            worker = Worker(
                hide=self.hide,
                private_root=self.private_root,
                limits=self.limits,
                isolate=self.isolate,
                homework=homework,
            )
            worker.launch()
        worker.init(seed=WORKER_SEED, files=self.submission.files)
        return worker

    def run_cells(self) -> list[CellRun]:
        """Run every cell once, recording how each went."""
        self._replay(record=True)
        return [self.runs[c.index] for c in self.cells if c.index in self.runs]

    def _replay(self, *, record: bool) -> None:
        """Start a worker and run the cells in it. A cell that kills or hangs the worker
        is recorded, left out, and the cells are replayed in a fresh worker."""
        while True:
            self.worker = self._start()
            try:
                for cell in self.cells:
                    if cell.index not in self.poison:
                        run = self._run_cell(cell)
                        if record or cell.index not in self.runs:
                            self.runs[cell.index] = run
                return
            except WorkerError:
                self.worker.close()
                self.restarts += 1
                if self.restarts > len(self.cells) + 3:
                    raise

    def _run_cell(self, cell) -> CellRun:
        started = time.monotonic()
        cap = self.limits.output_chars  # enforced here too: the worker's own cap is in reach of the student

        def record(status: str, out: dict | None = None, error: dict | None = None) -> CellRun:
            out = out or {}
            return CellRun(
                index=cell.index,
                label=cell.label,
                questions=cell.questions,
                status=status,
                stdout=str(out.get("stdout", ""))[:cap],
                stderr=str(out.get("stderr", ""))[:cap],
                error=error,
                duration=time.monotonic() - started,
                ran_after_error=[tuple(x) for x in out.get("ran_after_error", []) if isinstance(x, (list, tuple))][
                    :1000
                ],
            )

        left = self.time_left()
        if left <= 0:
            message = f"not run: the submission used up its {self.limits.submission_seconds:g} s time budget"
            return record("timeout", error={"type": "Timeout", "message": message, "traceback": "", "line": None})
        try:
            out = self.worker.call(
                "run_cell",
                timeout=min(self.limits.cell_seconds, left),
                index=cell.index,
                source=cell.source,
                question=cell.questions[0] if cell.questions else None,
                questions=list(cell.questions),
                line_offset=cell.line_offset,
            )
        except StudentError as exc:  # the worker could not even describe the failure
            return record("error", error={**exc.info, "cell": cell.index})
        except OutOfTurn as exc:
            self._blame(self.last_cell or cell, exc)
            raise
        except WorkerError as exc:
            self.poison.add(cell.index)
            status = "timeout" if isinstance(exc, WorkerTimeout) else "crashed"
            error = {"type": "WorkerStopped", "message": str(exc), "traceback": "", "cell": cell.index, "line": None}
            self.runs[cell.index] = record(status, error=error)
            raise
        self.last_cell = cell
        return record(out["status"], out, out["error"])

    def _blame(self, cell, exc: OutOfTurn) -> None:
        """The cell answered last wrote to the channel behind (or instead of) its reply:
        its forged "ok" is replaced by the truth, and it is left out of every replay."""
        self.poison.add(cell.index)
        error = {"type": "WorkerStopped", "message": str(exc), "traceback": "", "cell": cell.index, "line": None}
        before = self.runs.get(cell.index)
        self.runs[cell.index] = CellRun(
            index=cell.index,
            label=cell.label,
            questions=cell.questions,
            status="crashed",
            error=error,
            duration=before.duration if before else 0.0,
        )

    def probe(self, op: str, *, timeout: float, **args: Any) -> Any:
        """Ask the worker for something; restart it first if a previous request killed it.
        The submission's time budget binds inside a check too: no request outlives it."""
        if op not in self.own_budget:
            if self.time_left() <= 0:
                raise BudgetSpent()
            timeout = min(timeout, self.time_left())
        started = time.monotonic()
        try:
            if self.worker is None or self.worker.proc is None or self.worker.proc.poll() is not None:
                self.restarts += 1
                self._replay(record=False)
            reply = self.worker.call(op, timeout=timeout, **args)
        except OutOfTurn as exc:
            if self.last_cell is not None:
                self._blame(self.last_cell, exc)
            raise
        else:
            self.last_cell = None
            return reply
        finally:
            if op in self.own_budget:
                self.deadline += time.monotonic() - started

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def module_stop_notes(name: str, runs: list[CellRun]) -> list[str]:
    """Where ``python name`` would have stopped, and what ran on: a module is run like a
    notebook of statements, so later questions are graded after an error at top level."""
    for k, run in enumerate(runs):
        if run.status in ("ok", "skipped") or not run.error:
            continue
        what = f"{run.error.get('type')}: {str(run.error.get('message'))[:200]}"
        if run.status == "syntax-error":
            stop = f"python {name} would not have run at all: {run.label} does not parse ({what})"
        else:
            line = run.error.get("line")
            stop = (
                f"python {name} would have stopped at {run.label}" + (f", line {line}" if line else "") + f" ({what})"
            )
        ran_on = len(run.ran_after_error) + len([r for r in runs[k + 1 :] if r.status != "crashed"])
        if not ran_on:
            return [stop]
        return [
            f"{stop}; the grader ran the {ran_on} statement(s) or cell(s) after it anyway, to grade later questions"
        ]
    return []


def _run_check(spec: CheckSpec, ctx: Context) -> tuple[Outcome, str]:
    ctx.spec = spec
    try:
        outcome = spec.fn(ctx)
        return outcome, outcome.status or ("passed" if outcome.passed else "failed")
    except CheckFailed as exc:
        return Outcome(False, str(exc), details=exc.details), exc.status
    except BudgetSpent:
        return Outcome(False, budget_message(ctx.session.limits)), "timeout"
    except DataUnavailable:
        return (
            Outcome(
                False,
                "needs the CIFAR-10 images: pass --data PATH (self_check(data=PATH) in a notebook),"
                " or --download where internet exists",
            ),
            "skipped",
        )
    except StudentError as exc:
        info = exc.info
        if info.get("type") == "Timeout" and ctx.session.time_left() <= 0:
            return Outcome(False, budget_message(ctx.session.limits)), "timeout"
        if info.get("type") == "Timeout":
            return Outcome(False, f"your code ran past the {spec.timeout:g} s limit of this check"), "timeout"
        return Outcome(
            False,
            f"your code raised {info.get('type')}: {info.get('message')}{ctx.where(info)}",
            details=of(student_error(info)),
        ), "error"
    except WorkerTimeout:
        if ctx.session.time_left() <= 0:
            return Outcome(False, budget_message(ctx.session.limits)), "timeout"
        return Outcome(
            False, f"your code ran past the {spec.timeout:g} s limit of this check and was stopped"
        ), "timeout"
    except WorkerError as exc:
        return Outcome(False, f"the worker running your code stopped: {exc}"), "error"
    except Exception as exc:  # a bug in the check itself must not sink the submission
        return (
            Outcome(
                False,
                f"internal grader error in {spec.id}: {type(exc).__name__}: {exc}",
                details=of(internal_error(traceback.format_exc())),
            ),
            "error",
        )


def default_variant() -> Any:
    """The standard homework's specification values (channels, learning rates, the Question 7
    threshold and epoch limit): what checks grade against unless a variant is given."""
    return default_assignment().variants().DEFAULT


def check_title(spec: CheckSpec, variant: Any = None) -> str:
    """A check's title with the variant's values filled in ("learning rate is {q2_lr}")."""
    return (variant or default_variant()).title(spec.title)


def _implied(spec: CheckSpec, ctx: Context) -> tuple[Outcome, str] | None:
    """A passed outcome, not run, where the checks that prove this one all passed with
    full marks in this run and its condition holds; None where it must run."""
    if not spec.implied_by:
        return None
    done = {c.id: c for c in ctx.result.checks}
    if not all(
        i in done and done[i].status == "passed" and done[i].score >= done[i].max_score for i in spec.implied_by
    ):
        return None
    ctx.spec = spec
    try:
        also = spec.implied_if(ctx) if spec.implied_if else ""
    except Exception:  # the condition could not be established: the check runs and says why
        return None
    if also is None:
        return None
    proof = ", ".join(spec.implied_by) + (f" and {also}" if also else "")
    details = of(values(implied_by=list(spec.implied_by)))
    return Outcome(True, f"implied by {proof}: not run", details=details), "passed"


def budget_message(limits: Limits) -> str:
    return f"the submission used up its {limits.submission_seconds:g} s time budget before this check finished"


def selected_checks(
    rubric: Rubric,
    *,
    visible_only: bool = False,
    questions: set[str] | None = None,
    assignment: Assignment | None = None,
) -> list[CheckSpec]:
    """The checks a run executes, by question (declaration order within a question)."""
    assignment = assignment or default_assignment()
    order = {q: i for i, q in enumerate(assignment.questions)}
    return sorted(
        (
            s
            for s in all_checks(assignment).values()
            if (not visible_only or rubric.entries[s.id].visibility == "visible")
            and (questions is None or s.question in questions)
        ),
        key=lambda s: order.get(s.question, len(order)),
    )


def new_result(name: str, source: str, rubric: Rubric) -> SubmissionResult:
    return SubmissionResult(
        name=name,
        source=source,
        sha256="",
        status="graded",
        question_titles=dict(rubric.titles),
        grader_version=__version__,
        rubric_sha=rubric.sha256,
        graded_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def complete(
    result: SubmissionResult,
    specs: list[CheckSpec],
    rubric: Rubric,
    *,
    status: str,
    message: str,
    variant: Any = None,
) -> SubmissionResult:
    """Give every check without a result ``status`` and no points, then order them, so
    that an invalid or crashed submission still shows every check and the full total."""
    done = {c.id for c in result.checks}
    for spec in specs:
        if spec.id not in done:
            entry = rubric.entries[spec.id]
            result.checks.append(
                CheckResult(
                    spec.id,
                    spec.question,
                    check_title(spec, variant),
                    status,
                    0.0,
                    entry.points,
                    entry.visibility,
                    message,
                )
            )
    order = {s.id: i for i, s in enumerate(specs)}
    result.checks.sort(key=lambda c: order.get(c.id, 0))
    return result


def grade_submission(
    *,
    path: Path | None = None,
    submission: Submission | None = None,
    rubric: Rubric | None = None,
    data_loader=None,
    limits: Limits | None = None,
    run_seed: int | None = None,
    hide: list[Path] | None = None,
    isolate: bool | None = None,
    visible_only: bool = False,
    questions: set[str] | None = None,
    retrain: bool = True,
    variant: Any = None,
    warm: WarmWorkers | None = None,
    assignment: Assignment | None = None,
) -> SubmissionResult:
    """Grade one submission (a file or folder at ``path``, or an already loaded
    ``submission``) and return its result; a bad submission never raises.

    ``data_loader`` is a callable returning the grader's CIFAR10 data, or None when
    checks that need the images must be skipped. ``run_seed`` chooses the secret probe
    inputs (random when None). ``visible_only`` runs only the checks students may see.
    ``retrain=False`` leaves the challenge question unchecked when no checkpoint was
    submitted. ``assignment`` is the homework (the default one when None).
    ``variant`` holds the homework's specification values (``grade assign --variant``);
    None grades the standard homework.
    ``warm`` supplies workers launched ahead (a batch); without it one is started here.
    """
    started = time.monotonic()
    assignment = assignment or default_assignment()
    rubric = rubric or load_rubric(assignment=assignment)
    limits = limits or Limits()
    if limits.gpu is None and assignment.challenge is not None and questions and assignment.challenge not in questions:
        # Nothing is retrained without the challenge question: a CPU worker (forked, and
        # graded as on a machine without a GPU) even where the machine has one.
        limits = dataclasses.replace(limits, gpu=False)
    run_seed = secrets.randbits(62) if run_seed is None else run_seed
    specs = selected_checks(rubric, visible_only=visible_only, questions=questions, assignment=assignment)
    if submission is None:
        path = Path(path)
        result = new_result(submission_name(path), path.name, rubric)
        try:
            submission = load_submission(path)
        except InvalidSubmission as exc:
            result.status, result.reason = "invalid", str(exc)
            with contextlib.suppress(OSError):
                result.sha256 = content_hash(path)
            result.duration = time.monotonic() - started
            bound_result(result)
            return complete(
                result, specs, rubric, status="failed", message=f"invalid submission: {exc}", variant=variant
            )
    result = new_result(submission.name, submission.path.name, rubric)
    result.sha256, result.kind, result.layout = submission.sha256, submission.kind, submission.layout
    result.notes.extend(submission.notes)
    if not any(c.questions for c in submission.cells):
        result.notes.append(
            f"no cell was recognised as an answer to {question_ranges(list(assignment.questions))};"
            " names and markers did not match"
        )

    with tempfile.TemporaryDirectory(prefix="grader-") as private:
        challenge = assignment.challenge
        skip = {challenge} - set(questions) if questions is not None and challenge else set()
        session = StudentSession(
            submission,
            limits=limits,
            hide=list(hide or []),
            private_root=Path(private),
            isolate=isolate,
            skip=skip,
            warm=warm,
            assignment=assignment,
        )
        if len(session.cells) < len(submission.cells) and challenge:
            spoken = assignment.spoken(challenge)
            result.notes.append(f"the {spoken} code was not run: {spoken} is not among the graded questions")
        try:
            result.cells = session.run_cells()
            if submission.kind == "module":
                result.notes.extend(module_stop_notes(submission.path.name, result.cells))
            if session.worker:
                result.notes.append(f"sandbox: {session.worker.sandbox()}")
            ctx = Context(
                session=session,
                run_seed=run_seed,
                data_loader=data_loader,
                results=result,
                rubric=rubric,
                variant=variant,
                assignment=assignment,
            )
            ctx.retrain = retrain
            for spec in specs:
                entry = rubric.entries[spec.id]
                if session.time_left() <= 0:
                    break  # the rest are recorded as timed out below
                t0 = time.monotonic()
                outcome, status = _implied(spec, ctx) or _run_check(spec, ctx)
                score = entry.points * outcome.score_fraction if status in ("passed", "failed") else 0.0
                result.checks.append(
                    CheckResult(
                        spec.id,
                        spec.question,
                        check_title(spec, variant),
                        status,
                        round(score, 4),
                        entry.points,
                        entry.visibility,
                        outcome.message,
                        outcome.details,
                        round(time.monotonic() - t0, 3),
                    )
                )
            result.challenge = ctx.shared.get("challenge", {})
            if session.restarts:
                result.notes.append(
                    f"the worker was restarted {session.restarts} time(s) after your code stopped or hung it"
                )
        except WorkerError as exc:
            result.status, result.reason = "crashed", f"the worker could not run the submission: {exc}"
        finally:
            session.close()
    result.duration = time.monotonic() - started
    bound_result(result)
    if result.status == "crashed":
        return complete(result, specs, rubric, status="error", message=result.reason, variant=variant)
    budget = f"the submission used up its {limits.submission_seconds:g} s time budget before this check"
    return complete(result, specs, rubric, status="timeout", message=budget, variant=variant)
