"""Part III, the nn.Module API: Questions 3 and 4 (``ThreeLayerConvNet``'s constructor
and forward pass) and Question 5 (the model and optimizer handed to ``train_part34``),
plus the provided ``train_part34`` helper Question 5 relies on. The optimizer and
learning checks here serve Question 6 as well."""

from __future__ import annotations

import contextlib
import inspect
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from grader.checks import CheckFailed, Context, Outcome, check
from grader.checks.compare import PARITY_RTOL, kaiming_std, layer_str, map_state, parity
from grader.checks.learning import (
    judge_learning,
    module_run,
    notebook_dtype,
    standard_start,
    state_start,
    substitution_note,
    worker_run,
)
from grader.details import init_std, layer_lists, of, parity_figures, settings_found, student_error, substitution
from grader.replies import CaptureReply, ConstructReply
from grader.sandbox import StudentError

from . import spec
from .answered import require_answer
from .spec import variant_of
from .verify import answer_key_present, described_layers_are_built, reported_weights_drive_outputs


def spec_args(ctx: Context) -> tuple[int, int, int, int]:
    """ThreeLayerConvNet's specified arguments: (3, 32, 16, 10) in the standard homework."""
    return variant_of(ctx).convnet_args


def _layers_with_params(layers: Sequence[Mapping[str, Any]]) -> list:
    return [layer for layer in layers if layer["kind"] in ("Conv2d", "Linear")]


def same_layers(expected: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]]) -> tuple[bool, list[str]]:
    """Compare the parameterised layers as a multiset (attribute order in __init__ is
    free); return whether they agree and the differences in words."""
    want = Counter(layer_str(x) for x in _layers_with_params(expected))
    have = Counter(layer_str(x) for x in _layers_with_params(found))
    missing, extra = want - have, have - want
    problems = [f"missing {name}" for name in missing.elements()] + [f"unexpected {name}" for name in extra.elements()]
    return not problems, problems


def _random_state(reference: torch.nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random non-zero float64 weights with the reference's shapes."""
    return {
        k: torch.randn(v.shape, generator=gen, dtype=torch.float64) * (0.5 / math.sqrt(max(v[0].numel(), 1)))
        for k, v in reference.state_dict().items()
    }


def parity_run(
    ctx: Context,
    *,
    key: str,
    target: dict,
    reference: torch.nn.Module,
    student_model: Mapping[str, Any],
    sizes=(7, 19),
) -> list[dict]:
    """Load identical random weights into the student's module and the reference; run
    both forward and backward on the same secret float64 batches. Cached per key. Two
    small sizes show a forward pass that depends on the batch size (the shape checks try
    larger ones in float32); float64 convolutions cost a dozen times float32's on a CPU."""
    if key in ctx.shared:
        return ctx.shared[key]
    reference = reference.double().eval()
    gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=ctx.rng).item()))
    ref_state = _random_state(reference, gen)
    shapes = {}
    for leaf in student_model["leaves"]:
        for pname, shape in leaf["params"].items():
            shapes[f"{leaf['path']}.{pname}" if leaf["path"] else pname] = shape
    mapping = map_state(ref_state, shapes)
    if mapping is None:
        found = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
        raise CheckFailed(
            f"cannot load identical weights: the parameters do not pair up with the expected ones (found {found})"
        )
    reference.load_state_dict(ref_state)
    runs = []
    for n in sizes:
        x = torch.randn(n, 3, 32, 32, generator=gen, dtype=torch.float64)
        upstream = torch.randn(n, 10, generator=gen, dtype=torch.float64)
        student = ctx.probe(
            "module_forward_backward",
            target=target,
            state={s: ref_state[r] for s, r in mapping.items()},
            x=x,
            upstream=upstream,
        )
        xr = x.clone().requires_grad_(True)
        reference.zero_grad()
        expected = reference(xr)
        expected.backward(upstream)
        grads = {s: dict(reference.named_parameters())[r].grad.clone() for s, r in mapping.items()}
        runs.append({"n": n, "student": student, "output": expected.detach(), "grad_x": xr.grad, "grads": grads})
    ctx.shared[key] = runs
    return runs


