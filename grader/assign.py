"""Generating the student template and the filled example from the answer key.

Each answer is written once, in ``reference_solution`` between ``# BEGIN SOLUTION Qn``
and ``# END SOLUTION``. The notebook's text and cell order live in
``assignments/cifar10/template.py.j2`` (percent format: ``# %%`` starts a cell), which pulls in
reference code with ``source(name)`` and answers with ``region("Qn")``. Rendering it
with the answers removed gives the student template; with the answers kept, the filled
example. ``grade assign`` writes both forms (notebook and module); ``grade assign
--check`` fails if the committed files differ from what the sources generate.

The specification's values (channels, learning rates, Question 6's momentum, Question 7's
threshold and epoch limit) come from a ``Variant`` (the homework's ``variants_module``):
the template's text and cells are rendered with them, the answers read them from the
cells' variables, and ``grade assign --variant FILE --out DIR`` writes a variant's
template, answer key example, rubric and variant file into DIR.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import jinja2

from .assignment import default_assignment
from .rubric import DEFAULT_RUBRIC

# The specification's values and their variants, as the homework defines them.
_variants = default_assignment().variants()
DEFAULT = _variants.DEFAULT
variant_rubric_text, variant_toml = _variants.variant_rubric_text, _variants.variant_toml

ASSIGNMENT = "cifar10-pytorch"
TEMPLATE_VERSION = "1.0"
NOTEBOOK_NAME = "cifar10_pytorch"
SOURCES = ("assignment.py", "challenge.py")

_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION (?P<q>Q\d+)\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")

# What each placeholder tells a student to do (the homework's definition says).
TASKS = default_assignment().placeholders


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _marked(question: str, body: list[str], indent: str, *, filled: bool) -> list[str]:
    """An answer region as students see it, between visible markers."""
    n = question[1:]
    if filled:
        inner = body
    else:
        inner = [f'{indent}raise NotImplementedError("Question {n} is not answered yet: {TASKS[question]}")']
    return [
        f"{indent}# >>> Question {n}: your answer starts here",
        *inner,
        f"{indent}# <<< Question {n}: your answer ends here",
    ]


def transform_regions(text: str, *, filled: bool) -> str:
    """Replace every solution region of ``text`` by its marked answer or placeholder."""
    out: list[str] = []
    region: list[str] | None = None
    question, indent = "", ""
    for line in text.splitlines():
        begin = _BEGIN.match(line)
        if begin and region is None:
            region, question, indent = [], begin["q"], begin["indent"]
        elif _END.match(line) and region is not None:
            out.extend(_marked(question, region, indent, filled=filled))
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise ValueError(f"solution region {question} is not closed")
    return "\n".join(out)


def regions(text: str) -> dict[str, list[list[str]]]:
    """The body lines of every solution region, by question, dedented."""
    found: dict[str, list[list[str]]] = {}
    current: list[str] | None = None
    question = ""
    for line in text.splitlines():
        begin = _BEGIN.match(line)
        if begin and current is None:
            current, question = [], begin["q"]
        elif _END.match(line) and current is not None:
            found.setdefault(question, []).append(textwrap.dedent("\n".join(current)).splitlines())
            current = None
        elif current is not None:
            current.append(line)
    return found


class Sources:
    """The reference modules' text, with lookups by top-level name and by question."""

    def __init__(self, root: Path):
        self.texts = [
            (root / "reference_solution" / name).read_text()
            for name in SOURCES
            if (root / "reference_solution" / name).exists()
        ]

    def definition(self, name: str) -> str:
        for text in self.texts:
            lines = text.splitlines()
            for node in ast.parse(text).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    return "\n".join(lines[first - 1 : node.end_lineno])
        raise KeyError(f"reference_solution defines no {name}")

    def region(self, question: str) -> list[str]:
        bodies = [body for text in self.texts for body in regions(text).get(question, [])]
        if not bodies:
            raise KeyError(f"reference_solution has no solution region for {question}")
        return [line for i, body in enumerate(bodies) for line in ([""] if i else []) + body]


def render_script(*, filled: bool, root: Path | None = None, variant: Any = DEFAULT) -> str:
    """The assignment as a percent-format Python script, with ``variant``'s values."""
    root = root or _project_root()
    sources = Sources(root)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(default_assignment().folder),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    template = env.get_template(default_assignment().template_file)
    return template.render(
        source=lambda name: transform_regions(sources.definition(name), filled=filled),
        region=lambda q: "\n".join(_marked(q, sources.region(q), "", filled=filled)),
        notebook_name=f"{NOTEBOOK_NAME}.ipynb",
        v=variant.words(),
    )


_CELL = re.compile(r"^# %%(?P<rest>.*)$")


def script_to_notebook(script: str, variant: Any = DEFAULT):
    """Turn a percent-format script into an nbformat v4 notebook (its metadata names what a
    variant changes)."""
    import nbformat

    cells: list = []
    body: list[str] = []
    header = None

    def flush():
        if header is None:
            return
        rest = header.strip()
        text = "\n".join(body).strip("\n")
        if rest.startswith("[markdown]"):
            lines = [re.sub(r"^# ?", "", line) for line in text.splitlines()]
            cell = nbformat.v4.new_markdown_cell("\n".join(lines))
        else:
            cell = nbformat.v4.new_code_cell(text)
            if rest:
                cell.metadata = json.loads(rest)
        cell.id = f"cell-{len(cells) + 1}"  # stable ids keep regeneration byte-identical
        cells.append(cell)

    for line in script.splitlines():
        match = _CELL.match(line)
        if match:
            flush()
            header, body = match["rest"], []
        else:
            body.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "autograder": {"assignment": ASSIGNMENT, "template_version": TEMPLATE_VERSION},
    }
    if variant != DEFAULT:
        nb.metadata["autograder"]["variant"] = variant.changes()
    return nb


def generated_files(root: Path | None = None, variant: Any = None) -> dict[Path, str]:
    """Every file ``grade assign`` writes, by path relative to where it writes. Without a
    variant: the project's own template and examples. With one: the variant's template,
    answer key example (the filled template), rubric and the variant file itself."""
    import nbformat

    root = root or _project_root()
    v = variant or DEFAULT
    student, filled = (
        render_script(filled=False, root=root, variant=v),
        render_script(filled=True, root=root, variant=v),
    )
    notebook = nbformat.writes(script_to_notebook(student, v)) + "\n"
    files = {
        Path("student_template") / f"{NOTEBOOK_NAME}.ipynb": notebook,
        Path("student_template") / f"{NOTEBOOK_NAME}.py": student,
        Path("examples") / "filled_template" / f"{NOTEBOOK_NAME}.ipynb": nbformat.writes(script_to_notebook(filled, v))
        + "\n",
    }
    if variant is None:
        files[Path("examples") / "empty_template.ipynb"] = notebook
    else:
        files[Path("rubric.toml")] = variant_rubric_text(DEFAULT_RUBRIC.read_text(), v)
        files[Path("variant.toml")] = variant_toml(v)
    return files


def assign(
    *, root: Path | None = None, check: bool = False, variant: Any = None, out: Path | None = None
) -> list[Path]:
    """Write the generated files under ``out`` (default: the project root), or, with
    ``check``, only report those that differ. Returns the paths that changed or would change."""
    root = root or _project_root()
    out = out or root
    changed = []
    for rel, content in generated_files(root, variant).items():
        path = out / rel
        if not path.exists() or path.read_text() != content:
            changed.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
    return changed
