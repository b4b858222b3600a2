"""Notebooks in the layout of the public CS231n-style ``PyTorch.ipynb`` (our own code and
words, the same function names, signatures, answer markers and cell metadata), in the
editions whose layouts differ: 2018 (TODO banners only), 2019-2024 (START/END OF YOUR
CODE lines, the cell name in metadata "test" or "id"), 2025 (no START/END lines, Colab
cell ids). The grader must find every answer in each of them."""

from __future__ import annotations

import nbformat

BANNER = "#" * 80
START = "# *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****"
END = "# *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****"

SETUP = """\
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader
from torch.utils.data import sampler

import torchvision.datasets as dset
import torchvision.transforms as T

import numpy as np
USE_GPU = True
dtype = torch.float32
if USE_GPU and torch.cuda.is_available():
    device = torch.device('cuda')
else:
    device = torch.device('cpu')
print_every = 100
print('using device:', device)"""

COLAB = """\
from google.colab import drive
drive.mount('/content/drive')
FOLDERNAME = None
assert FOLDERNAME is not None, "[!] Enter the foldername."
import sys
sys.path.append('/content/drive/My Drive/{}'.format(FOLDERNAME))
%cd /content/drive/My\\ Drive/$FOLDERNAME/cs231n/datasets/
!bash get_datasets.sh
%cd /content/drive/My\\ Drive/$FOLDERNAME"""

DATA = """\
NUM_TRAIN = 49000
transform = T.Compose([
    T.ToTensor(),
    T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
])
cifar10_train = dset.CIFAR10('./cs231n/datasets', train=True, download=True, transform=transform)
loader_train = DataLoader(cifar10_train, batch_size=64, sampler=sampler.SubsetRandomSampler(range(NUM_TRAIN)))
cifar10_val = dset.CIFAR10('./cs231n/datasets', train=True, download=True, transform=transform)
loader_val = DataLoader(cifar10_val, batch_size=64, sampler=sampler.SubsetRandomSampler(range(NUM_TRAIN, 50000)))
cifar10_test = dset.CIFAR10('./cs231n/datasets', train=False, download=True, transform=transform)
loader_test = DataLoader(cifar10_test, batch_size=64)"""

FLATTEN = """\
def flatten(x):
    N = x.shape[0]
    return x.view(N, -1)

def test_flatten():
    x = torch.arange(12).view(2, 1, 3, 2)
    print('After flattening: ', flatten(x))

test_flatten()"""

TWO_LAYER = """\
import torch.nn.functional as F

def two_layer_fc(x, params):
    x = flatten(x)
    w1, w2 = params
    x = F.relu(x.mm(w1))
    x = x.mm(w2)
    return x"""

CONVNET_TEST = """\
def three_layer_convnet_test():
    x = torch.zeros((64, 3, 32, 32), dtype=dtype)
    conv_w1 = torch.zeros((6, 3, 5, 5))
    conv_b1 = torch.zeros((6,))
    conv_w2 = torch.zeros((9, 6, 3, 3))
    conv_b2 = torch.zeros((9,))
    fc_w = torch.zeros((9 * 32 * 32, 10))
    fc_b = torch.zeros(10)
    scores = three_layer_convnet(x, [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b])
    print(scores.size())

three_layer_convnet_test()"""

INIT = """\
def random_weight(shape):
    if len(shape) == 2:
        fan_in = shape[0]
    else:
        fan_in = np.prod(shape[1:])
    w = torch.randn(shape, device=device, dtype=dtype) * np.sqrt(2. / fan_in)
    w.requires_grad = True
    return w

def zero_weight(shape):
    return torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)

random_weight((3, 5))"""

HELPERS_2 = """\
def check_accuracy_part2(loader, model_fn, params):
    split = 'val' if loader.dataset.train else 'test'
    print('Checking accuracy on the %s set' % split)
    num_correct, num_samples = 0, 0
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.int64)
            scores = model_fn(x, params)
            _, preds = scores.max(1)
            num_correct += (preds == y).sum()
            num_samples += preds.size(0)
        acc = float(num_correct) / num_samples
        print('Got %d / %d correct (%.2f%%)' % (num_correct, num_samples, 100 * acc))


def train_part2(model_fn, params, learning_rate):
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
            print('Iteration %d, loss = %.4f' % (t, loss.item()))
            check_accuracy_part2(loader_val, model_fn, params)
            print()"""

TWO_LAYER_TRAIN = """\
hidden_layer_size = 4000
learning_rate = 1e-2
w1 = random_weight((3 * 32 * 32, hidden_layer_size))
w2 = random_weight((hidden_layer_size, 10))
train_part2(two_layer_fc, [w1, w2], learning_rate)"""

