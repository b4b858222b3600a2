"""Probes: the requests the grader may make of a worker once the cells have run.

Each probe takes plain data (tensors, numbers, strings) from the grader, exercises the
student's code on it, and returns plain data: outputs, gradients, parameters, module
structure. None of them judges anything; the grader compares the returned data with the
reference in its own process.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..replies import (
    CallReply,
    CaptureReply,
    ConstructReply,
    Layer,
    LearnReply,
    ModuleInfo,
    OptimizerInfo,
    ParamGroup,
    StepsReply,
    TensorInfo,
)
from .runtime import Runtime

PROBES: dict[str, Callable[..., Any]] = {}


def probe(fn: Callable[..., Any]) -> Callable[..., Any]:
    PROBES[fn.__name__] = fn
    return fn


# -- describing objects as data ---------------------------------------------------------

# The torch.nn layer types whose settings a structural comparison needs.
_CONFIG_FIELDS = {
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"),
    "Linear": ("in_features", "out_features"),
    "Flatten": ("start_dim", "end_dim"),
    "MaxPool2d": ("kernel_size", "stride", "padding"),
    "AvgPool2d": ("kernel_size", "stride", "padding"),
    "BatchNorm2d": ("num_features",),
    "BatchNorm1d": ("num_features",),
    "Dropout": ("p",),
    "Dropout2d": ("p",),
    "Softmax": ("dim",),
    "LogSoftmax": ("dim",),
}


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return str(value)


def _torch_kind(module: nn.Module) -> str:
    """The torch.nn class a module is, or derives from (its own name if neither)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.") and cls is not nn.Module:
            return cls.__name__
    return type(module).__name__


def describe_module(model: Any) -> ModuleInfo:
    """Structure of a module as data: its leaf layers in registration order."""
    if not isinstance(model, nn.Module):
        return {"is_module": False, "type": type(model).__name__, "repr": repr(model)[:500]}
    leaves: list[Layer] = []
    for path, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        kind = _torch_kind(module)
        config = {f: _plain(getattr(module, f, None)) for f in _CONFIG_FIELDS.get(kind, ())}
        if kind in ("Conv2d", "Linear"):
            config["bias"] = module.bias is not None
        leaves.append(
            {
                "path": path,
                "kind": kind,
                "class": type(module).__name__,
                "config": config,
                "params": {n: list(p.shape) for n, p in module.named_parameters(recurse=False)},
            }
        )
    return {
        "is_module": True,
        "type": type(model).__name__,
        "leaves": leaves,
        "param_names": [n for n, _ in model.named_parameters()],
        "repr": repr(model)[:4000],
    }


def describe_optimizer(optimizer: Any, model: Any) -> OptimizerInfo:
    """Optimizer settings as data, and which of the model's parameters it updates."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        return {"is_optimizer": False, "type": type(optimizer).__name__}
    names = {}
    if isinstance(model, nn.Module):
        names = {id(p): n for n, p in model.named_parameters()}
    groups: list[ParamGroup] = []
    covered: set[int] = set()
    for group in optimizer.param_groups:
        settings = {
            k: _plain(v)
            for k, v in group.items()
            if k != "params" and isinstance(v, (bool, int, float, str, type(None)))
        }
        params = [names.get(id(p), "(not a parameter of the model)") for p in group["params"]]
        covered.update(id(p) for p in group["params"])
        groups.append({"settings": settings, "params": params})
    missing = [n for pid, n in names.items() if pid not in covered]
    return {
        "is_optimizer": True,
        "type": type(optimizer).__name__,
        "module": type(optimizer).__module__,
        "groups": groups,
        "missing": missing,
    }


def _what(desc: TensorInfo, upstream: torch.Tensor) -> str:
    if not desc.get("is_tensor"):
        return f"it returned a {desc.get('type')}, not a tensor"
    return f"it returned shape {tuple(desc['shape'])}, expected {tuple(upstream.shape)}"


def describe_tensor(value: Any) -> TensorInfo:
    if not isinstance(value, torch.Tensor):
        return {"is_tensor": False, "type": type(value).__name__, "repr": repr(value)[:200]}
    return {
        "is_tensor": True,
        "shape": list(value.shape),
        "dtype": str(value.dtype).replace("torch.", ""),
        "device": str(value.device),
        "requires_grad": bool(value.requires_grad),
        "is_leaf": bool(value.is_leaf),
        "value": value.detach().cpu(),
    }


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _target_model(rt: Runtime, target: dict) -> nn.Module:
    """The module a probe works on: a question's captured model or a constructed one."""
    if "handle" in target:
        model = rt.handles[target["handle"]]
    else:
        capture = rt.capture_for(target["question"])
        if capture is None:
            raise LookupError(f"nothing was captured for {target['question']}")
        model = capture.objects.get("model")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, found {type(model).__name__}")
    return model


