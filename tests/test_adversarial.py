"""The adversarial corpus: each test is an attack a hostile submission makes on the real
grader (real submissions on disk, real workers, real reports), and asserts its outcome:
nothing leaks, no points are gained, the batch finishes within its limits and the other
submissions are unaffected. Attacks on the worker's own walls (network, hidden folders,
signals) live in test_sandbox.py; these are the ones that go through the grader's
trusted side."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from tiny import CORRECT_Q1, module

import reference_solution
from grader.engine import grade_submission
from grader.render import write_results_json
from grader.report import write_submission_reports
from grader.sandbox import Limits

REFERENCE_DIR = Path(reference_solution.__file__).resolve().parent
LIMITS = Limits(cell_seconds=20, submission_seconds=120, output_chars=2_000, memory_bytes=8 << 30)
SECRET = f"host-secret-{uuid.uuid4().hex}"


def grade(path: Path, out: Path, **kwargs):
    """Grade like the batch does, and write every output a person reads."""
    kwargs.setdefault("questions", {"Q1"})
    result = grade_submission(path=path, run_seed=7, limits=LIMITS, hide=[REFERENCE_DIR], **kwargs)
    write_results_json(result, out)
    write_submission_reports(result, out)
    return result


def outputs(out: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(out.iterdir()) if p.is_file())


# -- 1. links in a submission --------------------------------------------------------------------------


LEAK_CELL = """
import os
for name in sorted(os.listdir(".")):
    try:
        print(name, open(name, "rb").read(200))
    except OSError as exc:
        print(name, "unreadable", exc)
"""


@pytest.fixture
def host_secret(tmp_path):
    """A private file of the grader's machine (what /etc/shadow or the dataset cache is)."""
    secret = tmp_path / "host" / "shadow"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    return secret


@pytest.mark.parametrize("how", ["symlink", "hardlink", "symlinked folder"])
def test_linked_companion_files_are_refused_and_said_so(tmp_path, host_secret, how):
    """best_model.pt -> the host's secret file, labels.npy -> the dataset cache: the
    trusted side reads neither, the worker never gets them, the report says why."""
    folder = tmp_path / "subs" / "mallory"
    folder.mkdir(parents=True)
    (folder / "hw.py").write_text(module(CORRECT_Q1, LEAK_CELL))
    from grader.data import DEFAULT_CACHE_DIR

    cache = Path(os.environ.get("CIFAR10_CACHE") or DEFAULT_CACHE_DIR).expanduser()
    if how == "symlink":
        (folder / "best_model.pt").symlink_to(host_secret)
        (folder / "labels.npy").symlink_to(cache)
    elif how == "hardlink":
        os.link(host_secret, folder / "best_model.pt")
    else:
        (folder / "weights").symlink_to(host_secret.parent)
    out = tmp_path / "out"
    result = grade(folder, out)
    assert result.status == "graded", result.reason
    assert SECRET not in outputs(out)
    assert SECRET not in json.dumps(result.to_dict())
    refused = [n for n in result.notes if "refused" in n]
    assert refused, result.notes
    assert "link" in " ".join(refused)
    assert "refused" in (out / "report-student.html").read_text()
    assert result.score == result.max_score, "the rest of the submission is graded as usual"
    assert any(n.startswith("sandbox: ") for n in result.notes), "each report says which sandbox was used"


def test_a_linked_main_file_or_submission_is_invalid_not_read(tmp_path, host_secret):
    subs = tmp_path / "subs"
    (subs / "mallory").mkdir(parents=True)
    (subs / "mallory" / "hw.py").symlink_to(host_secret)
    (subs / "eve.py").symlink_to(host_secret)
    for path in (subs / "mallory", subs / "eve.py"):
        out = tmp_path / "out" / path.name
        result = grade(path, out)
        assert result.status == "invalid"
        assert "symbolic link" in result.reason
        assert SECRET not in outputs(out)


