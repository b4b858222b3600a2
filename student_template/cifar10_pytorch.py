# %% [markdown]
# # CIFAR-10 with PyTorch
#
# In this assignment you build image classifiers for CIFAR-10 (32x32 colour images in
# ten classes) three ways: with raw tensors and autograd (Part II), with `nn.Module`
# (Part III) and with `nn.Sequential` (Part IV). In Part V you design your own network
# and must reach **at least 70% validation accuracy within 10 epochs**.
#
# Your answers go between the `# >>> Question N` and `# <<< Question N` lines. Do not
# remove those lines or rename the functions and variables the cells define: the grader
# uses them to find your answers. It grades your code, not your printed output.
#
# **Check your work before you submit.** From a terminal:
#
#     grade --self-check cifar10_pytorch.ipynb
#
# or, from a cell at the end of this notebook, `from grader import self_check; self_check()`.
# The self-check runs the public checks in seconds and says what to fix. Hidden checks
# (numerical agreement with a reference on secret inputs, short training runs) are run
# when your submission is graded, so "all public checks passed" is not yet full marks.

# %% [markdown]
# ## Part I. Setup
#
# `dtype` and `device` are used by every part. The grader runs your code on the CPU.

# %% {"autograder": {"role": "setup"}}
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

USE_GPU = True
dtype = torch.float32
device = torch.device("cuda" if USE_GPU and torch.cuda.is_available() else "cpu")
print_every = 100
print("using device:", device)

# %% [markdown]
# ### Data
#
# The data layer reads CIFAR-10 once, keeps it as tensors and serves batches of 64
# normalised images. `loader_train` holds 49,000 training images, `loader_val` 1,000
# validation images drawn from the training set (100 per class), `loader_test` the
# 10,000 test images. Set `DATA` to a `cifar-10-batches-py` folder, a class-folder
# tree or a `.tar.gz` of either, or set `DOWNLOAD = True` where you have internet.
# For Part V, `TensorLoader`, `flip_crop` (batched random flips and shifts) and
# `normalize` let you build your own loaders with data augmentation.

# %% {"autograder": {"role": "data"}}
from grader.data import TensorLoader, assignment_loaders, flip_crop, load_cifar10, normalize

DATA = None
DOWNLOAD = False
NUM_TRAIN = 49000
cifar10 = load_cifar10(DATA, download=DOWNLOAD)
loaders = assignment_loaders(cifar10, batch_size=64, dtype=dtype, device=device)
loader_train, loader_val, loader_test = loaders.train, loaders.val, loaders.test

# %% [markdown]
# ## Part II. Barebones PyTorch
#
# Here a network is a plain function of an input batch and a list of parameter tensors,
# and autograd computes the gradients. First, a helper that turns a batch of images
# (N, C, H, W) into a matrix (N, C*H*W), so a fully connected layer can follow a
# convolution.

