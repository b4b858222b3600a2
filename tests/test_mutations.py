"""The mutation corpus (tests/mutations.py), graded as one batch: every one-bug variant
of the filled template loses points on its question and only there; every correct
variant written differently keeps full marks. Question 7 is left out: no mutation
touches it, and measuring it is the business of test_challenge_grading.py."""

from __future__ import annotations

import mutations
import pytest

from grader.assign import render_script, script_to_notebook
from grader.batch import grade_batch

# Grading the whole corpus at once takes ~15 min on a shared 2-core machine: beyond the default per-test limit.
pytestmark = pytest.mark.timeout(2400)

QUESTIONS = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]
ALL = mutations.BUGS + mutations.CORRECT


@pytest.fixture(scope="module")
def graded(tmp_path_factory, cifar10_path, cifar10_cache) -> dict:
    import nbformat

    folder = tmp_path_factory.mktemp("corpus")
    script = render_script(filled=True)
    (folder / "filled-template.ipynb").write_text(nbformat.writes(script_to_notebook(script)))
    for m in ALL:
        text = mutations.apply(m, script)
        if m.form == "py":
            (folder / f"{m.name}.py").write_text(text)
        else:
            (folder / f"{m.name}.ipynb").write_text(nbformat.writes(script_to_notebook(text)))
    results = grade_batch(
        submissions=folder,
        out=tmp_path_factory.mktemp("corpus-out"),
        data=cifar10_path,
        cache_dir=cifar10_cache,
        questions=QUESTIONS,
        seed=12345,
        use_cache=False,
        progress=False,
        reports=False,
    )
    return {r.name: r for r in results}


def test_the_corpus_is_large_enough():
    assert len(mutations.BUGS) >= 30 and len(mutations.CORRECT) >= 5
    assert {m.question for m in mutations.BUGS} == set(QUESTIONS)


def test_the_filled_template_gets_full_marks(graded):
    result = graded["filled-template"]
    assert result.score == result.max_score, [f"{c.id}: {c.message}" for c in result.checks if c.status != "passed"]


@pytest.mark.parametrize("mutation", ALL, ids=[m.name for m in ALL])
def test_points_are_lost_on_the_right_question_only(graded, mutation):
    assert_graded_as_expected(graded[mutation.name], mutation)


def assert_graded_as_expected(result, mutation: mutations.Mutation) -> None:
    """A bug loses points on its question only, failing the checks it names with the
    phrases it names; a correct variant keeps full marks."""
    assert result.status == "graded", result.reason
    lost = {q.id: q.max_score - q.score for q in result.questions() if q.score < q.max_score}
    failures = [f"{c.id} [{c.status}]: {c.message}" for c in result.checks if c.status != "passed"]
    if mutation.question is None:
        assert not lost, failures
        return
    assert set(lost) == {mutation.question}, failures
    by_id = {c.id: c for c in result.checks}
    for check_id in mutation.failing:
        assert by_id[check_id].status != "passed", f"{check_id} should fail: {by_id[check_id].message}"
    messages = " ".join(by_id[c].message for c in mutation.failing)
    for phrase in mutation.says:
        assert phrase in messages, messages
    for check_id in mutation.passing:
        assert by_id[check_id].status == "passed", f"{check_id}: {by_id[check_id].message}"
    own = " ".join(c.message for c in result.checks if c.question == mutation.question)
    for phrase in mutation.never_says:
        assert phrase not in own, own


def test_no_check_ends_in_an_internal_grader_error(graded):
    """A student's bug is reported as the student's; an internal error is a grader bug."""
    internal = [
        f"{name} {c.id}: {c.message}"
        for name, result in graded.items()
        for c in result.checks
        if "internal grader error" in c.message
    ]
    assert not internal, internal