def judge_forward(runs: list[dict]) -> Outcome:
    worst, problems = 0.0, []
    for run in runs:
        out = run["student"]["output"]
        if not out.get("is_tensor") or out["shape"] != list(run["output"].shape):
            problems.append(
                f"N={run['n']}: output {out.get('shape', out.get('type'))}, expected {list(run['output'].shape)}"
            )
            continue
        p = parity(out["value"], run["output"], rtol=PARITY_RTOL)
        worst = max(worst, p.rel)
        if not p.ok:
            problems.append(f"N={run['n']}: {p.describe()}")
    if problems:
        return Outcome(
            False,
            "with identical weights the scores differ from the reference: " + "; ".join(problems),
            details=of(parity_figures(rel_err=worst, tolerance=PARITY_RTOL)),
        )
    # train_part34 trains in training mode, and the specified network has no layer that
    # behaves differently there: the same scores are expected in both modes.
    training, train_worst = [], None
    for run in runs:
        out = run["student"].get("output_train")
        if out is None:
            continue
        pt = parity(out["value"], run["output"], rtol=PARITY_RTOL) if out.get("is_tensor") else None
        train_worst = max(train_worst or 0.0, pt.rel if pt else math.inf)
        if pt is None or not pt.ok:
            training.append(f"N={run['n']}: " + (pt.describe() if pt else f"output is a {out.get('type')}"))
    details = of(parity_figures(rel_err=worst, train_mode_rel_err=train_worst, tolerance=PARITY_RTOL))
    if training:
        return Outcome(
            False,
            "the scores match the reference in eval mode but differ in training mode (model.train(), as "
            "train_part34 runs it): " + "; ".join(training) + ". Is a layer active only in training mode "
            "(Dropout, BatchNorm) used? The specified network has none.",
            details=details,
        )
    return Outcome(
        True,
        f"with identical weights the scores match the reference in eval and training mode (relative error {worst:.2g})",
        details=details,
    )


def judge_gradients(runs: list[dict]) -> Outcome:
    worst, problems = 0.0, []
    for run in runs:
        student = run["student"]
        if student.get("grad_x") is None:
            problems.append(f"N={run['n']}: no gradient reached the input")
            continue
        pairs = [("input", student["grad_x"], run["grad_x"])] + [
            (name, student["grads"].get(name), expected) for name, expected in run["grads"].items()
        ]
        for name, found, expected in pairs:
            if found is None:
                problems.append(f"{name}: no gradient")
                continue
            p = parity(found, expected, rtol=PARITY_RTOL)
            worst = max(worst, p.rel)
            if not p.ok:
                problems.append(f"N={run['n']} {name}: {p.describe()}")
    if problems:
        return Outcome(
            False,
            "gradients differ from the reference: " + "; ".join(dict.fromkeys(problems)),
            details=of(parity_figures(rel_err=worst)),
        )
    return Outcome(
        True,
        f"gradients of the input and every parameter match (relative error {worst:.2g})",
        details=of(parity_figures(rel_err=worst)),
    )


# -- Question 3 -----------------------------------------------------------------------------


def _spec_model(ctx: Context):
    return ctx.reference.ThreeLayerConvNet(*spec_args(ctx))


