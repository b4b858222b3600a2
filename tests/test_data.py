"""Tests for grader.data: loading both CIFAR-10 layouts, caching, splitting, batching."""

from __future__ import annotations

import json
import os
import pickle
import tarfile
import time
from pathlib import Path
from typing import NamedTuple
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from grader import data
from grader.data import CLASSES, MEAN, STD, DataError, TensorLoader, load_cifar10

TRAIN_PER_CLASS = 20
TEST_PER_CLASS = 5


class Arrays(NamedTuple):
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def smooth_images(n: int, seed: int) -> np.ndarray:
    """Random colour ramps: varied, yet smooth enough that JPEG changes them only a little."""
    rng = np.random.default_rng(seed)
    base = rng.integers(50, 206, (n, 3, 1, 1))
    ramp = np.linspace(-40, 40, 32)
    vertical = ramp[None, None, :, None] * rng.uniform(-1, 1, (n, 3, 1, 1))
    horizontal = ramp[None, None, None, :] * rng.uniform(-1, 1, (n, 3, 1, 1))
    return np.clip(base + vertical + horizontal, 0, 255).astype(np.uint8)


def shuffled_labels(per_class: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), per_class))


@pytest.fixture
def arrays() -> Arrays:
    return Arrays(
        smooth_images(10 * TRAIN_PER_CLASS, seed=1),
        shuffled_labels(TRAIN_PER_CLASS, seed=2),
        smooth_images(10 * TEST_PER_CLASS, seed=3),
        shuffled_labels(TEST_PER_CLASS, seed=4),
    )


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read or write the real ~/.cache, whatever the machine has there.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.delenv("CIFAR10_DATA", raising=False)


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str, extra: dict | None = None) -> None:
    """Write one batch the way the official cifar-10-batches-py files are laid out."""
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(label) for label in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(images))],
        **(extra or {}),
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_batches(root: Path, arrays: Arrays) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    parts = zip(np.array_split(arrays.train_images, 5), np.array_split(arrays.train_labels, 5), strict=True)
    for i, (images, labels) in enumerate(parts, start=1):
        write_batch(folder / f"data_batch_{i}", images, labels, f"training batch {i} of 5")
    write_batch(folder / "test_batch", arrays.test_images, arrays.test_labels, "testing batch 1")
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": 10000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_folders(root: Path, arrays: Arrays) -> Path:
    """train/<class>/NNNN.png (lossless) and test/<class>/NNNN.jpg (lossy), written by Pillow."""
    for part, images, labels, fmt in [
        ("train", arrays.train_images, arrays.train_labels, "PNG"),
        ("test", arrays.test_images, arrays.test_labels, "JPEG"),
    ]:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / part / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            suffix = "png" if fmt == "PNG" else "jpg"
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:04d}.{suffix}", format=fmt, quality=95)
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x01 finder junk")
    return root


def make_tar(path: Path, members: dict[str, Path]) -> Path:
    """Pack folders under the given archive names; the compression follows the suffix."""
    mode = "w" if path.suffix == ".tar" else "w:gz"
    with tarfile.open(path, mode) as archive:
        for arcname, source in members.items():
            archive.add(source, arcname=arcname)
    return path


def class_order(labels: np.ndarray) -> np.ndarray:
    # Files are named by their index, so "by class, then file name" is a stable sort by label.
    return np.argsort(labels, kind="stable")


def tiny_dataset(per_class: list[int], test_per_class: int = 2) -> data.CIFAR10:
    """A CIFAR10 with labels sorted by class, as the class-folder layout produces them."""
    train_labels = torch.repeat_interleave(torch.arange(10), torch.tensor(per_class))
    test_labels = torch.arange(10).repeat_interleave(test_per_class)
    return data.CIFAR10(
        torch.zeros(len(train_labels), 3, 32, 32, dtype=torch.uint8),
        train_labels,
        torch.zeros(len(test_labels), 3, 32, 32, dtype=torch.uint8),
        test_labels,
        source="synthetic",
    )


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("form", ["batches folder", "parent folder", "tar.gz", "wrapped tar.gz"])
def test_pickled_batches_round_trip(tmp_path: Path, arrays: Arrays, form: str) -> None:
    folder = write_batches(tmp_path / "data", arrays)
    source = {
        "batches folder": lambda: folder,
        "parent folder": lambda: folder.parent,
        "tar.gz": lambda: make_tar(tmp_path / "cifar-10-python.tar.gz", {folder.name: folder}),
        "wrapped tar.gz": lambda: make_tar(tmp_path / "wrapped.tar.gz", {f"data/{folder.name}": folder}),
    }[form]()

    loaded = load_cifar10(source, cache_dir=tmp_path / "cache")

    assert loaded.train_images.dtype == torch.uint8
    assert loaded.train_labels.dtype == torch.int64
    assert np.array_equal(loaded.train_images.numpy(), arrays.train_images)
    assert np.array_equal(loaded.train_labels.numpy(), arrays.train_labels)
    assert np.array_equal(loaded.test_images.numpy(), arrays.test_images)
    assert np.array_equal(loaded.test_labels.numpy(), arrays.test_labels)
    assert str(Path(source).absolute()) in loaded.source


