"""The answer key of the CIFAR-10 PyTorch homework: every question implemented.

``from reference_solution import NAME`` works for every function, class and answer of
the assignment. The grader imports this package only on its trusted side; student
workers cannot see it.
"""

from .assignment import (
    BAREBONES_LEARNING_RATE,
    Flatten,
    ThreeLayerConvNet,
    TwoLayerFC,
    barebones_convnet_params,
    check_accuracy_part2,
    check_accuracy_part34,
    flatten,
    module_convnet_and_optimizer,
    random_weight,
    sequential_convnet_and_optimizer,
    sequential_two_layer_and_optimizer,
    three_layer_convnet,
    train_part2,
    train_part34,
    two_layer_fc,
    use_loaders,
    zero_weight,
)
from .challenge import CHALLENGE_EPOCHS, ChallengeNet, evaluate, train_best_model, train_challenge

__all__ = [
    "BAREBONES_LEARNING_RATE",
    "CHALLENGE_EPOCHS",
    "ChallengeNet",
    "Flatten",
    "ThreeLayerConvNet",
    "TwoLayerFC",
    "barebones_convnet_params",
    "check_accuracy_part2",
    "check_accuracy_part34",
    "evaluate",
    "flatten",
    "module_convnet_and_optimizer",
    "random_weight",
    "sequential_convnet_and_optimizer",
    "sequential_two_layer_and_optimizer",
    "three_layer_convnet",
    "train_best_model",
    "train_challenge",
    "train_part2",
    "train_part34",
    "two_layer_fc",
    "use_loaders",
    "zero_weight",
]