HELPERS_34 = [
    """\
def check_accuracy_part34(loader, model):
    if loader.dataset.train:
        print('Checking accuracy on validation set')
    else:
        print('Checking accuracy on test set')
    num_correct = 0
    num_samples = 0
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device=device, dtype=dtype)
            y = y.to(device=device, dtype=torch.long)
            scores = model(x)
            _, preds = scores.max(1)
            num_correct += (preds == y).sum()
            num_samples += preds.size(0)
        acc = float(num_correct) / num_samples
        print('Got %d / %d correct (%.2f)' % (num_correct, num_samples, 100 * acc))""",
    """\
def train_part34(model, optimizer, epochs=1):
    model = model.to(device=device)
    for e in range(epochs):
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
                print('Iteration %d, loss = %.4f' % (t, loss.item()))
                check_accuracy_part34(loader_val, model)
                print()""",
]

TWO_LAYER_MODULE = """\
class TwoLayerFC(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        nn.init.kaiming_normal_(self.fc1.weight)
        self.fc2 = nn.Linear(hidden_size, num_classes)
        nn.init.kaiming_normal_(self.fc2.weight)

    def forward(self, x):
        x = flatten(x)
        scores = self.fc2(F.relu(self.fc1(x)))
        return scores"""

TWO_LAYER_MODULE_TRAIN = """\
hidden_layer_size = 4000
learning_rate = 1e-2
model = TwoLayerFC(3 * 32 * 32, hidden_layer_size, 10)
optimizer = optim.SGD(model.parameters(), lr=learning_rate)
train_part34(model, optimizer)"""

SEQ_EXAMPLE = """\
class Flatten(nn.Module):
    def forward(self, x):
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
train_part34(model, optimizer)"""

# The answers, as a student in this layout writes them.
ANSWERS = {
    "Q1": """\
x = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))
scores = flatten(x).mm(fc_w) + fc_b""",
    "Q2": """\
conv_w1 = random_weight((channel_1, 3, 5, 5))
conv_b1 = zero_weight((channel_1,))
conv_w2 = random_weight((channel_2, channel_1, 3, 3))
conv_b2 = zero_weight((channel_2,))
fc_w = random_weight((channel_2 * 32 * 32, 10))
fc_b = zero_weight((10,))""",
    "Q3": """\
self.conv1 = nn.Conv2d(in_channel, channel_1, 5, padding=2)
nn.init.kaiming_normal_(self.conv1.weight)
self.conv2 = nn.Conv2d(channel_1, channel_2, 3, padding=1)
nn.init.kaiming_normal_(self.conv2.weight)
self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
nn.init.kaiming_normal_(self.fc.weight)""",
    "Q4": """\
x = F.relu(self.conv1(x))
x = F.relu(self.conv2(x))
scores = self.fc(flatten(x))""",
    "Q5": """\
model = ThreeLayerConvNet(3, channel_1, channel_2, 10)
optimizer = optim.SGD(model.parameters(), lr=learning_rate)""",
    "Q6": """\
model = nn.Sequential(
    nn.Conv2d(3, channel_1, 5, padding=2),
    nn.ReLU(),
    nn.Conv2d(channel_1, channel_2, 3, padding=1),
    nn.ReLU(),
    Flatten(),
    nn.Linear(channel_2 * 32 * 32, 10),
)
optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)""",
    # The typical passing answer: two conv-pool stages, dropout, two linear layers.
    "Q7": """\
model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Dropout2d(0.2), Flatten(),
    nn.Linear(64 * 8 * 8, 512), nn.ReLU(), nn.Dropout(0.5),
    nn.Linear(512, 10),
)
optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, nesterov=True)""",
}


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.splitlines())


def _region(question: str, todo: str, answers: dict, edition: int, indent: int = 0) -> str:
    """An answer region with the markers of the edition; the skeleton's body if the
    question is not answered."""
    pad = " " * indent
    width = 80 - indent
    lines = [pad + "#" * width, pad + f"# TODO: {todo}".ljust(width - 1) + "#", pad + "#" * width]
    if 2019 <= edition <= 2024:
        lines.append(pad + START)
    body = answers.get(question)
    lines.append(_indent(body, indent) if body else pad + ("pass" if edition < 2025 else ""))
    if 2019 <= edition <= 2024:
        lines.append(pad + END)
    lines += [pad + "#" * width, pad + "#" + "END OF YOUR CODE".center(width - 2) + "#", pad + "#" * width]
    return "\n".join(lines)