# %%
def flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten every dimension but the first: (N, d1, ..., dk) -> (N, d1 * ... * dk)."""
    N = x.shape[0]  # read the batch size from the input: never assume 64
    return x.view(N, -1)


def test_flatten():
    x = torch.arange(12).view(2, 1, 3, 2)
    print("Before flattening: ", x)
    print("After flattening: ", flatten(x))


test_flatten()

# %% [markdown]
# A two-layer fully connected network, as an example of the barebones style: the
# weights are stored (in_features, out_features), so `x.mm(w)` applies a layer.

# %%
def two_layer_fc(x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """A two-layer fully connected ReLU network without biases.

    ``params = [w1, w2]`` with w1 of shape (D, H) and w2 of shape (H, C), where D is the
    number of input features after flattening. Returns scores of shape (N, C).
    """
    x = flatten(x)
    w1, w2 = params
    x = F.relu(x.mm(w1))
    return x.mm(w2)


def two_layer_fc_test():
    hidden_layer_size = 42
    x = torch.zeros((64, 50), dtype=dtype)
    w1 = torch.zeros((50, hidden_layer_size), dtype=dtype)
    w2 = torch.zeros((hidden_layer_size, 10), dtype=dtype)
    scores = two_layer_fc(x, [w1, w2])
    print(scores.size())  # expect torch.Size([64, 10])


two_layer_fc_test()

# %% [markdown]
# ### Question 1: a three-layer ConvNet as a function
#
# Implement the forward pass of: a 5x5 convolution with `channel_1` filters and zero
# padding 2, ReLU, a 3x3 convolution with `channel_2` filters and zero padding 1, ReLU,
# and a fully connected layer to the class scores. Use `torch.nn.functional.conv2d`;
# every layer has a bias. The function must work for any batch size.

# %% {"autograder": {"questions": ["Q1"]}}
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
    # >>> Question 1: your answer starts here
    raise NotImplementedError("Question 1 is not answered yet: implement the forward pass of three_layer_convnet")
    # <<< Question 1: your answer ends here
    return scores

# %% {"autograder": {"role": "sanity-check"}}
def three_layer_convnet_test():
    x = torch.randn((64, 3, 32, 32), dtype=dtype)
    conv_w1 = torch.randn((6, 3, 5, 5), dtype=dtype)
    conv_b1 = torch.randn((6,), dtype=dtype)
    conv_w2 = torch.randn((9, 6, 3, 3), dtype=dtype)
    conv_b2 = torch.randn((9,), dtype=dtype)
    fc_w = torch.randn((9 * 32 * 32, 10), dtype=dtype)
    fc_b = torch.randn((10,), dtype=dtype)
    scores = three_layer_convnet(x, [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b])
    print(scores.size())  # expect torch.Size([64, 10])


three_layer_convnet_test()

# %% [markdown]
# ### Initialisation and training helpers
#
# `random_weight` draws Kaiming-normal weights, std sqrt(2 / fan_in); `zero_weight` makes
# zero biases. `check_accuracy_part2` and `train_part2` evaluate and train a barebones
# model: one epoch of plain gradient descent, `w -= learning_rate * w.grad`.

# %%
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


random_weight((3, 5))

# %%
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

# %% [markdown]
# An example: train the two-layer network for one epoch.

# %%
hidden_layer_size = 4000
learning_rate = 1e-2
w1 = random_weight((3 * 32 * 32, hidden_layer_size))
w2 = random_weight((hidden_layer_size, 10))
train_part2(two_layer_fc, [w1, w2], learning_rate)

# %% [markdown]
# ### Question 2: train the three-layer ConvNet
#
# Create the six parameters of `three_layer_convnet` for 3x32x32 images and ten
# classes, with `channel_1 = 32` and `channel_2 = 16`: weights from `random_weight`,
# biases from `zero_weight`. Then the cell trains for one epoch with learning rate
# 3e-3; expect above 40% validation accuracy.

# %% {"autograder": {"questions": ["Q2"]}}
learning_rate = 3e-3
channel_1 = 32
channel_2 = 16

conv_w1 = None
conv_b1 = None
conv_w2 = None
conv_b2 = None
fc_w = None
fc_b = None

# >>> Question 2: your answer starts here
raise NotImplementedError("Question 2 is not answered yet: create conv_w1, conv_b1, conv_w2, conv_b2, fc_w and fc_b")
# <<< Question 2: your answer ends here

params = [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b]
train_part2(three_layer_convnet, params, learning_rate)

# %% [markdown]
# ## Part III. The nn.Module API
#
# A model is a subclass of `nn.Module`: the constructor creates the layers (which own
# their parameters) and `forward` applies them. The two-layer network again:

# %%
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


def test_TwoLayerFC():
    input_size = 50
    x = torch.zeros((64, input_size), dtype=dtype)
    model = TwoLayerFC(input_size, 42, 10)
    scores = model(x)
    print(scores.size())  # expect torch.Size([64, 10])


test_TwoLayerFC()

# %% [markdown]
# ### Questions 3 and 4: ThreeLayerConvNet
#
# Question 3, the constructor: create `conv1` (5x5, padding 2), `conv2` (3x3, padding
# 1) and `fc` for 32x32 inputs, sized by the arguments, and initialise every weight
# with Kaiming normal (`nn.init.kaiming_normal_`). Question 4, `forward`: conv1, ReLU,
# conv2, ReLU, flatten, fc.

# %% {"autograder": {"questions": ["Q3", "Q4"]}}
class ThreeLayerConvNet(nn.Module):
    """conv 5x5 (padding 2) -> ReLU -> conv 3x3 (padding 1) -> ReLU -> fully connected,
    for 32x32 inputs, as attributes ``conv1``, ``conv2`` and ``fc``.

    Question 3 (constructor): the layers, with Kaiming-normal weights
    (``nn.init.kaiming_normal_``) and zero biases. Question 4: the forward pass.
    """

    def __init__(self, in_channel: int, channel_1: int, channel_2: int, num_classes: int):
        super().__init__()
        # >>> Question 3: your answer starts here
        raise NotImplementedError("Question 3 is not answered yet: create conv1, conv2 and fc with Kaiming-normal weights")
        # <<< Question 3: your answer ends here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = None
        # >>> Question 4: your answer starts here
        raise NotImplementedError("Question 4 is not answered yet: implement ThreeLayerConvNet.forward")
        # <<< Question 4: your answer ends here
        return scores


def test_ThreeLayerConvNet():
    x = torch.zeros((64, 3, 32, 32), dtype=dtype)
    model = ThreeLayerConvNet(in_channel=3, channel_1=12, channel_2=8, num_classes=10)
    scores = model(x)
    print(scores.size())  # expect torch.Size([64, 10])


test_ThreeLayerConvNet()

# %% [markdown]
# `check_accuracy_part34` and `train_part34` evaluate and train any `nn.Module` with any
# optimizer. Note where `model.train()` and `optimizer.zero_grad()` are called.

# %%
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

# %% [markdown]
# An example: the two-layer network trained with plain SGD.

# %%
hidden_layer_size = 4000
learning_rate = 1e-2
model = TwoLayerFC(3 * 32 * 32, hidden_layer_size, 10)
optimizer = optim.SGD(model.parameters(), lr=learning_rate)
train_part34(model, optimizer)

# %% [markdown]
# ### Question 5: train ThreeLayerConvNet
#
# Create a `ThreeLayerConvNet` with 32 and 16 channels for ten classes, and plain SGD
# (no momentum) with learning rate 3e-3. One epoch should give above 45% validation
# accuracy.

# %% {"autograder": {"questions": ["Q5"]}}
learning_rate = 3e-3
channel_1 = 32
channel_2 = 16

model = None
optimizer = None

# >>> Question 5: your answer starts here
raise NotImplementedError("Question 5 is not answered yet: create model and optimizer")
# <<< Question 5: your answer ends here

train_part34(model, optimizer)

# %% [markdown]
# ## Part IV. The nn.Sequential API
#
# For a plain stack of layers, `nn.Sequential` saves writing a class. It has no
# flatten layer of our own, so we wrap `flatten` in a module:

# %%
class Flatten(nn.Module):
    """``flatten`` as a module, so it can sit inside ``nn.Sequential``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x)


