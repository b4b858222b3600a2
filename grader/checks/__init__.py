"""The check API: how a homework's checks are declared and what they may use.

Checks are declared next to their code as pytest declares tests. A check is a function of a ``Context`` that returns an ``Outcome``. Its question, name
and time limit are declared with ``@check``; its points and visibility come from the
rubric (the homework's ``rubric.toml``), so an instructor can change the weighting without
touching code. Checks run on the trusted side: they ask the worker for plain data
through ``ctx.probe`` and compare it with the reference in this process.

A check may be implied by others (``implied_by``): a learning run proves nothing that
forward parity, an exact update and a standard starting point have not already proved.
Where every one of those checks passed with full marks (and the declared condition
``implied_if``, a question about what the trusted side already holds, says so), the
check passes without running and says "implied by ..."; where one did not, it runs and
adds what it finds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..assignment import Assignment, default_assignment
from ..details import Details, of, student_error
from ..replies import CaptureReply, ConstructReply
from ..results import SubmissionResult, where
from ..sandbox import StudentError

if TYPE_CHECKING:  # the engine runs checks and the rubric lists them; checks import neither
    from ..engine import StudentSession
    from ..rubric import Rubric


@dataclass
class Outcome:
    """What a check found. ``fraction`` gives partial credit (default: all or nothing)."""

    passed: bool
    message: str
    fraction: float | None = None
    details: Details = field(default_factory=dict)  # parts of grader/details.py
    status: str | None = None  # override: "skipped" when the check could not apply

    @property
    def score_fraction(self) -> float:
        if self.fraction is not None:
            return max(0.0, min(1.0, self.fraction))
        return 1.0 if self.passed else 0.0


@dataclass(frozen=True)
class CheckSpec:
    id: str  # "Q1.output_shape"
    question: str
    name: str
    title: str
    timeout: float
    fn: Callable[..., Outcome]
    implied_by: tuple[str, ...] = ()  # check ids that, all passed, prove this one
    # What else must hold, asked of the Context (no worker work): a phrase naming what was
    # verified ("a standard starting point: ..."), or None where the check must run.
    implied_if: Callable[..., str | None] | None = None


REGISTRY: dict[str, CheckSpec] = {}


def check(
    question: str,
    title: str,
    *,
    timeout: float = 30.0,
    implied_by: tuple[str, ...] = (),
    implied_if: Callable[..., str | None] | None = None,
):
    """Declare a check of ``question``; its id is ``<question>.<function name>``.
    ``implied_by`` and ``implied_if``: when it passes without running (see above); the
    checks it names must come before it in the run."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        spec = CheckSpec(
            id=f"{question}.{fn.__name__}",
            question=question,
            name=fn.__name__,
            title=title,
            timeout=timeout,
            fn=fn,
            implied_by=tuple(implied_by),
            implied_if=implied_if,
        )
        REGISTRY[spec.id] = spec
        return fn

    return register


def all_checks(assignment: Assignment | None = None) -> dict[str, CheckSpec]:
    """Every check of the homework, importing the modules that declare them."""
    assignment = assignment or default_assignment()
    assignment.load_checks()
    return {k: s for k, s in REGISTRY.items() if s.fn.__module__ in assignment.check_modules}


