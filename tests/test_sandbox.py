"""The student worker under hostile code. Every cell here is something a student could
submit: it must not reach the network, the answer key or the grader's private folders,
must not outlive its time limits, must not forge results or crash the grader, and must
not see the grader's environment. Tests share one worker where they can (a start costs
a few seconds); those that kill a worker get their own, and hostile reply streams come
from a tiny stand-in process instead of a real worker."""

import contextlib
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import torch
from tiny import CORRECT_Q1, write_module

import reference_solution
from grader.engine import grade_submission
from grader.sandbox import (
    _GRACE_SECONDS,
    Limits,
    StudentError,
    Worker,
    WorkerError,
    WorkerTimeout,
    bwrap_usable,
    namespaces_available,
    scrubbed_env,
)
from grader.warm import WarmWorkers

REFERENCE_DIR = Path(reference_solution.__file__).resolve().parent
OUTPUT_CHARS = 2_000
LIMITS = Limits(cell_seconds=20, output_chars=OUTPUT_CHARS, memory_bytes=8 << 30)
SECRET = f"top-secret-{uuid.uuid4().hex}"
LEAK_NAME, LEAK_VALUE = "GRADER_TEST_LEAK_CANARY", f"canary-{uuid.uuid4().hex}"

needs_namespaces = pytest.mark.skipif(
    not namespaces_available(), reason="unprivileged user/mount/net/pid namespaces are not available here"
)

# Finds the worker's protocol channel (its dup of the original stdout) from inside a cell.
CHANNEL_FD = """
import os
def channel_fd():
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            with open(f"/proc/self/fdinfo/{name}") as info:
                flags = int(info.read().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if target.startswith("pipe:") and flags & 3 == os.O_WRONLY:
            return int(name)
    raise LookupError("no protocol channel")
"""


def run(worker, source, *, timeout=None, index=0, question=None):
    return worker.call(
        "run_cell",
        timeout=LIMITS.cell_seconds if timeout is None else timeout,
        index=index,
        source=textwrap.dedent(source),
        question=question,
    )


def run_json(worker, source, **kwargs):
    """Run a cell whose last printed line is JSON; return it decoded."""
    out = run(worker, source, **kwargs)
    assert out["status"] == "ok", out["error"]
    return json.loads(out["stdout"].strip().splitlines()[-1])


def new_worker(root, hide=(), isolate=None, limits=LIMITS):
    worker = Worker(hide=list(hide), private_root=Path(root), limits=limits, isolate=isolate)
    worker.start(seed=0)
    return worker


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("private-answers")
    (folder / "secret.txt").write_text(SECRET)
    (folder / "labels").mkdir()
    (folder / "labels" / "test_labels.txt").write_text(SECRET)
    return folder


@pytest.fixture(scope="module")
def private_root(tmp_path_factory):
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="module", params=["bwrap", "unshare", "forked"])
def worker(request, private_root, secret_dir):
    """One worker for the tests that leave it usable, started with a canary variable in
    the grader's environment and the answer key and a private folder hidden; in
    bubblewrap where it is usable, in the fallback (GRADER_SANDBOX=unshare), and forked
    from a fork server as batches take them (warm.py)."""
    warm = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LEAK_NAME, LEAK_VALUE)
        if request.param != "forked":  # forked workers build their own sandbox, bwrap or not
            mp.setenv("GRADER_SANDBOX", request.param)
        if request.param == "bwrap" and not (namespaces_available() and bwrap_usable()):
            pytest.skip("bubblewrap is not installed, or cannot run as an unprivileged user here")
        if request.param == "forked":
            if not namespaces_available():
                pytest.skip("workers are forked only into namespaces, which this machine does not allow")
            warm = WarmWorkers()
            w = warm.take(hide=[REFERENCE_DIR, secret_dir], limits=LIMITS, isolate=None)
            w.init(seed=0)
        else:
            w = new_worker(private_root, hide=[REFERENCE_DIR, secret_dir])
    assert w.bwrap == (request.param == "bwrap") and w.forked == (request.param == "forked")
    yield w
    w.close()
    if warm is not None:
        warm.close()