@check("Q3", "layers: types, sizes and padding", timeout=30)
def layers(ctx: Context) -> Outcome:
    args = spec_args(ctx)
    built = ctx.construct("ThreeLayerConvNet", list(args))
    expected = spec.three_layer_convnet(*args)
    ok, problems = same_layers(expected, built["model"]["leaves"])
    found = ", ".join(layer_str(x) for x in _layers_with_params(built["model"]["leaves"])) or "no layers"
    details = of(
        layer_lists(
            [layer_str(x) for x in _layers_with_params(expected)],
            [layer_str(x) for x in _layers_with_params(built["model"]["leaves"])],
        )
    )
    if ok:
        # The layers are the worker's description: believed once the module computes
        # what a module with those layers computes (see verify.py).
        problem = _layers_verified(ctx, built, args)
        if problem:
            return Outcome(False, problem, details=details)
        return Outcome(True, f"ThreeLayerConvNet{args} has {found}", details=details)
    return Outcome(False, f"ThreeLayerConvNet{args}: " + "; ".join(problems) + f" (found {found})", details=details)


def _layers_verified(ctx: Context, built: ConstructReply, args: tuple) -> str | None:
    return described_layers_are_built(
        ctx,
        target={"handle": built["handle"]},
        model=built["model"],
        state=built["state"],
        name="ThreeLayerConvNet",
        args=list(args),
    )


@check("Q3", "the constructor uses its arguments", timeout=30)
def uses_arguments(ctx: Context) -> Outcome:
    for args in ((3, 12, 8, 10), (3, 20, 24, 5)):
        built = ctx.construct("ThreeLayerConvNet", list(args))
        ok, problems = same_layers(spec.three_layer_convnet(*args), built["model"]["leaves"])
        if not ok:
            return Outcome(
                False,
                f"ThreeLayerConvNet{args}: "
                + "; ".join(problems)
                + " — are sizes hard-coded instead of taken from the arguments?",
            )
        problem = _layers_verified(ctx, built, args)
        if problem:
            return Outcome(False, f"ThreeLayerConvNet{args}: {problem}")
    return Outcome(True, "the layer sizes follow in_channel, channel_1, channel_2 and num_classes")


@check("Q3", "Kaiming normal initialisation of every weight", timeout=30)
def kaiming_init(ctx: Context) -> Outcome:
    built = ctx.construct("ThreeLayerConvNet", list(spec_args(ctx)), seed=0)
    tests = []
    for leaf in _layers_with_params(built["model"]["leaves"]):
        name = f"{leaf['path']}.weight" if leaf["path"] else "weight"
        weight = built["state"].get(name)
        if weight is None:
            continue
        fan_in = math.prod(weight.shape[1:])  # PyTorch's fan_in: in_features, or in_channels * kH * kW
        tests.append(kaiming_std(f"{leaf['path']} ({layer_str(leaf)})", weight, fan_in))
    if not tests:
        return Outcome(False, f"ThreeLayerConvNet{spec_args(ctx)} has no convolution or linear weights to check")
    details = of(init_std({t.name: t.details() for t in tests}))
    if all(t.ok for t in tests) and answer_key_present(ctx) and _forward_matches_reference(ctx):
        # The statistics are of weights the worker reported: believe them only if they
        # are what the module computes with (see verify.py).
        problem = reported_weights_drive_outputs(
            ctx, handle=built["handle"], state=built["state"], reference=_spec_model(ctx)
        )
        if problem:
            return Outcome(False, problem, details=details)
    return Outcome(all(t.ok for t in tests), "; ".join(t.describe() for t in tests), details=details)


def _forward_matches_reference(ctx: Context) -> bool:
    """Whether Question 4's forward pass agrees with the reference; a forward pass that
    raises is Question 4's mistake, and only means the Kaiming claim cannot be verified."""
    try:
        return judge_forward(_q4_parity(ctx)).passed
    except Exception:  # CheckFailed, StudentError, WorkerError: graded in Question 4
        return False


# -- Question 4 -----------------------------------------------------------------------------


