"""The similarity analysis: copies rank above independent work, whatever the disguise;
the template never counts; the evidence, the class page and the instructor-only outputs."""

from __future__ import annotations

import itertools
import json
import textwrap

import pytest
import similarity_corpus as corpus_module

from grader import similarity
from grader.cli import main
from grader.report import class_view, environment


@pytest.fixture(scope="module")
def corpus():
    return corpus_module.build()


@pytest.fixture(scope="module")
def folders(corpus, tmp_path_factory):
    return corpus_module.write_corpus(corpus, tmp_path_factory.mktemp("similarity"))


@pytest.fixture(scope="module")
def analysis(folders):
    klass, archive = folders
    found, notes = similarity.analyse(submissions=klass, against=archive)
    assert notes == []
    return found


def _scores(analysis) -> dict[frozenset, float]:
    scores = {frozenset({a, b}): 0.0 for a, b in itertools.combinations(analysis.profiles, 2)}
    scores.update({frozenset({m.a, m.b}): m.score for m in analysis.matches})
    return scores


def test_corpus_has_what_the_test_needs(corpus, folders):
    independent = [s for s in corpus.students if s.name.startswith("student")]
    assert len(independent) >= 10
    assert len({s.answers["Q7"] for s in independent}) == len(independent)  # each designs their own
    # the short answers converge: several independent students wrote the same Q1
    assert len({s.answers["Q1"] for s in independent}) < len(independent) / 2
    klass, _ = folders
    assert (klass / "copy_all.ipynb").exists()  # a copy in the other format
    assert (klass / "student05" / "best_model.pt").read_bytes() != (klass / "student09" / "best_model.pt").read_bytes()


def test_every_copy_pair_ranks_above_every_independent_pair(corpus, analysis):
    scores = _scores(analysis)
    copies = {pair: scores[pair] for pair in corpus.copy_pairs}
    independent = {pair: s for pair, s in scores.items() if pair not in corpus.copy_pairs}
    weakest_copy = min(copies, key=copies.get)
    strongest_independent = max(independent, key=independent.get)
    assert copies[weakest_copy] > independent[strongest_independent], (
        sorted(weakest_copy),
        sorted(strongest_independent),
    )
    # at the default threshold: every copy flagged, nothing else
    assert {frozenset({m.a, m.b}) for m in analysis.flagged()} == corpus.copy_pairs


def test_archive_copy_is_reported_as_a_match_of_its_entry(corpus, analysis):
    flagged = analysis.flagged_archive()
    assert [(m.a, m.b) for m in flagged] == list(corpus.archive_copies.items())
    assert "matches archive entry public1" in flagged[0].line()
    assert "Q7" in flagged[0].questions
    # and the copy is not mistaken for copying anyone in the class
    assert all("copy_public" not in (m.a, m.b) for m in analysis.flagged())


def test_identical_checkpoints_are_evidence_even_without_shared_code(analysis):
    match = next(m for m in analysis.matches if {m.a, m.b} == {"student05", "student09"})
    assert "numerically identical checkpoints" in match.evidence  # keys renamed, so not the same bytes
    assert match.score == 1.0


def test_copies_are_found_per_question_with_their_evidence(analysis):
    match = next(m for m in analysis.matches if {m.a, m.b} == {"student11", "copy_q7_only"})
    assert match.questions == ["Q7"]
    assert "the same Question 7 answer and hyperparameters once normalised" in match.evidence
    # other rates and epochs and a line of its own: found by its fingerprints alone
    tweaked = next(m for m in analysis.matches if {m.a, m.b} == {"student13", "copy_tweaked"})
    assert tweaked.questions == ["Q7"] and tweaked.evidence == []
    assert tweaked.score >= similarity.THRESHOLD