# -- probes -----------------------------------------------------------------------------


@probe
def ping(rt: Runtime) -> dict:
    return {"pong": True}


@probe
def call_function(
    rt: Runtime, *, name: str, args: list, upstream: torch.Tensor | None = None, helper: bool = False
) -> CallReply:
    """Call a student function on the given tensors; with ``upstream``, backpropagate it
    and return the gradient of every tensor argument (nested lists allowed)."""
    fn = rt.helper(name) if helper else rt.lookup(name)
    leaves: list[torch.Tensor] = []

    def prepare(value):
        if isinstance(value, torch.Tensor):
            t = value.clone().requires_grad_(upstream is not None and value.is_floating_point())
            leaves.append(t)
            return t
        if isinstance(value, list):
            return [prepare(v) for v in value]
        return value

    prepared = [prepare(a) for a in args]
    with rt.globals_bound():
        output = fn(*prepared)
    result: CallReply = {"output": describe_tensor(output)}
    if upstream is not None:
        if not isinstance(output, torch.Tensor) or output.shape != upstream.shape:
            raise ValueError(f"cannot backpropagate: {_what(result['output'], upstream)}")
        output.backward(upstream.to(output.dtype))
        result["grads"] = [t.grad if t.grad is not None else None for t in leaves]
    return result


@probe
def describe_capture(rt: Runtime, *, question: str) -> CaptureReply:
    """What a question's cell handed to training, described as data."""
    capture = rt.capture_for(question)
    if capture is None:
        return {"found": False}
    objects = capture.objects
    out: CaptureReply = {"found": True, "kind": capture.kind, "cell": capture.cell}
    # every cell that answered the question (the last one is graded), once per distinct call
    out["cells"] = [c.cell for c in rt.captures_for(question) if c.kind != "cell_end"]
    if "params" in objects:
        params = objects["params"]
        out["params"] = [describe_tensor(p) for p in params] if isinstance(params, list) else []
        lr = objects.get("learning_rate")
        out["learning_rate"] = lr if isinstance(lr, (int, float)) else None
        fn = objects.get("model_fn")
        out["model_fn"] = getattr(fn, "__name__", None)
    dtype = rt.ns.get("dtype")
    out["dtype"] = str(dtype).replace("torch.", "") if isinstance(dtype, torch.dtype) else None
    if "model" in objects:
        out["model"] = describe_module(objects["model"])
        out["optimizer"] = describe_optimizer(objects.get("optimizer"), objects["model"])
        if isinstance(objects["model"], nn.Module):
            out["state"] = _state(objects["model"])
        epochs = objects.get("epochs")
        out["epochs"] = epochs if isinstance(epochs, int) else None
    return out


@probe
def construct(
    rt: Runtime, *, name: str, args: list, kwargs: dict, seed: int, handle: str, install: dict | None = None
) -> ConstructReply:
    """Instantiate a student class with a fixed seed; describe it and keep it by handle.

    ``install`` maps attribute paths to layer specifications ({"kind": "Conv2d" or
    "Linear", "config": {...}}) that replace the student's layers, so that a forward
    pass can be tested on the specified layers whatever the constructor built."""
    cls = rt.lookup(name)
    rt.reseed(seed)
    with rt.globals_bound():
        model = cls(*args, **kwargs)
    for path, spec in (install or {}).items():
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, _build_layer(spec))
    rt.handles[handle] = model
    out: ConstructReply = {"model": describe_module(model)}
    if isinstance(model, nn.Module):
        out["state"] = _state(model)
    return out


def _build_layer(spec: dict) -> nn.Module:
    c = spec["config"]
    if spec["kind"] == "Conv2d":
        return nn.Conv2d(
            c["in_channels"],
            c["out_channels"],
            c["kernel_size"],
            stride=c["stride"],
            padding=c["padding"],
            bias=c["bias"],
        )
    if spec["kind"] == "Linear":
        return nn.Linear(c["in_features"], c["out_features"], bias=c["bias"])
    raise ValueError(f"cannot build a {spec['kind']} layer")


