"""Shared fixtures: the real dataset from ../shared/data (never downloaded) and helpers
to grade a submission folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def cifar10_path() -> str:
    """The real CIFAR-10 archive beside the checkout; tests that need it skip without it."""
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"the CIFAR-10 archive is not at {SHARED_ARCHIVE}")
    return str(SHARED_ARCHIVE)


@pytest.fixture(scope="session")
def cifar10_cache(tmp_path_factory) -> str:
    """A cache folder shared by the whole test session (decoding happens once)."""
    return os.environ.get("CIFAR10_CACHE") or str(tmp_path_factory.mktemp("cifar10-cache"))


@pytest.fixture(scope="session")
def cifar10(cifar10_path, cifar10_cache):
    from grader.data import load_cifar10

    return load_cifar10(cifar10_path, cache_dir=cifar10_cache)


@pytest.fixture(scope="session")
def data_loader(cifar10):
    """What grade_submission takes as ``data_loader``: the session's one loaded dataset."""
    return lambda: cifar10


@pytest.fixture(scope="session", autouse=True)
def every_results_json_follows_gradescope(tmp_path_factory):
    """Every results.json the tests write follows Gradescope's specification (checked
    once, when the session ends, over the whole temporary folder)."""
    yield
    import json

    from gradescope_schema import validate

    for path in tmp_path_factory.getbasetemp().rglob("results.json"):
        validate(json.loads(path.read_text()))
