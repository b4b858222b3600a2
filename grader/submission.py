"""Finding submissions in a folder and reading each into cells.

A submission is a ``.ipynb`` notebook, a ``.py`` module, or a sub-folder holding one of
them plus companion files (a saved checkpoint such as ``best_model.pt``). Anything that
cannot be read raises InvalidSubmission with a reason a person can act on; the batch
turns it into a graded result instead of stopping.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .preprocess import Cell, drop_empty, identify_questions, module_cells, prepare

SUFFIXES = (".ipynb", ".py")
MAX_SOURCE_BYTES = 20 << 20  # a notebook larger than this is not homework
MAX_COMPANION_BYTES = 512 << 20  # companion files travel to the worker in memory
COMPANION_SUFFIXES = (".pt", ".pth", ".safetensors", ".json", ".txt", ".npy", ".csv")


class InvalidSubmission(Exception):
    """The submission cannot be graded; the message says why."""


class RefusedFile(Exception):
    """A file of a submission that the grader will not read (a link, a device, too large)."""


def read_submission_file(path: Path, *, root: Path, limit: int) -> bytes:
    """The bytes of a regular file inside ``root``, read without following any link.

    A student controls every name in a submission: a symbolic link called best_model.pt
    could point at /etc/shadow or at the grader's dataset cache, a hard link could be
    another name for a private file, a FIFO would block the read for ever. So no
    component from ``root`` down may be a symbolic link, the file is opened with
    O_NOFOLLOW (a link swapped in after the check is refused too) and must be a regular
    file with a single name, no larger than ``limit``. RefusedFile says why not.
    """
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if path != root and root not in path.parents:
        raise RefusedFile(f"{path.name} lies outside the submission, so it was not read")
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise RefusedFile(_refusal_note(f"{current.relative_to(root)} is a symbolic link"))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if path.is_symlink():  # swapped in since the check above
            raise RefusedFile(_refusal_note(f"{path.name} is a symbolic link")) from None
        raise RefusedFile(f"{path.name} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(_refusal_note(f"{path.name} is not a regular file"))
        if info.st_nlink > 1:
            raise RefusedFile(_refusal_note(f"{path.name} is a hard link (a second name for a file elsewhere)"))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise RefusedFile(f"{path.name} is larger than {limit >> 20} MB, so it was not read")
    return data


def _refusal_note(reason: str) -> str:
    return f"{reason}: links and special files in a submission are refused, so it was not read"


def _plain_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Every regular file under ``folder`` without following links (sorted), and a note
    for each link or special file found instead."""
    files, notes = [], []
    for top, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(dirs):
            if os.path.islink(os.path.join(top, name)):
                notes.append(_refusal_note(f"{Path(top, name).relative_to(folder)} is a symbolic link"))
        for name in names:
            entry = Path(top, name)
            mode = entry.lstat().st_mode
            if stat.S_ISREG(mode):
                files.append(entry)
            else:
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                notes.append(_refusal_note(f"{entry.relative_to(folder)} is {kind}"))
    return sorted(files), sorted(notes)


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
    """The notebook or module a submission path stands for (never through a link)."""
    if path.is_symlink():
        raise InvalidSubmission(_refusal_note(f"{path.name} is a symbolic link"))
    if path.is_file():
        return path
    candidates = sorted(
        p
        for p in path.iterdir()
        if p.suffix in SUFFIXES and not p.name.startswith(".") and (p.is_symlink() or p.is_file())
    )
    notebooks = [p for p in candidates if p.suffix == ".ipynb"]
    chosen = notebooks or candidates
    if not chosen:
        raise InvalidSubmission(f"the folder {path.name}/ holds no .ipynb or .py file")
    if len(chosen) > 1:
        names = ", ".join(p.name for p in chosen)
        raise InvalidSubmission(f"the folder {path.name}/ holds several candidates ({names}); keep one")
    if chosen[0].is_symlink():
        raise InvalidSubmission(_refusal_note(f"{path.name}/{chosen[0].name} is a symbolic link"))
    return chosen[0]


def content_hash(path: Path) -> str:
    """sha256 over the submission's files (names and bytes), for the result cache."""
    digest = hashlib.sha256()
    if path.is_symlink():  # refused when graded; its target is never read
        digest.update(b"link\0" + os.fsencode(os.readlink(path)))
        return digest.hexdigest()
    root = path.parent if path.is_file() else path
    files = [path, *_checkpoints_beside(path)] if path.is_file() else _plain_files(path)[0]
    for f in files:
        digest.update(f.name.encode() + b"\0")
        try:
            digest.update(read_submission_file(f, root=root, limit=MAX_COMPANION_BYTES))
        except RefusedFile as exc:
            digest.update(b"refused\0" + str(exc).encode())
    return digest.hexdigest()


