"""Gradescope: build an autograder.zip, and grade one submission inside it.

``build_autograder`` writes the zip an instructor uploads: ``setup.sh`` (installs Python,
CPU torch and this grader from the wheel inside, then decodes CIFAR-10 once), the
``run_autograder`` script, the rubric, the dataset (or the instruction to download it at
build time) and ``config.json``. Gradescope unpacks it into ``/autograder/source``.

``run_autograder`` grades ``$AUTOGRADER_ROOT/submission/`` (default ``/autograder``) as ONE
submission (a notebook or module with its checkpoint) and always writes
``$AUTOGRADER_ROOT/results/results.json``: a crash of the grader becomes a result with no
points and a plain message, its traceback going to stdout, which only instructors see.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import importlib.metadata
import io
import json
import math
import os
import shutil
import tarfile
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

from .assignment import default_assignment
from .render import gradescope
from .version import __version__

DISTRIBUTION = "cifar10-autograder"
PACKAGES = ("grader", "reference_solution")  # the wheel holds the answer key: setup.sh installs it, trusted side only
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_ROOT = "/autograder"
CRASH_MESSAGE = (
    "The autograder itself failed while grading this submission, so no points could be given."
    " This is not a verdict on your work: please tell your instructor, who can see what went wrong."
)

SETUP_SH = """\
#!/usr/bin/env bash
# Installs the CIFAR-10 autograder on Gradescope's Ubuntu image (written by `grade gradescope build`).
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip util-linux >/dev/null
python3 -m venv /autograder/venv
PIP="/autograder/venv/bin/python -m pip install --no-cache-dir --quiet"
$PIP --upgrade pip
# torch first, from {torch_index_note}, so that the grader's requirement is already met.
$PIP torch torchvision {torch_index}
$PIP wheels/*.whl
# Decode CIFAR-10 now, once, into the cache every grading run reads.
/autograder/venv/bin/python -m grader gradescope prepare --source /autograder/source
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Grades $AUTOGRADER_ROOT/submission (default /autograder) as one submission and writes
# $AUTOGRADER_ROOT/results/results.json (written by `grade gradescope build`).
# Whatever happens, a results file is written: if the grader cannot even finish, this
# script writes one with no points and a message for the student.
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
RESULTS="$ROOT/results/results.json"
PYTHON="$ROOT/venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
FALLBACK='{fallback}'
cd "$ROOT" || exit 1
[ -d "$ROOT/results" ] || mkdir -p "$ROOT/results"
: > "$RESULTS"  # nothing written before grading counts
"$PYTHON" -m grader gradescope run --root "$ROOT"
status=$?
if [ "$status" -ne 0 ] || [ ! -s "$RESULTS" ]; then
  echo "run_autograder: the grader stopped with exit status $status; writing a results file with no points"
  printf '%s\\n' "${{FALLBACK/EXIT_STATUS/$status}}" > "$RESULTS"
fi
exit 0
"""


def _fallback_results() -> str:
    """The results.json run_autograder writes itself when the grader could not finish."""
    doc = {
        "score": 0,
        "execution_time": 1,
        "output": CRASH_MESSAGE,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
        "extra_data": {"exit_status": "EXIT_STATUS"},
    }
    text = json.dumps(doc).replace('"EXIT_STATUS"', "EXIT_STATUS")
    assert "'" not in text  # it sits between single quotes in the script
    return text


# -- building the zip ---------------------------------------------------------------------------


def build_autograder(
    *,
    out: Path,
    rubric: Path | None = None,
    data: Path | None = None,
    download: bool = False,
    torch_index: str | None = CPU_TORCH_INDEX,
    train_budget: float = 900.0,
    variant: Path | None = None,
) -> Path:
    """Write the Gradescope autograder zip to ``out`` and return it.

    ``data`` (a .tar.gz, or a folder, archived here) travels inside the zip; without it,
    ``download`` makes setup.sh fetch the canonical set with torchvision when Gradescope
    builds the image. ``torch_index`` is the package index for torch (CPU builds by
    default; None: PyPI's own, CUDA builds). ``variant`` (a file, see ``grade assign
    --variant``) grades a variant of the homework. The rubric is checked before anything is written.
    """
    variants = default_assignment().variants()
    from .rubric import DEFAULT_RUBRIC, load_rubric

    rubric_path = Path(rubric) if rubric else DEFAULT_RUBRIC
    loaded = load_rubric(rubric_path)  # RubricError: a rubric that does not match the checks is refused now
    rubric_text = rubric_path.read_bytes()
    varied = variants.load_variant(variant) if variant is not None else None  # VariantError: refused now too
    if varied is not None:
        variants.rubric_for_variant(loaded, varied, explicit=rubric is not None)
        if rubric is None:
            rubric_text = variants.variant_rubric_text(rubric_text.decode(), varied).encode()
    if data is None and not download:
        raise ValueError("give the dataset (--data PATH) or let setup.sh download it (--download)")
    if data is not None and not Path(data).exists():
        raise FileNotFoundError(f"{data} does not exist")
    config: dict[str, Any] = {
        "grader_version": __version__,
        "data": None,
        "download": data is None,
        "train_budget": train_budget,
    }
    index = f"--index-url {torch_index}" if torch_index else ""
    setup = SETUP_SH.format(torch_index=index, torch_index_note=torch_index or "PyPI")
    run = RUN_AUTOGRADER.format(fallback=_fallback_results())

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _add(zf, "setup.sh", setup.encode(), executable=True)
            _add(zf, "run_autograder", run.encode(), executable=True)
            _add(zf, "rubric.toml", rubric_text)
            if varied is not None:
                _add(zf, "variant.toml", variants.variant_toml(varied).encode())
            wheel_name, wheel = build_wheel()
            _add(zf, f"wheels/{wheel_name}", wheel)
            if data is not None:
                config["data"] = _add_dataset(zf, Path(data))
            _add(zf, "config.json", (json.dumps(config, indent=2) + "\n").encode())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _add(zf: zipfile.ZipFile, name: str, data: bytes, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # same inputs, same zip
    info.external_attr = (0o755 if executable else 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _add_dataset(zf: zipfile.ZipFile, path: Path) -> str:
    """Put the dataset in the zip as one file, stored as it is (an archive is already
    compressed; a folder is archived first); return its name there."""
    with tempfile.TemporaryDirectory() as tmp:
        if path.is_dir():
            archive = Path(tmp) / f"{path.name}.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(path, arcname=path.name)
            path = archive
        name = f"data/{path.name}"
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        with path.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return name


def build_wheel() -> tuple[str, bytes]:
    """A wheel of the grader and answer key as they are here, made from the package files
    and the project's metadata: no build tools or network needed."""
    version, metadata, scripts = _project_metadata()
    tag = f"{DISTRIBUTION.replace('-', '_')}-{version}"
    info = f"{tag}.dist-info"
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        root = Path(str(__import__(package).__file__)).resolve().parent
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                files[f"{package}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: grader.gradescope\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = (
        "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    ).encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            _add(zf, name, data)
    return f"{tag}-py3-none-any.whl", buffer.getvalue()


def _project_metadata() -> tuple[str, str, dict[str, str]]:
    """Version, METADATA text and console scripts: from pyproject.toml in a source
    checkout (an editable install's recorded metadata may be older), else from the
    installed distribution."""
    from .rubric import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        lines = [
            "Metadata-Version: 2.1",
            f"Name: {project['name']}",
            f"Version: {project['version']}",
            f"Summary: {project.get('description', '')}",
            f"Requires-Python: {project.get('requires-python', '>=3.10')}",
            *(f"Requires-Dist: {d}" for d in project.get("dependencies", [])),
        ]
        return project["version"], "\n".join(lines) + "\n", dict(project.get("scripts", {}))
    dist = importlib.metadata.distribution(DISTRIBUTION)
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    return dist.version, dist.read_text("METADATA") or "", scripts


# -- inside Gradescope ---------------------------------------------------------------------------


def _config(source: Path) -> dict[str, Any]:
    return json.loads((source / "config.json").read_text())


def _load_data(source: Path, config: dict[str, Any], *, download: bool = False):
    from .data import load_cifar10

    data = source / config["data"] if config.get("data") else source / "data"
    return load_cifar10(data, cache_dir=source / "cache", download=download)


def prepare(*, source: Path) -> None:
    """setup.sh's last step: fetch CIFAR-10 if so configured, and decode it into the cache."""
    config = _config(source)
    dataset = _load_data(source, config, download=bool(config.get("download")))
    print(f"CIFAR-10 ready: {len(dataset.train_labels)} training and {len(dataset.test_labels)} test images")


def run_autograder(*, root: Path) -> dict[str, Any]:
    """Grade ``root/submission`` and write ``root/results/results.json``; never raises."""
    started = time.monotonic()
    results = root / "results" / "results.json"
    try:
        doc = _grade(root)
    except Exception:
        # stdout is shown to instructors only; students get the plain message.
        print("run_autograder: the grader failed:\n" + traceback.format_exc(), flush=True)
        doc = _crash_doc(root, time.monotonic() - started)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _grade(root: Path) -> dict[str, Any]:
    import torch

    variants = default_assignment().variants()
    from .batch import private_paths
    from .engine import grade_submission
    from .rubric import load_rubric
    from .sandbox import Limits, hideable, namespaces_available

    source = root / "source"
    config = _config(source)
    rubric = load_rubric(source / "rubric.toml")
    variant = variants.load_variant(source / "variant.toml") if (source / "variant.toml").exists() else None
    metadata = read_metadata(root / "submission_metadata.json")
    folder = submission_folder(root / "submission")
    loader = functools.partial(_load_data, source, config)
    threads = available_cpus()
    torch.set_num_threads(threads)
    limits = Limits(threads=threads, train_seconds=float(config.get("train_budget", 900.0)))
    # The source folder holds the rubric, the dataset and its cache: nothing a student may read.
    hide = private_paths(submissions=folder, out=root / "results", data=None, cache_dir=str(source / "cache"))
    if hideable(source):
        hide.append(source.resolve())
    if not namespaces_available():
        # submission_metadata.json carries earlier results: the worker may not read it either.
        hide.append((root / "submission_metadata.json").resolve())
        print(
            "run_autograder: Linux namespaces are not available here; the student's code runs as a plain"
            + (
                " subprocess under an unprivileged uid of its own, with the answer key, the dataset and the"
                " grader's files closed to it (see README, Deploying on Gradescope)"
                if os.geteuid() == 0
                else " subprocess and could read the grader's files (see README, Deploying on Gradescope)"
            ),
            flush=True,
        )
    result = grade_submission(path=folder, rubric=rubric, data_loader=loader, limits=limits, hide=hide, variant=variant)
    if metadata:
        result.name = metadata["name"] or result.name
        result.student = student_identity(metadata)
    lines = [metadata["lateness"]] if metadata.get("lateness") else []
    doc = gradescope(result, lines=lines)
    doc["extra_data"]["gradescope"] = metadata
    print(f"run_autograder: {result.name}: {result.status}, {result.score:g} / {result.max_score:g}", flush=True)
    return doc


def _crash_doc(root: Path, duration: float) -> dict[str, Any]:
    """results.json for a grader that failed: every check present with no points if the
    rubric can be read, the plain message either way."""
    tests: list[dict[str, Any]] = []
    try:
        variants = default_assignment().variants()
        from .batch import crashed_result
        from .rubric import load_rubric

        source = root / "source"
        variant = variants.load_variant(source / "variant.toml") if (source / "variant.toml").exists() else None
        result = crashed_result(
            root / "submission", CRASH_MESSAGE, load_rubric(source / "rubric.toml"), variant=variant
        )
        result.duration = duration
        return gradescope(result)
    except Exception:
        return {
            "score": 0,
            "execution_time": max(1, round(duration)),
            "output": CRASH_MESSAGE,
            "output_format": "text",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
        }


def submission_folder(folder: Path) -> Path:
    """The folder holding the submission: Gradescope unpacks an uploaded zip as it is, so a
    lone sub-folder (``hw5/notebook.ipynb``) stands for the submission itself."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))] if folder.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


def available_cpus() -> int:
    """CPUs this container may use: Gradescope's limit is a cgroup quota, which
    os.cpu_count() does not see (it counts the host's)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            fields = Path(path).read_text().split()
            if path.endswith("cpu.max"):
                quota, period = fields[0], fields[1]
            else:
                quota, period = fields[0], Path(path).with_name("cpu.cfs_period_us").read_text().split()[0]
            if quota not in ("max", "-1"):
                cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
            break
        except (OSError, ValueError, IndexError):
            continue
    return max(1, cpus)


def read_metadata(path: Path) -> dict[str, Any]:
    """Who submitted and when, from Gradescope's submission_metadata.json ({} without it):
    names, ids and emails, the due dates, and how late the submission was, in words."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    users = [u for u in raw.get("users") or [] if isinstance(u, dict)]
    assignment: dict[str, Any] = raw["assignment"] if isinstance(raw.get("assignment"), dict) else {}
    out: dict[str, Any] = {
        "submission_id": raw.get("id"),
        "name": " & ".join(str(u.get("name")) for u in users if u.get("name")),  # a group, as intake.py joins it
        "users": [{k: u.get(k) for k in ("id", "sid", "name", "email")} for u in users],
        "created_at": raw.get("created_at"),
        "due_date": assignment.get("due_date"),
        "late_due_date": assignment.get("late_due_date"),
        "assignment": assignment.get("title"),
    }
    submitted, due = _timestamp(raw.get("created_at")), _timestamp(assignment.get("due_date"))
    if submitted and due:
        late = (submitted - due).total_seconds()
        out["late_seconds"] = max(0, round(late))
        if late > 0:
            out["lateness"] = f"Submitted {_duration(late)} after the due date ({assignment.get('due_date')})."
    return out


def student_identity(metadata: dict[str, Any]) -> dict[str, Any]:
    """The submitter as the rest of the grader records one (intake.Identity)."""
    from .intake import Identity

    users = metadata.get("users", [])
    return Identity(
        name=metadata.get("name", ""),
        student_id=" & ".join(str(u.get("sid") or u.get("id")) for u in users if u.get("sid") or u.get("id")),
        lms_submission_id=str(metadata.get("submission_id") or ""),
        lms="gradescope",
        email=" & ".join(str(u["email"]) for u in users if u.get("email")),
        submitted_at=str(metadata.get("created_at") or ""),
        flagged_late=bool(metadata.get("late_seconds")),
    ).to_dict()


def _timestamp(text: Any) -> datetime.datetime | None:
    try:
        value = datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts) or f"{int(seconds)} s"
