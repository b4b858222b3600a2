"""A generated class for the similarity analysis: independent correct solutions in
different styles, copies disguised in the ways students disguise them, an archive of
public solutions with a copy of one entry, and two identical checkpoints.

Independent students converge on the short questions (they pick among a few common
ways to write each answer, as real classes do) and differ on Question 7, which each
designs. Used by tests/test_similarity.py and benchmarks/similarity_speed.py.
"""

from __future__ import annotations

import ast
import itertools
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "student_template" / "cifar10_pytorch.py"
_PLACEHOLDER = re.compile(
    r'^(?P<indent>[ \t]*)raise NotImplementedError\("Question (?P<n>[1-7]) is not answered yet.*$', re.M
)

# A few ways to write each short answer: students converge on these honestly.
Q1 = [
    """x = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))
scores = flatten(x).mm(fc_w) + fc_b""",
    """h1 = F.conv2d(x, conv_w1, bias=conv_b1, padding=2)
a1 = F.relu(h1)
h2 = F.conv2d(a1, conv_w2, bias=conv_b2, padding=1)
a2 = F.relu(h2)
scores = torch.mm(flatten(a2), fc_w) + fc_b""",
    """out = torch.relu(F.conv2d(x, conv_w1, conv_b1, stride=1, padding=2))
out = torch.relu(F.conv2d(out, conv_w2, conv_b2, stride=1, padding=1))
out = out.view(out.shape[0], -1)
scores = out @ fc_w + fc_b""",
    """layer1 = F.conv2d(x, weight=conv_w1, bias=conv_b1, padding=(2, 2)).clamp(min=0)
layer2 = F.conv2d(layer1, weight=conv_w2, bias=conv_b2, padding=(1, 1)).clamp(min=0)
scores = F.linear(layer2.reshape(len(x), -1), fc_w.t(), fc_b)""",
    """for w, b, p in ((conv_w1, conv_b1, 2), (conv_w2, conv_b2, 1)):
    x = F.relu(F.conv2d(x, w, b, padding=p))
scores = torch.addmm(fc_b, x.flatten(1), fc_w)""",
]
Q2 = [
    """conv_w1 = random_weight((channel_1, 3, 5, 5))
conv_b1 = zero_weight((channel_1,))
conv_w2 = random_weight((channel_2, channel_1, 3, 3))
conv_b2 = zero_weight((channel_2,))
fc_w = random_weight((channel_2 * 32 * 32, 10))
fc_b = zero_weight((10,))""",
    """conv_w1 = random_weight([32, 3, 5, 5])
conv_w2 = random_weight([16, 32, 3, 3])
fc_w = random_weight([16 * 32 * 32, 10])
conv_b1 = zero_weight(32)
conv_b2 = zero_weight(16)
fc_b = zero_weight(10)""",
    """shapes = {"w1": (channel_1, 3, 5, 5), "w2": (channel_2, channel_1, 3, 3), "fc": (channel_2 * 32 * 32, 10)}
conv_w1, conv_w2, fc_w = (random_weight(s) for s in shapes.values())
conv_b1, conv_b2, fc_b = zero_weight(channel_1), zero_weight(channel_2), zero_weight(10)""",
    """in_dim = channel_2 * 32 * 32
conv_w1 = random_weight((channel_1, 3, 5, 5)); conv_b1 = zero_weight((channel_1,))
conv_w2 = random_weight((channel_2, channel_1, 3, 3)); conv_b2 = zero_weight((channel_2,))
fc_w, fc_b = random_weight((in_dim, 10)), zero_weight((10,))""",
]
Q3 = [
    """self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2, bias=True)
nn.init.kaiming_normal_(self.conv1.weight)
self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1, bias=True)
nn.init.kaiming_normal_(self.conv2.weight)
self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)
nn.init.kaiming_normal_(self.fc.weight)""",
    """self.conv1 = nn.Conv2d(in_channel, channel_1, 5, padding=2)
self.conv2 = nn.Conv2d(channel_1, channel_2, 3, padding=1)
self.fc = nn.Linear(32 * 32 * channel_2, num_classes)
for layer in (self.conv1, self.conv2, self.fc):
    nn.init.kaiming_normal_(layer.weight)
    nn.init.zeros_(layer.bias)""",
    """self.conv1 = nn.Conv2d(in_channels=in_channel, out_channels=channel_1, kernel_size=(5, 5), padding=(2, 2))
self.conv2 = nn.Conv2d(in_channels=channel_1, out_channels=channel_2, kernel_size=(3, 3), padding=(1, 1))
self.fc = nn.Linear(in_features=channel_2 * 1024, out_features=num_classes)
for m in self.modules():
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        m.bias.data.zero_()""",
]
Q4 = [
    """x = F.relu(self.conv1(x))
x = F.relu(self.conv2(x))
scores = self.fc(flatten(x))""",
    """hidden = self.conv2(F.relu(self.conv1(x))).relu()
scores = self.fc(hidden.view(hidden.size(0), -1))""",
    """out = torch.relu(self.conv1(x))
out = torch.relu(self.conv2(out))
out = torch.flatten(out, start_dim=1)
scores = self.fc(out)""",
]
Q5 = [
    """model = ThreeLayerConvNet(in_channel=3, channel_1=channel_1, channel_2=channel_2, num_classes=10)
optimizer = optim.SGD(model.parameters(), lr=learning_rate)""",
    """model = ThreeLayerConvNet(3, channel_1, channel_2, 10)
optimizer = torch.optim.SGD(params=model.parameters(), lr=learning_rate, momentum=0)""",
    """net = ThreeLayerConvNet(3, 32, 16, 10)
model = net
optimizer = optim.SGD(net.parameters(), learning_rate)""",
]
Q6 = [
    """model = nn.Sequential(
    nn.Conv2d(3, channel_1, 5, padding=2),
    nn.ReLU(),
    nn.Conv2d(channel_1, channel_2, 3, padding=1),
    nn.ReLU(),
    Flatten(),
    nn.Linear(channel_2 * 32 * 32, 10),
)
optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)""",
    """layers = [nn.Conv2d(3, channel_1, kernel_size=5, padding=2), nn.ReLU()]
layers += [nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1), nn.ReLU()]
layers += [nn.Flatten(), nn.Linear(channel_2 * 32 * 32, 10)]
model = nn.Sequential(*layers)
optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)""",
    """from collections import OrderedDict

model = nn.Sequential(OrderedDict([
    ("conv1", nn.Conv2d(3, channel_1, (5, 5), padding=2)),
    ("relu1", nn.ReLU()),
    ("conv2", nn.Conv2d(channel_1, channel_2, (3, 3), padding=1)),
    ("relu2", nn.ReLU()),
    ("flatten", Flatten()),
    ("fc", nn.Linear(channel_2 * 32 * 32, 10)),
]))
optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True)""",
]

