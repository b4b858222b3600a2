"""The shapes of the worker's main replies, shared by the probes that build them
(worker/probes.py, in the student's sandbox) and the checks that read them (on the
trusted side).

A reply is plain data on the wire (worker/wire.py: dicts, lists, numbers, strings and
tensors, never pickles), and it is a *claim*: the checks verify what matters against
the reference. These definitions say which keys a reply has, so that both sides agree
by their types rather than by habit; a reply missing a key, or with a key of the wrong
kind, is still possible from a hostile submission, so checks read optional keys with
``.get``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from torch import Tensor


class TensorInfo(TypedDict, total=False):
    """A value the student's code returned: a tensor (with its value) or what it was instead."""

    is_tensor: bool
    type: str  # when not a tensor
    repr: str  # when not a tensor
    shape: list[int]
    dtype: str  # "float32"
    device: str
    requires_grad: bool
    is_leaf: bool
    value: Tensor


# One leaf module, in registration order. ("class" is a keyword, hence this form.)
Layer = TypedDict(
    "Layer",
    {
        "path": str,  # "conv1", "0"
        "kind": str,  # the torch.nn class it is or derives from: "Conv2d"
        "class": str,  # its own class name
        "config": dict[str, Any],  # kernel_size, padding, ... and bias (whether it has one)
        "params": dict[str, list[int]],  # parameter name -> shape
    },
)


class ModuleInfo(TypedDict, total=False):
    """describe_module: a module's structure, or what the value was instead."""

    is_module: bool
    type: str
    repr: str
    leaves: list[Layer]
    param_names: list[str]


class ParamGroup(TypedDict):
    settings: dict[str, Any]  # lr, momentum, nesterov, ...
    params: list[str]  # the model's parameter names it updates


class OptimizerInfo(TypedDict, total=False):
    """describe_optimizer: settings and which parameters each group updates."""

    is_optimizer: bool
    type: str
    module: str  # "torch.optim.sgd"
    groups: list[ParamGroup]
    missing: list[str]  # parameters of the model no group updates


class CallReply(TypedDict, total=False):
    """call_function: what a student function returned, and with ``upstream`` the
    gradient of each tensor argument (None where none reached it)."""

    output: TensorInfo
    grads: list[Tensor | None]


class CaptureReply(TypedDict, total=False):
    """describe_capture: what a question's cell handed to training."""

    found: bool
    kind: str  # how it was captured: the training call, or the end of the cell
    cell: int  # index of the cell graded (the last that answered)
    cells: list[int]  # every cell that answered the question
    params: list[TensorInfo]  # train_part2's parameters
    learning_rate: float | None
    model_fn: str | None
    dtype: str | None  # the notebook's dtype
    model: ModuleInfo
    optimizer: OptimizerInfo
    state: dict[str, Tensor]
    epochs: int | None


class ConstructReply(TypedDict, total=False):
    """construct: an instance of a student class, kept in the worker by ``handle``."""

    model: ModuleInfo
    state: dict[str, Tensor]
    handle: str  # added on the trusted side (Context.construct)


class LearnReply(TypedDict):
    """learn: held-out logits before and after a short training run."""

    before: Tensor
    after: Tensor
    steps: int


class StepsReply(TypedDict):
    """optimizer_steps: parameters before and after the optimizer's steps."""

    before: dict[str, Tensor]
    after: dict[str, Tensor]
