"""Part II, barebones PyTorch: Question 1 (``three_layer_convnet``) and Question 2 (its
parameters and training call), plus the provided helpers those questions rely on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from grader.checks import CheckFailed, Context, Outcome, check
from grader.checks.compare import PARITY_RTOL, kaiming_std, parity, shape_str
from grader.checks.learning import judge_learning, manual_sgd_run, notebook_dtype, standard_start, substitution_note
from grader.details import TensorError, init_std, of, parity_figures, substitution, tensor_errors
from grader.replies import TensorInfo

from . import spec
from .answered import require_answer
from .spec import variant_of
from .verify import reported_parameters_are_captured

PARAM_NAMES = ("conv_w1", "conv_b1", "conv_w2", "conv_b2", "fc_w", "fc_b")


def q2_shapes(ctx: Context) -> tuple[tuple[int, ...], ...]:
    """The shapes of Question 2's parameters: (32, 3, 5, 5), (32,), ... in the standard homework."""
    c1, c2 = variant_of(ctx).channel_1, variant_of(ctx).channel_2
    return ((c1, 3, 5, 5), (c1,), (c2, c1, 3, 3), (c2,), (c2 * 32 * 32, 10), (10,))


def _convnet_params(gen: torch.Generator, c1: int, c2: int, dtype=torch.float64) -> list[torch.Tensor]:
    """Random non-zero parameters (zeros would hide a missing bias or ReLU)."""
    shapes = [(c1, 3, 5, 5), (c1,), (c2, c1, 3, 3), (c2,), (c2 * 32 * 32, 10), (10,)]
    scales = [0.2, 0.5, 0.2, 0.5, 0.02, 0.5]
    return [torch.randn(s, generator=gen, dtype=dtype) * k for s, k in zip(shapes, scales)]


def _call_q1(ctx: Context, x: torch.Tensor, params: list[torch.Tensor], upstream=None) -> dict:
    return ctx.probe("call_function", name="three_layer_convnet", args=[x, params], upstream=upstream)


def _found_shape(out: dict) -> str:
    desc = out["output"]
    return shape_str(desc["shape"]) if desc.get("is_tensor") else f"a {desc.get('type')}"


@check("Q1", "output shape for a batch of 64", timeout=30)
def output_shape(ctx: Context) -> Outcome:
    gen = ctx.rng
    x = torch.randn(64, 3, 32, 32, generator=gen)
    out = _call_q1(ctx, x, _convnet_params(gen, 6, 9, torch.float32))
    found = _found_shape(out)
    ok = found == "(64, 10)"
    return Outcome(ok, f"three_layer_convnet returned {found} for 64 images; expected (64, 10)")


@check("Q1", "works for any batch size (N = 1, 7, 40)", timeout=30)
def any_batch_size(ctx: Context) -> Outcome:
    gen, problems, seen = ctx.rng, [], {}
    channels = 9  # conv_w2's output channels here, as in the notebook's own test (6 and 9)
    params = _convnet_params(gen, 6, channels, torch.float32)
    for n in (1, 7, 40):
        try:
            found = _found_shape(_call_q1(ctx, torch.randn(n, 3, 32, 32, generator=gen), params))
        except Exception as exc:
            problems.append(f"N={n}: raised {exc}")
            seen[n] = str(exc)
            continue
        if found != f"({n}, 10)":
            problems.append(f"N={n}: returned {found}, expected ({n}, 10)")
            seen[n] = found
    if problems:
        raised = {p.split(": ", 1)[1] for p in problems}
        hint = _size_hint(seen, channels * 32 * 32)
        if len(problems) == 3 and len(raised) == 1 and next(iter(raised)).startswith("raised"):
            return Outcome(False, f"for every batch size, three_layer_convnet {next(iter(raised))}.{hint}".rstrip("."))
        return Outcome(False, "; ".join(problems) + "." + hint)
    return Outcome(True, "output is (N, 10) for N = 1, 7 and 40")


