"""Question 7 against memorisation: clean and perturbed accuracy, and the verdict, for an
honest model and two that memorise public images, each graded through the real path.

    python benchmarks/q7_generalisation.py [--data PATH] [--threads 2] [--seed 0]

Rows: the reference (examples/filled_template), the CS231n-layout example, the typical
10-epoch student model (tests/fixtures), a model that memorised training images 0..48,999
(what a CS231n notebook's loader_train names) and a lookup table of all 60,000 public images.
The drops of the honest rows are what PERTURBATION_TOLERANCE in grader/checks/challenge.py
is set from.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import torch  # noqa: E402
from test_challenge_grading import TYPICAL_10_EPOCHS, lookup_submission, submission  # noqa: E402

from grader.data import load_cifar10  # noqa: E402
from grader.engine import grade_submission  # noqa: E402
from grader.sandbox import Limits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the run seed (it picks the perturbations)")
    args = parser.parse_args()
    data = load_cifar10(args.data)
    loader = functools.partial(load_cifar10, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {
            "reference (filled_template)": REPO / "examples" / "filled_template",
            "CS231n-layout example": REPO / "examples" / "cs231n_layout",
            "typical 10-epoch model": submission(tmp, checkpoint=TYPICAL_10_EPOCHS.read_bytes()),
            "memorised images 0..48,999": lookup_submission(
                tmp / "memoriser", data.train_images[:49_000], data.train_labels[:49_000]
            ),
            "lookup table, 60,000 images": lookup_submission(
                tmp / "lookup",
                torch.cat([data.train_images, data.test_images]),
                torch.cat([data.train_labels, data.test_labels]),
            ),
        }
        print(f"{'submission':30} {'judged on':18} {'clean':>7} {'same 2k':>8} {'perturbed':>9} {'drop':>6}  verdict")
        for name, path in rows.items():
            result = grade_submission(
                path=path, questions={"Q7"}, data_loader=loader, limits=Limits(threads=args.threads), run_seed=args.seed
            )
            c = result.challenge
            accuracy = next(x for x in result.checks if x.id == "Q7.validation_accuracy")
            if "perturbed" not in c:
                print(f"{name:30} not measured: {accuracy.message}")
                continue
            p = c["perturbed"]
            verdict = f"{accuracy.status} {accuracy.score:g}/{accuracy.max_score:g}"
            if p["collapsed"]:
                verdict += ", flagged: collapses on perturbed images"
            print(
                f"{name:30} {c['eval_set']['short']:18} {100 * c['val_accuracy']:6.1f}% {100 * p['clean_accuracy']:7.1f}% "
                f"{100 * p['accuracy']:8.1f}% {100 * p['drop']:5.1f}  {verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
