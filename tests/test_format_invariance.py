"""Same work, same grade, however it is handed in.

Every submission of the mutation corpus (the filled template, every one-bug variant and
every correct variant) and every example is converted into each representation of
``representations.py``: the notebook itself, jupytext percent, ``nbconvert --to script``,
Colab's "Download .py", a plain module, cells merged, cells split, stale outputs with
shuffled execution counts. Grading one submission fully takes seconds, so the test is in
three tiers:

1. ``test_every_representation_hands_the_same_objects_to_grading`` (whole corpus, six
   representations, about 270 runs): runs the cells as the worker does (Question 7's
   code left out, as with ``--questions Q1,...,Q6``) and compares what grading is given:
   for Q2, Q5 and Q6 the captured objects (parameter values, model structure and
   weights, optimizer settings) through the same ``describe_capture`` probe the checks
   use; for Q1, Q3 and Q4 the outputs of ``three_layer_convnet``, ``ThreeLayerConvNet``
   and ``flatten`` on fixed inputs; and which questions a cell reports as not answered.
   A check sees nothing else of the submission, so equal signatures mean equal grades;
   a representation that loses or misattributes an answer (the 29/70 of a Colab
   download) fails here. It runs in two processes, a fresh Runtime per submission.
2. ``test_examples_grade_identically_in_every_representation``: the examples (the
   filled and empty templates, the CS231n layout, the one-bug ones), in all eight
   representations, graded fully on Q1-Q6 with the real grader; every check's status
   and score must equal the notebook's.
3. ``test_the_whole_corpus_grades_identically`` (``exhaustive``, opt-in with ``pytest -m
   exhaustive``): tier 2 for the whole corpus; it prints the mean score per representation.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
from pathlib import Path

import examples_source
import mutations
import pytest
import representations
import torch

from grader.assign import render_script
from grader.batch import grade_batch

QUESTIONS = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]
# The structurally different forms; percent cells and stale outputs are graded in tier 2.
CHEAP = ["notebook", "nbconvert", "colab", "plain", "merged", "split"]


def corpus() -> dict[str, tuple[str, str]]:
    """name -> (suffix, text) for the filled template and every mutation."""
    script = render_script(filled=True)
    out = {"filled-template": (".py", script)}
    for m in mutations.BUGS + mutations.CORRECT:
        out[m.name] = (".py", mutations.apply(m, script))
    return out


def examples() -> dict[str, tuple[str, str, Path | None]]:
    """name -> (suffix, text, checkpoint) for every gradable example."""
    out = {}
    for name, expected in examples_source.EXPECTED.items():
        if expected == "invalid" or name in examples_source.EXPORTED:  # those are the filled template
            continue
        path = examples_source.EXAMPLES / name
        if not path.is_dir():
            path = next(examples_source.EXAMPLES.glob(f"{name}.*"))
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in (".ipynb", ".py"))
        source = files[0]
        checkpoint = path / "best_model.pt" if path.is_dir() and (path / "best_model.pt").exists() else None
        out[name] = (source.suffix, source.read_text(), checkpoint)
    return out


# -- tier 1: what each representation hands to grading ---------------------------------------


def _digest(value):
    """A comparable summary of probe data: tensors by shape, dtype and exact bytes."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        return ("tensor", tuple(data.shape), str(data.dtype), hashlib.sha256(data.numpy().tobytes()).hexdigest()[:16])
    if isinstance(value, dict):
        return {k: _digest(v) for k, v in value.items() if k not in ("cell", "cells")}
    if isinstance(value, (list, tuple)):
        return [_digest(v) for v in value]
    return value


def _code(fn) -> str:
    """A function's compiled body, without line numbers (they differ between forms)."""
    code = fn.__code__
    nested = [c.co_code for c in code.co_consts if hasattr(c, "co_code")]
    return hashlib.sha256(repr((code.co_code, code.co_names, nested)).encode()).hexdigest()[:16]


def _call(fn):
    try:
        return _digest(fn())
    except BaseException as exc:  # the same bug must raise the same way in every form
        return ("raised", type(exc).__name__)


def signature(job: tuple[str, str, str]) -> tuple[str, str, dict]:
    """Run one submission's cells as the worker does and describe what the checks get."""
    name, suffix, text = job
    from grader.submission import load_submission

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"submission{suffix}"
        path.write_text(text)
        submission = load_submission(path)
        os.chdir(tmp)  # what the cells write (a checkpoint, say) lands here
        return name, suffix, _run_and_describe(submission)


def _run_and_describe(submission) -> dict:
    from grader.worker import probes
    from grader.worker.runtime import Runtime

    rt = Runtime(seed=0)
    not_answered = set()
    for cell in submission.cells:
        if cell.questions == ["Q7"]:
            continue  # as the engine does when Question 7 is not graded
        out = rt.run_cell(
            index=cell.index,
            source=cell.source,
            question=cell.questions[0] if cell.questions else None,
            questions=cell.questions,
            line_offset=cell.line_offset,
            timeout=60,
        )
        if out["error"] and out["error"]["type"] == "NotImplementedError":
            not_answered.update(cell.questions)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 32, 32, generator=g)
    params = [torch.randn(s, generator=g) * 0.05 for s in ((4, 3, 5, 5), (4,), (2, 4, 3, 3), (2,), (2048, 10), (10,))]

    def convnet():
        torch.manual_seed(0)
        return rt.lookup("ThreeLayerConvNet")(3, 4, 2, 10)(x)

    sig = {
        "Q1": _call(lambda: rt.lookup("three_layer_convnet")(x, params)),
        "flatten": _call(lambda: rt.lookup("flatten")(x)),
        "Q3/Q4": _call(convnet),
        "not answered": sorted(q for q in not_answered if q != "Q7"),
        # the provided helpers the checks call, as the submission left them
        "helpers": {
            h: _call(lambda h=h: _code(rt.helper(h))) for h in ("train_part2", "train_part34", "random_weight")
        },
    }
    for q in ("Q2", "Q5", "Q6"):
        sig[q] = _call(lambda q=q: probes.describe_capture(rt, question=q))
    return sig


