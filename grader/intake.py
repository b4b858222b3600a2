"""From an LMS download to submissions with a student's identity.

``gather`` takes what an instructor downloaded (a folder, or a ``.zip`` that it extracts
safely) and returns one ``Entry`` per student: the file or folder to grade, who submitted
it, and a stable, unique, readable folder name for its reports. Layouts recognised:

- Canvas: ``smithjohn_12345_67890_hw05.ipynb`` (login, user id, file id, the uploaded
  name), ``doejane_LATE_23456_...`` when Canvas flagged it late; a student's several
  files (a notebook and its checkpoint) are one submission.
- Moodle: ``Ana García_34567_assignsubmission_file_/`` folders (or the same prefix on
  each file when downloaded without folders); 34567 is the participant id.
- Gradescope's "Export Submissions": ``submission_metadata.yml`` beside
  ``submission_<id>/`` folders (names, SIDs, emails and submission times).
- Plain: one notebook, module or folder per student; the name is the file's stem.

Entries that cannot be a submission (unknown file types, symbolic links) are listed
in ``Intake.skipped`` with the reason, never dropped silently.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
import shutil
import stat
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from .submission import COMPANION_SUFFIXES, SUFFIXES, submission_name

# What a download may hold: more is not a class's homework.
MAX_ZIP_FILES = 20_000
MAX_ZIP_BYTES = 8 << 30  # uncompressed, all files together
MAX_ZIP_FILE_BYTES = 1 << 30  # one file
# Files the batch writes beside the submissions' folders: no submission may take these names.
RESERVED = {"index.html", "gradebook.csv", "summary.json", "batch.json", "canvas.csv", "moodle.csv", "gradescope.csv"}
NOISE = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
GRADESCOPE_METADATA = "submission_metadata.yml"

CANVAS = re.compile(r"^(?P<login>[^_\s]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<file_id>\d+)_(?P<file>.+)$")
# Moodle appends "_" after the plugin when the folder or file name follows.
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_assignsubmission_(?P<plugin>[a-z]+)(?:_(?P<file>.*))?$")
CANVAS_RESUBMITTED = re.compile(r"^(?P<stem>.+)-\d+(?P<suffix>\.[A-Za-z0-9]+)$")  # best_model-1.pt


class IntakeError(Exception):
    """The download cannot be read at all (a damaged or oversized zip); exit status 2."""


@dataclass(frozen=True)
class Identity:
    """Who submitted, as far as the LMS says."""

    name: str = ""
    student_id: str = ""  # Canvas user id, Moodle participant id, Gradescope SID
    lms_submission_id: str = ""  # Canvas file id, Gradescope submission id
    lms: str = ""  # "canvas", "moodle", "gradescope" or "" (a plain folder)
    login: str = ""  # Canvas's login-like name (smithjohn)
    email: str = ""
    submitted_at: str = ""  # ISO 8601, when the LMS says
    flagged_late: bool = False  # the LMS marked the submission late

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Entry:
    path: Path  # the notebook, module or folder the engine grades
    identity: Identity
    folder: str = ""  # its folder under reports/: stable, unique, readable
    files: list[str] = field(default_factory=list)  # what it was gathered from, relative to the download

    @property
    def student(self) -> dict:
        """The identity as results carry it, with the reports folder (also a name for the student)."""
        return {**self.identity.to_dict(), "folder": self.folder}


@dataclass
class Intake:
    entries: list[Entry]
    skipped: list[tuple[str, str]]  # (path in the download, why it is not graded)
    layouts: list[str]  # the layouts recognised, e.g. ["canvas"]
    root: Path  # where the submissions were read (the extracted zip, or the folder)


def normal(text: str) -> str:
    """Names compared as a person would: Unicode NFC, case and surrounding spaces ignored."""
    return unicodedata.normalize("NFC", str(text)).strip().casefold()


def safe_name(text: str) -> str:
    """A folder name that keeps accented letters (Ana_García), not path separators or dots in front."""
    text = unicodedata.normalize("NFC", text)
    safe = re.sub(r"[^\w.-]+", "_", text).strip("._-") or "submission"
    return safe[:80]


# -- the download -------------------------------------------------------------------------------


def gather(source: Path, *, workdir: Path) -> Intake:
    """The submissions in ``source`` (a folder, a .zip, or one notebook or module).
    A zip is extracted under ``workdir``; students' several files are grouped there too."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".zip":
        skipped: list[tuple[str, str]] = []
        root = extract_zip(source, workdir / "zip", skipped)
        intake = gather_folder(unwrap(root), workdir=workdir)
        intake.skipped[:0] = skipped
        return intake
    if source.is_file():
        return Intake(
            [Entry(source, Identity(name=submission_name(source)), files=[source.name])], [], ["plain"], source
        )
    return gather_folder(source, workdir=workdir)


