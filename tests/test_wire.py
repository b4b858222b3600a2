"""The wire format between the grader and a student worker: plain data and raw tensor
bytes only. Round trips are exact, unsupported values are refused, and a forged or
malformed frame is refused without ever running code (no pickle anywhere)."""

import io
import json
import math
import pickle
import struct

import pytest
import torch

from grader.worker import wire

ALL_DTYPES = list(wire.DTYPES.values())


def roundtrip(obj):
    data = wire.encode(obj)
    stream = io.BytesIO(data)
    out = wire.read_message(stream)
    assert stream.read() == b"", "one message must consume exactly its frame"
    return out


def frame(header, blob=b"", *, magic=wire.MAGIC, total=None, header_len=None):
    """A hand-made frame: ``header`` is a dict (dumped as JSON) or raw bytes."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload = head + blob
    total = len(payload) if total is None else total
    header_len = len(head) if header_len is None else header_len
    return struct.pack(">4sQQ", magic, total, header_len) + payload


def one_tensor(spec, blob=b""):
    return frame({"body": {"$tensor": 0}, "tensors": [spec]}, blob)


def sample(dtype, shape):
    """Deterministic values of ``dtype`` that use the whole range (sign bits included)."""
    n = math.prod(shape)
    if dtype == torch.bool:
        return (torch.arange(n) % 3 == 0).reshape(shape)
    if dtype.is_floating_point:
        return (torch.linspace(-3.5, 1000.25, n, dtype=torch.float64).to(dtype)).reshape(shape)
    info = torch.iinfo(dtype)
    values = [info.min + (info.max - info.min) * i // max(n - 1, 1) for i in range(n)]
    return torch.tensor(values, dtype=dtype).reshape(shape)


def same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        # Bitwise equality: NaN payloads, signed zeros and subnormals must all survive.
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)) if a.numel() else True
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    else:
        assert a == b


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=[str(d).replace("torch.", "") for d in ALL_DTYPES])
@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3), (1,), (3, 4), (2, 3, 5)], ids=str)
def test_tensor_roundtrip_every_dtype_and_shape(dtype, shape):
    t = sample(dtype, shape)
    out = roundtrip(t)
    same(t, out)
    assert not out.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_float_tensor_special_values_are_bitwise_exact(dtype):
    info = torch.finfo(dtype)
    t = torch.tensor(
        [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, info.max, info.min, info.tiny, info.eps], dtype=dtype
    )
    # The smallest subnormal too: its bytes are 0x0001 (or 0x00000001...).
    t = torch.cat(
        [t, torch.tensor([1], dtype={2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).view(dtype)]
    )
    same(t, roundtrip(t))


def test_nested_message_roundtrip():
    grads = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    msg = {
        "ok": True,
        "none": None,
        "ints": [0, -1, 2**62, -(2**63)],
        "big": 10**30,
        "floats": [0.1, -2.5e-310, 1e308, float("nan"), float("inf"), float("-inf"), -0.0],
        "text": 'naïve – 東京 \u0000 \n "quoted" $tensor',
        "empty": {"list": [], "dict": {}, "str": ""},
        "tuple": (1, (2, 3)),
        "tensors": [torch.tensor(1.5), torch.empty(0, 7), torch.arange(6).reshape(2, 3)],
        "deep": {"a": [{"b": [{"c": torch.tensor([True, False])}]}]},
        "grad": grads,
        "same_tensor_twice": [grads, grads],
    }
    out = roundtrip(msg)
    expected = dict(msg, tuple=[1, [2, 3]], grad=grads.detach(), same_tensor_twice=[grads.detach(), grads.detach()])
    same(expected, out)
    assert out["floats"][1] == -2.5e-310
    assert math.copysign(1.0, out["floats"][6]) == -1.0
    assert isinstance(out["big"], int) and out["big"] == 10**30


def test_non_contiguous_and_expanded_tensors_travel_as_their_values():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    for t in (base.t(), base[:, ::2], torch.tensor(7).expand(3, 2), base[1:3, 2:5]):
        out = roundtrip(t)
        assert out.shape == t.shape and torch.equal(out, t)
        assert out.is_contiguous()


def test_decoded_tensors_own_their_memory():
    """Two tensors of one message must not alias each other or the frame's bytes."""
    data = bytearray(wire.encode([torch.zeros(4), torch.zeros(4)]))
    a, b = wire.read_message(io.BytesIO(bytes(data)))
    a += 1
    assert torch.equal(b, torch.zeros(4))


def test_float_tags_are_the_only_special_dicts():
    """Only non-finite floats are tagged; finite floats and user strings stay plain."""
    data = wire.encode({"x": [1.0, float("nan")], "s": "$float"})
    header = json.loads(data[20 : 20 + struct.unpack(">4sQQ", data[:20])[2]])
    assert header == {"body": {"x": [1.0, {"$float": "nan"}], "s": "$float"}, "tensors": []}


# -- refusals on the sending side ----------------------------------------------------------------


class Sneaky:
    def __reduce__(self):
        return (print, ("never",))