@pytest.mark.parametrize("form", ["folder", "wrapped folder", "tar.gz", "flat tgz", "tar"])
def test_class_folders_round_trip(tmp_path: Path, arrays: Arrays, form: str) -> None:
    root = write_folders(tmp_path / "cifar10-mixed", arrays)
    if form == "wrapped folder":
        (tmp_path / "README.txt").write_text("a stray file next to the single data folder")
    source = {
        "folder": lambda: root,
        "wrapped folder": lambda: tmp_path,
        "tar.gz": lambda: make_tar(tmp_path / "images.tar.gz", {root.name: root}),
        "flat tgz": lambda: make_tar(tmp_path / "images.tgz", {"train": root / "train", "test": root / "test"}),
        "tar": lambda: make_tar(tmp_path / "images.tar", {root.name: root}),
    }[form]()

    loaded = load_cifar10(source, cache_dir=tmp_path / "cache")

    train_order = class_order(arrays.train_labels)
    test_order = class_order(arrays.test_labels)
    assert loaded.train_labels.tolist() == arrays.train_labels[train_order].tolist()
    assert loaded.test_labels.tolist() == arrays.test_labels[test_order].tolist()
    assert torch.all(loaded.train_labels.diff() >= 0), "sorted by class"
    # PNG is lossless; JPEG only close.
    assert np.array_equal(loaded.train_images.numpy(), arrays.train_images[train_order])
    jpeg_error = np.abs(loaded.test_images.numpy().astype(int) - arrays.test_images[test_order].astype(int))
    assert jpeg_error.mean() < 3
    assert loaded.test_images.shape == (10 * TEST_PER_CLASS, 3, 32, 32)


def test_folder_names_give_labels(tmp_path: Path) -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    for part, name in [("train", "truck"), ("train", "airplane"), ("test", "frog")]:
        (tmp_path / part / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / part / name / "a.png")
    loaded = load_cifar10(tmp_path, cache_dir=tmp_path / "cache")
    assert loaded.train_labels.tolist() == [CLASSES.index("airplane"), CLASSES.index("truck")]
    assert loaded.test_labels.tolist() == [CLASSES.index("frog")]


def test_source_from_environment(tmp_path: Path, arrays: Arrays, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folders(tmp_path / "images", arrays)
    monkeypatch.setenv("CIFAR10_DATA", str(root))
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "env-cache"))
    loaded = load_cifar10()
    assert len(loaded.train_labels) == 10 * TRAIN_PER_CLASS
    assert loaded.source == str(root)
    assert list((tmp_path / "env-cache").glob("*.bin"))


# --------------------------------------------------------------------------- errors


def test_missing_directory_says_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError) as error:
        load_cifar10(missing)
    message = str(error.value)
    assert str(missing) in message
    assert "does not exist" in message
    assert "--data PATH" in message
    assert "cifar-10-batches-py" in message


def test_default_location_is_named_when_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_cifar10()
    assert str(tmp_path / "home" / ".cache" / "cifar10-autograder" / "data") in str(error.value)
    assert "--data PATH" in str(error.value)


def test_folder_without_data(tmp_path: Path) -> None:
    (tmp_path / "empty" / "something").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"No CIFAR-10 data found in .*empty.*--data PATH"):
        load_cifar10(tmp_path / "empty")