# Question 7: each student designs a network; these are the choices that shape the code.
STYLES = ("sequential", "class", "blocks")
NORMS = ("BatchNorm2d", None)
ACTIVATIONS = ("ReLU", "LeakyReLU", "GELU", "ELU")
POOLS = ("MaxPool2d", "AvgPool2d")
OPTIMIZERS = (("Adam", "lr={lr}"), ("SGD", "lr={lr}, momentum=0.9, weight_decay=5e-4"), ("AdamW", "lr={lr}"))
LOOPS = ("train_part34", "own")


def _q7_sequential(c: dict) -> list[str]:
    lines = ["model = nn.Sequential("]
    cin, size = 3, 32
    for width in c["widths"]:
        args = "kernel_size=3, padding=1" if c["habits"]["conv_kw"] else "3, padding=1"
        lines.append(f"    nn.Conv2d({cin}, {width}, {args}),")
        if c["norm"]:
            lines.append(f"    nn.{c['norm']}({width}),")
        lines += [f"    nn.{c['act']}(),", f"    nn.{c['pool']}(2),"]
        cin, size = width, size // 2
    lines.append("    nn.Flatten(),")
    if c["dropout"]:
        lines.append(f"    nn.Dropout({c['dropout']}),")
    lines += [f"    nn.Linear({cin} * {size} * {size}, 10),", ")"]
    return lines


