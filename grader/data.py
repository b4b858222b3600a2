"""CIFAR-10 for the homework: find it, decode it once, cache it, and serve it as tensor batches.

Everything that touches the data set goes through this module: the reference solution, the grader,
the student template and the benchmarks. It reads either the official pickled batches
(``cifar-10-batches-py``) or a tree of ``train/<class>/*`` and ``test/<class>/*`` images, as a
folder or a tar archive, and keeps the decoded uint8 arrays in a plain binary cache so that later
runs start in well under a second.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import json
import os
import pickle
import tarfile
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:  # numpy >= 2 moved its internals to numpy._core; importing numpy.core there warns
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
NUM_TRAIN = 49_000
# The labels of the first ten images of the official training batches (frog, truck, truck,
# deer, ...): a data set that starts with them is in the official order.
CANONICAL_FIRST_LABELS = (6, 9, 9, 4, 1, 1, 2, 7, 8, 3)
NUM_VAL = 1_000
SPLIT_SEED = 0
BATCH_SIZE = 64

IMAGE_SHAPE = (3, 32, 32)
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DEFAULT_DATA_DIR = "~/.cache/cifar10-autograder/data"
DEFAULT_CACHE_DIR = "~/.cache/cifar10-autograder/cache"
# Bump when the decoded arrays or the cache layout change, so old cache files are never reused.
CACHE_FORMAT = 1

_ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")
# Little-endian on disk whatever the machine, so a cache directory can be shared.
_CACHE_DTYPES = {
    "train_images": "|u1",
    "train_labels": "<i8",
    "test_images": "|u1",
    "test_labels": "<i8",
}

_HOW_TO_PROVIDE = (
    "Pass --data PATH pointing at a cifar-10-batches-py folder, a folder holding "
    "train/<class>/ and test/<class>/ images, or a .tar.gz of either (or set CIFAR10_DATA=PATH); "
    f"where there is internet, enable download to fetch the official set into {DEFAULT_DATA_DIR}."
)


class DataError(Exception):
    """The CIFAR-10 data is missing, unreadable or not what it should be.

    The message alone says what was looked for, where, and how to fix it, so callers can print it
    to a student as is.
    """


@dataclass(frozen=True, eq=False)
class CIFAR10:
    """The decoded data set: uint8 NCHW images and int64 labels, indexed like ``CLASSES``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str

    def __post_init__(self) -> None:
        for kind in ("train", "test"):
            images = getattr(self, f"{kind}_images")
            labels = getattr(self, f"{kind}_labels")
            if images.dtype != torch.uint8 or tuple(images.shape[1:]) != IMAGE_SHAPE:
                raise ValueError(f"{kind}_images must be uint8 (N, 3, 32, 32), got {images.dtype}")
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(f"{kind}_labels must be int64 with one label per image")

    def __repr__(self) -> str:
        return f"CIFAR10(train={len(self.train_labels)}, test={len(self.test_labels)}, source={self.source!r})"

    def split(self, num_val: int = NUM_VAL, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
        """Split the training set into (train_indices, val_indices), both sorted.

        The validation set holds ``num_val / 10`` images of every class, picked at random with a
        fixed seed, so it is balanced and the same on every machine. Taking "the last N" instead
        would give only trucks when the data came from class folders.
        """
        if num_val < 0 or num_val % len(CLASSES):
            raise ValueError(f"num_val must be a multiple of {len(CLASSES)}, got {num_val}")
        per_class = num_val // len(CLASSES)
        generator = torch.Generator().manual_seed(seed)
        picked = []
        for label, name in enumerate(CLASSES):
            members = torch.nonzero(self.train_labels == label).flatten()
            if len(members) < per_class:
                raise DataError(
                    f"Cannot hold out {per_class} validation images of class {name!r}: the "
                    f"training set from {self.source} has only {len(members)}."
                )
            order = torch.randperm(len(members), generator=generator)
            picked.append(members[order[:per_class]])
        val = torch.cat(picked).sort().values
        in_val = torch.zeros(len(self.train_labels), dtype=torch.bool)
        in_val[val] = True
        return torch.nonzero(~in_val).flatten(), val

    @property
    def in_canonical_order(self) -> bool:
        """Whether the training images are in the order of the official pickled batches (the
        order torchvision serves), so that an index range in a notebook names the same images
        here. Class folders are sorted by class instead: there "the last 1,000" are all trucks."""
        first = self.train_labels[: len(CANONICAL_FIRST_LABELS)].tolist()
        return len(self.train_labels) == 50_000 and first == list(CANONICAL_FIRST_LABELS)


def load_cifar10(
    source: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> CIFAR10:
    """Load CIFAR-10 from ``source``, decoding it only the first time.

    ``source`` is a ``cifar-10-batches-py`` folder (or a folder holding one), a folder with
    ``train/<class>/`` and ``test/<class>/`` images (directly or under one top-level folder), or a
    tar archive of either. Without it, ``$CIFAR10_DATA`` is used, else ``DEFAULT_DATA_DIR``. If
    nothing is found there and ``download`` is set, torchvision fetches the official set into that
    folder. Decoded arrays are cached in ``cache_dir``, else ``$CIFAR10_CACHE``, else
    ``DEFAULT_CACHE_DIR``. Every problem with the data raises ``DataError``.
    """
    path = _data_path(source)
    cache = Path(cache_dir or os.environ.get("CIFAR10_CACHE") or DEFAULT_CACHE_DIR).expanduser()

    if path.is_file():
        key = _cache_key("archive", _file_sha256(path))
        arrays = _read_cache(cache, key)
        if arrays is None:
            layout, prefix, files = _read_archive(path)
            arrays = _decode_tree(files, f"{path}/{prefix}".rstrip("/"), layout)
            _write_cache(cache, key, arrays, str(path))
        return _to_dataset(arrays, str(path))

    try:
        layout, root, names = _locate_in_dir(path)
    except DataError:
        if not download:
            raise
        _download(path)
        layout, root, names = _locate_in_dir(path)
    key = _cache_key(layout, _listing_digest(root, names))
    arrays = _read_cache(cache, key)
    if arrays is None:
        files = {name: _read_file(root / name) for name in names}
        arrays = _decode_tree(files, str(root), layout)
        _write_cache(cache, key, arrays, str(root))
    return _to_dataset(arrays, str(root))


# --------------------------------------------------------------------------- finding the data


def _data_path(source: str | os.PathLike[str] | None) -> Path:
    # Absolute, so messages and CIFAR10.source say exactly where the data was looked for.
    if source is not None:
        return Path(source).expanduser().absolute()
    return Path(os.environ.get("CIFAR10_DATA") or DEFAULT_DATA_DIR).expanduser().absolute()


def _is_hidden(name: str) -> bool:
    # Skips .DS_Store, macOS "._x" resource forks in tars, .ipynb_checkpoints and the like.
    return any(part.startswith(".") for part in name.split("/"))


def _find_layout(names: set[str], where: str) -> tuple[str, str]:
    """Return (layout, prefix): which layout ``names`` holds and under which folder prefix."""
    top_folders = {name.split("/", 1)[0] for name in names if "/" in name}
    prefixes = ["", f"{BATCHES_DIR}/"]
    if len(top_folders) == 1:  # e.g. cifar10-jpeg/train/... or data/cifar-10-batches-py/...
        top = top_folders.pop()
        prefixes += [f"{top}/", f"{top}/{BATCHES_DIR}/"]
    for prefix in prefixes:
        if f"{prefix}data_batch_1" in names and f"{prefix}{TEST_BATCH}" in names:
            return "batches", prefix
        has_train = any(name.startswith(f"{prefix}train/") for name in names)
        if has_train and any(name.startswith(f"{prefix}test/") for name in names):
            return "folders", prefix
    raise DataError(
        f"No CIFAR-10 data found in {where}: expected data_batch_1..5 and test_batch "
        f"(a {BATCHES_DIR} folder) or train/<class>/ and test/<class>/ image folders, directly "
        f"or under one top-level folder. {_HOW_TO_PROVIDE}"
    )


def _locate_in_dir(path: Path) -> tuple[str, Path, list[str]]:
    """Find the data under a directory: (layout, root folder, relevant files relative to it)."""
    if not path.is_dir():
        raise DataError(f"CIFAR-10 data not found: {path} does not exist. {_HOW_TO_PROVIDE}")
    names: set[str] = set()
    try:
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(folder).relative_to(path).as_posix()
            names.update(f if rel == "." else f"{rel}/{f}" for f in files if not f.startswith("."))
    except OSError as exc:
        raise DataError(f"Cannot list {path}: {exc}. {_HOW_TO_PROVIDE}") from None
    layout, prefix = _find_layout(names, str(path))
    root = path / prefix if prefix else path
    if layout == "batches":
        # Only those present: _decode_batches names any that are missing.
        relevant = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if f"{prefix}{n}" in names]
    else:
        relevant = [n for n in names if n.startswith((f"{prefix}train/", f"{prefix}test/"))]
        relevant = [n[len(prefix) :] for n in relevant]
    return layout, root, sorted(relevant)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc}") from None


