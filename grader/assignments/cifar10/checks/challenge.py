"""Part V, the open-ended challenge: Question 7, measured by the grader itself.

The student's model (architecture from the notebook, weights from the submitted
checkpoint) predicts the grader's images in the worker; the labels stay here, where the
accuracies and their 95% confidence intervals are computed. Without a checkpoint, the
worker retrains the model with the student's own training code on the grader's 49,000
training images, at most 10 epochs (the variant's limit), within a time budget.

The accuracy that earns points measures generalisation, since CIFAR-10 and its labels are
public: it is judged on images the student's code did not train on (``evaluation_set``),
and a model whose accuracy collapses on slightly perturbed copies of those images (a
lookup table of public images, a memorised training set) earns no accuracy points and is
flagged for the instructor.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import torch

from grader import data as cifar
from grader.checkpoint import inspect_checkpoint, pick_checkpoint
from grader.checks import CheckFailed, Context, Outcome, check, probe_generator
from grader.details import measurement, of, values

from .spec import variant_of

Z95 = 1.959964
# Perturbed copies of this many evaluation images (class-balanced) are predicted too.
PERTURBED_IMAGES = 2000
# How much accuracy an honest model may lose on the perturbed copies. Measured with
# benchmarks/q7_generalisation.py (run seed 0; README, "How Question 7 is measured"): the typical
# 10-epoch student model loses 2.8 points, the reference 6.3 (2.6-3.8 and 6.3-7.7 over
# three seeds); a lookup table of the public images loses 90. 20 points is well over twice the
# worst honest drop and far above the noise of a drop measured on 2,000 images (about 1 point).
PERTURBATION_TOLERANCE = 0.20


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


def _describe_runs(runs: list[list[int]]) -> str:
    shown = [f"{a:,}-{b - 1:,}" if b - a > 1 else f"{a:,}" for a, b in runs[:4]]
    return ", ".join(shown) + (f" and {len(runs) - 4} more ranges" if len(runs) > 4 else "")


def _trained_mask(runs: object, size: int) -> torch.Tensor | None:
    """The training images a loader's index runs cover (a claim from the worker, checked)."""
    if not isinstance(runs, list):
        return None
    mask = torch.zeros(size, dtype=torch.bool)
    for run in runs:
        if not (isinstance(run, list) and len(run) == 2 and all(isinstance(v, int) for v in run)):
            return None
        start, stop = run
        if not 0 <= start < stop <= size:
            return None
        mask[start:stop] = True
    return mask


def evaluation_set(data: cifar.CIFAR10, *, mode: str, training: dict) -> dict:
    """The images Question 7 is judged on: ones the student's code did not train on, with a
    sentence that says why. ``training`` is what the worker found about ``loader_train``.

    Retrained by the grader: the grader's own validation split. The project's template
    (``assignment_loaders``): the student's validation split, the same one. A torchvision
    subset (the CS231n layout trains on images 0..48,999): the rest of the training images,
    where the grader's copy is in the official order and that rest is class-balanced. Anything
    else, or class-sorted data where the rest would be one class: the test set, which no layout
    of the homework trains on.
    """
    test = {
        "images": data.test_images,
        "labels": data.test_labels,
        "name": "the test set",
        "short": "test set",
        "is_test_set": True,
    }
    source = training.get("source") if isinstance(training, dict) else None
    if mode == "retrain":
        _, val = data.split()
        return _training_images(
            data,
            val,
            f"the grader's validation split ({len(val):,} training images, 100 per class)",
            "validation split",
            "the grader retrained your model on the other training images",
        )
    num_val = training.get("num_val") if source == "grader split" else None
    if isinstance(num_val, int) and 0 < num_val <= 10_000 and num_val % len(cifar.CLASSES) == 0:
        _, val = data.split(num_val)
        return _training_images(
            data,
            val,
            f"your validation split ({len(val):,} training images that assignment_loaders holds out)",
            "validation split",
            "your loader_train trains on the other training images",
        )
    if source == "torchvision" and training.get("train") is False:
        _, val = data.split()
        return _training_images(
            data,
            val,
            f"the grader's validation split ({len(val):,} training images)",
            "validation split",
            "your loader_train draws the test set, so the test set cannot judge it",
        )
    mask = _trained_mask(training.get("runs"), len(data.train_labels)) if source == "torchvision" else None
    if mask is None:
        return {
            **test,
            "reason": "the grader could not tell which training images your code trains on, "
            "and no layout of the homework trains on the test set",
        }
    held = torch.nonzero(~mask).flatten()
    trained = _describe_runs(training["runs"])
    if len(held) == 0:
        return {**test, "reason": f"your loader_train draws every training image ({trained})"}
    slice_name = f"training images {_describe_runs(cifar.index_runs(held.tolist()) or [])}"
    if not data.in_canonical_order:
        return {
            **test,
            "reason": f"your loader_train trains on images {trained} of the official order; the grader's "
            "copy of CIFAR-10 is in another order (sorted by class), where your validation slice "
            f"({slice_name}) is not the images you held out",
        }
    if len(held) < 100 or not cifar.is_class_balanced(data.train_labels[held]):
        return {**test, "reason": f"your validation slice ({slice_name}) is too small or not class-balanced"}
    return _training_images(
        data,
        held,
        f"your validation slice ({slice_name})",
        "validation slice",
        f"your loader_train trains on training images {trained} only",
    )