def probe_generator(run_seed: int, check_id: str) -> torch.Generator:
    """A generator for one check's inputs: secret per grading run, stable within it."""
    digest = hashlib.sha256(f"{run_seed}:{check_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


class DataUnavailable(Exception):
    """A check needs CIFAR-10 and none was provided."""


class CheckFailed(Exception):
    """A check cannot proceed; the message explains why to the student."""

    def __init__(self, message: str, details: Details | None = None, status: str = "failed"):
        super().__init__(message)
        self.details = details or {}
        self.status = status


class Context:
    """What a check may use: the worker, the reference, the dataset, its random inputs."""

    def __init__(
        self,
        *,
        session: StudentSession,
        run_seed: int,
        data_loader,
        results: SubmissionResult,
        rubric: Rubric,
        variant: Any = None,
        assignment: Assignment | None = None,
    ):
        self.session = session
        self.assignment = assignment or default_assignment()
        self.rubric = rubric  # Question 7 reads its threshold policy here
        # The homework's specification values (a variant of them); None: the standard ones.
        self.variant = variant
        self.run_seed = run_seed
        self._data_loader = data_loader
        self._data = None
        self.result = results
        self.spec: CheckSpec | None = None
        self._captures: dict[str, CaptureReply] = {}
        self._constructed: dict[tuple, Any] = {}
        self.shared: dict[str, Any] = {}  # values one check computes and another reuses
        self.retrain_seconds = 0.0  # retraining Question 7 has its own budget (Limits.train_seconds)
        self.retrain = True  # False: Question 7 without a checkpoint is not checked (the self-check)

    # -- for checks --------------------------------------------------------------------

    @property
    def rng(self):
        return probe_generator(self.run_seed, self.spec.id if self.spec else "")

    def probe(self, op: str, *, timeout: float | None = None, **args: Any) -> Any:
        if timeout is None:
            timeout = self.spec.timeout if self.spec else 60.0
        return self.session.probe(op, timeout=timeout, **args)

    @property
    def reference(self):
        return self.assignment.answer_key_module()

    @property
    def data(self):
        # Loaded on first use (checks that need no data never pay for it), then kept.
        if self._data is None:
            self._data = self._data_loader() if self._data_loader else None
        if self._data is None:
            raise DataUnavailable()
        return self._data

    def capture(self, question: str) -> CaptureReply:
        """What the question's cell handed to training; CheckFailed if nothing was."""
        if question not in self._captures:
            self._captures[question] = self.probe("describe_capture", question=question)
            self._note_repeats(question, self._captures[question])
        found = self._captures[question]
        if not found.get("found"):
            raise CheckFailed(self.missing_capture_message(question))
        return found

    def _note_repeats(self, question: str, found: CaptureReply) -> None:
        """A question answered more than once (a cell re-run with other settings): the
        last one is graded, and the report says so."""
        cells = found.get("cells")
        cells = cells if isinstance(cells, list) else []  # a claim: checked before use
        if len(cells) > 1:
            labels = {c.index: c.label for c in self.session.submission.cells}
            where = ", ".join(dict.fromkeys(labels.get(c, f"cell {c}") for c in cells[:10] if isinstance(c, int)))
            self.result.notes.append(
                f"{question} was handed to training {len(cells)} times ({where}); the last one is graded"
            )

    def construct(self, name: str, args: list, *, seed: int = 0, install: dict | None = None) -> ConstructReply:
        """Instantiate a student class in the worker (cached); CheckFailed if it fails.
        ``install`` replaces some of its layers by specified ones (see probes.construct)."""
        key = (name, tuple(args), seed, repr(install))
        if key not in self._constructed:
            handle = f"{name}{list(args)}@{seed}" + (f"+{len(self._constructed)}" if install else "")
            try:
                out = self.probe(
                    "construct", name=name, args=list(args), kwargs={}, seed=seed, handle=handle, install=install
                )
            except StudentError as exc:
                self._constructed[key] = exc
            else:
                out["handle"] = handle
                self._constructed[key] = out
        value = self._constructed[key]
        if isinstance(value, StudentError):
            raise CheckFailed(
                f"{name}({', '.join(map(str, args))}) raised {value}", of(student_error(value.info)), status="error"
            )
        return value

    def where(self, info: dict) -> str:
        """ " (cell 12, line 3)" for an error raised in the student's code, else ""."""
        found = where(info, {c.index: c.label for c in self.session.submission.cells})
        return f" ({found})" if found else ""

    def cell_error(self, question: str) -> str | None:
        """A sentence about the first failing cell of a question, if any."""
        for run in self.result.cells:
            if question in run.questions and run.status != "ok" and run.error:
                where = run.label + (f", line {run.error.get('line')}" if run.error.get("line") else "")
                return f"{where} raised {run.error.get('type')}: {run.error.get('message')}"
        return None

    def missing_capture_message(self, question: str) -> str:
        cells = [r for r in self.result.cells if question in r.questions]
        what = self.assignment.missing_capture.get(question, f"nothing was captured for {question}")
        if not cells:
            return what
        problem = self.cell_error(question)
        return f"{what}: {problem}" if problem else what