def _with_specified_layers(ctx: Context) -> ConstructReply:
    """ThreeLayerConvNet(3, 32, 16, 10) with its convolutions and linear layer replaced
    by the specified ones (matched in order of definition), so that Question 4 tests
    the forward pass alone and a constructor mistake costs only Question 3."""
    args = spec_args(ctx)
    built = ctx.construct("ThreeLayerConvNet", list(args))
    leaves = _layers_with_params(built["model"]["leaves"])
    wanted = spec.three_layer_convnet(*args)
    convs = [x for x in leaves if x["kind"] == "Conv2d"]
    linears = [x for x in leaves if x["kind"] == "Linear"]
    if len(convs) != 2 or len(linears) != 1 or not all(x["path"] for x in leaves):
        return built  # not the three layers the spec names: test the model as built
    install = {layer["path"]: target for layer, target in zip([*convs, *linears], wanted)}
    return ctx.construct("ThreeLayerConvNet", list(args), install=install)


def _q4_parity(ctx: Context) -> list[dict]:
    built = _with_specified_layers(ctx)
    return parity_run(
        ctx, key="q4", target={"handle": built["handle"]}, reference=_spec_model(ctx), student_model=built["model"]
    )


@check("Q4", "forward output is (N, 10) for N = 7, 40 and 64", timeout=60)
def output_shape(ctx: Context) -> Outcome:
    built = _with_specified_layers(ctx)
    gen, problems = ctx.rng, []
    for n in (7, 40, 64):
        out = ctx.probe(
            "module_forward_backward",
            target={"handle": built["handle"]},
            state=built["state"],
            # float32, as in training: shapes need no float64, which is slow on a CPU
            x=torch.randn(n, 3, 32, 32, generator=gen),
            upstream=None,
        )["output"]
        if not out.get("is_tensor") or out["shape"] != [n, 10]:
            problems.append(f"N={n}: got {out.get('shape', out.get('type'))}")
    if problems:
        return Outcome(
            False, "forward should return (N, 10) scores: " + "; ".join(problems) + ". Is the batch size hard-coded?"
        )
    return Outcome(True, "forward returns (N, 10) for N = 7, 40 and 64")


@check("Q4", "forward pass matches the reference with identical weights", timeout=60)
def forward_parity(ctx: Context) -> Outcome:
    return judge_forward(_q4_parity(ctx))


@check("Q4", "gradients match the reference with identical weights", timeout=60)
def gradient_parity(ctx: Context) -> Outcome:
    return judge_gradients(_q4_parity(ctx))


# -- shared by Questions 5 and 6 ----------------------------------------------------------------


def optimizer_settings(ctx: Context, question: str, required: dict[str, float | bool]) -> Outcome:
    """The captured optimizer is torch.optim.SGD with exactly these settings and updates
    every parameter of the captured model."""
    capture = complete_capture(ctx, question)
    opt = capture["optimizer"]
    wanted = ", ".join(f"{k}={v}" for k, v in required.items())
    if not opt.get("is_optimizer"):
        return Outcome(False, f"optimizer is a {opt.get('type')}, expected torch.optim.SGD({wanted})")
    problems = []
    if opt["type"] != "SGD" or not opt["module"].startswith("torch.optim"):
        problems.append(f"optimizer is {opt['type']}, expected torch.optim.SGD")
    found_settings = {}
    for gi, group in enumerate(opt["groups"]):
        settings = group["settings"]
        found_settings = settings
        for key, want in required.items():
            have = settings.get(key)
            same = (
                have == want
                if isinstance(want, bool)
                else isinstance(have, (int, float)) and math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12)
            )
            if not same:
                problems.append(
                    f"{key}={have} (expected {want})" + (f" in parameter group {gi}" if len(opt["groups"]) > 1 else "")
                )
    if opt["missing"]:
        problems.append("not updating: " + ", ".join(opt["missing"]))
    foreign = sum(p == "(not a parameter of the model)" for g in opt["groups"] for p in g["params"])
    if foreign:
        problems.append(
            f"{foreign} tensors that are not parameters of this model (was the optimizer built for another model?)"
        )
    details = of(settings_found(opt["type"], required, {k: found_settings.get(k) for k in required}))
    if problems:
        return Outcome(
            False, f"expected SGD({wanted}) over all parameters: " + "; ".join(dict.fromkeys(problems)), details=details
        )
    # The settings are the worker's description: believed once two steps of the captured
    # optimizer, with gradients chosen here, are the steps those settings take.
    if not optimizer_steps(ctx, question, required).passed:
        return Outcome(
            False,
            f"the optimizer reports SGD({wanted}) over all parameters, but its steps are not the steps of those "
            "settings (two steps with the same gradients differ); nothing was credited",
            details=details,
        )
    return Outcome(
        True, f"SGD({wanted}) updates all {len(capture['model'].get('param_names', []))} parameters", details=details
    )