def extract_zip(archive: Path, workdir: Path, skipped: list[tuple[str, str]]) -> Path:
    """Extract ``archive`` into a folder named after its content, refusing what could
    escape it or fill the disk: absolute or ``..`` paths, symbolic links, more than
    MAX_ZIP_FILES files or MAX_ZIP_BYTES bytes. The same zip is extracted once."""
    digest = hashlib.sha256()
    with archive.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    dest = workdir / f"{safe_name(archive.stem)}-{digest.hexdigest()[:12]}"
    done = dest / ".extracted"
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise IntakeError(f"{archive.name} is not a readable zip file: {exc}") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_FILES:
            raise IntakeError(f"{archive.name} holds {len(members):,} files; the limit is {MAX_ZIP_FILES:,}")
        if done.exists():
            skipped.extend(_refused(members))  # listed again on every run
            return dest
        if dest.exists():
            shutil.rmtree(dest)  # a half-finished extraction
        dest.mkdir(parents=True)
        total = 0
        for info in members:
            rel, why = _member_path(info)
            if why:
                skipped.append((info.filename, why))
                continue
            if rel is None or info.is_dir():
                continue
            if info.file_size > MAX_ZIP_FILE_BYTES:
                skipped.append((info.filename, f"larger than {MAX_ZIP_FILE_BYTES >> 20} MB"))
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, target.open("wb") as out:
                    # Count what is really decompressed: a zip's declared sizes may lie.
                    for block in iter(functools.partial(src.read, 1 << 20), b""):
                        written += len(block)
                        total += len(block)
                        if written > MAX_ZIP_FILE_BYTES or total > MAX_ZIP_BYTES:
                            raise IntakeError(
                                f"{archive.name} expands to more than {MAX_ZIP_BYTES >> 30} GB "
                                f"(or a file beyond {MAX_ZIP_FILE_BYTES >> 20} MB); refusing it"
                            )
                        out.write(block)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                target.unlink(missing_ok=True)
                skipped.append((info.filename, f"could not be extracted: {exc}"))
            except IntakeError:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    done.write_text("")
    return dest


def _refused(members: list[zipfile.ZipInfo]) -> list[tuple[str, str]]:
    return [(m.filename, why) for m in members for _, why in [_member_path(m)] if why]


def _member_path(info: zipfile.ZipInfo) -> tuple[PurePosixPath | None, str]:
    """The member's path inside the extraction folder, or why it is refused."""
    name = unicodedata.normalize("NFC", info.filename.replace("\\", "/"))
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return None, "a symbolic link (refused)"
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        return None, "a path outside the download (refused)"
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p in NOISE or p.startswith("._") for p in parts):
        return None, ""
    return PurePosixPath(*parts), ""


def unwrap(root: Path) -> Path:
    """A zip often wraps everything in one folder: look inside it, unless that folder is
    itself one student's submission (a notebook in it, or an LMS's per-student folder)."""
    while True:
        children = [c for c in root.iterdir() if not c.name.startswith(".")]
        if len(children) != 1 or not children[0].is_dir() or children[0].is_symlink():
            return root
        inner = children[0]
        if MOODLE.match(inner.name) or inner.name.startswith("submission_"):
            return root
        names = [c.name for c in inner.iterdir()]
        wrapper = GRADESCOPE_METADATA in names or any(CANVAS.match(n) or MOODLE.match(n) for n in names)
        if not wrapper and any(Path(n).suffix in SUFFIXES for n in names):
            return root  # one student's folder: grade it as one submission
        root = inner


# -- layouts ------------------------------------------------------------------------------------


def gather_folder(folder: Path, *, workdir: Path) -> Intake:
    skipped: list[tuple[str, str]] = []
    if (folder / GRADESCOPE_METADATA).is_file():
        entries = _gradescope(folder, skipped)
        layouts = ["gradescope"]
    else:
        entries, layouts = _by_name(folder, workdir / "grouped", skipped)
    assign_folders(entries)
    entries.sort(key=lambda e: e.folder.casefold())
    return Intake(entries, skipped, layouts, folder)