def _signatures(jobs: list[tuple[str, str, str]]) -> list[tuple[str, str, dict]]:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        # a bounded wait: a pool whose process died would otherwise wait for ever
        return pool.map_async(signature, jobs, chunksize=1).get(timeout=1800)


# A known limit of attribution by meaning: a Question 5 model that is not a
# ThreeLayerConvNet (its layers kept in a plain list) is Question 5's only by the label of
# its cell; where a form keeps no cell labels, it cannot be told from any other model
# trained. It loses Question 5's points in every form, with different messages.
LABEL_ONLY = {("q5-layers-in-a-plain-list", rep) for rep in ("colab", "plain", "split")}


def test_every_representation_hands_the_same_objects_to_grading():
    jobs, names = [], []
    for name, (suffix, text) in corpus().items():
        for rep in CHEAP:
            out_suffix, out_text = representations.convert(text, suffix, rep)
            jobs.append((f"{name}/{rep}", out_suffix, out_text))
            names.append((name, rep))
    results = {(n, r): sig for (n, r), (_, _, sig) in zip(names, _signatures(jobs))}
    differences = []
    for name in corpus():
        base = results[(name, "notebook")]
        for rep in CHEAP[1:]:
            if (name, rep) in LABEL_ONLY:
                continue
            got = results[(name, rep)]
            keys = [k for k in base if base[k] != got.get(k)]
            if keys:
                differences.append(f"{name} as {rep}: differs on {keys}")
    assert not differences, "\n".join(differences)
    # The signatures are not blind: the template answers everything, the bugs change things.
    filled = results[("filled-template", "notebook")]
    assert all(filled[q] and filled[q][0] != "raised" for q in ("Q1", "Q3/Q4")) and filled["Q5"]["found"]
    assert filled["Q2"]["found"] and filled["Q6"]["found"] and not filled["not answered"]
    # Bugs that only detach the scores from the graph change gradients, which the signature
    # (outputs on fixed inputs) does not record; the parity checks catch them.
    gradient_only = {"q1-scores-detached-knock-on-q2", "q4-scores-detached-knock-on-q5"}
    unchanged = [
        m.name for m in mutations.BUGS if results[(m.name, "notebook")] == filled and m.name not in gradient_only
    ]
    assert not unchanged, f"these bugs leave no trace in the signature: {unchanged}"


# -- tiers 2 and 3: full grading ------------------------------------------------------------


def _grade_representations(sources: dict, names: list[str], reps: list[str], tmp, cifar10_path, cifar10_cache):
    folder = tmp / "submissions"
    folder.mkdir()
    for name in names:
        suffix, text, checkpoint = sources[name]
        for rep in reps:
            out_suffix, out_text = representations.convert(text, suffix, rep)
            sub = folder / f"{name}--{rep}"
            sub.mkdir()
            (sub / f"homework{out_suffix}").write_text(out_text)
            if checkpoint is not None:
                (sub / "best_model.pt").write_bytes(checkpoint.read_bytes())
    results = grade_batch(
        submissions=folder,
        out=tmp / "out",
        data=cifar10_path,
        cache_dir=cifar10_cache,
        questions=QUESTIONS,
        seed=12345,
        use_cache=False,
        progress=False,
        reports=False,
        jobs=2,
    )
    return {tuple(r.name.split("--")): r for r in results}


def _assert_identical(graded: dict, names: list[str], reps: list[str]) -> dict[str, float]:
    differences = []
    means = {}
    comparable = [n for n in names if not any((n, rep) in LABEL_ONLY for rep in reps)]
    for rep in reps:
        means[rep] = sum(graded[(n, rep)].score for n in comparable) / len(comparable)
    for name in names:
        base = {c.id: (c.status, c.score) for c in graded[(name, "notebook")].checks}
        for rep in reps:
            if (name, rep) in LABEL_ONLY:
                continue
            result = graded[(name, rep)]
            got = {c.id: (c.status, c.score) for c in result.checks}
            for check_id in base:
                if got.get(check_id) != base[check_id]:
                    message = next((c.message for c in result.checks if c.id == check_id), "")
                    differences.append(
                        f"{name} as {rep}: {check_id} {got.get(check_id)} != {base[check_id]}: {message}"
                    )
    assert not differences, "\n".join(differences)
    assert len(set(means.values())) == 1, means
    return means


def test_examples_grade_identically_in_every_representation(tmp_path, cifar10_path, cifar10_cache):
    sources = examples()
    names, reps = sorted(sources), list(representations.REPRESENTATIONS)
    graded = _grade_representations(sources, names, reps, tmp_path, cifar10_path, cifar10_cache)
    _assert_identical(graded, names, reps)
    assert graded[("filled_template", "colab")].score == graded[("filled_template", "colab")].max_score
    assert graded[("cs231n_layout", "colab")].score == graded[("cs231n_layout", "colab")].max_score


@pytest.mark.exhaustive  # about 450 full gradings: run by hand with `pytest -m exhaustive`
def test_the_whole_corpus_grades_identically(tmp_path, cifar10_path, cifar10_cache):
    sources = {name: (suffix, text, None) for name, (suffix, text) in corpus().items()}
    names, reps = sorted(sources), list(representations.REPRESENTATIONS)
    graded = _grade_representations(sources, names, reps, tmp_path, cifar10_path, cifar10_cache)
    means = _assert_identical(graded, names, reps)
    print("mean score of the corpus per representation:", means)