def _training_images(data: cifar.CIFAR10, indices: torch.Tensor, name: str, short: str, reason: str) -> dict:
    """Some training images as the judged set, with what to call them and why."""
    return {
        "images": data.train_images[indices],
        "labels": data.train_labels[indices],
        "name": name,
        "short": short,
        "reason": reason,
    }


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> dict:
    correct = int((predictions == labels).sum())
    lo, hi = wilson_interval(correct, len(labels))
    return {"accuracy": correct / len(labels), "ci": [lo, hi], "images": len(labels)}


def _policy(threshold) -> dict:
    """The rubric's threshold policy, as recorded in the result."""
    return {"threshold": threshold.full_at, "threshold_policy": dataclasses.asdict(threshold)}


def evaluation(ctx: Context) -> dict:
    """Measure the Question 7 model once (by checkpoint or by retraining); cached."""
    if "challenge" in ctx.shared:
        return ctx.shared["challenge"]
    found = _describe(ctx)
    if not found["found"]:
        raise CheckFailed(found["reason"])

    # First, and before anything is cached: without the images every check that needs them
    # is skipped with the way to provide them (retraining could not run either).
    data = ctx.data
    if not ctx.retrain and pick_checkpoint(ctx.session.submission.files) is None:
        raise CheckFailed(
            "not checked: no checkpoint (best_model.pt) was found beside the notebook, and the self-check does not"
            " retrain Question 7 (that takes minutes; add --retrain to do it)",
            status="skipped",
        )
    threshold = ctx.rubric.threshold
    result: dict = {
        "model_type": found["model"]["type"],
        "parameters": found["parameters"],
        "unusual_state": found.get("unusual_state"),
        "trained_with": found["trained_with"],
        "epochs_requested": found["epochs"],
        **_policy(threshold),
        "ci_level": 0.95,
        "ci_method": "Wilson score interval",
        "self_reported": self_reported_accuracy(ctx),
    }
    ctx.shared["challenge"] = result
    picked = pick_checkpoint(ctx.session.submission.files)
    result["mode"] = "checkpoint" if picked is not None else "retrain"
    judged = evaluation_set(data, mode=result["mode"], training=found.get("training_data") or {})
    result["eval_set"] = {k: judged[k] for k in ("name", "short", "reason")} | {"images": len(judged["labels"])}
    # Perturbed copies of a class-balanced sample of the judged images, with secret parameters.
    gen = probe_generator(ctx.run_seed, "Q7.perturbations")
    sample = cifar.balanced_subset(judged["labels"], PERTURBED_IMAGES, generator=gen)
    perturbed = cifar.perturb(judged["images"][sample], generator=gen)
    judged_is_test = judged.get("is_test_set", False)
    parts = [judged["images"]] + ([] if judged_is_test else [data.test_images]) + [perturbed]
    images = torch.cat(parts)

    if picked is not None:
        name, raw = picked
        info = inspect_checkpoint(name, raw)
        result.update(checkpoint=name, checkpoint_format=info.format)
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
        out = _retrain(ctx, judged, result)
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
    preds = out["predictions"]
    if not isinstance(preds, torch.Tensor) or preds.shape != (len(images),):
        result["problem"] = "the model's predictions could not be read (one class per image was expected)"
        return result
    n_judged, n_test = len(judged["labels"]), 0 if judged_is_test else len(data.test_labels)
    val = _accuracy(preds[:n_judged], judged["labels"])
    test = val if judged_is_test else _accuracy(preds[n_judged : n_judged + n_test], data.test_labels)
    on_perturbed = preds[n_judged + n_test :]
    labels = judged["labels"][sample]
    clean = float((preds[:n_judged][sample] == labels).double().mean())
    shaken = float((on_perturbed == labels).double().mean())
    result.update(
        val_accuracy=val["accuracy"],
        val_ci=val["ci"],
        val_images=val["images"],
        test_accuracy=test["accuracy"],
        test_ci=test["ci"],
        test_images=test["images"],
        eval_seconds=out.get("seconds"),
        perturbed={
            "images": len(sample),
            "clean_accuracy": clean,
            "accuracy": shaken,
            "drop": clean - shaken,
            "tolerance": PERTURBATION_TOLERANCE,
            "collapsed": clean - shaken > PERTURBATION_TOLERANCE,
        },
    )
    result["memorisation_flag"] = result["perturbed"]["collapsed"]
    claim = result["self_reported"]
    result["flagged"] = claim is not None and claim > val["ci"][1]
    return result