def _read_archive(path: Path) -> tuple[str, str, dict[str, bytes]]:
    """Read a tar archive's data files into memory: (layout, prefix, files relative to prefix).

    Nothing is extracted to disk, so member names like ../x cannot write anywhere.
    """
    files = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if member.isfile() and not _is_hidden(name):
                    files[name] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"Cannot read {path} as a tar archive (.tar.gz, .tgz or .tar): {exc}. {_HOW_TO_PROVIDE}"
        ) from None
    layout, prefix = _find_layout(set(files), str(path))
    files = {name[len(prefix) :]: data for name, data in files.items() if name.startswith(prefix)}
    return layout, prefix, files


def _download(root: Path) -> None:
    """Fetch the official pickled batches into ``root`` with torchvision."""
    import torchvision  # only needed here, and slow to import

    try:
        # torchvision checks the archive's md5 before it unpacks and reads it.
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # no internet shows up as URLError, OSError, RuntimeError...
        raise DataError(
            f"Could not download CIFAR-10 into {root} ({type(exc).__name__}: {exc}). Without "
            "internet, pass --data PATH pointing at a cifar-10-batches-py folder, a folder holding "
            "train/<class>/ and test/<class>/ images, or a .tar.gz of either."
        ) from None


# --------------------------------------------------------------------------- decoding


