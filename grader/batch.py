"""Grading a folder of submissions: in parallel, with progress, resumable.

Each finished submission is written at once (its results.json, HTML reports and a
cache entry keyed by its content hash, the grader's version and the rubric), so a
re-run, or a run after a crash, regrades only what is new or changed. The files come
from the writers registered in writers.py.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .assignment import default_assignment
from .render import write_results_json
from .results import SubmissionResult
from .rubric import Rubric, load_rubric
from .sandbox import Limits, hideable, namespaces_available
from .submission import content_hash, submission_name
from .version import __version__
from .writers import Batch, selected, write_all


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
    unsafe_no_sandbox: bool = False  # run student code without namespaces (see grade_batch)
    variant: Any = None  # the homework's specification values; None: the standard homework

    def key(self) -> str:
        text = json.dumps(
            [self.rubric.sha256, repr(self.limits), self.data is not None, self.questions]
            + ([repr(self.variant)] if self.variant is not None else []),
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@functools.cache
def _dataset(source: str | None, cache_dir: str | None):
    from .data import load_cifar10

    return load_cifar10(source, cache_dir=cache_dir)


@functools.cache
def _warm_workers():
    """This grading process's fork servers and launched spare workers (see warm.py)."""
    from .warm import WarmWorkers

    return WarmWorkers()


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
        isolate=False if options.unsafe_no_sandbox else None,
        variant=options.variant,
        warm=_warm_workers(),
    )
    return result.to_dict()


def _executor(jobs: int, *, cluster: str | None, scheduler: str | None) -> futures.Executor:
    """Where the submissions are graded: local processes, or a Dask cluster when asked."""
    if not (cluster or scheduler):
        context = multiprocessing.get_context("spawn")
        return futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_ignore_interrupts)
    from .cluster import ClusterError, open_executor

    try:
        return open_executor(cluster=cluster, scheduler=scheduler)
    except ClusterError as exc:
        raise BatchError(str(exc)) from None


def _pool_round(entries: list, jobs: int, options: Options, finish, crashed, make_pool) -> tuple[list, list]:
    """Grade ``entries`` in ``make_pool(jobs)``, at most ``jobs`` at a time. If a local
    grading process dies (the pool is then broken), stop: return the submissions then in
    flight (one of them killed it) and those not started yet. Ctrl-C stops the running
    ones at once."""
    queue, broken = list(entries), list[Any]()
    running: dict[futures.Future, Any] = {}
    pool = make_pool(jobs)
    interrupted = False
    try:
        while queue or running:
            while queue and len(running) < jobs and not broken:
                entry = queue.pop(0)
                running[pool.submit(_grade_one, str(entry.path), options)] = entry
            if not running:
                break
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                entry = running.pop(future)
                try:
                    result = SubmissionResult.from_dict(future.result())
                except BrokenProcessPool:
                    broken.append(entry)
                    continue
                except Exception as exc:  # a bug of the grader on this submission: record it, go on
                    crashed(entry, f"the grader failed on this submission: {type(exc).__name__}: {exc}")
                    continue
                finish(entry, result, cached=False)
            if broken:
                broken += list(running.values())
                break
    except KeyboardInterrupt:
        interrupted = True
        for process in list(getattr(pool, "_processes", {}).values()):  # stop the running ones now
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    return broken, queue


def crashed_result(
    path: Path, reason: str, rubric: Rubric, questions: set[str] | None = None, variant: Any = None
) -> SubmissionResult:
    from .engine import complete, new_result, selected_checks

    result = new_result(submission_name(path), path.name, rubric)
    result.status, result.reason = "crashed", reason
    specs = selected_checks(rubric, questions=questions)
    return complete(result, specs, rubric, status="error", message=reason, variant=variant)


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


class Interrupted(Exception):
    """Ctrl-C: queued work was cancelled; what finished is kept (cache, reports, a partial index)."""

    def __init__(self, done: int, total: int, out: Path):
        super().__init__(
            f"interrupted: {done} of {total} submission(s) graded and kept in {out}; run the same command again to resume"
        )
        self.done, self.total = done, total