@probe
def module_forward_backward(
    rt: Runtime, *, target: dict, state: dict, x: torch.Tensor, upstream: torch.Tensor | None
) -> dict:
    """Load ``state`` into a copy of the target module in ``x``'s dtype (float64 for
    parity; float32, a dozen times faster on a CPU, where only shapes matter), run it on
    ``x`` in eval mode and, with ``upstream``, return the gradients of the input and
    every parameter. ``output_train`` is the same forward pass in training mode (what
    ``train_part34`` runs), from a fixed random state: a layer active only in training
    mode shows there."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64
    model = copy.deepcopy(_target_model(rt, target)).to(dtype).eval()
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    x = x.clone().requires_grad_(upstream is not None)
    with rt.globals_bound():
        output = model(x)
        model.train()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            output_train = model(x.detach())
        model.eval()
    result: dict[str, Any] = {"output": describe_tensor(output), "output_train": describe_tensor(output_train)}
    if upstream is not None:
        if not isinstance(output, torch.Tensor) or output.shape != upstream.shape:
            raise ValueError(f"cannot backpropagate: {_what(result['output'], upstream)}")
        output.backward(upstream.to(output.dtype))
        result["grad_x"] = x.grad
        result["grads"] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return result


@probe
def optimizer_steps(rt: Runtime, *, question: str, grads: list[dict]) -> StepsReply:
    """Apply the captured optimizer to a copy of the captured model, one step per entry
    of ``grads`` (parameter name -> gradient); return the parameters before and after."""
    capture = rt.capture_for(question)
    if capture is None:
        raise LookupError(f"nothing was captured for {question}")
    model, optimizer = copy.deepcopy((capture.objects["model"], capture.objects["optimizer"]))
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    for step in grads:
        for n, p in params.items():
            p.grad = step[n].to(p.dtype) if n in step else None
        with rt.globals_bound():
            optimizer.step()
    return {"before": before, "after": {n: p.detach().clone() for n, p in params.items()}}


@probe
def learn(
    rt: Runtime, *, target: dict, x: torch.Tensor, y: torch.Tensor, batch_size: int, eval_x: torch.Tensor
) -> LearnReply:
    """Train a copy of the captured model with a copy of its optimizer on the given
    images (the grader's loop, the student's model and optimizer); return the logits on
    ``eval_x`` before and after, so the grader can judge them with labels it keeps.
    The images are cast to the notebook's ``dtype``, as its ``train_part34`` does: a
    model whose parameters have another dtype fails here as it would there."""
    capture = rt.capture_for(target["question"])
    if capture is None:
        raise LookupError(f"nothing was captured for {target['question']}")
    model, optimizer = copy.deepcopy((capture.objects["model"], capture.objects["optimizer"]))
    rt.reseed(0)
    dtype = rt.ns.get("dtype")
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        x, eval_x = x.to(dtype), eval_x.to(dtype)

    def logits() -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(eval_x[i : i + 500]) for i in range(0, len(eval_x), 500)])

    with rt.globals_bound():
        before = logits()
        model.train()
        for i in range(0, len(x), batch_size):
            loss = F.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after = logits()
    return {"before": before, "after": after, "steps": math.ceil(len(x) / batch_size)}


@probe
def module_outputs(rt: Runtime, *, target: dict, x: torch.Tensor) -> dict:
    """Run the target module as it is (its own weights, float64 copy, eval mode) on ``x``:
    what the grader checks the weights the module reports against."""
    model = copy.deepcopy(_target_model(rt, target)).double().eval()
    with rt.globals_bound(), torch.no_grad():
        return {"output": describe_tensor(model(x))}


@probe
def capture_forward(rt: Runtime, *, question: str, x: torch.Tensor, params: list | None = None) -> dict:
    """The training function a question's cell handed over (``model_fn``), run on ``x``
    with the captured parameters as they are, or with ``params`` when given; and whether
    each captured parameter is a leaf that requires grad. What the parameters the worker
    reported are checked against: the same function on both must agree."""
    capture = rt.capture_for(question)
    if capture is None:
        raise LookupError(f"nothing was captured for {question}")
    fn = capture.objects.get("model_fn")
    captured = capture.objects.get("params")
    if not callable(fn) or not isinstance(captured, list):
        raise TypeError("the cell handed no training function and parameter list")
    if params is None:
        params = [p.detach() if isinstance(p, torch.Tensor) else p for p in captured]
    out: dict[str, Any] = {
        "trainable": [isinstance(p, torch.Tensor) and p.requires_grad and p.is_leaf for p in captured]
    }
    rt.reseed(0)  # a function that draws random numbers draws the same ones both times
    try:
        with rt.globals_bound(), torch.no_grad():
            out["output"] = describe_tensor(fn(x, list(params)))
    except Exception as exc:  # a failing forward pass is Question 1's to grade; here it is an observation
        out["raised"] = type(exc).__name__
    return out
