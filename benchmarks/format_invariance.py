"""Score and speed per representation, side by side in one run: the mutation corpus (the
filled template, every one-bug and every correct variant) converted into each form
students hand in (tests/representations.py), graded on Questions 1-6. The mean scores
must be equal; the seconds per submission say what each form costs.

    python benchmarks/format_invariance.py [--data PATH] [--reps notebook,nbconvert,colab]
        [--sample N] [--grader CHECKOUT] [--jobs 2]

``--grader`` grades with another checkout's grader (to compare before and after a
change); ``--sample N`` takes every k-th submission of the corpus, N in all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--reps", default="notebook,percent,nbconvert,colab,plain,merged,split,stale")
    parser.add_argument("--sample", type=int, default=0, help="grade N submissions of the corpus (0: all)")
    parser.add_argument("--grader", type=Path, default=REPO, help="the checkout whose grader grades")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    sys.path[:0] = [str(args.grader.resolve()), str(REPO / "tests")]

    import mutations
    import representations

    from grader.assign import render_script
    from grader.batch import grade_batch

    script = render_script(filled=True)
    corpus = {"filled-template": script} | {
        m.name: mutations.apply(m, script) for m in mutations.BUGS + mutations.CORRECT
    }
    names = list(corpus)
    if args.sample:
        step = max(1, len(names) // args.sample)
        names = names[::step][: args.sample]
    reps = args.reps.split(",")
    print(f"grader: {args.grader.resolve().name}; {len(names)} submissions x {len(reps)} representations")
    print(f"{'representation':<15} {'mean score':>10} {'s/submission':>13} {'wall s':>8}")
    scores = {}
    for rep in reps:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "in"
            folder.mkdir()
            for name in names:
                suffix, text = representations.convert(corpus[name], ".py", rep)
                (folder / f"{name}{suffix}").write_text(text)
            started = time.perf_counter()
            results = grade_batch(
                submissions=folder,
                out=Path(tmp) / "out",
                data=args.data,
                questions=QUESTIONS,
                seed=12345,
                use_cache=False,
                progress=False,
                reports=False,
                jobs=args.jobs,
            )
            wall = time.perf_counter() - started
        scores[rep] = {r.name: r.score for r in results}
        mean = sum(scores[rep].values()) / len(results)
        per = sum(r.duration for r in results) / len(results)
        print(f"{rep:<15} {mean:>10.2f} {per:>13.1f} {wall:>8.0f}", flush=True)
    base = scores[reps[0]]
    for rep in reps[1:]:
        differ = sorted(n for n in base if scores[rep].get(n) != base[n])
        if differ:
            print(f"{rep}: scores differ from {reps[0]} for {differ}")


if __name__ == "__main__":
    main()