def _q7_class(c: dict) -> list[str]:
    lines = ["class Net(nn.Module):", "    def __init__(self):", "        super().__init__()"]
    cin, size = 3, 32
    habits = c["habits"]
    for k, width in enumerate(c["widths"], 1):
        args = "kernel_size=3, padding=1" if habits["conv_kw"] else "3, 1, 1"
        lines.append(f"        self.conv{k} = nn.Conv2d({cin}, {width}, {args})")
        if c["norm"]:
            lines.append(f"        self.bn{k} = nn.{c['norm']}({width})")
        cin, size = width, size // 2
    lines.append(f"        self.pool = nn.{c['pool']}(2)")
    lines.append(f"        self.act = nn.{c['act']}()")
    if c["dropout"]:
        lines.append(f"        self.drop = nn.Dropout({c['dropout']})")
    lines += [f"        self.fc = nn.Linear({cin} * {size} * {size}, 10)", "", "    def forward(self, x):"]
    for k in range(1, len(c["widths"]) + 1):
        if habits["forward"] == "nested":
            inner = f"self.bn{k}(self.conv{k}(x))" if c["norm"] else f"self.conv{k}(x)"
            lines.append(f"        x = self.pool(self.act({inner}))")
        else:
            lines.append(f"        x = self.conv{k}(x)")
            if c["norm"]:
                lines.append(f"        x = self.bn{k}(x)")
            lines += ["        x = self.act(x)", "        x = self.pool(x)"]
    lines.append("        x = " + FLATTENS[habits["flatten"]])
    if c["dropout"]:
        lines.append("        x = self.drop(x)")
    lines += ["        return self.fc(x)", "", "", "model = Net()"]
    return lines


def _q7_blocks(c: dict) -> list[str]:
    habits = c["habits"]
    norm = f"nn.{c['norm']}(cout), " if c["norm"] else ""
    bias = ", bias=False" if c["norm"] and habits["bias"] else ""
    channels = [3, *c["widths"]]
    size = 32 // 2 ** len(c["widths"])
    layers = f"nn.Conv2d(cin, cout, 3, padding=1{bias}), {norm}nn.{c['act']}(), nn.{c['pool']}(2)"
    tail = [f"nn.Dropout({c['dropout']})"] if c["dropout"] else []
    head = ", ".join(["nn.Flatten()", *tail, f"nn.Linear({channels[-1]} * {size} * {size}, 10)"])
    if habits["block_form"] == "list":
        return [
            "def block(cin, cout):",
            f"    return [{layers}]",
            "",
            "",
            f"channels = {channels}",
            "layers = []",
            "for cin, cout in zip(channels, channels[1:]):",
            "    layers += block(cin, cout)",
            f"model = nn.Sequential(*layers, {head})",
        ]
    return [
        "def conv_block(cin, cout):",
        f"    return nn.Sequential({layers})",
        "",
        "",
        f"sizes = {channels}",
        "features = nn.Sequential(*[conv_block(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)])",
        f"model = nn.Sequential(features, {head})",
    ]


FLATTENS = ("torch.flatten(x, 1)", "x.view(x.size(0), -1)", "x.reshape(len(x), -1)")
LOSSES = {
    "functional": ["loss = F.cross_entropy(model(images), labels)"],
    "criterion": ["loss = criterion(model(images), labels)"],
    "separate": ["scores = model(images)", "loss = nn.functional.cross_entropy(scores, labels)"],
}
HABITS = {
    "forward": ("nested", "steps"),
    "flatten": (0, 1, 2),
    "conv_kw": (True, False),
    "loss": tuple(LOSSES),
    "zero_grad": ("first", "last"),
    "device": (True, False),
    "log": (True, False),
    "epochs_var": (True, False),
    "helper": (True, False),
    "bias": (True, False),
    "block_form": ("list", "sequential"),
    "init": (True, False),
    "cosine": (True, False),
    "widths": ("double", "wide-first", "flat-then-double"),
}


