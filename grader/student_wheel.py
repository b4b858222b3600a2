"""Build the student distribution: a wheel of the ``grader`` package alone.

Instructors install the project (``pip install cifar10-autograder``): the grader, the
answer key (``reference_solution``) and the hidden checks' expectations, which are
computed from it. Students need only the data layer and the self-check, so their wheel,
``cifar10-autograder-student``, is built from a copy of ``grader/`` with no answer key
beside it. ``python -m grader.student_wheel DIST`` writes it into DIST.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .version import __version__

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "cifar10-autograder-student"
version = "{version}"
description = "The CIFAR-10 homework's self-check: the grader's public checks, without the answer key."
requires-python = ">=3.10"
dependencies = ["torch>=2.6", "torchvision>=0.21", "numpy", "pillow", "nbformat>=5.7", "jinja2>=3",
                "tomli>=2; python_version < '3.11'"]

[project.scripts]
grade = "grader.cli:main"

[tool.setuptools.packages.find]
include = ["grader*"]

[tool.setuptools.package-data]
grader = ["*.toml", "templates/*", "assignments/*/*.toml", "assignments/*/*.j2"]
"""


def build_student_wheel(*, dist: Path) -> Path:
    """Build the student wheel into ``dist`` and return its path."""
    package = Path(__file__).resolve().parent
    dist = Path(dist).resolve()
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="student-wheel-") as tmp:
        project = Path(tmp)
        shutil.copytree(package, project / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (project / "pyproject.toml").write_text(PYPROJECT.format(version=__version__))
        before = set(dist.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), tmp],
            check=True,
        )
    (wheel,) = set(dist.glob("cifar10_autograder_student-*.whl")) - before or set(
        dist.glob(f"cifar10_autograder_student-{__version__}-*.whl")
    )
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m grader.student_wheel", description=__doc__.splitlines()[0])
    parser.add_argument("dist", type=Path, help="folder the wheel is written to")
    print(build_student_wheel(dist=parser.parse_args().dist))


if __name__ == "__main__":
    main()
