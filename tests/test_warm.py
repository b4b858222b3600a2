"""Warm workers (grader/warm.py): launched ahead of their submission, each handed to
one submission only, in a sandbox of its own, exactly as a cold one."""

from __future__ import annotations

import contextlib
import json
import os
import re
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import reference_solution
from grader.assignment import default_assignment
from grader.forkserver import ForkServer, ForkServerError
from grader.sandbox import Limits, Worker, WorkerError, namespaces_available, scrubbed_env, worker_paths
from grader.warm import WarmWorkers

LIMITS = Limits(cell_seconds=30, memory_bytes=8 << 30)
WHO = """
import json, os
print(json.dumps({"files": sorted(os.listdir(".")), "left": os.path.exists("/tmp/left-behind")}))
"""


def run_json(worker, source: str) -> dict:
    out = worker.call("run_cell", timeout=30, index=0, source=textwrap.dedent(source), question=None)
    assert out["status"] == "ok", out["error"]
    return json.loads(out["stdout"].strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["forked", "spare"])
def warm(request):  # shared: each launch costs seconds
    if request.param == "forked" and not namespaces_available():
        pytest.skip("workers are forked only into namespaces, which this machine does not allow")
    pool = WarmWorkers(fork=request.param == "forked")
    yield pool
    pool.close()


def test_each_submission_gets_a_fresh_worker_once(warm):
    hide = [reference_solution.__path__[0]]
    first = warm.take(hide=hide, limits=LIMITS, isolate=None)
    assert first.forked == warm.fork
    first.init(seed=0, files={"mine.txt": b"student one"})
    run_json(first, "open('/tmp/left-behind', 'w').write('student one')\nprint('{}')")
    one = run_json(first, WHO)
    if not warm.fork:
        spare = next(iter(warm._spares.values()))
        assert spare.proc.poll() is None and spare.requests == 0  # launched, holding no submission

    second = warm.take(hide=hide, limits=LIMITS, isolate=None)
    assert second is not first and second.forked == warm.fork
    if not warm.fork:
        assert second is spare
    second.init(seed=0, files={"theirs.txt": b"student two"})
    two = run_json(second, WHO)
    first.close()
    with pytest.raises(WorkerError, match="one submission only"):
        second.init(seed=0, files={})
    second.close()
    assert one["left"] and "mine.txt" in one["files"]
    assert not two["left"] and "theirs.txt" in two["files"] and "mine.txt" not in two["files"]


def test_a_dead_spare_is_replaced(warm):
    if warm.fork:
        pytest.skip("a forked worker has no spare")
    hide = [reference_solution.__path__[0]]
    spare = next(iter(warm._spares.values()))  # left by the test above
    spare.kill()
    worker = warm.take(hide=hide, limits=LIMITS, isolate=None)
    assert worker is not spare
    worker.init(seed=0, files={})
    assert run_json(worker, "print('{\"ok\": 1}')") == {"ok": 1}
    worker.close()


# -- forked workers: the fork server they share must not join two submissions ---------


@pytest.fixture(scope="module")
def forking():
    if not namespaces_available():
        pytest.skip("workers are forked only into namespaces, which this machine does not allow")
    pool = WarmWorkers()
    yield pool
    pool.close()


def forked(pool: WarmWorkers, files: dict | None = None):
    worker = pool.take(hide=[reference_solution.__path__[0]], limits=LIMITS, isolate=None)
    assert worker.forked
    worker.init(seed=0, files=files or {})
    return worker


def host_pid(pidfd: int) -> int:
    """The pid a pidfd refers to, as this process sees it."""
    return int(re.search(r"Pid:\s*(\d+)", Path(f"/proc/self/fdinfo/{pidfd}").read_text()).group(1))


def test_forked_workers_cannot_reach_each_other_or_their_fork_server(forking):
    first, second = forked(forking), forked(forking)
    server = next(s for s in forking._servers.values() if s is not None)
    run_json(
        first,
        """
        import socket
        open("/tmp/mine", "w").write("one")
        open("/dev/shm/mine", "w").write("one")
        listening = socket.socket(socket.AF_UNIX)
        listening.bind("\\0grader-sibling")
        listening.listen()
        print("{}")
        """,
    )
    others = [os.getpid(), server.proc.pid, first.proc.pid, host_pid(first.proc._pidfds[1])]
    seen = run_json(
        second,
        f"""
        import json, os, socket
        def reach(pid):
            try:
                os.kill(pid, 0)
                return "reached"
            except ProcessLookupError:
                return "absent"
            except PermissionError:
                return "refused"
        try:
            socket.socket(socket.AF_UNIX).connect("\\0grader-sibling")
            sibling = "connected"
        except OSError:
            sibling = "refused"
        print(json.dumps({{
            "me": os.getpid(),
            "pids": sorted(int(n) for n in os.listdir("/proc") if n.isdigit()),
            "files": os.path.exists("/tmp/mine") or os.path.exists("/dev/shm/mine"),
            "signals": [reach(pid) for pid in {others}],
            "socket": sibling,
        }}))
        """,
    )
    first.close()
    second.close()
    assert seen["me"] == 1  # PID 1 of a namespace of its own
    assert not set(seen["pids"]) & set(others)
    assert seen["signals"] == ["absent"] * len(others)
    assert not seen["files"] and seen["socket"] == "refused"


