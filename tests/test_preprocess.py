"""Reading submissions into cells: neutralising what must not run, finding which cell
answers which question (our template, visible markers, CS231n metadata names, content
rules for every CS231n edition), splitting modules, and refusing unreadable inputs with
a reason a person can act on."""

import ast
import json

import cs231n_style
import nbformat
import pytest

from grader.engine import grade_submission
from grader.preprocess import Cell, identify_questions, module_cells, neutralise_magics, prepare
from grader.rubric import load_rubric
from grader.submission import InvalidSubmission, load_submission


def neutralised(source):
    cell = Cell(index=0, source=source, label="cell 1")
    neutralise_magics([cell])
    return cell


def questions_of(source, metadata=None):
    cell = Cell(index=0, source=source, label="cell 1", metadata=metadata or {})
    identify_questions([cell])
    return cell.questions


def compiles(source):
    compile(source, "<cell>", "exec")
    return True


# -- neutralising magics, shell escapes and Colab set-up --------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "%matplotlib inline",
        "!pip install x",
        "!nvidia-smi",
        "%load_ext autoreload",
        "%autoreload 2",
        "%cd /content/drive/My\\ Drive/$FOLDERNAME",
        "get_ipython().run_line_magic('matplotlib', 'inline')",
        "get_ipython().system('ls')",
        "from google.colab import drive",
        "import google.colab",
        "drive.mount('/content/drive')",
        "drive.mount('/content/drive', force_remount=True)",
        "assert FOLDERNAME is not None, '[!] Enter the foldername.'",
        "os.chdir('/content/drive')",
        "assert torch.__version__ >= '2.0'",
    ],
)
def test_each_line_kind_is_replaced_by_pass(line):
    cell = neutralised(f"x = 1\n{line}\ny = 2")
    lines = cell.source.splitlines()
    assert lines[0] == "x = 1" and lines[2] == "y = 2"
    assert lines[1].startswith("pass  # [grader] neutralised")
    assert compiles(cell.source)
    assert len(cell.notes) == 1 and "cell 1: neutralised" in cell.notes[0]
    ns = {}
    exec(cell.source, ns)  # nothing of the neutralised line runs
    assert ns["x"] == 1 and ns["y"] == 2


def test_indented_magics_inside_blocks_still_parse():
    source = (
        "import sys\n"
        "if 'google.colab' in sys.modules:\n"
        "    %matplotlib inline\n"
        "    !pip install torch\n"
        "    from google.colab import drive\n"
        "    drive.mount('/content/drive')\n"
        "else:\n"
        "    for i in range(2):\n"
        "        get_ipython().system('ls')\n"
        "def f():\n"
        "    os.chdir('/tmp')\n"
        "    %time g()\n"
        "x = 3\n"
    )
    cell = neutralised(source)
    assert compiles(cell.source)
    assert len(cell.source.splitlines()) == len(source.splitlines()), "line numbers must not move"
    lines = cell.source.splitlines()
    assert lines[2] == "    pass  # [grader] neutralised IPython magic or shell escape: %matplotlib inline"
    assert lines[8].startswith("        pass  # [grader]")
    assert lines[11].startswith("    pass  # [grader]")
    ns = {}
    exec(cell.source, ns)
    assert ns["x"] == 3


def test_cs231n_colab_cell_is_neutralised_and_keeps_plain_python():
    cell = neutralised(cs231n_style.COLAB)
    assert compiles(cell.source)
    kept = [line for line in cell.source.splitlines() if "[grader]" not in line]
    assert kept == [
        "FOLDERNAME = None",
        "import sys",
        "sys.path.append('/content/drive/My Drive/{}'.format(FOLDERNAME))",
    ]
    assert not any(("drive.mount" in line or "assert FOLDERNAME" in line) for line in kept)
    assert {n.split(": ", 2)[1] for n in cell.notes} >= {
        "neutralised Colab import",
        "neutralised Google Drive mount",
        "neutralised Colab folder assertion",
        "neutralised IPython magic or shell escape",
    }


def test_time_and_capture_cell_magics_keep_their_body():
    for magic in ("%%time", "%%capture", "%%capture out"):
        cell = neutralised(f"{magic}\nx = 1\nfor i in range(3):\n    x += i\nprint(x)")
        assert cell.source.splitlines()[0].startswith("pass  # [grader] neutralised %%")
        assert cell.source.splitlines()[1:] == ["x = 1", "for i in range(3):", "    x += i", "print(x)"]
        ns = {"print": lambda *a: None}
        exec(cell.source, ns)
        assert ns["x"] == 4