def _retrain(ctx: Context, judged: dict, result: dict) -> dict | None:
    """Retrain on the grader's training images; ``judged`` is the validation split left out."""
    data = ctx.data
    train_idx, _ = data.split()
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
        eval_images=judged["images"],
        max_epochs=variant_of(ctx).q7.epochs,
        budget=budget,
        cells=cells,
    )
    ctx.retrain_seconds += time.monotonic() - started
    history_acc = [float((p == judged["labels"]).double().mean()) for p in out["epoch_predictions"]]
    result.update(
        retrain_mode=out["mode"],
        stopped=out["stopped"],
        over_budget=out["stopped"] == "budget",
        epochs=round(out["epochs_completed"], 2),
        train_seconds=out["train_seconds"],
        device=out.get("device") if isinstance(out.get("device"), str) else None,
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
    text = f"best_model is a {found['model']['type']} with {found['parameters']:,} parameters, trained with {found['trained_with']}"
    unusual = found.get("unusual_state") or {}
    extra = int(unusual.get("buffer_elements", 0)) + int(unusual.get("attribute_elements", 0))
    if extra:
        names = ", ".join(str(n) for n in unusual.get("names", []))
        text += f"; it also keeps {extra:,} values of state that ordinary layers do not use ({names})"
    return Outcome(True, text, details=of(values(unusual_state=unusual)))


@check("Q7", "weights: a safe checkpoint that fits the model, or a completed retrain", timeout=600)
def weights(ctx: Context) -> Outcome:
    result = evaluation(ctx)
    if result.get("problem"):
        return Outcome(False, result["problem"], details=of(values(checkpoint=result.get("checkpoint"))))
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
        f"no checkpoint was submitted: the grader retrained the model with your code ({result['epochs']} epochs, {result['train_seconds']:.0f} s"
        + (f" on {'the GPU' if result.get('device') == 'cuda' else 'the CPU'})" if result.get("device") else ")"),
    )


@check(
    "Q7", "accuracy on images your code did not train on reaches the threshold ({q7_threshold} by default)", timeout=600
)
def validation_accuracy(ctx: Context) -> Outcome:
    result = evaluation(ctx)
    if "val_accuracy" not in result:
        raise CheckFailed("no accuracy could be measured: " + result.get("problem", "the model could not be evaluated"))
    threshold = ctx.rubric.threshold
    lo, hi = result["val_ci"]
    result.update(_policy(threshold), margin=result["val_accuracy"] - threshold.full_at)
    result["near_threshold"] = threshold.straddle == "flag" and lo < threshold.full_at <= hi
    judged, shaken = result["eval_set"], result["perturbed"]
    line = _pct(threshold.full_at)
    text = (
        f"accuracy {_pct(result['val_accuracy'])} on {judged['name']}, chosen because {judged['reason']} "
        f"(95% CI {_pct(lo)}-{_pct(hi)}; {'+' if result['margin'] >= 0 else ''}{100 * result['margin']:.1f} points from {line})"
    )
    if judged["short"] != "test set":
        text += f"; test accuracy {_pct(result['test_accuracy'])}"
    text += (
        f"; {_pct(shaken['accuracy'])} on {shaken['images']:,} of them shifted, mirrored, re-encoded or with mild noise "
        f"({_pct(shaken['clean_accuracy'])} on the same images unchanged)"
    )
    if result.get("self_reported") is not None:
        text += f"; the notebook reported {_pct(result['self_reported'])}"
    details = of(measurement(result))
    if shaken["collapsed"]:
        return Outcome(
            False,
            f"no accuracy credit: the accuracy falls by {100 * shaken['drop']:.0f} points on slightly perturbed images, "
            f"where an ordinary ConvNet loses under {100 * PERTURBATION_TOLERANCE:.0f}: the model recognises the exact "
            f"pixels of images rather than what they show (memorised or looked up); flagged for the instructor. {text}",
            fraction=0.0,
            details=details,
        )
    fraction = threshold.fraction(result["val_accuracy"])
    if threshold.policy == "ramp" and 0 < fraction < 1:
        text += f"; {100 * fraction:.0f}% of the points on the ramp from {_pct(threshold.zero_at)} to {line}"
    if result.get("near_threshold"):
        text += f"; the confidence interval straddles {line}: flagged for a look"
    return Outcome(result["val_accuracy"] >= threshold.full_at, text, fraction=fraction, details=details)


@check("Q7", "training rules: at most {q7_epochs} epochs, reported accuracy consistent", timeout=600)
def training_rules(ctx: Context) -> Outcome:
    result = evaluation(ctx)
    problems, notes = [], []
    limit = variant_of(ctx).q7.epochs
    requested = result.get("epochs_requested") or []
    if sum(requested) > limit:
        problems.append(f"the notebook trains for {sum(requested)} epochs with train_part34; the limit is {limit}")
    if result.get("stopped") == "epochs":
        problems.append(f"retraining was stopped at the {limit}-epoch limit; the code asks for more")
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
