"""Turning a submitted notebook or module into cells ready to run, as a list of small
single-purpose steps (in the manner of nbgrader's preprocessors).

Each step takes and returns the list of cells. ``prepare`` applies them in order.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from .assignment import Assignment, default_assignment


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

# Statements that only make sense on a student's machine or in Colab, and what they are.
_NEUTRALISE = [
    (re.compile(r"get_ipython\s*\("), "IPython magic or shell escape"),
    (re.compile(r"^\s*(from\s+google\.colab\b|import\s+google\.colab\b)"), "Colab import"),
    (re.compile(r"\bdrive\.mount\s*\("), "Google Drive mount"),
    (re.compile(r"^\s*assert\s+FOLDERNAME\b"), "Colab folder assertion"),
    (re.compile(r"\bos\.chdir\s*\("), "change of directory"),
    (re.compile(r"^\s*assert\b[\s\S]*__version__"), "version assertion"),
]
_LINE_MAGIC = re.compile(r"^\s*[%!]")
_KEPT_CELL_MAGICS = ("%%time", "%%capture")  # their body is plain Python, run once


def _what(text: str) -> str | None:
    return next((what for pattern, what in _NEUTRALISE if pattern.search(text)), None)


def _to_python(source: str) -> str:
    """IPython's own translation of magics and shell escapes into get_ipython() calls,
    line for line (a ``%`` inside a string or a continuation line stays as it is)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source).rstrip("\n")
    except Exception:  # IPython missing or unable: the line-based fallback handles it
        return source


def _statements_to_neutralise(tree: ast.AST, lines: list[str]):
    """(statement, what) for each statement to remove: a simple statement matching a
    pattern, or a compound one whose header does (an ``if`` on get_ipython(), say).
    ``lines``: the source's physical lines, split once (as the parser counts them)."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, ast.stmt):
            continue
        fields = [getattr(node, f, None) for f in ("body", "orelse", "finalbody", "handlers")]
        bodies: list[list] = [b for b in fields if isinstance(b, list) and b]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from _statements_to_neutralise(node, lines)
        elif bodies:
            first_child = min(b[0].lineno for b in bodies)
            header = "\n".join(lines[node.lineno - 1 : max(node.lineno, first_child - 1)])
            if what := _what(header):
                yield node, what
            else:
                yield from _statements_to_neutralise(node, lines)
        elif not bodies and (what := _what(_segment(lines, node))):
            yield node, what


def _physical_lines(source: str) -> list[str]:
    return source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The source of ``node``, as ast.get_source_segment gives it, from lines split once
    (get_source_segment splits the whole source again for every node: quadratic in a
    long cell). Column offsets count UTF-8 bytes."""
    if node.end_lineno is None or node.end_col_offset is None:
        return ""
    first, last = node.lineno - 1, node.end_lineno - 1
    if first == last:
        return lines[first].encode()[node.col_offset : node.end_col_offset].decode(errors="replace")
    head = lines[first].encode()[node.col_offset :].decode(errors="replace")
    tail = lines[last].encode()[: node.end_col_offset].decode(errors="replace")
    return "\n".join([head, *lines[first + 1 : last], tail])


def _neutralise_python(cell: Cell, source: str, tree: ast.AST, original: str) -> str:
    lines = source.splitlines()
    # IPython's translation keeps lines in place: quote the student's own line in notes.
    quoted = original.splitlines() if len(original.splitlines()) == len(lines) else lines
    for node, what in _statements_to_neutralise(tree, _physical_lines(source)):
        first, last = node.lineno - 1, node.end_lineno - 1
        text = quoted[first].strip()[:80]
        cell.notes.append(f"{cell.label}: neutralised {what}: {text}")
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        whole_lines = lines[first][: node.col_offset].strip() == "" and lines[last][node.end_col_offset :].strip() in (
            "",
            ";",
        )
        if whole_lines:
            lines[first] = f"{indent}pass  # [grader] neutralised {what}: {text}"
            for k in range(first + 1, last + 1):
                lines[k] = ""  # keeps line numbers, so tracebacks point at the student's lines
        else:  # it shares a line with other statements: replace just its own text
            line = lines[first]
            lines[first] = line[: node.col_offset] + "None" + line[node.end_col_offset :]
    return "\n".join(lines)


def _neutralise_lines(cell: Cell, source: str) -> str:
    """The fallback for a cell that is not valid Python even after IPython's
    translation (the student's syntax error is then reported when it runs)."""
    out = []
    for line in source.splitlines():
        what = "IPython magic or shell escape" if _LINE_MAGIC.match(line) else _what(line)
        if what:
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass  # [grader] neutralised {what}: {line.strip()[:80]}")
            cell.notes.append(f"{cell.label}: neutralised {what}: {line.strip()[:80]}")
        else:
            out.append(line)
    return "\n".join(out)


def neutralise_magics(cells: list[Cell]) -> list[Cell]:
    """Remove what must not run: IPython magics and shell escapes, Colab's drive
    mount, changes of directory, version assertions. Each becomes ``pass`` at the same
    indentation and on the same lines, so the cell still parses and keeps its line
    numbers. A cell run by a cell magic is skipped, except %%time and %%capture, whose
    body runs as plain Python; %%timeit's body is dropped (it would repeat the work)."""
    for cell in cells:
        lines = cell.source.splitlines()
        if lines and lines[0].lstrip().startswith("%%"):
            magic = lines[0].split()[0]
            if magic not in (*_KEPT_CELL_MAGICS, "%%timeit"):
                cell.notes.append(f"{cell.label}: skipped, it runs under the cell magic {magic}")
                cell.source = ""
                continue
            lines[0] = f"pass  # [grader] neutralised {magic}"
            cell.notes.append(f"{cell.label}: neutralised the cell magic {magic}")
            if magic == "%%timeit":
                lines = lines[:1]
        source = "\n".join(lines)
        python = _to_python(source)
        try:
            tree = ast.parse(python)
        except SyntaxError:
            cell.source = _neutralise_lines(cell, source)
        else:
            cell.source = _neutralise_python(cell, python, tree, source)
    return cells