def test_timeit_cell_magic_does_not_repeat_the_body():
    cell = neutralised("%%timeit\ntrain_part34(model, optimizer, epochs=100)")
    assert compiles(cell.source)
    assert "train_part34" not in cell.source


@pytest.mark.parametrize(
    "magic", ["%%bash", "%%sh", "%%script bash", "%%writefile helper.py", "%%html", "%%javascript"]
)
def test_other_cell_magics_are_skipped(magic):
    cell = neutralised(f"{magic}\nrm -rf ~\necho done")
    assert cell.source == ""
    assert cell.notes == [f"cell 1: skipped, it runs under the cell magic {magic.split()[0]}"]
    assert prepare([Cell(index=0, source=f"{magic}\nls", label="cell 1"), Cell(1, "x = 1", "cell 2")])[0].index == 1


@pytest.mark.parametrize(
    "source",
    [
        "x = 5 % 3",
        "print('100%')",
        "ok = a != b",
        "s = '!not a shell escape'",
        "print('%d items' % 3)",
        "import os\nos.path.join('a', 'b')",
        "# %matplotlib inline is only a comment here",
        "assert x > 0",
    ],
)
def test_plain_python_is_left_alone(source):
    cell = neutralised(source)
    assert cell.source == source
    assert cell.notes == []


@pytest.mark.parametrize(
    "source",
    ["remainder = (\n    total\n    % batch_size\n)", "mismatch = (\n    x.shape[0]\n    != 64\n)"],
    ids=["modulo", "not-equal"],
)
def test_operators_at_the_start_of_continuation_lines_survive(source):
    cell = neutralised(source)
    assert cell.source == source


def test_block_header_calling_get_ipython_still_parses():
    cell = neutralised("if 'google.colab' in str(get_ipython()):\n    print('Running on Colab')\nx = 1")
    assert compiles(cell.source)


def test_multi_line_drive_mount_still_parses():
    cell = neutralised("drive.mount(\n    '/content/drive',\n    force_remount=True,\n)\nx = 1")
    assert compiles(cell.source)


def test_string_contents_are_not_rewritten():
    source = 'template = """\n%(name)s scored\n!important\n"""'
    assert neutralised(source).source == source


# -- which question is each cell? ------------------------------------------------------------------


def test_template_metadata_names_the_questions():
    assert questions_of("x = 1", {"autograder": {"questions": ["Q3", "Q4"]}}) == ["Q3", "Q4"]
    assert questions_of("x = 1", {"autograder": {"questions": ["Q9", "Q2", "q5", 5]}}) == ["Q2"]
    # Our metadata wins over content and over a CS231n name in the same cell.
    meta = {"autograder": {"questions": ["Q5"]}, "test": "barebones_accuracy"}
    assert questions_of("def three_layer_convnet(x, params):\n    pass", meta) == ["Q5"]


def test_malformed_template_metadata_is_ignored():
    source = "def three_layer_convnet(x, params):\n    pass"
    for meta in ({"autograder": "Q1"}, {"autograder": {"questions": "Q2"}}, {"autograder": []}):
        assert questions_of(source, meta) == ["Q1"]  # falls back to content
    assert questions_of("x = 1", {"autograder": {"questions": [["Q1"], {"q": 1}]}}) == []


def test_visible_markers_alone_name_the_questions():
    assert questions_of("# >>> Question 6\nmodel = None") == ["Q6"]
    assert questions_of("# >>> Question 3\nx = 1\n    #>>>Question   4\n# >>> Question 3") == ["Q3", "Q4"]
    assert questions_of("# >>> Question 8\nx = 1") == []
    assert questions_of("# >>> Question 12\nx = 1") == []
    assert questions_of("# Question 1\nx = 1") == []
    # A marker beats what the content looks like.
    assert questions_of("# >>> Question 7\ndef three_layer_convnet(x, params):\n    pass") == ["Q7"]