def test_a_lone_notebooks_linked_checkpoint_is_refused(tmp_path, host_secret):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "mallory.py").write_text(module(CORRECT_Q1, LEAK_CELL))
    (subs / "mallory.pt").symlink_to(host_secret)
    out = tmp_path / "out"
    result = grade(subs / "mallory.py", out)
    assert SECRET not in outputs(out)
    assert any("mallory.pt is a symbolic link" in n for n in result.notes), result.notes


def test_a_fifo_companion_does_not_block_the_grader(tmp_path):
    folder = tmp_path / "mallory"
    folder.mkdir()
    (folder / "hw.py").write_text(module(CORRECT_Q1))
    os.mkfifo(folder / "best_model.pt")
    started = time.monotonic()
    result = grade(folder, tmp_path / "out")
    assert time.monotonic() - started < 60
    assert any("not a regular file" in n for n in result.notes), result.notes


# -- 2. forged replies on the channel ------------------------------------------------------------------

# From inside a cell: the request being served, and the worker's channel to the grader.
FORGE = """
import os, sys
from grader.worker import wire

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

frame = sys._getframe()
while frame is not None and "request" not in frame.f_locals:
    frame = frame.f_back
request_id = frame.f_locals["request"]["id"]
forged = {"index": 1, "status": "ok", "error": None, "stdout": "FORGED", "stderr": ""}
fd = channel_fd()
os.write(fd, wire.encode({"ok": True, "result": forged, "id": request_id}))
os.write(fd, b"x" * (4 << 20))  # blocks: the worker now waits on the grader, which waits on it
"""


def test_a_forged_reply_cannot_deadlock_the_grader(tmp_path):
    """The cell answers its own request with a well-formed reply, then blocks writing
    to the channel; the grader's next request is over 64 KB. The grader must notice the
    bytes out of turn, stop that worker, leave the forging cell out and grade the rest."""
    big_cell = "# padding\n" + "# " + "x" * (256 << 10) + "\nz = 3\n"
    path = tmp_path / "mallory.py"
    path.write_text(module("x = 1", FORGE, big_cell, CORRECT_Q1))
    started = time.monotonic()
    result = grade(path, tmp_path / "out")
    elapsed = time.monotonic() - started
    assert elapsed < LIMITS.submission_seconds, f"{elapsed:.0f} s"
    assert result.status == "graded", result.reason
    by_index = {c.index: c for c in result.cells}
    forger = by_index[2]
    assert forger.status == "crashed", forger
    assert "forged" in forger.error["message"] or "out of turn" in forger.error["message"]
    assert "FORGED" not in forger.stdout
    assert [by_index[i].status for i in (1, 3, 4)] == ["ok", "ok", "ok"]
    assert result.score == result.max_score, "the cells around the forgery are graded as usual"


def test_a_worker_that_never_reads_its_requests_times_out(tmp_path):
    """A request larger than the pipe to a worker that does not read: the write has a
    deadline too (the cell stops the worker's reading by never returning to it)."""
    from grader.sandbox import OutOfTurn, Worker

    worker = Worker(hide=[], private_root=tmp_path, limits=LIMITS)
    worker.start(seed=0)
    try:
        # Once it has replied, the worker's main thread sleeps for ever in a signal handler:
        # it reads nothing, writes nothing and never exits (as pid 1 of its namespace it
        # would ignore SIGSTOP).
        stop = textwrap.dedent(
            """
            import signal, threading, time
            signal.signal(signal.SIGUSR1, lambda *_: time.sleep(3600))
            threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1)).start()
            """
        )
        worker.call("run_cell", timeout=5, index=0, source=stop, question=None)
        time.sleep(2)
        started = time.monotonic()
        with pytest.raises(OutOfTurn, match="did not take the request"):
            worker.call("run_cell", timeout=1, index=1, source="#" * (1 << 20), question=None)
        assert time.monotonic() - started < 15
        assert worker.proc.poll() is not None
    finally:
        worker.close()