hidden_layer_size = 4000
learning_rate = 1e-2
model = nn.Sequential(
    Flatten(),
    nn.Linear(3 * 32 * 32, hidden_layer_size),
    nn.ReLU(),
    nn.Linear(hidden_layer_size, 10),
)
optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)
train_part34(model, optimizer)

# %% [markdown]
# ### Question 6: the three-layer ConvNet with nn.Sequential
#
# Build the network of Part III as an `nn.Sequential`: Conv2d 3 -> 32 (5x5, padding 2),
# ReLU, Conv2d 32 -> 16 (3x3, padding 1), ReLU, Flatten, Linear to 10 classes. Train it
# with SGD, learning rate 1e-2, momentum 0.9 and Nesterov momentum. Default PyTorch
# initialisation is fine here. Expect above 55% after one epoch.

# %% {"autograder": {"questions": ["Q6"]}}
channel_1 = 32
channel_2 = 16
learning_rate = 1e-2
momentum = 0.9
nesterov = True

model = None
optimizer = None

# >>> Question 6: your answer starts here
raise NotImplementedError("Question 6 is not answered yet: create model and optimizer with nn.Sequential")
# <<< Question 6: your answer ends here

train_part34(model, optimizer)

# %% [markdown]
# ## Part V. Open-ended challenge
#
# Design and train any network you like to reach **at least 70% accuracy on the
# validation set within 10 epochs** (any architecture, optimizer, schedule or data
# augmentation). Rules: at most 10 epochs over the 49,000 training images; never train
# on the validation or test images. Leave your trained model in `best_model`.
#
# The grader measures your model's accuracy itself, on images it controls. The last
# cell saves `best_model`'s weights to `best_model.pt`; submit that file with your
# notebook, and the grader evaluates it without retraining. Without it, the grader
# retrains your model with your training code.

# %% {"autograder": {"questions": ["Q7"]}}
model = None
optimizer = None
best_model = None

# >>> Question 7: your answer starts here
raise NotImplementedError("Question 7 is not answered yet: design, train and assign best_model")
# <<< Question 7: your answer ends here

# %% [markdown]
# Your model on the test set, and the saved weights (tensors only, no code):

# %% {"autograder": {"questions": ["Q7"], "role": "save-model"}}
check_accuracy_part34(loader_test, best_model)
torch.save(best_model.state_dict(), "best_model.pt")