def q7_answer(c: dict) -> str:
    """Question 7 as one student writes it: their design, and their habits of writing."""
    habits = c["habits"]
    lines = {"sequential": _q7_sequential, "class": _q7_class, "blocks": _q7_blocks}[c["style"]](c)
    if habits["device"]:
        lines.append("model = model.to(device=device)")
    name, args = c["optimizer"]
    lines.append(f"optimizer = optim.{name}(model.parameters(), {args.format(lr=c['lr'])})")
    if habits["init"]:
        lines += [
            "for m in model.modules():",
            "    if isinstance(m, (nn.Conv2d, nn.Linear)):",
            "        nn.init.kaiming_normal_(m.weight, nonlinearity='relu')",
        ]
    if c["schedule"] and habits["cosine"]:
        lines.append(f"scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={c['epochs']})")
    elif c["schedule"]:
        lines.append(f"scheduler = optim.lr_scheduler.StepLR(optimizer, step_size={c['schedule']}, gamma=0.5)")
    epochs = str(c["epochs"])
    if habits["epochs_var"]:
        lines.append(f"num_epochs = {epochs}")
        epochs = "num_epochs"
    if c["loop"] == "train_part34":
        lines.append(f"train_part34(model, optimizer, epochs={epochs})")
        if c["schedule"]:
            lines.append("scheduler.step()")
    else:
        if habits["loss"] == "criterion":
            lines.append("criterion = nn.CrossEntropyLoss()")
        if habits["helper"]:
            lines += [
                "",
                "",
                "def evaluate(net, loader):",
                "    net.eval()",
                "    correct = total = 0",
                "    with torch.no_grad():",
                "        for xs, ys in loader:",
                "            correct += (net(xs).argmax(1) == ys).sum().item()",
                "            total += len(ys)",
                "    return correct / total",
                "",
                "",
            ]
        lines += [f"for epoch in range({epochs}):", "    model.train()"]
        if habits["log"]:
            lines.append("    for t, (images, labels) in enumerate(loader_train):")
        else:
            lines.append("    for images, labels in loader_train:")
        body = []
        if habits["device"]:
            body.append("images, labels = images.to(device), labels.to(device)")
        if habits["zero_grad"] == "first":
            body.append("optimizer.zero_grad()")
        body += [*LOSSES[habits["loss"]], "loss.backward()", "optimizer.step()"]
        if habits["zero_grad"] == "last":
            body.append("optimizer.zero_grad()")
        if habits["log"]:
            body += ["if t % 100 == 0:", "    print(f'epoch {epoch} iteration {t}: loss {loss.item():.4f}')"]
        lines += ["        " + line for line in body]
        if c["schedule"]:
            lines.append("    scheduler.step()")
        if habits["helper"]:
            lines.append("    print('validation accuracy', evaluate(model, loader_val))")
        else:
            lines.append("    check_accuracy_part34(loader_val, model)")
    lines.append("best_model = model")
    return "\n".join(lines)


def _widths(pattern: str, base: int, depth: int) -> list[int]:
    if pattern == "double":
        return [base * 2**k for k in range(depth)]
    if pattern == "wide-first":
        return [base * 2] + [base * 2**k for k in range(1, depth)]
    return [base] + [base * 2 ** (k - 1) for k in range(1, depth)]


def q7_designs(count: int, seed: int = 0) -> list[dict]:
    """``count`` Question 7 designs, all with different shapes of code."""
    rng = random.Random(seed)
    shapes = list(
        itertools.product(STYLES, NORMS, ACTIVATIONS, POOLS, (0, 0.25), range(len(OPTIMIZERS)), LOOPS, (0, 3))
    )
    rng.shuffle(shapes)
    designs = []
    for style, norm, act, pool, dropout, opt, loop, schedule in shapes[:count]:
        depth = rng.choice((2, 3, 4))
        base = rng.choice((16, 24, 32, 48, 64))
        designs.append(
            {
                "style": style,
                "norm": norm,
                "act": act,
                "pool": pool,
                "dropout": dropout,
                "optimizer": OPTIMIZERS[opt],
                "loop": loop,
                "schedule": schedule,
                "widths": _widths(rng.choice(HABITS["widths"]), base, depth),
                "lr": rng.choice((1e-3, 2e-3, 5e-4, 3e-4, 1e-2, 5e-2)),
                "epochs": rng.choice((5, 6, 8, 10)),
                "habits": {habit: rng.choice(options) for habit, options in HABITS.items()},
            }
        )
    return designs


@dataclass
class Student:
    name: str
    answers: dict[str, str]  # question -> answer text (no indentation)
    notebook: bool = False
    checkpoint: bytes | None = None
    notes: list[str] = field(default_factory=list)


