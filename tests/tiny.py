"""Tiny submissions, for tests that grade Question 1 alone (seconds, no dataset): a
correct answer, one bug, and the forms a submission is written in."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

CORRECT_Q1 = """
import torch
import torch.nn.functional as F


def flatten(x):
    return x.reshape(x.shape[0], -1)


def three_layer_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    x = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
    x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))
    return flatten(x).mm(fc_w) + fc_b
"""
# The same with a ReLU missing: fewer points.
Q1_NO_RELU = CORRECT_Q1.replace(
    "F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))", "F.conv2d(x, conv_w2, conv_b2, padding=1)"
)


def module(*cells: str) -> str:
    """A .py submission made of cells (``# %%``)."""
    return "\n".join(f"# %%\n{textwrap.dedent(c).strip()}\n" for c in cells)


def notebook(source: str) -> str:
    """A notebook of one code cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nbformat.writes(nb)


def write_module(folder: Path, text: str) -> Path:
    """``folder``/submission.py holding ``text`` (dedented)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "submission.py"
    path.write_text(textwrap.dedent(text))
    return path
