"""The CIFAR-10 PyTorch homework, defined in one place.

Here: its questions, which one is the challenge, and the names of the modules holding
the rest: the checks (``checks/``, trusted side), the cell classifier (``cells.py``),
the worker side (``worker/``: training stand-ins, capture rules and the homework's
probes), the answer key (``reference_solution``), the rubric and the template beside
this file. This module is plain data: the student worker imports it (to reach
``worker/``), so it must never import the checks or the answer key.
"""

from __future__ import annotations

from pathlib import Path

from ...assignment import Assignment

ASSIGNMENT = Assignment(
    name="cifar10",
    title="PyTorch on CIFAR-10",
    questions=("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7"),
    challenge="Q7",
    folder=Path(__file__).parent,
    check_modules=tuple(f"{__name__}.checks.{m}" for m in ("barebones", "module_api", "sequential", "challenge")),
    answer_key="reference_solution",
    worker_module=f"{__name__}.worker",
    classifier_module=f"{__name__}.cells",
    variants_module=f"{__name__}.checks.spec",
    missing_capture={
        "Q2": "train_part2(three_layer_convnet, params, learning_rate) was never called",
        "Q5": "train_part34(model, optimizer) was never called with a ThreeLayerConvNet model",
        "Q6": "train_part34(model, optimizer) was never called with an nn.Sequential of convolutions",
        "Q7": "no model was handed to training for Question 7 and best_model is not a model",
    },
    placeholders={
        "Q1": "implement the forward pass of three_layer_convnet",
        "Q2": "create conv_w1, conv_b1, conv_w2, conv_b2, fc_w and fc_b",
        "Q3": "create conv1, conv2 and fc with Kaiming-normal weights",
        "Q4": "implement ThreeLayerConvNet.forward",
        "Q5": "create model and optimizer",
        "Q6": "create model and optimizer with nn.Sequential",
        "Q7": "design, train and assign best_model",
    },
    # Question 7 is the one open-ended answer: a copy of it says far more than a copy
    # of a few lines every correct answer shares.
    similarity_weights={"Q7": 6.0},
    own_budget_probes=frozenset({"q7_retrain"}),
)
