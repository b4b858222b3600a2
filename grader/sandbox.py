"""Starting, talking to and stopping a student worker process (the trusted side).

A worker is ``python -I -m grader.worker`` in a subprocess. Where Linux allows
unprivileged namespaces it runs inside bubblewrap (``bwrap``, where installed) or
``unshare`` (then it builds its filesystem itself): its own user, mount, network and
PID namespaces, so it has no network, and a filesystem of its own that holds only
Python with the student's libraries (torch, torchvision, numpy, PIL and what they
require), the grader package and the system's libraries, read-only, plus a private /tmp
(the reference solution, other submissions, reports, the dataset and its labels, the
home folder and every socket are simply absent), and dies with all its children when
killed. Elsewhere it is a plain
subprocess with the same time and output limits; as root (Gradescope's containers, which
may refuse namespaces) it then switches to an unprivileged uid of its own, and the
folders it must not read are closed to other users. The environment is scrubbed either way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounds import MESSAGE_CHARS, bounded_reply
from .forkserver import ForkedProcess, ForkServer, ForkServerError
from .worker import wire

_UNSHARE = [
    "unshare",
    "--user",
    "--mount",
    "--net",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
]
# As root, the worker's user namespace maps its root to the real root (to build its
# filesystem) and WORKER_UID to an unprivileged host uid it switches to before student
# code runs: process limits do not bind root, so a fork bomb would not stop otherwise.
# As an ordinary user, it maps its root to that user, whom the limits bind anyway.
WORKER_UID = 1000
HOST_UID_BASE = 1 << 20  # far above the uids of people and system accounts
_GRACE_SECONDS = 5.0  # beyond the worker's own alarm, before the grader kills it
_STALL_SECONDS = 10.0  # a request the worker does not read from for this long was never awaited


@dataclass(frozen=True)
class Limits:
    """How much a submission may use. Times are wall-clock seconds."""

    cell_seconds: float = 60.0
    submission_seconds: float = 600.0
    output_chars: int = 20_000
    memory_bytes: int = 16 << 30  # all the worker's memory: its processes' and its RAM-backed /tmp
    scratch_bytes: int = 1 << 30  # its private /tmp and /dev/shm together (RAM-backed, part of memory_bytes)
    threads: int = 1
    reply_bytes: int = 1 << 30
    train_seconds: float = 900.0  # retraining a Question 7 model without a checkpoint
    gpu: bool | None = None  # for that retraining; None: use one when the machine has one


class _DeadlineReader:
    """The worker's stdout as a stream whose reads give up, and stop the worker, at a deadline."""

    def __init__(self, worker: Worker, deadline: float):
        self.worker, self.deadline = worker, deadline
        self.fd = worker.proc.stdout.fileno()

    def read(self, n: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            self.worker.kill()
            raise WorkerTimeout("the worker did not answer in time and was stopped")
        return os.read(self.fd, min(n, 1 << 20))


class WorkerError(Exception):
    """The worker could not answer: it died, hung, or broke the protocol."""


class WorkerTimeout(WorkerError):
    pass


class OutOfTurn(WorkerError):
    """The worker wrote to the channel after its reply: the request before was answered
    by a forgery, or followed by one."""


class StudentError(Exception):
    """The student's code raised (or timed out) while the worker served a request."""

    def __init__(self, info: dict):
        super().__init__(f"{info.get('type')}: {info.get('message')}")
        self.info = info


@functools.cache
def namespaces_available() -> bool:
    """Whether this machine lets an unprivileged process create the namespaces we use."""
    from .worker.__main__ import PIVOT_ROOT_SYSCALL

    if sys.platform != "linux" or shutil.which("unshare") is None or platform.machine() not in PIVOT_ROOT_SYSCALL:
        return False
    try:
        done = subprocess.run([*_UNSHARE, "--map-root-user", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def runtime_paths() -> set[Path]:
    """What a worker runs on and must never be hidden: the interpreter, its standard
    library and site-packages (which may live under the home or temp folder), and the
    grader itself."""
    paths = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path) if p}
    paths.add(Path(__file__).resolve().parent.parent)
    return paths


def hideable(path: Path) -> bool:
    """Whether covering ``path`` leaves the worker able to run."""
    path = path.resolve()
    return path.exists() and not any(r == path or path in r.parents for r in runtime_paths())


def bwrap_usable() -> bool:
    """Whether to run workers in bubblewrap: where it is installed, unless
    GRADER_SANDBOX=unshare asks for the fallback; as root, only where an unprivileged
    uid can read Python and the grader (bwrap then runs as such a uid)."""
    if os.environ.get("GRADER_SANDBOX") == "unshare" or shutil.which("bwrap") is None:
        return False
    return os.geteuid() != 0 or unreadable_by_others(worker_runtime()) is None


@functools.cache
def worker_paths() -> list[list[str]]:
    """What a worker's Python reads, as its own set-up finds it (an -I interpreter with
    the grader package alone on its path): the mount steps of runtime_paths in
    worker/__main__.py, computed once per grading process, for bubblewrap or the
    worker's own set-up to take."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    code = (
        "import json, sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from grader.worker.__main__ import runtime_paths; print(json.dumps(runtime_paths()))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, package_parent], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def worker_runtime() -> list[Path]:
    """What a worker started by this process reads: the interpreter, the standard library
    and the grader package (whose folder holds the other site-packages it imports)."""
    return [Path(sys.executable), Path(os.__file__).parent, Path(__file__).resolve().parent]


def unreadable_by_others(paths: list[Path], *, read: bool = True) -> Path | None:
    """The first of ``paths`` (resolved) that a user other than its owner cannot reach
    (and read, if ``read``), going by permission bits; None when every one is."""
    for path in paths:
        path = path.resolve()
        for folder in reversed(path.parents):
            if not os.stat(folder).st_mode & 0o001:
                return folder
        if not os.stat(path).st_mode & (0o004 if read else 0o001):
            return path
    return None


def close_to_others(paths: list[str]) -> None:
    """Take group and other permissions off each path (as root, before an unprivileged
    worker starts): without namespaces that is what keeps the answer key, the dataset
    and other submissions from it. The owner keeps every permission."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(path, follow_symlinks=False).st_mode
            if mode & 0o077:
                os.chmod(path, mode & 0o7700, follow_symlinks=False)


def scrubbed_env(threads: int, gpu: bool = False) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "CUDA_VISIBLE_DEVICES": "",
    }
    if gpu:  # only retraining a Question 7 model uses it; the grader's own choice of devices stands
        env.pop("CUDA_VISIBLE_DEVICES")
        # The driver's libraries are often found only through these (containers, clusters).
        for name in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
            if name in os.environ:
                env[name] = os.environ[name]
    return env