def test_results_add_model_and_error_evidence(tmp_path):
    """From a batch's results: the grader's description of the Question 7 model, and the
    error messages of answer cells, where only two students share them."""
    from grader.results import CellRun, SubmissionResult

    designs = corpus_module.q7_designs(4)
    names = ["ann", "ben", "cat", "dan"]
    for i, name in enumerate(names):
        corpus_module.write(corpus_module.independent(i, designs[i], name=name), tmp_path)

    def result(name, parameters, error):
        run = CellRun(index=5, label="cell 6", questions=["Q1"], status="error", error=error)
        challenge = {"model_type": "Net", "parameters": parameters, "epochs_requested": [7]}
        return SubmissionResult(
            name=name, source=f"{name}.py", sha256="", status="graded", challenge=challenge, cells=[run]
        )

    odd = {"type": "RuntimeError", "message": "mat1 and mat2 shapes cannot be multiplied (64x4096 and 8192x10)"}
    usual = {"type": "NameError", "message": "name 'conv_w1' is not defined in this place"}
    results = [
        result("ann", 123_456, odd),
        result("ben", 123_456, odd),
        result("cat", 99, usual),
        result("dan", 98, usual),
    ]
    # cat and dan share an error too, as do ann and ben; only the model makes ann and ben stand out
    found, _ = similarity.analyse(submissions=tmp_path, results={r.name: r for r in results})
    pair = next(m for m in found.matches if {m.a, m.b} == {"ann", "ben"})
    assert "the same unusual Question 7 model" in pair.evidence
    assert any(e.startswith("identical output in Q1: 'RuntimeError: mat1 and mat2") for e in pair.evidence)
    others = next(m for m in found.matches if {m.a, m.b} == {"cat", "dan"})
    assert "the same unusual Question 7 model" not in others.evidence
    assert pair.score > others.score


def test_disguises_normalise_to_the_same_tokens():
    original = textwrap.dedent(
        """\
        h1 = F.conv2d(x, conv_w1, bias=conv_b1, padding=2)
        a1 = F.relu(h1)
        w_scale = 3
        h2 = F.conv2d(a1, conv_w2, bias=conv_b2, padding=1)
        scores = flatten(F.relu(h2)).mm(fc_w) + fc_b * w_scale
        """
    )
    disguised = textwrap.dedent(
        """\
        # first layer
        first   =   F.conv2d( x,conv_w1,bias=conv_b1,padding=2 )
        scale = 4   # not the same number either
        unused_counter = 0
        if False:
            print("debug")
        act = F.relu(first)

        second = F.conv2d(act, conv_w2, bias=conv_b2, padding=1)
        scores = flatten(F.relu(second)).mm(fc_w) + fc_b * scale
        """
    )
    used = set(similarity._WORD.findall(original + disguised)) - {"unused_counter"}

    def tokens(text):
        return [t for t, _ in similarity.normalised_tokens(text, used)]

    assert tokens(original) == tokens(disguised)
    # a real change of the computation is not normalised away
    assert tokens(original) != tokens(original.replace("F.relu(h2)", "torch.tanh(h2)"))


def test_dependent_statements_keep_their_order():
    used = {"a", "b", "x"}
    one = similarity.normalised_tokens("a = f(x)\nb = g(a)\n", used)
    two = similarity.normalised_tokens("b = g(a)\na = f(x)\n", used)  # another program
    assert [t for t, _ in one] != [t for t, _ in two]


def test_template_code_never_counts(tmp_path):
    """The unanswered template holds no fingerprint; the filled template holds only its answers'."""
    base = similarity.base_hashes()
    template = corpus_module.TEMPLATE.read_text()
    (tmp_path / "empty.py").write_text(template)
    (tmp_path / "filled.py").write_text(
        corpus_module.render(corpus_module.independent(0, corpus_module.q7_designs(1)[0]))
    )
    profiles, _ = similarity.load_profiles(sorted(tmp_path.iterdir()), base)
    empty, filled = sorted(profiles, key=lambda p: p.name)
    assert empty.fingerprints == {}
    assert {filled.regions[i].question for i, _ in filled.fingerprints.values()} == {f"Q{n}" for n in range(1, 8)}


def test_inverted_index_skips_common_fingerprints():
    assert similarity.rarity(2, 1000) == 1.0
    assert similarity.rarity(similarity.common_cap(1000) + 1, 1000) == 0.0
    assert 0 < similarity.rarity(20, 1000) < similarity.rarity(5, 1000) < 1