def _size_hint(seen: dict[int, str], per_image: int) -> str:
    """A hint naming the number that is fixed, read from what actually differed: the
    shapes returned, or the sizes in PyTorch's view/reshape and matmul errors."""
    import re

    batch, width = set(), set()
    for n, text in seen.items():
        m = re.search(r"shape '\[(-?\d+), (-?\d+)\]' is invalid", text) or re.search(
            r"shapes cannot be multiplied \((\d+)x(\d+) and", text
        )
        if m:
            rows, cols = int(m.group(1)), int(m.group(2))
            if rows not in (n, -1):
                batch.add(rows)
            elif cols not in (per_image, -1):
                width.add(cols)
            continue
        m = re.match(r"\((\d+), ", text)
        if m and int(m.group(1)) != n:
            batch.add(int(m.group(1)))
    if batch:
        return f" The batch size seems hard-coded to {', '.join(map(str, sorted(batch)))}: read it from x.shape[0]."
    if width:
        fixed = next(iter(width))
        guess = f" ({fixed // 1024} channels x 32 x 32)" if fixed % 1024 == 0 else ""
        return (
            f" The batch size is read correctly, but each image is flattened to {fixed} values{guess}, while this"
            f" input has {per_image} (9 channels x 32 x 32): is a channel count hard-coded? Flatten with"
            " flatten(x) or x.view(x.shape[0], -1)."
        )
    return ""


def _q1_parity(ctx: Context) -> dict:
    """Forward and backward of the student's function and the reference on the same
    secret float64 inputs; computed once for both parity checks."""
    if "q1" not in ctx.shared:
        gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=ctx.rng).item()))
        x = torch.randn(7, 3, 32, 32, generator=gen, dtype=torch.float64)
        params = _convnet_params(gen, 8, 5)
        upstream = torch.randn(7, 10, generator=gen, dtype=torch.float64)
        try:
            student = _call_q1(ctx, x, params, upstream)
        except Exception as exc:
            ctx.shared["q1"] = exc
            raise
        leaves = [x.clone().requires_grad_(True)] + [p.clone().requires_grad_(True) for p in params]
        expected = ctx.reference.three_layer_convnet(leaves[0], leaves[1:])
        expected.backward(upstream)
        ctx.shared["q1"] = {"student": student, "output": expected.detach(), "grads": [t.grad for t in leaves]}
    value = ctx.shared["q1"]
    if isinstance(value, Exception):
        raise value
    return value


@check("Q1", "forward pass matches the reference (float64, random inputs)", timeout=30)
def forward_parity(ctx: Context) -> Outcome:
    run = _q1_parity(ctx)
    desc = run["student"]["output"]
    if not desc.get("is_tensor") or desc["shape"] != list(run["output"].shape):
        return Outcome(False, f"output is {_found_shape(run['student'])}, expected {shape_str(run['output'].shape)}")
    p = parity(desc["value"], run["output"], rtol=PARITY_RTOL)
    details = of(parity_figures(max_abs_err=p.max_abs, rel_err=p.rel, tolerance=PARITY_RTOL))
    if p.ok:
        return Outcome(True, f"scores match the reference ({p.describe()})", details=details)
    return Outcome(
        False,
        f"scores differ from the reference: {p.describe()} (tolerance {PARITY_RTOL:g}). "
        "Check the paddings (2 and 1), the ReLU after each convolution, and the order of flattening.",
        details=details,
    )


@check("Q1", "gradients match the reference for every parameter", timeout=30)
def gradient_parity(ctx: Context) -> Outcome:
    run = _q1_parity(ctx)
    grads = run["student"].get("grads") or []
    names = ["x", *PARAM_NAMES]
    problems: list[str] = []
    errors: dict[str, TensorError] = {}
    for name, found, expected in zip(names, grads, run["grads"]):
        if found is None:
            problems.append(f"{name}: no gradient reached it")
            continue
        p = parity(found, expected, rtol=PARITY_RTOL)
        errors[name] = {"max_abs_err": p.max_abs, "rel_err": p.rel}
        if not p.ok:
            problems.append(f"{name}: {p.describe()}")
    if len(grads) != len(names):
        problems.append("the function did not return a tensor that could be backpropagated")
    details = of(tensor_errors(errors))
    if problems:
        return Outcome(False, "gradients differ from the reference: " + "; ".join(problems), details=details)
    return Outcome(True, "gradients of x and all six parameters match the reference", details=details)