def optimizer_steps(ctx: Context, question: str, settings: dict, cls: type = torch.optim.SGD) -> Outcome:
    """Two steps of the captured optimizer with grader-chosen gradients equal two steps
    of ``cls`` (torch.optim.SGD) with these settings (two, so momentum shows)."""
    capture = complete_capture(ctx, question)
    if not capture["optimizer"].get("is_optimizer"):
        raise CheckFailed(f"optimizer is a {capture['optimizer'].get('type')}, not a torch.optim optimizer")
    gen = ctx.rng
    state = capture["state"]
    names = capture["model"]["param_names"]
    if not names:
        raise CheckFailed("the model has no parameters to step" + _no_parameters_hint(capture))
    grads = [{n: torch.randn(state[n].shape, generator=gen) for n in names} for _ in range(2)]
    out = ctx.probe("optimizer_steps", question=question, grads=grads)
    params = {n: out["before"][n].clone().requires_grad_(True) for n in names}
    reference = cls(params.values(), **settings)
    for step in grads:
        for n, p in params.items():
            p.grad = step[n].to(p.dtype)
        reference.step()
    worst, problems = 0.0, []
    for n, p in params.items():
        check_p = parity(out["after"][n], p.detach(), rtol=1e-5)
        worst = max(worst, check_p.rel)
        if not check_p.ok:
            problems.append(n)
    wanted = ", ".join(f"{k}={v}" for k, v in settings.items())
    if problems:
        return Outcome(
            False,
            f"after two steps these parameters differ from {cls.__name__}({wanted}): " + ", ".join(problems),
            details=of(parity_figures(rel_err=worst)),
        )
    return Outcome(
        True,
        f"two optimizer steps match {cls.__name__}({wanted}) (relative error {worst:.2g})",
        details=of(parity_figures(rel_err=worst)),
    )


