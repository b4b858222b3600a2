"""Grading a folder of submissions: in parallel, with progress, resumable.

Each finished submission is written at once (its results.json, HTML reports and a
cache entry keyed by its content hash, the grader's version and the rubric), so a
re-run, or a run after a crash, regrades only what is new or changed.
"""

from __future__ import annotations

import concurrent.futures as futures
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .render import folder_name, write_batch_files, write_results_json
from .results import SubmissionResult
from .rubric import Rubric, load_rubric
from .sandbox import Limits, hideable
from .submission import content_hash, discover, submission_name


class BatchError(Exception):
    """The batch cannot run at all (bad folder, rubric or dataset); exit status 2."""


@dataclass(frozen=True)
class Options:
    """Everything besides the submission that decides its grade (part of the cache key)."""

    data: str | None
    cache_dir: str | None
    rubric: Rubric
    limits: Limits
    run_seed: int | None
    hide: tuple[str, ...]
    questions: tuple[str, ...] | None = None

    def key(self) -> str:
        text = json.dumps(
            [self.rubric.sha256, repr(self.limits), self.data is not None, self.questions], sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@functools.cache
def _dataset(source: str | None, cache_dir: str | None):
    from .data import load_cifar10

    return load_cifar10(source, cache_dir=cache_dir)


def _grade_one(path: str, options: Options) -> dict:
    """Grade one submission (runs in a pool process)."""
    import torch

    from .engine import grade_submission

    torch.set_num_threads(options.limits.threads)
    loader = functools.partial(_dataset, options.data, options.cache_dir) if options.data is not None else None
    result = grade_submission(
        path=Path(path),
        rubric=options.rubric,
        data_loader=loader,
        limits=options.limits,
        run_seed=options.run_seed,
        hide=[Path(p) for p in options.hide],
        questions=set(options.questions) if options.questions else None,
    )
    return result.to_dict()


def crashed_result(path: Path, reason: str, rubric: Rubric, questions: set[str] | None = None) -> SubmissionResult:
    from .engine import complete, new_result, selected_checks

    result = new_result(submission_name(path), path.name, rubric)
    result.status, result.reason = "crashed", reason
    return complete(result, selected_checks(rubric, questions=questions), rubric, status="error", message=reason)


def private_paths(*, submissions: Path, out: Path, data: str | None, cache_dir: str | None) -> list[Path]:
    """Folders a student's code must not see. A worker's filesystem holds only Python,
    the grader package and system libraries (see worker/__main__.py), so these matter
    only where they lie inside one of those: the answer key installed in site-packages,
    say, or submissions kept inside the virtual environment."""
    import reference_solution

    from .data import DEFAULT_CACHE_DIR

    paths = [Path(reference_solution.__file__).resolve().parent, submissions.resolve(), out.resolve()]
    if data:
        source = Path(data).expanduser().resolve()
        paths.append(source if source.is_dir() else source.parent)
    paths.append(Path(cache_dir or os.environ.get("CIFAR10_CACHE") or DEFAULT_CACHE_DIR).expanduser())
    return sorted({p.resolve() for p in paths if hideable(p)})


class Progress:
    """A one-line progress bar on a terminal, one line per submission otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def update(self, result: SubmissionResult, cached: bool) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        what = "cached" if cached else f"{result.duration:.1f} s"
        score = f"{result.score:g}/{result.max_score:g}" if result.status == "graded" else result.status
        line = f"[{bar}] {self.done}/{self.total} {result.name}: {score} ({what})"
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line + ("\n" if self.done == self.total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def grade_batch(
    *,
    submissions: Path,
    out: Path = Path("reports"),
    jobs: int | None = None,
    data: str | None = None,
    cache_dir: str | None = None,
    download: bool = False,
    require_data: bool = True,
    rubric: str | Path | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    progress: bool = True,
    limits: Limits | None = None,
    reports: bool = True,
    questions: list[str] | None = None,
) -> list[SubmissionResult]:
    """Grade every submission in ``submissions`` (a folder, or a single file) and write
    the results under ``out``. ``questions`` limits grading to some questions (e.g.
    ["Q1", "Q2"]). Raises BatchError if the batch cannot run at all."""
    from .data import DataError, load_cifar10
    from .rubric import RubricError

    submissions, out = Path(submissions), Path(out)
    if not submissions.exists():
        raise BatchError(f"{submissions} does not exist")
    paths = discover(submissions) if submissions.is_dir() else [submissions]
    try:
        loaded = load_rubric(rubric)
    except RubricError as exc:
        raise BatchError(str(exc)) from None

    source = data
    if require_data or data is not None or download:
        try:
            # Load (and cache) once here, so the pool processes only read the cache.
            dataset = load_cifar10(data, cache_dir=cache_dir, download=download)
            source = dataset.source if data is None else data
        except DataError as exc:
            raise BatchError(
                f"{exc}\n(To grade without the images, skipping the checks that need them, pass --no-data.)"
            ) from None
    cpus = os.cpu_count() or 1
    jobs = max(1, min(jobs or cpus, len(paths) or 1))
    limits = limits or Limits(threads=max(1, cpus // jobs))
    hide = private_paths(submissions=submissions, out=out, data=source, cache_dir=cache_dir)
    options = Options(
        data=str(source) if source is not None else None,
        cache_dir=cache_dir,
        rubric=loaded,
        limits=limits,
        run_seed=seed,
        hide=tuple(str(p) for p in hide),
        questions=tuple(sorted(questions)) if questions else None,
    )
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)

    names: dict[str, int] = {}
    folders: dict[Path, str] = {}
    for p in paths:  # two submissions may share a name (alice.ipynb and alice/)
        name = folder_name(submission_name(p))
        names[name] = names.get(name, 0) + 1
        folders[p] = name if names[name] == 1 else f"{name}-{names[name]}"

    bar = Progress(len(paths), progress)
    results: dict[Path, SubmissionResult] = {}

    def finish(path: Path, result: SubmissionResult, cached: bool) -> None:
        results[path] = result
        folder = out / folders[path]
        write_results_json(result, folder)
        if reports:
            from .report import write_submission_reports

            try:
                write_submission_reports(result, folder)
            except Exception as exc:  # a report that cannot render must not stop the batch
                result.notes.append(f"the HTML report could not be written: {type(exc).__name__}: {exc}")
        if not cached:
            (cache / f"{cache_key(path)}.json").write_text(json.dumps(result.to_dict()))
        bar.update(result, cached)

    @functools.cache
    def cache_key(path: Path) -> str:
        return f"{content_hash(path)[:32]}-{__version__}-{options.key()}"

    todo = []
    for p in paths:
        entry = cache / f"{cache_key(p)}.json"
        if use_cache and entry.exists():
            try:
                finish(p, SubmissionResult.from_dict(json.loads(entry.read_text())), cached=True)
                continue
            except (ValueError, TypeError, KeyError):
                entry.unlink()  # an unreadable cache entry is regraded
        todo.append(p)

    if todo:
        context = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            pending = {pool.submit(_grade_one, str(p), options): p for p in todo}
            for done in futures.as_completed(pending):
                p = pending[done]
                try:
                    result = SubmissionResult.from_dict(done.result())
                except Exception as exc:  # a grading process died: record it, go on
                    reason = f"the grader failed on this submission: {type(exc).__name__}: {exc}"
                    result = crashed_result(p, reason, loaded, set(questions) if questions else None)
                finish(p, result, cached=False)

    ordered = [results[p] for p in paths]
    write_batch_files(ordered, out)
    if reports:
        from .report import write_class_summary

        write_class_summary(ordered, [folders[p] for p in paths], out)
    return ordered
