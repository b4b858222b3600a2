"""How much faster the Question 7 reference recipe reaches 70% than a typical student model.

Trains, one after the other in the same process, on the same 49,000 / 1,000 split and with the
same number of threads:

(a) the reference recipe of ``reference_solution/challenge.py`` over its full schedule, and
(b) a typical passing student model (two conv layers, two fully connected layers, dropout) with
    SGD lr 1e-2, momentum 0.9, Nesterov, batches of 64 and no augmentation, for up to
    ``--epochs-typical`` epochs. Once it has reached 70% it stops early, unless
    ``--full-typical`` is given; its final figures are then those of the epoch it stopped at.

Both are evaluated on the validation split at the end of every epoch; evaluation time is not
counted as training time. For each the script prints the training seconds until validation
accuracy first reached 70%, the final validation and test accuracy, and the seconds per epoch,
then the ratio of the two times to 70%. The CPU time of the process is printed too: when other
programs share the cores, wall-clock seconds inflate but CPU seconds much less.

    python benchmarks/challenge_speed.py                 # the full comparison (~6 minutes)
    python benchmarks/challenge_speed.py --quick         # a smoke run on a small subset
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from grader.data import DataError, TensorLoader, load_cifar10  # noqa: E402
from reference_solution.challenge import ChallengeNet, evaluate, train_challenge  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
TARGET = 0.70


class TypicalNet(nn.Module):
    """The typical passing student answer: conv-pool twice, then two fully connected layers."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout2d(0.2),
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def train_typical(
    images: torch.Tensor,
    labels: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    stop_at_target: bool,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, list]]:
    """Train ``TypicalNet`` the way the homework's ``train_part34`` does; return it and its history."""
    torch.manual_seed(seed)
    model = TypicalNet()
    optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, nesterov=True)
    loader = TensorLoader(images, labels, batch_size=64, shuffle=True, seed=seed)
    history = {"epoch": [], "train_seconds": [], "train_loss": [], "val_acc": []}
    train_seconds = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        started = time.perf_counter()
        loss_sum = 0.0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
        train_seconds += time.perf_counter() - started
        history["epoch"].append(epoch)
        history["train_seconds"].append(train_seconds)
        history["train_loss"].append(loss_sum / len(loader))
        history["val_acc"].append(evaluate(model, *val))
        print(
            f"  typical epoch {epoch}/{epochs}: {train_seconds:.1f} s, "
            f"loss {history['train_loss'][-1]:.3f}, val acc {history['val_acc'][-1]:.2%}",
            flush=True,
        )
        if stop_at_target and history["val_acc"][-1] >= TARGET:
            break
    model.eval()
    return model, history


def seconds_to_target(history: dict[str, list]) -> float | None:
    """Training seconds at the first evaluation with validation accuracy >= TARGET."""
    for seconds, acc in zip(history["train_seconds"], history["val_acc"]):
        if acc >= TARGET:
            return seconds
    return None


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def report(name: str, history: dict[str, list], test_acc: float, cpu_seconds: float) -> None:
    reached = seconds_to_target(history)
    epochs = len(history["epoch"])
    first = next((e for e, a in zip(history["epoch"], history["val_acc"]) if a >= TARGET), None)
    per_epoch = [b - a for a, b in zip([0.0, *history["train_seconds"]], history["train_seconds"])]
    print(f"{name}:")
    if reached is None:
        print(f"  time to {TARGET:.0%} val:   not reached in {_epochs(epochs)}")
    else:
        print(f"  time to {TARGET:.0%} val:   {reached:.1f} s (end of epoch {first})")
    print(
        f"  after {_epochs(epochs)}:{' ' * (12 - len(_epochs(epochs)))}val {history['val_acc'][-1]:.2%}, test {test_acc:.2%}"
    )
    print(
        f"  seconds per epoch:  {history['train_seconds'][-1] / epochs:.1f} on average "
        f"({', '.join(f'{s:.1f}' for s in per_epoch)})"
    )
    print(
        f"  training seconds:   {history['train_seconds'][-1]:.1f} wall; CPU seconds, evaluation included: {cpu_seconds:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 archive or folder")
    parser.add_argument("--cache-dir", default=None, help="where decoded arrays are cached")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs-typical", type=int, default=10)
    parser.add_argument("--full-typical", action="store_true", help="train the typical model all its epochs")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run on 4,900 images: 2 epochs of the recipe, 1 of the typical model"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    try:
        data = load_cifar10(args.data, cache_dir=args.cache_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train_index, val_index = data.split()
    if args.quick:
        subset = torch.randperm(len(train_index), generator=torch.Generator().manual_seed(0))[:4900]
        train_index = train_index[subset.sort().values]
    images, labels = data.train_images[train_index], data.train_labels[train_index]
    val = (data.train_images[val_index], data.train_labels[val_index])
    test = (data.test_images, data.test_labels)
    print(
        f"torch {torch.__version__}, {args.threads} threads; {len(labels)} training images, "
        f"{len(val[1])} validation, {len(test[1])} test"
    )

    if args.quick:
        print("--quick: a smoke run on a tenth of the data; its accuracies say nothing about the recipe")
    print("(a) reference recipe")
    reference = ChallengeNet()
    cpu = time.process_time()
    ref_history = train_challenge(
        reference,
        images,
        labels,
        val=val,
        log=lambda message: print(f"  reference {message}", flush=True),
        **({"epochs": 2} if args.quick else {}),
    )
    ref_cpu = time.process_time() - cpu  # evaluation included: a small share
    ref_test = evaluate(reference, *test)

    print("(b) typical student model")
    cpu = time.process_time()
    typical, typ_history = train_typical(
        images,
        labels,
        val,
        epochs=1 if args.quick else args.epochs_typical,
        stop_at_target=not args.full_typical,
    )
    typ_cpu = time.process_time() - cpu
    typ_test = evaluate(typical, *test)

    print()
    report("(a) reference recipe", ref_history, ref_test, ref_cpu)
    report("(b) typical student model", typ_history, typ_test, typ_cpu)
    ref_time, typ_time = seconds_to_target(ref_history), seconds_to_target(typ_history)
    if ref_time is not None and typ_time is not None:
        print(f"time to {TARGET:.0%}, (a) / (b): {ref_time / typ_time:.2f}")
    else:
        print(f"time to {TARGET:.0%}, (a) / (b): n/a (not reached by both)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