def _ignore_interrupts() -> None:
    """Pool processes leave Ctrl-C to the batch; on SIGTERM (the batch was interrupted)
    they stop their workers and exit at once, taking no further queued work."""
    import signal

    def stop(*_) -> None:
        for pid in _children():
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # each worker leads its own process group
        os._exit(143)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


def _children() -> list[int]:
    """This process's children (Linux /proc; none found elsewhere)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                found.append(int(stat_file.parent.name))
    return found


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
    overrides: str | Path | None = None,
    course: str | Path | None = None,
    only: list[str] | None = None,
    warn=None,
    similarity: bool = True,
    cluster: str | None = None,
    scheduler: str | None = None,
    unsafe_no_sandbox: bool = False,
    variant: str | Path | None = None,
) -> list[SubmissionResult]:
    """Grade every submission in ``submissions`` (a folder, an LMS download as a .zip,
    or a single file) and write the results under ``out``. ``questions`` limits grading
    to some questions (e.g. ["Q1", "Q2"]). ``overrides`` and ``course`` (files) add hand
    overrides and the late policy when rendering. ``only`` regrades just the students it
    names (login, id, name or folder) and leaves the others' reports untouched.
    ``warn`` receives sentences worth showing (skipped entries, unmatched overrides).
    ``similarity`` runs the similarity analysis over the batch (for the instructor's
    outputs only). ``cluster`` ("local:N", "slurm") or ``scheduler`` (tcp://HOST:PORT)
    grades on Dask instead of local processes (see cluster.py). Raises BatchError if the
    batch cannot run at all, Interrupted on Ctrl-C. Student code runs in a sandbox; where
    none is available the batch is refused unless ``unsafe_no_sandbox`` (then it runs
    as the grader's own user). ``variant`` (a file, see ``grade assign --variant``) grades
    against a variant of the homework's specification values."""
    variants = default_assignment().variants()
    from .course import CourseError, apply_policies, load_course
    from .data import DataError, load_cifar10
    from .intake import IntakeError, gather, normal
    from .overrides import OverridesError, aliases_of, load_overrides, unmatched
    from .rubric import RubricError

    warn = warn or (lambda _text: None)
    submissions, out = Path(submissions), Path(out)
    if not unsafe_no_sandbox and not namespaces_available():
        raise BatchError(
            "no sandbox is available here (Linux user, mount, network and PID namespaces), so student code "
            "would run as you, with your network and files. Grade on a machine that allows them, or pass "
            "--unsafe-no-sandbox for submissions you trust."
        )
    if not submissions.exists():
        raise BatchError(f"{submissions} does not exist")
    try:
        varied = variants.load_variant(variant) if variant is not None else None
        loaded = load_rubric(rubric)
        if varied is not None:
            loaded = variants.rubric_for_variant(loaded, varied, explicit=rubric is not None)
        adjust: dict[str, Any] = {"overrides": load_overrides(overrides, rubric=loaded), "course": load_course(course)}
        intake = gather(submissions, workdir=out / ".intake")
    except (RubricError, OverridesError, CourseError, IntakeError, variants.VariantError) as exc:
        raise BatchError(str(exc)) from None
    entries = intake.entries
    for name, why in intake.skipped:
        warn(f"skipped {name}: {why}")

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
    if not entries:
        listed = "".join(f"\n  skipped {name}: {why}" for name, why in intake.skipped[:20])
        raise BatchError(f"no submission found in {submissions} (notebooks, modules or folders){listed}")
    wanted = {e.folder for e in entries}
    if only:
        names = {normal(n) for n in only}
        wanted = {e.folder for e in entries if aliases_of(e.student) & names}
        if not wanted:
            raise BatchError(f"--only {', '.join(only)} matches no submission (use a login, id, name or folder)")
    for student in unmatched(adjust["overrides"], [aliases_of(e.student) for e in entries]):
        warn(f"the overrides for {student!r} match no submission")

    cpus = os.cpu_count() or 1
    jobs = max(1, min(jobs or cpus, len(entries)))  # as a full run: the threads per job are in the cache key
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
        unsafe_no_sandbox=unsafe_no_sandbox,
        variant=varied,
    )
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)

    per_submission = selected(per_submission=True, html=reports)
    bar = Progress(len(wanted), progress)
    results: dict[str, SubmissionResult] = {}

    @functools.cache
    def cache_key(path: Path) -> str:
        return f"{content_hash(path)[:32]}-{__version__}-{options.key()}"

    def present(entry, raw: SubmissionResult) -> SubmissionResult:
        # Identity, overrides and the late penalty belong to the student, not to the bytes:
        # two students' identical files share one cache entry, never a name or a grade change.
        student = {**entry.student, **file_hashes(entry.path)}
        return apply_policies(raw, student=student, **adjust)

    def finish(entry, raw: SubmissionResult, cached: bool) -> None:
        raw.student, raw.adjustments = {}, []
        if not cached:
            (cache / f"{cache_key(entry.path)}.json").write_text(json.dumps(raw.to_dict()))
        result = results[entry.folder] = present(entry, raw)
        # A file that cannot be written must not stop the batch: the result says so.
        _, problems = write_all(per_submission, Batch([result], [entry.folder]), out)
        result.notes += problems
        for problem in problems:
            warn(f"{entry.folder}: {problem}")
        bar.update(result, cached)

    def cached(entry) -> SubmissionResult | None:
        entry_path = cache / f"{cache_key(entry.path)}.json"
        if entry_path.exists():
            try:
                return SubmissionResult.from_dict(json.loads(entry_path.read_text()))
            except (ValueError, TypeError, KeyError):
                entry_path.unlink()  # an unreadable cache entry is regraded
        return None

    todo = []
    for entry in entries:
        found = cached(entry) if use_cache or entry.folder not in wanted else None
        if entry.folder not in wanted:
            if found is not None:  # in the class files, but its reports stay as they are
                results[entry.folder] = present(entry, found)
            continue
        if found is not None and not only:
            finish(entry, found, cached=True)
        else:
            todo.append(entry)

    def crashed(entry, reason: str) -> None:
        result = crashed_result(entry.path, reason, loaded, set(questions) if questions else None, varied)
        finish(entry, result, cached=False)

    # A grading process that dies (killed, out of memory) breaks its whole pool, and every
    # submission in flight with it. Those are graded again, each alone in a fresh pool, so
    # that only the one that kills its grading process is marked crashed; the others go
    # on in a fresh pool of their own.
    interrupted = False
    distributed = bool(cluster or scheduler)

    def make_pool(width: int) -> futures.Executor:
        return _executor(width, cluster=cluster, scheduler=scheduler)

    try:
        rest = todo
        # A cluster schedules everything itself; local processes take ``jobs`` at a time.
        width = max(len(todo), 1) if distributed else jobs
        while rest:
            in_flight, rest = _pool_round(rest, width, options, finish, crashed, make_pool)
            for entry in in_flight:
                again, _ = _pool_round([entry], 1, options, finish, crashed, make_pool)
                if again:
                    crashed(entry, "the process grading this submission died (killed, or out of memory), twice")
    except KeyboardInterrupt:
        interrupted = True

    ordered = [results[e.folder] for e in entries if e.folder in results]
    folders = [e.folder for e in entries if e.folder in results]
    partial = interrupted or len(ordered) < len(entries)
    analysis = None
    if similarity and not interrupted:
        graded = [e for e in entries if e.folder in results]
        analysis = _similarity(graded, ordered, out, wanted, progress)
    write_index(
        out,
        entries,
        results,
        intake,
        partial=partial,
        cache_files={e.folder: f"{cache_key(e.path)}.json" for e in entries},
        settings={k: str(Path(v).resolve()) if v else None for k, v in (("overrides", overrides), ("course", course))},
    )
    batch = Batch(ordered, folders, skipped=intake.skipped, partial=partial, similarity=analysis)
    _, problems = write_all(selected(per_submission=False, html=reports), batch, out)
    for problem in problems:
        warn(problem)
    if interrupted:
        raise Interrupted(sum(e.folder in results for e in todo), len(todo), out)
    return ordered