def _decode_tree(files: dict[str, bytes], where: str, layout: str) -> tuple[np.ndarray, ...]:
    """Decode the files of one layout (paths relative to its root) into the four arrays."""
    if layout == "batches":
        arrays = _decode_batches(files, where)
    else:
        arrays = (*_decode_folders(files, "train", where), *_decode_folders(files, "test", where))
    _check_labels(arrays, where)
    return arrays


# What numpy needs to rebuild arrays from a pickle, and nothing else. The official batches use
# the first, third and last two; protocol 5 pickles written by numpy itself use _frombuffer.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _np_numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    A pickle can call any importable function while it loads, so a doctored batch file could run
    code on the grading machine; refusing every other global makes loading one harmless.
    """

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR-10 batch never contains"
            ) from None


def _unpickle_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # malformed pickles raise nearly anything; none must escape as is
        raise DataError(
            f"{where} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}). Replace it "
            f"with the official {BATCHES_DIR} files. {_HOW_TO_PROVIDE}"
        ) from None
    images = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 2
        and images.shape[1] == 3 * 32 * 32
        and isinstance(labels, list | np.ndarray)
        and len(labels) == len(images)
    ):
        raise DataError(
            f"{where} is not a CIFAR-10 batch: expected a dict with b'data' (N, 3072) uint8 and "
            f"N b'labels'. {_HOW_TO_PROVIDE}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: b'labels' must be whole numbers") from None
    # Rows are 1024 red, then 1024 green, then 1024 blue values: already CHW.
    return images.reshape(-1, *IMAGE_SHAPE), labels


def _decode_batches(files: dict[str, bytes], where: str) -> tuple[np.ndarray, ...]:
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name not in files]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}. {_HOW_TO_PROVIDE}")
    train = [_unpickle_batch(files[name], f"{where}/{name}") for name in TRAIN_BATCHES]
    test_images, test_labels = _unpickle_batch(files[TEST_BATCH], f"{where}/{TEST_BATCH}")
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return train_images, train_labels, np.ascontiguousarray(test_images), test_labels


def _decode_folders(files: dict[str, bytes], part: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``<part>/<class>/<file>`` images, ordered by class then file name."""
    entries = []
    for name in files:
        if not name.startswith(f"{part}/"):
            continue
        pieces = name.split("/")
        if len(pieces) != 3:
            raise DataError(f"Unexpected file {where}/{name}: images must sit directly in {part}/<class>/.")
        if pieces[1] not in CLASSES:
            raise DataError(
                f"Unknown class folder {where}/{part}/{pieces[1]}: class folders must be named {', '.join(CLASSES)}."
            )
        entries.append((CLASSES.index(pieces[1]), pieces[2], name))
    if not entries:
        raise DataError(f"No images under {where}/{part}/<class>/. {_HOW_TO_PROVIDE}")
    entries.sort()
    images = np.empty((len(entries), *IMAGE_SHAPE), dtype=np.uint8)
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image decoders (for TorchCodec) and warns on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        for i, (_, _, name) in enumerate(entries):
            images[i] = _decode_image(files[name], f"{where}/{name}")
    labels = np.array([label for label, _, _ in entries], dtype=np.int64)
    return images, labels