@pytest.mark.parametrize(
    "value",
    [
        object(),
        Sneaky(),
        b"raw bytes",
        bytearray(b"x"),
        {1, 2},
        1 + 2j,
        print,
        torch.nn.Linear(2, 2),
        torch.float32,
        torch.device("cpu"),
        {1: "int key"},
        {None: "none key"},
        {("a",): "tuple key"},
        {"$tensor": 0},
        {"$float": "nan"},
        {"ok": {"nested": {"$anything": 1}}},
        [1, [2, {3: 4}]],
        torch.zeros(2, dtype=torch.complex64),
        torch.zeros(2, dtype=torch.complex128),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_values_are_refused(value):
    with pytest.raises(wire.WireError):
        wire.encode({"payload": value})


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("name", ["uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "complex32"])
def test_other_torch_dtypes_are_refused(name):
    dtype = getattr(torch, name, None)
    if dtype is None:
        pytest.skip(f"this torch has no {name}")
    with pytest.raises(wire.WireError):
        wire.encode(torch.zeros(3, dtype=dtype))


def test_write_message_writes_one_flushed_frame():
    stream = io.BytesIO()
    wire.write_message(stream, {"a": torch.ones(2)})
    wire.write_message(stream, [1, 2])
    stream.seek(0)
    assert torch.equal(wire.read_message(stream)["a"], torch.ones(2))
    assert wire.read_message(stream) == [1, 2]
    with pytest.raises(EOFError):
        wire.read_message(stream)


# -- malformed and forged frames ---------------------------------------------------------------

GOOD_SPEC = {"dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8}
GOOD_BLOB = torch.tensor([1.0, 2.0]).numpy().tobytes()

MALFORMED = {
    "bad magic": wire.encode([1, 2]).replace(wire.MAGIC, b"EVIL", 1),
    "pickle magic": frame(b"{}", magic=b"\x80\x04\x95\x00"),
    "header not JSON": frame(b"\x80\x04not json at all"),
    "header not UTF-8": frame(b"\xff\xfe{}"),
    "header is a list": frame([1, 2]),
    "header is a string": frame("body"),
    "header without tensors": frame({"body": 1}),
    "header longer than payload": frame({"body": 1, "tensors": []}, header_len=10, total=5),
    "tensor index missing": frame({"body": {"$tensor": 3}, "tensors": []}),
    "tensor index not int": frame({"body": {"$tensor": "0"}, "tensors": [GOOD_SPEC]}, GOOD_BLOB),
    "tensors not a list": frame({"body": {"$tensor": 0}, "tensors": 5}, GOOD_BLOB),
    "unknown dtype": one_tensor(dict(GOOD_SPEC, dtype="object"), GOOD_BLOB),
    "complex dtype": one_tensor(dict(GOOD_SPEC, dtype="complex64"), GOOD_BLOB),
    "dtype not a string": one_tensor(dict(GOOD_SPEC, dtype=["float32"]), GOOD_BLOB),
    "shape not a list": one_tensor(dict(GOOD_SPEC, shape=None), GOOD_BLOB),
    "shape with a string": one_tensor(dict(GOOD_SPEC, shape=["two"]), GOOD_BLOB),
    "missing nbytes": one_tensor({k: v for k, v in GOOD_SPEC.items() if k != "nbytes"}, GOOD_BLOB),
    "offset past the end": one_tensor(dict(GOOD_SPEC, offset=4), GOOD_BLOB),
    "negative offset": one_tensor(dict(GOOD_SPEC, offset=-8), GOOD_BLOB),
    "offset far out of range": one_tensor(dict(GOOD_SPEC, offset=2**62), GOOD_BLOB),
    "nbytes past the end": one_tensor(dict(GOOD_SPEC, nbytes=16, shape=[4]), GOOD_BLOB),
    "nbytes not matching shape": one_tensor(dict(GOOD_SPEC, shape=[3]), GOOD_BLOB),
    "nbytes smaller than shape": one_tensor(dict(GOOD_SPEC, nbytes=4), GOOD_BLOB),
    "nbytes not matching itemsize": one_tensor(dict(GOOD_SPEC, dtype="float64"), GOOD_BLOB),
    "huge shape": one_tensor(dict(GOOD_SPEC, shape=[2**40, 2**40], nbytes=2**82), GOOD_BLOB),
    "nan offset": frame(
        b'{"body":{"$tensor":0},"tensors":[{"dtype":"float32","shape":[2],"offset":NaN,"nbytes":8}]}', GOOD_BLOB
    ),
    "integer too long": frame(b'{"body":1' + b"0" * 5000 + b',"tensors":[]}'),
    # Frames that once made decode raise something other than WireError.
    "negative dimensions": one_tensor({"dtype": "uint8", "shape": [-2, -1], "offset": 0, "nbytes": 2}, b"ab"),
    "negative dimension of an empty tensor": one_tensor({"dtype": "uint8", "shape": [0, -1], "offset": 0, "nbytes": 0}),
    "two inferred dimensions": one_tensor({"dtype": "uint8", "shape": [-1, -1], "offset": 0, "nbytes": 1}, b"a"),
    "infinite dimension": frame(
        b'{"body":{"$tensor":0},"tensors":[{"dtype":"uint8","shape":[Infinity],"offset":0,"nbytes":1}]}', b"a"
    ),
    "float tag not a number": frame({"body": {"$float": "abc"}, "tensors": []}),
    "float tag not a string": frame({"body": {"$float": [1]}, "tensors": []}),
    "deeply nested body": frame(b'{"body":' + b"[" * 100_000 + b"]" * 100_000 + b',"tensors":[]}'),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_frames_raise_wire_error(data):
    with pytest.raises(wire.WireError):
        wire.read_message(io.BytesIO(data))


def test_truncated_frames_raise_eof():
    data = wire.encode({"a": torch.ones(3)})
    for cut in (0, 3, 19, 20, len(data) - 1):
        with pytest.raises(EOFError):
            wire.read_message(io.BytesIO(data[:cut]))


def test_read_message_refuses_frames_larger_than_max_bytes_without_reading_them():
    data = wire.encode({"x": torch.zeros(1000)})
    total = struct.unpack(">4sQQ", data[:20])[1]
    assert wire.read_message(io.BytesIO(data), max_bytes=total)["x"].shape == (1000,)
    stream = io.BytesIO(data)
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.read_message(stream, max_bytes=total - 1)
    assert stream.tell() == 20, "the refused payload must not be read"


def test_read_message_refuses_a_claimed_huge_length_before_allocating():
    class EndlessZeros(io.RawIOBase):
        """A stream that would hand out bytes forever: reading the payload would hang."""

        def __init__(self, head):
            self.head, self.served = head, 0

        def readable(self):
            return True

        def readinto(self, buf):
            chunk = self.head[self.served : self.served + len(buf)] or b"\0" * len(buf)
            buf[: len(chunk)] = chunk
            self.served += len(chunk)
            if self.served > 1 << 20:
                raise AssertionError("read_message kept reading a refused frame")
            return len(chunk)

    head = struct.pack(">4sQQ", wire.MAGIC, 2**63, 2)
    with pytest.raises(wire.WireError):
        wire.read_message(EndlessZeros(head))
    with pytest.raises(wire.WireError):
        wire.read_message(io.BytesIO(struct.pack(">4sQQ", wire.MAGIC, 100, 2)), max_bytes=99)


# -- a pickle inside a message is never unpickled ------------------------------------------------


class MarkerPayload:
    """Unpickling this would create the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make every unpickling entry point fail loudly while decoding."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the wire decoder tried to unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_bytes_are_never_unpickled(tmp_path, no_unpickling, protocol):
    marker = tmp_path / "marker"
    evil = pickle.dumps(MarkerPayload(marker), protocol=protocol)
    # Sanity: this payload really would create the marker if unpickled.
    assert b"open" in evil

    # 1. As a uint8 tensor: decoding yields the same bytes as a tensor.
    out = roundtrip({"blob": torch.frombuffer(bytearray(evil), dtype=torch.uint8), "note": evil.decode("latin-1")})
    assert bytes(out["blob"].numpy().tobytes()) == evil
    assert out["note"] == evil.decode("latin-1")

    # 2. As raw bytes after the header, referenced by no tensor or by a tensor entry.
    plain = frame({"body": {"x": 1}, "tensors": []}, evil)
    assert wire.read_message(io.BytesIO(plain)) == {"x": 1}
    spec = {"dtype": "uint8", "shape": [len(evil)], "offset": 0, "nbytes": len(evil)}
    decoded = wire.read_message(io.BytesIO(one_tensor(spec, evil)))
    assert isinstance(decoded, torch.Tensor) and decoded.numpy().tobytes() == evil

    # 3. As the header itself, or the whole frame.
    for data in (frame(evil), evil, evil + wire.encode(1)):
        with pytest.raises(wire.WireError):
            wire.read_message(io.BytesIO(data))

    # 4. The sender refuses Python bytes and the object itself outright.
    for value in (evil, MarkerPayload(marker)):
        with pytest.raises(wire.WireError):
            wire.encode(value)

    assert not marker.exists()


def test_torch_save_payload_travels_as_inert_bytes(tmp_path, no_unpickling):
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"evil": MarkerPayload(marker)}, buffer)
    raw = buffer.getvalue()
    out = roundtrip({"checkpoint": torch.frombuffer(bytearray(raw), dtype=torch.uint8)})
    assert out["checkpoint"].numpy().tobytes() == raw
    assert not marker.exists()


# -- unusual tensors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.tensor([1.0, 0.0]).to_sparse(),
        lambda: torch.empty(2, device="meta"),
    ],
    ids=["sparse", "meta"],
)
def test_exotic_tensors_are_refused_with_wire_error(make):
    with pytest.raises(wire.WireError):
        wire.encode(make())


def test_lazily_negated_views_travel_with_their_true_values():
    """conj().imag is a view with a pending negation; its bytes must be resolved first."""
    view = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj().imag
    assert view.is_neg()
    out = roundtrip({"t": view})["t"]
    assert torch.equal(out, torch.tensor([-2.0, 4.0]))
