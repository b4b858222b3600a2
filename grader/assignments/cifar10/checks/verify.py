"""Checking the worker's claims against behaviour, on the trusted side.

Probes run in the student's process, so a submission can replace them: report Kaiming
weights its module does not have, or describe a ReLU its Sequential lacks. A description
is therefore only believed when the module's own behaviour, measured on secret inputs,
is what the description implies, computed here with the reference architecture. Then a
forged description earns points only if it describes what the code actually does.
"""

from __future__ import annotations

import math

import torch

from grader.checks import Context
from grader.checks.compare import PARITY_RTOL, map_state, parity


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
    gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=ctx.rng).item()))
    x = torch.randn(5, 3, 32, 32, generator=gen, dtype=torch.float64)
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
