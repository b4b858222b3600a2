"""Part V, the open-ended challenge: Question 7, measured by the grader itself.

The student's model (architecture from the notebook, weights from the submitted
checkpoint) predicts the grader's validation and test images in the worker; the labels
stay here, where the accuracies and their 95% confidence intervals are computed.
Without a checkpoint, the worker retrains the model with the student's own training
code on the grader's 49,000 training images, at most 10 epochs, within a time budget.
"""

from __future__ import annotations

import math
import re
import time

import torch

from ..checkpoint import inspect_checkpoint, pick_checkpoint
from ..engine import CheckFailed, Context
from . import Outcome, check

THRESHOLD = 0.70
MAX_EPOCHS = 10
Z95 = 1.959964


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% confidence interval of an accuracy measured on n images (Wilson score)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


_REPORTED = re.compile(r"Got\s+(\d+)\s*/\s*(\d+)\s+correct")
_PERCENT = re.compile(r"(?:val\w*|accuracy)[^\n%]*?(\d{1,3}(?:\.\d+)?)\s*%", re.I)


def _q7_cells(ctx: Context) -> list:
    """The cells that answer Question 7, less the one that evaluates on the test set."""
    return [c for c in ctx.session.submission.cells if "Q7" in c.questions and "loader_test" not in c.source]


def _describe(ctx: Context) -> dict:
    """What the worker finds as the Question 7 model (asked once per submission)."""
    if "q7_describe" not in ctx.shared:
        ctx.shared["q7_describe"] = ctx.probe("q7_describe")
    return ctx.shared["q7_describe"]


def self_reported_accuracy(ctx: Context) -> float | None:
    """The last validation accuracy the notebook printed in its Question 7 cells (saved
    outputs), if any; the test-set cell is left out."""
    found = None
    for cell in _q7_cells(ctx):
        if not cell.outputs_text:
            continue
        for match in _REPORTED.finditer(cell.outputs_text):
            correct, total = int(match[1]), int(match[2])
            if total:
                found = correct / total
        if found is None:
            for match in _PERCENT.finditer(cell.outputs_text):
                found = float(match[1]) / 100
    return found


def _splits(ctx: Context) -> dict:
    data = ctx.data
    train_idx, val_idx = data.split()
    return {
        "train_idx": train_idx,
        "val_images": data.train_images[val_idx],
        "val_labels": data.train_labels[val_idx],
        "test_images": data.test_images,
        "test_labels": data.test_labels,
    }


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> dict:
    correct = int((predictions == labels).sum())
    lo, hi = wilson_interval(correct, len(labels))
    return {"accuracy": correct / len(labels), "ci": [lo, hi], "images": len(labels)}


def evaluation(ctx: Context) -> dict:
    """Measure the Question 7 model once (by checkpoint or by retraining); cached."""
    if "challenge" in ctx.shared:
        return ctx.shared["challenge"]
    found = _describe(ctx)
    if not found["found"]:
        raise CheckFailed(found["reason"])

    splits = _splits(ctx)
    images = torch.cat([splits["val_images"], splits["test_images"]])
    result: dict = {
        "model_type": found["model"]["type"],
        "parameters": found["parameters"],
        "trained_with": found["trained_with"],
        "epochs_requested": found["epochs"],
        "threshold": THRESHOLD,
        "ci_level": 0.95,
        "ci_method": "Wilson score interval",
        "self_reported": self_reported_accuracy(ctx),
    }
    ctx.shared["challenge"] = result
    picked = pick_checkpoint(ctx.session.submission.files)
    if picked is not None:
        name, raw = picked
        info = inspect_checkpoint(name, raw)
        result.update(mode="checkpoint", checkpoint=name, checkpoint_format=info.format)
        if not info.safe:
            result["problem"] = info.problem
            return result
        args = (
            {"state": info.state}
            if info.state is not None
            else {"checkpoint": torch.frombuffer(bytearray(raw), dtype=torch.uint8)}
        )
        out = ctx.probe("q7_predict", images=images, **args)
    else:
        result["mode"] = "retrain"
        out = _retrain(ctx, splits, result)
        if out is None:
            return result
        out = ctx.probe("q7_predict", images=images, handle="q7-retrained")
    if out.get("load") and not out["load"]["loaded"]:
        load = out["load"]
        parts = []
        for key, label in (
            ("missing", "missing keys"),
            ("unexpected", "unexpected keys"),
            ("mismatched", "shape mismatches"),
        ):
            if load[key]:
                shown = ", ".join(load[key][:6]) + (f" and {len(load[key]) - 6} more" if len(load[key]) > 6 else "")
                parts.append(f"{label}: {shown}")
        result["problem"] = "the checkpoint does not fit the model defined in the notebook (" + "; ".join(parts) + ")"
        return result
    n_val = len(splits["val_labels"])
    preds = out["predictions"]
    val, test = _accuracy(preds[:n_val], splits["val_labels"]), _accuracy(preds[n_val:], splits["test_labels"])
    result.update(
        val_accuracy=val["accuracy"],
        val_ci=val["ci"],
        val_images=val["images"],
        test_accuracy=test["accuracy"],
        test_ci=test["ci"],
        test_images=test["images"],
        margin=val["accuracy"] - THRESHOLD,
        eval_seconds=out.get("seconds"),
    )
    claim = result["self_reported"]
    result["flagged"] = claim is not None and claim > val["ci"][1]
    return result