# -- step: which question is each cell? -------------------------------------------------------

# Our template's visible answer markers ("# >>> Question 3: your answer starts here").
_MARKER = re.compile(r"#\s*>>>\s*Question\s+(\d+)\b")


def _from_metadata(cell: Cell, assignment: Assignment) -> list[str]:
    ours = cell.metadata.get("autograder", {})
    if isinstance(ours, dict) and isinstance(ours.get("questions"), list):
        return [q for q in ours["questions"] if q in assignment.questions]
    return assignment.questions_named(cell.metadata)


def identify_questions(cells: list[Cell], assignment: Assignment | None = None) -> list[Cell]:
    """Tag each cell with its questions: from our template's metadata (or a known
    layout's cell names) or its visible ``# >>> Question N`` markers, else by content,
    by the homework's own tables."""
    assignment = assignment or default_assignment()
    for cell in cells:
        found = _from_metadata(cell, assignment)
        if not found:
            marked = dict.fromkeys(f"Q{n}" for n in _MARKER.findall(cell.source))
            found = [q for q in marked if q in assignment.questions]
        if not found:
            found = assignment.questions_in(cell.source)
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

# Cell separators of the exports students hand in: jupytext/VS Code/Spyder percent cells
# (``# %%``) and ``jupyter nbconvert --to script`` prompts (``# In[3]:``, ``# In[ ]:``).
_CELL_MARK = re.compile(r"^# %%|^# In\[[ \d]*\]:\s*$")
_COMMENT_OR_BLANK = re.compile(r"^\s*(#.*)?$")


def module_cells(text: str) -> list[Cell]:
    """Split a module into cells: at its cell markers where it has them (percent cells,
    nbconvert prompts), else into its top-level statements (a Colab download, a plain
    module), so that one failing statement does not take the rest with it. A statement
    keeps the comments just above it (``# >>> Question 2`` tags it); markdown exported
    as comments after a cell's code is not part of the cell."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CELL_MARK.match(line)]
    if starts:
        bounds = [_without_trailing_markdown(lines, a, b) for a, b in zip([0, *starts], [*starts, len(lines)])]
    else:
        bounds = _statement_bounds(lines)
    cells = []
    for n, (a, b) in enumerate(bounds):
        chunk = "\n".join(lines[a:b])
        if lines[a].startswith("# %% [markdown]") or all(_COMMENT_OR_BLANK.match(line) for line in lines[a:b]):
            continue
        cells.append(Cell(index=n, source=chunk, label=f"lines {a + 1}-{b}", line_offset=a))
    return cells


def _without_trailing_markdown(lines: list[str], a: int, b: int) -> tuple[int, int]:
    """nbconvert writes a markdown cell as comment lines after two blank lines: a block of
    comments closing a cell after a blank line is markdown, not the cell's code."""
    end = b
    while end > a and not lines[end - 1].strip():
        end -= 1
    k = end
    while k > a and lines[k - 1].lstrip().startswith("#") and not _CELL_MARK.match(lines[k - 1]):
        k -= 1
    if a < k < end and not lines[k - 1].strip():
        return a, k
    return a, b


# Lines at the margin that continue the statement above rather than start one.
_CONTINUES = re.compile(r"[)\]}#]|(else|elif|except|finally)\b")


def _statement_bounds(lines: list[str]) -> list[tuple[int, int]]:
    """(first, end) line ranges of the top-level statements, each with the comments just
    above it. A part that does not parse (a student's syntax error) becomes a chunk of
    its own and the statements after it are still found."""
    heads = [i for i, line in enumerate(lines) if line[:1].strip() and not _CONTINUES.match(line)]
    bounds: list[tuple[int, int]] = []
    i = 0
    while i < len(heads):
        a = heads[i]
        for j in range(i + 1, min(len(heads), i + 200) + 1):
            b = heads[j] if j < len(heads) else len(lines)
            try:
                tree = ast.parse("\n".join(lines[a:b]))
            except SyntaxError:
                continue
            bounds.extend(_statements_in(tree, a))
            i = j
            break
        else:  # nothing parses from here: this line starts a chunk that reports the error
            b = heads[i + 1] if i + 1 < len(heads) else len(lines)
            bounds.append((a, b))
            i += 1
    # each chunk takes the comment lines just above it
    out: list[tuple[int, int]] = []
    for a, b in bounds:
        floor = out[-1][1] if out else 0
        while a > floor and lines[a - 1].lstrip().startswith("#"):
            a -= 1
        out.append((a, b))
    return out


def _statements_in(tree: ast.Module, offset: int) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    for node in tree.body:
        first = offset + min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        last = offset + (node.end_lineno or node.lineno)
        if bounds and first < bounds[-1][1]:  # shares a line with the previous statement
            bounds[-1] = (bounds[-1][0], max(bounds[-1][1], last))
        else:
            bounds.append((first, last))
    return bounds
