"""Grading on a Dask cluster: a local one, an existing scheduler, or workers started by Slurm.

Everything Dask-specific lives here. ``open_executor`` returns an executor with the
``concurrent.futures`` interface, so batch.py grades on a cluster exactly as in its local
process pool: the grading of one submission is one task, its result (plain data) comes back
to the client, and the client alone writes results, reports and the cache. When a Dask worker
dies, the scheduler runs its tasks again on another worker, so a lost machine loses no
submission. Each Dask worker grades in its own sandboxes, like a local pool process.

Needs the optional extra: ``pip install 'cifar10-autograder[cluster]'``.
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

INSTALL = "pip install 'cifar10-autograder[cluster]'"
SLURM_JOBS = 4  # Slurm jobs started by --cluster slurm without a count
CONNECT_SECONDS = 30.0


class ClusterError(Exception):
    """The cluster cannot be started or reached; the message says why and what to do."""


def parse_cluster(spec: str) -> tuple[str, int | None]:
    """``local``, ``local:N``, ``slurm`` or ``slurm:N`` as (kind, N); ValueError otherwise."""
    kind, _, count = spec.strip().lower().partition(":")
    if kind not in ("local", "slurm"):
        raise ValueError(f"unknown cluster {spec!r}: use local, local:N, slurm or slurm:N")
    if not count:
        return kind, None
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"the number in {spec!r} must be a whole number of at least 1")
    return kind, int(count)


def open_executor(*, cluster: str | None = None, scheduler: str | None = None) -> DaskExecutor:
    """An executor on a new local or Slurm cluster (``cluster``) or on the running scheduler at
    ``scheduler`` (tcp://HOST:PORT). Shutting it down closes whatever it started."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(f"grading on a Dask cluster needs Dask: {INSTALL}") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        return DaskExecutor(client, started=None)
    kind, count = parse_cluster(cluster or "local")
    started = _local_cluster(count) if kind == "local" else _slurm_cluster(count)
    try:
        client = Client(started)
    except BaseException:
        started.close()
        raise
    return DaskExecutor(client, started=started)


def _local_cluster(workers: int | None):
    import dask
    from distributed import LocalCluster

    # One single-threaded process per worker: one submission at a time each, like a pool process.
    # No Dask memory limit: the sandbox bounds the student's code, and Dask's default share of
    # the machine would count the mapped dataset and stop a worker that is doing its job.
    # Nor Dask's sampling profiler, which samples the grading thread's stack every 10 ms for
    # a dashboard no one opens here; the workers take this config along.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            memory_limit=0,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )


def _slurm_cluster(jobs: int | None):
    """Slurm jobs of one Dask worker each. Queue, account, cores, memory, GPUs: the site's
    jobqueue configuration (~/.config/dask/jobqueue.yaml) decides; these are the fallbacks."""
    try:
        import dask.config
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ClusterError(f"--cluster slurm needs dask-jobqueue: {INSTALL}") from None
    fallbacks = {"cores": 1, "processes": 1, "memory": "4GiB", "walltime": "04:00:00"}
    given: dict[str, Any] = {k: v for k, v in fallbacks.items() if dask.config.get(f"jobqueue.slurm.{k}", None) is None}
    try:
        cluster = SLURMCluster(**given)
    except Exception as exc:  # a bad configuration, or no Slurm here
        raise ClusterError(f"cannot start Slurm workers: {type(exc).__name__}: {exc}") from None
    cluster.scale(jobs=jobs or SLURM_JOBS)
    return cluster


class DaskExecutor(futures.Executor):
    """``concurrent.futures.Executor`` over a Dask client.

    Tasks run with ``pure=False`` (a submission graded twice is two tasks, as in a pool), and a
    task that retrains Question 7 asks for one unit of the ``GPU`` resource where a worker
    advertises one (``dask worker --resources GPU=1``)."""

    def __init__(self, client, *, started=None, resources: Callable[..., dict | None] | None = None):
        self.client = client
        self.started = started  # the cluster this executor started, closed with it
        self.resources = resources or gpu_for_retraining
        self._gpu: bool | None = None

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> futures.Future:
        if self._gpu is None:
            workers = self.client.scheduler_info()["workers"].values()
            self._gpu = any(w.get("resources", {}).get("GPU") for w in workers)
        resources = self.resources(*args) if self._gpu else None
        return _concurrent(self.client.submit(fn, *args, pure=False, resources=resources, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.client.close()
        if self.started is not None:
            self.started.close()


def _concurrent(task) -> futures.Future:
    """A Dask future as a concurrent.futures one, for ``futures.as_completed``."""
    future: futures.Future = futures.Future()
    future.set_running_or_notify_cancel()

    def copy(done) -> None:  # runs in a thread of the client
        try:
            future.set_result(done.result())
        except BaseException as exc:  # a task that failed for good (e.g. it killed three workers)
            future.set_exception(exc)

    task.add_done_callback(copy)
    return future


def gpu_for_retraining(path: str, options: Any = None, *_: Any) -> dict | None:
    """``{"GPU": 1}`` for a submission whose challenge model is retrained: the challenge
    question is graded and no checkpoint came with it."""
    from .assignment import default_assignment
    from .checkpoint import pick_checkpoint
    from .submission import InvalidSubmission, load_submission

    questions = getattr(options, "questions", None)
    challenge = default_assignment().challenge
    if challenge is None or (questions and challenge not in questions):
        return None
    try:
        files = load_submission(Path(path)).files
    except (InvalidSubmission, OSError):
        return None  # graded as invalid; nothing to train
    return None if pick_checkpoint(files) else {"GPU": 1}