def _similarity(entries, results: list[SubmissionResult], out: Path, wanted: set[str], progress: bool):
    """The similarity analysis of the batch (submissions named by their report folders),
    added to the results.json of those graded now (the instructor's file; students'
    reports never show it) and written to similarity.json. A failure here leaves the
    grades as they are."""
    from .similarity import analyse

    if len(entries) < 2:
        return None
    folders = [e.folder for e in entries]
    try:
        analysis, notes = analyse(
            submissions=[e.path for e in entries], results=dict(zip(folders, results)), names=folders
        )
    except Exception as exc:
        print(
            f"grade: the similarity analysis failed ({type(exc).__name__}: {exc}); grades are unaffected",
            file=sys.stderr,
        )
        return None
    top = analysis.top_by_student()
    for folder, result in zip(folders, results):
        if folder in wanted:
            write_results_json(result, out / folder, instructor_extra={"similarity": top.get(folder)})
    (out / "similarity.json").write_text(json.dumps(analysis.to_dict() | {"notes": notes}, indent=2) + "\n")
    if progress:
        print(
            f"similarity: {len(analysis.flagged())} pair(s) and {len(analysis.flagged_archive())} archive match(es) "
            f"flagged among {analysis.submissions} submissions ({analysis.seconds:.1f} s)",
            file=sys.stderr,
        )
    return analysis


