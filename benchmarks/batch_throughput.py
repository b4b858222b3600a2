"""Batch throughput, side by side in one run on the same machine, data and submissions:

(a) ``grade_batch`` with the local process pool (the default, no cluster);
(b) ``grade_batch`` on a Dask LocalCluster (``--cluster local:JOBS``), cluster start included;
(c) the floor: the same pool of processes, each submission's worker taken as in (a)
    (forked from the process's fork server, see grader/warm.py) and its cells run, with
    no check at all (``grade_submission(questions=set())``: grading unchanged);
(d) full notebook execution of one submission with nbclient (benchmarks/grading_speed.py),

printing submissions per minute, seconds per submission (and per core: times the
processes), the projected time for 1,000 submissions and the ratio (d) / seconds per
submission. The N submissions are the filled template and the mutation corpus
(tests/mutations.py), repeated as needed. Goal (issue 18): at least 40 a minute on 2 cores
for Questions 1-6 (3 s or less per submission per core), at least 150 times faster than
nbclient.

    python benchmarks/batch_throughput.py [-n 40] [--jobs 2] [--questions Q1,...,Q6]
        [--skip-nbclient | --nbclient-seconds S] [--data PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from grader.batch import grade_batch  # noqa: E402

Q1_TO_Q6 = "Q1,Q2,Q3,Q4,Q5,Q6"


def write_submissions(folder: Path, n: int) -> list[Path]:
    """The filled template and the mutation corpus, cycled to ``n`` submissions."""
    import mutations
    import nbformat

    from grader.assign import render_script, script_to_notebook

    script = render_script(filled=True)
    corpus = [("filled-template", script, "ipynb")]
    corpus += [(m.name, mutations.apply(m, script), m.form) for m in mutations.BUGS + mutations.CORRECT]
    paths = []
    for i in range(n):
        name, text, form = corpus[i % len(corpus)]
        path = folder / f"{i:04d}-{name}.{form}"
        path.write_text(nbformat.writes(script_to_notebook(text)) if form == "ipynb" else text)
        paths.append(path)
    return paths


def batch_seconds(folder: Path, args, **where) -> float:
    with tempfile.TemporaryDirectory(prefix="throughput-out-") as out:
        started = time.perf_counter()
        results = grade_batch(
            submissions=folder,
            out=Path(out),
            jobs=args.jobs,
            data=args.data,
            questions=args.questions.split(","),
            seed=0,
            use_cache=False,
            progress=False,
            reports=False,
            similarity=False,
            **where,
        )
        elapsed = time.perf_counter() - started
    crashed = [r.name for r in results if r.status != "graded"]
    if crashed:
        print(f"    warning: not graded: {', '.join(crashed)}")
    return elapsed


def run_cells_only(path: str) -> None:
    """The floor for one submission: take a worker as (a) does, run its cells, check nothing."""
    import torch

    from grader.batch import _warm_workers
    from grader.engine import grade_submission
    from grader.sandbox import Limits

    torch.set_num_threads(1)
    grade_submission(path=Path(path), questions=set(), limits=Limits(threads=1), run_seed=0, warm=_warm_workers())


def floor_seconds(paths: list[Path], jobs: int) -> float:
    context = multiprocessing.get_context("spawn")  # as batch.py's pool
    started = time.perf_counter()
    with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        list(pool.map(run_cells_only, map(str, paths)))
    return time.perf_counter() - started


def line(label: str, seconds: float, n: int, jobs: int, nbclient: float | None) -> str:
    per = seconds / n
    text = f"{label:<34} {60 / per:6.1f} /min  {per:6.2f} s per submission  {per * jobs:6.2f} core-s"
    text += f"  1,000 in {1000 * per / 60:5.1f} min"
    return text + (f"  {nbclient / per:6.0f}x faster than nbclient" if nbclient else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=40, help="submissions per run (default: 40)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    parser.add_argument("--questions", default=Q1_TO_Q6, help=f"questions graded (default: {Q1_TO_Q6})")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--skip-nbclient", action="store_true", help="no nbclient figure, no ratio")
    parser.add_argument(
        "--nbclient-seconds", type=float, help="reuse an nbclient time measured by grading_speed.py on this machine"
    )
    args = parser.parse_args()

    from grader.data import load_cifar10

    load_cifar10(args.data)  # decode and cache before timing
    nbclient = args.nbclient_seconds
    if nbclient is None and not args.skip_nbclient:
        from grading_speed import FILLED, nbclient_seconds

        print("nbclient, every cell of the filled template run for real ...", flush=True)
        nbclient = nbclient_seconds(next(FILLED.glob("*.ipynb")), args.data)

    print(f"{args.n} submissions, {args.jobs} processes, questions {args.questions}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        folder = Path(tmp)
        paths = write_submissions(folder, args.n)
        local = batch_seconds(folder, args)
        print(line("(a) local process pool", local, args.n, args.jobs, nbclient), flush=True)
        dask = batch_seconds(folder, args, cluster=f"local:{args.jobs}")
        print(line(f"(b) Dask --cluster local:{args.jobs}", dask, args.n, args.jobs, nbclient), flush=True)
        floor = floor_seconds(paths, args.jobs)
        print(line("(c) floor: cells run, no check", floor, args.n, args.jobs, nbclient), flush=True)
    if nbclient:
        print(f"(d) nbclient, one submission: {nbclient:.0f} s")
    print(f"checks cost {(local - floor) / args.n:.2f} s per submission above the floor; Dask/local {dask / local:.2f}")


if __name__ == "__main__":
    main()
