"""The student distribution holds the grader and the self-check, and no answer."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import reference_solution
from grader.student_wheel import build_student_wheel

SOLUTIONS = Path(reference_solution.__file__).resolve().parent


def _answers() -> list[str]:
    """Every answer between the BEGIN/END SOLUTION markers, one string per answer with
    its lines stripped (provided lines alone, like imports, are not answers)."""
    answers = []
    for source in SOLUTIONS.rglob("*.py"):
        for block in re.findall(r"# BEGIN SOLUTION[^\n]*\n(.*?)# END SOLUTION", source.read_text(), re.S):
            if len(_normalized(block)) > 40:  # a marker quoted in a docstring is not an answer
                answers.append(_normalized(block))
    return answers


def _normalized(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def test_the_student_wheel_has_the_self_check_and_no_answer(tmp_path):
    wheel = build_student_wheel(dist=tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        text = _normalized("\n".join(z.read(n).decode(errors="replace") for n in names if not n.endswith("/")))
    assert (
        "grader/selfcheck.py" in names
        and "grader/data.py" in names
        and "grader/assignments/cifar10/rubric.toml" in names
    )
    assert not [n for n in names if n.startswith("reference_solution")]
    answers = _answers()
    assert len(answers) >= 7, "the answer key's answers were found"
    leaked = [answer for answer in answers if answer in text]
    assert not leaked, leaked[:2]