# -- 7. everything bounded ------------------------------------------------------------------------------

HUGE = 4 << 20


def test_huge_names_and_messages_are_capped_in_results_and_reports(tmp_path):
    path = tmp_path / "mallory.py"
    path.write_text(
        module(
            f"""
            import torch
            import torch.nn as nn

            NAME = "N" * {HUGE}

            def flatten(x):
                return x.reshape(x.shape[0], -1)

            def three_layer_convnet(x, params):
                raise ValueError("M" * {HUGE})

            class ThreeLayerConvNet(nn.Module):
                def __init__(self, in_channel, channel_1, channel_2, num_classes):
                    super().__init__()
                    self.conv = type(NAME, (nn.Conv2d,), {{}})(in_channel, channel_1, 5, padding=2)

                def forward(self, x):
                    raise KeyError("K" * {HUGE})
            """,
            f'print("P" * {HUGE})',
        )
    )
    out = tmp_path / "out"
    result = grade(path, out, questions={"Q1", "Q3", "Q4"})
    assert result.status == "graded", result.reason
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    assert all(size < 1 << 20 for size in sizes.values()), sizes
    assert len(json.dumps(result.to_dict())) < 1 << 20


def test_a_submission_slow_in_every_probe_stays_within_its_budget(tmp_path):
    """Every call sleeps just under a check's own limit: without a budget inside checks
    the five Q1 checks would take minutes."""
    limits = Limits(cell_seconds=20, submission_seconds=25, output_chars=2_000, memory_bytes=8 << 30)
    path = tmp_path / "slow.py"
    path.write_text(
        module(
            CORRECT_Q1 + "\nimport time\n_fast = three_layer_convnet\n"
            "def three_layer_convnet(x, params):\n    time.sleep(25)\n    return _fast(x, params)\n"
        )
    )
    started = time.monotonic()
    result = grade_submission(path=path, run_seed=7, limits=limits, hide=[REFERENCE_DIR], questions={"Q1"})
    elapsed = time.monotonic() - started
    assert elapsed < limits.submission_seconds + 30, f"{elapsed:.0f} s"
    assert result.score < result.max_score
    assert any("time budget" in c.message for c in result.checks), [c.message for c in result.checks]


# -- 3. checkpoints that inflate, and a grading process that dies --------------------------------------

Q7_MODEL = """
import torch.nn as nn

best_model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
"""


def _zip_bomb(path: Path, inflated: int) -> None:
    """A torch.save-shaped zip whose data.pkl inflates ``inflated`` bytes of zeros."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                f.write(chunk)
        z.writestr("archive/version", "3\n")


def _opcode_bomb(path: Path) -> None:
    """A small data.pkl of millions of opcodes (push None, pop it)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + b"N0" * 3_000_000 + b"N.")


@pytest.mark.parametrize("bomb", [_zip_bomb, _opcode_bomb], ids=["inflates", "opcodes"])
def test_a_checkpoint_bomb_is_refused_quickly(tmp_path, data_loader, bomb):
    folder = tmp_path / "mallory"
    folder.mkdir()
    (folder / "hw.py").write_text(module(Q7_MODEL))
    if bomb is _zip_bomb:
        bomb(folder / "best_model.pt", 256 << 20)
    else:
        bomb(folder / "best_model.pt")
    assert (folder / "best_model.pt").stat().st_size < 4 << 20
    started = time.monotonic()
    result = grade(folder, tmp_path / "out", questions={"Q7"}, data_loader=data_loader)
    assert time.monotonic() - started < 90
    weights = next(c for c in result.checks if c.id == "Q7.weights")
    assert weights.status == "failed" and "not loaded" in weights.message, weights.message
    accuracy = next(c for c in result.checks if c.id == "Q7.validation_accuracy")
    assert accuracy.score == 0


