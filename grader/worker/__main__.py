"""Entry point of the student worker: ``python -I -m grader.worker [--hide PATH ...]``.

The grader starts this process (inside fresh Linux namespaces where the OS allows it),
then talks to it over stdin/stdout in the wire format. Before any student code runs it
hides the grader's private paths, drops its privileges and sets resource limits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import sys
import tempfile


def _libc():
    return ctypes.CDLL(None, use_errno=True)


# Writable scratch space the worker needs besides its working folder.
SCRATCH = ("/dev/shm",)
# Unix sockets live here (a Docker or D-Bus socket, say); the network namespace does not
# cover sockets bound to a path, so these folders are hidden.
SOCKET_DIRS = ("/run", "/var/run")


def isolate_filesystem(paths: list[str], private: str | None, scratch: str | None) -> None:
    """Make the whole filesystem read-only, cover each private path with an empty
    read-only tmpfs, and give the worker writable space of its own: a fresh tmpfs on
    ``scratch`` (the system temp folder) in which ``private`` (the folder that holds
    the working folder) is created, or on ``private`` itself.

    Only possible as root of a private mount namespace (``unshare --user --mount``).
    """
    libc = _libc()
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_PRIVATE, MS_REC = 1, 2, 4, 1 << 18, 1 << 14
    # Mounts made here must not propagate back to the parent namespace.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "cannot make mounts private")
    make_read_only(libc)

    def tmpfs(path: str, *, writable: bool) -> None:
        if not path or not os.path.isdir(path) or os.path.islink(path):
            return
        flags = MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY)
        if libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, b"size=4g,mode=1777") != 0:
            raise OSError(ctypes.get_errno(), f"cannot mount a private tmpfs on {path}")

    for path in (*SOCKET_DIRS, *paths):
        tmpfs(path, writable=False)
    for path in SCRATCH:
        tmpfs(path, writable=True)
    if scratch:
        tmpfs(scratch, writable=True)
        os.makedirs(private, exist_ok=True)
    else:
        tmpfs(private, writable=True)


def make_read_only(libc) -> None:
    """Every mount read-only (mount_setattr, Linux 5.12+), so student code cannot change
    the grader, its rubric or anything else on the host."""

    class MountAttr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")]

    SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        raise OSError(ctypes.get_errno(), "cannot make the filesystem read-only")


def drop_privileges() -> None:
    """Give up every capability, so student code cannot undo the mounts."""
    libc = _libc()
    PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop capabilities")


def limit_resources(memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Output written to files is capped; a write beyond it fails instead of filling RAM.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    # Counted per user: enforced when the grader runs as an ordinary user, not as root.
    resource.setrlimit(resource.RLIMIT_NPROC, (4096, 4096))
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m grader.worker")
    parser.add_argument("--isolate", action="store_true", help="hide paths and drop privileges")
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--private", help="folder for the working folder, private to this worker")
    parser.add_argument("--scratch", help="a folder to replace with a fresh tmpfs (the system temp folder)")
    parser.add_argument("--memory", type=int, default=0, help="address-space limit in bytes")
    args = parser.parse_args()

    # The protocol keeps stdin/stdout; student prints go to capture buffers, and anything
    # written straight to file descriptors 1 and 2 goes nowhere.
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process

    try:
        if args.isolate:
            isolate_filesystem(args.hide, args.private, args.scratch)
            drop_privileges()
        limit_resources(args.memory)
        workdir = tempfile.mkdtemp(prefix="submission-", dir=args.private)
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir
        # Imported only now, after the private paths are hidden.
        from .serve import serve
    except BaseException as exc:
        report_setup_failure(channel_out, exc)
        raise SystemExit(3) from None
    serve(channel_in, channel_out, workdir)


def report_setup_failure(channel, exc: BaseException) -> None:
    """Tell the grader why the worker could not start (its stderr goes nowhere)."""
    from . import wire

    message = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        wire.write_message(channel, {"ok": False, "error": {"type": "WorkerSetupError", "message": message}})


if __name__ == "__main__":
    main()