@functools.cache
def _torchvision_decoder() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torchvision's decoder (about 5x faster than Pillow here), or None where it is gone."""
    # Imported on first use: torchvision takes over a second to import and cache hits skip it.
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # deprecated since torchvision 0.29, to be removed
        return None
    # UNCHANGED rather than RGB: a grayscale, palette or RGBA file is not a CIFAR-10 image, and
    # converting it silently would hide a wrong data set.
    return functools.partial(decode_image, mode=ImageReadMode.UNCHANGED)


def _decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode one PNG/JPEG to a (3, 32, 32) uint8 array, with torchvision; Pillow as a fallback."""
    decode = _torchvision_decoder()
    try:
        if decode is None:
            raise RuntimeError("torchvision cannot decode images")
        image = decode(torch.frombuffer(bytearray(data), dtype=torch.uint8)).numpy()
    except Exception:  # torchvision reads PNG/JPEG/GIF/WebP; Pillow knows more formats
        image = _decode_with_pillow(data, where)
    if image.dtype != np.uint8 or image.shape != IMAGE_SHAPE:
        raise DataError(
            f"{where} is not a 32x32 RGB image: it decodes to (channels, height, width) = "
            f"{tuple(image.shape)} of {image.dtype}. CIFAR-10 images are 32x32 8-bit RGB."
        )
    return image


def _decode_with_pillow(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, pixels = image.mode, np.asarray(image)
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError... on bad files
        raise DataError(f"{where} is not a readable image (corrupt or truncated?): {exc}") from None
    if mode != "RGB":
        raise DataError(f"{where} is not a 32x32 RGB image: its mode is {mode}. CIFAR-10 images are 32x32 8-bit RGB.")
    return pixels.transpose(2, 0, 1)


def _check_labels(arrays: tuple[np.ndarray, ...], where: str) -> None:
    for part, labels in zip(("training", "test"), arrays[1::2], strict=True):
        if len(labels) == 0:
            raise DataError(f"{where} holds no {part} images. {_HOW_TO_PROVIDE}")
        if labels.min() < 0 or labels.max() >= len(CLASSES):
            raise DataError(f"{where} has {part} labels outside 0..{len(CLASSES) - 1}.")


def _to_dataset(arrays: tuple[np.ndarray, ...], source: str) -> CIFAR10:
    tensors = [torch.from_numpy(a) for a in arrays]
    return CIFAR10(*tensors, source=source)


# --------------------------------------------------------------------------- cache


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc}. {_HOW_TO_PROVIDE}") from None
    return digest.hexdigest()


def _listing_digest(root: Path, names: list[str]) -> str:
    # Hashing names, sizes and modification times is cheap and changes whenever a file does;
    # hashing 60,000 files' contents would cost nearly as much as decoding them.
    digest = hashlib.sha256()
    for name in names:
        try:
            info = (root / name).stat()
        except OSError as exc:
            raise DataError(f"Cannot read {root / name}: {exc}") from None
        digest.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_key(kind: str, digest: str) -> str:
    return hashlib.sha256(f"cifar10-cache-v{CACHE_FORMAT}\0{kind}\0{digest}".encode()).hexdigest()


def _read_cache(cache: Path, key: str) -> tuple[np.ndarray, ...] | None:
    """Return the cached arrays for ``key``, or None if absent, stale, short or corrupt."""
    try:
        header = json.loads((cache / f"{key}.json").read_text())
        if header["format"] != CACHE_FORMAT or header["key"] != key:
            return None
        # Mapped rather than read: the pool processes (or Dask workers) of one machine share its
        # pages instead of holding a private copy each; copy-on-write keeps the tensors writable.
        blob = np.memmap(cache / f"{key}.bin", dtype=np.uint8, mode="c")
        # The checksum costs ~0.1 s for 60,000 images and also catches damage, not only truncation.
        if blob.size != header["nbytes"] or hashlib.sha256(blob).hexdigest() != header["sha256"]:
            return None
        arrays = []
        for name, spec in zip(_ARRAY_NAMES, header["arrays"], strict=True):
            if spec["name"] != name or spec["dtype"] != _CACHE_DTYPES[name]:
                return None
            dtype, shape, offset = np.dtype(spec["dtype"]), tuple(spec["shape"]), spec["offset"]
            size = int(np.prod(shape)) * dtype.itemsize
            chunk = blob[offset : offset + size].view(dtype).reshape(shape)
            arrays.append(chunk.astype(dtype.newbyteorder("="), copy=False))
        train_images, train_labels, test_images, test_labels = arrays
        if not (
            train_images.shape[1:] == test_images.shape[1:] == IMAGE_SHAPE
            and train_labels.shape == train_images.shape[:1]
            and test_labels.shape == test_images.shape[:1]
        ):
            return None
        _check_labels(tuple(arrays), str(cache))
    except (OSError, ValueError, KeyError, TypeError, IndexError, DataError):
        return None
    return tuple(arrays)


def _write_cache(cache: Path, key: str, arrays: tuple[np.ndarray, ...], source: str) -> None:
    """Store the arrays back to back in ``<key>.bin``, described by ``<key>.json``.

    Raw bytes rather than pickle, so reading a cache can never run code. The header is written
    last, so a reader never sees a header without its complete data file.
    """
    specs, flat, offset, digest = [], [], 0, hashlib.sha256()
    for name, array in zip(_ARRAY_NAMES, arrays, strict=True):
        dtype = _CACHE_DTYPES[name]
        specs.append({"name": name, "dtype": dtype, "shape": list(array.shape), "offset": offset})
        array = np.ascontiguousarray(array, dtype=dtype).reshape(-1)
        flat.append(array)
        digest.update(array)
        offset += array.nbytes
    header = {
        "format": CACHE_FORMAT,
        "key": key,
        "source": source,
        "nbytes": offset,
        "sha256": digest.hexdigest(),
        "arrays": specs,
    }
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _write_atomically(cache / f"{key}.bin", [memoryview(a) for a in flat])
        _write_atomically(cache / f"{key}.json", [json.dumps(header, indent=1).encode()])
    except OSError as exc:
        # The data is already decoded; a read-only cache only costs speed next time.
        warnings.warn(f"Could not write the CIFAR-10 cache in {cache}: {exc}", stacklevel=3)


def _write_atomically(path: Path, chunks: list[memoryview] | list[bytes]) -> None:
    # Write a temporary file next to the target, then rename it over: a crash or a concurrent
    # reader sees either the old file or the complete new one, never half of it.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- tensors


def normalize(
    images: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Turn uint8 images (NCHW or CHW) into ``dtype`` values standardised with MEAN and STD."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    if not dtype.is_floating_point:
        raise TypeError(f"normalize produces floating point values, not {dtype}")
    images = images.to(device=device)  # move while still uint8: a quarter of the bytes
    # Compute in at least float32 so half precision only rounds the final values.
    compute = torch.promote_types(dtype, torch.float32)
    mean = torch.tensor(MEAN, dtype=compute, device=images.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=compute, device=images.device).view(3, 1, 1)
    return images.to(compute).div_(255).sub_(mean).div_(std).to(dtype)


def flip_crop(images: torch.Tensor, *, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly mirror each image and shift it by up to ``pad`` pixels, zero-filling the border.

    Equivalent to torchvision's RandomHorizontalFlip + RandomCrop(size, padding=pad) per image,
    but done for the whole NCHW batch at once with one gather.
    """
    if images.ndim != 4:
        raise ValueError(f"flip_crop expects an NCHW batch, got shape {tuple(images.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    n, _, height, width = images.shape
    random_device = generator.device if generator is not None else torch.device("cpu")
    flip = torch.rand(n, generator=generator, device=random_device) < 0.5
    shift_y = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=random_device)
    shift_x = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=random_device)
    flip, shift_y, shift_x = (t.to(images.device) for t in (flip, shift_y, shift_x))

    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    rows = rows + shift_y[:, None]  # (n, height): source row of each output row
    cols = torch.where(flip[:, None], cols.flip(0), cols) + shift_x[:, None]  # (n, width)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indices around a slice put the channel axis last: (n, height, width, channels).
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True, eq=False)
class LoaderDataset:
    """What ``TensorLoader.dataset`` is: the loader's tensors plus the homework's ``train`` flag."""

    images: torch.Tensor
    labels: torch.Tensor
    train: bool

    def __len__(self) -> int:
        return len(self.labels)