@pytest.mark.parametrize("key", ["test", "id"])
@pytest.mark.parametrize(
    "name, expected",
    [
        ("barebones_accuracy", ["Q2"]),
        ("module_output_shape", ["Q3", "Q4"]),
        ("module_accuracy", ["Q5"]),
        ("sequential_accuracy", ["Q6"]),
        ("open_ended_accuracy", ["Q7"]),
        ("barebones_output_shape", []),
        ("colab0007", []),
    ],
)
def test_cs231n_metadata_names(key, name, expected):
    assert questions_of("x = 1", {key: name}) == expected


def test_unhashable_cs231n_metadata_is_ignored():
    assert questions_of("x = 1", {"test": ["module_accuracy"], "id": {"a": 1}}) == []


def _cell_containing(cells, text):
    found = [c for c in cells if text in c.source]
    assert len(found) == 1, (text, [c.index for c in found])
    return found[0]


# Text that identifies each cell of the CS231n-style notebook, and its questions.
CS231N_EXPECTED = {
    "def three_layer_convnet(x, params):": ["Q1"],
    "train_part2(three_layer_convnet, params, learning_rate)": ["Q2"],
    "class ThreeLayerConvNet(nn.Module):": ["Q3", "Q4"],
    "Instantiate your ThreeLayerConvNet": ["Q5"],
    "Rewrite the 2-layer ConvNet with bias": ["Q6"],
    "Experiment with any architectures": ["Q7"],
    # The examples and the provided code answer nothing.
    "def two_layer_fc(x, params):": [],
    "train_part2(two_layer_fc, [w1, w2], learning_rate)": [],
    "class TwoLayerFC(nn.Module):": [],
    "model = TwoLayerFC(": [],
    "optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)\ntrain_part34(model, optimizer)": [],
    "def three_layer_convnet_test():": [],
    "def train_part2(model_fn, params, learning_rate):": [],
    "def train_part34(model, optimizer, epochs=1):": [],
    "def check_accuracy_part34(loader, model):": [],
    "def random_weight(shape):": [],
    "def flatten(x):": [],
    "NUM_TRAIN = 49000": [],
    "USE_GPU = True": [],
}


def _load_notebook(tmp_path, nb, name="submission.ipynb"):
    path = tmp_path / name
    nbformat.write(nb, path)
    return load_submission(path)


def _assert_cs231n_mapping(cells):
    for text, expected in CS231N_EXPECTED.items():
        assert _cell_containing(cells, text).questions == expected, text
    by_question = {}
    for cell in cells:
        for q in cell.questions:
            by_question.setdefault(q, []).append(cell)
    assert sorted(by_question) == ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7"]
    for q in ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6"):
        assert len(by_question[q]) == 1, q
    # Q7: the answer cell, and at most the `best_model = model` cell that follows it.
    q7 = by_question["Q7"]
    assert q7[0].questions == ["Q7"] and "Experiment with any architectures" in q7[0].source
    assert all("best_model = model" in c.source for c in q7[1:])


EDITIONS = [2018, 2019, 2020, 2021, 2022, 2025]


@pytest.mark.parametrize("edition", EDITIONS)
def test_every_cs231n_edition_maps_its_answer_cells(tmp_path, edition):
    submission = _load_notebook(tmp_path, cs231n_style.build(edition=edition))
    assert submission.layout == "cs231n"
    _assert_cs231n_mapping(submission.cells)
    if edition >= 2021:  # the Colab set-up cell is neutralised, not dropped
        colab = _cell_containing(submission.cells, "FOLDERNAME = None")
        live = [line for line in colab.source.splitlines() if not line.lstrip().startswith("pass  # [grader]")]
        assert compiles(colab.source) and not any("drive.mount" in line for line in live)
    for cell in submission.cells:
        assert compiles("\n" * cell.line_offset + cell.source), cell.label


@pytest.mark.parametrize("edition", EDITIONS)
def test_content_rules_alone_find_every_answer(tmp_path, edition):
    """Without any cell metadata (a notebook saved by another tool), content decides."""
    nb = cs231n_style.build(edition=edition)
    for cell in nb.cells:
        cell.metadata = {}
    _assert_cs231n_mapping(_load_notebook(tmp_path, nb).cells)


@pytest.mark.parametrize("edition", EDITIONS)
def test_unanswered_skeleton_still_maps_every_question(tmp_path, edition):
    """An empty template must still be graded per question (as unanswered)."""
    _assert_cs231n_mapping(_load_notebook(tmp_path, cs231n_style.build(edition=edition, answers={})).cells)


