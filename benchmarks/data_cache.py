"""Time loading CIFAR-10: the first decode into a fresh cache, then a reload from that cache.

.venv/bin/python benchmarks/data_cache.py [--data PATH] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so the script runs from a checkout without installing it

from grader.data import DataError, load_cifar10  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="CIFAR-10 to load: a cifar-10-batches-py folder, class folders or a tar archive "
        "(default: the shared JPEG archive next to the repository)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="folder in which to create the fresh, temporary cache (default: the system's "
        "temporary folder); it is deleted afterwards",
    )
    args = parser.parse_args(argv)
    if args.cache_dir is not None:
        args.cache_dir.mkdir(parents=True, exist_ok=True)

    # A new, empty cache folder every run, so the first load really decodes.
    with tempfile.TemporaryDirectory(prefix="cifar10-cache-", dir=args.cache_dir) as cache:
        try:
            started = time.perf_counter()
            data = load_cifar10(args.data, cache_dir=cache)
            first = time.perf_counter() - started

            started = time.perf_counter()
            load_cifar10(args.data, cache_dir=cache)
            reload = time.perf_counter() - started
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    print(f"data:              {data.source}")
    print(f"images:            {len(data.train_labels)} train, {len(data.test_labels)} test")
    print(f"first decode:      {first:.2f} s")
    print(f"reload from cache: {reload:.2f} s")
    print(f"ratio:             {first / reload:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
