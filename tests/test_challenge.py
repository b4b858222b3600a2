"""Tests of the Question 7 reference: the model, its training function and, marked slow, the
full recipe on the real data (it must reach 70% validation accuracy)."""

from __future__ import annotations

import time

import pytest
import torch

from reference_solution.challenge import ChallengeNet, evaluate, train_challenge


def synthetic(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny learnable data set: the label sets the mean brightness of one colour channel."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 100, (n, 3, 32, 32), generator=generator)
    images[torch.arange(n), labels % 3] += (labels * 15)[:, None, None]
    return images.to(torch.uint8), labels


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("training", [False, True])
def test_output_shape(n: int, training: bool) -> None:
    torch.manual_seed(0)
    model = ChallengeNet().train(training)
    with torch.no_grad():
        scores = model(torch.randn(n, 3, 32, 32))
    assert scores.shape == (n, 10)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()


def test_eval_forward_averages_the_mirror_image() -> None:
    torch.manual_seed(0)
    model = ChallengeNet().eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        scores = model(x)
        mirrored = model(x.flip(-1))
        expected = (model.scores(x) + model.scores(x.flip(-1))) / 2
    torch.testing.assert_close(scores, mirrored, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)


def test_train_one_epoch_returns_history_and_leaves_eval_mode() -> None:
    images, labels = synthetic()
    val = synthetic(40, seed=1)
    model = ChallengeNet()
    history = train_challenge(model, images, labels, epochs=1, batch_size=32, val=val, log=None)
    assert set(history) == {"epoch", "train_seconds", "train_loss", "val_acc"}
    assert history["epoch"] == [1]
    assert all(len(values) == 1 for values in history.values())
    assert history["train_seconds"][0] > 0
    assert torch.isfinite(torch.tensor(history["train_loss"])).all()
    assert 0.0 <= history["val_acc"][0] <= 1.0
    assert not model.training
    assert not any(module.training for module in model.modules())
    assert 0.0 <= evaluate(model, *val) <= 1.0


def test_history_without_val_has_no_val_acc() -> None:
    images, labels = synthetic()
    history = train_challenge(ChallengeNet(), images, labels, epochs=2, batch_size=32, log=None)
    assert set(history) == {"epoch", "train_seconds", "train_loss"}
    assert history["epoch"] == [1, 2]
    assert history["train_seconds"][0] <= history["train_seconds"][1]


def test_logs_one_line_per_epoch() -> None:
    images, labels = synthetic()
    lines: list[str] = []
    train_challenge(ChallengeNet(), images, labels, epochs=2, batch_size=32, log=lines.append)
    assert len(lines) == 2


@pytest.mark.parametrize("mixed_precision", [False, None])
def test_same_seed_same_model(mixed_precision: bool | None) -> None:
    images, labels = synthetic()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the same initial weights
        model = ChallengeNet()
        history = train_challenge(
            model,
            images,
            labels,
            epochs=1,
            batch_size=32,
            seed=3,
            log=None,
            mixed_precision=mixed_precision,
        )
        runs.append((model.state_dict(), history["train_loss"]))
    (first, loss_a), (second, loss_b) = runs
    assert loss_a == loss_b
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_validation_data_does_not_change_training() -> None:
    """``val`` is only for reporting: with or without it the trained weights are the same."""
    images, labels = synthetic()
    states = []
    for val in (None, synthetic(40, seed=1)):
        torch.manual_seed(0)
        model = ChallengeNet()
        train_challenge(model, images, labels, epochs=2, batch_size=32, val=val, log=None)
        states.append(model.state_dict())
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name


def test_different_seeds_differ() -> None:
    images, labels = synthetic()
    losses = []
    for seed in (0, 1):
        history = train_challenge(ChallengeNet(), images, labels, epochs=1, batch_size=32, seed=seed, log=None)
        losses.append(history["train_loss"][0])
    assert losses[0] != losses[1]


@pytest.mark.slow
def test_full_recipe_reaches_70_percent_validation(cifar10) -> None:
    """The reference recipe's full schedule on the 49,000 training images (a few minutes)."""
    train_index, val_index = cifar10.split()
    val = (cifar10.train_images[val_index], cifar10.train_labels[val_index])
    torch.manual_seed(0)
    model = ChallengeNet()
    started = time.perf_counter()
    history = train_challenge(model, cifar10.train_images[train_index], cifar10.train_labels[train_index], val=val)
    wall = time.perf_counter() - started
    val_acc = evaluate(model, *val)
    test_acc = evaluate(model, cifar10.test_images, cifar10.test_labels)
    reached = next((s for s, a in zip(history["train_seconds"], history["val_acc"]) if a >= 0.7), None)
    print(
        f"\nQ7 reference: {len(history['epoch'])} epochs, "
        f"{history['train_seconds'][-1]:.1f} training seconds ({wall:.1f} s with evaluation); "
        f"70% val after {reached} s; final val acc {val_acc:.2%}, test acc {test_acc:.2%}"
    )
    assert len(history["epoch"]) <= 10
    assert val_acc == history["val_acc"][-1]
    assert val_acc >= 0.70