@check("Q1", "the provided flatten helper still flattens correctly", timeout=20)
def flatten_helper(ctx: Context) -> Outcome:
    require_answer(ctx, "Q1")
    gen = ctx.rng
    for shape in ((5, 3, 4, 4), (1, 7), (3, 2, 2, 2, 2)):
        x = torch.randn(shape, generator=gen)
        out = ctx.probe("call_function", name="flatten", args=[x])["output"]
        expected = ctx.reference.flatten(x)
        if not out.get("is_tensor") or not torch.equal(out["value"], expected):
            found = shape_str(out["shape"]) if out.get("is_tensor") else out.get("type")
            return Outcome(
                False,
                f"flatten of a {shape_str(shape)} tensor gave {found} (or reordered values); expected {shape_str(expected.shape)} in row-major order",
            )
    return Outcome(True, "flatten keeps the batch dimension and row-major order")


# -- Question 2 -----------------------------------------------------------------------------


def _q2_params(ctx: Context) -> list[TensorInfo]:
    """The six parameters as the worker describes them, once that description is shown
    to be of the tensors the cell handed to training (see verify.py)."""
    capture = ctx.capture("Q2")
    params = capture.get("params") or []
    if len(params) != 6:
        raise CheckFailed(
            f"params should hold six tensors (conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b); found {len(params)}"
        )
    if "q2_claims" not in ctx.shared:
        ctx.shared["q2_claims"] = reported_parameters_are_captured(
            ctx, question="Q2", params=params, dtype=notebook_dtype(capture)
        )
    if ctx.shared["q2_claims"]:
        raise CheckFailed(ctx.shared["q2_claims"])
    return params


@check("Q2", "parameter shapes and dtype", timeout=30)
def shapes(ctx: Context) -> Outcome:
    problems = []
    for name, desc, want in zip(PARAM_NAMES, _q2_params(ctx), q2_shapes(ctx)):
        if not desc.get("is_tensor"):
            problems.append(f"{name} is {desc.get('type')} ({desc.get('repr')}), not a tensor")
        elif tuple(desc["shape"]) != want:
            problems.append(f"{name} has shape {shape_str(desc['shape'])}, expected {shape_str(want)}")
        elif desc["dtype"] != "float32":
            problems.append(f"{name} is {desc['dtype']}, expected float32 (the notebook's dtype)")
    if problems:
        return Outcome(False, "; ".join(problems), fraction=(6 - len(problems)) / 6)
    return Outcome(True, "all six parameters have the expected shapes and dtype float32")


@check("Q2", "biases start at exactly zero", timeout=30)
def zero_biases(ctx: Context) -> Outcome:
    problems = []
    for name, desc in zip(PARAM_NAMES, _q2_params(ctx)):
        if name.endswith(("b1", "b2", "_b")) and desc.get("is_tensor") and desc["value"].abs().max().item() != 0:
            problems.append(f"{name} has non-zero entries (use zero_weight)")
        elif name.endswith(("b1", "b2", "_b")) and not desc.get("is_tensor"):
            problems.append(f"{name} is not a tensor")
    return Outcome(not problems, "; ".join(problems) or "conv_b1, conv_b2 and fc_b are all zero")


@check("Q2", "every parameter is a leaf tensor that requires grad", timeout=30)
def requires_grad(ctx: Context) -> Outcome:
    problems = []
    for name, desc in zip(PARAM_NAMES, _q2_params(ctx)):
        if not desc.get("is_tensor"):
            problems.append(f"{name} is not a tensor")
        elif not desc["requires_grad"]:
            problems.append(f"{name} does not require grad")
        elif not desc["is_leaf"]:
            problems.append(
                f"{name} is the result of an operation (not a leaf), so it has no .grad to update: create it, then set requires_grad"
            )
    return Outcome(not problems, "; ".join(problems) or "all six are leaf tensors with requires_grad=True")