def _retrain(ctx: Context, splits: dict, result: dict) -> dict | None:
    data = ctx.data
    train_idx = splits["train_idx"]
    gen = torch.Generator().manual_seed(0)
    holdout = train_idx[torch.randperm(len(train_idx), generator=gen)[:1000]]
    cells = [
        {"index": c.index, "source": c.source, "question": "Q7", "line_offset": c.line_offset} for c in _q7_cells(ctx)
    ]
    budget = ctx.session.limits.train_seconds
    started = time.monotonic()
    out = ctx.probe(
        "q7_retrain",
        timeout=budget + 300,
        images=data.train_images[train_idx],
        labels=data.train_labels[train_idx],
        holdout_images=data.train_images[holdout],
        holdout_labels=data.train_labels[holdout],
        eval_images=splits["val_images"],
        max_epochs=MAX_EPOCHS,
        budget=budget,
        cells=cells,
    )
    ctx.retrain_seconds += time.monotonic() - started
    history_acc = [float((p == splits["val_labels"]).double().mean()) for p in out["epoch_predictions"]]
    result.update(
        retrain_mode=out["mode"],
        stopped=out["stopped"],
        over_budget=out["stopped"] == "budget",
        epochs=round(out["epochs_completed"], 2),
        train_seconds=out["train_seconds"],
        history={
            "epoch": list(range(1, len(history_acc) + 1)),
            "train_loss": out["train_loss"],
            "val_acc": history_acc,
            "seconds": out["epoch_seconds"],
        },
    )
    if out["error"]:
        result["training_error"] = f"{out['error']['type']}: {out['error']['message']}{ctx.where(out['error'])}"
    if not out["ready"]:
        result["problem"] = "retraining produced no model" + (
            f": {result['training_error']}" if "training_error" in result else ""
        )
        return None
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


@check("Q7", "a model for the challenge is defined", timeout=30)
def model_found(ctx: Context) -> Outcome:
    found = _describe(ctx)
    if not found["found"]:
        return Outcome(False, found["reason"])
    return Outcome(
        True,
        f"best_model is a {found['model']['type']} with {found['parameters']:,} parameters, trained with {found['trained_with']}",
    )


@check("Q7", "weights: a safe checkpoint that fits the model, or a completed retrain", timeout=600)
def weights(ctx: Context) -> Outcome:
    result = evaluation(ctx)
    if result.get("problem"):
        return Outcome(False, result["problem"], details={"checkpoint": result.get("checkpoint")})
    if result["mode"] == "checkpoint":
        return Outcome(True, f"{result['checkpoint']} holds only tensors and fits {result['model_type']}")
    stopped = result.get("stopped")
    if stopped == "budget":
        return Outcome(
            False,
            f"retraining ran out of its {ctx.session.limits.train_seconds:g} s budget after {result['epochs']} epochs; the accuracy below is what it reached by then",
        )
    if result.get("training_error"):
        return Outcome(
            False, f"retraining stopped with an error after {result['epochs']} epochs: {result['training_error']}"
        )
    return Outcome(
        True,
        f"no checkpoint was submitted: the grader retrained the model with your code ({result['epochs']} epochs, {result['train_seconds']:.0f} s)",
    )


@check("Q7", "validation accuracy measured by the grader is at least 70%", timeout=600)
def validation_accuracy(ctx: Context) -> Outcome:
    result = evaluation(ctx)
    if "val_accuracy" not in result:
        raise CheckFailed("no accuracy could be measured: " + result.get("problem", "the model could not be evaluated"))
    lo, hi = result["val_ci"]
    text = (
        f"validation accuracy {_pct(result['val_accuracy'])} on {result['val_images']:,} images "
        f"(95% CI {_pct(lo)}-{_pct(hi)}; {'+' if result['margin'] >= 0 else ''}{100 * result['margin']:.1f} points from 70%); "
        f"test accuracy {_pct(result['test_accuracy'])}"
    )
    if result.get("self_reported") is not None:
        text += f"; the notebook reported {_pct(result['self_reported'])}"
    details = {k: result.get(k) for k in ("val_accuracy", "val_ci", "test_accuracy", "test_ci", "margin", "mode")}
    return Outcome(result["val_accuracy"] >= THRESHOLD, text, details=details)


@check("Q7", "training rules: at most 10 epochs, reported accuracy consistent", timeout=600)
def training_rules(ctx: Context) -> Outcome:
    result = evaluation(ctx)
    problems, notes = [], []
    requested = result.get("epochs_requested") or []
    if sum(requested) > MAX_EPOCHS:
        problems.append(f"the notebook trains for {sum(requested)} epochs with train_part34; the limit is {MAX_EPOCHS}")
    if result.get("stopped") == "epochs":
        problems.append(f"retraining was stopped at the {MAX_EPOCHS}-epoch limit; the code asks for more")
    if result["mode"] == "checkpoint" and not requested:
        notes.append("the epoch count of your own training loop cannot be verified from a checkpoint")
    if result.get("flagged"):
        problems.append(
            f"the notebook reported {_pct(result['self_reported'])} validation accuracy, above the grader's measurement "
            f"({_pct(result['val_accuracy'])}, 95% CI up to {_pct(result['val_ci'][1])}): flagged for the instructor"
        )
    if problems:
        return Outcome(False, "; ".join(problems + notes))
    return Outcome(True, "; ".join(["within the rules", *notes]))
