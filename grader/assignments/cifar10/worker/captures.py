"""What each question of the CIFAR-10 homework hands to training, as the worker records it.

The notebook's training helpers (``train_part2``, ``train_part34``) are replaced by
recording stand-ins, so grading captures what each question hands to training instead of
training it; these rules then say which capture answers which question. The runtime calls
``stand_ins``, ``meaning``, ``cell_end`` and ``captures_for`` (see ``Runtime``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from grader.worker.runtime import Capture, Runtime

# Helpers of the homework that students receive as provided code. When a cell defines
# one of these, the student's version is kept aside (probes test it) and the name is
# rebound to a recording stand-in so later cells do not train anything.
TRAINING_HELPERS = ("train_part2", "train_part34")
# Names of the Q2 parameters, in the order ``params`` lists them.
Q2_PARAM_NAMES = ("conv_w1", "conv_b1", "conv_w2", "conv_b2", "fc_w", "fc_b")
# The challenge: a run of this many epochs or more is Question 7, not Question 5 or 6.
CHALLENGE_EPOCHS = 5


def stand_ins(rt: Runtime) -> dict[str, Any]:
    """The recording versions of TRAINING_HELPERS, which capture instead of training."""

    def recording_train_part2(model_fn, params, learning_rate, *args, **kwargs):
        rt.capture(
            "train_part2",
            {"model_fn": model_fn, "params": list(params), "learning_rate": learning_rate},
        )
        return {"iteration": [], "loss": [], "val_acc": []}

    def recording_train_part34(model, optimizer, epochs=1, *args, **kwargs):
        rt.capture(
            "train_part34",
            {"model": model, "optimizer": optimizer, "epochs": epochs, "model_id": id(model)},
            snapshot=True,
        )
        return {"iteration": [], "loss": [], "val_acc": []}

    return {"train_part2": recording_train_part2, "train_part34": recording_train_part34}


def meaning(rt: Runtime, kind: str, objects: dict) -> str | None:
    """What the objects handed to training are, read from the objects themselves:
    "Q2" (three_layer_convnet's parameters), "Q5" (a ThreeLayerConvNet), "sequential"
    (an nn.Sequential with convolutions), "example" (the notebook's own two-layer
    demonstrations, never graded) or "other"."""
    if kind == "train_part2":
        fn = objects.get("model_fn")
        name = getattr(fn, "__name__", None)
        if fn is rt.ns.get("three_layer_convnet") or name == "three_layer_convnet":
            return "Q2"
        return "example" if name == "two_layer_fc" else None
    model = objects.get("model")
    if not isinstance(model, torch.nn.Module):
        return None
    cls = rt.ns.get("ThreeLayerConvNet")
    if (isinstance(cls, type) and isinstance(model, cls)) or type(model).__name__ == "ThreeLayerConvNet":
        return "Q5"
    layers = list(model.modules())
    if isinstance(model, torch.nn.Sequential) and any(isinstance(m, torch.nn.Conv2d) for m in layers):
        return "sequential"
    if type(model).__name__ == "TwoLayerFC" or (
        isinstance(model, torch.nn.Sequential) and not any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in layers)
    ):
        return "example"
    return "other"


def cell_end(rt: Runtime, question: str, fresh: set[str]) -> tuple[dict, bool] | None:
    """A question cell that never called a training helper: what it defined (``fresh``
    names its new or rebound globals) to keep as the question's answer, and whether to
    snapshot it; None when it defined nothing the question grades."""
    if question == "Q2":
        params = rt.ns.get("params")
        if not isinstance(params, (list, tuple)):
            params = [rt.ns.get(n) for n in Q2_PARAM_NAMES]
        if not fresh & {"params", "learning_rate", *Q2_PARAM_NAMES}:
            return None
        return {"params": list(params), "learning_rate": rt.ns.get("learning_rate")}, False
    if question in ("Q5", "Q6", "Q7"):
        if not fresh & {"model", "optimizer", "best_model"}:
            return None
        model = rt.ns.get("model")
        if question == "Q7" and isinstance(rt.ns.get("best_model"), torch.nn.Module):
            model = rt.ns["best_model"]
        return {"model": model, "optimizer": rt.ns.get("optimizer")}, True
    return None


def _is_best_model(rt: Runtime, capture: Capture) -> bool:
    best = rt.ns.get("best_model")
    return isinstance(best, torch.nn.Module) and capture.model_ref is not None and capture.model_ref() is best


def captures_for(rt: Runtime, question: str) -> list[Capture]:
    """Every capture that answers ``question``, in the order recorded (the last one
    counts), found by meaning first, whatever the layout: Q2 is the
    ``train_part2(three_layer_convnet, ...)`` call; Q5 a ``train_part34`` call given a
    ThreeLayerConvNet; Q6 one given an nn.Sequential of convolutions; Q7 the model
    that ends up as ``best_model``, else the last model trained that is none of these.
    Cell labels are the fallback (a Q5 answer with a class of another name, say), and
    a model kept as ``best_model`` or trained in a Question 7 cell is never Q5 or Q6."""
    trained = [c for c in rt.captures if c.kind != "cell_end"]
    labelled = [c for c in rt.captures if c.question == question]
    if question != "Q2":  # a cell that failed before building its model answered nothing
        labelled = [c for c in labelled if isinstance(c.objects.get("model"), torch.nn.Module)]
    if question == "Q7":
        found = [c for c in trained if _is_best_model(rt, c)]
        found = found or [c for c in labelled if c.kind != "cell_end"]
        if not found and not isinstance(rt.ns.get("best_model"), torch.nn.Module):
            found = [c for c in trained if c.meaning == "other"][-1:]
        return found or labelled
    meaning = {"Q2": "Q2", "Q5": "Q5", "Q6": "sequential"}.get(question)
    found = [
        c
        for c in trained
        if meaning and c.meaning == meaning and c.cell_questions != ("Q7",) and not _is_best_model(rt, c)
    ]
    # A run of 5 epochs or more is the Question 7 challenge (with best_model unset, or
    # not run at all), not the one-epoch runs Questions 5 and 6 ask for.
    short = [
        c for c in found if not (isinstance(c.objects.get("epochs"), int) and c.objects["epochs"] >= CHALLENGE_EPOCHS)
    ]
    if short or found:
        return short or found
    return [c for c in labelled if c.meaning != "example" and not _is_best_model(rt, c)]
