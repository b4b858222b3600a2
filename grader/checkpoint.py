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


def _pickle_globals(data: bytes) -> list[tuple[str, str]]:
    found, strings = [], []
    for op, arg, _ in pickletools.genops(data):
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
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            return CheckpointInfo(name, "torch-zip", False, "the archive does not hold exactly one data.pkl")
        names = _pickle_globals(archive.read(pickles[0]))
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as exc:
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
