"""Which question a cell of a CIFAR-10 notebook answers, when our template's labels
are missing: the public CS231n-style notebook's cell names, else the cell's content."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Names the public CS231n-style notebook gives its graded cells (metadata "test" or "id").
CS231N_CELL_NAMES = {
    "barebones_accuracy": ["Q2"],
    "module_output_shape": ["Q3", "Q4"],
    "module_accuracy": ["Q5"],
    "sequential_accuracy": ["Q6"],
    "open_ended_accuracy": ["Q7"],
}
_ANSWER_MARKERS = re.compile(r"START OF YOUR CODE|END OF YOUR CODE|TODO:|YOUR CODE HERE", re.I)


def from_metadata(metadata: Mapping[str, Any]) -> list[str]:
    for key in ("test", "id"):
        name = metadata.get(key)
        if isinstance(name, str) and name in CS231N_CELL_NAMES:
            return list(CS231N_CELL_NAMES[name])
    return []


def from_content(source: str) -> list[str]:
    """Recognise the answer cells of the CS231n-style layout by what they contain; a
    cell merged from several answers gets each of their questions."""
    found = set()
    if re.search(r"^\s*def\s+three_layer_convnet\s*\(", source, re.M):
        found.add("Q1")
    if re.search(r"^\s*class\s+ThreeLayerConvNet\b", source, re.M):
        found.update(("Q3", "Q4"))
    if re.search(r"train_part2\s*\(\s*three_layer_convnet", source) or re.search(r"^conv_w1\s*=", source, re.M):
        found.add("Q2")
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    if re.search(r"\bbest_model\b", code):  # sets, trains or saves the Question 7 model
        found.add("Q7")
    # Each train_part34 call, with the code since the previous one, is one answer.
    pieces = re.split(r"(?<=\))\n", source)
    segment = ""
    for piece in pieces:
        segment += piece + "\n"
        if re.search(r"train_part34\s*\(", piece):
            found.update(_training_call(segment))
            segment = ""
    return sorted(found)


def _training_call(source: str) -> list[str]:
    """Which question a piece of code ending in a train_part34 call answers."""
    calls = re.findall(r"train_part34\s*\(([^)]*)\)", source)
    if not calls:
        return []
    # The Q5, Q6 and Q7 cells all hand a model to train_part34; tell them apart by what
    # the cell says (Part V asks for 70%), then by what it builds, then by how long it trains.
    answer_cell = bool(_ANSWER_MARKERS.search(source))
    epochs = re.search(r"epochs\s*=\s*(\d+)", " ".join(calls))
    if re.search(r"70\s*%|open-ended", source, re.I):
        return ["Q7"]
    if "ThreeLayerConvNet(" in source:
        return ["Q5"]
    if epochs and int(epochs.group(1)) >= 5:
        return ["Q7"]
    if "Sequential" in source and (answer_cell or "Conv2d" in source):
        return ["Q6"]
    if answer_cell:
        return ["Q5"]
    return []