@check("Q2", "Kaiming initialisation of the weights", timeout=30)
def kaiming_init(ctx: Context) -> Outcome:
    params = _q2_params(ctx)
    shapes = q2_shapes(ctx)
    tests = []
    for index, fan_in_of in ((0, lambda s: math.prod(s[1:])), (2, lambda s: math.prod(s[1:])), (4, lambda s: s[0])):
        desc = params[index]
        if not desc.get("is_tensor") or tuple(desc["shape"]) != shapes[index]:
            return Outcome(
                False, f"{PARAM_NAMES[index]} does not have the expected shape, so its initialisation cannot be judged"
            )
        tests.append(kaiming_std(PARAM_NAMES[index], desc["value"], fan_in_of(shapes[index])))
    message = "; ".join(t.describe() for t in tests)
    return Outcome(
        all(t.ok for t in tests),
        message,
        details=of(init_std({t.name: t.details() for t in tests})),
    )


@check("Q2", "learning rate is {q2_lr}", timeout=30)
def learning_rate(ctx: Context) -> Outcome:
    require_answer(ctx, "Q2")
    lr = ctx.capture("Q2").get("learning_rate")
    if lr is None:
        return Outcome(False, "no numeric learning rate was passed to train_part2")
    want = variant_of(ctx).q2.lr
    ok = math.isclose(lr, want, rel_tol=1e-9)
    return Outcome(ok, f"learning rate {lr:g}" + ("" if ok else f", expected {want:g}"))


@check("Q2", "one step of train_part2 from your parameters equals the reference update", timeout=60)
def sgd_step(ctx: Context) -> Outcome:
    """Runs the student's own train_part2 for one step from copies of their parameters,
    with gradients the grader chooses (replayed by probes._GradientReplay), so the step
    does not depend on the student's Question 1. Gradients are scaled to each
    parameter's magnitude so that the float32 update is measured precisely."""
    params = _q2_params(ctx)
    values = [d.get("value") for d in params]
    if any(v is None for v in values):
        raise CheckFailed("every parameter must be a tensor before a step can be taken")
    dtype = notebook_dtype(ctx.capture("Q2"))
    if all(tuple(v.shape) == s for v, s in zip(values, q2_shapes(ctx))):
        try:  # the step train_part2 would take starts with a forward pass on a batch of the notebook's dtype
            ctx.reference.three_layer_convnet(torch.zeros(1, 3, 32, 32, dtype=dtype), values)
        except RuntimeError as exc:
            raise CheckFailed(_dtype_crash(params, dtype, exc)) from None
    gen = ctx.rng
    x = torch.randn(5, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (5,), generator=gen)
    scores = torch.randn(5, 10, generator=gen)
    d_scores = (scores.softmax(dim=1) - F.one_hot(y, 10)) / len(y)  # d(mean cross-entropy)/d(scores)
    direction = d_scores / d_scores.pow(2).sum()
    grads = [
        torch.randn(v.shape, generator=gen) * 3 * max(v.double().std().item() if v.numel() > 1 else 0.0, 0.01)
        for v in values
    ]
    out = ctx.probe("train_part2_replay", question="Q2", x=x, y=y, scores=scores, direction=direction, grads=grads)
    problems, worst, lr = [], 0.0, variant_of(ctx).q2.lr
    for name, before, after, g in zip(PARAM_NAMES, out["before"], out["after"], grads):
        moved = before.double() - after.double()
        p = parity(moved, lr * g.double(), rtol=1e-3)
        worst = max(worst, p.rel)
        if not p.ok:
            ratio = (moved.flatten() @ g.double().flatten()) / (g.double().flatten() @ g.double().flatten())
            problems.append(f"{name} moved by {ratio.item():.3g} x its gradient")
    if problems:
        return Outcome(
            False,
            f"the update differs from w - {lr:g} * grad: " + "; ".join(problems),
            details=of(parity_figures(rel_err=worst)),
        )
    return Outcome(
        True,
        f"every parameter moved to w - {lr:g} * grad (relative error {worst:.2g})",
        details=of(parity_figures(rel_err=worst)),
    )


def _learning_implied(ctx: Context) -> str | None:
    """Q2.learns trains the specified three_layer_convnet from the captured parameters
    with the captured learning rate in the notebook's dtype: once those checks passed,
    it is implied where the parameters are a standard (Kaiming normal) float32 start
    (and where it could run: without the images it is skipped)."""
    _ = ctx.data
    if notebook_dtype(ctx.capture("Q2")) != torch.float32:
        return None
    if variant_of(ctx) != spec.Variant():  # the implication is shown for the standard homework's values
        return None
    shapes = q2_shapes(ctx)
    fan_ins = [math.prod(s[1:]) for s in shapes[:4]] + [shapes[4][0]] * 2  # fc_w is (in, out)
    tensors = [
        (d["value"], f, n.endswith(("b1", "b2", "_b"))) for n, d, f in zip(PARAM_NAMES, _q2_params(ctx), fan_ins)
    ]
    return standard_start(tensors, inits=("Kaiming normal",))


