"""A trusted, fast autograder for the PyTorch CIFAR-10 homework.

The public API is a few keyword-only functions; the ``grade`` command is a thin layer
over them. They are imported lazily so that the student worker, which lives in this
package too, never loads grading code.
"""

from __future__ import annotations

from .version import __version__ as __version__

__all__ = ["grade_batch", "grade_submission", "self_check"]


def __getattr__(name: str):
    if name in ("grade_batch",):
        from .batch import grade_batch

        return grade_batch
    if name in ("grade_submission",):
        from .engine import grade_submission

        return grade_submission
    if name == "self_check":
        from .selfcheck import self_check

        return self_check
    raise AttributeError(name)
