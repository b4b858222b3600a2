"""The answer key for the CIFAR-10 PyTorch homework, Parts I to IV (Questions 1 to 6).

Everything a student receives is generated from this module and from ``challenge.py``
(Question 7) by ``grade assign``: the code between ``# BEGIN SOLUTION Qn`` and
``# END SOLUTION`` is each question's answer, and it is written here and nowhere else.
The student template gets a placeholder in its place; the filled example gets it verbatim.

Conventions of the assignment (the CS231n-style PyTorch notebook): images are float32,
normalised, NCHW 3x32x32; batches of 64; ten classes; fully connected weights of the
barebones part are stored (in_features, out_features) so that ``x.mm(w)`` applies them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

USE_GPU = True
dtype = torch.float32  # the dtype every tensor of the assignment is created with
device = torch.device("cuda" if USE_GPU and torch.cuda.is_available() else "cpu")
print_every = 100  # how often (in iterations) the training loops report progress

# The training helpers read their data from these globals, as the notebook does.
# ``use_loaders`` sets them when this module is used as a library.
loader_train = None
loader_val = None


def use_loaders(train, val) -> None:
    """Point ``train_part2`` and ``train_part34`` at these loaders (any iterable of (x, y))."""
    global loader_train, loader_val
    loader_train, loader_val = train, val


# ----------------------------------------------------------------------------------------
# Part II: barebones PyTorch
# ----------------------------------------------------------------------------------------


def flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten every dimension but the first: (N, d1, ..., dk) -> (N, d1 * ... * dk)."""
    N = x.shape[0]  # read the batch size from the input: never assume 64
    return x.view(N, -1)


def two_layer_fc(x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """A two-layer fully connected ReLU network without biases.

    ``params = [w1, w2]`` with w1 of shape (D, H) and w2 of shape (H, C), where D is the
    number of input features after flattening. Returns scores of shape (N, C).
    """
    x = flatten(x)
    w1, w2 = params
    x = F.relu(x.mm(w1))
    return x.mm(w2)


def three_layer_convnet(x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Forward pass of a three-layer ConvNet: conv 5x5 (padding 2) -> ReLU ->
    conv 3x3 (padding 1) -> ReLU -> fully connected layer producing class scores.

    Inputs:
    - x: a batch of images, shape (N, 3, H, W).
    - params: [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b] with
      conv_w1 (channel_1, 3, 5, 5), conv_b1 (channel_1,),
      conv_w2 (channel_2, channel_1, 3, 3), conv_b2 (channel_2,),
      fc_w (channel_2 * H * W, num_classes), fc_b (num_classes,).

    Returns the scores, shape (N, num_classes). The paddings keep H and W unchanged.
    """
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    scores = None
    # BEGIN SOLUTION Q1
    x = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
    x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))
    scores = flatten(x).mm(fc_w) + fc_b
    # END SOLUTION
    return scores


def random_weight(shape: tuple[int, ...]) -> torch.Tensor:
    """A weight tensor drawn with Kaiming normal initialisation, std = sqrt(2 / fan_in).

    fan_in is shape[0] for a 2-D (fully connected) weight, because this assignment stores
    those as (in_features, out_features); for a conv weight (out, in, kH, kW) it is
    in * kH * kW. The tensor uses the module's ``dtype`` and ``device`` and requires grad.
    """
    fan_in = shape[0] if len(shape) == 2 else math.prod(shape[1:])
    w = torch.randn(shape, device=device, dtype=dtype) * math.sqrt(2.0 / fan_in)
    w.requires_grad = True
    return w


def zero_weight(shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of zeros (for biases) with the module's dtype and device; requires grad."""
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)


def check_accuracy_part2(loader, model_fn, params: list[torch.Tensor]) -> float:
    """Accuracy of the functional model ``model_fn(x, params)`` over ``loader``.

    Prints the result as the notebook always has, and returns it as a fraction in [0, 1].
    """
    split = "val" if loader.dataset.train else "test"
    print(f"Checking accuracy on the {split} set")
    num_correct, num_samples = 0, 0
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.int64)
            scores = model_fn(x, params)
            num_correct += (scores.argmax(dim=1) == y).sum().item()
            num_samples += x.shape[0]
    acc = num_correct / num_samples
    print("Got %d / %d correct (%.2f%%)" % (num_correct, num_samples, 100 * acc))
    return acc


