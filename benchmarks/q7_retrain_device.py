"""Question 7 retraining, on whatever device the machine has: a module whose Question 7
is the reference recipe (by default the example ``fan_in_wrong_axis_q5/homework.py``) is
graded on Question 7 without its checkpoint, so the grader retrains the model with the
student's own code through the real path (worker, sandbox), and this prints where it
trained, how long it took and what it reached. On a GPU machine this is the check that
retraining really runs on the GPU.

    python benchmarks/q7_retrain_device.py [--module PATH] [--data PATH] [--threads N] [--seed S]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.data import load_cifar10  # noqa: E402
from grader.engine import grade_submission  # noqa: E402
from grader.sandbox import Limits  # noqa: E402

MODULE = REPO / "examples" / "fan_in_wrong_axis_q5" / "homework.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", type=Path, default=MODULE, help="a .py submission (its checkpoint is left out)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the worker")
    parser.add_argument("--seed", type=int, default=0, help="the secret probe seed")
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}; GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    loader = functools.partial(load_cifar10, args.data)
    loader()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submission"
        folder.mkdir()
        (folder / args.module.name).write_bytes(args.module.read_bytes())  # no best_model.pt beside it
        started = time.monotonic()
        result = grade_submission(
            path=folder, questions={"Q7"}, data_loader=loader, run_seed=args.seed, limits=Limits(threads=args.threads)
        )
    q7 = result.challenge
    print(
        json.dumps(
            {
                "grade_seconds": round(time.monotonic() - started, 1),
                "retrained_on": q7.get("device"),
                "epochs": q7.get("epochs"),
                "train_seconds": round(q7.get("train_seconds") or 0, 1),
                "judged_on": (q7.get("eval_set") or {}).get("short"),
                "val_accuracy": q7.get("val_accuracy"),
                "test_accuracy": q7.get("test_accuracy"),
                "perturbed_accuracy": (q7.get("perturbed") or {}).get("accuracy"),
                "score": f"{result.score:g}/{result.max_score:g}",
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
