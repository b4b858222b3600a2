"""Which objects each question grades: found from what the code hands to training, in
whatever order and layout, the last one counting; a module run past its errors; only the
selected questions' code run; a wrong answer never taken for a missing one."""

from __future__ import annotations

import multiprocessing
import textwrap

import pytest

from grader.engine import grade_submission

PRELUDE = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    def train_part34(model, optimizer, epochs=1):
        raise AssertionError("the grader intercepts training")

    class ThreeLayerConvNet(nn.Module):
        def __init__(self, a, b, c, d):
            super().__init__()
            self.conv1 = nn.Conv2d(a, b, 3)

    def sequential(channels):
        return nn.Sequential(nn.Conv2d(3, channels, 3), nn.ReLU(), nn.Flatten(), nn.Linear(channels * 900, 10))

    def sgd(model, lr):
        return torch.optim.SGD(model.parameters(), lr=lr)
    """
)


def _attribute(cells: list[list]) -> dict:
    """Run cells ([source, questions]) in a fresh Runtime; say what each question grades."""
    from grader.worker.runtime import Runtime

    rt = Runtime(seed=0)
    for index, (source, questions) in enumerate([[PRELUDE, []], *cells]):
        out = rt.run_cell(index=index, source=source, question=(questions or [None])[0], questions=questions)
        assert out["status"] == "ok", out["error"]
    found = {}
    for q in ("Q5", "Q6", "Q7"):
        captures = rt.captures_for(q)
        if captures:
            last = captures[-1]
            found[q] = (last.cell, last.objects["optimizer"].param_groups[0]["lr"], len(captures))
    return found


def attribute(*cells) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # the Runtime patches torch
        return pool.apply(_attribute, ([list(c) for c in cells],))


Q5 = "model = ThreeLayerConvNet(3, 32, 16, 10)\noptimizer = sgd(model, 3e-3)\ntrain_part34(model, optimizer)"
Q6 = "model = sequential(16)\noptimizer = sgd(model, {lr})\ntrain_part34(model, optimizer)"
Q7 = (
    "model = sequential(64)\noptimizer = sgd(model, 0.5)\ntrain_part34(model, optimizer, epochs=10)\nbest_model = model"
)


def test_questions_are_found_by_meaning_in_any_order_and_the_last_one_counts():
    got = attribute(
        (Q6.format(lr=0.1), []),  # no labels at all, and Q6 before Q5
        (Q7, []),
        (Q5, []),
        (Q6.format(lr=0.01), []),  # Q6 re-run with other settings: this one counts
    )
    assert got == {"Q6": (4, 0.01, 2), "Q7": (2, 0.5, 1), "Q5": (3, 3e-3, 1)}


def test_a_long_run_or_best_model_is_the_challenge_not_question_6():
    # best_model set: the Sequential trained for 10 epochs is Q7, even in a Q6-labelled cell
    assert attribute((Q6.format(lr=0.01) + "\n" + Q7, ["Q6"]))["Q6"][1] == 0.01
    # best_model never set (its cell not run): a 10-epoch run is still not Question 6
    got = attribute((Q6.format(lr=0.01), []), (Q7.replace("best_model = model", ""), []))
    assert got["Q6"][:2] == (1, 0.01)


def _module(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def test_a_module_runs_past_an_error_and_the_report_says_where_python_would_stop(tmp_path):
    path = tmp_path / "hw.py"
    path.write_text(
        _module(
            """
            def three_layer_convnet(x, params):
                raise ValueError("wrong on purpose")

            import sys
            sys.exit("stopped here")
            print("still graded")

            best_model = sequential(4)
            print("the Question 7 code ran", best_model)
            """
        )
    )
    result = grade_submission(path=path, questions={"Q1"}, run_seed=1)
    notes = " ".join(result.notes)
    assert "python hw.py would have stopped at" in notes and "SystemExit: stopped here" in notes
    assert "after it anyway" in notes
    assert any("still graded" in c.stdout for c in result.cells)
    # Question 7 is not graded: its code is not run
    assert not any("Question 7 code ran" in c.stdout for c in result.cells)
    assert "the Question 7 code was not run" in notes
    # A Q1 that raises is a wrong Q1, not an unanswered one
    by_id = {c.id: c for c in result.checks}
    assert by_id["Q1.flatten_helper"].status != "skipped", by_id["Q1.flatten_helper"].message
    assert "not answered" not in by_id["Q1.output_shape"].message
    assert "ValueError" in by_id["Q1.output_shape"].message


@pytest.mark.parametrize("text", ["raise NotImplementedError('Question 1 is not answered yet')", "return None"])
def test_an_unanswered_q1_is_still_not_answered(tmp_path, text):
    path = tmp_path / "hw.py"
    path.write_text(
        _module(
            f"\ndef flatten(x):\n    return x.view(x.shape[0], -1)\n\ndef three_layer_convnet(x, params):\n    {text}\n"
        )
    )
    result = grade_submission(path=path, questions={"Q1"}, run_seed=1)
    helper = next(c for c in result.checks if c.id == "Q1.flatten_helper")
    assert helper.status == "skipped" and "not answered" in helper.message