@pytest.mark.slow
def test_a_submission_that_kills_its_grading_process_takes_no_other_down(tmp_path):
    """Without a sandbox (--unsafe-no-sandbox) a cell can kill the process grading it,
    which breaks the whole pool. Only that submission is marked crashed; the others,
    graded at the same time or queued, get their full grade."""
    from grader.batch import grade_batch

    skip_if_root_cannot_drop()

    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a-killer.py").write_text(module(CORRECT_Q1, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"))
    for name in ("b-good", "c-good", "d-good"):
        (subs / f"{name}.py").write_text(module(CORRECT_Q1))
    started = time.monotonic()
    results = grade_batch(
        submissions=subs,
        out=tmp_path / "out",
        jobs=2,
        require_data=False,
        questions=["Q1"],
        seed=3,
        use_cache=False,
        progress=False,
        reports=False,
        limits=LIMITS,
        unsafe_no_sandbox=True,
    )
    assert time.monotonic() - started < 400
    by_name = {r.name: r for r in results}
    if os.geteuid() == 0:  # the worker runs as a uid of its own, which cannot signal the grader
        assert by_name["a-killer"].status == "graded", by_name["a-killer"].reason
        assert by_name["a-killer"].score == by_name["a-killer"].max_score
    else:
        assert by_name["a-killer"].status == "crashed", by_name["a-killer"].reason
    for name in ("b-good", "c-good", "d-good"):
        assert by_name[name].status == "graded", by_name[name].reason
        assert by_name[name].score == by_name[name].max_score
        assert any(n.startswith(("sandbox: none", "sandbox: no namespaces")) for n in by_name[name].notes)


# -- 4. forged probe results ----------------------------------------------------------------------------

FORGE_KAIMING = """
import sys, torch
_probes = sys.modules["grader.worker.probes"]
_real_state = _probes._state

def _forged_state(model):
    state = _real_state(model)
    gen = torch.Generator().manual_seed(0)
    for key, value in state.items():
        if key.endswith("weight") and value.dim() > 1:
            state[key] = torch.randn(value.shape, generator=gen) * (2.0 / value[0].numel()) ** 0.5
    return state

_probes._state = _forged_state
"""

FORGE_RELU = """
import sys, torch
_probes = sys.modules["grader.worker.probes"]
_real_describe = _probes.describe_module
_relu = _real_describe(torch.nn.Sequential(torch.nn.ReLU()))["leaves"][0]

def _forged_describe(model):
    found = _real_describe(model)
    leaves = found.get("leaves", [])
    if [leaf["kind"] for leaf in leaves[:2]] == ["Conv2d", "Conv2d"]:
        found["leaves"] = leaves[:1] + [dict(_relu, path="0b")] + leaves[1:]
    return found

_probes.describe_module = _forged_describe
"""


# The describers a hostile cell replaces: the functions the worker's probes describe
# objects with. Each forgery reports the correct answer whatever the code holds.
FORGE_Q2_PARAMS = """
import sys, math, torch
_probes = sys.modules["grader.worker.probes"]
_real_capture = _probes.describe_capture

def _forged_capture(rt, *, question):
    found = _real_capture(rt, question=question)
    if len(found.get("params") or []) == 6:
        gen = torch.Generator().manual_seed(0)
        shapes = [(32, 3, 5, 5), (32,), (16, 32, 3, 3), (16,), (16 * 32 * 32, 10), (10,)]
        fans = [75, 0, 288, 0, 16 * 32 * 32, 0]
        found["params"] = [
            _probes.describe_tensor(
                (torch.randn(s, generator=gen) * math.sqrt(2 / f) if f else torch.zeros(s)).requires_grad_()
            )
            for s, f in zip(shapes, fans)
        ]
    return found

_probes.describe_capture = _probes.PROBES["describe_capture"] = _forged_capture
"""

