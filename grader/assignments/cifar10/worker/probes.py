"""The CIFAR-10 homework's own probes: its provided training helpers (``train_part2``,
``train_part34``) run on data the grader chooses, with stand-ins that make every step
they take visible. Like every probe they return plain data and judge nothing."""

from __future__ import annotations

import torch
import torch.nn as nn

from grader.worker.probes import _state, probe
from grader.worker.runtime import Runtime


class _GradientReplay:
    """A stand-in for ``model_fn`` whose scores equal ``scores`` and whose gradient with
    respect to each parameter is exactly ``grads[i]`` at the current parameter values.

    With it, the student's own ``train_part2`` takes one real step from their own
    parameters, yet the step does not depend on their ``three_layer_convnet`` (which
    Question 1 grades): the direction ``u`` makes d(loss)/d(offset) = 1, so the loss
    gradient reaching each parameter is its replayed gradient.
    """

    def __init__(self, scores: torch.Tensor, direction: torch.Tensor, grads: list[torch.Tensor]):
        self.scores, self.direction, self.grads = scores, direction, grads
        self.origin: float | None = None

    def __call__(self, x, params):
        dot = sum((p * g.to(p.dtype)).sum() for p, g in zip(params, self.grads))
        if self.origin is None:
            self.origin = dot.detach()
        return self.scores.to(x.dtype) + (dot - self.origin) * self.direction.to(x.dtype)


class _OneBatch:
    """A loader over fixed batches, with the ``dataset.train`` flag the helpers read."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], train: bool = True):
        self.batches = batches
        self.dataset = type("Split", (), {"train": train, "__len__": lambda s: 0})()
        self.batch_size = len(batches[0][1]) if batches else 0

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@probe
def train_part2_replay(
    rt: Runtime,
    *,
    question: str,
    x: torch.Tensor,
    y: torch.Tensor,
    scores: torch.Tensor,
    direction: torch.Tensor,
    grads: list,
) -> dict:
    """One step of the student's ``train_part2`` on copies of their captured parameters,
    with their learning rate and the gradients the grader replays."""
    capture = rt.capture_for(question)
    if capture is None:
        raise LookupError(f"nothing was captured for {question}")

    def copy_of(p):
        if not isinstance(p, torch.Tensor):
            return p
        copy = p.detach().clone().requires_grad_(p.requires_grad)
        # Keep leaf-ness as the student made it: a non-leaf parameter has no .grad to update.
        return copy if p.is_leaf else copy * 1.0

    params = [copy_of(p) for p in capture.objects["params"]]
    before = [p.detach().clone() if isinstance(p, torch.Tensor) else None for p in params]
    loader = _OneBatch([(x, y)])
    with rt.globals_bound(loader_train=loader, loader_val=loader, print_every=10**9):
        rt.helper("train_part2")(_GradientReplay(scores, direction, grads), params, capture.objects["learning_rate"])
    return {"before": before, "after": [p.detach().clone() if isinstance(p, torch.Tensor) else None for p in params]}


@probe
def helper_train_part2(rt: Runtime, *, batches: list, params: list, learning_rate: float) -> dict:
    """Run the student's ``train_part2`` with a linear model on the given batches."""
    ws = [p.clone().requires_grad_(True) for p in params]

    def linear(x, p):
        return x.reshape(x.shape[0], -1).mm(p[0]) + p[1]

    loader = _OneBatch([(b["x"], b["y"]) for b in batches])
    with rt.globals_bound(loader_train=loader, loader_val=_OneBatch(loader.batches[:1]), print_every=10**9):
        rt.helper("train_part2")(linear, ws, learning_rate)
    return {"after": [w.detach().clone() for w in ws]}


class ModeProbe(nn.Module):
    """A linear model whose output is scaled by ``train_scale`` in training mode and by
    ``eval_scale`` in eval mode, so that steps taken in the wrong mode change the
    resulting parameters (and cannot go unnoticed)."""

    def __init__(self, in_features: int, classes: int, train_scale: float = 1.0, eval_scale: float = 0.5):
        super().__init__()
        self.fc = nn.Linear(in_features, classes)
        self.train_scale, self.eval_scale = train_scale, eval_scale
        self.log: list[list[bool]] = []

    def forward(self, x):
        self.log.append([self.training, torch.is_grad_enabled()])
        scale = self.train_scale if self.training else self.eval_scale
        return self.fc(x.reshape(x.shape[0], -1)) * scale


@probe
def helper_train_part34(
    rt: Runtime, *, batches: list, val_batches: list, state: dict, learning_rate: float, epochs: int, print_every: int
) -> dict:
    """Run the student's ``train_part34`` on a ModeProbe with plain SGD."""
    in_features = state["fc.weight"].shape[1]
    classes = state["fc.weight"].shape[0]
    model = ModeProbe(in_features, classes)
    model.load_state_dict(state)
    model.eval()  # start in eval mode: a loop that never calls train() shows it
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    loader = _OneBatch([(b["x"], b["y"]) for b in batches])
    val = _OneBatch([(b["x"], b["y"]) for b in val_batches])
    with rt.globals_bound(loader_train=loader, loader_val=val, print_every=print_every):
        rt.helper("train_part34")(model, optimizer, epochs=epochs)
    return {"state": _state(model), "log": model.log}
