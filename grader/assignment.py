"""What a homework is, as the core sees it: one ``Assignment`` per homework.

A homework lives in its own package under ``grader/assignments/`` (the CIFAR-10 one in
``grader/assignments/cifar10/``), whose ``ASSIGNMENT`` is plain data and module names:
importing it costs nothing and loads neither the answer key nor the checks, so that the
student worker may import the homework's worker-side module by the name it is given.
The core (loading, sandbox, engine, results, reports, batch) asks the definition for its
questions and never names one itself.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

DEFAULT = "cifar10"


@dataclass(frozen=True, kw_only=True)
class Assignment:
    name: str  # the package under grader/assignments/
    title: str
    questions: tuple[str, ...]  # ids in notebook order ("Q1", ...); "Q<n>" is spoken "Question <n>"
    # The question graded from a submitted checkpoint or by retraining the student's
    # model (its probes have their own time budget); None for a homework without one.
    challenge: str | None
    folder: Path  # the package's folder: rubric and template live there
    check_modules: tuple[str, ...]  # trusted side: the modules declaring the checks
    answer_key: str  # trusted side: the reference solution's module
    # Imported by the student worker at start-up: the homework's training stand-ins,
    # capture rules and probes. It must import neither the checks nor the answer key.
    worker_module: str
    # Which questions a cell answers, by the homework's own tables: ``from_metadata(metadata)``
    # (cell names of known notebook layouts) and ``from_content(source)``.
    classifier_module: str
    # What a check says when a question handed nothing to training, by question.
    missing_capture: Mapping[str, str] = field(default_factory=dict)
    # What each unanswered placeholder of the student template tells the student to do.
    placeholders: Mapping[str, str] = field(default_factory=dict)
    # How much each question's code counts when comparing two submissions (default 1).
    similarity_weights: Mapping[str, float] = field(default_factory=dict)
    own_budget_probes: frozenset[str] = frozenset()  # probes timed against the retraining budget
    # Trusted side: the specification's values and instructor variants of them (``DEFAULT``,
    # ``Variant``, ``VariantError``, ``load_variant``, ``rubric_for_variant``,
    # ``variant_rubric_text``, ``variant_toml``, ``EXAMPLE``: see ``grade assign --variant``).
    variants_module: str | None = None
    rubric_file: str = "rubric.toml"
    template_file: str = "template.py.j2"

    @property
    def rubric(self) -> Path:
        return self.folder / self.rubric_file

    @property
    def template(self) -> Path:
        return self.folder / self.template_file

    def spoken(self, question: str) -> str:
        """How messages name a question: "Q7" -> "Question 7"."""
        return f"Question {question[1:]}" if question[1:].isdigit() else question

    def weight(self, question: str) -> float:
        return float(self.similarity_weights.get(question, 1.0))

    def load_checks(self) -> None:
        """Import the modules that declare the checks (they register themselves)."""
        for name in self.check_modules:
            importlib.import_module(name)

    def variants(self) -> Any:
        """The module of the homework's specification values and variants."""
        if self.variants_module is None:
            raise LookupError(f"the {self.name} homework has no variants")
        return importlib.import_module(self.variants_module)

    def answer_key_module(self) -> ModuleType:
        return importlib.import_module(self.answer_key)

    def questions_named(self, metadata: Mapping[str, Any]) -> list[str]:
        """The questions a cell answers by its name in a known layout's metadata."""
        return self._known(_module(self.classifier_module).from_metadata(metadata))

    def questions_in(self, source: str) -> list[str]:
        """The questions a cell answers by what its code contains."""
        return self._known(_module(self.classifier_module).from_content(source))

    def _known(self, found: list[str]) -> list[str]:
        return [q for q in self.questions if q in found]


@functools.cache
def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


@functools.cache
def load_assignment(name: str = DEFAULT) -> Assignment:
    """The definition of the homework ``name`` (a package under grader/assignments/)."""
    if not name.isidentifier():
        raise ValueError(f"no assignment named {name!r}")
    try:
        module = importlib.import_module(f"grader.assignments.{name}")
    except ModuleNotFoundError:
        raise ValueError(f"no assignment named {name!r} in grader/assignments/") from None
    assignment = getattr(module, "ASSIGNMENT", None)
    if not isinstance(assignment, Assignment):
        raise ValueError(f"grader/assignments/{name} defines no ASSIGNMENT")
    return assignment


def default_assignment() -> Assignment:
    """The homework graded unless another is named (cached)."""
    return load_assignment(DEFAULT)
