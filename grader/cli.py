"""The ``grade`` command: a thin layer over ``grade_batch``, ``self_check`` and ``assign``.

grade SUBMISSIONS [options]     grade every notebook or module in a folder (or one file)
grade --self-check FILE         a student's quick check of their own notebook or module
grade assign [--check]          regenerate the student template from the answer key
grade assign --variant F --out D  a variant's template, answer key example and rubric
grade export --format F         the gradebook file Canvas, Moodle or Gradescope imports
grade similarity SUBMISSIONS    flag copied work in a class (and from an archive)
grade gradescope build          write the autograder.zip to upload to Gradescope
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .assignment import default_assignment
from .version import __version__

EPILOG = """\
examples:
  grade submissions/ --data cifar-10-python.tar.gz     grade a class; reports in reports/
  grade submissions/ --jobs 4 --out graded/            four at a time, elsewhere
  grade submissions/ --cluster local:8                 on a Dask cluster of 8 local processes
  grade submissions/ --scheduler tcp://head:8786       on a running Dask cluster
  grade submissions/ --cluster slurm:20                on 20 Slurm jobs (dask-jobqueue)
  grade --self-check hw05.ipynb                        what a student runs before submitting
  grade assign                                         rebuild student_template/ and examples/
  grade assign --variant fall.toml --out fall/         this term's variant: template, answer key, rubric
  grade submissions/ --variant fall/variant.toml --rubric fall/rubric.toml
                                                       grade against that variant
  grade submissions.zip --course course.toml --overrides overrides.toml
                                                       an LMS download, late policy, hand overrides
  grade submissions.zip --only smithjohn               regrade one student, leave the others
  grade export --format canvas                         reports/canvas.csv for Canvas's grade import
  grade gradescope build --data cifar10.tar.gz         the autograder.zip to upload to Gradescope

LMS downloads: a folder or .zip from Canvas (smithjohn_12345_67890_hw05.ipynb),
Moodle (Ana García_34567_assignsubmission_file_/) or Gradescope (submission_metadata.yml)
is read with each student's name and id; a student's several files are one submission.
  grade similarity submissions/ --against archive/     pairs of submissions that look copied

outputs (under --out, default reports/):
  <submission>/results.json     Gradescope-format results, every check with its reason
  <submission>/report.html      the instructor's report; report-student.html leaves out
                                hidden checks' details
  index.html                    class summary: sortable scores, pass rates, failures,
                                what needs a look (accuracy near the threshold, late, identical...)
  gradebook.csv, summary.json   the batch as a spreadsheet and as data
  batch.json                    who is in the batch, and whether it is complete ("partial")

