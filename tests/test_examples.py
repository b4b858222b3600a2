"""The shipped examples: up to date, and graded as the README promises."""

from __future__ import annotations

from pathlib import Path

import examples_source
import pytest

from grader.batch import grade_batch


def test_the_examples_are_what_their_source_makes():
    for rel, content in examples_source.files().items():
        path = examples_source.EXAMPLES / rel
        if isinstance(content, Path):
            assert not path.is_symlink(), f"{rel} is a link, which the grader refuses"
            assert path.read_bytes() == content.read_bytes(), (
                f"{rel} is out of date: run python tests/examples_source.py"
            )
        else:
            assert path.read_text() == content, f"{rel} is out of date: run python tests/examples_source.py"


@pytest.fixture(scope="module")
def graded(tmp_path_factory, cifar10_path, cifar10_cache):
    results = grade_batch(
        submissions=examples_source.EXAMPLES,
        out=tmp_path_factory.mktemp("examples-out"),
        data=cifar10_path,
        cache_dir=cifar10_cache,
        progress=False,
        seed=7,
    )
    return {r.name: r for r in results}


def test_every_example_is_graded(graded):
    assert set(graded) == set(examples_source.EXPECTED)


@pytest.mark.parametrize("name", sorted(examples_source.EXPECTED))
def test_each_example_scores_as_expected(graded, name):
    result, expected = graded[name], examples_source.EXPECTED[name]
    failures = [f"{c.id} [{c.status}]: {c.message}" for c in result.checks if c.status != "passed"]
    if expected == "invalid":
        assert result.status == "invalid" and result.reason
    elif expected == "full":
        assert result.score == result.max_score == 100, failures
    elif expected == "zero":
        assert result.status == "graded" and result.score == 0
    else:
        lost = {q.id for q in result.questions() if q.score < q.max_score}
        assert lost == expected, failures