def file_hashes(path: Path) -> dict[str, str]:
    """sha256 of a submission's notebook or module and of its checkpoint (best_model.*
    first), whatever their names: the class page spots students who handed in the same."""
    from .checkpoint import CHECKPOINT_SUFFIXES, PREFERRED_NAMES
    from .submission import InvalidSubmission, main_file

    def sha(f: Path) -> str:
        return hashlib.sha256(f.read_bytes()).hexdigest()

    out = {"source_sha256": "", "checkpoint_sha256": ""}
    try:
        source = main_file(path)
        if source.is_file() and not source.is_symlink():
            out["source_sha256"] = sha(source)
    except (InvalidSubmission, OSError):
        pass
    if path.is_dir():
        found = sorted(
            (f for f in path.rglob("*") if f.suffix in CHECKPOINT_SUFFIXES and f.is_file() and not f.is_symlink()),
            key=lambda f: (f.name not in PREFERRED_NAMES, str(f)),
        )
        out["checkpoint_sha256"] = sha(found[0]) if found else ""
    return out


def write_index(
    out: Path,
    entries,
    results: dict[str, SubmissionResult],
    intake,
    *,
    partial: bool,
    cache_files: dict[str, str],
    settings: dict[str, str | None],
) -> Path:
    """batch.json: what this batch holds, student by student (identity, the cache entry
    of the grading, the overrides and penalty applied), and whether it is complete
    (``partial``: interrupted, or some submissions have no result yet). ``grade export``
    reads it."""

    def row(e) -> dict:
        done = results.get(e.folder)
        return {
            "folder": e.folder,
            "name": done.name if done else e.identity.name,
            "files": e.files,
            "done": done is not None,
            "cache": cache_files[e.folder] if done else None,
            "student": done.student if done else e.student,
            "adjustments": done.adjustments if done else [],
        }

    doc = {
        "partial": partial,
        **settings,
        "layouts": intake.layouts,
        "submissions": len(entries),
        "graded": sum(e.folder in results for e in entries),
        "entries": [row(e) for e in entries],
        "skipped": [{"path": name, "reason": why} for name, why in intake.skipped],
    }
    path = out / "batch.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