FORGE_Q3_LAYERS = """
import sys, copy
_probes = sys.modules["grader.worker.probes"]
_real_describe_layers = _probes.describe_module

def _forged_layers(model):
    found = copy.deepcopy(_real_describe_layers(model))
    for leaf in found.get("leaves", []):
        config = leaf["config"]
        if leaf["kind"] == "Conv2d" and config["kernel_size"] == [5, 5]:
            config["padding"] = [2, 2]
        if leaf["kind"] == "Linear" and config["in_features"] % 900 == 0:
            config["in_features"] = config["in_features"] // 900 * 1024
            leaf["params"]["weight"] = [config["out_features"], config["in_features"]]
    return found

_probes.describe_module = _forged_layers
"""

FORGE_Q5_MODEL = """
import sys
_probes = sys.modules["grader.worker.probes"]
_real_q5_capture = _probes.describe_capture
_channels = {12: 32, 8: 16}

def _forged_q5_capture(rt, *, question):
    found = _real_q5_capture(rt, question=question)
    for leaf in (found.get("model") or {}).get("leaves", []):
        config = leaf["config"]
        for key in ("in_channels", "out_channels"):
            if key in config:
                config[key] = _channels.get(config[key], config[key])
        if config.get("in_features") == 8 * 32 * 32:
            config["in_features"] = 16 * 32 * 32
    return found

_probes.describe_capture = _probes.PROBES["describe_capture"] = _forged_q5_capture
"""

FORGE_OPTIMIZER = """
import sys
_probes = sys.modules["grader.worker.probes"]
_real_describe_optimizer = _probes.describe_optimizer

def _forged_optimizer(optimizer, model):
    found = _real_describe_optimizer(optimizer, model)
    if found.get("is_optimizer"):
        nesterov = found["groups"][0]["settings"].get("lr") == 1e-2  # Question 6's learning rate
        found["type"], found["module"], found["missing"] = "SGD", "torch.optim.sgd", []
        for group in found["groups"]:
            group["settings"].update(
                momentum=0.9 if nesterov else 0.0, nesterov=nesterov, dampening=0.0, weight_decay=0.0
            )
    return found

_probes.describe_optimizer = _forged_optimizer
"""


def _template_with(mutation_names: tuple[str, ...], extra_cells: tuple[str, ...]) -> str:
    import mutations

    from grader.assign import render_script

    script = render_script(filled=True)
    for name in mutation_names:
        script = mutations.apply(next(m for m in mutations.BUGS if m.name == name), script)
    return script + "".join(f"\n# %%\n{cell}\n" for cell in extra_cells)


FORGERIES = {
    # name: (the honest bugs, the forgeries that hide them, questions, the checks they target)
    "q2 parameters": (
        ("q2-fan-in-from-the-wrong-axis", "q2-biases-from-random-weight", "q2-no-requires-grad"),
        (FORGE_Q2_PARAMS,),
        {"Q2"},
        ("Q2.kaiming_init", "Q2.zero_biases", "Q2.requires_grad"),
    ),
    "q3 initialisation": (("q3-no-kaiming-init",), (FORGE_KAIMING,), {"Q3", "Q4"}, ("Q3.kaiming_init",)),
    "q3 layers": (("q3-padding-1-on-the-5x5-conv",), (FORGE_Q3_LAYERS,), {"Q3", "Q4"}, ("Q3.layers",)),
    "q5 model and optimizer": (
        ("q5-channels-12-8-from-the-sanity-test", "q5-adam"),
        (FORGE_Q5_MODEL, FORGE_OPTIMIZER),
        {"Q5"},
        ("Q5.model", "Q5.optimizer"),
    ),
    "q6 architecture and optimizer": (
        ("q6-real-case-first-relu-missing", "q6-no-nesterov"),
        (FORGE_RELU, FORGE_OPTIMIZER),
        {"Q6"},
        ("Q6.architecture", "Q6.optimizer"),
    ),
}
_CORRECT: dict[frozenset, object] = {}  # the correct submission's grades, by questions graded


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_probe_result_earns_nothing(tmp_path, name):
    """The submission replaces the worker's describers to describe the correct answer
    while its code keeps the bugs. The grader checks the description against behaviour:
    the targeted checks fail, so does every check the mutation corpus says each bug
    fails (no point is gained), and the correct answer (whose description is true)
    keeps every point."""
    import mutations

    bugs, forgeries, questions, targets = FORGERIES[name]
    results = {}
    for label, names, extra in (("forged", bugs, forgeries), ("correct", (), ())):
        if label == "correct" and frozenset(questions) in _CORRECT:
            results[label] = _CORRECT[frozenset(questions)]
            continue
        path = tmp_path / f"{label}.py"
        path.write_text(_template_with(names, extra))
        results[label] = grade(path, tmp_path / label, questions=questions)
        assert results[label].status == "graded", results[label].reason
    _CORRECT[frozenset(questions)] = results["correct"]
    forged = {c.id: c for c in results["forged"].checks}
    for target in targets:
        assert forged[target].status == "failed", forged[target]
        assert "nothing was credited" in forged[target].message, forged[target]
    lost_by_bugs = {c for m in mutations.BUGS if m.name in bugs for c in m.failing}
    assert set(targets) <= lost_by_bugs
    gained = [(c, forged[c].message) for c in lost_by_bugs if forged[c].status == "passed"]
    assert not gained, gained
    # (the learning checks are skipped here: they need the images, which these gradings are not given)
    lost = [(c.id, c.message) for c in results["correct"].checks if c.score < c.max_score and c.status != "skipped"]
    assert not lost, lost


