"""The only format in which data crosses between the grader and a student worker.

A message is plain data: None, bools, numbers, strings, lists, string-keyed dicts and
torch tensors. It is framed as ``MAGIC | u64 length | u64 header length | JSON header |
raw tensor bytes``. Tensors travel as dtype, shape and raw bytes, never as pickles, so
decoding a message can build data but can never run code.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

import torch

MAGIC = b"GRD1"
_HEAD = struct.Struct(">4sQQ")

# Only plain numeric dtypes may cross; anything else is refused on both sides.
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}


class WireError(Exception):
    """A message that is malformed, too large or of a kind the format does not carry."""


def encode(obj: Any) -> bytes:
    """Serialise ``obj`` into one framed message; WireError for anything it cannot carry."""
    try:
        return _encode(obj)
    except WireError:
        raise
    except Exception as exc:  # sparse, meta or otherwise unusual tensors
        raise WireError(f"cannot encode: {type(exc).__name__}: {exc}") from None


def _encode(obj: Any) -> bytes:
    blobs: list[bytes] = []
    tensors: list[dict] = []
    offset = 0

    def walk(value: Any) -> Any:
        nonlocal offset
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            # JSON has no NaN/inf: keep them as tagged strings so they survive exactly.
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
            if t.dtype not in _NAMES:
                raise WireError(f"tensors of dtype {t.dtype} cannot be sent")
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            tensors.append({"dtype": _NAMES[t.dtype], "shape": list(t.shape), "offset": offset, "nbytes": len(raw)})
            blobs.append(raw)
            offset += len(raw)
            return {"$tensor": len(tensors) - 1}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str) or k.startswith("$"):
                    raise WireError(f"dict keys must be plain strings, got {k!r}")
                out[k] = walk(v)
            return out
        raise WireError(f"values of type {type(value).__name__} cannot be sent")

    body = walk(obj)
    header = json.dumps({"body": body, "tensors": tensors}, separators=(",", ":")).encode()
    payload = header + b"".join(blobs)
    return _HEAD.pack(MAGIC, len(payload), len(header)) + payload


def decode(payload: bytes, header_len: int) -> Any:
    """Rebuild the object from a message payload (everything after the frame head).
    Whatever is wrong with a payload, the only error is WireError."""
    try:
        return _decode(payload, header_len)
    except WireError:
        raise
    except Exception as exc:  # forged frames can provoke many kinds; all mean "malformed"
        raise WireError(f"malformed message: {type(exc).__name__}: {exc}") from None


def _decode(payload: bytes, header_len: int) -> Any:
    try:
        header = json.loads(payload[:header_len])
        specs = header["tensors"]
        blob = memoryview(payload)[header_len:]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"malformed message header: {exc}") from None

    def tensor(i: int) -> torch.Tensor:
        try:
            spec = specs[i]
            dtype = DTYPES[spec["dtype"]]
            shape = [int(s) for s in spec["shape"]]
            start, n = int(spec["offset"]), int(spec["nbytes"])
        except (IndexError, KeyError, TypeError, ValueError):
            raise WireError(f"malformed tensor entry {i}") from None
        numel = math.prod(shape)
        if start < 0 or start + n > len(blob) or n != numel * torch.empty(0, dtype=dtype).element_size():
            raise WireError(f"tensor {i} does not fit its bytes")
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(bytearray(blob[start : start + n]), dtype=dtype).reshape(shape)

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            if "$tensor" in value:
                return tensor(value["$tensor"])
            if "$float" in value:
                return float(value["$float"])
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(header.get("body"))


def write_message(stream: BinaryIO, obj: Any) -> None:
    """Write one message and flush it."""
    stream.write(encode(obj))
    stream.flush()


def read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Read ``n`` bytes or raise EOFError if the stream ends first."""
    chunks, remaining = [], n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO, *, max_bytes: int = 1 << 31) -> Any:
    """Read one message; refuse anything that is not our framing or larger than ``max_bytes``."""
    magic, total, header_len = _HEAD.unpack(read_exactly(stream, _HEAD.size))
    if magic != MAGIC:
        raise WireError("the channel carried something that is not a message")
    if total > max_bytes or header_len > total:
        raise WireError(f"message of {total} bytes exceeds the limit of {max_bytes}")
    return decode(read_exactly(stream, total), header_len)
