"""The learning checks (grader/checks/learning.py) and the starting points from which
they are implied: trained from each standard starting point, the specified models with
the specified optimizers learn, so a learning check whose model, optimizer and update
checks passed adds nothing where the student's start is one of them (check(implied_by=...))."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

import reference_solution as ref
from grader.assignments.cifar10.checks.barebones import q2_shapes
from grader.assignments.cifar10.checks.spec import DEFAULT
from grader.checks import CheckFailed, CheckSpec
from grader.checks.learning import (
    STANDARD_INITS,
    judge_learning,
    manual_sgd_run,
    module_run,
    standard_start,
    state_start,
)
from grader.engine import _implied
from grader.results import CheckResult

SEEDS = (0, 1)
Q2_SHAPES = q2_shapes(SimpleNamespace())  # the standard homework's (the implication is shown for it)


def _drawn(model: torch.nn.Module, init: str, seed: int) -> torch.nn.Module:
    """``model`` with every Conv2d / Linear drawn afresh by ``init`` (biases: zero for
    Kaiming normal, as the specification; PyTorch's own for its default)."""
    torch.manual_seed(seed)
    for layer in model.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.reset_parameters()
            if init == "Kaiming normal":
                torch.nn.init.kaiming_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
    return model


@pytest.fixture(scope="module")
def ctx(cifar10):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a grading process does
    yield SimpleNamespace(data=cifar10)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", SEEDS)
def test_q2_learns_from_every_kaiming_start(ctx, seed):
    gen = torch.Generator().manual_seed(seed)
    fan_ins = [math.prod(s[1:]) for s in Q2_SHAPES[:4]] + [Q2_SHAPES[4][0]] * 2
    params = [
        torch.randn(s, generator=gen) * math.sqrt(2 / f) if len(s) > 1 else torch.zeros(s)
        for s, f in zip(Q2_SHAPES, fan_ins)
    ]
    assert standard_start([(p, f, p.dim() == 1) for p, f in zip(params, fan_ins)], inits=("Kaiming normal",))
    outcome = judge_learning(manual_sgd_run(ctx, ref.three_layer_convnet, params, DEFAULT.q2.lr))
    assert outcome.passed, outcome.message


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("init", list(STANDARD_INITS))
@pytest.mark.parametrize("question", ["Q5", "Q6"])
def test_modules_learn_from_every_standard_start(ctx, question, init, seed):
    if question == "Q5":
        model, settings = ref.ThreeLayerConvNet(*DEFAULT.convnet_args), DEFAULT.q5_sgd
    else:
        model, settings = ref.sequential_convnet_and_optimizer()[0], DEFAULT.q6_sgd
    model = _drawn(model, init, seed)
    assert init in (standard_start(state_start(model.state_dict())) or "")
    outcome = judge_learning(module_run(ctx, model, torch.optim.SGD(model.parameters(), **settings)))
    assert outcome.passed, outcome.message


def test_only_standard_starts_are_standard():
    model = _drawn(ref.ThreeLayerConvNet(3, 32, 16, 10), "Kaiming normal", 0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert standard_start(state_start(state))
    wrong_axis = dict(state, **{"fc.weight": torch.randn(10, 16384) * math.sqrt(2 / 10)})
    shifted = dict(state, **{"conv1.weight": state["conv1.weight"] + 0.1})
    zeros = dict(state, **{"conv2.weight": torch.zeros_like(state["conv2.weight"])})
    large_bias = dict(state, **{"fc.bias": torch.full((10,), 0.5)})
    double = {k: v.double() for k, v in state.items()}
    nan = dict(state, **{"fc.weight": state["fc.weight"].clone().index_fill_(1, torch.tensor([0]), math.nan)})
    for bad in (wrong_axis, shifted, zeros, large_bias, double, nan):
        assert standard_start(state_start(bad)) is None
    assert state_start({"bn.weight": torch.ones(4), "bn.bias": torch.zeros(4)}) is None


def test_a_check_is_implied_only_where_its_proof_passed_in_full():
    def proved(id_: str, status: str = "passed", score: float = 2.0) -> CheckResult:
        return CheckResult(id_, "Q9", id_, status, score, 2.0, "visible", "")

    ran = []
    spec = CheckSpec(
        "Q9.learns", "Q9", "learns", "learns", 30.0, ran.append, implied_by=("Q9.a", "Q9.b"), implied_if=lambda ctx: ""
    )
    ctx = SimpleNamespace(result=SimpleNamespace(checks=[proved("Q9.a"), proved("Q9.b")]), spec=None)
    outcome, status = _implied(spec, ctx)
    assert status == "passed" and outcome.passed and outcome.message == "implied by Q9.a, Q9.b: not run"
    assert outcome.details == {"values": {"kind": "values", "values": {"implied_by": ["Q9.a", "Q9.b"]}}} and not ran

    for checks in (
        [proved("Q9.a")],
        [proved("Q9.a"), proved("Q9.b", "failed", 0.0)],
        [proved("Q9.a"), proved("Q9.b", score=1.0)],
    ):
        assert _implied(spec, SimpleNamespace(result=SimpleNamespace(checks=checks), spec=None)) is None

    def unsure(ctx):
        raise CheckFailed("nothing was captured")

    for condition in (lambda ctx: None, unsure):
        other = dataclasses.replace(spec, implied_if=condition)
        assert _implied(other, ctx) is None
    named = dataclasses.replace(spec, implied_if=lambda ctx: "a standard start")
    assert _implied(named, ctx)[0].message == "implied by Q9.a, Q9.b and a standard start: not run"
    assert _implied(dataclasses.replace(spec, implied_by=()), ctx) is None