# -- 9. what the worker can see -------------------------------------------------------------------------


def test_the_hidden_paths_are_not_in_the_workers_command_line(tmp_path):
    """The list of private paths reached the worker in argv, readable in /proc; /sys was
    visible to CPU-only workers."""
    from grader.sandbox import Worker

    secret = tmp_path / f"private-{uuid.uuid4().hex}"
    secret.mkdir()
    worker = Worker(hide=[secret, REFERENCE_DIR], private_root=tmp_path / "w", limits=LIMITS)
    worker.start(seed=0)
    try:
        out = worker.call(
            "run_cell",
            timeout=20,
            index=0,
            question=None,
            source=textwrap.dedent(
                """
                import os
                seen = []
                for pid in os.listdir("/proc"):
                    if pid.isdigit():
                        try:
                            seen.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
                        except OSError:
                            pass
                print(repr(seen))
                print("SYS", os.path.exists("/sys/class"))
                """
            ),
        )
    finally:
        worker.close()
    assert out["status"] == "ok", out["error"]
    assert "grader" in out["stdout"], "the worker's own command line was read"
    assert secret.name not in out["stdout"]
    assert str(REFERENCE_DIR) not in out["stdout"]
    if worker.isolated and not worker.gpu:
        assert "SYS False" in out["stdout"], "/sys describes the host; only a GPU worker needs it"


SNOOP_CELL = """
import importlib, os, sys
for name in ("pytest", "_pytest", "IPython", "dask"):
    try:
        importlib.import_module(name)
        print("IMPORTED", name)
    except ImportError:
        print("ABSENT", name)
for folder in sys.path:
    if os.path.isdir(folder) and folder.endswith(("site-packages", "dist-packages")):
        print("LISTED", folder, sorted(os.listdir(folder)))
"""


