"""The HTML reports, tested on the HTML text itself, from results built by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grader.render import gradescope
from grader.report import (
    environment,
    excerpt,
    histogram,
    line_chart,
    render_submission,
    write_class_summary,
    write_submission_reports,
)
from grader.results import CellRun, CheckResult, SubmissionResult

XSS = "<script>alert(1)</script>"
HIDDEN_MARKER = "HIDDEN-FINDING-7f3a"  # only in hidden checks' messages and details
TITLES = {
    "Q1": "Barebones three-layer ConvNet: three_layer_convnet",
    "Q2": "Barebones parameters and training call",
    "Q3": "ThreeLayerConvNet constructor: layers and initialisation",
    "Q4": "ThreeLayerConvNet forward pass",
    "Q5": "Module API: model and optimizer",
    "Q6": "Sequential API: three-layer ConvNet",
    "Q7": "Open-ended challenge: at least 70% validation accuracy",
}


def check(
    cid: str,
    status: str,
    points: float,
    message: str,
    details: dict | None = None,
    *,
    hidden: bool = False,
    title: str = "",
) -> CheckResult:
    question = cid.split(".")[0]
    score = points if status == "passed" else 0.0
    return CheckResult(
        id=cid,
        question=question,
        title=title or cid.split(".")[1].replace("_", " "),
        status=status,
        score=score,
        max_score=points,
        visibility="hidden" if hidden else "visible",
        message=message,
        details=details or {},
        duration=0.42,
    )


def sample_result(name: str = "alice", *, strength: int = 2, extra_text: str = "") -> SubmissionResult:
    """A realistic graded notebook. ``strength`` 0-3 decides how many checks pass, so a
    class of these has different totals; ``extra_text`` is planted in every student field."""
    ok = lambda level: "passed" if strength >= level else "failed"  # noqa: E731
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "<cell 4>", line 3, in <module>\n'
        "    scores = model(x)\n"
        '  File "<cell 3>", line 12, in forward\n'
        "    x = self.fc(x)\n"
        f"RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x8192 and 16384x10) {extra_text}\n"
    )
    checks = [
        check(
            "Q1.output_shape",
            ok(1),
            2,
            f"three_layer_convnet returned (64, 10) for 64 images; expected (64, 10) {extra_text}",
        ),
        check(
            "Q1.forward_parity",
            ok(2),
            4,
            f"scores differ from the reference: max abs error 0.0312, relative error 0.0154 {HIDDEN_MARKER}",
            {"max_abs_err": 0.0312, "rel_err": 0.0154, "tolerance": 1e-6},
            hidden=True,
            title="forward pass matches the reference",
        ),
        check(
            "Q1.gradient_parity",
            ok(3),
            3,
            f"gradients differ from the reference: conv_w1: max abs error 0.5 {HIDDEN_MARKER}",
            {"x": {"max_abs_err": 1.2e-9, "rel_err": 3.4e-10}, "conv_w1": {"max_abs_err": 0.5, "rel_err": 0.021}},
            hidden=True,
            title="gradients match the reference for every parameter",
        ),
        check(
            "Q2.kaiming_init",
            ok(1),
            2,
            "conv_w1: std 0.0816, expected 0.1155 = sqrt(2 / 150) (ratio 0.71)",
            {
                "std": {
                    "conv_w1": {"found": 0.0816, "expected": 0.11547},
                    "fc_w": {"found": 0.0110, "expected": 0.01105},
                }
            },
        ),
        check("Q2.learning_rate", "passed", 1, "learning rate 0.003"),
        check(
            "Q3.layers",
            ok(2),
            3,
            "ThreeLayerConvNet(3, 32, 16, 10): conv2 has padding 0 (expected 1)",
            {
                "expected": [
                    "Conv2d(3, 32, kernel_size=5, padding=2)",
                    "Conv2d(32, 16, kernel_size=3, padding=1)",
                    "Linear(16384, 10)",
                ],
                "found": [
                    "Conv2d(3, 32, kernel_size=5, padding=2)",
                    "Conv2d(32, 16, kernel_size=3, padding=0)",
                    "Linear(14400, 10)",
                ],
            },
        ),
        check(
            "Q4.output_shape",
            "error" if strength < 2 else "passed",
            2,
            "your code raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (cell 4, line 12)",
            {
                "error": {
                    "type": "RuntimeError",
                    "message": "mat1 and mat2 shapes cannot be multiplied",
                    "traceback": traceback,
                    "cell": 3,
                    "line": 12,
                }
            }
            if strength < 2
            else {},
        ),
        check(
            "Q5.optimizer",
            ok(1),
            3,
            "expected SGD(lr=0.01, momentum=0.9, nesterov=True) over all parameters: momentum=0 (expected 0.9)",
            {
                "required": {"lr": 0.01, "momentum": 0.9, "nesterov": True},
                "found": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
                "type": "SGD",
            },
        ),
        check(
            "Q5.learns",
            ok(2),
            2,
            f"after 40 steps of 64 images: held-out loss 2.303 -> 2.301 {HIDDEN_MARKER}",
            {
                "loss_before": 2.303,
                "loss_after": 2.301,
                "accuracy_before": 0.1,
                "accuracy_after": 0.12,
                "steps": 40,
                "batch_size": 64,
                "probe": HIDDEN_MARKER,
            },
            hidden=True,
            title="the model and optimizer learn on real images",
        ),
        check(
            "Q6.architecture",
            ok(2),
            5,
            "missing ReLU between Conv2d(3, 32, 5) and Conv2d(32, 16, 3)",
            {
                "diff": [
                    {
                        "expected": "Conv2d(3, 32, kernel_size=5, padding=2)",
                        "found": "Conv2d(3, 32, kernel_size=5, padding=2)",
                        "status": "same",
                    },
                    {"expected": "ReLU()", "found": "", "status": "missing"},
                    {
                        "expected": "Conv2d(32, 16, kernel_size=3, padding=1)",
                        "found": "Conv2d(32, 16, kernel_size=3, padding=0)",
                        "status": "changed",
                    },
                    {"expected": "", "found": "Dropout(p=0.5)", "status": "extra"},
                    {"expected": "Linear(16384, 10)", "found": "Linear(16384, 10)", "status": "same"},
                ]
            },
        ),
        check(
            "Q6.parity",
            "timeout" if strength == 0 else ok(2),
            4,
            f"your code ran past the 60 s limit of this check {HIDDEN_MARKER}",
            hidden=True,
        ),
        check("Q7.model_found", ok(1), 20, "a Net with 10 parameter tensors"),
    ]
    cells = [
        CellRun(0, "cell 1", [], "ok", stdout="", duration=0.1),
        CellRun(3, "cell 4", ["Q3"], "ok", stdout=f"defined ThreeLayerConvNet {extra_text}\n", duration=0.2),
        CellRun(
            4,
            "cell 5",
            ["Q4"],
            "error" if strength < 2 else "ok",
            stdout=f"building the model... {extra_text}\n" + "Iteration 0, loss = 2.3026\n" * 3,
            stderr=f"UserWarning: something {extra_text}\n",
            error={
                "type": "RuntimeError",
                "message": f"mat1 and mat2 shapes cannot be multiplied {extra_text}",
                "traceback": traceback,
                "cell": 3,
                "line": 12,
            }
            if strength < 2
            else None,
            duration=1.3,
        ),
        CellRun(9, "cell 10", ["Q7"], "timeout" if strength == 0 else "ok", stdout="Epoch 1 ... done\n", duration=30.0),
    ]
    epochs = [1, 2, 3, 4, 5, 6]
    challenge = {
        "mode": "retrain",
        "val_accuracy": 0.55 + 0.07 * strength,
        "val_ci": [0.52 + 0.07 * strength, 0.58 + 0.07 * strength],
        "val_images": 1000,
        "test_accuracy": 0.54 + 0.07 * strength,
        "test_ci": [0.53 + 0.07 * strength, 0.55 + 0.07 * strength],
        "test_images": 10000,
        "threshold": 0.70,
        "margin": 0.03,
        "self_reported": 0.81,
        "flagged": strength < 2,
        "epochs": 6,
        "train_seconds": 412.5,
        "over_budget": False,
        "history": {
            "epoch": epochs,
            "train_loss": [1.9, 1.45, 1.2, 1.05, 0.95, 0.88],
            "val_acc": [0.45, 0.56, 0.62, 0.66, 0.69, 0.55 + 0.07 * strength],
        },
    }
    return SubmissionResult(
        name=f"{name}{extra_text}",
        source=f"{name}{extra_text}.ipynb",
        sha256="ab" * 32,
        status="graded",
        kind="notebook",
        layout="template",
        checks=checks,
        cells=cells,
        notes=[f"cell 7 was recognised as Q5 by its marker {extra_text}"],
        challenge=challenge,
        question_titles=dict(TITLES),
        grader_version="0.1.0",
        rubric_sha="cd" * 32,
        duration=95.2,
        graded_at="2025-03-01T12:00:00+00:00",
    )


def broken_result(name: str, status: str, reason: str) -> SubmissionResult:
    """An invalid or crashed submission: every check failed with the same reason."""
    base = sample_result(name)
    checks = [
        CheckResult(
            c.id,
            c.question,
            c.title,
            "failed" if status == "invalid" else "error",
            0.0,
            c.max_score,
            c.visibility,
            f"{status} submission: {reason}",
        )
        for c in base.checks
    ]
    return SubmissionResult(
        name=name,
        source=f"{name}.ipynb",
        sha256="",
        status=status,
        reason=reason,
        checks=checks,
        question_titles=dict(TITLES),
    )


def sample_class() -> tuple[list[SubmissionResult], list[str]]:
    """Several students with different totals, one invalid and one crashed submission."""
    results = [
        sample_result("carol", strength=3),
        sample_result("alice", strength=1),
        sample_result("dave", strength=0),
        sample_result("bob", strength=2),
        broken_result("erin", "invalid", "erin.ipynb is not valid JSON: Expecting value: line 1 column 1"),
        broken_result(
            "frank", "crashed", "the worker could not run the submission: killed by signal 9 (out of memory?)"
        ),
    ]
    return results, [r.name for r in results]


def write_all(results: list[SubmissionResult], folders: list[str], out: Path) -> dict[str, str]:
    pages = {}
    for result, folder in zip(results, folders):
        for path in write_submission_reports(result, out / folder):
            pages[str(path.relative_to(out))] = path.read_text(encoding="utf-8")
    index = write_class_summary(results, folders, out)
    pages["index.html"] = index.read_text(encoding="utf-8")
    return pages


# -- per-submission reports --------------------------------------------------------------------


def test_writes_both_views(tmp_path):
    paths = write_submission_reports(sample_result(), tmp_path / "alice")
    assert [p.name for p in paths] == ["report.html", "report-student.html"]
    for p in paths:
        text = p.read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


def test_templates_autoescape():
    env = environment()
    assert env.autoescape("report.html.j2") is True and env.autoescape("index.html.j2") is True
    assert env.from_string("{{ x }}").render(x=XSS) == "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_student_text_is_escaped_everywhere(tmp_path):
    result = sample_result("mallory", strength=1, extra_text=XSS)
    result.checks[0].details = {"note": XSS}
    result.challenge["mode"] = XSS
    result.reason = XSS
    pages = write_all([result, broken_result(f"eve{XSS}", "crashed", XSS)], ["mallory", "eve"], tmp_path)
    for name, html in pages.items():
        assert XSS not in html, name
        assert "<script>alert" not in html, name
    report = pages["mallory/report.html"]
    # It is shown, as text, in the name, stdout, message, traceback and notes.
    assert report.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["index.html"]


def test_svg_escapes_embedded_text():
    svg = line_chart(f"loss {XSS}", [1, 2], [1.0, 0.5], target=0.7, target_label=XSS)
    assert XSS not in svg and "&lt;script&gt;" in svg
    assert "<polyline" in svg
    assert histogram([1, 2, 50], 100, 17.6).count("<rect") == 10


def test_student_view_hides_hidden_checks(tmp_path):
    instructor, student = (
        p.read_text(encoding="utf-8") for p in write_submission_reports(sample_result(strength=1), tmp_path)
    )
    assert HIDDEN_MARKER in instructor
    assert "forward pass matches the reference" in instructor
    assert HIDDEN_MARKER not in student
    assert "forward pass matches the reference" not in student  # not even the title
    assert "0.0312" not in student  # nor a hidden check's details
    # 4 hidden checks: Q1.forward_parity (4), Q1.gradient_parity (3), Q5.learns (2), Q6.parity (4).
    assert "4 hidden checks worth 13 points" in student
    assert "2 hidden checks worth 7 points" in student  # Q1's own line
    # Visible checks are there in full, with their details.
    assert "missing ReLU between Conv2d(3, 32, 5) and Conv2d(32, 16, 3)" in student
    assert "Dropout(p=0.5)" in student and "0.0816" in student


def test_instructor_report_shows_details(tmp_path):
    html = write_submission_reports(sample_result(strength=1), tmp_path)[0].read_text(encoding="utf-8")
    # Parity: max absolute and relative error, tolerance, and per-tensor rows.
    assert "max absolute error" in html and "0.0312" in html and "0.0154" in html and "1e-06" in html
    assert "conv_w1" in html and "0.021" in html
    # Q6 architecture diff side by side, with the status of each row.
    for status in ("same", "missing", "changed", "extra"):
        assert f'class="row-{status}"' in html
    # Optimizer settings found against required.
    assert re.search(r"momentum</td><td[^>]*>0.9</td><td[^>]*>0</td>", html)
    assert re.search(r"nesterov</td><td[^>]*>True</td><td[^>]*>False</td>", html)
    # Kaiming std table with the ratio.
    assert "0.1155" in html and "0.7067" in html
    # Scores per question and total.
    assert "Q6 · Sequential API: three-layer ConvNet" in html
    assert "Total score" in html


def test_traceback_is_mapped_to_the_students_cells(tmp_path):
    html = write_submission_reports(sample_result(strength=1), tmp_path)[0].read_text(encoding="utf-8")
    assert "Cells that did not run cleanly" in html
    # The worker's "<cell 4>" is the notebook's fifth cell, which the student knows as "cell 5".
    assert "raised in <strong>cell 4, line 12</strong>" in html
    assert "File &#34;cell 5&#34;, line 3" in html and "File &#34;cell 4&#34;, line 12" in html
    assert "&lt;cell 4&gt;" not in html
    assert "<details><summary>stdout" in html and "Iteration 0, loss = 2.3026" in html


def test_long_output_is_cut(tmp_path):
    result = sample_result(strength=1)
    result.cells[2].stdout = "start\n" + "x" * 200_000 + "\nthe end"
    html = write_submission_reports(result, tmp_path)[0].read_text(encoding="utf-8")
    assert "characters left out" in html and "the end" in html
    assert len(html) < 120_000
    assert len(excerpt("y" * 10_000, 1000)) < 1100


@pytest.mark.parametrize(
    ("status", "reason", "headline"),
    [
        ("invalid", "alice.ipynb is not valid JSON: Expecting value", "Invalid submission"),
        ("crashed", "the worker could not run the submission: killed by signal 9", "Grading crashed"),
    ],
)
def test_broken_submissions_show_their_reason(tmp_path, status, reason, headline):
    for path in write_submission_reports(broken_result("alice", status, reason), tmp_path):
        html = path.read_text(encoding="utf-8")
        assert headline in html and reason in html
        assert 'role="alert"' in html


def test_challenge_section(tmp_path):
    html = write_submission_reports(sample_result(strength=2), tmp_path)[0].read_text(encoding="utf-8")
    assert "Question 7: accuracy" in html
    assert "69.00%" in html and "66.00% – 72.00%" in html  # validation accuracy and its CI
    assert "68.00%" in html and "67.00% – 69.00%" in html  # test accuracy and its CI
    assert "95% confidence interval" in html
    assert "retrained by the grader" in html and "81.00%" in html  # mode and self-report
    assert "Training curves" in html
    assert html.count("<polyline") == 2  # loss and accuracy curves, inline SVG
    assert "training loss" in html and "validation accuracy" in html

    flagged = write_submission_reports(sample_result(strength=1), tmp_path / "f")[0].read_text(encoding="utf-8")
    assert "Question 7 needs a look" in flagged

    checkpoint = sample_result(strength=3)
    checkpoint.challenge = {
        "mode": "checkpoint",
        "val_accuracy": 0.74,
        "val_ci": [0.71, 0.77],
        "val_images": 1000,
        "threshold": 0.7,
        "self_reported": None,
    }
    html = write_submission_reports(checkpoint, tmp_path / "c")[0].read_text(encoding="utf-8")
    assert "74.00%" in html and "not reported" in html
    assert "<polyline" not in html and "Training curves" not in html  # no history, no curves

    checkpoint.challenge = {}
    html = write_submission_reports(checkpoint, tmp_path / "n")[0].read_text(encoding="utf-8")
    assert "Question 7: accuracy" not in html


# -- the class summary -----------------------------------------------------------------------


def test_summary_lists_students_problems_and_figures(tmp_path):
    results, folders = sample_class()
    html = write_all(results, folders, tmp_path)["index.html"]
    for folder in folders:
        assert f'href="{folder}/report.html"' in html
        assert (tmp_path / folder / "report.html").exists()
    assert "Submissions that need a look" in html
    assert "erin.ipynb is not valid JSON: Expecting value: line 1 column 1" in html
    assert "killed by signal 9 (out of memory?)" in html
    assert "timed out in cell 10" in html  # dave's Q7 cell
    assert 'class="sortable"' in html and "<script>" in html and "addEventListener" in html
    assert "<rect" in html  # histogram
    assert "What to teach again" in html and "Q1.gradient_parity" in html
    assert "full marks" in html


def test_summary_sorts_on_data_values(tmp_path):
    results, folders = sample_class()
    html = write_all(results, folders, tmp_path)["index.html"]
    rows = html.split('<table class="sortable"')[1].split('<tr class="student-')[1:]
    totals = {
        re.search(r'href="(\w+)/', row)[1]: float(re.search(r'class="num" data-sort="([-\d.]+)"', row)[1])
        for row in rows
    }
    assert totals["carol"] == 51 and totals["carol"] > totals["bob"] > totals["alice"] > totals["dave"]
    assert totals["erin"] == totals["frank"] == -1  # not graded: sorted below every graded total


def test_no_external_urls(tmp_path):
    results, folders = sample_class()
    results[0].cells[1].stdout = 'see <a href="https://example.com">https://example.com</a>'
    for name, html in write_all(results, folders, tmp_path).items():
        assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I), name
        assert "url(" not in html and "@import" not in html, name
        assert "<link" not in html, name
        assert not re.search(r"<script[^>]+src", html), name


def test_unanswered_questions_are_grouped_so_the_real_failure_stands_out(tmp_path):
    result = sample_result(strength=3)
    result.checks = [c for c in result.checks if c.question in ("Q1", "Q2")]
    result.checks += [
        check(
            "Q5.model", "failed", 3, "train_part34(model, optimizer) was never called: Question 5 is not answered yet"
        ),
        check("Q6.architecture", "failed", 5, "Question 6 is not answered yet"),
        check("Q7.model_found", "failed", 2, "no Question 7 model"),
    ]
    result.cells.append(
        CellRun(7, "cell 8", ["Q7"], "error", "", "", {"type": "NotImplementedError", "message": "not answered yet"})
    )
    assert result.unanswered() == ["Q5", "Q6", "Q7"]
    assert "Q5-Q7 not answered yet" in gradescope(result)["output"]
    html = render_submission(result, student_view=True)
    assert "Q5-Q7 not answered yet." in html
    assert html.count("Not answered yet: its") == 3