def _rebuild_optimizer(opt: Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer | None:
    """The student's optimizer rebuilt on the trusted side from its settings, when it is
    a torch.optim class with one group over every parameter."""
    if (
        not opt.get("is_optimizer")
        or not opt["module"].startswith("torch.optim")
        or len(opt["groups"]) != 1
        or opt["missing"]
    ):
        return None
    cls = getattr(torch.optim, opt["type"], None)
    if cls is None:
        return None
    accepted = inspect.signature(cls).parameters
    settings = {
        k: v
        for k, v in opt["groups"][0]["settings"].items()
        if k in accepted and k not in ("foreach", "fused", "differentiable", "capturable")
    }
    try:
        return cls(model.parameters(), **settings)
    except (TypeError, ValueError):
        return None


def learning(ctx: Context, question: str, reference: torch.nn.Module, layers: list[dict]) -> Outcome:
    """Train briefly from the student's starting weights and optimizer. When the model
    has the specified layers, the reference forward pass is used, and for Question 5 a
    weight left as the student's constructor made it is redrawn with the specified
    initialisation when that constructor's initialisation is wrong: a mistake of
    Question 3 or 4 costs points there only. Otherwise (other layers, or parameters of
    a dtype other than the notebook's, which its train_part34 would feed), the
    student's own model trains in the worker on batches of the notebook's dtype."""
    capture = complete_capture(ctx, question)
    model = capture["model"]
    _ = ctx.data  # without the images this check is skipped, before any work
    dtype = notebook_dtype(capture)
    same_dtype = all(t.dtype == dtype for t in capture["state"].values() if t.is_floating_point())
    layers_match = same_layers(layers, model["leaves"])[0]
    mapping = (
        map_state(dict(reference.state_dict()), {n: list(t.shape) for n, t in capture["state"].items()})
        if layers_match and same_dtype and dtype == torch.float32
        else None
    )
    if mapping is not None:
        state, redrawn = dict(capture["state"]), list[str]()
        if question == "Q5":
            state, redrawn = _specified_init(ctx, model, state)
        reference.load_state_dict({r: state[s].float() for s, r in mapping.items()})
        rebuilt = _rebuild_optimizer(capture["optimizer"], reference)
        # Rebuilt from the worker's description: used only if the captured optimizer
        # steps as the rebuilt one does; else the student's own objects train below.
        if rebuilt is not None and optimizer_steps(ctx, question, dict(rebuilt.defaults), type(rebuilt)).passed:
            outcome = judge_learning(module_run(ctx, reference, rebuilt))
            substituted = {"forward pass": "the specification's (graded in Q4)"} if question == "Q5" else {}
            if redrawn:
                substituted[f"initialisation of {', '.join(redrawn)}"] = "Kaiming normal (graded in Q3)"
                outcome.message += (
                    f" (run with the specified Kaiming normal initialisation of {', '.join(redrawn)} in place of your"
                    " constructor's; that mistake is graded in Q3)"
                )
            elif question == "Q5":
                outcome.message += substitution_note(ctx, {"Q4.forward_parity": "the specified forward pass (Q4)"})
            if substituted:
                outcome.details |= of(substitution(substituted))
            return outcome
    try:
        run = worker_run(ctx, question)
    except StudentError as exc:
        info = exc.info
        odd = sorted({str(t.dtype).replace("torch.", "") for t in capture["state"].values() if t.dtype != dtype})
        hint = f" The model's parameters are {', '.join(odd)}: was .double() (or .half()) called on it?" if odd else ""
        name = str(dtype).replace("torch.", "")
        raise CheckFailed(
            f"training it as train_part34 does (batches cast to {name}, the notebook's dtype) fails: "
            f"{info.get('type')}: {info.get('message')}{ctx.where(info)}.{hint}",
            of(student_error(info)),
        ) from None
    return judge_learning(run)


def learning_implied(
    question: str, layers_of: Callable[[Context], list[dict]], required_of: Callable[[Context], dict[str, Any]]
):
    """The condition under which ``learning`` is implied, once the question's model and
    optimizer checks passed: it would train the specified model (its layers) with
    torch.optim.SGD set exactly as ``required`` (every other setting at SGD's default)
    from the captured weights, in float32; those weights being a standard starting point,
    the run passes (tests/test_learning.py shows it does from each, for the standard
    homework's values: a variant's learning checks run)."""

    def condition(ctx: Context) -> str | None:
        _ = ctx.data  # implied only where it could run: without the images it is skipped
        if variant_of(ctx) != spec.Variant():
            return None
        layers, required = layers_of(ctx), required_of(ctx)
        capture = complete_capture(ctx, question)
        opt = capture["optimizer"]
        if notebook_dtype(capture) != torch.float32 or not same_layers(layers, capture["model"]["leaves"])[0]:
            return None
        if not opt.get("is_optimizer") or opt["type"] != "SGD" or len(opt["groups"]) != 1 or opt["missing"]:
            return None
        defaults = torch.optim.SGD([torch.zeros(1, requires_grad=True)], **required).defaults
        settings = opt["groups"][0]["settings"]
        numbers = (bool, int, float)
        if not all(_same(settings.get(k, v), v) for k, v in defaults.items() if isinstance(v, numbers)):
            return None
        tensors = state_start(capture["state"])
        return standard_start(tensors) if tensors else None

    return condition


def _same(have, want) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    return isinstance(have, (int, float)) and math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12)