def independent(index: int, design: dict, name: str | None = None) -> Student:
    """An honest student: common ways to write the short answers, their own Question 7."""
    i = index
    return Student(
        name or f"student{i:02d}",
        {
            "Q1": Q1[i % len(Q1)],
            "Q2": Q2[(i // 2) % len(Q2)],
            "Q3": Q3[i % len(Q3)],
            "Q4": Q4[(i + 1) % len(Q4)],
            "Q5": Q5[(i // 3) % len(Q5)],
            "Q6": Q6[(i // 2) % len(Q6)],
            "Q7": q7_answer(design),
        },
    )


# -- disguises ------------------------------------------------------------------------------

KEEP = {
    "conv_w1",
    "conv_b1",
    "conv_w2",
    "conv_b2",
    "fc_w",
    "fc_b",
    "scores",
    "model",
    "optimizer",
    "best_model",
    "x",
    "params",
    "self",
    "conv1",
    "conv2",
    "fc",
    "channel_1",
    "channel_2",
    "learning_rate",
    "in_channel",
    "num_classes",
    "loader_train",
    "loader_val",
    "forward",
    "__init__",
}  # fmt: skip (names the template or PyTorch needs)


def rename(text: str, suffix: str = "_mine") -> str:
    """Rename every variable, function, class and attribute the student chose."""
    tree = ast.parse(text)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    for name in sorted(names - KEEP):
        text = re.sub(rf"\b{re.escape(name)}\b", name + suffix, text)
    return text


def _statements(text: str) -> list[tuple[int, int, int]]:
    """(first line, last line, indent) of every single statement, at any depth."""
    tree = ast.parse(text)
    out = []
    for node in ast.walk(tree):
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if isinstance(body, list):
                out += [(s.lineno - 1, s.end_lineno - 1, s.col_offset) for s in body if isinstance(s, ast.stmt)]
    return out


def reorder(text: str) -> str:
    """Swap neighbouring one-line assignments that do not depend on each other."""
    lines = text.splitlines()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        k = 0
        while k + 1 < len(body):
            a, b = body[k], body[k + 1]
            if (
                all(isinstance(s, ast.Assign) and s.lineno == s.end_lineno for s in (a, b))
                and a.end_lineno + 1 == b.lineno
            ):
                wa = {n.id for n in ast.walk(a) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                wb = {n.id for n in ast.walk(b) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                ra = {n.id for n in ast.walk(a) if isinstance(n, ast.Name)}
                rb = {n.id for n in ast.walk(b) if isinstance(n, ast.Name)}
                if not (wa & rb or wb & ra) and ";" not in lines[a.lineno - 1] + lines[b.lineno - 1]:
                    i = a.lineno - 1
                    lines[i], lines[i + 1] = lines[i + 1], lines[i]
                    k += 2
                    continue
            k += 1
    return "\n".join(lines)


def recomment(text: str) -> str:
    """Other comments, blank lines and spacing."""
    out = []
    for n, line in enumerate(text.splitlines()):
        code = re.sub(r"\s+#.*$", "", line)
        indent = code[: len(code) - len(code.lstrip())]
        if n % 3 == 0 and code.strip() and not code.rstrip().endswith((",", "(", "[")):
            out.append(f"{indent}# step {n}: done as in the lecture")
        out.append(code.replace("(", "( ").replace(", ", " ,  ").replace(" = ", "   =   "))
        if n % 4 == 1:
            out.append("")
    return "\n".join(out)


def dead_code(text: str) -> str:
    """Insert statements that change nothing between statements."""
    lines = text.splitlines()
    spots = sorted(
        {
            (first, indent)
            for first, _, indent in _statements(text)
            if len(lines[first]) - len(lines[first].lstrip()) == indent
        },
        reverse=True,
    )
    for k, (first, indent) in enumerate(spots):
        if k % 2 == 0:
            pad = " " * indent
            extra = (
                [f"{pad}debug_counter_{k} = {k} * 2"]
                if k % 4 == 0
                else [f"{pad}if False:", f'{pad}    print("checking {k}")']
            )
            lines[first:first] = extra
    return "\n".join(lines)


def tweak(text: str) -> str:
    """Change the numbers a student tunes (rate, epochs) and add a line of real code."""
    text = re.sub(r"lr=[0-9.e-]+", "lr=0.0007", text)
    text = re.sub(r"(epochs=|range\(|num_epochs = )\d+", r"\g<1>7", text)
    return "torch.manual_seed(0)\n" + text


DISGUISES = {"rename": rename, "reorder": reorder, "comments": recomment, "dead": dead_code, "tweak": tweak}


def copy_of(original: Student, name: str, disguises: list[str], questions=None) -> Student:
    answers = dict(original.answers)
    for q in questions or answers:
        for d in disguises:
            answers[q] = DISGUISES[d](answers[q])
    return Student(name, answers, notes=[f"copy of {original.name} ({', '.join(disguises)})"])


# -- writing ---------------------------------------------------------------------------------


def render(student: Student, template: str | None = None) -> str:
    template = template if template is not None else TEMPLATE.read_text()

    def fill(m: re.Match) -> str:
        answer = student.answers.get(f"Q{m['n']}")
        if answer is None:
            return m[0]
        return "\n".join(m["indent"] + line if line.strip() else "" for line in answer.splitlines())

    return _PLACEHOLDER.sub(fill, template)


def write(student: Student, folder: Path, template: str | None = None) -> Path:
    """Write a submission: a module, a notebook, or a folder with its checkpoint."""
    text = render(student, template)
    if student.notebook:
        import nbformat

        from grader.assign import script_to_notebook

        target, content = folder / f"{student.name}.ipynb", nbformat.writes(script_to_notebook(text))
    else:
        target, content = folder / f"{student.name}.py", text
    if student.checkpoint is not None:
        sub = folder / student.name
        sub.mkdir(parents=True, exist_ok=True)
        target = sub / target.name
        (sub / "best_model.pt").write_bytes(student.checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    return target


def checkpoint_bytes(seed: int, prefix: str = "") -> bytes:
    """A small trained-looking state_dict as torch.save writes it (keys after ``prefix``)."""
    import io

    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {
        f"{prefix}0.weight": torch.randn(8, 3, 3, 3, generator=generator),
        f"{prefix}0.bias": torch.randn(8, generator=generator),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@dataclass
class Corpus:
    students: list[Student]
    archive: list[Student]
    copy_pairs: set[frozenset[str]]  # within the class
    archive_copies: dict[str, str]  # student -> archive entry copied


def build(independents: int = 14) -> Corpus:
    """The test class: ``independents`` honest students; five disguised copies (one as a
    notebook, two copying only Question 7, one of them with other rates and epochs and a
    line of its own); a copy of an archive entry; two students whose code is their own
    but whose checkpoints are identical."""
    designs = q7_designs(independents + 3)
    students = [independent(i, designs[i]) for i in range(independents)]
    archive = [independent(i + 1, designs[independents + i], name=f"public{i}") for i in range(3)]
    copies = [
        copy_of(students[0], "copy_rename", ["rename", "comments"]),
        copy_of(students[3], "copy_reorder", ["reorder", "dead"]),
        copy_of(students[7], "copy_all", ["rename", "reorder", "comments", "dead"]),
        copy_of(students[11], "copy_q7_only", ["rename", "reorder"], questions=["Q7"]),
        copy_of(archive[1], "copy_public", ["rename", "comments", "reorder"]),
        copy_of(students[13], "copy_tweaked", ["rename", "tweak"], questions=["Q7"]),
    ]
    copies[2].notebook = True  # a copy in the other format
    # copy_q7_only writes its own short answers
    own = independent(independents + 5, designs[0])
    copies[3].answers.update({q: a for q, a in own.answers.items() if q != "Q7"})
    students[5].checkpoint = checkpoint_bytes(1)
    students[9].checkpoint = checkpoint_bytes(1, prefix="features.")  # the same tensors under other names
    pairs = {
        frozenset({"student00", "copy_rename"}),
        frozenset({"student03", "copy_reorder"}),
        frozenset({"student07", "copy_all"}),
        frozenset({"student11", "copy_q7_only"}),
        frozenset({"student05", "student09"}),
        frozenset({"student13", "copy_tweaked"}),
    }
    return Corpus(students + copies, archive, pairs, {"copy_public": "public1"})


def write_corpus(corpus: Corpus, root: Path) -> tuple[Path, Path]:
    template = TEMPLATE.read_text()
    klass, archive = root / "class", root / "archive"
    klass.mkdir(parents=True, exist_ok=True)
    archive.mkdir(parents=True, exist_ok=True)
    for s in corpus.students:
        write(s, klass, template)
    for s in corpus.archive:
        write(s, archive, template)
    return klass, archive