def build(*, answers: dict[str, str] | None = None, edition: int = 2022, epochs: int = 10, extra_cells: list[str] = ()):
    """A notebook in the CS231n-style layout of ``edition``. ``answers`` maps question
    ids to the code in each answer region (missing ones keep the skeleton)."""
    answers = ANSWERS if answers is None else answers
    cells: list[tuple[str, dict]] = []

    def code(source: str, name: str | None = None) -> None:
        meta = {}
        if name and 2020 <= edition <= 2021:
            meta["id"] = name
        elif name and edition >= 2022:
            meta["test"] = name
        cells.append((source, meta))

    if edition >= 2021:
        code(COLAB)
    code(SETUP)
    code(DATA)
    code(FLATTEN)
    code(TWO_LAYER)
    code(
        "def three_layer_convnet(x, params):\n"
        "    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params\n"
        "    scores = None\n"
        + _region("Q1", "Implement the forward pass for the three-layer ConvNet.", answers, edition, 4)
        + "\n    return scores"
    )
    code(CONVNET_TEST, "barebones_output_shape")
    code(INIT)
    code(HELPERS_2)
    code(TWO_LAYER_TRAIN)
    code(
        "learning_rate = 3e-3\nchannel_1 = 32\nchannel_2 = 16\n\n"
        + "\n".join(f"{n} = None" for n in ("conv_w1", "conv_b1", "conv_w2", "conv_b2", "fc_w", "fc_b"))
        + "\n\n"
        + _region("Q2", "Initialize the parameters of a three-layer ConvNet.", answers, edition)
        + "\n\nparams = [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b]\n"
        "train_part2(three_layer_convnet, params, learning_rate)",
        "barebones_accuracy",
    )
    code(TWO_LAYER_MODULE)
    code(
        "class ThreeLayerConvNet(nn.Module):\n"
        "    def __init__(self, in_channel, channel_1, channel_2, num_classes):\n"
        "        super().__init__()\n"
        + _region("Q3", "Set up the layers you need for a three-layer ConvNet.", answers, edition, 8)
        + "\n\n    def forward(self, x):\n        scores = None\n"
        + _region("Q4", "Implement the forward function for a 3-layer ConvNet.", answers, edition, 8)
        + "\n        return scores\n\n\n"
        "def test_ThreeLayerConvNet():\n"
        "    x = torch.zeros((64, 3, 32, 32), dtype=dtype)\n"
        "    model = ThreeLayerConvNet(in_channel=3, channel_1=12, channel_2=8, num_classes=10)\n"
        "    scores = model(x)\n"
        "    print(scores.size())\n"
        "test_ThreeLayerConvNet()",
        "module_output_shape",
    )
    for helper in HELPERS_34:
        code(helper)
    code(TWO_LAYER_MODULE_TRAIN)
    code(
        "learning_rate = 3e-3\nchannel_1 = 32\nchannel_2 = 16\n\nmodel = None\noptimizer = None\n\n"
        + _region("Q5", "Instantiate your ThreeLayerConvNet model and a corresponding optimizer", answers, edition)
        + "\n\ntrain_part34(model, optimizer)",
        "module_accuracy",
    )
    code(SEQ_EXAMPLE)
    code(
        "channel_1 = 32\nchannel_2 = 16\nlearning_rate = 1e-2\n\nmodel = None\noptimizer = None\n\n"
        + _region(
            "Q6", "Rewrite the 2-layer ConvNet with bias from Part III with the Sequential API.", answers, edition
        )
        + "\n\ntrain_part34(model, optimizer)",
        "sequential_accuracy",
    )
    code(
        "model = None\noptimizer = None\n\n"
        + _region("Q7", "Experiment with any architectures, optimizers, and hyperparameters.", answers, edition)
        + f"\n\n# You should get at least 70% accuracy\ntrain_part34(model, optimizer, epochs={epochs})",
        "open_ended_accuracy",
    )
    code("best_model = model\ncheck_accuracy_part34(loader_test, best_model)")
    for extra in extra_cells:
        code(extra)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "name": "python3"}, "language_info": {"name": "python"}}
    title = nbformat.v4.new_markdown_cell("# Introduction to PyTorch")
    title.id = "title"  # fixed ids: the same notebook is written byte for byte every time
    nb.cells.append(title)
    for i, (source, meta) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata = meta
        cell.id = f"c{i}"
        if edition >= 2025:
            cell.metadata["id"] = f"colab{i:04d}"
        nb.cells.append(cell)
    return nb
