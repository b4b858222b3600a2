"""The checks, declared next to their code as pytest declares tests.

A check is a function of a ``Context`` that returns an ``Outcome``. Its question, name
and time limit are declared with ``@check``; its points and visibility come from the
rubric (``grader/rubric.toml``), so an instructor can change the weighting without
touching code. Checks run on the trusted side: they ask the worker for plain data
through ``ctx.probe`` and compare it with the reference in this process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Outcome:
    """What a check found. ``fraction`` gives partial credit (default: all or nothing)."""

    passed: bool
    message: str
    fraction: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
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


REGISTRY: dict[str, CheckSpec] = {}


def check(question: str, title: str, *, timeout: float = 30.0):
    """Declare a check of ``question``; its id is ``<question>.<function name>``."""

    def register(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
        spec = CheckSpec(
            id=f"{question}.{fn.__name__}",
            question=question,
            name=fn.__name__,
            title=title,
            timeout=timeout,
            fn=fn,
        )
        REGISTRY[spec.id] = spec
        return fn

    return register


def all_checks() -> dict[str, CheckSpec]:
    """Every registered check, importing the modules that declare them."""
    from . import barebones, challenge, module_api, sequential  # noqa: F401

    return REGISTRY


def probe_generator(run_seed: int, check_id: str) -> torch.Generator:
    """A generator for one check's inputs: secret per grading run, stable within it."""
    digest = hashlib.sha256(f"{run_seed}:{check_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