def load_submission(path: Path, *, to_run: bool = True) -> Submission:
    """Read a submission into prepared cells; InvalidSubmission if it cannot be read.
    ``to_run=False`` leaves the cells as written, only attributed to their questions
    (for reading them, as the similarity analysis does: neutralising costs time)."""
    path = Path(path)
    if not path.exists():
        raise InvalidSubmission(f"{path} does not exist")
    source = main_file(path)
    try:
        raw = read_submission_file(source, root=source.parent, limit=MAX_SOURCE_BYTES)
    except RefusedFile as exc:
        raise InvalidSubmission(str(exc)) from None
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
    if path.is_file() and (checkpoint := checkpoint_beside(path)):
        notes.append(f"graded with the checkpoint {checkpoint.name}, found beside {path.name}")
    for cell in cells:
        notes.extend(cell.notes)
    if layout == "unknown" and any(c.questions for c in cells):
        layout = "cs231n"
    files, refused = _companions(path)
    return Submission(
        name=submission_name(path),
        path=source,
        kind=kind,
        sha256=content_hash(path),
        cells=cells,
        files=files,
        layout=layout,
        notes=[*notes, *refused],
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


def _companions(path: Path) -> tuple[dict[str, bytes], list[str]]:
    """Files beside the main file in a submission folder that the worker may need, and a
    note for each one refused (a link, a special file: see read_submission_file)."""
    files, notes = {}, []
    if path.is_file():
        for candidate in [*_checkpoints_beside(path), *_links_beside(path)]:
            suffix = ".pt" if candidate.suffix == ".pth" else candidate.suffix
            try:
                files[f"best_model{suffix}"] = read_submission_file(
                    candidate, root=path.parent, limit=MAX_COMPANION_BYTES
                )
            except RefusedFile as exc:
                notes.append(str(exc))
        return files, notes
    found, notes = _plain_files(path)
    total = 0
    for f in found:
        if f.suffix not in COMPANION_SUFFIXES:
            continue
        try:
            data = read_submission_file(f, root=path, limit=MAX_COMPANION_BYTES - total)
        except RefusedFile as exc:
            notes.append(str(exc))
            continue
        total += len(data)
        files[str(f.relative_to(path))] = data
    return files, notes


def _checkpoints_beside(path: Path) -> list[Path]:
    """A lone notebook's or module's checkpoint, saved next to it (at most one)."""
    found = checkpoint_beside(path)
    return [found] if found else []


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
# The identity LMS exports put before each file a student uploads: Canvas writes
# ``smithjohn_12345_67890_hw.ipynb`` (name, user id, file id), with ``_late`` after the name.
_STUDENT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z-]*(?:_late)?_\d+)_", re.I)


def checkpoint_beside(path: Path) -> Path | None:
    """The checkpoint that belongs to the notebook or module ``path`` in the same
    folder: one named after it (``hw.pt``, ``hw_best_model.pth``), else one sharing its
    student prefix (``smithjohn_12345_..._best_model.pt`` beside
    ``smithjohn_12345_..._hw.ipynb``), else, when ``path`` is the folder's only
    submission file, its only checkpoint (``best_model.pt``). None when it is ambiguous."""
    folder = path.parent
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and not p.is_symlink() and p.is_file()]
    except OSError:
        return None
    checkpoints = sorted(p for p in entries if p.suffix in CHECKPOINT_SUFFIXES)
    sources = [p for p in entries if p.suffix in SUFFIXES]
    for name in (path.stem, f"{path.stem}_best_model"):
        named = [p for p in checkpoints if p.stem == name]
        if named:
            return named[0]
    key = _STUDENT_PREFIX.match(path.name)
    if key:
        prefix = key.group(1).lower()

        def mine(p):
            return (m := _STUDENT_PREFIX.match(p.name)) is not None and m.group(1).lower() == prefix

        theirs = [p for p in checkpoints if mine(p)]
        if len(theirs) == 1 and [p.name for p in sources if mine(p)] == [path.name]:
            return theirs[0]
        return None
    if [p.name for p in sources] == [path.name] and len(checkpoints) == 1:
        return checkpoints[0]
    return None


def _links_beside(path: Path) -> list[Path]:
    """The same names when they are links or special files: refused, with a note."""
    candidates = (path.with_suffix(".pt"), path.parent / f"{path.stem}_best_model.pt")
    return [c for c in candidates if c.is_symlink() or (c.exists() and not c.is_file())]