@pytest.mark.parametrize("sandbox", ["bwrap", "unshare"])
def test_the_worker_sees_only_the_libraries_student_code_needs(tmp_path, monkeypatch, sandbox):
    """The whole Python installation was visible: any installed package could be imported
    and site-packages listed (the grader's and the instructor's tools with it). Now only
    torch, torchvision, numpy, PIL, what they require and the grader package are there,
    and a normal submission grades as before."""
    import importlib.util

    from grader.sandbox import bwrap_usable, namespaces_available
    from grader.worker.__main__ import STUDENT_DISTRIBUTIONS, _distribution_paths

    monkeypatch.setenv("GRADER_SANDBOX", sandbox)
    if not namespaces_available() or (sandbox == "bwrap" and not bwrap_usable()):
        pytest.skip(f"{sandbox} is not usable here (without namespaces the worker's filesystem is the host's)")
    # pytest runs this test, so it is installed; nothing the student's libraries need requires it.
    assert importlib.util.find_spec("pytest") is not None
    needed = {Path(p).name for p in _distribution_paths(STUDENT_DISTRIBUTIONS)}
    assert "pytest" not in needed and "_pytest" not in needed and "torch" in needed
    path = tmp_path / "student.py"
    path.write_text(module(CORRECT_Q1, SNOOP_CELL))
    result = grade(path, tmp_path / "out")
    assert result.status == "graded", result.reason
    assert any(n.startswith("sandbox: bubblewrap" if sandbox == "bwrap" else "sandbox: Linux") for n in result.notes)
    stdout = "".join(c.stdout for c in result.cells)
    assert "ABSENT pytest" in stdout and "ABSENT _pytest" in stdout, stdout
    for name in ("dask", "IPython"):  # absent, or needed by the student's libraries where installed
        assert f"ABSENT {name}" in stdout or name in needed, stdout
    listed = [line for line in stdout.splitlines() if line.startswith("LISTED")]
    assert listed and any("'torch'" in line for line in listed), stdout
    assert not any("pytest" in line or "reference_solution" in line for line in listed), listed
    assert result.score == result.max_score


# -- 5. process and disk limits that hold for root ------------------------------------------------------

FORK_BOMB = """
import os
children = []
try:
    for _ in range(5000):  # posix_spawn: as a fork bomb, but cheap for the test machine
        children.append(os.posix_spawn("/bin/sleep", ["sleep", "120"], {}))
except OSError as exc:
    print("STOPPED", exc.errno)
for pid in children:
    os.kill(pid, 9)
print("FORKED", len(children))
"""

FILL_TMP = """
import os
written = 0
try:
    with open("/tmp/fill", "wb") as f:
        for _ in range(200):
            f.write(bytes(1 << 20))
            f.flush()
            written += 1
except OSError as exc:
    print("FULL", exc.errno)
print("WROTE", written)
"""


def _cell(source: str, limits: Limits, tmp_path: Path) -> str:
    from grader.sandbox import Worker

    worker = Worker(hide=[REFERENCE_DIR], private_root=tmp_path / "w", limits=limits)
    worker.start(seed=0)
    try:
        out = worker.call("run_cell", timeout=60, index=0, source=source, question=None)
    finally:
        worker.close()
    assert out["status"] == "ok", out["error"]
    return out["stdout"]


def test_a_fork_bomb_is_bounded_even_for_root(tmp_path):
    from grader.sandbox import namespaces_available

    if not namespaces_available():
        pytest.skip("the process limit binds root only through the worker's own user namespace")
    out = _cell(FORK_BOMB, LIMITS, tmp_path)
    forked = int(out.split("FORKED")[1])
    assert "STOPPED" in out and forked < 1100, out


def test_the_workers_ram_disk_is_sized_by_its_limits(tmp_path):
    from grader.sandbox import namespaces_available

    if not namespaces_available():
        pytest.skip("without namespaces the worker writes to the grader's own temp folder")
    limits = Limits(cell_seconds=20, output_chars=2_000, memory_bytes=8 << 30, scratch_bytes=64 << 20)
    out = _cell(FILL_TMP, limits, tmp_path)
    assert "FULL" in out and int(out.split("WROTE")[1]) <= 48, out


# -- root without namespaces (Gradescope's containers) ---------------------------------------------------

STEAL_KEY = """
import os
for path in (KEY, ARCHIVE):
    try:
        print("READ", len(open(path, "rb").read()))
    except OSError as exc:
        print("DENIED", type(exc).__name__)
try:
    exec(open(KEY).read())  # the answer key's own three_layer_convnet and flatten
except OSError:
    pass
print("IDS", os.getuid(), os.getgid(), os.getgroups())
"""