def test_file_that_is_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "cifar.tar.gz"
    bogus.write_bytes(b"this is not gzip at all" * 100)
    with pytest.raises(DataError, match=r"Cannot read .*cifar\.tar\.gz as a tar archive") as error:
        load_cifar10(bogus, cache_dir=tmp_path / "cache")
    assert error.value.__cause__ is None


def test_unknown_class_folder(tmp_path: Path, arrays: Arrays) -> None:
    root = write_folders(tmp_path / "images", arrays)
    (root / "train" / "unicorn").mkdir()
    Image.new("RGB", (32, 32)).save(root / "train" / "unicorn" / "0.png")
    with pytest.raises(DataError, match=r"Unknown class folder .*unicorn.*airplane"):
        load_cifar10(root, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("size", "mode", "detail"),
    [((28, 28), "RGB", r"\(3, 28, 28\)"), ((32, 32), "L", r"\(1, 32, 32\)")],
)
def test_image_that_is_not_32x32_rgb(
    tmp_path: Path, arrays: Arrays, size: tuple[int, int], mode: str, detail: str
) -> None:
    root = write_folders(tmp_path / "images", arrays)
    Image.new(mode, size).save(root / "test" / "dog" / "odd.png")
    with pytest.raises(DataError, match=rf"test/dog/odd\.png is not a 32x32 RGB image.*{detail}"):
        load_cifar10(root, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_jpeg_is_named(tmp_path: Path, arrays: Arrays, packed: bool, damage: str) -> None:
    root = write_folders(tmp_path / "images", arrays)
    victim = sorted((root / "test" / "ship").glob("*.jpg"))[0]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"\xff\xd8garbage")
    source = make_tar(tmp_path / "images.tar.gz", {"images": root}) if packed else root
    with pytest.raises(DataError, match=rf"test/ship/{victim.name} is not a readable image") as err:
        load_cifar10(source, cache_dir=tmp_path / "cache")
    assert err.value.__cause__ is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_pickle_batch(tmp_path: Path, arrays: Arrays, damage: str) -> None:
    folder = write_batches(tmp_path, arrays)
    batch = folder / "data_batch_2"
    good = batch.read_bytes()
    batch.write_bytes({"garbage": b"definitely not a pickle", "truncated": good[:5000], "empty": b""}[damage])
    with pytest.raises(DataError, match="data_batch_2 is not a readable CIFAR-10 batch") as error:
        load_cifar10(folder, cache_dir=tmp_path / "cache")
    assert "--data PATH" in str(error.value)
    assert error.value.__cause__ is None


def test_pickle_batch_with_wrong_contents(tmp_path: Path, arrays: Arrays) -> None:
    folder = write_batches(tmp_path, arrays)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": [1, 2, 3]}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch is not a CIFAR-10 batch"):
        load_cifar10(folder, cache_dir=tmp_path / "cache")


def test_pickle_batch_with_bad_labels(tmp_path: Path, arrays: Arrays) -> None:
    bad = arrays._replace(test_labels=arrays.test_labels + 5)
    folder = write_batches(tmp_path, bad)
    with pytest.raises(DataError, match=r"labels outside 0\.\.9"):
        load_cifar10(folder, cache_dir=tmp_path / "cache")


def test_missing_batch_file(tmp_path: Path, arrays: Arrays) -> None:
    folder = write_batches(tmp_path, arrays)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_cifar10(folder, cache_dir=tmp_path / "cache")


