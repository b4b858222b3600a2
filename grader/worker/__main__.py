"""Entry point of the student worker: ``python -I -m grader.worker``, set up by the first
message on its stdin (never by arguments, which any process can read in /proc).

The grader starts this process (inside fresh Linux namespaces where the OS allows it),
then talks to it over stdin/stdout in the wire format. Before any student code runs it
hides the grader's private paths, drops its privileges and sets resource limits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import resource
import sys
import tempfile


def _libc():
    return ctypes.CDLL(None, use_errno=True)


# What a worker's filesystem holds besides Python and the grader: the system's programs
# and libraries, a few files from /etc and device nodes; /sys only where a GPU is used
# (CUDA discovers devices there), since it describes the whole host.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 1 << 14, 1 << 18
# pivot_root(2) has no libc wrapper; its number differs between architectures.
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41}


def _mount(libc, source, target: str, fstype, flags: int, data=None) -> None:
    if libc.mount(source, os.fsencode(target), fstype, flags, data) != 0:
        raise OSError(ctypes.get_errno(), f"cannot mount {target}")


def build_root(root: str, *, steps: list[list[str]], hide: list[str], gpu: bool, scratch: int) -> None:
    """Make ``root`` (a fresh tmpfs) the worker's whole filesystem and switch to it.

    It holds, read-only and at their usual paths, only what running Python and the grader
    needs (``steps``, from runtime_paths: the interpreter, its libraries, the student's
    libraries, the grader package) and the system's libraries; plus a private writable
    /tmp and /dev/shm. The answer key, other submissions, reports, the dataset, the home
    folder, the other site-packages and every socket are simply not there. ``hide``
    covers anything private that lies inside an exposed folder (the answer key installed
    in /usr, say). Only possible as root of a private mount namespace (``unshare --user
    --mount``); the old root is detached afterwards.
    """
    expose = [s[1] for s in steps if s[0] == "bind"]
    libc = _libc()
    # Mounts made here must not propagate back to the parent namespace.
    _mount(libc, b"none", "/", None, MS_REC | MS_PRIVATE)
    _mount(libc, b"tmpfs", root, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=16m,mode=755")
    # Scratch space first: Python or the grader may themselves live under /tmp, and are
    # then mounted on top of it. Both are RAM: their sizes come out of the memory limit.
    for path, size in (("/tmp", scratch * 3 // 4), ("/dev/shm", scratch // 4)):
        os.makedirs(root + path, exist_ok=True)
        _mount(libc, b"tmpfs", root + path, b"tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777".encode())
    devices = list(DEVICES)
    if gpu:
        devices += [os.path.join("/dev", n) for n in os.listdir("/dev") if n.startswith("nvidia")]
        devices.append("/sys")
        # The GPU driver's libraries, where the machine points at them (read-only like the rest).
        devices += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p.startswith("/")]
    emptied = []
    for step in [*(["bind", p] for p in [*SYSTEM_DIRS, *ETC_FILES, *devices]), *steps]:
        path, target = step[1], root + step[1]
        if step[0] == "link":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(step[2], target)
            continue
        if step[0] == "empty":  # writable until what belongs in it is bound there
            os.makedirs(target, exist_ok=True)
            _mount(libc, b"tmpfs", target, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=755")
            emptied.append(target)
            continue
        if not os.path.lexists(path):
            continue
        if os.path.islink(path) and not any(path == e or path.startswith(e + "/") for e in expose):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(os.readlink(path), target)  # /bin -> usr/bin on merged-/usr systems
            continue
        # A mount point is made only where none exists: a system Python (/usr/bin/python3.11)
        # lies inside /usr, already bound read-only, where nothing can be created.
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        elif not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        _mount(libc, os.fsencode(path), target, None, MS_BIND | MS_REC)
        read_only(libc, target)
    for target in emptied:
        read_only(libc, target, recursive=False)
    for path in hide:
        if os.path.isdir(root + path):
            _mount(libc, b"tmpfs", root + path, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, b"size=4k")
    os.makedirs(root + "/proc", exist_ok=True)
    _mount(libc, b"proc", root + "/proc", b"proc", MS_NOSUID | MS_NODEV)
    # Switch to the new root and let go of the old one entirely.
    old = root + "/.old-root"
    os.makedirs(old)
    MNT_DETACH = 2
    if libc.syscall(PIVOT_ROOT_SYSCALL[platform.machine()], os.fsencode(root), os.fsencode(old)) != 0:
        raise OSError(ctypes.get_errno(), "cannot switch to the private root")
    os.chdir("/")
    if libc.umount2(b"/.old-root", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), "cannot detach the old root")
    os.rmdir("/.old-root")
    read_only(libc, "/", recursive=False)


def read_only(libc, path: str, *, recursive: bool = True) -> None:
    """Make a mount (and those below it) read-only with mount_setattr (Linux 5.12+)."""

    class MountAttr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")]

    SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    if (
        libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(path), flags, ctypes.byref(attr), ctypes.sizeof(attr))
        != 0
    ):
        raise OSError(ctypes.get_errno(), f"cannot make {path} read-only")


# The installed distributions a student's code may import (the notebook's libraries),
# exposed with everything they require by their metadata. The rest of site-packages
# (the grader's own dependencies, the instructor's tools) is not in the worker's filesystem.
STUDENT_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pillow")


def runtime_paths() -> list[list[str]]:
    """What this worker runs on, as mount steps to take in order: ``["bind", path]``
    exposes a path read-only, ``["empty", folder]`` covers a folder with an empty one
    (each site-packages folder, into which only what is needed is bound again), and
    ``["link", path, target]`` places a symbolic link (a venv's python and the links to
    the interpreter). Exposed: the interpreter, its shared library and standard library;
    of site-packages, STUDENT_DISTRIBUTIONS and what they require; the grader package
    alone (not the project folder around it, which holds the answer key)."""
    import site
    import sysconfig

    steps: list[list[str]] = []
    path = os.path.abspath(sys.executable)
    while os.path.islink(path):
        target = os.readlink(path)
        steps.append(["link", path, target])
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    steps.append(["bind", path])
    if sys.prefix != sys.base_prefix:  # a venv: Python finds its base installation in pyvenv.cfg
        steps.append(["bind", os.path.join(sys.prefix, "pyvenv.cfg")])
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):  # the interpreter's own shared library
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        names = (sysconfig.get_config_var("LDLIBRARY"), sysconfig.get_config_var("INSTSONAME"))
        libs = {os.path.realpath(os.path.join(libdir, n)) for n in names if n}
        steps += [["bind", lib] for lib in sorted(libs) if os.path.exists(lib)]
    sites = {os.path.abspath(p) for p in [*site.getsitepackages(), *site.getsitepackages([sys.base_prefix])]}
    sites.update(os.path.abspath(p) for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    # The standard library and its extension modules (not the project folder the grader
    # package was found in); the site-packages folders come next, emptied.
    stdlib = [
        os.path.abspath(p)
        for p in sys.path
        if os.path.isdir(p) and os.path.abspath(p) not in sites and not os.path.isdir(os.path.join(p, "grader"))
    ]
    steps += [["bind", p] for p in stdlib if not any(p.startswith(q + "/") for q in stdlib)]
    steps += [["empty", p] for p in sorted(sites) if os.path.isdir(p)]
    steps += [["bind", p] for p in sorted(_distribution_paths(STUDENT_DISTRIBUTIONS))]
    steps.append(["bind", os.path.dirname(os.path.dirname(os.path.abspath(__file__)))])  # grader/
    return steps


def _distribution_paths(roots: tuple[str, ...]) -> set[str]:
    """The top-level entries in site-packages (packages, modules, their .libs and
    .dist-info folders) of the distributions ``roots`` and of all they require, found
    from the installed distributions' metadata; optional extras are left out."""
    import re
    from importlib import metadata

    wanted, seen, paths = list(roots), set[str](), set[str]()
    while wanted:
        name = re.sub(r"[-_.]+", "-", wanted.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement of another platform, say
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
            if found and "extra" not in marker:
                wanted.append(found.group(1))
        base = str(dist.locate_file(""))
        tops = {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}
        if not dist.files:  # no RECORD: the names it declares, and its metadata folder
            tops = set((dist.read_text("top_level.txt") or "").split())
            tops = {e for e in os.listdir(base) if e.split(".")[0] in tops}
            if getattr(dist, "_path", None):
                tops.add(os.path.basename(str(dist._path)))
        paths.update(os.path.join(base, t) for t in tops if os.path.lexists(os.path.join(base, t)))
    return paths


def drop_privileges(uid: int | None = None) -> None:
    """Give up every capability, so student code cannot undo the mounts, and become
    ``uid`` (mapped by the grader to an unprivileged host uid) where one is given."""
    libc = _libc()
    PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop capabilities")


def refuse_readable(hide: list[str]) -> None:
    """Without namespaces only permissions hide the grader's folders: stop before any
    student code runs if this (unprivileged) process can still read one of them."""
    for path in hide:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                open(path, "rb").close()
        except FileNotFoundError:
            continue
        except PermissionError:
            continue
        raise PermissionError("a folder the worker must not read is readable by its unprivileged user")


def limit_resources(memory_bytes: int, *, gpu: bool = False) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Output written to files is capped; a write beyond it fails instead of filling RAM.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    # Counted per user, and never enforced on root: as root, the grader maps the worker
    # to an unprivileged uid (see sandbox.WORKER_UID), so a fork bomb stops here.
    resource.setrlimit(resource.RLIMIT_NPROC, (1024, 1024))
    if memory_bytes:
        # CUDA reserves far more address space than it uses (cudaGetDeviceCount fails
        # "out of memory" under a 16 GiB RLIMIT_AS): a GPU worker's limit counts the
        # memory it writes to (RLIMIT_DATA) instead of its address space.
        limit = resource.RLIMIT_DATA if gpu else resource.RLIMIT_AS
        resource.setrlimit(limit, (memory_bytes, memory_bytes))


def _setup() -> dict:
    """The grader's first message on stdin, or what a first run of this process passed on.

    As root, the grader writes this worker's uid map only after ``unshare`` has exec'd
    it, and a process whose uid was unmapped when it exec'd holds no capabilities in its
    namespace, unless the map came first: a race. So it always runs itself again, now
    mapped, handing the set-up over in a pipe (its number is all that appears in argv)."""
    import json

    if "--setup-fd" in sys.argv:
        fd = int(sys.argv[sys.argv.index("--setup-fd") + 1])
        with os.fdopen(fd, "rb") as f:
            return json.loads(f.read())
    setup = read_setup(os.fdopen(os.dup(0), "rb", buffering=0))
    if setup.get("isolate") and setup.get("uid") is not None:
        r, w = os.pipe()
        os.write(w, json.dumps(setup).encode())
        os.close(w)
        os.set_inheritable(r, True)
        os.execv(sys.executable, [*sys.orig_argv, "--setup-fd", str(r)])
    return setup


def main() -> None:
    try:
        setup = _setup()
    except Exception:
        setup = None
    run(setup, *take_channel())


def take_channel():
    """The protocol's ends (stdin and stdout), taken out of reach of print: student prints
    go to capture buffers, and anything written straight to file descriptors 1 and 2 goes
    nowhere."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return channel_in, channel_out


def run(setup: dict | None, channel_in, channel_out) -> None:
    """Enter the sandbox the set-up describes, then serve requests until the channel closes
    (a worker started on its own, or one forked by forkserver.py)."""
    try:
        # The grader's first message: isolate (hide paths and drop privileges), hide (paths
        # to cover), private (an empty folder: the new root when isolated, else the working
        # folder's parent), gpu (expose the GPU devices), memory (address-space limit),
        # homework (the module of the homework's worker side: capture rules and probes).
        if setup is None:
            raise ValueError("the set-up message could not be read")
        args = argparse.Namespace(**setup)
        if args.isolate and not args.bwrap:  # under bubblewrap, bwrap built it and dropped them
            steps = getattr(args, "steps", None) or runtime_paths()  # the grader computes them once
            build_root(args.private, steps=steps, hide=args.hide, gpu=args.gpu, scratch=args.scratch)
            drop_privileges(args.uid)
        elif args.uid is not None:  # root without namespaces: become a uid of no one
            from . import wire  # noqa: F401 - read as root, so that a failure below can still be reported

            drop_privileges(args.uid)
            refuse_readable(args.hide)
        limit_resources(args.memory - (args.scratch if args.isolate else 0), gpu=args.gpu)
        # Every site-packages folder the grader's Python uses, one a .pth file added included:
        # in the worker's filesystem no .pth file is left to add it.
        sys.path += [p for p in getattr(args, "sites", None) or [] if p not in sys.path]
        workdir = tempfile.mkdtemp(prefix="submission-", dir="/tmp" if args.isolate else args.private)
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir
        tempfile.tempdir = workdir  # a fork server cached its own when it imported torch
        # Imported only now, after the private paths are hidden (a forked worker has them
        # already: its fork server loaded them from exposed paths only).
        from .serve import serve
    except BaseException as exc:
        report_setup_failure(channel_in, channel_out, exc)
        raise SystemExit(3) from None
    serve(channel_in, channel_out, workdir, homework=getattr(args, "homework", None))


def read_setup(channel_in) -> dict:
    """The set-up message (plain JSON in the wire format's frame), read without importing
    torch: nothing is imported before the private paths are hidden."""
    import json
    import struct

    head = channel_in.read(20)
    magic, total, header_len = struct.unpack(">4sQQ", head)
    if magic != b"GRD1" or total > 1 << 20:
        raise ValueError("the first message is not the set-up")
    payload = b""
    while len(payload) < total:
        chunk = channel_in.read(total - len(payload))
        if not chunk:
            raise EOFError("the grader closed the channel")
        payload += chunk
    return json.loads(payload[:header_len])["body"]


def report_setup_failure(channel_in, channel_out, exc: BaseException) -> None:
    """Tell the grader why the worker could not start (its stderr goes nowhere), as the
    reply to its first request, the ``init`` the grader sends right after starting it."""
    from . import wire

    error = {"type": "WorkerSetupError", "message": f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(Exception):
        request = wire.read_message(channel_in)
        wire.write_message(channel_out, {"ok": False, "error": error, "id": request.get("id")})


if __name__ == "__main__":
    main()
