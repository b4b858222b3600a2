"""The grader's side of the fork server (worker/forkserver.py): starting it, asking it for
a worker, and the forked worker as a process handle.

A worker started on its own spends seconds of CPU importing torch before it reads its
submission; forked from a server that has imported it once, it starts in milliseconds
and shares those pages with its siblings. Only sandboxed CPU workers are forked: they
get the same namespaces and filesystem as the ``unshare`` sandbox (see sandbox.py); the
others (bubblewrap refused, no namespaces, a GPU) start on their own as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

MESSAGE_BYTES = 1 << 20
START_SECONDS = 120.0  # importing torch on a busy machine
FORK_SECONDS = 30.0
_STATUS_SECONDS = 2.0  # from a worker's end to its keeper's report of it


class ForkServerError(Exception):
    """The fork server could not start, or could not fork a worker."""


class ForkedProcess:
    """A forked worker, with the part of ``subprocess.Popen``'s interface the sandbox
    uses. It is not our child: it is watched and killed through pidfds (of its keeper and
    of the worker, PID 1 of its own PID namespace), and its exit status comes from its
    keeper on the status pipe."""

    def __init__(self, *, pid: int, stdin: int, stdout: int, status: int, pidfds: list[int]):
        self.pid = pid  # the keeper's, for messages only: signals go through the pidfds
        self.stdin = open(stdin, "wb", buffering=0)  # noqa: SIM115 - closed by the sandbox's Worker
        self.stdout = open(stdout, "rb", buffering=0)  # noqa: SIM115
        self._status = status
        self._pidfds = pidfds
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            worker_ended = select.select([self._pidfds[1]], [], [], 0)[0]
            self._read_status(_STATUS_SECONDS if worker_ended else 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._read_status(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired("forked worker", timeout or 0)
        return self.returncode

    def kill(self) -> None:
        """Kill the worker (and with it everything in its PID namespace) and its keeper."""
        for fd in reversed(self._pidfds):
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)

    def _read_status(self, timeout: float | None) -> None:
        if self._status < 0 or not select.select([self._status], [], [], timeout)[0]:
            return
        text = os.read(self._status, 32)
        try:
            self.returncode = int(text)
        except ValueError:  # the keeper died without a word: it was killed
            self.returncode = -signal.SIGKILL
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in [self._status, *self._pidfds]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._status, self._pidfds = -1, [-1, -1]

    def __del__(self) -> None:
        if self._status >= 0:
            self._close_fds()


class ForkServer:
    """One fork server process, for workers of one set-up (paths hidden, homework, threads)."""

    def __init__(self, *, steps: list[list[str]], hide: list[str], homework: str, env: dict[str, str]):
        package_parent = str(Path(__file__).resolve().parent.parent)
        bootstrap = (
            "import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); "
            "runpy.run_module('grader.worker.forkserver', run_name='__main__', alter_sys=True)"
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self.control = ours
        try:
            self.proc = subprocess.Popen(
                # -S: no .pth file runs (see worker/forkserver.py); it adds site-packages itself.
                [sys.executable, "-I", "-S", "-c", bootstrap, package_parent, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                env=env,
                cwd="/",
                start_new_session=True,
            )
        finally:
            theirs.close()
        try:
            ours.settimeout(START_SECONDS)
            ours.send(json.dumps({"steps": steps, "hide": hide, "homework": homework}).encode())
            reply = json.loads(ours.recv(MESSAGE_BYTES) or b"{}")
        except (OSError, ValueError) as exc:
            self.close()
            raise ForkServerError(f"the fork server did not start: {exc}") from None
        if not reply.get("ok"):
            self.close()
            raise ForkServerError(f"the fork server refused to start: {reply.get('error', 'it stopped')}")

    def fork(self, *, setup: dict, host_uid: int | None, timeout: float = FORK_SECONDS) -> ForkedProcess:
        """A new worker for ``setup``, its set-up message, already reading its channel."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        status_r, status_w = os.pipe()
        request = json.dumps({"setup": setup, "host_uid": host_uid}).encode()
        try:
            with self._lock:
                self.control.settimeout(timeout)
                socket.send_fds(self.control, [request], [stdin_r, stdout_w, status_w])
                data, pidfds, _, _ = socket.recv_fds(self.control, MESSAGE_BYTES, 2)
            reply = json.loads(data or b"{}")
        except (OSError, ValueError) as exc:
            for fd in (stdin_w, stdout_r, status_r):
                os.close(fd)
            self.close()  # a server that does not answer is not asked again
            raise ForkServerError(f"the fork server did not answer: {exc}") from None
        finally:
            for fd in (stdin_r, stdout_w, status_w):
                os.close(fd)
        if not reply.get("ok") or len(pidfds) != 2:
            for fd in (stdin_w, stdout_r, status_r, *pidfds):
                os.close(fd)
            raise ForkServerError(f"the fork server could not fork a worker: {reply.get('error', 'no reply')}")
        return ForkedProcess(pid=int(reply["pid"]), stdin=stdin_w, stdout=stdout_r, status=status_r, pidfds=pidfds)

    def alive(self) -> bool:
        return self.proc.poll() is None and self.control.fileno() >= 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()  # the server reads the end of its channel and stops
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