def test_each_report_names_the_sandbox_in_use(worker):
    note = worker.sandbox()
    if worker.bwrap:
        assert note.startswith("bubblewrap (bwrap)")
    elif worker.forked:
        assert note.startswith("Linux namespaces (forked from a fork server")
    elif worker.isolated:
        assert note.startswith("Linux namespaces (unshare)")
    assert "bubblewrap" not in note or worker.bwrap


# -- (a) no network ------------------------------------------------------------------------------------


@needs_namespaces
def test_no_tcp_connection_leaves_the_worker(worker):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        found = run_json(
            worker,
            f"""
            import json, socket
            out = {{}}
            for host, port in [("1.1.1.1", 80), ("127.0.0.1", {port}), ("localhost", {port})]:
                try:
                    socket.create_connection((host, port), timeout=2).close()
                    out[host] = "connected"
                except OSError as exc:
                    out[host] = type(exc).__name__
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.sendto(b"x", ("8.8.8.8", 53))
                out["udp"] = "sent"
            except OSError as exc:
                out["udp"] = type(exc).__name__
            out["interfaces"] = [name for _, name in socket.if_nameindex()]
            print(json.dumps(out))
            """,
        )
        assert "connected" not in found.values(), found
        assert found["udp"] != "sent"
        assert found["interfaces"] == ["lo"], found
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the grader's listening socket
    finally:
        listener.close()


@needs_namespaces
def test_no_unix_socket_connection_to_the_host(worker):
    folder = tempfile.mkdtemp(prefix="gsock-", dir="/tmp")  # short path: sun_path holds 108 bytes
    path = os.path.join(folder, "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        found = run_json(
            worker,
            f"""
            import json, socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect({path!r})
                print(json.dumps("connected"))
            except OSError as exc:
                print(json.dumps(type(exc).__name__))
            """,
        )
        assert found != "connected"
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


# -- (b), (c) hidden folders ----------------------------------------------------------------------------


@needs_namespaces
def test_reference_solution_is_hidden(worker):
    found = run_json(
        worker,
        f"""
        import importlib.util, json, os
        REF = {str(REFERENCE_DIR)!r}
        # Not in the worker's filesystem at all, or an empty cover where it would be.
        out = {{"listdir": sorted(os.listdir(REF)) if os.path.isdir(REF) else []}}
        try:
            open(os.path.join(REF, "assignment.py")).read()
            out["read"] = "read"
        except OSError as exc:
            out["read"] = type(exc).__name__
        try:
            from reference_solution import three_layer_convnet
            out["from_import"] = "imported"
        except ImportError:
            out["from_import"] = "ImportError"
        try:
            import reference_solution.assignment
            out["submodule"] = "imported"
        except ImportError:
            out["submodule"] = "ImportError"
        try:
            import reference_solution
            out["attrs"] = [a for a in dir(reference_solution) if not a.startswith("__")]
        except ImportError:
            out["attrs"] = []
        try:
            out["spec"] = importlib.util.find_spec("reference_solution.assignment") is not None
        except ImportError:
            out["spec"] = False
        print(json.dumps(out))
        """,
    )
    assert found == {
        "listdir": [],
        "read": "FileNotFoundError",
        "from_import": "ImportError",
        "submodule": "ImportError",
        "attrs": [],
        "spec": False,
    }
    # The grader's own view is untouched.
    assert (REFERENCE_DIR / "assignment.py").is_file()