def test_killing_a_forked_worker_stops_everything_it_started(forking):
    """Even a child that left the worker's session and asked not to die with its parent."""
    worker = forked(forking)
    marker = f"escaped-{uuid.uuid4().hex}"
    escape = f"import ctypes, os, time; ctypes.CDLL(None).prctl(1, 0, 0, 0, 0); time.sleep(600)  # {marker}"
    run_json(
        worker,
        f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", {escape!r}], start_new_session=True)
        print("{{}}")
        """,
    )

    def escaped() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return found

    deadline = time.monotonic() + 20
    while not escaped() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert escaped(), "the cell's child did not start"
    worker.kill()
    deadline = time.monotonic() + 10
    while escaped() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not escaped()
    assert worker.proc.poll() is not None
    worker.close()


def test_the_fork_server_keeps_nothing_of_the_workers_it_forked(forking):
    worker = forked(forking, files={"answers.txt": b"student one"})
    run_json(worker, "print(open('answers.txt').read() and '{}')")
    server = next(s for s in forking._servers.values() if s is not None)
    fds = os.listdir(f"/proc/{server.proc.pid}/fd")
    targets = sorted(os.readlink(f"/proc/{server.proc.pid}/fd/{fd}") for fd in fds)
    worker.close()
    # Its standard streams (all /dev/null) and its control socket: no channel, no file.
    assert targets.count("/dev/null") == 3 and len(targets) == 4 and targets[-1].startswith("socket:")


def test_a_fork_server_refuses_code_a_worker_could_not_load():
    torch_free = [s for s in worker_paths() if not (s[0] == "bind" and os.path.basename(s[1]) == "torch")]
    with pytest.raises(ForkServerError, match="does not expose"):
        ForkServer(steps=torch_free, hide=[], homework=default_assignment().worker_module, env=scrubbed_env(1))


def test_workers_start_on_their_own_when_the_fork_server_dies():
    if not namespaces_available():
        pytest.skip("workers are forked only into namespaces, which this machine does not allow")
    pool = WarmWorkers()
    try:
        forked(pool).close()
        server = next(s for s in pool._servers.values() if s is not None)
        server.proc.kill()
        server.proc.wait()
        worker = pool.take(hide=[reference_solution.__path__[0]], limits=LIMITS, isolate=None)
        assert not worker.forked
        worker.init(seed=0, files={})
        assert run_json(worker, "print('{\"ok\": 1}')") == {"ok": 1}
        worker.close()
    finally:
        pool.close()


def test_a_forked_worker_grades_as_one_started_on_its_own(forking, tmp_path, data_loader):
    """The filled template and a bug, graded on Q1-Q6 both ways: every check the same."""
    import mutations

    from grader.assign import render_script
    from grader.engine import grade_submission

    script = render_script(filled=True)
    bug = next(m for m in mutations.BUGS if m.name == "q5-weights-overwritten-with-fan-in-from-the-wrong-axis")
    seen = {}
    for name, text in (("filled", script), ("bug", mutations.apply(bug, script))):
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        for warm in (forking, None):
            result = grade_submission(
                path=path,
                data_loader=data_loader,
                run_seed=3,
                questions={"Q1", "Q2", "Q3", "Q4", "Q5", "Q6"},
                hide=[reference_solution.__path__[0]],
                warm=warm,
            )
            seen[name, warm is None] = [(c.id, c.status, c.score, c.message) for c in result.checks]
    assert seen["filled", True] == seen["filled", False]
    assert seen["bug", True] == seen["bug", False]
    assert seen["bug", True] != seen["filled", True]


def test_grader_fork_0_starts_every_worker_on_its_own(monkeypatch):
    monkeypatch.setenv("GRADER_FORK", "0")
    pool = WarmWorkers()
    try:
        worker = pool.take(hide=[reference_solution.__path__[0]], limits=LIMITS, isolate=None)
        assert not worker.forked and not pool._servers
        worker.close()
    finally:
        pool.close()
    monkeypatch.delenv("GRADER_FORK")
    assert WarmWorkers().fork


def test_without_the_challenge_question_a_gpu_machine_forks_cpu_workers(forking, tmp_path, monkeypatch):
    """Only retraining the challenge model uses a GPU: a grade without that question takes
    a forked CPU worker even where the machine has a GPU (here, one said to be present)."""
    from tiny import CORRECT_Q1, write_module

    from grader import sandbox
    from grader.engine import grade_submission

    monkeypatch.setattr(sandbox, "gpu_present", lambda: True)
    path = write_module(tmp_path / "sub", CORRECT_Q1)
    result = grade_submission(
        path=path, questions={"Q1"}, run_seed=1, limits=LIMITS, hide=[reference_solution.__path__[0]], warm=forking
    )
    assert result.score == result.max_score
    assert any(n.startswith("sandbox: Linux namespaces (forked") for n in result.notes), result.notes
    assert Worker(hide=[], private_root=tmp_path, limits=LIMITS).gpu  # a full grade would use the GPU