def train_part2(model_fn, params: list[torch.Tensor], learning_rate: float) -> dict:
    """Train ``model_fn`` for one epoch over ``loader_train`` with plain gradient descent.

    Each step computes the cross-entropy loss, backpropagates, then updates every
    parameter in place as ``w -= learning_rate * w.grad`` and zeroes its gradient.
    Returns the history: ``{"iteration": [...], "loss": [...], "val_acc": [...]}``,
    recorded every ``print_every`` iterations.
    """
    history = {"iteration": [], "loss": [], "val_acc": []}
    for t, (x, y) in enumerate(loader_train):
        x = x.to(device=device, dtype=dtype)
        y = y.to(device=device, dtype=torch.long)
        scores = model_fn(x, params)
        loss = F.cross_entropy(scores, y)
        loss.backward()
        with torch.no_grad():
            for w in params:
                w -= learning_rate * w.grad
                w.grad.zero_()
        if t % print_every == 0:
            print("Iteration %d, loss = %.4f" % (t, loss.item()))
            history["iteration"].append(t)
            history["loss"].append(loss.item())
            history["val_acc"].append(check_accuracy_part2(loader_val, model_fn, params))
            print()
    return history


def barebones_convnet_params(channel_1: int = 32, channel_2: int = 16) -> list[torch.Tensor]:
    """Question 2: the parameters of ``three_layer_convnet`` for 3x32x32 inputs and ten
    classes: Kaiming-initialised weights (``random_weight``) and zero biases
    (``zero_weight``). Trained with learning rate 3e-3."""
    conv_w1 = conv_b1 = conv_w2 = conv_b2 = fc_w = fc_b = None
    # BEGIN SOLUTION Q2
    conv_w1 = random_weight((channel_1, 3, 5, 5))
    conv_b1 = zero_weight((channel_1,))
    conv_w2 = random_weight((channel_2, channel_1, 3, 3))
    conv_b2 = zero_weight((channel_2,))
    fc_w = random_weight((channel_2 * 32 * 32, 10))
    fc_b = zero_weight((10,))
    # END SOLUTION
    return [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b]


BAREBONES_LEARNING_RATE = 3e-3

# ----------------------------------------------------------------------------------------
# Part III: the nn.Module API
# ----------------------------------------------------------------------------------------


class TwoLayerFC(nn.Module):
    """Two fully connected layers with a ReLU between them, Kaiming-initialised."""

    def __init__(self, input_size: int, hidden_size: int, num_classes: int):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        nn.init.kaiming_normal_(self.fc1.weight)
        self.fc2 = nn.Linear(hidden_size, num_classes)
        nn.init.kaiming_normal_(self.fc2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = flatten(x)
        return self.fc2(F.relu(self.fc1(x)))


class ThreeLayerConvNet(nn.Module):
    """conv 5x5 (padding 2) -> ReLU -> conv 3x3 (padding 1) -> ReLU -> fully connected,
    for 32x32 inputs, as attributes ``conv1``, ``conv2`` and ``fc``.

    Question 3 (constructor): the layers, with Kaiming-normal weights
    (``nn.init.kaiming_normal_``) and zero biases. Question 4: the forward pass.
    """

    def __init__(self, in_channel: int, channel_1: int, channel_2: int, num_classes: int):
        super().__init__()
        # BEGIN SOLUTION Q3
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = None
        # BEGIN SOLUTION Q4
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        scores = self.fc(flatten(x))
        # END SOLUTION
        return scores


def check_accuracy_part34(loader, model: nn.Module) -> float:
    """Accuracy of ``model`` over ``loader``, measured in eval mode without gradients.

    Prints the result as the notebook always has, and returns it as a fraction in [0, 1].
    """
    if loader.dataset.train:
        print("Checking accuracy on validation set")
    else:
        print("Checking accuracy on test set")
    num_correct, num_samples = 0, 0
    model.eval()  # dropout and batch norm behave as at test time
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.long)
            scores = model(x)
            num_correct += (scores.argmax(dim=1) == y).sum().item()
            num_samples += x.shape[0]
    acc = num_correct / num_samples
    print("Got %d / %d correct (%.2f)" % (num_correct, num_samples, 100 * acc))
    return acc