class TensorLoader:
    """Iterable of (x, y) batches over tensors, a drop-in for the DataLoader the homework uses.

    ``x`` is normalised to ``dtype`` on ``device``, ``y`` is int64. With ``shuffle`` the order
    comes from a generator seeded by ``seed`` and the epoch number, so epochs differ but a rerun
    repeats them exactly. ``loader.dataset.train`` is what the homework's ``check_accuracy``
    reads to print "validation" or "test".
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int = BATCH_SIZE,
        shuffle: bool = False,
        seed: int = 0,
        augment: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        drop_last: bool = False,
        train: bool = True,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"images must be a uint8 NCHW tensor, got {images.dtype} {images.ndim}D")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Keep the whole set on the device as uint8 once, instead of copying every batch over.
        self.dataset = LoaderDataset(images.to(device=device), labels.to(device=device, dtype=torch.int64), train)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.dtype = dtype
        self.device = device
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Multiplying keeps (seed, epoch) pairs apart: seed 1 epoch 0 is not seed 0 epoch 1.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        images, labels = self.dataset.images, self.dataset.labels
        order = None
        if self.shuffle:
            order = torch.randperm(len(labels), generator=generator).to(labels.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:
                x, y = (
                    images[start : start + self.batch_size],
                    labels[start : start + self.batch_size],
                )
            else:
                index = order[start : start + self.batch_size]
                x, y = images[index], labels[index]
            if self.augment:
                x = flip_crop(x, generator=generator)
            yield normalize(x, dtype=self.dtype, device=self.device), y


@dataclass(frozen=True, eq=False)
class Loaders:
    """The homework's three loaders."""

    train: TensorLoader
    val: TensorLoader
    test: TensorLoader