@pytest.mark.parametrize("edition", [2018, 2019])
def test_a_q5_answer_that_trains_longer_is_still_q5(tmp_path, edition):
    nb = cs231n_style.build(edition=edition)
    for cell in nb.cells:
        if "Instantiate your ThreeLayerConvNet" in cell.source:
            cell.source = cell.source.replace(
                "train_part34(model, optimizer)", "train_part34(model, optimizer, epochs=3)"
            )
    cells = _load_notebook(tmp_path, nb).cells
    assert _cell_containing(cells, "Instantiate your ThreeLayerConvNet").questions == ["Q5"]


@pytest.mark.parametrize("edition", [2018, 2022, 2025])
def test_notebook_cells_keep_their_position_and_label(tmp_path, edition):
    nb = cs231n_style.build(edition=edition)
    submission = _load_notebook(tmp_path, nb)
    for cell in submission.cells:
        assert nb.cells[cell.index].cell_type == "code"
        assert cell.label == f"cell {cell.index + 1}"
    assert [c.index for c in submission.cells] == sorted(c.index for c in submission.cells)


# -- modules ----------------------------------------------------------------------------------------


def test_module_cells_split_at_percent_markers():
    text = (
        "import torch\n"  # 1: preamble before the first marker
        "# %%\n"  # 2
        "x = 1\n"  # 3
        "# %% [markdown]\n"  # 4
        "# Some prose\n"  # 5
        "# %% Question 1\n"  # 6
        "# >>> Question 1\n"  # 7
        "def three_layer_convnet(x, params):\n"  # 8
        "    return x\n"  # 9
        "# %%\n"  # 10
        "\n"  # 11: a chunk with only its marker
        "# %%\n"  # 12
        "y = (\n"  # 13: a syntax error stays in its own chunk
    )
    cells = prepare(module_cells(text))
    got = [(c.index, c.label, c.line_offset, c.questions) for c in cells]
    assert got == [
        (0, "lines 1-1", 0, []),
        (1, "lines 2-3", 1, []),
        (3, "lines 6-9", 5, ["Q1"]),
        (5, "lines 12-13", 11, []),  # lines 10-11, only a marker, are no cell
    ]
    lines = text.splitlines()
    for cell in cells:
        assert cell.source.splitlines()[0] == lines[cell.line_offset]


def test_module_cells_split_by_top_level_statements():
    text = (
        "import torch\n"
        "\n"
        "# a comment between statements\n"
        "@decorator\n"
        "@other(1,\n"
        "       2)\n"
        "def f():\n"
        "    return 1\n"
        "\n"
        "x = [\n"
        "    1,\n"
        "]\n"
        "class A:\n"
        "    pass\n"
        "if x:\n"
        "    y = 2\n"
        "else:\n"
        "    y = 3\n"
    )
    cells = module_cells(text)
    assert [(c.label, c.line_offset) for c in cells] == [
        ("lines 1-1", 0),
        ("lines 3-8", 2),  # a statement keeps the comments just above it
        ("lines 10-12", 9),
        ("lines 13-14", 12),
        ("lines 15-18", 14),
    ]
    assert cells[1].source.startswith("# a comment between statements\n@decorator\n@other(1,\n       2)\ndef f():")
    for cell in cells:
        assert compiles(cell.source)


def test_a_syntax_error_in_a_module_takes_only_its_own_statement():
    text = "import torch\n\ndef f(:\n    pass\n\nx = 1\nif x:\n    y = (\nelse:\n    y = 2\nz = 3\n"
    cells = module_cells(text)
    assert [(c.label, c.line_offset) for c in cells] == [
        ("lines 1-1", 0),
        ("lines 3-5", 2),  # does not parse: reported as the syntax error it is
        ("lines 6-6", 5),
        ("lines 7-10", 6),  # else: continues the if above
        ("lines 11-11", 10),
    ]

    def parses(source):
        try:
            return bool(ast.parse(source))
        except SyntaxError:
            return False

    assert [parses(c.source) for c in cells] == [True, False, True, False, True]


