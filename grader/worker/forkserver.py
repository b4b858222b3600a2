"""The fork server: a process with torch and the worker's code already imported, which
forks each student worker instead of starting a new interpreter (importing torch costs
seconds of CPU per worker; a fork costs milliseconds).

It runs trusted code only and never holds anything of a submission: the grader sends it
a worker's set-up and the ends of that worker's channel, and it forks. Each worker then
goes into namespaces of its own, as ``unshare --user --mount --net --pid --ipc --uts
--fork`` would put it, and builds the same filesystem the ``unshare`` sandbox builds
(``build_root`` in __main__.py): a worker cannot see, signal or trace the fork server or
another worker, nor share its /tmp.

Per worker there are two processes: the *keeper* (forked from the server, outside the
worker's PID namespace) creates the namespaces and reports how the worker ended; the
*worker* (forked from the keeper) is PID 1 of its namespace, so killing it kills
everything it started. The grader gets a pidfd of each and kills through those, never by
a number that could have been reused.

Started by the grader (warm.py) as ``python -I -c <bootstrap> <package parent> <fd>``;
the fd is its control socket (a SOCK_SEQPACKET socket: one message per request).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import socket
import sys
import threading

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
PR_SET_PDEATHSIG = 1
MESSAGE_BYTES = 1 << 20
HANDSHAKE_SECONDS = 30.0  # the keeper runs trusted code only: it answers at once or is broken


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    start = json.loads(control.recv(MESSAGE_BYTES) or b"{}")
    try:
        prepare(steps=start["steps"], hide=start["hide"], homework=start["homework"])
    except Exception as exc:
        control.send(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    control.send(json.dumps({"ok": True}).encode())
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the keepers
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, 3)
        except OSError:
            return
        if not data:  # the grader closed the channel, or died: nothing more to fork
            return
        sent: list[int] = []
        reply: dict[str, object]
        try:
            if len(fds) != 3:
                raise ValueError("a fork request carries the worker's stdin, stdout and status pipe")
            pid, sent = spawn(json.loads(data), fds)
            reply = {"ok": True, "pid": pid}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        socket.send_fds(control, [json.dumps(reply).encode()], sent)
        for fd in sent:
            os.close(fd)


def prepare(*, steps: list[list[str]], hide: list[str], homework: str) -> None:
    """Import what every worker imports, then make sure forking is safe and shares nothing
    a worker could not have loaded itself: one thread only (a fork copies no other), and
    every module loaded from a path the worker's filesystem exposes and none from a hidden
    one (outside the sandbox an import could find more than inside it)."""
    # Started with -S, so that no .pth file runs (an editable install's import hook, say),
    # as none can in the worker's filesystem: the site-packages folders, those the worker's
    # filesystem empties before it binds the student's libraries there, are added here
    # (as a worker started on its own adds them, from its set-up's "sites").
    sys.path += [s[1] for s in steps if s[0] == "empty" and s[1] not in sys.path]
    import site

    site.setquit()  # and the other builtins site.py adds (exit(), help(), ...), which notebooks use
    site.setcopyright()
    site.sethelper()
    from . import serve  # noqa: F401 - torch, torch._dynamo, the probes and the runtime

    if not homework.startswith("grader.assignments."):
        raise ValueError(f"{homework} is not a homework's worker module")
    importlib.import_module(homework)
    exposed = [os.path.realpath(s[1]) for s in steps if s[0] == "bind"]
    hidden = [os.path.realpath(p) for p in hide]
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not isinstance(origin, str) or not os.path.isabs(origin):  # built in, or not from a file (torch.ops)
            continue
        path = os.path.realpath(origin)
        if not _under(path, exposed) or _under(path, hidden):
            raise ImportError(f"{name} was loaded from {path}, which a worker's filesystem does not expose")
    if threading.active_count() != 1:
        raise RuntimeError("importing the worker's code started threads: forking it would not be safe")
    _single_threaded()


def _single_threaded() -> None:
    if len(os.listdir("/proc/self/task")) != 1:
        raise RuntimeError("the fork server runs more than one thread: forking it would not be safe")


def _under(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def spawn(request: dict, fds: list[int]) -> tuple[int, list[int]]:
    """Fork one worker for ``request["setup"]`` (its set-up message) on the channel
    ``fds`` (its stdin, its stdout, and a pipe on which its keeper writes how it ended).
    As root, the worker's uid (``setup["uid"]``) is mapped to ``request["host_uid"]``, a
    host uid of no one. Returns the keeper's pid and pidfds of the keeper and the worker."""
    _single_threaded()  # a fork copies only this thread: a lock another one held stays held
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    root = os.geteuid() == 0
    keeper = os.fork()
    if keeper == 0:
        try:
            ours.close()
            _keep(request["setup"], fds, theirs, root=root)
        finally:
            os._exit(70)  # the keeper failed before its worker started
    theirs.close()
    keeper_fd = os.pidfd_open(keeper)
    try:
        ours.settimeout(HANDSHAKE_SECONDS)
        if ours.recv(16) != b"unshared":
            raise OSError("the worker's namespaces could not be created")
        if root:  # only a process outside its user namespace, with CAP_SETUID, maps two ids
            inside, host = int(request["setup"]["uid"]), int(request["host_uid"])
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{keeper}/{name}", "w") as f:
                    f.write(f"0 0 1\n{inside} {host} 1\n")
        ours.send(b"mapped")
        _, worker_fds, _, _ = socket.recv_fds(ours, 16, 1)
        if len(worker_fds) != 1:
            raise OSError("the worker did not start")
    except BaseException:
        signal.pidfd_send_signal(keeper_fd, signal.SIGKILL)
        os.close(keeper_fd)
        raise
    finally:
        ours.close()
    return keeper, [keeper_fd, worker_fds[0]]


