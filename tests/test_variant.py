"""Instructor variants: a variant file changes the specification's values (channels,
learning rates, momentum, the Question 7 threshold and epoch limit); ``grade assign
--variant`` makes the matching template, answer key example and rubric, and grading with
the variant checks the varied values.

The mutation corpus is graded against a variant too: each mutant still loses points on its
own question only. By default a quick set runs (``QUICK``: the mutants that change a
specification value or whose expected message names one, and the first mutant of each
question that has none); the whole corpus is ``exhaustive`` (opt in with ``pytest -m
exhaustive``)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import mutations
import pytest
from test_mutations import QUESTIONS, assert_graded_as_expected

from grader.assign import NOTEBOOK_NAME, assign, render_script, script_to_notebook
from grader.assignments.cifar10.checks.spec import (
    DEFAULT,
    EXAMPLE,
    VariantError,
    load_variant,
    rubric_for_variant,
    variant_from_dict,
)
from grader.batch import grade_batch
from grader.cli import main
from grader.engine import check_title
from grader.rubric import load_rubric, tomllib

pytestmark = pytest.mark.timeout(2400)

# The issue's example: other channels, Q5's learning rate, Q6's momentum, Q7's bar and epochs.
VARIANT_TOML = """\
channel_1 = 64
channel_2 = 32

[Q5]
lr = 5e-3

[Q6]
momentum = 0.8

