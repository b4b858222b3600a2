"""Workers ready before their submission, so that starting one (building its sandbox,
importing torch: seconds of CPU) is neither on the critical path of grading nor paid
again for every submission.

A sandboxed CPU worker is forked from a fork server (forkserver.py) that this grading
process keeps per set-up (the paths to hide, the homework, the threads): it has imported
torch once, and each fork costs milliseconds. Other workers (a GPU, no namespaces), or
all of them when a fork server cannot start, come from launched spares: one per set-up,
already waiting for its ``init``; taking it launches the next. Either way every worker
serves one submission only (``Worker.init`` refuses a second), and holds nothing of any
submission until it is handed its own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from .forkserver import ForkServer, ForkServerError
from .sandbox import Limits, Worker, WorkerError, scrubbed_env, worker_paths


class WarmWorkers:
    """Fork servers and launched spare workers, one of each per set-up at most."""

    def __init__(self, *, fork: bool | None = None) -> None:
        """``fork``: fork workers from fork servers where they can be (False: spares only;
        None: unless the environment says GRADER_FORK=0)."""
        self.fork = os.environ.get("GRADER_FORK", "1") != "0" if fork is None else fork
        self._root: Path | None = None  # the spares' private folders live here
        self._spares: dict[tuple, Worker] = {}
        self._servers: dict[tuple, ForkServer | None] = {}  # None: it could not start or failed
        self._lock = threading.Lock()  # a Dask worker of several threads grades several at once

    def take(self, *, hide: list[Path], limits: Limits, isolate: bool | None, homework: str | None = None) -> Worker:
        """A launched worker for one submission: forked from the set-up's fork server
        where it can be; otherwise the spare if it is alive, else a new one, leaving a new
        spare launched behind it."""
        key = (tuple(str(p) for p in hide), limits, isolate, homework)
        with self._lock:
            worker = self._forked(key)
            if worker is not None:
                return worker
            worker = self._spares.pop(key, None)
            if worker is None or worker.proc is None or worker.proc.poll() is not None:
                if worker is not None:
                    worker.close()
                worker = self._launch(key)
            with contextlib.suppress(WorkerError, OSError):  # no spare this time: the next take starts cold
                self._spares[key] = self._launch(key)
        return worker

    def _forked(self, key: tuple) -> Worker | None:
        """A worker forked from this set-up's fork server, or None where none can be."""
        worker = self._worker(key)
        if not (self.fork and worker.forkable):
            return None
        server_key = (key[0], worker.homework, worker.limits.threads)
        if server_key not in self._servers:
            try:
                # What importing torch writes to the temp folder (its compiler's cache folder)
                # goes to a folder of the server's own, removed with it.
                assert self._root is not None
                tmp = tempfile.mkdtemp(prefix="forkserver-", dir=self._root)
                env = {**scrubbed_env(worker.limits.threads), "TMPDIR": tmp}
                self._servers[server_key] = ForkServer(
                    steps=worker_paths(), hide=worker.hide, homework=worker.homework, env=env
                )
            except (ForkServerError, OSError):
                self._servers[server_key] = None
        worker.forkserver = self._servers[server_key]
        if worker.forkserver is None:
            return None
        worker.launch()
        if not worker.forked:  # the server failed (the worker started on its own): spares from now on
            self._servers.pop(server_key).close()  # type: ignore[union-attr]
            self._servers[server_key] = None
        return worker

    def _worker(self, key: tuple) -> Worker:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="grader-warm-"))
            atexit.register(self.close)
        hide, limits, isolate, homework = key
        return Worker(
            hide=[Path(p) for p in hide], private_root=self._root, limits=limits, isolate=isolate, homework=homework
        )

    def _launch(self, key: tuple) -> Worker:
        worker = self._worker(key)
        worker.launch()
        return worker

    def close(self) -> None:
        """Stop every spare and remove their folders."""
        with self._lock:
            for worker in self._spares.values():
                worker.close()
            self._spares.clear()
            for server in self._servers.values():
                if server is not None:
                    server.close()
            self._servers.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None
