"""Time the similarity analysis on generated classes of growing size, and measure its
precision and recall at the default threshold.

.venv/bin/python benchmarks/similarity_speed.py [--sizes 250,500,1000] [--jobs N] [--copies 0.05]

Each class is made by tests/similarity_corpus.py: honest students who converge on the
short answers and design their own Question 7, plus a share of disguised copies (names,
order of independent statements, comments and spacing, dead code, or only Question 7
copied). The analysis reads every submission (as the grader does, with load_submission),
fingerprints its answers and scores the pairs through the inverted index. Seconds per
submission side by side across sizes show how it grows: flat means linear. "cpu s" is
this process's processor time (with --jobs 1, all of the work; on a busy machine it is
the fairer figure).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # runs from a checkout without installing it

import similarity_corpus as sc  # noqa: E402

from grader.similarity import THRESHOLD, analyse  # noqa: E402

DISGUISE_SETS = (["rename"], ["rename", "comments"], ["reorder", "dead"], ["rename", "reorder", "comments", "dead"])


def generated_class(size: int, copy_share: float, seed: int = 0) -> tuple[list[sc.Student], set[frozenset[str]]]:
    rng = random.Random(seed)
    copies = int(size * copy_share)
    honest = size - copies
    designs = sc.q7_designs(honest, seed=seed)
    students = [sc.independent(i, designs[i]) for i in range(honest)]
    pairs = set()
    for k, original in enumerate(rng.sample(students, copies)):
        name = f"copy{k:04d}"
        disguises = rng.choice(DISGUISE_SETS)
        only_q7 = rng.random() < 0.25
        copy = sc.copy_of(original, name, disguises, questions=["Q7"] if only_q7 else None)
        if only_q7:  # the rest is the copier's own
            own = sc.independent(rng.randrange(1000), designs[0])
            copy.answers.update({q: a for q, a in own.answers.items() if q != "Q7"})
        copy.notebook = rng.random() < 0.3
        students.append(copy)
        pairs.add(frozenset({original.name, name}))
    return students, pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000", help="class sizes to time (default: 250,500,1000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes reading submissions")
    parser.add_argument("--copies", type=float, default=0.05, help="share of the class that copies (default: 0.05)")
    args = parser.parse_args(argv)

    template = sc.TEMPLATE.read_text()
    print(f"jobs: {args.jobs}, copies: {args.copies:.0%} of each class, threshold: {THRESHOLD}")
    print(
        f"{'submissions':>11} {'seconds':>8} {'cpu s':>6} {'ms/subm.':>9} {'pairs scored':>13} {'flagged':>8} "
        f"{'precision':>9} {'recall':>7}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        students, truth = generated_class(size, args.copies)
        with tempfile.TemporaryDirectory(prefix="similarity-") as folder:
            for s in students:
                sc.write(s, Path(folder), template)
            started, cpu = time.perf_counter(), time.process_time()
            analysis, notes = analyse(submissions=Path(folder), jobs=args.jobs)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        flagged = {frozenset({m.a, m.b}) for m in analysis.flagged()}
        hits = len(flagged & truth)
        precision = hits / len(flagged) if flagged else 1.0
        recall = hits / len(truth) if truth else 1.0
        print(
            f"{analysis.submissions:>11} {seconds:>8.1f} {cpu:>6.1f} {1000 * seconds / analysis.submissions:>9.1f} "
            f"{len(analysis.matches):>13,} {len(flagged):>8} {precision:>9.3f} {recall:>7.3f}"
        )
        for note in notes:
            print("  " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