def train_part34(model: nn.Module, optimizer: optim.Optimizer, epochs: int = 1) -> dict:
    """Train ``model`` with ``optimizer`` on ``loader_train`` for ``epochs`` epochs.

    Every step puts the model back in training mode (the accuracy check switches it to
    eval mode), zeroes the gradients, and takes one optimizer step on the cross-entropy
    loss. Returns the history: ``{"iteration": [...], "loss": [...], "val_acc": [...]}``.
    """
    model = model.to(device=device)
    history = {"iteration": [], "loss": [], "val_acc": []}
    iteration = 0
    for _ in range(epochs):
        for t, (x, y) in enumerate(loader_train):
            model.train()
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.long)
            scores = model(x)
            loss = F.cross_entropy(scores, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if t % print_every == 0:
                print("Iteration %d, loss = %.4f" % (t, loss.item()))
                history["iteration"].append(iteration)
                history["loss"].append(loss.item())
                history["val_acc"].append(check_accuracy_part34(loader_val, model))
                print()
            iteration += 1
    return history


def module_convnet_and_optimizer(
    learning_rate: float = 3e-3, channel_1: int = 32, channel_2: int = 16
) -> tuple[nn.Module, optim.Optimizer]:
    """Question 5: a ThreeLayerConvNet(3, 32, 16, 10) and plain SGD (lr 3e-3, no momentum)."""
    model = None
    optimizer = None
    # BEGIN SOLUTION Q5
    model = ThreeLayerConvNet(in_channel=3, channel_1=channel_1, channel_2=channel_2, num_classes=10)
    optimizer = optim.SGD(model.parameters(), lr=learning_rate)
    # END SOLUTION
    return model, optimizer


# ----------------------------------------------------------------------------------------
# Part IV: the nn.Sequential API
# ----------------------------------------------------------------------------------------


class Flatten(nn.Module):
    """``flatten`` as a module, so it can sit inside ``nn.Sequential``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x)


def sequential_two_layer_and_optimizer(
    hidden_layer_size: int = 4000, learning_rate: float = 1e-2
) -> tuple[nn.Module, optim.Optimizer]:
    """The worked example of Part IV: a two-layer network as ``nn.Sequential``, trained
    with SGD, momentum 0.9 and Nesterov."""
    model = nn.Sequential(
        Flatten(),
        nn.Linear(3 * 32 * 32, hidden_layer_size),
        nn.ReLU(),
        nn.Linear(hidden_layer_size, 10),
    )
    optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)
    return model, optimizer


def sequential_convnet_and_optimizer(
    learning_rate: float = 1e-2,
    channel_1: int = 32,
    channel_2: int = 16,
    momentum: float = 0.9,
    nesterov: bool = True,
) -> tuple[nn.Module, optim.Optimizer]:
    """Question 6: the three-layer ConvNet of Part III as ``nn.Sequential`` (conv 5x5 pad 2,
    ReLU, conv 3x3 pad 1, ReLU, Flatten, Linear), with SGD lr 1e-2, momentum 0.9, Nesterov
    (the defaults: the standard homework's values; a variant passes its own)."""
    model = None
    optimizer = None
    # BEGIN SOLUTION Q6
    model = nn.Sequential(
        nn.Conv2d(3, channel_1, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),
        nn.ReLU(),
        Flatten(),
        nn.Linear(channel_2 * 32 * 32, 10),
    )
    optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, nesterov=nesterov)
    # END SOLUTION
    return model, optimizer
