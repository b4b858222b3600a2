"""Inspecting a submitted checkpoint on the trusted side without running it.

A ``.pt`` file is a zip holding a pickle. Loading a pickle can run any code, so the
grader never loads one: it reads the pickle's opcodes (``pickletools.genops`` parses,
it does not execute) and accepts the file only if every global it names is one a plain
state_dict needs. The worker then loads it with ``torch.load(weights_only=True)``.
``.safetensors`` files are plain data and are parsed here directly.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct
import time
import zipfile
from dataclasses import dataclass

import torch

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
PREFERRED_NAMES = ("best_model.pt", "best_model.pth", "best_model.safetensors")

# The globals a state_dict of tensors pickles to.
_STORAGES = {
    f"{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
}
SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    *(("torch", s) for s in _STORAGES),
}
_CODE_RUNNERS = (
    "os",
    "posix",
    "subprocess",
    "builtins",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "runpy",
    "pty",
    "code",
    "eval",
    "exec",
)

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass
class CheckpointInfo:
    name: str
    format: str  # "torch-zip", "safetensors" or "unknown"
    safe: bool
    problem: str = ""
    state: dict[str, torch.Tensor] | None = None  # parsed here for safetensors only


# A state_dict's data.pkl names each tensor with a handful of opcodes, and the tensors'
# bytes lie in other records of the zip; so these bounds are generous for any homework
# model, and they stop a small file that inflates to gigabytes (a zip bomb) before any
# of it is inflated or parsed.
MAX_PICKLE_BYTES = 64 << 20
MAX_PICKLE_OPCODES = 2_000_000
MAX_ARCHIVE_BYTES = 2 << 30  # all records together, uncompressed
MAX_ARCHIVE_ENTRIES = 100_000
MAX_INSPECT_SECONDS = 20.0


class _Refused(Exception):
    pass


def _pickle_globals(data: bytes) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    strings: list[str] = []
    deadline = time.monotonic() + MAX_INSPECT_SECONDS
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if count >= MAX_PICKLE_OPCODES:
            raise _Refused(f"its data.pkl holds more than {MAX_PICKLE_OPCODES:,} pickle opcodes")
        if count % 4096 == 0 and time.monotonic() > deadline:
            raise _Refused(f"reading its data.pkl took more than {MAX_INSPECT_SECONDS:g} s")
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            found.append((module, name))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append((strings[-2], strings[-1]))
        if isinstance(arg, str) and op.name.endswith("UNICODE"):
            strings.append(arg)
    return found


def inspect_checkpoint(name: str, data: bytes) -> CheckpointInfo:
    """Decide whether a checkpoint is plain tensors, without executing anything."""
    if name.endswith(".safetensors"):
        return _safetensors(name, data)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return CheckpointInfo(
            name, "unknown", False, "not a torch.save checkpoint (expected the zip format that torch.save writes)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
        if len(entries) > MAX_ARCHIVE_ENTRIES:
            raise _Refused(f"it holds more than {MAX_ARCHIVE_ENTRIES:,} records")
        if sum(e.file_size for e in entries) > MAX_ARCHIVE_BYTES:
            raise _Refused(f"it would inflate to more than {MAX_ARCHIVE_BYTES >> 30} GiB")
        pickles = [e for e in entries if e.filename.endswith("data.pkl")]
        if len(pickles) != 1:
            return CheckpointInfo(name, "torch-zip", False, "the archive does not hold exactly one data.pkl")
        if pickles[0].file_size > MAX_PICKLE_BYTES:
            raise _Refused(f"its data.pkl would inflate to more than {MAX_PICKLE_BYTES >> 20} MB")
        # The sizes above are the archive's own claims: read no more than the limit anyway.
        with archive.open(pickles[0]) as f:
            pickle = f.read(MAX_PICKLE_BYTES + 1)
        if len(pickle) > MAX_PICKLE_BYTES:
            raise _Refused(f"its data.pkl inflates to more than {MAX_PICKLE_BYTES >> 20} MB")
        names = _pickle_globals(pickle)
    except _Refused as exc:
        return CheckpointInfo(name, "torch-zip", False, f"the checkpoint was not loaded: {exc}")
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError, NotImplementedError, RuntimeError) as exc:
        return CheckpointInfo(name, "torch-zip", False, f"the checkpoint is damaged ({exc})")
    unsafe = [(m, n) for m, n in names if (m, n) not in SAFE_GLOBALS]
    if not unsafe:
        return CheckpointInfo(name, "torch-zip", True)
    runners = [
        f"{m}.{n}"
        for m, n in unsafe
        if m.split(".")[0] in _CODE_RUNNERS or n in ("eval", "exec", "system", "__import__")
    ]
    if runners:
        problem = f"the checkpoint carries a pickle payload that would run code ({', '.join(sorted(set(runners)))}); it was not loaded"
    else:
        objects = ", ".join(sorted({f"{m}.{n}" for m, n in unsafe}))
        problem = f"the checkpoint pickles Python objects ({objects}), not just tensors: save best_model.state_dict() instead of the model; it was not loaded"
    return CheckpointInfo(name, "torch-zip", False, problem)


def _safetensors(name: str, data: bytes) -> CheckpointInfo:
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        base = 8 + size
        state = {}
        for key, spec in header.items():
            if key == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[spec["dtype"]]
            start, end = spec["data_offsets"]
            raw = bytearray(data[base + start : base + end])
            tensor = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            state[key] = tensor.reshape(spec["shape"])
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as exc:
        return CheckpointInfo(name, "safetensors", False, f"the safetensors file is damaged ({exc})")
    return CheckpointInfo(name, "safetensors", True, state=state)


def pick_checkpoint(files: dict[str, bytes]) -> tuple[str, bytes] | None:
    """The submission's checkpoint: best_model.* first, else the only candidate."""
    for preferred in PREFERRED_NAMES:
        for rel, data in files.items():
            if rel.rsplit("/", 1)[-1] == preferred:
                return rel, data
    candidates = [(rel, data) for rel, data in files.items() if rel.endswith(CHECKPOINT_SUFFIXES)]
    return candidates[0] if len(candidates) == 1 else None