@functools.cache
def gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


class Worker:
    """One student worker process and the request/reply channel to it."""

    def __init__(
        self,
        *,
        hide: list[Path],
        private_root: Path,
        limits: Limits,
        isolate: bool | None = None,
        homework: str | None = None,
    ):
        """``homework``: the module of the homework's worker side that the worker imports
        (the default homework's when None)."""
        self.hide = [str(p) for p in hide]
        if homework is None:
            from .assignment import default_assignment

            homework = default_assignment().worker_module
        self.homework = homework
        self.private_root = private_root
        self.limits = limits
        self.isolated = namespaces_available() if isolate is None else isolate
        self.bwrap = self.isolated and bwrap_usable()
        self.dropped = False  # root without namespaces: the worker switches to an unprivileged uid
        self.proc: subprocess.Popen | ForkedProcess | None = None
        self.private: Path | None = None
        self.requests = 0
        self.gpu = gpu_present() if limits.gpu is None else limits.gpu
        # A sandboxed CPU worker may be forked from a fork server (see forkserver.py), set
        # here by whoever keeps one; without one, or if it fails, the worker starts on its own.
        self.forkable = self.isolated and not self.gpu
        self.forkserver: ForkServer | None = None
        self.forked = False

    def start(self, *, seed: int, files: dict[str, bytes] | None = None, timeout: float = 60.0) -> None:
        self.launch(timeout=timeout)
        self.init(seed=seed, files=files, timeout=timeout)

    def launch(self, *, timeout: float = 60.0) -> None:
        """Start the process and build its sandbox; it then imports torch and waits for
        ``init`` (a warm worker: see warm.py). Nothing of a submission is in it yet."""
        if self.forkserver is not None and self.forkable:
            try:
                self._fork(timeout=timeout)
                return
            except ForkServerError:
                self.forkserver = None  # start on its own instead
        package_parent = str(Path(__file__).resolve().parent.parent)
        # -I: ignore PYTHON* variables and the user's site-packages; the package's own
        # location is put on sys.path explicitly.
        bootstrap = (
            "import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); "
            "runpy.run_module('grader.worker', run_name='__main__', alter_sys=True)"
        )
        cmd = [sys.executable, "-I", "-c", bootstrap, package_parent]
        self.private_root.mkdir(parents=True, exist_ok=True)
        # Isolated, this empty folder becomes the worker's root; otherwise it holds its files.
        self.private = Path(tempfile.mkdtemp(prefix="worker-", dir=self.private_root))
        mapped = self.isolated and not self.bwrap and os.geteuid() == 0
        self.dropped = not self.isolated and os.geteuid() == 0
        user = None
        if self.bwrap:
            # As root, bubblewrap itself runs as a host uid of no one (so that the process
            # limit binds); the worker is WORKER_UID in its namespace either way.
            user = HOST_UID_BASE + secrets.randbelow(1 << 16) if os.geteuid() == 0 else None
            cmd = self._bwrap_command(cmd)
        elif self.isolated:
            cmd = [*_UNSHARE, *([] if mapped else ["--map-root-user"]), *cmd]
        if self.dropped:
            self._open_to_worker()
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=scrubbed_env(self.limits.threads, self.gpu),
                cwd=self.private_root,
                start_new_session=True,
                pass_fds=[self._bwrap_args] if self.bwrap else [],
                **({"user": user, "group": user, "extra_groups": []} if user is not None else {}),
            )
        finally:
            if self.bwrap:
                os.close(self._bwrap_args)
        uid = WORKER_UID if mapped else None
        if self.dropped:
            # Without namespaces nothing hides a folder but its permissions: the worker
            # becomes a uid of no one, which owns only its own folder.
            uid = HOST_UID_BASE + self.proc.pid % (1 << 16)
            close_to_others(self.hide)
            os.chown(self.private, uid, uid)
        # The set-up travels on the channel, not in argv, which every process can read
        # in /proc (the hidden paths would name what the grader keeps private).
        setup = self._setup(uid)
        try:
            if mapped:
                self._map_ids(time.monotonic() + timeout)
            self._write(wire.encode(setup), time.monotonic() + timeout)
        except (OSError, WorkerError) as exc:
            self.kill()
            raise WorkerError(f"the worker could not start: {exc}") from None

    def _fork(self, *, timeout: float) -> None:
        """Fork the worker from the fork server: the namespaces and filesystem of the
        ``unshare`` sandbox, built by the forked process itself (see worker/forkserver.py)."""
        assert self.forkserver is not None
        self.private_root.mkdir(parents=True, exist_ok=True)
        self.private = Path(tempfile.mkdtemp(prefix="worker-", dir=self.private_root))
        root = os.geteuid() == 0
        # Never bubblewrap: the forked process builds its filesystem itself.
        setup = {**self._setup(WORKER_UID if root else None), "bwrap": False, "steps": worker_paths()}
        host_uid = HOST_UID_BASE + secrets.randbelow(1 << 16) if root else None
        try:
            self.proc = self.forkserver.fork(setup=setup, host_uid=host_uid, timeout=timeout)
        except ForkServerError:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None
            raise
        self.forked, self.bwrap = True, False

    def _setup(self, uid: int | None) -> dict:
        """The set-up message, the worker's first (see run in worker/__main__.py)."""
        return {
            "isolate": self.isolated,
            "bwrap": self.bwrap,
            "hide": self.hide,
            "private": str(self.private),
            "gpu": self.gpu,
            "memory": self.limits.memory_bytes,
            "scratch": self.limits.scratch_bytes,
            "uid": uid,
            "steps": worker_paths() if self.isolated and not self.bwrap else None,
            "sites": [s[1] for s in worker_paths() if s[0] == "empty"] if self.isolated else [],
            "homework": self.homework,
        }

    def init(self, *, seed: int, files: dict[str, bytes] | None = None, timeout: float = 60.0) -> None:
        """Hand the launched worker its submission's seed and files (once: a worker
        serves one submission only)."""
        import torch

        if self.requests:
            raise WorkerError("a worker serves one submission only")
        payload = {
            k: torch.frombuffer(bytearray(v), dtype=torch.uint8) if v else torch.empty(0, dtype=torch.uint8)
            for k, v in (files or {}).items()
        }
        try:
            self.call(
                "init",
                timeout=timeout,
                seed=seed,
                threads=self.limits.threads,
                output_cap=self.limits.output_chars,
                files=payload,
                gpu=self.gpu,
            )
        except StudentError as exc:  # only the worker's own set-up can fail here
            self.kill()
            raise WorkerError(f"the worker could not start: {exc.info.get('message')}") from None

    def call(self, op: str, *, timeout: float, **args: Any) -> Any:
        """Send one request and wait for its reply.

        Raises StudentError when the student's code failed, WorkerTimeout when the worker
        overran even its grace period (it is then killed), and WorkerError when it died.
        """
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerError("the worker is not running")
        self.requests += 1
        request_id = f"{self.requests}-{secrets.token_hex(8)}"
        deadline = time.monotonic() + timeout + _GRACE_SECONDS
        # Between a reply and the next request the worker has nothing to say: bytes
        # waiting now were written out of turn (student code forging replies on the
        # channel), and a worker that did that is not trusted further.
        if select.select([self.proc.stdout.fileno()], [], [], 0)[0]:
            self.kill()
            raise OutOfTurn("the worker wrote to the channel out of turn and was stopped")
        try:
            self._write(wire.encode({"op": op, "args": args, "timeout": timeout, "id": request_id}), deadline)
            reply = self._read_reply(deadline)
        except (BrokenPipeError, EOFError, OSError) as exc:
            code = self.kill()
            raise WorkerError(f"the worker stopped (exit status {code}): {exc}") from None
        except WorkerError:
            raise
        except Exception as exc:  # anything undecodable is a broken protocol
            self.kill()
            raise WorkerError(f"the worker broke the protocol: {type(exc).__name__}: {exc}") from None
        # A reply must answer this request: a student's code writing to the channel
        # produces a reply out of turn, and the worker is not trusted after that.
        if not isinstance(reply, dict) or "ok" not in reply or reply.get("id") != request_id:
            self.kill()
            raise WorkerError("the worker sent something that is not the reply to the request")
        reply = bounded_reply(reply, max(self.limits.output_chars, MESSAGE_CHARS))
        if not reply["ok"]:
            raise StudentError(reply.get("error") or {})
        return reply.get("result")

    def sandbox(self) -> str:
        """Which sandbox this worker ran in, for the report."""
        if self.dropped:
            return (
                "no namespaces, unprivileged uid: the worker ran without Linux namespaces (as in a container "
                "that refuses them) as an unprivileged uid of its own, with no_new_privs and a process limit, "
                "in a private working folder; the answer key, the dataset and the grader's folders were closed "
                "to it by their permissions, but it shared the machine's network and could read what any "
                "user may read"
            )
        if self.bwrap:
            return (
                "bubblewrap (bwrap): its own user, mount, network, PID, IPC and UTS namespaces, no network, "
                "a read-only filesystem of its own, no capabilities, running as an unprivileged uid"
            )
        if not self.isolated:
            return (
                "none: the worker ran without Linux namespaces, with no network or file isolation beyond a "
                "scrubbed environment (--unsafe-no-sandbox, or a machine without namespaces)"
            )
        who = "an unprivileged uid" if os.geteuid() == 0 else "the grader's own unprivileged user"
        if self.forked:
            return (
                "Linux namespaces (forked from a fork server that had imported torch): its own user, mount, "
                "network, PID, IPC and UTS namespaces, no network, a read-only filesystem of its own, "
                f"no capabilities, running as {who}"
            )
        return (
            "Linux namespaces (unshare): no network, a read-only filesystem of its own, no capabilities, "
            f"running as {who}"
        )

    def _bwrap_command(self, cmd: list[str]) -> list[str]:
        """bubblewrap's command line: the filesystem the worker's own set-up builds under
        ``unshare`` (see worker/__main__.py), built by bwrap before the worker starts."""
        from .worker.__main__ import ETC_FILES, SYSTEM_DIRS

        scratch = self.limits.scratch_bytes
        args = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
        args += ["--cap-drop", "ALL", "--uid", str(WORKER_UID), "--gid", str(WORKER_UID)]
        # Scratch space first: Python or the grader may themselves live under /tmp.
        args += ["--size", str(scratch * 3 // 4), "--perms", "1777", "--tmpfs", "/tmp"]
        args += ["--dev", "/dev", "--size", str(scratch // 4), "--perms", "1777", "--tmpfs", "/dev/shm"]
        steps = worker_paths()
        expose = [s[1] for s in steps if s[0] == "bind"]
        for path in [*SYSTEM_DIRS, *ETC_FILES]:
            if not os.path.lexists(path):
                continue
            if os.path.islink(path) and not any(path == e or path.startswith(e + "/") for e in expose):
                args += ["--symlink", os.readlink(path), path]  # /bin -> usr/bin on merged-/usr systems
            else:
                args += ["--ro-bind", path, path]
        for step in steps:  # the interpreter, its libraries, the student's site-packages, the grader
            if step[0] == "link":
                args += ["--symlink", step[2], step[1]]
            elif step[0] == "empty":
                args += ["--size", str(1 << 20), "--tmpfs", step[1]]
            elif os.path.lexists(step[1]):
                args += ["--ro-bind", step[1], step[1]]
        args += [a for s in steps if s[0] == "empty" for a in ("--remount-ro", s[1])]
        if self.gpu:
            args += [
                a
                for n in sorted(os.listdir("/dev"))
                if n.startswith("nvidia")
                for a in ("--dev-bind", f"/dev/{n}", f"/dev/{n}")
            ]
            args += ["--ro-bind", "/sys", "/sys"]
            # The GPU driver's libraries, where the machine points at them (as build_root does).
            libs = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p.startswith("/")]
            args += [a for p in libs if os.path.isdir(p) for a in ("--ro-bind", p, p)]
        # Only what lies inside an exposed folder needs covering (the answer key installed in site-packages).
        inside = [p for p in self.hide if any(p == e or p.startswith(e.rstrip("/") + "/") for e in expose)]
        args += [a for p in inside if os.path.isdir(p) for a in ("--tmpfs", p)]
        args += ["--proc", "/proc", "--remount-ro", "/", "--chdir", "/tmp"]
        # Given in a pipe, not argv, which every process can read in /proc (the hidden
        # paths would name what the grader keeps private).
        read, write = os.pipe()
        os.write(write, b"".join(os.fsencode(a) + b"\0" for a in args))
        os.close(write)
        self._bwrap_args = read
        return ["bwrap", "--args", str(read), "--", *cmd]

    def _open_to_worker(self) -> None:
        """As root without namespaces: let the worker's uid reach its folder (and only
        that), and check it can read Python and the grader; say so plainly where not."""
        if unreadable_by_others([self.private_root.parent]):  # the system's temp folder is open to all
            shutil.rmtree(self.private)
            self.private = Path(tempfile.mkdtemp(prefix="worker-"))
        else:
            os.chmod(self.private_root, 0o711)  # to be crossed, not listed
        unreadable = unreadable_by_others(worker_runtime()) or unreadable_by_others([self.private.parent], read=False)
        if unreadable:
            raise WorkerError(
                f"as root without namespaces the worker runs as an unprivileged user, who cannot read {unreadable}:"
                " install Python and the grader where every user may read them (as the system's packages are)"
            )

    def _map_ids(self, deadline: float) -> None:
        """Write the worker's uid and gid maps from here (only a process outside its user
        namespace, with CAP_SETUID, may map more than one id): its root stays root, to
        build its filesystem, and WORKER_UID becomes a host uid of no one."""
        ours = os.readlink("/proc/self/ns/user")
        while os.readlink(f"/proc/{self.proc.pid}/ns/user") == ours:  # unshare has not run yet
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise WorkerError("the worker's user namespace was not created")
            time.sleep(0.005)
        host = HOST_UID_BASE + self.proc.pid % (1 << 16)
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{self.proc.pid}/{name}", "w") as f:
                f.write(f"0 0 1\n{WORKER_UID} {host} 1\n")

    def _write(self, data: bytes, deadline: float) -> None:
        """Write a request, giving up (and stopping the worker) at the deadline: a worker
        that does not read its channel (blocked writing a forged reply, say) must not
        block the grader."""
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if self.requests > 1:  # past start-up, a worker waiting for requests drains them at once
                left = min(left, _STALL_SECONDS)
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                self.kill()
                if self.requests > 1:
                    # A worker's loop reads its next request as soon as it has replied: one
                    # that does not was still busy, so the reply before was not its own.
                    raise OutOfTurn(
                        "the worker did not take the request (its previous reply was forged) and was stopped"
                    )
                raise WorkerTimeout("the worker did not take the request in time and was stopped")
            try:
                view = view[os.write(fd, view[: 1 << 20]) :]
            except BlockingIOError:
                continue

    def _read_reply(self, deadline: float) -> Any:
        return wire.read_message(_DeadlineReader(self, deadline), max_bytes=self.limits.reply_bytes)

    def kill(self) -> int | None:
        """Stop the worker and everything it started; return its exit status."""
        if self.proc is None:
            return None
        if isinstance(self.proc, ForkedProcess):
            self.proc.kill()  # through pidfds: the worker, PID 1 of its namespace, and its keeper
        elif self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        return self.proc.returncode

    def close(self) -> None:
        self.kill()
        self.proc = None
        if self.private is not None:  # the files a non-isolated worker left behind
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
