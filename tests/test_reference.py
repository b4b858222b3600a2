"""The answer key itself: every function of the assignment against torch's own layers,
on random non-zero float64 inputs, for several batch sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import reference_solution as ref
from grader.assignments.cifar10.checks import spec
from grader.worker.probes import describe_module

BATCHES = (1, 7, 64)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("n", BATCHES)
def test_flatten_keeps_the_batch_and_row_major_order(n):
    x = torch.randn(n, 3, 4, 5)
    assert torch.equal(ref.flatten(x), x.reshape(n, 60))


@pytest.mark.parametrize("n", BATCHES)
def test_two_layer_fc_against_torch(n):
    x = torch.randn(n, 3, 8, 8, dtype=torch.float64)
    w1, w2 = torch.randn(192, 20, dtype=torch.float64), torch.randn(20, 10, dtype=torch.float64)
    expected = F.linear(F.relu(F.linear(x.reshape(n, -1), w1.T)), w2.T)
    assert torch.allclose(ref.two_layer_fc(x, [w1, w2]), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", BATCHES)
def test_three_layer_convnet_against_torch_layers(n):
    x = torch.randn(n, 3, 32, 32, dtype=torch.float64)
    conv1, conv2 = nn.Conv2d(3, 6, 5, padding=2).double(), nn.Conv2d(6, 9, 3, padding=1).double()
    fc = nn.Linear(9 * 32 * 32, 10).double()
    for layer in (conv1, conv2, fc):
        nn.init.normal_(layer.bias)  # non-zero biases: a missing bias must show
    expected = fc(torch.relu(conv2(torch.relu(conv1(x)))).reshape(n, -1))
    params = [conv1.weight, conv1.bias, conv2.weight, conv2.bias, fc.weight.T, fc.bias]
    scores = ref.three_layer_convnet(x, params)
    assert scores.shape == (n, 10)
    assert torch.allclose(scores, expected, rtol=1e-10, atol=1e-10)


def test_random_weight_is_kaiming_normal_with_the_assignments_fan_in():
    fc = ref.random_weight((4000, 100))  # (in, out): fan_in is shape[0]
    conv = ref.random_weight((64, 32, 3, 3))  # fan_in is 32 * 3 * 3
    for w, fan_in in ((fc, 4000), (conv, 288)):
        assert w.requires_grad and w.is_leaf and w.dtype == ref.assignment.dtype
        assert abs(w.std().item() / math.sqrt(2 / fan_in) - 1) < 0.03  # 400k and 18k draws: ~0.1% and 0.5% spread
        assert abs(w.mean().item()) < 0.05 * math.sqrt(2 / fan_in)


def test_zero_weight():
    b = ref.zero_weight((10,))
    assert b.requires_grad and b.is_leaf and b.shape == (10,) and not b.any()


def test_barebones_parameters_for_question_2():
    params = ref.barebones_convnet_params()
    assert [tuple(p.shape) for p in params] == [(32, 3, 5, 5), (32,), (16, 32, 3, 3), (16,), (16384, 10), (10,)]
    assert all(p.requires_grad and p.is_leaf for p in params)
    assert not params[1].any() and not params[3].any() and not params[5].any()
    assert ref.BAREBONES_LEARNING_RATE == 3e-3


class Batches:
    """A loader over fixed batches with the dataset.train flag the helpers read."""

    def __init__(self, batches, train=True):
        self.batches = batches
        self.dataset = type("Split", (), {"train": train})()

    def __iter__(self):
        return iter(self.batches)


def test_one_step_of_train_part2_is_w_minus_lr_times_grad(monkeypatch):
    x, y = torch.randn(5, 3, 32, 32), torch.randint(0, 10, (5,))
    monkeypatch.setattr(ref.assignment, "loader_train", Batches([(x, y)]))
    monkeypatch.setattr(ref.assignment, "loader_val", Batches([(x, y)]))
    params = ref.barebones_convnet_params(channel_1=4, channel_2=3)
    start = [p.detach().clone() for p in params]
    loss = F.cross_entropy(ref.three_layer_convnet(x, params), y)
    grads = torch.autograd.grad(loss, params)
    history = ref.train_part2(ref.three_layer_convnet, params, 3e-3)
    for p, p0, g in zip(params, start, grads):
        assert torch.allclose(p.detach(), p0 - 3e-3 * g, atol=1e-7)
        assert p.grad is not None and not p.grad.any()  # zeroed for the next step
    assert history["iteration"] == [0] and len(history["val_acc"]) == 1


def test_check_accuracy_helpers_return_the_fraction_correct():
    x = torch.randn(20, 3, 32, 32)
    model = ref.ThreeLayerConvNet(3, 4, 3, 10)
    y = model.eval()(x).argmax(1)
    y[:5] = (y[:5] + 1) % 10  # exactly 5 wrong
    assert ref.check_accuracy_part34(Batches([(x, y)]), model) == pytest.approx(0.75)
    params = ref.barebones_convnet_params(channel_1=4, channel_2=3)
    scores = ref.three_layer_convnet(x, params).argmax(1)
    assert ref.check_accuracy_part2(Batches([(x, scores)], train=False), ref.three_layer_convnet, params) == 1.0


def test_train_part34_trains_in_train_mode_and_zeroes_gradients(monkeypatch):
    """Two steps with SGD must equal two steps computed by hand."""
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    monkeypatch.setattr(ref.assignment, "loader_train", Batches(batches))
    monkeypatch.setattr(ref.assignment, "loader_val", Batches(batches[:1]))
    monkeypatch.setattr(ref.assignment, "print_every", 1)  # an accuracy check (eval mode) before every step
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3072, 10))
    twin = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3072, 10))
    twin.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    ref.train_part34(model, torch.optim.SGD(model.parameters(), lr=0.1))
    torch.manual_seed(1)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    for x, y in batches:
        twin.train()  # dropout on: the helper must not train in eval mode
        optimizer.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        optimizer.step()
    assert torch.allclose(model[2].weight, twin[2].weight, atol=1e-6)


def test_module_answers_match_the_specification():
    model, optimizer = ref.module_convnet_and_optimizer()
    assert isinstance(model, ref.ThreeLayerConvNet)
    leaves = [
        {k: v for k, v in x.items() if k in ("kind", "class", "config")} for x in describe_module(model)["leaves"]
    ]
    assert leaves == spec.three_layer_convnet(3, 32, 16, 10)
    assert optimizer.defaults["lr"] == 3e-3 and optimizer.defaults["momentum"] == 0
    model, optimizer = ref.sequential_convnet_and_optimizer()
    kinds = [x["kind"] for x in describe_module(model)["leaves"]]
    assert kinds == [x["kind"] for x in spec.sequential_convnet()]
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] and optimizer.defaults["lr"] == 1e-2
    model, optimizer = ref.sequential_two_layer_and_optimizer()
    assert [x["kind"] for x in describe_module(model)["leaves"]] == ["Flatten", "Linear", "ReLU", "Linear"]


@pytest.mark.parametrize("n", BATCHES)
def test_three_layer_convnet_module_against_torch(n):
    model = ref.ThreeLayerConvNet(3, 8, 5, 10).double()
    x = torch.randn(n, 3, 32, 32, dtype=torch.float64)
    expected = model.fc(F.relu(model.conv2(F.relu(model.conv1(x)))).reshape(n, -1))
    assert torch.allclose(model(x), expected, rtol=1e-12, atol=1e-12)


def test_three_layer_convnet_module_is_kaiming_initialised():
    model = ref.ThreeLayerConvNet(3, 32, 16, 10)
    for layer, fan_in in ((model.conv1, 75), (model.conv2, 288), (model.fc, 16384)):
        assert abs(layer.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.1
        assert not layer.bias.any()


def test_two_layer_fc_module():
    model = ref.TwoLayerFC(50, 42, 10)
    assert model(torch.randn(7, 50)).shape == (7, 10)