def test_class_page_section_escapes_and_highlights(tmp_path):
    """Student text reaches the class page escaped; matched lines are highlighted."""
    hostile = 'label = "</pre><script>alert(1)</script>"\n'
    designs = corpus_module.q7_designs(2)
    alice = corpus_module.independent(0, designs[0], name="alice")
    alice.answers["Q7"] = hostile + alice.answers["Q7"]
    bob = corpus_module.copy_of(alice, "bob", ["rename"])
    carol = corpus_module.independent(1, designs[1], name="carol")
    for s in (alice, bob, carol):
        corpus_module.write(s, tmp_path)
    found, _ = similarity.analyse(submissions=tmp_path)
    assert [(m.a, m.b) for m in found.flagged()] == [("alice", "bob")]
    view = class_view([], [], similarity=found)
    html = environment().get_template("index.html.j2").render(c=view)
    assert "Similar submissions" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert 'class="hit"' in html


def test_cli_prints_flagged_pairs_and_archive_matches(folders, capsys, tmp_path):
    klass, archive = folders
    out = tmp_path / "similar.json"
    assert main(["similarity", str(klass), "--against", str(archive), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("copy_public\tmatches archive entry public1\t") for line in lines)
    pair_lines = [line for line in lines if "archive" not in line]
    assert len(pair_lines) == 6
    assert all(len(line.split("\t")) >= 4 for line in pair_lines)  # names, score, questions
    assert len(json.loads(out.read_text())["flagged"]) == 6


def test_batch_adds_similarity_for_the_instructor_only(tmp_path, monkeypatch):
    """A tiny batch (Question 1 only): the top match lands in results.json's extra_data,
    the gradebook and the class page, and nowhere in what students see."""
    from grader.batch import grade_batch

    designs = corpus_module.q7_designs(1)
    alice = corpus_module.independent(0, designs[0], name="alice")
    bob = corpus_module.copy_of(alice, "bob", ["rename", "reorder", "comments"])
    submissions = tmp_path / "class"
    for s in (alice, bob):
        corpus_module.write(s, submissions)
    out = tmp_path / "out"
    grade_batch(submissions=submissions, out=out, jobs=2, require_data=False, questions=["Q1"], progress=False)

    doc = json.loads((out / "alice" / "results.json").read_text())
    assert doc["extra_data"]["similarity"]["with"] == "bob"
    assert doc["extra_data"]["similarity"]["score"] >= similarity.THRESHOLD
    header, *rows = (out / "gradebook.csv").read_text().splitlines()
    assert header.endswith("similar_to,similarity")
    assert rows[0].split(",")[-2] == "bob"
    assert "Similar submissions" in (out / "index.html").read_text()
    assert json.loads((out / "similarity.json").read_text())["flagged"][0]["with"] in ("alice", "bob")
    for name, other in (("alice", "bob"), ("bob", "alice")):
        student_page = (out / name / "report-student.html").read_text()
        assert other not in student_page and "imilar" not in student_page
        # Gradescope shows students everything in results.json but its extra_data.
        doc = json.loads((out / name / "results.json").read_text())
        student_json = json.dumps({k: v for k, v in doc.items() if k != "extra_data"})
        assert other not in student_json and "similar" not in student_json


def test_copy_of_a_public_notebook_in_the_other_layout(tmp_path):
    """A public solution in the CS231n layout (answers in whole cells, among the
    notebook's own lines) copied into our template, names changed: matched."""
    import cs231n_style
    import nbformat

    designs = corpus_module.q7_designs(6, seed=3)
    public = corpus_module.independent(7, designs[0], name="public")
    archive, klass = tmp_path / "archive", tmp_path / "class"
    archive.mkdir()
    nbformat.write(cs231n_style.build(answers=public.answers), archive / "PyTorch.ipynb")
    copier = corpus_module.copy_of(public, "copier", ["rename", "comments"])
    for s in [copier, *(corpus_module.independent(i, designs[i]) for i in range(1, 6))]:
        corpus_module.write(s, klass)
    found, notes = similarity.analyse(submissions=klass, against=archive)
    assert notes == []
    assert [(m.a, m.b) for m in found.flagged_archive()] == [("copier", "PyTorch")]
    assert found.flagged() == []
