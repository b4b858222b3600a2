"""Part IV, the nn.Sequential API: Question 6, the three-layer ConvNet as a Sequential
with SGD (lr 1e-2, momentum 0.9, Nesterov in the standard homework; see spec.Variant)."""

from __future__ import annotations

from grader.checks import Context, Outcome, check
from grader.checks.compare import diff_layers
from grader.details import layer_diff, of, parity_figures
from grader.replies import ModuleInfo

from . import spec
from .module_api import (
    complete_capture,
    judge_forward,
    judge_gradients,
    learning,
    learning_implied,
    optimizer_settings,
    parity_run,
)
from .spec import variant_of
from .verify import answer_key_present


def _spec(ctx: Context):
    v = variant_of(ctx)
    model, _ = ctx.reference.sequential_convnet_and_optimizer(
        learning_rate=v.q6.lr,
        channel_1=v.channel_1,
        channel_2=v.channel_2,
        momentum=v.q6.momentum,
        nesterov=v.q6.nesterov,
    )
    return model


def _spec_layers(ctx: Context) -> list[dict]:
    v = variant_of(ctx)
    return spec.sequential_convnet(v.channel_1, v.channel_2)


def _captured_model(ctx: Context) -> ModuleInfo:
    return complete_capture(ctx, "Q6")["model"]


@check("Q6", "architecture matches the specification layer by layer", timeout=30)
def architecture(ctx: Context) -> Outcome:
    found = _captured_model(ctx)
    problems, rows = diff_layers(_spec_layers(ctx), found["leaves"])
    details = of(layer_diff(rows))
    if problems:
        return Outcome(False, "; ".join(problems), details=details)
    # The layers are the worker's description; a Sequential of exactly these layers
    # computes the reference's function, so its behaviour must say the same.
    if answer_key_present(ctx) and not judge_forward(_q6_parity(ctx)).passed:
        return Outcome(
            False,
            "the layers reported match the specification, but the model does not compute what those layers "
            "compute (with identical weights its outputs differ from the reference's); nothing was credited",
            details=details,
        )
    return Outcome(
        True, "Conv2d 5x5 pad 2, ReLU, Conv2d 3x3 pad 1, ReLU, Flatten, Linear: as specified", details=details
    )


def _q6_parity(ctx: Context) -> list[dict]:
    return parity_run(
        ctx, key="q6", target={"question": "Q6"}, reference=_spec(ctx), student_model=_captured_model(ctx), sizes=(7,)
    )


@check("Q6", "forward and backward match the reference with identical weights", timeout=60)
def parity(ctx: Context) -> Outcome:
    """A structural mistake (a missing ReLU) fails this check as well as ``architecture``,
    by design: the architecture is what the question asks for, and the function it
    computes is what training sees; the rubric weighs the two (see README, "One mistake,
    one question"). Mistakes never cost points outside their own question."""
    runs = _q6_parity(ctx)
    forward, backward = judge_forward(runs), judge_gradients(runs)
    # One table of figures: the forward pass's, with the gradients' relative error.
    figures = {**forward.details["parity"], "grad_rel_err": backward.details["parity"]["rel_err"]}
    details = of(parity_figures(**{k: v for k, v in figures.items() if k != "kind"}))
    if forward.passed and backward.passed:
        return Outcome(True, f"{forward.message}; {backward.message}", details=details)
    failing = [o.message for o in (forward, backward) if not o.passed]
    return Outcome(False, "; ".join(failing), details=details)


@check("Q6", "optimizer is SGD with {q6_sgd_short}", timeout=30)
def optimizer(ctx: Context) -> Outcome:
    return optimizer_settings(ctx, "Q6", variant_of(ctx).q6_sgd)


@check(
    "Q6",
    "the model and optimizer learn on real images",
    timeout=120,
    implied_by=("Q6.architecture", "Q6.parity", "Q6.optimizer"),
    implied_if=learning_implied("Q6", lambda ctx: _spec_layers(ctx), lambda ctx: variant_of(ctx).q6_sgd),
)
def learns(ctx: Context) -> Outcome:
    return learning(ctx, "Q6", _spec(ctx), _spec_layers(ctx))