def skip_if_root_cannot_drop() -> None:
    """As root without namespaces the worker runs as an unprivileged uid, which must be
    able to read Python and the grader."""
    from grader.sandbox import unreadable_by_others, worker_runtime

    if os.geteuid() == 0 and (unreadable := unreadable_by_others(worker_runtime())):
        pytest.skip(f"other users cannot read {unreadable}, so an unprivileged worker cannot run Python here")


def skip_unless_root_can_drop() -> None:
    if os.geteuid() != 0:
        pytest.skip("only a grader run by root switches the worker to another uid")
    skip_if_root_cannot_drop()


def test_as_root_without_namespaces_the_answer_key_and_dataset_are_out_of_reach(tmp_path, cifar10_path):
    """Gradescope runs the grader as root in a container that may refuse namespaces: the
    worker is then a plain subprocess, and as root it could read the answer key installed
    beside the grader and the dataset. It switches to a uid of its own, and those folders
    are closed to it."""
    skip_unless_root_can_drop()
    key = REFERENCE_DIR / "assignment.py"
    assert "def three_layer_convnet" in key.read_text()  # the attack would pay if the text were read
    data = tmp_path / "data"
    data.mkdir()
    archive = data / "cifar10.tar.gz"
    archive.write_bytes(Path(cifar10_path).read_bytes())
    data.chmod(0o755)
    archive.chmod(0o644)
    cell = f"KEY, ARCHIVE = {str(key)!r}, {str(archive)!r}\n" + STEAL_KEY
    (tmp_path / "thief.py").write_text(module(cell))
    result = grade_submission(
        path=tmp_path / "thief.py",
        run_seed=7,
        limits=LIMITS,
        hide=[REFERENCE_DIR, data],
        questions={"Q1"},
        isolate=False,
    )
    (run,) = [c for c in result.cells if "IDS" in c.stdout]
    assert "READ" not in run.stdout and run.stdout.count("DENIED PermissionError") == 2, run.stdout
    uid, gid, groups = run.stdout.split("IDS")[1].split(maxsplit=2)
    assert uid == gid != "0" and groups.strip() == "[]", run.stdout
    assert result.score == 0, [(c.name, c.score) for c in result.checks]
    assert any(n.startswith("sandbox: no namespaces, unprivileged uid") for n in result.notes), result.notes


def test_a_worker_that_could_read_a_hidden_folder_does_not_start(tmp_path, monkeypatch):
    """Without namespaces, permissions are the only wall: a worker that can still read a
    folder it must not see (here the grader forgets to close it) stops before any student
    code runs."""
    from grader.sandbox import Worker, WorkerError

    skip_unless_root_can_drop()
    with tempfile.TemporaryDirectory() as private:
        os.chmod(private, 0o755)  # every folder on the way open, as the grader leaves none
        exposed = Path(private) / "exposed"
        exposed.mkdir(mode=0o755)
        (exposed / "answer.txt").write_text(SECRET)
        monkeypatch.setattr("grader.sandbox.close_to_others", lambda paths: None)
        worker = Worker(hide=[exposed], private_root=Path(private) / "w", limits=LIMITS, isolate=False)
        try:
            with pytest.raises(WorkerError, match="readable by its unprivileged user"):
                worker.start(seed=0)
        finally:
            worker.close()


# -- 10. no sandbox, no grading -------------------------------------------------------------------------


def test_without_a_sandbox_the_batch_is_refused_unless_asked(tmp_path, monkeypatch):
    from grader.batch import BatchError, grade_batch

    monkeypatch.setattr("grader.batch.namespaces_available", lambda: False)  # a machine without namespaces
    (tmp_path / "alice.py").write_text(module(CORRECT_Q1))
    with pytest.raises(BatchError, match="--unsafe-no-sandbox"):
        grade_batch(submissions=tmp_path, out=tmp_path / "out", require_data=False, progress=False)
    assert not (tmp_path / "out").exists()
