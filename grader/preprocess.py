"""Turning a submitted notebook or module into cells ready to run, as a list of small
single-purpose steps (in the manner of nbgrader's preprocessors).

Each step takes and returns the list of cells. ``prepare`` applies them in order.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

QUESTION_IDS = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7")


@dataclass
class Cell:
    index: int  # position in the notebook, or chunk number in a module
    source: str
    label: str  # how a person finds it: "cell 12" or "lines 40-55"
    line_offset: int = 0  # lines before the chunk, in a module
    metadata: dict = field(default_factory=dict)
    outputs_text: str = ""  # stdout saved in the notebook, if any
    questions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- step: neutralise what must not run -----------------------------------------------------

_NEUTRALISE = [
    (re.compile(r"^\s*[%!]"), "IPython magic or shell escape"),
    (re.compile(r"get_ipython\s*\("), "IPython call"),
    (re.compile(r"^\s*from\s+google\.colab\b|^\s*import\s+google\.colab\b"), "Colab import"),
    (re.compile(r"\bdrive\.mount\s*\("), "Google Drive mount"),
    (re.compile(r"^\s*assert\s+FOLDERNAME\b"), "Colab folder assertion"),
    (re.compile(r"^\s*os\.chdir\s*\("), "change of directory"),
    (re.compile(r"^\s*assert\b.*__version__"), "version assertion"),
]


def neutralise_magics(cells: list[Cell]) -> list[Cell]:
    """Replace magics, shell escapes, Colab drive mounts and similar lines by ``pass``
    (keeping their indentation, so the cell still parses); skip cells run by a cell
    magic other than %%time/%%capture, whose bodies are plain Python."""
    for cell in cells:
        lines = cell.source.splitlines()
        if lines and lines[0].lstrip().startswith("%%"):
            magic = lines[0].split()[0]
            if magic in ("%%time", "%%capture", "%%timeit"):
                lines[0] = f"pass  # [grader] neutralised {magic}"
                if magic == "%%timeit":  # timeit would repeat the body many times
                    lines = [lines[0]]
            else:
                cell.notes.append(f"{cell.label}: skipped, it runs under the cell magic {magic}")
                cell.source = ""
                continue
        out = []
        for line in lines:
            for pattern, what in _NEUTRALISE:
                if pattern.search(line):
                    indent = line[: len(line) - len(line.lstrip())]
                    out.append(f"{indent}pass  # [grader] neutralised {what}: {line.strip()[:80]}")
                    cell.notes.append(f"{cell.label}: neutralised {what}: {line.strip()[:80]}")
                    break
            else:
                out.append(line)
        cell.source = "\n".join(out)
    return cells


# -- step: which question is each cell? -------------------------------------------------------

_MARKER = re.compile(r"#\s*>>>\s*Question\s+([1-7])\b")
# Names the public CS231n-style notebook gives its graded cells (metadata "test" or "id").
_CS231N_CELL_NAMES = {
    "barebones_accuracy": ["Q2"],
    "module_output_shape": ["Q3", "Q4"],
    "module_accuracy": ["Q5"],
    "sequential_accuracy": ["Q6"],
    "open_ended_accuracy": ["Q7"],
}
_ANSWER_MARKERS = re.compile(r"START OF YOUR CODE|END OF YOUR CODE|TODO:|YOUR CODE HERE", re.I)


def _from_metadata(cell: Cell) -> list[str]:
    ours = cell.metadata.get("autograder", {})
    if isinstance(ours, dict) and isinstance(ours.get("questions"), list):
        return [q for q in ours["questions"] if q in QUESTION_IDS]
    for key in ("test", "id"):
        name = cell.metadata.get(key)
        if isinstance(name, str) and name in _CS231N_CELL_NAMES:
            return list(_CS231N_CELL_NAMES[name])
    return []


def _from_content(source: str) -> list[str]:
    """Recognise the answer cells of the CS231n-style layout by what they contain."""
    if re.search(r"^\s*def\s+three_layer_convnet\s*\(", source, re.M):
        return ["Q1"]
    if re.search(r"^\s*class\s+ThreeLayerConvNet\b", source, re.M):
        return ["Q3", "Q4"]
    if re.search(r"train_part2\s*\(\s*three_layer_convnet", source) or re.search(r"^conv_w1\s*=", source, re.M):
        return ["Q2"]
    if re.search(r"^\s*best_model\s*=", source, re.M):
        return ["Q7"]
    calls = re.findall(r"train_part34\s*\(([^)]*)\)", source)
    if not calls:
        return []
    answer_cell = bool(_ANSWER_MARKERS.search(source))
    epochs = re.search(r"epochs\s*=\s*(\d+)", " ".join(calls))
    if (epochs and int(epochs.group(1)) > 1) or re.search(r"70\s*%|open-ended", source, re.I):
        return ["Q7"]
    if "Sequential" in source and (answer_cell or "Conv2d" in source):
        return ["Q6"]
    if answer_cell or "ThreeLayerConvNet(" in source:
        return ["Q5"]
    return []


def identify_questions(cells: list[Cell]) -> list[Cell]:
    """Tag each cell with its questions: from our template's metadata or its visible
    ``# >>> Question N`` markers, else from the CS231n cell names, else by content."""
    for cell in cells:
        found = _from_metadata(cell)
        if not found:
            found = [f"Q{n}" for n in dict.fromkeys(_MARKER.findall(cell.source))]
        if not found:
            found = _from_content(cell.source)
        cell.questions = found
    return cells


def drop_empty(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.source.strip()]


STEPS = (neutralise_magics, identify_questions, drop_empty)


def prepare(cells: list[Cell]) -> list[Cell]:
    for step in STEPS:
        cells = step(cells)
    return cells


# -- modules: cells from a .py file ------------------------------------------------------------

_CELL_MARK = re.compile(r"^# %%")


def module_cells(text: str) -> list[Cell]:
    """Split a module into cells at ``# %%`` lines (the percent format the template
    uses); a module without them is split into its top-level statements, so that one
    failing statement does not take the rest with it."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CELL_MARK.match(line)]
    if starts:
        bounds = list(zip([0, *starts], [*starts, len(lines)]))
    else:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            bounds = [(0, len(lines))]
        else:
            bounds = []
            for node in tree.body:
                first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
                bounds.append((first, node.end_lineno))
    cells = []
    for n, (a, b) in enumerate(bounds):
        chunk = "\n".join(lines[a:b])
        if not chunk.strip() or lines[a].startswith("# %% [markdown]"):
            continue
        cells.append(Cell(index=n, source=chunk, label=f"lines {a + 1}-{b}", line_offset=a))
    return cells