def test_nbconvert_prompts_split_cells_and_markdown_comments_are_left_out():
    text = (
        "#!/usr/bin/env python\n# coding: utf-8\n\n# # Title\n# \n# prose\n\n"
        "# In[3]:\n\n\nx = 1  # keep me\n# a comment of the cell\n\n\n# ## Question 2: prose\n\n"
        "# In[ ]:\n\n\ny = 2\n"
    )
    cells = module_cells(text)
    assert [c.source.strip() for c in cells] == [
        "# In[3]:\n\n\nx = 1  # keep me\n# a comment of the cell",
        "# In[ ]:\n\n\ny = 2",
    ]
    assert [c.label for c in cells] == ["lines 8-14", "lines 17-20"]


def test_empty_module_has_no_cells():
    assert module_cells("") == []
    assert module_cells("\n\n# only a comment\n") == []


def test_statements_sharing_a_line_run_once():
    cells = module_cells("count = 0\ncount += 1; print(count)\n")
    ns = {"print": lambda *a: None}
    for cell in cells:
        exec(cell.source, ns)
    assert ns["count"] == 1


# -- loading submissions --------------------------------------------------------------------------------


def _v3_notebook():
    return {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "metadata": {},
                "cells": [
                    {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["PyTorch on CIFAR-10"]},
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": ["%matplotlib inline\n", "import torch"],
                        "language": "python",
                        "metadata": {},
                        "outputs": [],
                        "prompt_number": 1,
                    },
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": [
                            "def three_layer_convnet(x, params):\n",
                            "    print('forward')\n",
                            "    return x",
                        ],
                        "language": "python",
                        "metadata": {},
                        "outputs": [{"output_type": "stream", "stream": "stdout", "text": ["forward\n"]}],
                        "prompt_number": 2,
                    },
                    {"cell_type": "markdown", "metadata": {}, "source": "Some prose"},
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": "# >>> Question 6\nmodel = None",
                        "language": "python",
                        "metadata": {},
                        "outputs": [],
                    },
                ],
            }
        ],
    }


def test_nbformat_v3_notebook_is_upgraded(tmp_path):
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(_v3_notebook()))
    submission = load_submission(path)
    assert submission.kind == "notebook" and submission.name == "old"
    got = [(c.index, c.label, c.questions) for c in submission.cells]
    assert got == [(1, "cell 2", []), (2, "cell 3", ["Q1"]), (4, "cell 5", ["Q6"])]
    assert submission.cells[0].source.splitlines()[1] == "import torch"
    assert submission.cells[0].source.startswith("pass  # [grader] neutralised")
    assert submission.cells[1].source == "def three_layer_convnet(x, params):\n    print('forward')\n    return x"
    assert submission.cells[1].outputs_text == "forward\n"


def test_a_lone_module_is_loaded(tmp_path):
    path = tmp_path / "answers.py"
    path.write_text("# >>> Question 1\ndef three_layer_convnet(x, params):\n    return x\n")
    submission = load_submission(path)
    assert submission.kind == "module" and submission.layout == "template"
    assert [c.questions for c in submission.cells] == [["Q1"]]


def test_folder_with_a_notebook_and_a_module_prefers_the_notebook(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    nbformat.write(cs231n_style.build(edition=2022), folder / "PyTorch.ipynb")
    (folder / "helpers.py").write_text("x = 1\n")
    (folder / "best_model.pt").write_bytes(b"\x00weights")
    submission = load_submission(folder)
    assert submission.path.name == "PyTorch.ipynb" and submission.name == "alice"
    assert submission.files == {"best_model.pt": b"\x00weights"}


def test_a_lone_notebook_carries_its_checkpoint_and_is_hashed_with_it(tmp_path):
    """The result cache is keyed by the hash: a new checkpoint beside the same notebook
    must be graded again, not served from the cache."""
    path = tmp_path / "bob.ipynb"
    nbformat.write(cs231n_style.build(edition=2022), path)
    alone = load_submission(path).sha256
    (tmp_path / "bob_best_model.pt").write_bytes(b"\x00first")
    first = load_submission(path)
    assert first.files == {"best_model.pt": b"\x00first"}
    (tmp_path / "bob_best_model.pt").write_bytes(b"\x00second")
    second = load_submission(path)
    assert len({alone, first.sha256, second.sha256}) == 3


INVALID_FILES = {
    "invalid JSON": ("broken.ipynb", b'{"cells": [', "not valid JSON"),
    "JSON list": ("list.ipynb", b"[1, 2, 3]", "not a readable notebook"),
    "JSON string": ("string.ipynb", b'"notebook"', "not a readable notebook"),
    "JSON null": ("null.ipynb", b"null", "not a readable notebook"),
    "JSON object, not a notebook": ("object.ipynb", b'{"name": "x"}', "not a readable notebook"),
    "unsupported nbformat": (
        "future.ipynb",
        b'{"nbformat": 9, "nbformat_minor": 0, "metadata": {}, "cells": []}',
        "not a readable notebook",
    ),
    "cells not a list": (
        "cells.ipynb",
        b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "x"}',
        "notebook",
    ),
    "empty notebook file": ("empty.ipynb", b"", "not valid JSON"),
    "binary garbage notebook": ("garbage.ipynb", bytes(range(256)) * 8, "not valid JSON"),
    "binary garbage module": ("garbage.py", b"\xff\xfe\x00\x80 binary", "not UTF-8 text"),
}


