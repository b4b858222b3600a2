"""Warm workers (grader/warm.py): launched ahead of their submission, each handed to
one submission only, in a sandbox of its own, exactly as a cold one."""

from __future__ import annotations

import json
import textwrap

import pytest

import reference_solution
from grader.sandbox import Limits, WorkerError
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


@pytest.fixture(scope="module")
def warm():  # shared: each launch costs seconds
    pool = WarmWorkers()
    yield pool
    pool.close()


def test_each_submission_gets_a_fresh_worker_once_and_a_spare_is_launched(warm):
    hide = [reference_solution.__path__[0]]
    first = warm.take(hide=hide, limits=LIMITS, isolate=None)
    first.init(seed=0, files={"mine.txt": b"student one"})
    run_json(first, "open('/tmp/left-behind', 'w').write('student one')\nprint('{}')")
    one = run_json(first, WHO)
    spare = next(iter(warm._spares.values()))
    assert spare.proc.poll() is None and spare.requests == 0  # launched, holding no submission

    second = warm.take(hide=hide, limits=LIMITS, isolate=None)
    assert second is spare and second is not first
    second.init(seed=0, files={"theirs.txt": b"student two"})
    two = run_json(second, WHO)
    first.close()
    with pytest.raises(WorkerError, match="one submission only"):
        second.init(seed=0, files={})
    second.close()
    assert one["left"] and "mine.txt" in one["files"]
    assert not two["left"] and "theirs.txt" in two["files"] and "mine.txt" not in two["files"]


def test_a_dead_spare_is_replaced(warm):
    hide = [reference_solution.__path__[0]]
    spare = next(iter(warm._spares.values()))  # left by the test above
    spare.kill()
    worker = warm.take(hide=hide, limits=LIMITS, isolate=None)
    assert worker is not spare
    worker.init(seed=0, files={})
    assert run_json(worker, "print('{\"ok\": 1}')") == {"ok": 1}
    worker.close()
