"""Check details as typed parts (details.py): each kind is drawn by its kind, details in
the older flat form still draw the same, and parts survive results.json."""

from __future__ import annotations

import json

from test_report import check, sample_result

from grader import details as d
from grader.render import check_markdown
from grader.report import render_submission
from grader.results import SubmissionResult
from grader.views import PART_BLOCKS, detail_blocks

ROWS: list[d.LayerRow] = [
    {
        "expected": "Conv2d(3, 32, kernel_size=5, padding=2)",
        "found": "Conv2d(3, 32, kernel_size=5)",
        "status": "changed",
    },
    {"expected": "ReLU()", "found": "", "status": "missing"},
]
STD: dict[str, d.StdRow] = {"conv_w1": {"found": 0.08, "expected": 0.1155, "fan_in": 150, "ratio": 0.69, "ok": False}}


def blocks(details: d.Details, *, student_view: bool = False) -> list[dict]:
    return detail_blocks(check("Q1.x", "failed", 1, "m", details), {3: "cell 4"}, student_view=student_view)


def test_every_kind_has_a_drawing():
    assert set(PART_BLOCKS) == set(d.KINDS)


def test_each_kind_is_drawn_by_its_kind():
    parity = blocks(d.of(d.parity_figures(max_abs_err=0.03, rel_err=0.02, train_mode_rel_err=1e-12, tolerance=1e-6)))
    assert parity == [
        {
            "kind": "values",
            "title": "Numerical parity",
            "rows": [
                ("max absolute error", "0.03", ""),
                ("relative error", "0.02", "bad"),
                ("relative error in training mode", "1e-12", "ok"),
                ("relative tolerance", "1e-06", ""),
            ],
        }
    ]
    (diff,) = blocks(d.of(d.layer_diff(ROWS)))
    assert diff["kind"] == "diff" and [r["status"] for r in diff["rows"]] == ["changed", "missing"]
    (lists,) = blocks(d.of(d.layer_lists(["Linear(4, 2)", "ReLU()"], ["Linear(4, 2)"])))
    assert [r["status"] for r in lists["rows"]] == ["same", "missing"]
    (settings,) = blocks(d.of(d.settings_found("SGD", {"lr": 0.01, "nesterov": True}, {"lr": 0.01, "nesterov": False})))
    assert settings["type"] == "SGD" and [r["ok"] for r in settings["rows"]] == [True, False]
    (std,) = blocks(d.of(d.init_std(STD)))
    assert std["rows"] == [{"name": "conv_w1", "found": "0.08", "expected": "0.1155", "ratio": "0.6926"}]
    (error,) = blocks(d.of(d.student_error({"type": "ValueError", "message": "bad", "traceback": "", "cell": 3})))
    assert error["error"]["where"] == "cell 4" and error["error"]["type"] == "ValueError"
    (tensors,) = blocks(d.of(d.tensor_errors({"conv_w1": {"max_abs_err": 0.5, "rel_err": 0.25}})))
    assert tensors == {"kind": "tensors", "rows": [("conv_w1", "0.5", "0.25")]}
    learning, substituted = blocks(
        d.of(
            d.learning_run(
                loss_before=2.3, loss_after=1.9, accuracy_before=0.1, accuracy_after=0.3, steps=40, batch_size=64
            ),
            d.substitution({"forward pass": "the specification's (graded in Q4)"}),
        )
    )
    assert ("held-out accuracy after training", "30.0%", "") in learning["rows"]
    assert substituted["rows"] == [("forward pass", "the specification's (graded in Q4)", "")]


def test_kinds_not_keys_decide_the_drawing():
    """Values that happen to be named like another kind's keys stay values."""
    (block,) = blocks(d.of(d.values(expected=["a"], found=["b"], diff=[], rel_err=0.5)))
    assert block["kind"] == "values" and [r[0] for r in block["rows"]] == ["expected", "found", "diff", "rel err"]


def test_the_grader_traceback_is_for_instructors_only():
    details = d.of(d.internal_error("Traceback: KeyError in grader/checks"))
    assert blocks(details) == [{"kind": "internal", "traceback": "Traceback: KeyError in grader/checks"}]
    assert blocks(details, student_view=True) == []


def test_two_parts_of_one_kind_keep_both():
    details = d.of(d.values(a=1), d.values(b=2))
    assert list(details) == ["values", "values_2"] and len(blocks(details)) == 2


def test_flat_details_from_before_parts_draw_as_their_parts():
    """results.json written before parts existed: same blocks as the typed parts."""
    pairs = [
        (
            {"max_abs_err": 0.03, "rel_err": 0.02, "tolerance": 1e-6},
            d.of(d.parity_figures(max_abs_err=0.03, rel_err=0.02, tolerance=1e-6)),
        ),
        ({"diff": ROWS}, d.of(d.layer_diff(ROWS))),
        ({"expected": ["A"], "found": ["B"]}, d.of(d.layer_lists(["A"], ["B"]))),
        (
            {"required": {"lr": 0.01}, "found": {"lr": 0.1}, "type": "SGD"},
            d.of(d.settings_found("SGD", {"lr": 0.01}, {"lr": 0.1})),
        ),
        ({"std": STD}, d.of(d.init_std(STD))),
        ({"error": {"type": "E", "message": "m"}}, d.of(d.student_error({"type": "E", "message": "m"}))),
        ({"traceback": "tb"}, d.of(d.internal_error("tb"))),
        (
            {"x": {"max_abs_err": 1.0, "rel_err": 0.5}},
            d.of(d.tensor_errors({"x": {"max_abs_err": 1.0, "rel_err": 0.5}})),
        ),
        ({"checkpoint": "best_model.pt"}, d.of(d.values(checkpoint="best_model.pt"))),
    ]
    for flat, typed in pairs:
        assert blocks(flat) == blocks(typed), flat


def test_parts_survive_results_json_and_reach_every_output():
    result = sample_result("alice", strength=1)
    result.checks[0].details = d.of(d.layer_diff(ROWS), d.substitution({"forward pass": "the specification's"}))
    again = SubmissionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.checks[0].details["layer_diff"]["kind"] == "layer_diff"
    html = render_submission(again, student_view=True)
    assert "row-missing" in html and "Run with the specification&#39;s version of" in html
    markdown = check_markdown(again.checks[0], {})
    assert "ReLU()" in markdown and "missing" in markdown and "forward pass" in markdown