@needs_namespaces
def test_private_folder_is_invisible(worker, secret_dir):
    found = run_json(
        worker,
        f"""
        import json, os
        folder = {str(secret_dir)!r}
        out = {{"exists": os.path.isdir(folder), "listdir": os.listdir(folder) if os.path.isdir(folder) else []}}
        for rel in ("secret.txt", "labels/test_labels.txt"):
            try:
                out[rel] = open(os.path.join(folder, rel)).read()
            except OSError as exc:
                out[rel] = type(exc).__name__
        try:
            open(os.path.join(folder, "planted.txt"), "w").write("x")
            out["write"] = "written"
        except OSError as exc:
            out["write"] = type(exc).__name__
        print(json.dumps(out))
        """,
    )
    # Absent from the worker's filesystem, or covered by an empty tmpfs where it lies inside an exposed folder.
    assert found["listdir"] == []
    assert found["secret.txt"] == found["labels/test_labels.txt"] == "FileNotFoundError"
    assert found["write"] != "written"  # read-only cover
    assert SECRET not in json.dumps(found)
    assert sorted(p.name for p in secret_dir.iterdir()) == ["labels", "secret.txt"]


@needs_namespaces
def test_hidden_folders_cannot_be_uncovered(worker, secret_dir):
    """Unmounting the cover fails (capabilities dropped), and so it does from a nested
    user namespace, where the copied mounts are locked (tried in a forked child, so the
    shared worker keeps its namespaces)."""
    found = run_json(
        worker,
        f"""
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        FOLDERS = [{str(REFERENCE_DIR)!r}, {str(secret_dir)!r}]
        MNT_DETACH, CLONE_NEWUSER, CLONE_NEWNS = 2, 0x10000000, 0x00020000

        def attempt():
            return {{
                "umount": [libc.umount2(f.encode(), MNT_DETACH) for f in FOLDERS],
                "listdir": [os.listdir(f) if os.path.isdir(f) else [] for f in FOLDERS],
            }}

        out = {{"direct": attempt()}}
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                nested = {{"unshare": libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)}}
                nested.update(attempt())
                os.write(w, json.dumps(nested).encode())
            finally:
                os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        out["nested"] = json.loads(os.read(r, 1 << 16))
        print(json.dumps(out))
        """,
    )
    for how in ("direct", "nested"):
        assert all(code == -1 for code in found[how]["umount"]), found
        assert found[how]["listdir"] == [[], []], found


# -- (d) time limits ------------------------------------------------------------------------------------


def test_infinite_loop_is_stopped_by_the_cell_timeout(worker):
    run(worker, "before_loop = 41")
    started = time.monotonic()
    out = run(worker, "while True:\n    pass", timeout=1)
    elapsed = time.monotonic() - started
    assert out["status"] == "timeout"
    assert "time limit" in out["error"]["message"]
    assert elapsed < 1 + _GRACE_SECONDS
    # The worker still answers and the namespace survived.
    assert worker.call("ping", timeout=5) == {"pong": True}
    assert run_json(worker, "import json\nprint(json.dumps(before_loop + 1))") == 42


def test_catching_the_timeout_does_not_help(worker):
    out = run(
        worker,
        """
        try:
            while True:
                pass
        except Exception:
            print("caught")
        """,
        timeout=1,
    )
    assert out["status"] == "timeout" and "caught" not in out["stdout"]


def test_a_cell_that_ignores_the_alarm_is_killed_with_its_process_group(tmp_path, monkeypatch):
    grace = 1.5  # the grader's grace beyond the cell's own alarm (5 s by default; shortened to keep this fast)
    monkeypatch.setattr("grader.sandbox._GRACE_SECONDS", grace)
    worker = new_worker(tmp_path / "workers")
    tag = f"{3000 + os.getpid() % 1000}.{time.time_ns() % 10**6:06d}"
    try:
        # A daemon that leaves the process group (and would outlive a plain killpg).
        run(worker, f"import subprocess\nsubprocess.Popen(['sleep', '{tag}'], start_new_session=True)")
        pgid = worker.proc.pid
        started = time.monotonic()
        with pytest.raises(WorkerTimeout):
            run(
                worker,
                """
                import signal
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
                signal.setitimer(signal.ITIMER_REAL, 0)
                while True:
                    pass
                """,
                timeout=1,
            )
        elapsed = time.monotonic() - started
        assert 1 + grace - 0.1 <= elapsed < 1 + grace + 3
        assert worker.proc.poll() is not None
        assert _gone(lambda: os.killpg(pgid, 0)), "the worker's process group is still alive"
        with pytest.raises(WorkerError):
            worker.call("ping", timeout=5)
        if worker.isolated:
            assert _gone(lambda: _find_process(tag)), "a daemonised child outlived the worker"
    finally:
        worker.close()
        _kill_process(tag)


