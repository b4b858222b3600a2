"""Grading speed, side by side in one run on the same machine and data:

(a) this grader on each shipped example submission (Questions 1-6, then all seven), one
    at a time, each taking its worker as a batch does (forked, see grader/warm.py), and
(b) executing the filled template top to bottom with nbclient on the real data, which is
    what nbgrader and Otter do to grade a notebook,

and the ratio (b) / (a) for the filled template. Targets (issue 18): a Q1-Q6 grade in 3 s
or less per submission, and at least 150 times faster than (b).

    python benchmarks/grading_speed.py [--data PATH] [--skip-nbclient]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.data import load_cifar10  # noqa: E402
from grader.engine import grade_submission  # noqa: E402
from grader.sandbox import Limits  # noqa: E402
from grader.submission import discover  # noqa: E402
from grader.warm import WarmWorkers  # noqa: E402

WARM = WarmWorkers()

Q1_TO_Q6 = {"Q1", "Q2", "Q3", "Q4", "Q5", "Q6"}
FILLED = REPO / "examples" / "filled_template"


def grade_seconds(path: Path, loader, questions, threads: int) -> tuple[float, float]:
    started = time.perf_counter()
    result = grade_submission(
        path=path, data_loader=loader, questions=questions, limits=Limits(threads=threads), run_seed=0, warm=WARM
    )
    return time.perf_counter() - started, result.score


def nbclient_seconds(notebook: Path, data: str) -> float:
    """Run every cell of the notebook for real (all training included), as nbgrader does,
    in a folder of its own: what it writes (its checkpoint) must not land in examples/."""
    import tempfile

    import nbclient
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    os.environ["CIFAR10_DATA"] = data
    with tempfile.TemporaryDirectory(prefix="nbclient-run-") as folder:
        started = time.perf_counter()
        nbclient.NotebookClient(
            nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": folder}}
        ).execute()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-nbclient", action="store_true", help="only time the grader")
    args = parser.parse_args()
    loader = functools.partial(load_cifar10, args.data)
    loader()  # decode and cache before timing

    print(f"(a) this grader, {args.threads} threads, one submission at a time")
    timings = {}
    for path in discover(REPO / "examples"):
        q6, score6 = grade_seconds(path, loader, Q1_TO_Q6, args.threads)
        full, score = grade_seconds(path, loader, None, args.threads)
        timings[path.name] = (q6, score6)
        print(f"    {path.name:<40} Q1-Q6 {q6:5.1f} s ({score6:g} pts)   all questions {full:5.1f} s ({score:g} pts)")
    answered = [t for name, (t, score) in timings.items() if score > 0]  # not the empty or broken ones
    print(
        f"    Q1-Q6 grade of the answered submissions: mean {sum(answered) / len(answered):.1f} s, "
        f"slowest {max(answered):.1f} s (target: 3 s or less)"
    )
    if args.skip_nbclient:
        return
    notebook = next(FILLED.glob("*.ipynb"))
    print("(b) nbclient, every cell of the filled template run for real on the real data ...", flush=True)
    executed = nbclient_seconds(notebook, args.data)
    ours = timings[FILLED.name][0]
    print(f"    {executed:.0f} s")
    print(f"ratio (b) / (a) for the filled template: {executed / ours:.0f}x (target: at least 150x)")


if __name__ == "__main__":
    main()