def _specified_init(ctx: Context, model: Mapping[str, Any], state: dict) -> tuple[dict, list[str]]:
    """The captured weights, with each one the student's constructor initialised wrongly
    (and that the Question 5 cell left as it was) redrawn as Kaiming normal."""
    if model.get("type") != "ThreeLayerConvNet":
        return state, []
    try:
        built = ctx.construct("ThreeLayerConvNet", list(spec_args(ctx)), seed=0)["state"]
    except CheckFailed:
        return state, []
    gen = torch.Generator().manual_seed(0)
    redrawn = []
    for leaf in _layers_with_params(model["leaves"]):
        name = f"{leaf['path']}.weight" if leaf["path"] else "weight"
        found, made = state.get(name), built.get(name)
        if found is None or made is None or found.shape != made.shape or found.numel() < 2:
            continue
        fan_in = math.prod(found.shape[1:])
        untouched = abs(found.double().std().item() / max(made.double().std().item(), 1e-12) - 1) < 0.1
        if untouched and not kaiming_std(name, made, fan_in).ok:
            state[name] = torch.randn(found.shape, generator=gen) * math.sqrt(2.0 / fan_in)
            redrawn.append(name)
    return state, redrawn


def complete_capture(ctx: Context, question: str) -> CaptureReply:
    """The question's capture, refused when its cell raised before calling the training
    helper: what the cell left behind (the previous model or optimizer, a None) is not
    the answer, and the error is the real mistake."""
    capture = ctx.capture(question)
    if capture.get("kind") == "cell_end" and ctx.cell_error(question):
        raise CheckFailed(ctx.missing_capture_message(question) + _no_parameters_hint(capture))
    # A cell runs on after a failing statement, so training may have been handed what an
    # earlier line failed to build (optimizer = optim.SGD(...) raised: None). The error is
    # the real mistake.
    raised = next((r for r in ctx.result.cells if r.index == capture.get("cell") and r.error), None)
    if raised and not capture.get("optimizer", {}).get("is_optimizer", True):
        where = raised.label + (f", line {raised.error.get('line')}" if raised.error.get("line") else "")
        raise CheckFailed(
            f"{where} raised {raised.error.get('type')}: {raised.error.get('message')}, so training was handed"
            f" a {capture['optimizer'].get('type')} instead of an optimizer" + _no_parameters_hint(capture)
        )
    if not capture["model"].get("is_module"):
        raise CheckFailed(f"the captured model is a {capture['model'].get('type')}, not an nn.Module")
    return capture


def _no_parameters_hint(capture: CaptureReply) -> str:
    model = capture.get("model", {})
    if model.get("is_module") and not model.get("param_names"):
        return (
            ". The model has no parameters: layers kept in a plain Python list or dict are not registered;"
            " use nn.ModuleList, nn.Sequential or attributes"
        )
    return ""


# -- Question 5 -----------------------------------------------------------------------------


@check("Q5", "the model is {convnet}", timeout=30)
def model(ctx: Context) -> Outcome:
    capture = complete_capture(ctx, "Q5")
    found = capture["model"]
    args = spec_args(ctx)
    spec_ok, problems = same_layers(spec.three_layer_convnet(*args), found["leaves"])
    own_ok = False
    with contextlib.suppress(CheckFailed):  # their class may not build; the spec still counts
        own_ok = same_layers(ctx.construct("ThreeLayerConvNet", list(args))["model"]["leaves"], found["leaves"])[0]
    layers_text = ", ".join(layer_str(x) for x in _layers_with_params(found["leaves"]))
    if spec_ok or own_ok:
        # The layers are the worker's description of the captured model (see verify.py).
        problem = described_layers_are_built(
            ctx,
            target={"question": "Q5"},
            model=found,
            state=capture["state"],
            name="ThreeLayerConvNet",
            args=list(args),
        )
        if problem:
            return Outcome(False, problem)
        return Outcome(True, f"a {found['type']} with {layers_text}")
    return Outcome(
        False,
        f"the model's layers are {layers_text}; expected those of ThreeLayerConvNet{args}: " + "; ".join(problems),
    )


