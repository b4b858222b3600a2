"""Messages derived from what actually differs: a layer out of place is named with its
position and where it belongs; a size hint names the number that is fixed."""

from __future__ import annotations

from grader.assignments.cifar10.checks import spec
from grader.assignments.cifar10.checks.barebones import _size_hint
from grader.checks.compare import diff_layers
from grader.results import question_ranges

E = spec.sequential_convnet()


def test_a_layer_out_of_place_is_named_not_called_missing():
    problems, rows = diff_layers(E, [E[0], E[1], E[4], E[2], E[3], E[5]])
    assert problems == ["Flatten is at position 3; it must come after the second ReLU"]
    assert [r["status"] for r in rows] == ["same", "same", "moved", "moved", "moved", "same"]
    problems, _ = diff_layers(E, [E[4], *E[:4], E[5]])
    assert problems == ["Flatten is at position 1; it must come after the second ReLU"]


def test_the_move_that_also_explains_the_layer_settings_is_chosen():
    problems, _ = diff_layers(E, [E[0], E[2], E[1], E[3], E[4], E[5]])
    assert problems == ["Conv2d is at position 2; it must come after the first ReLU"]


def test_a_missing_layer_is_still_missing():
    problems, _ = diff_layers(E, [E[0], E[2], E[3], E[4], E[5]])
    assert problems == ["missing ReLU between Conv2d(3, 32, 5) and Conv2d(32, 16, 3)"]


def test_size_hints_name_the_fixed_number():
    channels = _size_hint({1: "shape '[1, 16384]' is invalid for input of size 9216"}, 9216)
    assert "16 channels" in channels and "channel count hard-coded" in channels and "batch size seems" not in channels
    batch = _size_hint({1: "mat1 and mat2 shapes cannot be multiplied (64x144 and 9216x10)"}, 9216)
    assert "hard-coded to 64" in batch
    assert "hard-coded to 64" in _size_hint({7: "(64, 10)"}, 9216)
    assert _size_hint({7: "division by zero"}, 9216) == ""


def test_question_ranges():
    assert question_ranges(["Q2", "Q3", "Q4", "Q5", "Q6", "Q7"]) == "Q2-Q7"
    assert question_ranges(["Q1", "Q3", "Q4", "Q7"]) == "Q1, Q3-Q4, Q7"