@pytest.mark.parametrize("name, content, reason", list(INVALID_FILES.values()), ids=list(INVALID_FILES))
def test_unreadable_files_are_invalid_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidSubmission) as info:
        load_submission(path)
    message = str(info.value)
    assert name in message and reason in message
    assert "Traceback" not in message and len(message) < 600


def test_folder_with_two_notebooks_is_invalid(tmp_path):
    folder = tmp_path / "bob"
    folder.mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        nbformat.write(cs231n_style.build(edition=2022), folder / name)
    (folder / "c.py").write_text("x = 1\n")
    with pytest.raises(InvalidSubmission, match=r"bob/ holds several candidates \(a\.ipynb, b\.ipynb\); keep one"):
        load_submission(folder)


def test_folder_with_two_modules_and_no_notebook_is_invalid(tmp_path):
    folder = tmp_path / "carol"
    folder.mkdir()
    (folder / "a.py").write_text("x = 1\n")
    (folder / "b.py").write_text("y = 1\n")
    with pytest.raises(InvalidSubmission, match="several candidates"):
        load_submission(folder)


def test_folder_without_a_notebook_is_invalid(tmp_path):
    folder = tmp_path / "dave"
    folder.mkdir()
    (folder / "notes.txt").write_text("I ran out of time")
    (folder / ".hidden.ipynb").write_text("{}")
    (folder / "sub").mkdir()
    with pytest.raises(InvalidSubmission, match=r"dave/ holds no \.ipynb or \.py file"):
        load_submission(folder)


def test_missing_path_is_invalid(tmp_path):
    with pytest.raises(InvalidSubmission, match="does not exist"):
        load_submission(tmp_path / "nobody.ipynb")


def test_deeply_nested_json_is_invalid_not_a_crash(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_bytes(b'{"nbformat": 4, "metadata": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b'}, "cells": []}')
    with pytest.raises(InvalidSubmission):
        load_submission(path)


# -- grading invalid inputs ------------------------------------------------------------------------------


def _invalid_inputs(tmp_path):
    for name, content, _ in INVALID_FILES.values():
        (tmp_path / name).write_bytes(content)
        yield tmp_path / name
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.ipynb").write_text("{}")
    (two / "b.ipynb").write_text("{}")
    yield two
    none = tmp_path / "none"
    none.mkdir()
    yield none
    yield tmp_path / "missing.ipynb"


def test_grade_submission_reports_invalid_inputs_with_every_check(tmp_path):
    rubric = load_rubric()
    for path in _invalid_inputs(tmp_path):
        result = grade_submission(path=path, rubric=rubric, run_seed=0)
        assert result.status == "invalid", path
        assert result.reason and path.name in result.reason
        assert sorted(c.id for c in result.checks) == sorted(rubric.entries), path
        assert result.score == 0
        assert result.max_score == pytest.approx(rubric.total)
        for check in result.checks:
            assert check.status == "failed" and check.score == 0
            assert check.max_score == rubric.entries[check.id].points
            assert check.message.startswith("invalid submission: ")
        assert result.cells == []
        result.to_dict()  # serialisable for results.json


def test_grade_submission_of_an_invalid_input_keeps_the_selected_questions(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{")
    rubric = load_rubric()
    result = grade_submission(path=path, rubric=rubric, questions={"Q1", "Q6"}, run_seed=0)
    assert result.status == "invalid"
    assert {c.question for c in result.checks} == {"Q1", "Q6"}
    expected = sum(e.points for k, e in rubric.entries.items() if k.split(".")[0] in ("Q1", "Q6"))
    assert result.max_score == pytest.approx(expected) and result.score == 0
