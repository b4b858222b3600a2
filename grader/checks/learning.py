"""The short learning check: a bounded run of training on the grader's own images.

Conformance checks can all pass while a model cannot learn (a real case: weights
overwritten with Kaiming std computed from the wrong axis of an nn.Linear weight left
the model at chance). So a homework's questions that train a model also train briefly
from the student's starting point and must lower the held-out loss and beat chance. The held-out labels never leave
the grader: a worker-side run returns logits, and the loss and accuracy are computed here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..details import learning_run, of
from . import Outcome

STEPS = 40
BATCH_SIZE = 64
EVAL_IMAGES = 500
DATA_SEED = 1234  # fixed, so a submission graded twice trains on the same images
MIN_ACCURACY = 0.18  # chance is 0.10 (+-0.013 on 500 images); a working start reaches 0.25-0.35
MIN_LOSS_DROP = 0.05
# The starting points a learning check may be implied from (see check(implied_by=...)):
# every weight zero-mean with the std of one of these initialisations for its fan-in,
# every bias within PyTorch's default bound 1/sqrt(fan_in). tests/test_learning.py trains
# the specified models from each of them and shows that every run passes.
STANDARD_INITS = {
    "Kaiming normal": lambda fan_in: math.sqrt(2.0 / fan_in),
    "PyTorch's default": lambda fan_in: 1.0 / math.sqrt(3.0 * fan_in),
}


@dataclass
class LearnRun:
    loss_before: float
    loss_after: float
    acc_before: float
    acc_after: float
    steps: int


@functools.lru_cache(maxsize=2)
def _learning_data(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..data import normalize

    train_idx, val_idx = data.split()
    gen = torch.Generator().manual_seed(DATA_SEED)
    pick = train_idx[torch.randperm(len(train_idx), generator=gen)[: STEPS * BATCH_SIZE]]
    held = val_idx[torch.randperm(len(val_idx), generator=gen)[:EVAL_IMAGES]]  # every class, not the first few
    return (
        normalize(data.train_images[pick]),
        data.train_labels[pick],
        normalize(data.train_images[held]),
        data.train_labels[held],
    )


def learning_data(ctx):
    """Training images and the held-out set (images, labels) for learning checks."""
    return _learning_data(ctx.data)


def standard_start(tensors: list[tuple[torch.Tensor, int, bool]], *, inits=tuple(STANDARD_INITS)) -> str | None:
    """Whether a starting point is a standard one: ``tensors`` as (value, fan-in, is a
    bias), every one float32 and finite, every weight drawn by one of ``inits`` (its std
    within the tolerance of compare.kaiming_std, its mean near zero). A phrase saying so,
    or None."""
    if not tensors or any(t.dtype != torch.float32 or not torch.isfinite(t).all() for t, _, _ in tensors):
        return None
    if any(fan_in < 1 for _, fan_in, _ in tensors):
        return None
    if any(bias and t.numel() and t.abs().max().item() > 1 / math.sqrt(fan_in) for t, fan_in, bias in tensors):
        return None
    weights = [(t.double(), fan_in) for t, fan_in, bias in tensors if not bias]
    if not weights or any(t.numel() < 2 for t, _ in weights):
        return None
    for name in inits:
        std_of = STANDARD_INITS[name]
        if all(
            abs(t.std().item() / std_of(f) - 1) <= max(0.12, 6 / math.sqrt(2 * t.numel()))
            and abs(t.mean().item()) <= 0.1 * std_of(f)
            for t, f in weights
        ):
            return f"a standard starting point ({name} weights, biases within 1/sqrt(fan_in), float32)"
    return None


def state_start(state: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, int, bool]] | None:
    """A module's parameters as standard_start takes them, when they are weights of
    Conv2d / Linear layers and their biases; None for anything else."""
    out = []
    for name, t in state.items():
        prefix, _, kind = name.rpartition(".")
        weight = state.get(f"{prefix}.weight" if prefix else "weight")
        if kind not in ("weight", "bias") or weight is None or weight.dim() < 2:
            return None
        out.append((t, math.prod(weight.shape[1:]), kind == "bias"))
    return out


def _evaluate(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    logits = logits.double()
    if not torch.isfinite(logits).all():
        return float("inf"), float((logits.argmax(1) == labels).double().mean())
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).double().mean().item()


def from_logits(before: torch.Tensor, after: torch.Tensor, labels: torch.Tensor, steps: int) -> LearnRun:
    lb, ab = _evaluate(before, labels)
    la, aa = _evaluate(after, labels)
    return LearnRun(lb, la, ab, aa, steps)


def _logits(fn, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i : i + 500]) for i in range(0, len(x), 500)])


def notebook_dtype(capture: Mapping[str, Any]) -> torch.dtype:
    """The dtype the notebook's training helpers cast every batch to (its global
    ``dtype``; float32 as in the template when it is not a floating dtype)."""
    found = getattr(torch, str(capture.get("dtype") or ""), None)
    return found if isinstance(found, torch.dtype) and found.is_floating_point else torch.float32


def manual_sgd_run(ctx, model_fn, params: list[torch.Tensor], lr: float, *, dtype=torch.float32) -> LearnRun:
    """Plain gradient descent (w -= lr * grad) with the reference forward pass, on batches
    cast to ``dtype`` as the notebook's own training function casts them and with the parameters' own dtypes, so
    that a dtype mismatch fails here as it fails in the notebook."""
    x, y, ex, ey = learning_data(ctx)
    x, ex = x.to(dtype), ex.to(dtype)
    ws = [p.detach().clone().requires_grad_(True) for p in params]
    before = _logits(lambda b: model_fn(b, ws), ex)
    for i in range(0, len(x), BATCH_SIZE):
        loss = F.cross_entropy(model_fn(x[i : i + BATCH_SIZE], ws), y[i : i + BATCH_SIZE])
        loss.backward()
        with torch.no_grad():
            for w in ws:
                w -= lr * w.grad
                w.grad.zero_()
    return from_logits(before, _logits(lambda b: model_fn(b, ws), ex), ey, STEPS)


def module_run(ctx, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> LearnRun:
    """A module and its optimizer, both on the trusted side."""
    x, y, ex, ey = learning_data(ctx)
    model.eval()
    before = _logits(model, ex)
    model.train()
    for i in range(0, len(x), BATCH_SIZE):
        loss = F.cross_entropy(model(x[i : i + BATCH_SIZE]), y[i : i + BATCH_SIZE])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return from_logits(before, _logits(model, ex), ey, STEPS)


def worker_run(ctx, question: str) -> LearnRun:
    """The student's own model and optimizer, trained in the worker by the grader's loop."""
    x, y, ex, ey = learning_data(ctx)
    out = ctx.probe("learn", target={"question": question}, x=x, y=y, batch_size=BATCH_SIZE, eval_x=ex)
    return from_logits(out["before"], out["after"], ey, out["steps"])


def substitution_note(ctx, substituted: dict[str, str]) -> str:
    """Learning checks run on the specification's version of what earlier questions
    grade (one mistake costs points once, on its own question). ``substituted`` maps
    the earlier check whose part was replaced to a description of that part; the note
    names those whose check failed, since only there did the substitution change anything."""
    failed = {c.id for c in ctx.result.checks if c.status != "passed"}
    named = [what for check_id, what in substituted.items() if check_id in failed]
    return f" (run with {' and '.join(named)}; that mistake is graded there)" if named else ""


def judge_learning(run: LearnRun) -> Outcome:
    details = of(
        learning_run(
            loss_before=run.loss_before,
            loss_after=run.loss_after,
            accuracy_before=run.acc_before,
            accuracy_after=run.acc_after,
            steps=run.steps,
            batch_size=BATCH_SIZE,
        )
    )
    summary = (
        f"after {run.steps} steps of {BATCH_SIZE} images: held-out loss {run.loss_before:.3f} -> "
        f"{run.loss_after:.3f}, accuracy {100 * run.acc_before:.1f}% -> {100 * run.acc_after:.1f}%"
    )
    dropped = run.loss_after < run.loss_before - MIN_LOSS_DROP
    if dropped and run.acc_after >= MIN_ACCURACY:
        return Outcome(True, summary, details=details)
    why = []
    if not dropped:
        why.append("the loss did not go down")
    if run.acc_after < MIN_ACCURACY:
        why.append(f"accuracy stayed below {100 * MIN_ACCURACY:.0f}% (chance is 10%)")
    hint = " Check the scale of the initial weights and the learning rate."
    return Outcome(False, summary + "; " + " and ".join(why) + "." + hint, details=details)