def assignment_loaders(
    data: CIFAR10,
    *,
    batch_size: int = BATCH_SIZE,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    augment: bool = False,
    seed: int = 0,
    num_val: int = NUM_VAL,
) -> Loaders:
    """Build the homework's loaders from ``data``.

    train: every training image outside the validation split, shuffled (and augmented if asked);
    val: the balanced split from ``data.split`` (``dataset.train`` is True, as in the homework,
    where it is drawn from the training set); test: the test set in order (``dataset.train`` False).
    """
    train_index, val_index = data.split(num_val)
    common = {"batch_size": batch_size, "dtype": dtype, "device": device}
    return Loaders(
        train=TensorLoader(
            data.train_images[train_index],
            data.train_labels[train_index],
            shuffle=True,
            seed=seed,
            augment=augment,
            train=True,
            **common,
        ),
        val=TensorLoader(data.train_images[val_index], data.train_labels[val_index], train=True, **common),
        test=TensorLoader(data.test_images, data.test_labels, train=False, **common),
    )


# --------------------------------------------------------------------------- evaluation


def is_class_balanced(labels: torch.Tensor, *, share: float = 0.5) -> bool:
    """Whether every class holds at least ``share`` of its even part of ``labels``: a slice of
    class-sorted data (one or two classes) is not; a random or official-order slice is."""
    if len(labels) < len(CLASSES):
        return False
    counts = torch.bincount(labels, minlength=len(CLASSES))
    return bool(counts.min() >= share * len(labels) / len(CLASSES))


