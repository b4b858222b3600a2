"""Checking the worker's claims against behaviour, on the trusted side.

Probes run in the student's process, so a submission can replace them: report Kaiming
weights its module does not have, or describe a ReLU its Sequential lacks. A description
is therefore only believed when the module's own behaviour, measured on secret inputs,
is what the description implies, computed here with the reference architecture. Then a
forged description earns points only if it describes what the code actually does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from grader.checks import CheckFailed, Context
from grader.checks.compare import PARITY_RTOL, map_state, parity
from grader.sandbox import StudentError


def answer_key_present(ctx: Context) -> bool:
    """Whether the reference is here to verify against: not in a student's self-check,
    which runs without the answer key (and where a forgery would fool only its author)."""
    try:
        ctx.reference  # noqa: B018 - imports it
    except ImportError:
        return False
    return True


def reported_weights_drive_outputs(
    ctx: Context, *, handle: str, state: dict[str, torch.Tensor], reference: torch.nn.Module
) -> str | None:
    """None if the weights the worker reported for the module ``handle``, loaded into the
    ``reference`` architecture here, give the outputs the module itself gives on secret
    inputs; else the problem in words. Only meaningful when the module's forward pass is
    the reference's (checked by the caller); a state that does not pair up with the
    reference's parameters cannot be checked this way and is let through."""
    reference = reference.double().eval()
    ref_state = reference.state_dict()
    student = {k: v for k, v in state.items() if v.is_floating_point()}
    mapping = map_state(ref_state, {k: list(v.shape) for k, v in student.items()})
    if mapping is None:
        return None
    reference.load_state_dict({r: student[s].double() for s, r in mapping.items()})
    x = torch.randn(5, 3, 32, 32, generator=_secret_generator(ctx), dtype=torch.float64)
    with torch.no_grad():
        expected = reference(x)
    out = ctx.probe("module_outputs", target={"handle": handle}, x=x)["output"]
    if isinstance(out.get("value"), torch.Tensor) and list(out["value"].shape) == list(expected.shape):
        p = parity(out["value"], expected, rtol=PARITY_RTOL)
        if p.ok and math.isfinite(p.rel):
            return None
    return (
        "the weights your module reports are not the weights it computes with (its outputs on secret inputs "
        "differ from those of the same weights in the specified architecture); nothing was credited"
    )


def _secret_generator(ctx: Context) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=ctx.rng).item()))


def reported_parameters_are_captured(
    ctx: Context, *, question: str, params: Sequence[Mapping[str, Any]], dtype: torch.dtype
) -> str | None:
    """None if the parameters the worker reported for ``question`` are the ones its cell
    handed to training: the cell's own training function, run on secret inputs with the
    captured parameters and with the reported values, must give the same scores, and
    each reported "leaf that requires grad" must be one. Else the problem in words.

    Both runs use the student's function, so a mistake in it (Question 1) does not count
    here; a function that raises on both cannot tell them apart and lets them through."""
    values = [d.get("value") for d in params]
    if not all(isinstance(v, torch.Tensor) for v in values):
        return None  # not six tensors: the checks say so from the description itself
    x = torch.randn(2, 3, 32, 32, generator=_secret_generator(ctx)).to(dtype)
    try:
        actual = ctx.probe("capture_forward", question=question, x=x)
        claimed = ctx.probe("capture_forward", question=question, x=x, params=values)
    except StudentError:  # no training function was handed over: nothing to compare with
        return None
    problem = (
        "the parameters your cell reports are not the ones it handed to training (its training function "
        "gives other scores on secret inputs with them than with the reported values); nothing was credited"
    )
    if "raised" in actual or "raised" in claimed:
        return None if actual.get("raised") == claimed.get("raised") else problem
    found, expected = actual["output"], claimed["output"]
    if found.get("is_tensor") != expected.get("is_tensor"):
        return problem
    if found.get("is_tensor") and (
        found["dtype"] != expected["dtype"] or not parity(found["value"], expected["value"], rtol=1e-6).ok
    ):
        return problem
    reported = [bool(d.get("requires_grad") and d.get("is_leaf")) for d in params]
    if reported != list(actual["trainable"]):
        return (
            "the parameters your cell reports as leaf tensors that require grad are not what it handed to "
            "training; nothing was credited"
        )
    return None


def described_layers_are_built(
    ctx: Context, *, target: dict, model: Mapping[str, Any], state: dict[str, torch.Tensor], name: str, args: list
) -> str | None:
    """None if the layers the worker described (``model``) for the module ``target`` (a
    constructed one's handle, or a question's captured model, an instance of the class
    ``name``) are the layers it holds: ``name(*args)`` with those layers rebuilt from
    the description (by the grader's own layer factory) computes the same function, with
    the same random weights, on secret inputs. Else the problem in words. Both use the
    student's forward pass, so a mistake there (Question 4) does not count here; a
    forward pass that raises on both cannot tell them apart and lets them through."""
    leaves = [x for x in model.get("leaves", []) if x["kind"] in ("Conv2d", "Linear") and x["path"]]
    if not leaves or model.get("type") != name:
        return None
    install = {x["path"]: {"kind": x["kind"], "config": x["config"]} for x in leaves}
    problem = (
        "the layers your code reports are not the layers the module holds (it computes another function "
        "on secret inputs than the same module with the reported layers); nothing was credited"
    )
    try:
        rebuilt = ctx.construct(name, list(args), install=install)
    except CheckFailed:
        return problem  # the reported layers cannot even be built
    gen = _secret_generator(ctx)
    weights = {
        k: torch.randn(v.shape, generator=gen, dtype=torch.float64) * 0.1 if v.is_floating_point() else v
        for k, v in state.items()
    }
    x = torch.randn(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    outputs = []
    for where in (target, {"handle": rebuilt["handle"]}):
        try:
            out = ctx.probe("module_forward_backward", target=where, state=weights, x=x, upstream=None)
            outputs.append(out["output"])
        except StudentError as exc:
            outputs.append(exc.info.get("type"))
    if isinstance(outputs[0], dict) and isinstance(outputs[1], dict):
        same = (
            outputs[0].get("is_tensor")
            and outputs[1].get("is_tensor")
            and parity(outputs[0]["value"], outputs[1]["value"], rtol=1e-9).ok
        )
        return None if same else problem
    return None if outputs[0] == outputs[1] else problem