class RunsCommand:
    """Unpickling this calls os.system: the classic malicious pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.parametrize("packed", [False, True])
def test_malicious_pickle_never_runs(tmp_path: Path, arrays: Arrays, packed: bool) -> None:
    folder = write_batches(tmp_path / "data", arrays)
    marker = tmp_path / "payload-ran"
    write_batch(
        folder / "data_batch_1",
        arrays.train_images[:40],
        arrays.train_labels[:40],
        "training batch 1 of 5",
        extra={b"payload": RunsCommand(f"touch {marker}")},
    )
    assert b"system" in (folder / "data_batch_1").read_bytes()  # the payload really is there
    source = make_tar(tmp_path / "evil.tar.gz", {folder.name: folder}) if packed else folder
    with pytest.raises(DataError, match=r"data_batch_1 is not a readable.*system"):
        load_cifar10(source, cache_dir=tmp_path / "cache")
    assert not marker.exists()


def test_download_failure_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match=r"Could not download CIFAR-10 into .*--data PATH") as error:
        load_cifar10(download=True)
    assert error.value.__cause__ is None


def test_download_fills_the_default_folder(tmp_path: Path, arrays: Arrays, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    calls = []

    def fake_cifar10(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        write_batches(Path(root), arrays)  # what the real download leaves behind

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    loaded = load_cifar10(download=True)
    default = tmp_path / "home" / ".cache" / "cifar10-autograder" / "data"
    assert calls == [(str(default), True, True)]
    assert np.array_equal(loaded.train_images.numpy(), arrays.train_images)
    load_cifar10(download=True)
    assert len(calls) == 1, "second call finds the downloaded files"


# --------------------------------------------------------------------------- cache


def test_second_load_from_folder_comes_from_cache(tmp_path: Path, arrays: Arrays) -> None:
    root = write_folders(tmp_path / "images", arrays)
    cache = tmp_path / "cache"
    first = load_cifar10(root, cache_dir=cache)

    # Ruin every image but keep names, sizes and times: only a cache hit can still succeed.
    images = [p for p in root.rglob("*") if p.suffix in (".png", ".jpg")]
    for path in images:
        info = path.stat()
        path.write_bytes(b"\0" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    second = load_cifar10(root, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)

    # A changed file changes the cache key, so the (now ruined) files are read again.
    os.utime(images[0], ns=(0, 10**18))
    with pytest.raises(DataError, match="not a readable image"):
        load_cifar10(root, cache_dir=cache)


def test_second_load_from_archive_comes_from_cache(
    tmp_path: Path, arrays: Arrays, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_tar(tmp_path / "images.tar.gz", {"images": write_folders(tmp_path / "i", arrays)})
    cache = tmp_path / "cache"
    first = load_cifar10(archive, cache_dir=cache)

    def no_tar(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive was unpacked again")

    monkeypatch.setattr(tarfile, "open", no_tar)
    second = load_cifar10(archive, cache_dir=cache)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_images, second.test_images)


def test_cache_holds_raw_bytes_not_pickles(tmp_path: Path, arrays: Arrays) -> None:
    folder = write_batches(tmp_path, arrays)
    cache = tmp_path / "cache"
    load_cifar10(folder, cache_dir=cache)
    files = sorted(cache.iterdir())
    assert sorted(p.suffix for p in files) == [".bin", ".json"]
    for path in files:
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"
    header = json.loads(next(cache.glob("*.json")).read_text())
    assert header["nbytes"] == next(cache.glob("*.bin")).stat().st_size
    assert [a["name"] for a in header["arrays"]] == [
        "train_images",
        "train_labels",
        "test_images",
        "test_labels",
    ]


def test_different_archives_do_not_share_a_cache(tmp_path: Path, arrays: Arrays) -> None:
    cache = tmp_path / "cache"
    one = make_tar(tmp_path / "one.tar.gz", {"b": write_batches(tmp_path / "1", arrays)})
    other_arrays = arrays._replace(train_images=255 - arrays.train_images)
    other = make_tar(tmp_path / "two.tar.gz", {"b": write_batches(tmp_path / "2", other_arrays)})
    first = load_cifar10(one, cache_dir=cache)
    second = load_cifar10(other, cache_dir=cache)
    assert torch.equal(second.train_images, 255 - first.train_images)
    assert len(list(cache.glob("*.bin"))) == 2


@pytest.mark.parametrize("damage", ["truncated data", "flipped byte", "empty data", "bad header"])
def test_damaged_cache_is_rebuilt(tmp_path: Path, arrays: Arrays, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_tar(tmp_path / "b.tar.gz", {"b": write_batches(tmp_path / "src", arrays)})
    cache = tmp_path / "cache"
    first = load_cifar10(archive, cache_dir=cache)
    blob = next(cache.glob("*.bin"))
    content = blob.read_bytes()
    if damage == "truncated data":
        blob.write_bytes(content[: len(content) // 2])
    elif damage == "flipped byte":
        blob.write_bytes(content[:100] + bytes([content[100] ^ 0xFF]) + content[101:])
    elif damage == "empty data":
        blob.write_bytes(b"")
    else:
        next(cache.glob("*.json")).write_text('{"format": 1, "key": ')

    rebuilt = load_cifar10(archive, cache_dir=cache)
    assert torch.equal(first.train_images, rebuilt.train_images)
    assert blob.read_bytes() == content

    # And the repaired cache serves the next load on its own.
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("cache was not repaired"))
    assert torch.equal(load_cifar10(archive, cache_dir=cache).train_images, first.train_images)


# --------------------------------------------------------------------------- split


def test_split_is_balanced_disjoint_and_deterministic() -> None:
    dataset = tiny_dataset([30] * 10)
    train, val = dataset.split(num_val=100)
    assert len(val) == 100 and len(train) == 200
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(300))
    assert torch.bincount(dataset.train_labels[val], minlength=10).tolist() == [10] * 10
    assert torch.equal(val, dataset.split(num_val=100)[1])
    assert not torch.equal(val, dataset.split(num_val=100, seed=1)[1])
    # The labels are sorted by class, so "the last 100" would be 30 trucks and 70 ships.
    assert not torch.equal(val, torch.arange(200, 300))
    assert torch.equal(val, val.sort().values) and torch.equal(train, train.sort().values)


def test_split_needs_enough_images_per_class() -> None:
    dataset = tiny_dataset([30] * 9 + [5])
    with pytest.raises(DataError, match=r"'truck'.*only 5"):
        dataset.split(num_val=100)
    assert len(dataset.split(num_val=50)[1]) == 50


def test_split_size_must_divide_among_classes() -> None:
    with pytest.raises(ValueError, match="multiple of 10"):
        tiny_dataset([30] * 10).split(num_val=15)


# --------------------------------------------------------------------------- tensors


def test_normalize_values_and_types() -> None:
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    images[1] = 255
    out = data.normalize(images)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert torch.allclose(out[0], (-mean / std).expand(3, 32, 32))
    assert torch.allclose(out[1], ((1 - mean) / std).expand(3, 32, 32))
    assert data.normalize(images, dtype=torch.float64).dtype == torch.float64
    half = data.normalize(images, dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), out, atol=1e-2)
    assert torch.allclose(data.normalize(images[0]), out[0]), "a single CHW image works too"
    with pytest.raises(TypeError, match="uint8"):
        data.normalize(out)


def naive_flip_crops(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every image flip_crop may produce from ``image``, computed one crop at a time."""
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    crops = []
    for y in range(2 * pad + 1):
        for x in range(2 * pad + 1):
            crop = padded[:, y : y + 32, x : x + 32]
            crops += [crop, crop.flip(-1)]
    return crops