@check(
    "Q2",
    "your parameters and learning rate learn on real images",
    timeout=120,
    implied_by=("Q2.shapes", "Q2.zero_biases", "Q2.kaiming_init", "Q2.learning_rate", "Q2.sgd_step"),
    implied_if=_learning_implied,
)
def learns(ctx: Context) -> Outcome:
    params = _q2_params(ctx)
    lr = ctx.capture("Q2").get("learning_rate")
    if any(not d.get("is_tensor") or tuple(d["shape"]) != s for d, s in zip(params, q2_shapes(ctx))) or lr is None:
        raise CheckFailed("needs six tensors of the expected shapes and a learning rate")
    dtype = notebook_dtype(ctx.capture("Q2"))
    try:
        run = manual_sgd_run(
            ctx, ctx.reference.three_layer_convnet, [d["value"] for d in params], float(lr), dtype=dtype
        )
    except RuntimeError as exc:
        raise CheckFailed(_dtype_crash(params, dtype, exc)) from None
    # The specified three_layer_convnet stands in for the student's (Question 1).
    outcome = judge_learning(run)
    outcome.message += substitution_note(ctx, {"Q1.forward_parity": "the specified three_layer_convnet (Question 1)"})
    outcome.details |= of(substitution({"three_layer_convnet": "the specification's (graded in Q1)"}))
    return outcome


def _dtype_crash(params: Sequence[Mapping[str, Any]], dtype: torch.dtype, exc: Exception) -> str:
    """train_part2 casts every batch to the notebook's dtype: a parameter of another
    dtype makes its first forward pass fail, so the parameters never learn."""
    name = str(dtype).replace("torch.", "")
    other = [f"{n} is {d['dtype']}" for n, d in zip(PARAM_NAMES, params) if d.get("dtype") != name]
    return (
        f"train_part2 casts every batch to {name} (the notebook's dtype), and with your parameters "
        f"({', '.join(other) or 'as they are'}) its first step fails: {type(exc).__name__}: {str(exc)[:200]}. "
        f"Create every parameter as {name}."
    )


@check("Q2", "the provided train_part2 helper updates and zeroes gradients correctly", timeout=60)
def train_part2_helper(ctx: Context) -> Outcome:
    require_answer(ctx, "Q2")
    gen = ctx.rng
    batches = [
        {"x": torch.randn(4, 3, 2, 2, generator=gen), "y": torch.randint(0, 3, (4,), generator=gen)} for _ in range(3)
    ]
    w = [torch.randn(12, 3, generator=gen) * 0.3, torch.zeros(3)]
    lr = 0.1
    out = ctx.probe("helper_train_part2", batches=batches, params=w, learning_rate=lr)
    expected = [t.clone().requires_grad_(True) for t in w]
    accumulated = [t.clone().requires_grad_(True) for t in w]
    for b in batches:
        for ps, zero in ((expected, True), (accumulated, False)):
            loss = F.cross_entropy(b["x"].reshape(4, -1).mm(ps[0]) + ps[1], b["y"])
            loss.backward()
            with torch.no_grad():
                for p in ps:
                    p -= lr * p.grad
                    if zero:
                        p.grad.zero_()
    found = out["after"]
    if all(parity(f, e.detach(), rtol=1e-5).ok for f, e in zip(found, expected)):
        return Outcome(True, "train_part2 applies w -= lr * grad and zeroes the gradients every step")
    if all(parity(f, a.detach(), rtol=1e-5).ok for f, a in zip(found, accumulated)):
        return Outcome(
            False, "train_part2 never zeroes the gradients, so they accumulate across steps (restore w.grad.zero_())"
        )
    return Outcome(
        False,
        "train_part2 does not perform w -= learning_rate * w.grad on each step (was the provided helper changed?)",
    )
