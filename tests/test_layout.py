"""The code's layout: the core knows no question of the homework by name, and the
grader's modules import one another without a cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

GRADER = Path(__file__).resolve().parent.parent / "grader"
HOMEWORKS = GRADER / "assignments"
QUESTION_ID = re.compile(r"\bQ[1-7]\b")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(GRADER.rglob("*.py")):
        parts = list(path.relative_to(GRADER.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_the_core_names_no_question_of_the_homework():
    """Question ids live in the homework's definition (grader/assignments/): in the
    core's code (comments and docstrings aside) none is written out."""
    found = []
    for path in _modules().values():
        if HOMEWORKS in path.parents:
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            if text and QUESTION_ID.search(text):
                found.append(f"{path.relative_to(GRADER.parent)}:{node.lineno}: {text[:60]!r}")
    assert not found, "question ids in the core:\n" + "\n".join(found)


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The grader modules ``module`` imports, at module level or inside functions (not
    the annotations-only imports under ``if TYPE_CHECKING:``)."""
    out: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # grader.worker.runtime.Runtime -> grader.worker.runtime
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", known)
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    """No module imports another that imports it back, directly or through others,
    even through an import inside a function (the lazy import that hides a cycle)."""
    graph = import_graph()
    assert "grader.rubric" in graph["grader.engine"]  # the walk sees imports at all
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_worker_side_of_the_homework_imports_no_answer_key_or_check():
    """The worker imports the homework's worker module by name: nothing it reaches
    may lead to the checks or the answer key."""
    from grader.assignment import default_assignment

    assignment = default_assignment()
    graph = import_graph()
    reached, todo = set(), [assignment.worker_module, "grader.worker.serve", "grader.worker.__main__"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph.get(name, ()))
    checks = f"grader.assignments.{assignment.name}.checks"
    assert not [m for m in reached if m == checks or m.startswith(checks + ".")]
    assert not [m for m in reached if m in ("grader.checks", "grader.engine", "grader.rubric")]
    for name in reached:  # nor does any of them import the answer key itself
        tree = ast.parse(_modules()[name].read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in imported if m.split(".")[0] == assignment.answer_key}, name


def test_the_definition_agrees_with_its_rubric_and_its_checks():
    from grader.assignment import load_assignment
    from grader.checks import all_checks
    from grader.rubric import load_rubric

    assignment = load_assignment("cifar10")
    assert tuple(load_rubric(assignment=assignment).titles) == assignment.questions
    assert {s.question for s in all_checks(assignment).values()} == set(assignment.questions)
    assert assignment.challenge in assignment.questions
    for table in (assignment.missing_capture, assignment.placeholders, assignment.similarity_weights):
        assert set(table) <= set(assignment.questions)
    assert set(assignment.placeholders) == set(assignment.questions)  # every answer has its placeholder
    assert assignment.rubric.is_file() and assignment.template.is_file()
    with pytest.raises(ValueError, match="no assignment named"):
        load_assignment("no_such_homework")


def test_importing_the_worker_side_loads_neither_checks_nor_answer_key():
    """What the worker imports at start-up, in a fresh interpreter."""
    from grader.assignment import default_assignment

    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); import grader.worker.serve; "
        "print('\\n'.join(sys.modules))"
    )
    assignment = default_assignment()
    out = subprocess.run(
        [sys.executable, "-c", code, assignment.worker_module],
        capture_output=True,
        text=True,
        check=True,
        cwd=GRADER.parent,
    ).stdout.split()
    assert assignment.worker_module in out
    checks = f"grader.assignments.{assignment.name}.checks"
    loaded = [m for m in out if m.startswith((checks, assignment.answer_key, "grader.checks", "grader.engine"))]
    assert not loaded


def test_the_core_imports_no_homework():
    """The core reaches a homework only through its definition (``Assignment``: module
    names it imports by name), never by importing the homework's package itself."""
    graph = import_graph()
    found = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not module.startswith("grader.assignments")
        for target in targets
        if target.startswith("grader.assignments.")
    ]
    assert not found, "\n".join(found)