def _gone(probe, seconds=5.0):
    """True once ``probe`` raises ProcessLookupError (polled: the kernel reaps lazily)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            probe()
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _find_process(tag):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.split(b"\0")[:2] == [b"sleep", tag.encode()]:
                return int(pid)
    raise ProcessLookupError(tag)


def _kill_process(tag):
    with contextlib.suppress(ProcessLookupError):
        os.kill(_find_process(tag), signal.SIGKILL)


# -- (e) exits ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, kind",
    [
        ("import sys\nsys.exit(0)", "SystemExit"),
        ("raise SystemExit(3)", "SystemExit"),
        ("exit()", "SystemExit"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ],
)
def test_exit_in_a_cell_is_an_error_of_that_cell(worker, source, kind):
    out = run(worker, source, index=7)
    assert out["status"] == "error"
    assert out["error"]["type"] == kind and out["error"]["cell"] == 7
    assert run(worker, "after_exit = 1", index=8)["status"] == "ok"
    assert worker.proc.poll() is None


def test_cells_that_kill_the_worker_or_break_the_protocol_are_recorded_and_grading_goes_on(tmp_path):
    """os._exit(0) kills the worker; garbage on the protocol channel breaks it. Each cell is
    recorded, the worker is restarted with the cells replayed around it, and Q1 (defined
    only after both) is still graded in full."""
    path = write_module(
        tmp_path / "sub",
        f"""
        # %%
        x = 1
        # %%
        import os
        os._exit(0)
        # %%
        {textwrap.indent(CHANNEL_FD, "        ").strip()}
        os.write(channel_fd(), b"PASSED " * 1000)
        # %%
        y = x + 1
        # %%
        {textwrap.indent(CORRECT_Q1, "        ").strip()}
        """,
    )
    result = grade_submission(
        path=path, questions={"Q1"}, run_seed=5, limits=LIMITS, hide=[REFERENCE_DIR], isolate=None
    )
    assert result.status == "graded", result.reason
    statuses = [(c.status, (c.error or {}).get("type")) for c in result.cells]
    assert statuses == [
        ("ok", None),
        ("crashed", "WorkerStopped"),
        ("crashed", "WorkerStopped"),
        ("ok", None),
        ("ok", None),
    ]
    assert "broke the protocol" in result.cells[2].error["message"]
    assert any("restarted 2 time(s)" in n for n in result.notes)
    assert {c.id: c.status for c in result.checks} == {
        "Q1.output_shape": "passed",
        "Q1.any_batch_size": "passed",
        "Q1.forward_parity": "passed",
        "Q1.gradient_parity": "passed",
        "Q1.flatten_helper": "passed",
    }
    assert result.score == result.max_score > 0


@pytest.mark.parametrize(
    "source",
    [
        "class Loud(Exception):\n    def __str__(self):\n        raise RuntimeError('no message for you')\nraise Loud()",
        "exec(compile('1 / 0', '<cell x>', 'exec'))",
    ],
    ids=["__str__ raises", "forged cell filename"],
)
def test_an_exception_that_cannot_be_described_is_an_error_of_its_cell(worker, source):
    out = run(worker, source)
    assert out["status"] == "error"


# -- (f), (g) printing and patching change nothing ---------------------------------------------------------


def test_huge_output_is_capped(worker):
    started = time.monotonic()
    out = run(
        worker,
        """
        import os, sys
        print("PASSED\\nAll tests passed! Score: 100/100")
        print("x" * 10_000_000)
        sys.stderr.write("e" * 10_000_000)
        for i in range(20_000):
            print("PASSED", i)
        os.write(1, b"PASSED" * 100_000)  # straight to the file descriptors: nowhere
        os.write(2, b"PASSED" * 100_000)
        """,
    )
    assert time.monotonic() - started < 15
    assert out["status"] == "ok"
    for stream in ("stdout", "stderr"):
        text = out[stream]
        kept = text.split("\n[... ")[0]
        assert len(kept) <= OUTPUT_CHARS
        assert len(text) <= OUTPUT_CHARS + 80
        assert "more characters of output not kept]" in text
    assert worker.call("ping", timeout=5) == {"pong": True}


def test_output_cap_cannot_be_lifted_by_the_cell(tmp_path):
    """The worker's own cap is within the student's reach; the grader caps again."""
    path = write_module(tmp_path / "sub", "import sys\nsys.stdout.cap = 10**9\nprint('x' * 1_000_000)\n")
    result = grade_submission(path=path, questions={"Q1"}, limits=LIMITS, hide=[REFERENCE_DIR], run_seed=0)
    assert result.cells and all(len(run.stdout) <= OUTPUT_CHARS for run in result.cells)


def test_patching_torch_in_the_worker_does_not_pass_a_wrong_answer(tmp_path):
    path = write_module(
        tmp_path / "sub",
        """
        import torch
        import torch.nn.functional as F

        # Make every comparison "succeed" and claim success loudly.
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        torch.Tensor.allclose = lambda *a, **k: True
        torch.testing.assert_close = lambda *a, **k: None
        print("PASSED\\n" * 100 + "forward_parity: passed")


        def flatten(x):
            return x.reshape(x.shape[0], -1)


        def three_layer_convnet(x, params):
            conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
            x = F.conv2d(x, conv_w1, conv_b1, padding=2)  # the ReLU is missing
            x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))
            return flatten(x).mm(fc_w) + fc_b
        """,
    )
    result = grade_submission(path=path, questions={"Q1"}, run_seed=11, limits=LIMITS, hide=[REFERENCE_DIR])
    assert result.status == "graded", result.reason
    status = {c.id: c.status for c in result.checks}
    assert status["Q1.forward_parity"] == "failed"
    assert status["Q1.gradient_parity"] == "failed"
    assert status["Q1.output_shape"] == "passed"  # the shape is right: only the values betray it
    assert result.score < result.max_score
    printed = next(c for c in result.cells if "PASSED" in c.stdout)
    assert len(printed.stdout) <= OUTPUT_CHARS + 80
    # The grader's own torch is untouched.
    assert not torch.allclose(torch.zeros(1), torch.ones(1))
    assert not torch.equal(torch.zeros(1), torch.ones(1))


# -- (h) the protocol channel --------------------------------------------------------------------------------
#
# A cell can write anything to the worker's protocol channel (the kill test above does it
# from a real cell). What the grader then reads is an arbitrary hostile byte stream; the
# tests below feed such streams to Worker.call from a tiny stand-in process, which starts
# in milliseconds where a real worker takes seconds.

STAND_IN_PRELUDE = """
import json, os, struct, sys, time
inp, out = sys.stdin.buffer, sys.stdout.buffer