def _keep(setup: dict, fds: list[int], sync: socket.socket, *, root: bool) -> None:
    """The keeper: new namespaces, then the worker as PID 1 of the new PID namespace;
    then wait for it and write its exit status on the status pipe."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    channel_in, channel_out, status = fds
    _close_all_but({channel_in, channel_out, status, sync.fileno()})
    uid, gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(NAMESPACES) != 0:
        raise OSError(ctypes.get_errno(), "cannot create the worker's namespaces")
    if not root:  # an ordinary user maps itself to root in the namespace, as unshare --map-root-user
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    sync.send(b"unshared")
    if sync.recv(16) != b"mapped":
        raise OSError("the fork server did not map the worker's ids")
    worker = os.fork()
    if worker == 0:
        os.close(status)
        sync.close()
        _work(setup, channel_in, channel_out)
    os.close(channel_in)
    os.close(channel_out)
    worker_fd = os.pidfd_open(worker)
    socket.send_fds(sync, [b"worker"], [worker_fd])
    sync.close()
    os.close(worker_fd)
    _, wait_status = os.waitpid(worker, 0)
    os.write(status, str(os.waitstatus_to_exitcode(wait_status)).encode())
    os._exit(0)


def _work(setup: dict, channel_in: int, channel_out: int) -> None:
    """The worker: the same set-up and request loop as a worker started on its own."""
    code = 3
    try:
        # Dies with its keeper (the grader also kills it directly, through its pidfd).
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.dup2(channel_in, 0)
        os.dup2(channel_out, 1)
        os.close(channel_in)
        os.close(channel_out)
        from .__main__ import run, take_channel

        run(setup, *take_channel())
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os._exit(code)


def _close_all_but(keep: set[int]) -> None:
    """Close every file descriptor above stderr but ``keep`` (a fork inherits them all)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = limit if 0 < limit < 1 << 20 else 1 << 16
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, limit)


if __name__ == "__main__":
    main()