def test_flip_crop_outputs_are_flipped_shifted_copies() -> None:
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    out = data.flip_crop(images, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for image, result in zip(images, out, strict=True):
        assert any(torch.equal(result, c) for c in naive_flip_crops(image, 4))


def test_flip_crop_really_flips_and_shifts() -> None:
    n = 256
    images = torch.zeros(n, 1, 32, 32)
    images[:, :, 10, 20] = 1.0  # one bright pixel, away from the centre
    generator = torch.Generator().manual_seed(1)

    flipped_only = data.flip_crop(images, pad=0, generator=generator)
    flipped = flipped_only[:, 0, 10, 11] == 1
    assert torch.all(flipped | (flipped_only[:, 0, 10, 20] == 1))
    assert 0.3 < flipped.float().mean() < 0.7

    moved = data.flip_crop(images, pad=4, generator=generator)
    rows, cols = moved[:, 0].flatten(1).argmax(1).div(32, rounding_mode="floor"), None
    cols = moved[:, 0].flatten(1).argmax(1) % 32
    assert torch.all(moved.flatten(1).sum(1) == 1), "the pixel stays inside the image"
    assert torch.all((rows - 10).abs() <= 4)
    assert torch.all(((cols - 20).abs() <= 4) | ((cols - 11).abs() <= 4))
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 40, "many distinct shifts"


def test_flip_crop_zero_fills_and_is_reproducible() -> None:
    images = torch.full((64, 3, 32, 32), 200, dtype=torch.uint8)
    out = data.flip_crop(images, generator=torch.Generator().manual_seed(3))
    assert (out == 0).any() and (out == 200).any()
    assert set(out.unique().tolist()) == {0, 200}
    again = data.flip_crop(images, generator=torch.Generator().manual_seed(3))
    other = data.flip_crop(images, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out, again)
    assert not torch.equal(out, other)


def numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels and labels both hold their index, to track them through a loader."""
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32)
    return images.contiguous(), torch.arange(n)


def test_loader_batches_in_order() -> None:
    images, labels = numbered(150)
    loader = TensorLoader(images, labels, batch_size=64)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [len(y) for _, y in batches] == [64, 64, 22]
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, data.normalize(images[:64]))
    dropping = TensorLoader(images, labels, batch_size=64, drop_last=True)
    assert len(dropping) == len(list(dropping)) == 2
    assert loader.batch_size == 64 and len(loader.dataset) == 150
    assert loader.dataset.train is True
    assert TensorLoader(images, labels, train=False).dataset.train is False


def test_loader_shuffle_is_reproducible_and_changes_per_epoch() -> None:
    images, labels = numbered(200)

    def epochs(loader: TensorLoader, count: int) -> list[list[int]]:
        return [torch.cat([y for _, y in loader]).tolist() for _ in range(count)]

    first, second = epochs(TensorLoader(images, labels, shuffle=True, seed=5), 2)
    assert sorted(first) == list(range(200)), "every sample exactly once"
    assert first != list(range(200))
    assert first != second, "each epoch is shuffled afresh"
    assert epochs(TensorLoader(images, labels, shuffle=True, seed=5), 2) == [first, second]
    assert epochs(TensorLoader(images, labels, shuffle=True, seed=6), 1)[0] != first
    # Seeds 5 and 6 must not just be one epoch apart.
    assert epochs(TensorLoader(images, labels, shuffle=True, seed=6), 1)[0] != second


def test_loader_augmentation_keeps_labels() -> None:
    images, labels = numbered(128)
    images = images.clone()
    images[:, :, :, :16] = 0  # left half dark, so flips and shifts show
    plain = TensorLoader(images, labels, shuffle=True, seed=1)
    augmented = TensorLoader(images, labels, shuffle=True, seed=1, augment=True)
    for (x_plain, y_plain), (x_aug, y_aug) in zip(plain, augmented, strict=True):
        assert torch.equal(y_plain, y_aug)
        assert x_aug.shape == x_plain.shape
        assert not torch.equal(x_plain, x_aug)


def test_assignment_loaders() -> None:
    dataset = tiny_dataset([110] * 10, test_per_class=3)
    loaders = data.assignment_loaders(dataset, batch_size=100, dtype=torch.float64)
    train_index, val_index = dataset.split()
    assert len(loaders.train.dataset) == 100 and len(loaders.val.dataset) == 1000
    assert len(loaders.test.dataset) == 30
    assert loaders.train.dataset.train and loaders.val.dataset.train
    assert not loaders.test.dataset.train
    assert loaders.train.shuffle and not loaders.val.shuffle and not loaders.test.shuffle
    assert torch.equal(loaders.val.dataset.labels, dataset.train_labels[val_index])
    assert torch.equal(loaders.train.dataset.labels, dataset.train_labels[train_index])
    x, y = next(iter(loaders.val))
    assert x.dtype == torch.float64 and x.shape == (100, 3, 32, 32) and y.dtype == torch.int64
    assert len(loaders.val) == 10 and loaders.val.batch_size == 100


# --------------------------------------------------------------------------- the real data


def test_real_archive(cifar10_path: str, cifar10_cache: str) -> None:
    """The shared archive, decoded once for the whole session (by whichever test needs it
    first) into the session's cache."""
    cifar = load_cifar10(cifar10_path, cache_dir=cifar10_cache)
    assert cifar.train_images.shape == (50_000, 3, 32, 32)
    assert cifar.test_images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(cifar.train_labels).tolist() == [5_000] * 10
    assert torch.bincount(cifar.test_labels).tolist() == [1_000] * 10
    # Channel order and constants: the data's own mean should be close to MEAN.
    channel_mean = cifar.train_images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(channel_mean, torch.tensor(MEAN), atol=0.01)

    train, val = cifar.split()
    assert len(train) == data.NUM_TRAIN and len(val) == data.NUM_VAL
    assert torch.bincount(cifar.train_labels[val]).tolist() == [100] * 10

    started = time.perf_counter()
    again = load_cifar10(cifar10_path, cache_dir=cifar10_cache)
    print(f"reload from cache: {time.perf_counter() - started:.2f} s")
    assert torch.equal(again.train_images, cifar.train_images)
    assert torch.equal(again.test_labels, cifar.test_labels)