def read_request():
    magic, total, header_len = struct.unpack(">4sQQ", inp.read(20))
    inp.read(total)

def send(data):
    out.write(data)
    out.flush()

def frame(header, blob=b"", magic=b"GRD1", total=None, header_len=None):
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload = head + blob
    total = len(payload) if total is None else total
    header_len = len(head) if header_len is None else header_len
    return struct.pack(">4sQQ", magic, total, header_len) + payload

def reply(result):
    return frame({"body": {"ok": True, "result": result}, "tensors": []})
"""


def stand_in(tmp_path, script):
    """A Worker whose process is ``script`` (after STAND_IN_PRELUDE) instead of the real worker."""
    worker = Worker(hide=[], private_root=tmp_path, limits=LIMITS, isolate=False)
    worker.proc = subprocess.Popen(
        [sys.executable, "-I", "-c", STAND_IN_PRELUDE + textwrap.dedent(script) + "\ntime.sleep(60)\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return worker


REFUSED_STREAMS = {
    "garbage": "send(b'PASSED\\n' * 100)",
    "bad magic": "send(frame({'body': {'ok': True}, 'tensors': []}, magic=b'EVIL'))",
    "huge length": "send(struct.pack('>4sQQ', b'GRD1', 2**62, 2))",
    "longer than reply_bytes": f"send(struct.pack('>4sQQ', b'GRD1', {LIMITS.reply_bytes + 1}, 2))",
    "header longer than frame": "send(frame({'body': 1, 'tensors': []}, header_len=10**6))",
    "header not JSON": "send(frame(b'\\x80\\x04 pickle, not json'))",
    "tensor out of range": "send(frame({'body': {'$tensor': 0}, 'tensors': "
    "[{'dtype': 'uint8', 'shape': [9], 'offset': 0, 'nbytes': 9}]}, b'ab'))",
    "reply not a dict": "send(frame({'body': [1, 2], 'tensors': []}))",
    "reply without ok": "send(frame({'body': {'result': {'status': 'ok'}}, 'tensors': []}))",
    "truncated frame, then exit": "send(frame({'body': {'ok': True}, 'tensors': []})[:25])\nos._exit(0)",
    "silence, then exit": "os._exit(3)",
    # Frames the decoder once let through as other exceptions than WireError.
    "negative shape": "send(frame({'body': {'ok': True, 'result': {'$tensor': 0}}, 'tensors': "
    "[{'dtype': 'uint8', 'shape': [-2, -1], 'offset': 0, 'nbytes': 2}]}, b'ab'))",
    "bad float tag": "send(frame({'body': {'ok': True, 'result': {'$float': 'PASSED'}}, 'tensors': []}))",
    "deep nesting": "send(frame(b'{\"body\":' + b'[' * 100000 + b']' * 100000 + b',\"tensors\":[]}'))",
}


@pytest.mark.parametrize("script", list(REFUSED_STREAMS.values()), ids=list(REFUSED_STREAMS))
def test_a_broken_reply_stream_is_a_worker_error_and_the_worker_is_stopped(tmp_path, script):
    worker = stand_in(tmp_path, "read_request()\n" + script)
    try:
        started = time.monotonic()
        with pytest.raises(WorkerError) as info:
            worker.call("run_cell", timeout=5, index=0, source="x = 1")
        assert not isinstance(info.value, WorkerTimeout)
        assert time.monotonic() - started < 5, "a broken stream must be refused at once, not timed out"
        assert worker.proc.poll() is not None, "a worker that broke the protocol must not be trusted further"
        with pytest.raises(WorkerError):
            worker.call("ping", timeout=5)
    finally:
        worker.close()


def test_a_silent_worker_times_out_after_the_grace_period(tmp_path, monkeypatch):
    monkeypatch.setattr("grader.sandbox._GRACE_SECONDS", 0.5)
    worker = stand_in(tmp_path, "read_request()\nsend(b'GRD1')")  # a frame head that never completes
    try:
        started = time.monotonic()
        with pytest.raises(WorkerTimeout):
            worker.call("run_cell", timeout=0.5, index=0, source="x = 1")
        assert 1.0 <= time.monotonic() - started < 4
        assert worker.proc.poll() is not None
    finally:
        worker.close()


def test_a_reply_forged_by_a_cell_is_detected(tmp_path):
    """A reply that does not carry the request's id (a cell writing to the channel, say)
    is refused, and the worker is stopped."""
    worker = stand_in(
        tmp_path,
        """
        read_request()
        send(reply({"index": 0, "status": "ok", "error": None, "stdout": "FORGED", "stderr": ""}))
        """,
    )
    try:
        with pytest.raises(WorkerError, match="not the reply to the request"):
            worker.call("run_cell", timeout=5, index=0, source="...")
        assert worker.proc.poll() is not None
    finally:
        worker.close()


def test_pickle_bytes_sent_to_the_worker_arrive_as_bytes(worker):
    """Requests are wire messages too: a file holding a pickle is written, never loaded."""

    class Marker:
        def __reduce__(self):
            return (exec, ("open('UNPICKLED', 'w').close()",))

    raw = pickle.dumps(Marker())
    evil = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    worker.call("init", timeout=30, seed=0, threads=1, output_cap=OUTPUT_CHARS, files={"model.pt": evil})
    names, content = run_json(
        worker,
        "import json, os\nprint(json.dumps([sorted(os.listdir('.')), open('model.pt', 'rb').read().hex()]))",
    )
    assert "model.pt" in names and "UNPICKLED" not in names
    assert content == raw.hex()


# -- (i), (j) environment and files ---------------------------------------------------------------------------


def test_environment_is_scrubbed(worker, private_root):
    env, workdir, tmp = run_json(
        worker,
        "import json, os, tempfile\nprint(json.dumps([dict(os.environ), os.getcwd(), tempfile.gettempdir()]))",
    )
    assert LEAK_NAME not in env
    assert LEAK_VALUE not in json.dumps(env)
    allowed = set(scrubbed_env(LIMITS.threads)) | {"HOME", "TMPDIR"}
    for key, value in env.items():
        if key not in allowed:  # set inside the worker (by torch, say), never inherited
            assert os.environ.get(key) != value, key
    for key in scrubbed_env(LIMITS.threads):
        assert env[key] == scrubbed_env(LIMITS.threads)[key]
    assert env["HOME"] == env["TMPDIR"] == workdir
    assert tmp == workdir
    # Isolated, the worker's /tmp is its own tmpfs; otherwise its folder under the private root.
    parent = Path(workdir).parent
    if worker.isolated:
        assert parent == Path("/tmp")
    else:
        assert parent.parent == private_root and parent.name.startswith("worker-")
    assert Path(workdir).name.startswith("submission-")


def test_files_written_by_a_cell_stay_in_the_private_working_folder(worker, private_root):
    workdir, written = run_json(
        worker,
        """
        import json, os, tempfile
        open("written_by_cell.txt", "w").write("student output")
        os.makedirs("checkpoints", exist_ok=True)
        open("checkpoints/best.pt", "wb").write(b"weights")
        with tempfile.NamedTemporaryFile(delete=False, suffix=".tmp") as f:
            f.write(b"scratch")
        open(os.path.expanduser("~/.cache_marker"), "w").write("x")
        print(json.dumps([os.getcwd(), [os.path.abspath("written_by_cell.txt"), f.name]]))
        """,
    )
    for p in written:
        assert os.path.dirname(p) == workdir
    assert not (Path.cwd() / "written_by_cell.txt").exists()
    assert not (Path(__file__).resolve().parent.parent / "written_by_cell.txt").exists()
    assert not (Path.cwd() / "checkpoints" / "best.pt").exists()
    if worker.isolated:
        # The working folders live on a tmpfs that only this worker sees: from outside,
        # the folder that became its root is empty.
        assert all(not any(p.iterdir()) for p in Path(worker.private).parent.glob("worker-*"))
    else:
        assert (Path(workdir) / "written_by_cell.txt").read_text() == "student output"
    # The next cell finds its files where it left them.
    assert run_json(worker, "import json\nprint(json.dumps(open('checkpoints/best.pt', 'rb').read().decode()))") == (
        "weights"
    )


@needs_namespaces
def test_a_cell_cannot_write_outside_its_working_folder(worker, tmp_path):
    target = tmp_path / "planted.txt"
    out = run(worker, f"open({str(target)!r}, 'w').write('planted by a student')")
    try:
        assert out["status"] == "error" and not target.exists()
    finally:
        target.unlink(missing_ok=True)


@needs_namespaces
def test_a_worker_runs_when_python_and_the_grader_live_in_the_temp_folder(tmp_path):
    """A checkout under the temp folder (a CI clone, say): the worker's own /tmp must not
    cover the interpreter or the grader package it runs on."""
    venv, project = tmp_path / "venv", tmp_path / "project"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "outer.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")))
    package = Path(__file__).resolve().parent.parent / "grader"
    shutil.copytree(package, project / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    script = textwrap.dedent(
        """
        import json, sys, textwrap
        from pathlib import Path
        from grader.sandbox import Limits, Worker
        w = Worker(hide=[], private_root=Path(sys.argv[1]), limits=Limits(), isolate=True)
        w.start(seed=0)
        cell = "import grader, json, sys\\nprint(json.dumps([sys.prefix, grader.__file__]))"
        out = w.call("run_cell", timeout=30, index=0, source=cell, question=None)
        w.close()
        print(out["stdout"])
        """
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, str(tmp_path / "workers")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    prefix, package_file = json.loads(done.stdout.strip().splitlines()[-1])
    assert prefix == str(venv)
    assert package_file == str(project / "grader" / "__init__.py")


def test_a_worker_that_cannot_set_itself_up_says_why(tmp_path):
    """An impossible memory limit fails inside the worker, before any student code; the
    grader hears the reason, not just that the channel broke."""
    limits = Limits(cell_seconds=20, memory_bytes=1 << 70)
    with pytest.raises(WorkerError, match=r"could not start: .*Error"):
        new_worker(tmp_path, limits=limits)


class _NotStarted(Exception):
    pass


def _command_of(tmp_path, monkeypatch, isolate):
    """The command line and keyword arguments Worker.start would launch, without launching it."""
    seen = {}

    def fake_popen(cmd, **kwargs):
        seen.update(kwargs, cmd=cmd)
        raise _NotStarted

    monkeypatch.setenv(LEAK_NAME, LEAK_VALUE)
    monkeypatch.setattr("grader.sandbox.subprocess.Popen", fake_popen)
    # As root without namespaces, where the worker's uid may reach its folder is tested in test_adversarial.
    monkeypatch.setattr("grader.sandbox.Worker._open_to_worker", lambda self: None)
    root = tmp_path / "workers"
    with pytest.raises(_NotStarted):
        Worker(hide=[REFERENCE_DIR], private_root=root, limits=LIMITS, isolate=isolate).start(seed=0)
    return root, seen


@pytest.mark.parametrize(
    "isolate",
    [
        True,
        False,
    ],
    ids=["isolated", "not isolated"],
)
def test_worker_is_given_its_private_root_and_a_scrubbed_environment(tmp_path, monkeypatch, isolate):
    root, seen = _command_of(tmp_path, monkeypatch, isolate)
    assert LEAK_NAME not in seen["env"] and seen["env"] == scrubbed_env(LIMITS.threads)
    assert seen["start_new_session"] is True and seen["cwd"] == root
    cmd = seen["cmd"]
    assert (cmd[0] in ("unshare", "bwrap")) == isolate
    # The set-up (hidden paths, private folder) travels on the channel, never in argv.
    assert not any(str(REFERENCE_DIR) in arg or "--hide" in arg for arg in cmd)
    (private,) = list(root.iterdir())
    assert private.name.startswith("worker-") and list(private.iterdir()) == []


def test_a_result_the_wire_cannot_carry_is_an_error_reply(worker):
    """A probe whose result cannot travel (a complex tensor) is answered with an error,
    and the worker lives on."""
    run(worker, "import torch\ndef returns_complex(x):\n    return x.to(torch.complex64)")
    with pytest.raises(StudentError) as info:
        worker.call("call_function", timeout=10, name="returns_complex", args=[torch.ones(2)])
    assert info.value.info["type"] == "WireError"
    assert worker.call("ping", timeout=5) == {"pong": True}


def test_a_gpu_worker_limits_written_memory_not_address_space():
    """CUDA reserves far more address space than a 16 GiB limit allows (its device count
    then fails "out of memory"), so a GPU worker is limited by RLIMIT_DATA instead."""
    script = (
        "import resource, sys; from grader.worker.__main__ import limit_resources; "
        "limit_resources(1 << 34, gpu=sys.argv[1] == 'gpu'); "
        "print(resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_DATA)[0])"
    )
    import resource

    unlimited = resource.RLIM_INFINITY  # as the test runs here: neither limit set
    for mode, expected in (("gpu", (unlimited, 1 << 34)), ("cpu", (1 << 34, unlimited))):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        assert tuple(int(v) for v in done.stdout.split()) == expected, done.stdout + done.stderr