def index_runs(indices: Iterable[int], *, max_runs: int | None = None) -> list[list[int]] | None:
    """Indices as sorted [start, stop) runs (range(0, 49000) is [[0, 49000]]), or None when
    there would be more than ``max_runs``."""
    runs: list[list[int]] = []
    for value in sorted(set(indices)):
        if runs and runs[-1][1] == value:
            runs[-1][1] += 1
        elif max_runs is not None and len(runs) >= max_runs:
            return None
        else:
            runs.append([value, value + 1])
    return runs


def balanced_subset(labels: torch.Tensor, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``size`` images (or all, if fewer), as many of each class as ``labels`` allows,
    picked at random with ``generator``; sorted."""
    if size >= len(labels):
        return torch.arange(len(labels))
    per_class = -(-size // len(CLASSES))
    picked = []
    for label in range(len(CLASSES)):
        members = torch.nonzero(labels == label).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    chosen = torch.cat(picked)
    chosen = chosen[torch.randperm(len(chosen), generator=generator)[:size]]
    return chosen.sort().values


def perturb(images: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Label-preserving perturbations of uint8 NCHW images, drawn per image from ``generator``:
    a mirror image (half of them), a shift by up to 2 pixels (edges repeated), then either a JPEG
    re-encode at quality 60-90 or mild Gaussian noise (sigma 2-5 grey levels).

    An ordinary ConvNet barely notices these (its accuracy drops by a few points); a model that
    recognises the exact pixels of public images, rather than what they show, does not survive
    them. The parameters come from ``generator``, so they are secret per grading run.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"perturb expects uint8 NCHW images, got {images.dtype} {tuple(images.shape)}")
    n, _, height, width = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    shift = torch.randint(-2, 3, (n, 2), generator=generator)  # (rows, columns), never both 0
    shift[:, 1] += (shift == 0).all(dim=1).long()
    reencode = torch.rand(n, generator=generator) < 0.5
    quality = torch.randint(60, 91, (n,), generator=generator)
    sigma = 2 + 3 * torch.rand(n, generator=generator)
    noise = torch.randn(images.shape, generator=generator)

    out = torch.where(flip[:, None, None, None], images.flip(-1), images)
    pad = 2
    padded = F.pad(out.float(), (pad, pad, pad, pad), mode="replicate")
    rows = torch.arange(height)[None, :] + pad - shift[:, 0:1]  # (n, height): source row of each row
    cols = torch.arange(width)[None, :] + pad - shift[:, 1:2]
    batch = torch.arange(n)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    noisy = (out + noise * sigma[:, None, None, None]).round().clamp(0, 255)
    out = torch.where(reencode[:, None, None, None], out, noisy).to(torch.uint8).contiguous()
    for i in torch.nonzero(reencode).flatten().tolist():
        out[i] = _jpeg_roundtrip(out[i], int(quality[i]))
    return out


def _jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return torch.from_numpy(np.asarray(decoded.convert("RGB")).copy()).permute(2, 0, 1)
