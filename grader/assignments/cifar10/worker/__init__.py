"""The CIFAR-10 homework inside the student worker, which imports this package by the
name the grader's set-up message gives: the training stand-ins and capture rules
(``captures.py``), the probes of the provided helpers (``probes.py``) and of Question 7
(``challenge.py``). Like the rest of the worker it holds no expected value: it never
imports the checks or the answer key."""

from . import challenge, probes  # noqa: F401 - registers the homework's probes
from .captures import TRAINING_HELPERS, captures_for, cell_end, meaning, stand_ins

__all__ = ["TRAINING_HELPERS", "captures_for", "cell_end", "meaning", "stand_ins"]
