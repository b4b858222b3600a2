"""Finding submissions in a folder and reading each into cells.

A submission is a ``.ipynb`` notebook, a ``.py`` module, or a sub-folder holding one of
them plus companion files (a saved checkpoint such as ``best_model.pt``). Anything that
cannot be read raises InvalidSubmission with a reason a person can act on; the batch
turns it into a graded result instead of stopping.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .preprocess import Cell, drop_empty, identify_questions, module_cells, prepare

SUFFIXES = (".ipynb", ".py")
MAX_SOURCE_BYTES = 20 << 20  # a notebook larger than this is not homework
MAX_COMPANION_BYTES = 512 << 20  # companion files travel to the worker in memory
COMPANION_SUFFIXES = (".pt", ".pth", ".safetensors", ".json", ".txt", ".npy", ".csv")


class InvalidSubmission(Exception):
    """The submission cannot be graded; the message says why."""


@dataclass
class Submission:
    name: str
    path: Path  # the notebook or module itself
    kind: str  # "notebook" or "module"
    sha256: str  # of the source and its companion files: the cache key
    cells: list[Cell]
    files: dict[str, bytes] = field(default_factory=dict)
    layout: str = "unknown"
    notes: list[str] = field(default_factory=list)
    template_version: str | None = None


def discover(folder: Path) -> list[Path]:
    """The submissions in ``folder``, sorted by name: its notebooks and modules, and its
    sub-folders (each graded as one submission)."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir() or (entry.is_file() and entry.suffix in SUFFIXES):
            found.append(entry)
    return found


def submission_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def main_file(path: Path) -> Path:
    """The notebook or module a submission path stands for."""
    if path.is_file():
        return path
    candidates = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith(".")
    )
    notebooks = [p for p in candidates if p.suffix == ".ipynb"]
    chosen = notebooks or candidates
    if not chosen:
        raise InvalidSubmission(f"the folder {path.name}/ holds no .ipynb or .py file")
    if len(chosen) > 1:
        names = ", ".join(p.name for p in chosen)
        raise InvalidSubmission(f"the folder {path.name}/ holds several candidates ({names}); keep one")
    return chosen[0]


def content_hash(path: Path) -> str:
    """sha256 over the submission's files (names and bytes), for the result cache."""
    digest = hashlib.sha256()
    files = [path, *_checkpoints_beside(path)] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(f.name.encode() + b"\0")
        digest.update(f.read_bytes())
    return digest.hexdigest()


def load_submission(path: Path, *, to_run: bool = True) -> Submission:
    """Read a submission into prepared cells; InvalidSubmission if it cannot be read.
    ``to_run=False`` leaves the cells as written, only attributed to their questions
    (for reading them, as the similarity analysis does: neutralising costs time)."""
    path = Path(path)
    if not path.exists():
        raise InvalidSubmission(f"{path} does not exist")
    source = main_file(path)
    if source.stat().st_size > MAX_SOURCE_BYTES:
        raise InvalidSubmission(f"{source.name} is larger than {MAX_SOURCE_BYTES >> 20} MB")
    raw = source.read_bytes()
    if source.suffix == ".ipynb":
        cells, layout, version, notes = _notebook_cells(raw, source.name)
        kind = "notebook"
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSubmission(f"{source.name} is not UTF-8 text") from None
        cells, version, notes = module_cells(text), None, []
        layout = "template" if "# >>> Question" in text else "unknown"
        kind = "module"
    cells = prepare(cells) if to_run else drop_empty(identify_questions(cells))
    for cell in cells:
        notes.extend(cell.notes)
    if layout == "unknown" and any(c.questions for c in cells):
        layout = "cs231n"
    return Submission(
        name=submission_name(path),
        path=source,
        kind=kind,
        sha256=content_hash(path),
        cells=cells,
        files=_companions(path),
        layout=layout,
        notes=notes,
        template_version=version,
    )


def _notebook_cells(raw: bytes, name: str) -> tuple[list[Cell], str, str | None, list[str]]:
    import nbformat

    notes: list[str] = []
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidSubmission(f"{name} is not a readable notebook (not valid JSON: {reason})") from None
    try:
        nb = nbformat.reads(text, as_version=4)  # upgrades v3 notebooks
    except Exception as exc:  # nbformat raises many kinds for broken files
        raise InvalidSubmission(f"{name} is not a readable notebook: {exc}") from None
    try:
        nbformat.validate(nb)
    except Exception as exc:
        summary = str(exc).strip().splitlines()[0][:200]
        if not all(isinstance(c, dict) and "cell_type" in c and "source" in c for c in nb.get("cells", [])):
            raise InvalidSubmission(f"{name} does not follow the notebook format: {summary}") from None
        notes.append(f"{name} does not fully follow the nbformat v4 schema ({summary}); graded anyway")
    meta = nb.metadata.get("autograder", {}) if isinstance(nb.metadata, dict) else {}
    version = meta.get("template_version") if isinstance(meta, dict) else None
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        outputs = []
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text_out = out.get("text", "")
                outputs.append("".join(text_out) if isinstance(text_out, list) else str(text_out))
        cells.append(
            Cell(
                index=index,
                source=str(source),
                label=f"cell {index + 1}",
                metadata=dict(cell.get("metadata", {})),
                outputs_text="".join(outputs),
            )
        )
    layout = "template" if version else "unknown"
    return cells, layout, version, notes


def _companions(path: Path) -> dict[str, bytes]:
    """Files beside the main file in a submission folder that the worker may need."""
    if path.is_file():
        files = {}
        for candidate in _checkpoints_beside(path):
            if candidate.stat().st_size <= MAX_COMPANION_BYTES:
                files["best_model.pt"] = candidate.read_bytes()
        return files
    files, total = {}, 0
    for f in sorted(path.rglob("*")):
        if not f.is_file() or f.suffix not in COMPANION_SUFFIXES:
            continue
        total += f.stat().st_size
        if total > MAX_COMPANION_BYTES:
            break
        files[str(f.relative_to(path))] = f.read_bytes()
    return files


def _checkpoints_beside(path: Path) -> list[Path]:
    """A lone notebook's checkpoint, saved next to it: <stem>.pt or <stem>_best_model.pt."""
    candidates = (path.with_suffix(".pt"), path.parent / f"{path.stem}_best_model.pt")
    return [c for c in candidates if c.is_file()]
