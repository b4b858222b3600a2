"""Workers started ahead of their submission, so that starting one (building its sandbox,
importing torch: seconds) is off the critical path of grading.

A grading process keeps one launched spare per set-up (the paths to hide, the limits,
the sandbox): when a submission needs a worker it takes the spare, already waiting for
its ``init``, and launches the next. Every worker still serves one submission only
(``Worker.init`` refuses a second), and is built exactly as a cold one is: the spare
holds nothing of any submission until it is handed its own.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import threading
from pathlib import Path

from .sandbox import Limits, Worker, WorkerError


class WarmWorkers:
    """Launched workers waiting for a submission, one per set-up."""

    def __init__(self) -> None:
        self._root: Path | None = None  # the spares' private folders live here
        self._spares: dict[tuple, Worker] = {}
        self._lock = threading.Lock()  # a Dask worker of several threads grades several at once

    def take(self, *, hide: list[Path], limits: Limits, isolate: bool | None, homework: str | None = None) -> Worker:
        """A launched worker for one submission (the spare if it is alive, else a new
        one), leaving a new spare launched behind it."""
        key = (tuple(str(p) for p in hide), limits, isolate, homework)
        with self._lock:
            worker = self._spares.pop(key, None)
            if worker is None or worker.proc is None or worker.proc.poll() is not None:
                if worker is not None:
                    worker.close()
                worker = self._launch(key)
            with contextlib.suppress(WorkerError, OSError):  # no spare this time: the next take starts cold
                self._spares[key] = self._launch(key)
        return worker

    def _launch(self, key: tuple) -> Worker:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="grader-warm-"))
            atexit.register(self.close)
        hide, limits, isolate, homework = key
        worker = Worker(
            hide=[Path(p) for p in hide], private_root=self._root, limits=limits, isolate=isolate, homework=homework
        )
        worker.launch()
        return worker

    def close(self) -> None:
        """Stop every spare and remove their folders."""
        with self._lock:
            for worker in self._spares.values():
                worker.close()
            self._spares.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None