def _listing(folder: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    """The folder's entries, less hidden ones and symbolic links (listed as skipped)."""
    found = []
    for entry in sorted(folder.iterdir()):
        name = unicodedata.normalize("NFC", entry.name)
        if name.startswith((".", "_")) or name in NOISE:
            continue
        if entry.is_symlink():
            why = "a symbolic link (not followed)" if entry.exists() else "a dangling symbolic link"
            skipped.append((name, why))
            continue
        found.append(entry)
    return found


def _kind(path: Path) -> str:
    """ "main" (a notebook or module), "companion" (a checkpoint or data file), or "other"."""
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return "main"
    if suffix in COMPANION_SUFFIXES:
        return "companion"
    return "other"


def _by_name(folder: Path, staging: Path, skipped: list[tuple[str, str]]) -> tuple[list[Entry], list[str]]:
    """Canvas, Moodle and plain entries, told apart by their names."""
    groups: dict[tuple, tuple[Identity, list[tuple[Path, str]]]] = {}
    plain: list[Path] = []
    layouts: set[str] = set()
    for path in _listing(folder, skipped):
        name = unicodedata.normalize("NFC", path.name)
        moodle, canvas = MOODLE.match(name), CANVAS.match(name)
        if moodle:
            layouts.add("moodle")
            if moodle["plugin"] != "file":
                skipped.append((name, f"Moodle {moodle['plugin']} submission (only files are graded)"))
                continue
            identity = Identity(name=moodle["name"].strip(), student_id=moodle["participant"], lms="moodle")
            key = ("moodle", moodle["participant"])
            files = [(path, "")] if path.is_dir() else [(path, moodle["file"] or name)]
        elif canvas and path.is_file():
            layouts.add("canvas")
            identity = Identity(
                name=canvas["login"],
                login=canvas["login"],
                student_id=canvas["user"],
                lms="canvas",
                flagged_late=bool(canvas["late"]),
            )
            key = ("canvas", canvas["user"])
            files = [(path, _canvas_original(canvas["file"]))]
        else:
            if path.is_file() and _kind(path) == "other":
                skipped.append((name, f"not a notebook, module or folder ({path.suffix or 'no extension'})"))
            elif path.is_file() and _kind(path) == "companion":
                pass  # a checkpoint beside a lone notebook travels with it (submission.py)
            else:
                plain.append(path)
            continue
        if key in groups:
            old, old_files = groups[key]
            groups[key] = (_merge(old, identity), old_files + files)
        else:
            groups[key] = (identity, files)

    entries: list[Entry | None] = [Entry(p, Identity(name=submission_name(p)), files=[p.name]) for p in plain]
    if plain:
        layouts.add("plain")
    for identity, files in groups.values():
        entries.append(_group_entry(identity, files, folder, staging, skipped))
    return [e for e in entries if e is not None], sorted(layouts)


def _canvas_original(name: str) -> str:
    """The name the student uploaded: Canvas adds -1, -2... to a file submitted again."""
    match = CANVAS_RESUBMITTED.match(name)
    return f"{match['stem']}{match['suffix']}" if match else name


def _merge(a: Identity, b: Identity) -> Identity:
    """One student's several files: late if any file was late; the Canvas file id of the
    notebook is the one that names the submission (kept from the first file)."""
    return Identity(**{**a.to_dict(), "flagged_late": a.flagged_late or b.flagged_late})


def _group_entry(
    identity: Identity, files: list[tuple[Path, str]], root: Path, staging: Path, skipped: list[tuple[str, str]]
) -> Entry | None:
    """One student's files as one submission: the folder itself when the LMS gave one,
    else a folder under ``staging`` holding the files under the names the student gave them."""
    listed = [str(p.relative_to(root)) for p, _ in files]
    if len(files) == 1 and files[0][0].is_dir():
        return Entry(files[0][0], identity, files=listed)
    usable = []
    for path, original in files:
        if path.is_dir() or _kind(path) == "other":
            skipped.append(
                (str(path.relative_to(root)), f"not a notebook, module or checkpoint ({path.suffix or 'a folder'})")
            )
        else:
            usable.append((path, original))
    if not usable:
        return None  # nothing gradable (each file is listed as skipped)
    mains = [(p, o) for p, o in usable if _kind(p) == "main"]
    if len(usable) == 1 and mains:
        path = mains[0][0]
        if identity.lms == "canvas":
            m = CANVAS.match(unicodedata.normalize("NFC", path.name))
            identity = Identity(**{**identity.to_dict(), "lms_submission_id": m["file_id"] if m else ""})
        return Entry(path, identity, files=listed)
    if identity.lms == "canvas" and mains:
        m = CANVAS.match(unicodedata.normalize("NFC", mains[0][0].name))
        identity = Identity(**{**identity.to_dict(), "lms_submission_id": m["file_id"] if m else ""})
    # The staged folder is rebuilt from the download each run: same bytes, same cache key.
    folder = staging / f"{identity.lms}-{safe_name(identity.student_id or identity.name)}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path, original in usable:
        target = folder / safe_name(original)
        n = 2
        while target.exists():
            target = folder / f"{Path(safe_name(original)).stem}-{n}{Path(original).suffix}"
            n += 1
        shutil.copyfile(path, target)
    return Entry(folder, identity, files=listed)


def _gradescope(folder: Path, skipped: list[tuple[str, str]]) -> list[Entry]:
    """Gradescope's export: submission_metadata.yml names each submission_<id>/ folder."""
    meta = read_gradescope_metadata(folder / GRADESCOPE_METADATA)
    entries = []
    for path in _listing(folder, skipped):
        if path.name == GRADESCOPE_METADATA:
            continue
        if not path.is_dir():
            skipped.append((path.name, "not a submission folder of the Gradescope export"))
            continue
        info = meta.get(path.name)
        submission_id = path.name.removeprefix("submission_")
        if info is None:
            identity = Identity(name=path.name, lms_submission_id=submission_id, lms="gradescope")
        else:
            identity = Identity(**{**info, "lms_submission_id": submission_id, "lms": "gradescope"})
        entries.append(Entry(path, identity, files=[path.name]))
    return entries


def read_gradescope_metadata(path: Path) -> dict[str, dict]:
    """submission_<id> -> name, student_id, email, submitted_at. Gradescope writes Ruby
    symbols as keys (``:submitters:``); several submitters (a group) are joined with " & "."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise IntakeError(f"cannot read {path.name}: {exc}") from None
    out: dict[str, dict] = {}
    for key, value in (doc or {}).items() if isinstance(doc, dict) else []:
        if not isinstance(value, dict):
            continue
        value = {str(k).lstrip(":"): v for k, v in value.items()}
        submitters = [
            {str(k).lstrip(":"): v for k, v in s.items()} for s in value.get("submitters") or [] if isinstance(s, dict)
        ]
        created = value.get("created_at")
        if isinstance(created, datetime.datetime):
            created = created.isoformat()
        out[str(key).lstrip(":")] = {
            "name": " & ".join(str(s.get("name", "")) for s in submitters),
            "student_id": " & ".join(str(s.get("sid") or "") for s in submitters).strip(" &"),
            "email": " & ".join(str(s.get("email") or "") for s in submitters).strip(" &"),
            "submitted_at": str(created or ""),
        }
    return out


# -- folder names ------------------------------------------------------------------------------


def assign_folders(entries: list[Entry]) -> None:
    """Give every entry a folder name under reports/ that is readable (the student's name
    and id), stable (it depends on the entry alone, not on the others' order) and unique:
    where two names collide (alice.ipynb and alice/), each is told apart by its full
    file name, then by a short hash of its path, so no result overwrites another."""

    def base(e: Entry) -> str:
        i = e.identity
        if i.lms:
            return safe_name("_".join(v for v in (i.login or i.name, i.student_id or i.lms_submission_id) if v))
        return safe_name(submission_name(e.path))

    def full(e: Entry) -> str:
        return safe_name(e.path.name) if not e.identity.lms else base(e)

    def hashed(e: Entry) -> str:
        return f"{base(e)}-{hashlib.sha256(str(e.files or e.path.name).encode()).hexdigest()[:6]}"

    names = {id(e): base(e) for e in entries}
    for step in (full, hashed):
        counts: dict[str, int] = {}
        for e in entries:
            key = names[id(e)].casefold()
            counts[key] = counts.get(key, 0) + 1
        for e in entries:
            name = names[id(e)]
            if counts[name.casefold()] > 1 or name.casefold() in RESERVED:
                names[id(e)] = step(e)
    for e in entries:
        e.folder = names[id(e)]