[Q7]
threshold = 0.72
epochs = 8
"""
VARIANT = variant_from_dict(
    {
        "channel_1": 64,
        "channel_2": 32,
        "Q5": {"lr": 5e-3},
        "Q6": {"momentum": 0.8},
        "Q7": {"threshold": 0.72, "epochs": 8},
    }
)


def test_a_variant_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "fall.toml"
    path.write_text(VARIANT_TOML)
    variant = load_variant(path)
    assert variant == VARIANT
    assert variant.changes() == {
        "channel_1": 64,
        "channel_2": 32,
        "Q5.lr": 5e-3,
        "Q6.momentum": 0.8,
        "Q7.threshold": 0.72,
        "Q7.epochs": 8,
    }
    assert variant.q2 == DEFAULT.q2 and variant.q6.nesterov and variant.q6.lr == 1e-2
    assert load_variant(None) == DEFAULT
    assert variant_from_dict(tomllib.loads(EXAMPLE)) == VARIANT  # the example grade assign --help shows


@pytest.mark.parametrize(
    "text, says",
    [
        ("channel_3 = 8", "unknown key 'channel_3'"),
        ("[Q5]\nmomentum = 0.9", "unknown key(s) in [Q5]: momentum (known: lr)"),
        ("[Q4]\nlr = 1e-3", "unknown key 'Q4'"),
        ('channel_1 = "64"', "channel_1 must be a whole number"),
        ("channel_1 = 64.0", "channel_1 must be a whole number"),
        ('[Q6]\nnesterov = "yes"', "[Q6] nesterov must be true or false"),
        ("channel_2 = 0", "channel_2 must be between 1 and 512"),
        ("[Q5]\nlr = -1e-3", "[Q5] lr must be above 0"),
        ("[Q6]\nmomentum = 1.5", "[Q6] momentum must be at least 0 and below 1"),
        ("[Q6]\nmomentum = 0.0", "nesterov = true needs a momentum above 0"),
        ("[Q7]\nthreshold = 72", "threshold is a fraction: 0.72 for 72%"),
        ("[Q7]\nthreshold = 0.95", "at most 0.8"),
        ("[Q7]\nepochs = 3", "the answer key's Question 7 trains 6 epochs"),
        ("Q5 = 3", "Q5 must be a table"),
        ("channel_1 = ", "cannot read the variant"),
    ],
)
def test_a_bad_variant_file_is_refused_with_the_reason(tmp_path, text, says):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VariantError) as error:
        load_variant(path)
    assert says in str(error.value) and str(path) in str(error.value)


def test_check_titles_show_the_variants_values_and_stay_as_they_were_by_default():
    from grader.checks import all_checks

    checks = all_checks()
    standard = {
        "Q2.learning_rate": "learning rate is 3e-3",
        "Q5.model": "the model is ThreeLayerConvNet(3, 32, 16, 10)",
        "Q5.optimizer": "optimizer is plain SGD with lr 3e-3 over every parameter",
        "Q6.optimizer": "optimizer is SGD with lr 1e-2, momentum 0.9 and Nesterov",
        "Q7.validation_accuracy": "accuracy on images your code did not train on reaches the threshold (70% by default)",
        "Q7.training_rules": "training rules: at most 10 epochs, reported accuracy consistent",
    }
    assert {k: check_title(checks[k]) for k in standard} == standard
    varied = {k: check_title(checks[k], VARIANT) for k in standard}
    assert varied["Q5.model"] == "the model is ThreeLayerConvNet(3, 64, 32, 10)"
    assert varied["Q5.optimizer"] == "optimizer is plain SGD with lr 5e-3 over every parameter"
    assert varied["Q6.optimizer"] == "optimizer is SGD with lr 1e-2, momentum 0.8 and Nesterov"
    assert "(72% by default)" in varied["Q7.validation_accuracy"]
    assert "at most 8 epochs" in varied["Q7.training_rules"]
    assert all("{" not in check_title(c, VARIANT) for c in checks.values())


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """``grade assign --variant`` run as an instructor runs it."""
    folder = tmp_path_factory.mktemp("variant")
    (folder / "fall.toml").write_text(VARIANT_TOML)
    out = folder / "fall"
    assert main(["assign", "--variant", str(folder / "fall.toml"), "--out", str(out)]) == 0
    return out


def test_grade_assign_writes_the_variants_template_answer_key_rubric_and_variant(generated, capsys):
    student = (generated / "student_template" / f"{NOTEBOOK_NAME}.py").read_text()
    filled = (generated / "examples" / "filled_template" / f"{NOTEBOOK_NAME}.ipynb").read_text()
    assert (generated / "student_template" / f"{NOTEBOOK_NAME}.ipynb").exists()
    for text in (student, filled):
        assert "at least 72% validation accuracy within 8 epochs" in text
        assert "at most 8 epochs over the 49,000 training images" in text
        assert "Conv2d 3 -> 64 (5x5, padding 2)" in text
        assert "learning rate 1e-2, momentum 0.8 and Nesterov momentum" in text
        assert "with learning rate 5e-3" in text
    assert "learning_rate = 5e-3\nchannel_1 = 64\nchannel_2 = 32\n" in student  # the Q5 cell
    assert "momentum = 0.8\nnesterov = True\n" in student  # the Q6 cell
    assert 'raise NotImplementedError(\\"Question 6 is not answered yet' not in filled
    assert '"variant": {' in filled  # the notebook says which variant it is
    rubric = load_rubric(generated / "rubric.toml")
    assert rubric.threshold.full_at == 0.72 and rubric.titles["Q7"] == "Open-ended challenge: 72% validation accuracy"
    assert rubric.entries == load_rubric().entries
    assert load_variant(generated / "variant.toml") == VARIANT
    # Grading with the variant and no rubric gives the rubric grade assign wrote.
    implied = rubric_for_variant(load_rubric(), VARIANT, explicit=False)
    assert (implied.threshold, implied.titles) == (rubric.threshold, rubric.titles)
    # Up to date once written; the project's own files are untouched by a variant.
    assert assign(check=True, variant=VARIANT, out=generated) == []
    assert assign(check=True) == []
    assert main(["assign", "--variant", str(generated / "variant.toml")]) == 2
    assert "--variant needs --out" in capsys.readouterr().err


def test_a_rubric_that_contradicts_the_variants_threshold_is_refused(tmp_path, capsys):
    with pytest.raises(VariantError, match=re.escape("full_at = 0.7, the variant to 0.72")):
        rubric_for_variant(load_rubric(), VARIANT, explicit=True)
    bad = tmp_path / "bad.toml"
    bad.write_text("[Q6]\nmomentum = 2\n")
    (tmp_path / "subs").mkdir()
    code = main([str(tmp_path / "subs"), "--variant", str(bad), "--no-data", "--out", str(tmp_path / "out")])
    assert code == 2 and "[Q6] momentum must be at least 0 and below 1" in capsys.readouterr().err


# -- the mutation corpus against the variant -----------------------------------------------------


def _rewrite(text: str) -> str:
    """The corpus's text as it reads in the variant: the cells' values, the hard-coded
    learning rate of a correct answer, and the layers messages name."""
    words, c1, c2 = VARIANT.words(), VARIANT.channel_1, VARIANT.channel_2
    table = [
        (r"learning_rate = 3e-3(?=\nchannel_1 = 32\nchannel_2 = 16\n\nconv_w1)", f"learning_rate = {words['q2_lr']}"),
        (r"channel_1 = 32\b", f"channel_1 = {c1}"),
        (r"channel_2 = 16\b", f"channel_2 = {c2}"),
        (r"lr=3e-3", f"lr={words['q5_lr']}"),  # a Q5 answer
        (r"Conv2d\(3, 32, 5\)", f"Conv2d(3, {c1}, 5)"),
        (r"Conv2d\(32, 16, 3\)", f"Conv2d({c1}, {c2}, 3)"),
    ]
    for pattern, new in table:  # in this order: the Q2 cell is recognised by its channels
        text = re.sub(pattern, new, text)
    return text


def for_variant(m: mutations.Mutation) -> mutations.Mutation:
    from dataclasses import replace

    return replace(
        m, edits=tuple((_rewrite(a), _rewrite(b)) for a, b in m.edits), says=tuple(_rewrite(s) for s in m.says)
    )


SPEC_WORDS = {"channel_1", "channel_2", "learning_rate", "lr", "momentum", "nesterov", "3e-3", "1e-2", "0.9"}


def _changes_a_value(m: mutations.Mutation) -> bool:
    """Whether a mutant adds or removes a specification value (a name or a standard value in
    its edit), or expects a message the variant rewrites."""
    words = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?(?:e-?\d+)?")
    for old, new in m.edits:
        before, after = Counter(words.findall(old)), Counter(words.findall(new))
        if (set(before - after) | set(after - before)) & SPEC_WORDS:
            return True
    return for_variant(m).says != m.says


ALL = mutations.BUGS + mutations.CORRECT
TOUCHING = [m for m in ALL if _changes_a_value(m)]
# ... and the first mutant of each question (and of the correct answers) that has none.
FIRST = [next(m for m in ALL if m.question == q) for q in [*QUESTIONS, None] if q not in {m.question for m in TOUCHING}]
QUICK = [m for m in ALL if m in TOUCHING or m in FIRST]


def _grade(generated: Path, folder: Path, chosen: list[mutations.Mutation], out: Path, data: str, cache: str) -> dict:
    import nbformat

    script = render_script(filled=True, variant=VARIANT)
    (folder / "filled-variant.ipynb").write_text(nbformat.writes(script_to_notebook(script, VARIANT)))
    (folder / "filled-standard.ipynb").write_text(nbformat.writes(script_to_notebook(render_script(filled=True))))
    for m in chosen:
        text = mutations.apply(for_variant(m), script)
        if m.form == "py":
            (folder / f"{m.name}.py").write_text(text)
        else:
            (folder / f"{m.name}.ipynb").write_text(nbformat.writes(script_to_notebook(text, VARIANT)))
    results = grade_batch(
        submissions=folder,
        out=out,
        data=data,
        cache_dir=cache,
        questions=QUESTIONS,
        seed=12345,
        use_cache=False,
        progress=False,
        reports=False,
        similarity=False,
        variant=generated / "variant.toml",
        rubric=generated / "rubric.toml",
    )
    return {r.name: r for r in results}


@pytest.fixture(scope="module")
def quick(generated, tmp_path_factory, cifar10_path, cifar10_cache) -> dict:
    folder, out = tmp_path_factory.mktemp("quick"), tmp_path_factory.mktemp("quick-out")
    return _grade(generated, folder, QUICK, out, cifar10_path, cifar10_cache)


def test_the_quick_set_is_chosen_by_its_rule():
    names = {m.name for m in QUICK}
    assert {m.question for m in QUICK} == {*QUESTIONS, None} and len(QUICK) <= 14
    for wanted in ("q5-learning-rate-1e-2", "q6-no-nesterov", "q5-channels-12-8-from-the-sanity-test"):
        assert wanted in names
    assert "q6-real-case-first-relu-missing" in names  # its message names the variant's layers
    assert for_variant(next(m for m in ALL if m.name == "q6-real-case-first-relu-missing")).says == (
        "missing ReLU between Conv2d(3, 64, 5) and Conv2d(64, 32, 3)",
    )


@pytest.mark.slow
def test_the_variants_answer_key_gets_full_marks(quick):
    result = quick["filled-variant"]
    assert result.score == result.max_score, [f"{c.id}: {c.message}" for c in result.checks if c.status != "passed"]


@pytest.mark.slow
def test_the_standard_answer_loses_points_exactly_where_the_variant_differs(quick):
    result = quick["filled-standard"]
    failed = {c.id: c.message for c in result.checks if c.status != "passed"}
    # Channels: Q2's parameter shapes (and so their initialisation and learning run), Q5's model
    # and Q6's layers; Q5's learning rate; Q6's momentum. Q3 and Q4 take the channels as
    # arguments, so the standard class is right for the variant too; Q2's learning rate is not varied.
    assert set(failed) == {
        "Q2.shapes",
        "Q2.kaiming_init",
        "Q2.learns",
        "Q5.model",
        "Q5.optimizer",
        "Q5.optimizer_step",
        "Q6.architecture",
        "Q6.parity",
        "Q6.optimizer",
    }, failed
    assert "expected (64, 3, 5, 5)" in failed["Q2.shapes"]
    assert "ThreeLayerConvNet(3, 64, 32, 10)" in failed["Q5.model"]
    assert "lr=0.003 (expected 0.005)" in failed["Q5.optimizer"]
    assert "momentum=0.9 (expected 0.8)" in failed["Q6.optimizer"]
    assert "Conv2d(3, 32, 5) has out_channels=32 (expected 64)" in failed["Q6.architecture"]


@pytest.mark.slow
@pytest.mark.parametrize("mutation", QUICK, ids=[m.name for m in QUICK])
def test_each_mutant_loses_points_on_its_own_question_in_the_variant(quick, mutation):
    assert_graded_as_expected(quick[mutation.name], for_variant(mutation))


@pytest.mark.exhaustive  # the whole corpus against the variant: ~10 min on two cores
def test_the_whole_corpus_against_the_variant(generated, tmp_path_factory, cifar10_path, cifar10_cache):
    folder, out = tmp_path_factory.mktemp("all"), tmp_path_factory.mktemp("all-out")
    graded = _grade(generated, folder, ALL, out, cifar10_path, cifar10_cache)
    problems = []
    for m in ALL:
        try:
            assert_graded_as_expected(graded[m.name], for_variant(m))
        except AssertionError as exc:
            problems.append(f"{m.name}: {exc}")
    full = graded["filled-variant"]
    assert full.score == full.max_score
    assert not problems, "\n".join(problems)


def test_the_gradescope_zip_carries_the_variant_and_its_rubric(generated, tmp_path, capsys):
    import zipfile

    out = tmp_path / "autograder.zip"
    variant = str(generated / "variant.toml")
    assert main(["gradescope", "build", "--download", "--variant", variant, "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        assert variant_from_dict(tomllib.loads(zf.read("variant.toml").decode())) == VARIANT
        assert "full_at = 0.72" in zf.read("rubric.toml").decode()
    shipped = ["--rubric", str(load_rubric().path)]
    assert main(["gradescope", "build", "--download", "--variant", variant, *shipped, "--out", str(out)]) == 2
    assert "the variant to 0.72" in capsys.readouterr().err