@check("Q5", "optimizer is plain SGD with lr {q5_lr} over every parameter", timeout=30)
def optimizer(ctx: Context) -> Outcome:
    return optimizer_settings(ctx, "Q5", variant_of(ctx).q5_sgd)


@check("Q5", "optimizer steps equal the reference SGD steps", timeout=30)
def optimizer_step(ctx: Context) -> Outcome:
    return optimizer_steps(ctx, "Q5", {"lr": variant_of(ctx).q5.lr})


@check(
    "Q5",
    "the model and optimizer learn on real images",
    timeout=120,
    implied_by=("Q5.model", "Q5.optimizer", "Q5.optimizer_step"),
    implied_if=learning_implied(
        "Q5", lambda ctx: spec.three_layer_convnet(*spec_args(ctx)), lambda ctx: variant_of(ctx).q5_sgd
    ),
)
def learns(ctx: Context) -> Outcome:
    return learning(ctx, "Q5", _spec_model(ctx), spec.three_layer_convnet(*spec_args(ctx)))


@check("Q5", "the provided train_part34 helper trains correctly", timeout=60)
def train_part34_helper(ctx: Context) -> Outcome:
    """Runs the student's train_part34 on a probe model whose output depends on train /
    eval mode, and compares the resulting weights with the correct loop and with the
    two classic mistakes, to name the one made."""
    require_answer(ctx, "Q5")
    gen = ctx.rng
    batches = [
        {"x": torch.randn(4, 3, 2, 2, generator=gen), "y": torch.randint(0, 3, (4,), generator=gen)} for _ in range(3)
    ]
    val = [{"x": torch.randn(4, 3, 2, 2, generator=gen), "y": torch.randint(0, 3, (4,), generator=gen)}]
    state = {"fc.weight": torch.randn(3, 12, generator=gen) * 0.3, "fc.bias": torch.zeros(3)}
    lr, epochs, every = 0.1, 2, 2
    out = ctx.probe(
        "helper_train_part34",
        batches=batches,
        val_batches=val,
        state=state,
        learning_rate=lr,
        epochs=epochs,
        print_every=every,
    )

    def simulate(*, zero_grad: bool, train_each_step: bool) -> dict:
        w = state["fc.weight"].clone().requires_grad_(True)
        b = state["fc.bias"].clone().requires_grad_(True)
        training = False
        for epoch in range(epochs):
            for t, batch in enumerate(batches):
                if train_each_step or (t == 0 and epoch == 0):
                    training = True
                scale = 1.0 if training else 0.5
                loss = F.cross_entropy((batch["x"].reshape(4, -1) @ w.T + b) * scale, batch["y"])
                if zero_grad:
                    w.grad = b.grad = None
                loss.backward()
                with torch.no_grad():
                    w -= lr * w.grad
                    b -= lr * b.grad
                if t % every == 0:
                    training = False  # the accuracy check switches to eval mode
        return {"fc.weight": w.detach(), "fc.bias": b.detach()}

    def matches(expected: dict) -> bool:
        return all(parity(out["state"][k], v, rtol=1e-5).ok for k, v in expected.items())

    if matches(simulate(zero_grad=True, train_each_step=True)):
        return Outcome(True, "train_part34 zeroes gradients and trains in training mode at every step")
    if matches(simulate(zero_grad=False, train_each_step=True)):
        return Outcome(
            False,
            "train_part34 never zeroes the gradients, so they accumulate across steps (call optimizer.zero_grad() every step)",
        )
    if matches(simulate(zero_grad=True, train_each_step=False)):
        return Outcome(
            False,
            "train_part34 calls model.train() only once: after the first accuracy check the model trains in eval mode (call model.train() inside the loop)",
        )
    return Outcome(
        False,
        "train_part34 does not take the expected SGD steps on the cross-entropy loss in training mode (was the provided helper changed?)",
    )
