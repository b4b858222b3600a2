"""Question 7 grading speed: seconds to evaluate one checkpoint of the typical student
model on the judged, perturbed and test images, and seconds per epoch when the
grader retrains it (no checkpoint), both through the real grading path (worker, sandbox).

    python benchmarks/challenge_grading.py [--data PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import cs231n_style  # noqa: E402
import nbformat  # noqa: E402

from grader.data import load_cifar10  # noqa: E402
from grader.engine import grade_submission  # noqa: E402
from grader.sandbox import Limits  # noqa: E402

CHECKPOINT = REPO / "tests" / "fixtures" / "typical_10_epochs.pt"


def submission(folder: Path, *, epochs: int, checkpoint: bool) -> Path:
    folder.mkdir()
    nbformat.write(cs231n_style.build(edition=2022, epochs=epochs), folder / "PyTorch.ipynb")
    if checkpoint:
        (folder / "best_model.pt").write_bytes(CHECKPOINT.read_bytes())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    loader = functools.partial(load_cifar10, args.data)
    loader()  # decode and cache before timing
    limits = Limits(threads=args.threads)

    def grade_q7(path: Path) -> tuple[dict, float]:
        """Question 7's measurement (and the seconds the whole grade took)."""
        started = time.perf_counter()
        result = grade_submission(path=path, questions={"Q7"}, data_loader=loader, limits=limits, run_seed=0)
        return result.challenge, time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        c, total = grade_q7(submission(Path(tmp) / "ckpt", epochs=10, checkpoint=True))
        print(
            f"checkpoint: evaluation of {c['val_images']:,} judged, {c['perturbed']['images']:,} perturbed "
            f"(and the test images) took {c['eval_seconds']:.2f} s "
            f"in the worker; the whole Q7 grade took {total:.1f} s (worker start and notebook cells included)"
        )
        print(f"            validation {100 * c['val_accuracy']:.1f}%, test {100 * c['test_accuracy']:.1f}%")
        c, total = grade_q7(submission(Path(tmp) / "retrain", epochs=1, checkpoint=False))
        per_epoch = c["history"]["seconds"][0] if c["history"]["seconds"] else float("nan")
        print(
            f"retrain:    1 epoch of the typical model took {per_epoch:.1f} s of training "
            f"(whole Q7 grade {total:.1f} s); validation {100 * c['val_accuracy']:.1f}%"
        )


if __name__ == "__main__":
    main()