The dataset: --data takes a cifar-10-batches-py folder, a class-folder tree
(train/<class>/*.png|jpg, test/<class>/...) or a .tar.gz of either; without it the
grader looks at $CIFAR10_DATA, then ~/.cache/cifar10-autograder/data.

exit status: 0 when the batch ran (whatever the scores), 2 when it could not run
(missing folder, dataset or rubric, no submission found), 130 when interrupted with
Ctrl-C (what finished is kept; the same command resumes). For --self-check: 0 when every public check
passed, 1 otherwise.
"""


def _grading_parser() -> argparse.ArgumentParser:

    questions = default_assignment().questions
    p = argparse.ArgumentParser(
        prog="grade",
        description="Grade PyTorch CIFAR-10 homework: notebooks (.ipynb) or modules (.py).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "submissions",
        nargs="?",
        type=Path,
        help="a folder of submissions, an LMS download (.zip or its folder), or one submission",
    )
    p.add_argument(
        "--self-check",
        metavar="FILE",
        type=Path,
        help="run the public checks on one notebook or module and explain each failure",
    )
    p.add_argument("--out", type=Path, default=Path("reports"), help="where results go (default: reports/)")
    p.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default: number of cores)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--cluster",
        metavar="KIND[:N]",
        type=_cluster,
        help="grade on a Dask cluster started for the batch: local:N (N processes on this machine) or "
        "slurm:N (N Slurm jobs, configured by ~/.config/dask/jobqueue.yaml); needs the [cluster] extra",
    )
    where.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="grade on the running Dask cluster with this scheduler"
    )
    p.add_argument("--data", metavar="PATH", help="CIFAR-10: a cifar-10-batches-py folder, class folders, or a .tar.gz")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 with torchvision if it is not found")
    p.add_argument("--no-data", action="store_true", help="grade without the images; checks that need them are skipped")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where decoded images are cached (default: ~/.cache/cifar10-autograder/cache)",
    )
    p.add_argument("--rubric", type=Path, help="a rubric TOML file (default: the one shipped, totalling 100)")
    p.add_argument(
        "--variant",
        type=Path,
        metavar="FILE",
        help="grade against a variant of the homework (channels, learning rates, momentum, the challenge's "
        "threshold and epochs), the file given to grade assign --variant; default: the standard homework",
    )
    p.add_argument(
        "--questions",
        metavar=",".join(questions[:2]),
        help=f"grade only these questions (default: all, {questions[0]} to {questions[-1]})",
    )
    p.add_argument("--seed", type=int, help="fix the secret probe inputs (default: new ones each run)")
    p.add_argument("--no-cache", action="store_true", help="regrade everything, even unchanged submissions")
    p.add_argument(
        "--cell-timeout", type=float, default=60.0, metavar="S", help="seconds one cell may run (default: 60)"
    )
    p.add_argument(
        "--submission-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds one submission may take, retraining aside (default: 600)",
    )
    p.add_argument(
        "--train-budget",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds for retraining a Question 7 model that has no checkpoint (default: 900)",
    )
    p.add_argument(
        "--overrides", type=Path, metavar="FILE", help="hand overrides (overrides.toml), applied without regrading"
    )
    p.add_argument("--course", type=Path, metavar="FILE", help="the assignment and its late policy (course.toml)")
    p.add_argument(
        "--only",
        metavar="NAMES",
        help="regrade only these students (logins, ids, names or report folders, comma-separated)",
    )
    p.add_argument(
        "--no-similarity",
        action="store_true",
        help="skip the similarity analysis after the batch (see grade similarity --help)",
    )
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="grade even where no sandbox (Linux namespaces) is available: student code then runs as you, "
        "with your network and files; only for submissions you trust",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="--self-check only: retrain Question 7 when no best_model.pt is beside the notebook (takes minutes)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _assign_parser() -> argparse.ArgumentParser:
    import textwrap

    variants = default_assignment().variants()

    p = argparse.ArgumentParser(
        prog="grade assign",
        description="Regenerate student_template/ and the filled and empty examples from reference_solution/; "
        "with --variant, a variant of the homework instead.",
        epilog="a variant file (TOML) overrides some of the specification's values; the rest keep the\n"
        "standard homework's:\n\n"
        + textwrap.indent(variants.EXAMPLE, "  ")
        + "\ngrade assign --variant FILE --out DIR writes into DIR: student_template/ (notebook and\n"
        "module), examples/filled_template/ (the answer key's filled notebook), rubric.toml (with\n"
        "the challenge's threshold) and variant.toml (every value). Grade with\n"
        "  grade SUBMISSIONS --variant DIR/variant.toml --rubric DIR/rubric.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the committed files are out of date")
    p.add_argument("--variant", type=Path, metavar="FILE", help="a variant file (see below); needs --out")
    p.add_argument("--out", type=Path, metavar="DIR", help="write here instead of into the project")
    return p


def _export_parser() -> argparse.ArgumentParser:
    from .export import FORMATS

    p = argparse.ArgumentParser(
        prog="grade export",
        description="Write the gradebook file an LMS imports, from a graded batch (final scores: "
        "overrides and late penalty included).",
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="which LMS's import format")
    p.add_argument("--out", type=Path, default=Path("reports"), help="the graded batch (default: reports/)")
    p.add_argument("--to", type=Path, metavar="FILE", help="where to write (default: <out>/<format>.csv)")
    p.add_argument(
        "--overrides", type=Path, metavar="FILE", help="overrides to apply (default: those the batch was graded with)"
    )
    p.add_argument(
        "--course", type=Path, metavar="FILE", help="course file: late policy, points (default: the batch's)"
    )
    return p


def _similarity_parser() -> argparse.ArgumentParser:
    from .similarity import THRESHOLD

    p = argparse.ArgumentParser(
        prog="grade similarity",
        description=(
            "Flag submissions that look copied from each other (or, with --against, from an archive of "
            "earlier submissions or public solutions). Only the answers count, never the template; code is "
            "compared after normalising names, literals, comments, layout and the order of independent "
            "statements; a fragment many students write is worth little, and Question 7 weighs most. "
            "Identical checkpoints, the same unusual Question 7 model and identical rare outputs add evidence."
        ),
        epilog=(
            "output: one line per flagged pair, tab-separated: both names, the score (0 to 1), the questions "
            'involved, and other evidence in parentheses; then the archive matches ("matches archive entry X"). '
            "After a batch, `grade` runs the same analysis and adds it to index.html, gradebook.csv and each "
            "results.json (instructor view only)."
        ),
    )
    p.add_argument("submissions", type=Path, help="a folder of submissions, as for grading")
    p.add_argument("--against", metavar="DIR", type=Path, help="an archive folder of earlier submissions or solutions")
    p.add_argument(
        "--threshold", type=float, default=THRESHOLD, help=f"flag pairs scoring at least this (default: {THRESHOLD})"
    )
    p.add_argument(
        "--results",
        metavar="DIR",
        type=Path,
        help="a batch's reports folder: its results add Question 7 models and error messages as evidence",
    )
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the flagged pairs as JSON")
    return p


def _gradescope_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grade gradescope",
        description="Grade on Gradescope: build the autograder zip to upload (build); inside Gradescope,"
        " setup.sh and run_autograder call prepare and run.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    build = sub.add_parser(
        "build",
        help="write the autograder zip: setup.sh, run_autograder, the rubric, the grader and the dataset",
        description="Write the zip to upload on Gradescope's Configure Autograder page.",
    )
    build.add_argument("--out", type=Path, default=Path("autograder.zip"), help="where (default: autograder.zip)")
    build.add_argument("--rubric", type=Path, help="a rubric TOML file (default: the one shipped, totalling 100)")
    build.add_argument(
        "--variant", type=Path, metavar="FILE", help="grade a variant of the homework (see grade assign --help)"
    )
    build.add_argument("--data", type=Path, metavar="PATH", help="CIFAR-10 to put inside the zip (.tar.gz or folder)")
    build.add_argument(
        "--download",
        action="store_true",
        help="instead of --data: setup.sh downloads CIFAR-10 (170 MB) with torchvision when Gradescope builds the image",
    )
    build.add_argument(
        "--torch-index",
        default=None,
        metavar="URL",
        help="package index for torch (default: the CPU builds, %s; 'pypi' for PyPI's CUDA builds)"
        % "https://download.pytorch.org/whl/cpu",
    )
    build.add_argument(
        "--train-budget",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds for retraining a Question 7 model that has no checkpoint (default: 900)",
    )
    run = sub.add_parser("run", help="grade ROOT/submission as one submission; write ROOT/results/results.json")
    run.add_argument("--root", type=Path, default=Path("/autograder"), help="Gradescope's root (default: /autograder)")
    prepare = sub.add_parser("prepare", help="setup.sh's last step: fetch and decode CIFAR-10 into the cache")
    prepare.add_argument("--source", type=Path, default=Path("/autograder/source"), help="the unpacked zip")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["assign"]:
        return _assign(_assign_parser().parse_args(argv[1:]))
    if argv[:1] == ["export"]:
        return _export(_export_parser().parse_args(argv[1:]))
    if argv[:1] == ["similarity"]:
        return _similarity(_similarity_parser().parse_args(argv[1:]))
    if argv[:1] == ["gradescope"]:
        return _gradescope(_gradescope_parser().parse_args(argv[1:]))
    parser = _grading_parser()
    args = parser.parse_args(argv)
    if args.self_check:
        from .selfcheck import self_check

        return self_check(
            args.self_check,
            data=args.data,
            cache_dir=args.cache_dir,
            retrain=args.retrain,
            rubric=args.rubric,
            variant=args.variant,
        )
    if args.submissions is None:
        parser.error("give a folder of submissions (or --self-check FILE); see grade --help")
    return _grade(args)


def _grade(args: argparse.Namespace) -> int:
    from .batch import BatchError, Interrupted, grade_batch
    from .sandbox import Limits

    limits = Limits(
        cell_seconds=args.cell_timeout, submission_seconds=args.submission_timeout, train_seconds=args.train_budget
    )
    try:
        results = grade_batch(
            submissions=args.submissions,
            out=args.out,
            jobs=args.jobs,
            data=args.data,
            cache_dir=args.cache_dir,
            download=args.download,
            require_data=not args.no_data,
            rubric=args.rubric,
            seed=args.seed,
            use_cache=not args.no_cache,
            progress=not args.quiet,
            limits=limits,
            questions=_questions(args.questions),
            overrides=args.overrides,
            course=args.course,
            only=[n.strip() for n in args.only.split(",") if n.strip()] if args.only else None,
            warn=lambda text: print(f"grade: {text}", file=sys.stderr),
            similarity=not args.no_similarity,
            cluster=args.cluster,
            scheduler=args.scheduler,
            unsafe_no_sandbox=args.unsafe_no_sandbox,
            variant=args.variant,
        )
    except BatchError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"\ngrade: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before grading started: nothing to keep
        print("\ngrade: interrupted before grading started", file=sys.stderr)
        return 130
    if not args.quiet:
        graded = [r for r in results if r.status == "graded"]
        others = len(results) - len(graded)
        mean = sum(r.score for r in graded) / len(graded) if graded else 0.0
        print(
            f"graded {len(graded)} submission(s)"
            + (f", {others} invalid or crashed" if others else "")
            + f"; mean score {mean:.1f}"
        )
        print(f"reports: {args.out / 'index.html'}  gradebook: {args.out / 'gradebook.csv'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .course import CourseError
    from .export import ExportError, export
    from .overrides import OverridesError

    try:
        path, index = export(
            out=args.out, format=args.format, dest=args.to, overrides=args.overrides, course=args.course
        )
    except (ExportError, OverridesError, CourseError) as exc:
        print(f"grade export: {exc}", file=sys.stderr)
        return 2
    if index.get("partial"):
        print(
            f"grade export: the batch is partial ({index['graded']} of {index['submissions']} graded)", file=sys.stderr
        )
    print(f"wrote {path}")
    return 0


def _similarity(args: argparse.Namespace) -> int:
    import json

    from .similarity import analyse, saved_results

    for folder in (args.submissions, args.against):
        if folder is not None and not folder.is_dir():
            print(f"grade similarity: {folder} is not a folder", file=sys.stderr)
            return 2
    results = saved_results(args.results) if args.results else None
    analysis, notes = analyse(
        submissions=args.submissions, against=args.against, threshold=args.threshold, results=results
    )
    for note in notes:
        print(note, file=sys.stderr)
    for match in analysis.flagged():
        print(match.line())
    for match in analysis.flagged_archive():
        print(match.line())
    print(
        f"{len(analysis.flagged())} pair(s) and {len(analysis.flagged_archive())} archive match(es) at or above "
        f"{args.threshold:g}, among {analysis.submissions} submissions ({analysis.seconds:.1f} s)",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(analysis.to_dict(), indent=2) + "\n")
    return 0


def _cluster(text: str) -> str:
    from .cluster import parse_cluster

    try:
        parse_cluster(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _questions(text: str | None) -> list[str] | None:
    if not text:
        return None

    questions = default_assignment().questions
    wanted = [q.strip().upper() for q in text.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in questions]
    if unknown:
        raise SystemExit(f"grade: unknown question(s) {', '.join(unknown)}; use {questions[0]} to {questions[-1]}")
    return wanted


def _assign(args: argparse.Namespace) -> int:
    from .assign import assign

    variants = default_assignment().variants()

    if args.variant and not args.out:
        print("grade assign: --variant needs --out DIR (the project's own template stays standard)", file=sys.stderr)
        return 2
    try:
        variant = variants.load_variant(args.variant) if args.variant else None
    except variants.VariantError as exc:
        print(f"grade assign: {exc}", file=sys.stderr)
        return 2
    changed = assign(check=args.check, variant=variant, out=args.out)
    if args.check:
        if changed:
            print("out of date (run `grade assign`): " + ", ".join(map(str, changed)), file=sys.stderr)
            return 1
        print("student template and examples are up to date")
        return 0
    print("wrote " + (", ".join(map(str, changed)) if changed else "nothing (already up to date)"))
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    from . import gradescope

    if args.action == "run":
        gradescope.run_autograder(root=args.root)  # writes results.json whatever happens
        return 0
    if args.action == "prepare":
        gradescope.prepare(source=args.source)
        return 0
    variants = default_assignment().variants()
    from .rubric import RubricError

    index = {None: gradescope.CPU_TORCH_INDEX, "pypi": None}.get(args.torch_index, args.torch_index)
    try:
        out = gradescope.build_autograder(
            out=args.out,
            rubric=args.rubric,
            data=args.data,
            download=args.download,
            torch_index=index,
            train_budget=args.train_budget,
            variant=args.variant,
        )
    except (RubricError, variants.VariantError, ValueError, OSError) as exc:
        print(f"grade gradescope build: {exc}", file=sys.stderr)
        return 2
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB): upload it on Gradescope's Configure Autograder page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
