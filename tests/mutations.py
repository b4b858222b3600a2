"""The mutation corpus: one-bug variants of the filled template, each of which must lose
points on its question and only there, and correct variants written differently, which
must keep full marks. Each entry edits the filled template's script text; an edit whose
"old" text is not found exactly once fails loudly, so the corpus cannot silently drift
from the template."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mutation:
    name: str
    question: str | None  # the question that must lose points; None: must keep full marks
    edits: tuple[tuple[str, str], ...]
    form: str = "ipynb"  # submitted as a notebook or as a module
    failing: tuple[str, ...] = ()  # check ids that must fail
    says: tuple[str, ...] = field(default=())  # phrases the failing messages must contain
    never_says: tuple[str, ...] = ()  # phrases no message of the question may contain
    passing: tuple[str, ...] = ()  # check ids that must pass (a mistake costs points once)


def edit(old: str, new: str) -> tuple[str, str]:
    return (old, new)


CONV1 = "    x = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))\n"
CONV2 = "    x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))\n"
Q1_FC = "    scores = flatten(x).mm(fc_w) + fc_b\n"
Q3_LAYERS = (
    "        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)\n"
    "        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)\n"
    "        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)\n"
)
Q3_INIT = (
    "        for layer in (self.conv1, self.conv2, self.fc):\n"
    "            nn.init.kaiming_normal_(layer.weight)\n"
    "            nn.init.zeros_(layer.bias)\n"
)
Q4_BODY = "        x = F.relu(self.conv1(x))\n        x = F.relu(self.conv2(x))\n        scores = self.fc(flatten(x))\n"
Q5_OPT = "optimizer = optim.SGD(model.parameters(), lr=learning_rate)\n# <<< Question 5"
Q5_MODEL = "model = ThreeLayerConvNet(in_channel=3, channel_1=channel_1, channel_2=channel_2, num_classes=10)\n"
Q6_SEQ = (
    "    nn.Conv2d(3, channel_1, kernel_size=5, padding=2),\n"
    "    nn.ReLU(),\n"
    "    nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1),\n"
    "    nn.ReLU(),\n"
    "    Flatten(),\n"
    "    nn.Linear(channel_2 * 32 * 32, 10),\n"
)
Q6_OPT = "optimizer = optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, nesterov=nesterov)\n# <<< Question 6"

BUGS = [
    # Question 1: three_layer_convnet
    Mutation(
        "q1-relu-dropped-after-conv1",
        "Q1",
        (edit(CONV1, "    x = F.conv2d(x, conv_w1, conv_b1, padding=2)\n"),),
        failing=("Q1.forward_parity",),
    ),
    Mutation(
        "q1-relu-dropped-after-conv2",
        "Q1",
        (edit(CONV2, "    x = F.conv2d(x, conv_w2, conv_b2, padding=1)\n"),),
        form="py",
        failing=("Q1.forward_parity",),
    ),
    Mutation(
        "q1-view-64",
        "Q1",
        (edit(Q1_FC, "    scores = x.view(64, -1).mm(fc_w) + fc_b\n"),),
        failing=("Q1.any_batch_size",),
        says=("hard-coded",),
    ),
    Mutation(
        "q1-flatten-permuted-axes",
        "Q1",
        (edit(Q1_FC, "    scores = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1).mm(fc_w) + fc_b\n"),),
        failing=("Q1.forward_parity", "Q1.gradient_parity"),
    ),
    Mutation(
        "q1-softmax-before-loss",
        "Q1",
        (edit(Q1_FC, "    scores = F.softmax(flatten(x).mm(fc_w) + fc_b, dim=1)\n"),),
        failing=("Q1.forward_parity",),
    ),
    Mutation(
        "q1-hard-coded-output-for-64",
        "Q1",
        (edit(Q1_FC, "    scores = torch.zeros(64, 10)\n"),),
        form="py",
        failing=("Q1.any_batch_size", "Q1.forward_parity"),
    ),
    Mutation(
        "q1-no-fc-bias",
        "Q1",
        (edit(Q1_FC, "    scores = flatten(x).mm(fc_w)\n"),),
        failing=("Q1.forward_parity", "Q1.gradient_parity"),
    ),
    # Question 2: the parameters and training call
    Mutation(
        "q2-biases-from-random-weight",
        "Q2",
        (edit("conv_b1 = zero_weight((channel_1,))", "conv_b1 = random_weight((channel_1,))"),),
        failing=("Q2.zero_biases",),
    ),
    Mutation(
        "q2-fc-b-shaped-1x10",
        "Q2",
        (edit("fc_b = zero_weight((10,))", "fc_b = zero_weight((1, 10))"),),
        failing=("Q2.shapes",),
        says=("(1, 10)",),
    ),
    Mutation(
        "q2-fan-in-from-the-wrong-axis",
        "Q2",
        (
            edit(
                "fc_w = random_weight((channel_2 * 32 * 32, 10))",
                "fc_w = (torch.randn(channel_2 * 32 * 32, 10) * math.sqrt(2 / 10)).requires_grad_()",
            ),
        ),
        failing=("Q2.kaiming_init", "Q2.learns"),
        says=("wrong dimension",),
    ),
    Mutation(
        "q2-no-requires-grad",
        "Q2",
        (
            edit(
                "conv_w1 = random_weight((channel_1, 3, 5, 5))",
                "conv_w1 = torch.randn(channel_1, 3, 5, 5) * math.sqrt(2 / 75)",
            ),
        ),
        failing=("Q2.requires_grad", "Q2.sgd_step"),
    ),
    Mutation(
        "q2-parameter-not-a-leaf",
        "Q2",
        (
            edit(
                "conv_w1 = random_weight((channel_1, 3, 5, 5))",
                "conv_w1 = torch.randn(channel_1, 3, 5, 5, requires_grad=True) * math.sqrt(2 / 75)",
            ),
        ),
        form="py",
        failing=("Q2.requires_grad",),
        says=("leaf",),
    ),
    Mutation(
        "q2-learning-rate-1e-2",
        "Q2",
        (
            edit(
                "learning_rate = 3e-3\nchannel_1 = 32\nchannel_2 = 16\n\nconv_w1",
                "learning_rate = 1e-2\nchannel_1 = 32\nchannel_2 = 16\n\nconv_w1",
            ),
        ),
        failing=("Q2.learning_rate", "Q2.sgd_step"),
    ),
    Mutation(
        "q2-channels-swapped",
        "Q2",
        (
            edit(
                "conv_w2 = random_weight((channel_2, channel_1, 3, 3))",
                "conv_w2 = random_weight((channel_1, channel_2, 3, 3))",
            ),
        ),
        failing=("Q2.shapes",),
    ),
    # Question 3: ThreeLayerConvNet's constructor
    Mutation(
        "q3-no-kaiming-init", "Q3", (edit(Q3_INIT, ""),), failing=("Q3.kaiming_init",), says=("default initialisation",)
    ),
    Mutation(
        "q3-kaiming-on-one-layer-only",
        "Q3",
        (edit(Q3_INIT, "        nn.init.kaiming_normal_(self.conv1.weight)\n"),),
        failing=("Q3.kaiming_init",),
    ),
    Mutation(
        "q3-padding-1-on-the-5x5-conv",
        "Q3",
        (
            edit(
                Q3_LAYERS,
                Q3_LAYERS.replace("kernel_size=5, padding=2", "kernel_size=5, padding=1").replace(
                    "channel_2 * 32 * 32", "channel_2 * 30 * 30"
                ),
            ),
        ),
        failing=("Q3.layers",),
        says=("padding=1",),
    ),
    Mutation(
        "q3-channels-hard-coded",
        "Q3",
        (
            edit(
                Q3_LAYERS,
                Q3_LAYERS.replace("nn.Conv2d(in_channel, channel_1,", "nn.Conv2d(3, 32,").replace(
                    "nn.Conv2d(channel_1, channel_2,", "nn.Conv2d(32, channel_2,"
                ),
            ),
        ),
        form="py",
        failing=("Q3.uses_arguments",),
    ),
    # Question 4: ThreeLayerConvNet's forward pass
    Mutation(
        "q4-relu-dropped-after-conv2",
        "Q4",
        (edit(Q4_BODY, Q4_BODY.replace("x = F.relu(self.conv2(x))", "x = self.conv2(x)")),),
        failing=("Q4.forward_parity",),
    ),
    Mutation(
        "q4-view-64",
        "Q4",
        (edit(Q4_BODY, Q4_BODY.replace("self.fc(flatten(x))", "self.fc(x.view(64, -1))")),),
        failing=("Q4.output_shape",),
    ),
    Mutation(
        "q4-softmax-on-the-scores",
        "Q4",
        (
            edit(
                Q4_BODY,
                Q4_BODY.replace("scores = self.fc(flatten(x))", "scores = F.softmax(self.fc(flatten(x)), dim=1)"),
            ),
        ),
        form="py",
        failing=("Q4.forward_parity",),
    ),
    # Question 5: model and optimizer
    Mutation(
        "q5-momentum",
        "Q5",
        (edit(Q5_OPT, Q5_OPT.replace("lr=learning_rate)", "lr=learning_rate, momentum=0.9)")),),
        failing=("Q5.optimizer", "Q5.optimizer_step"),
        says=("momentum=0.9",),
    ),
    Mutation(
        "q5-learning-rate-1e-2",
        "Q5",
        (edit(Q5_OPT, Q5_OPT.replace("lr=learning_rate)", "lr=1e-2)")),),
        failing=("Q5.optimizer",),
    ),
    Mutation(
        "q5-channels-12-8-from-the-sanity-test",
        "Q5",
        (edit(Q5_MODEL, "model = ThreeLayerConvNet(in_channel=3, channel_1=12, channel_2=8, num_classes=10)\n"),),
        failing=("Q5.model",),
    ),
    Mutation(
        "q5-weights-overwritten-with-fan-in-from-the-wrong-axis",
        "Q5",
        (
            edit(
                Q5_MODEL,
                Q5_MODEL
                + "model.fc.weight.data = torch.randn(model.fc.weight.shape) * math.sqrt(2 / model.fc.weight.shape[0])\n",
            ),
        ),
        failing=("Q5.learns",),
    ),
    Mutation(
        "q5-adam",
        "Q5",
        (edit(Q5_OPT, Q5_OPT.replace("optim.SGD(", "optim.Adam(")),),
        form="py",
        failing=("Q5.optimizer",),
    ),
    Mutation(
        "q5-optimizer-misses-parameters",
        "Q5",
        (edit(Q5_OPT, Q5_OPT.replace("model.parameters()", "model.conv1.parameters()")),),
        failing=("Q5.optimizer",),
        says=("not updating",),
    ),
    Mutation("q5-exception-in-the-cell", "Q5", (edit(Q5_MODEL, "model = ThreeLayerConvNet(3, 32, 16)\n"),)),
    # Question 6: the Sequential model
    Mutation(
        "q6-no-nesterov",
        "Q6",
        (edit(Q6_OPT, Q6_OPT.replace(", nesterov=nesterov", "")),),
        failing=("Q6.optimizer",),
        says=("nesterov",),
    ),
    Mutation(
        # A real student's answer: the first ReLU is missing; their notebook printed 55-60%.
        "q6-real-case-first-relu-missing",
        "Q6",
        (edit(Q6_SEQ, Q6_SEQ.replace("    nn.ReLU(),\n    nn.Conv2d(channel_1", "    nn.Conv2d(channel_1", 1)),),
        failing=("Q6.architecture", "Q6.parity"),
        says=("missing ReLU between Conv2d(3, 32, 5) and Conv2d(32, 16, 3)",),
    ),
    Mutation(
        "q6-padding-1-fc-resized",
        "Q6",
        (
            edit(
                Q6_SEQ,
                Q6_SEQ.replace("kernel_size=5, padding=2", "kernel_size=5, padding=1").replace(
                    "channel_2 * 32 * 32", "channel_2 * 30 * 30"
                ),
            ),
        ),
        form="py",
        failing=("Q6.architecture",),
        says=("padding=1",),
    ),
    Mutation(
        "q6-softmax-at-the-end",
        "Q6",
        (edit(Q6_SEQ, Q6_SEQ + "    nn.Softmax(dim=1),\n"),),
        failing=("Q6.architecture",),
        says=("unexpected Softmax",),
    ),
    Mutation(
        "q6-syntax-error-in-the-cell", "Q6", (edit(Q6_SEQ, Q6_SEQ.replace("    Flatten(),\n", "    Flatten(\n")),)
    ),
    # The provided helpers a question relies on
    Mutation(
        "helper-train-part34-without-zero-grad",
        "Q5",
        (edit("            optimizer.zero_grad()\n", ""),),
        failing=("Q5.train_part34_helper",),
        says=("zero_grad",),
    ),
    Mutation(
        "helper-train-part34-train-mode-outside-the-loop",
        "Q5",
        (
            edit("            model.train()\n", ""),
            edit("    model = model.to(device=device)\n", "    model = model.to(device=device)\n    model.train()\n"),
        ),
        form="py",
        failing=("Q5.train_part34_helper",),
        says=("model.train()",),
    ),
    Mutation(
        "helper-train-part2-without-zeroing-gradients",
        "Q2",
        (edit("                w.grad.zero_()\n", ""),),
        failing=("Q2.train_part2_helper",),
    ),
]

# Knock-on effects, training mode, dtype and messages: each bug still costs points on its
# own question only, in the mode the student's code runs, with a message naming it.
BUGS += [
    # Q3 -> Q5: Q5's learning check must not train with Q3's wrong initialisation.
    Mutation(
        "q3-kaiming-fan-out-knock-on-q5",
        "Q3",
        (
            edit(
                Q3_INIT,
                Q3_INIT.replace("kaiming_normal_(layer.weight)", 'kaiming_normal_(layer.weight, mode="fan_out")'),
            ),
        ),
        failing=("Q3.kaiming_init",),
        passing=("Q5.learns",),
    ),
    # Q4 -> Q5: a forward pass that cuts the graph would stop Q5's model from learning.
    Mutation(
        "q4-scores-detached-knock-on-q5",
        "Q4",
        (edit(Q4_BODY, Q4_BODY.replace("scores = self.fc(flatten(x))", "scores = self.fc(flatten(x)).detach()")),),
        failing=("Q4.gradient_parity",),
        passing=("Q5.learns", "Q5.optimizer_step"),
    ),
    # Q1 -> Q2: Q2's learning check runs the specified three_layer_convnet.
    Mutation(
        "q1-scores-detached-knock-on-q2",
        "Q1",
        (edit(Q1_FC, "    scores = (flatten(x).mm(fc_w) + fc_b).detach()\n"),),
        form="py",
        failing=("Q1.gradient_parity",),
        passing=("Q2.learns", "Q2.sgd_step"),
    ),
    # Training mode: dropout active only in model.train() changes what train_part34 trains.
    Mutation(
        "q4-dropout-in-training-mode-only",
        "Q4",
        (
            edit(
                Q4_BODY,
                Q4_BODY.replace(
                    "x = F.relu(self.conv2(x))", "x = F.dropout(F.relu(self.conv2(x)), p=0.5, training=self.training)"
                ),
            ),
        ),
        failing=("Q4.forward_parity",),
        says=("training mode",),
        passing=("Q4.output_shape",),
    ),
    Mutation(
        "q6-dropout-before-the-linear-layer",
        "Q6",
        (edit(Q6_SEQ, Q6_SEQ.replace("    Flatten(),\n", "    Flatten(),\n    nn.Dropout(0.5),\n")),),
        form="py",
        failing=("Q6.architecture", "Q6.parity"),
        says=("unexpected Dropout", "training mode"),
    ),
    # Dtype: the student's own training helpers cast batches to float32.
    Mutation(
        "q5-model-converted-to-double",
        "Q5",
        (edit(Q5_MODEL, Q5_MODEL + "model = model.double()\n"),),
        failing=("Q5.learns",),
        says=("float32", "float64", ".double()"),
    ),
    Mutation(
        "q2-fc-w-float64",
        "Q2",
        (
            edit(
                "fc_w = random_weight((channel_2 * 32 * 32, 10))",
                "fc_w = random_weight((channel_2 * 32 * 32, 10)).double().detach().requires_grad_()",
            ),
        ),
        failing=("Q2.shapes", "Q2.sgd_step", "Q2.learns"),
        says=("fc_w is float64",),
    ),
    # Messages derived from what actually differs.
    Mutation(
        "q1-channel-count-hard-coded",
        "Q1",
        (edit(Q1_FC, "    scores = x.view(x.shape[0], 16 * 32 * 32).mm(fc_w) + fc_b\n"),),
        failing=("Q1.any_batch_size",),
        says=("channel count hard-coded", "16 channels"),
        never_says=("batch size seems hard-coded",),
    ),
    Mutation(
        "q6-flatten-before-the-second-conv",
        "Q6",
        (
            edit(
                Q6_SEQ,
                Q6_SEQ.replace("    Flatten(),\n", "").replace(
                    "    nn.ReLU(),\n    nn.Conv2d(channel_1", "    nn.ReLU(),\n    Flatten(),\n    nn.Conv2d(channel_1"
                ),
            ),
        ),
        failing=("Q6.architecture",),
        says=("Flatten is at position 3; it must come after the second ReLU",),
        never_says=("missing",),
    ),
    Mutation(
        "q5-layers-in-a-plain-list",
        "Q5",
        (
            edit(
                Q5_MODEL,
                "class ListNet(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.layers = [nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1),"
                " nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 10)]\n\n"
                "    def forward(self, x):\n"
                "        for layer in self.layers:\n"
                "            x = layer(x)\n"
                "        return x\n\n\n"
                "model = ListNet()\n",
            ),
        ),
        failing=("Q5.model", "Q5.optimizer", "Q5.optimizer_step", "Q5.learns"),
        says=("optimizer got an empty parameter list", "nn.ModuleList"),
        never_says=("lr=0.01", "internal grader error"),
    ),
    Mutation(
        "q1-raises-name-error",
        "Q1",
        (edit(Q1_FC, "    scores = flatten(x).mm(fc_w) + fc_bias\n"),),
        failing=("Q1.output_shape", "Q1.forward_parity"),
        says=("NameError",),
        passing=("Q1.flatten_helper",),
    ),
]

CORRECT = [
    Mutation(
        "ok-forward-with-f-conv2d-on-the-module-weights",
        None,
        (
            edit(
                Q4_BODY,
                "        x = F.relu(F.conv2d(x, self.conv1.weight, self.conv1.bias, padding=2))\n"
                "        x = F.relu(F.conv2d(x, self.conv2.weight, self.conv2.bias, padding=1))\n"
                "        scores = F.linear(x.flatten(1), self.fc.weight, self.fc.bias)\n",
            ),
        ),
    ),
    Mutation(
        "ok-torch-flatten-and-matmul-operator",
        None,
        (edit(Q1_FC, "    scores = torch.flatten(x, start_dim=1) @ fc_w + fc_b\n"),),
    ),
    Mutation(
        "ok-reshape-and-functional-relu-module",
        None,
        (
            edit(CONV1, "    x = torch.relu(torch.nn.functional.conv2d(x, conv_w1, conv_b1, stride=1, padding=2))\n"),
            edit(Q4_BODY, Q4_BODY.replace("self.fc(flatten(x))", "self.fc(x.reshape(x.size(0), -1))")),
        ),
        form="py",
    ),
    Mutation(
        "ok-hand-computed-kaiming-std-and-other-layer-order",
        None,
        (
            edit(
                Q3_LAYERS + Q3_INIT,
                "        self.fc = nn.Linear(channel_2 * 32 * 32, num_classes)\n"
                "        self.conv1 = nn.Conv2d(in_channel, channel_1, 5, padding=2)\n"
                "        self.conv2 = nn.Conv2d(channel_1, channel_2, 3, padding=1)\n"
                "        for layer in (self.conv1, self.conv2, self.fc):\n"
                "            fan_in = layer.weight[0].numel()\n"
                "            nn.init.normal_(layer.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))\n"
                "            nn.init.zeros_(layer.bias)\n",
            ),
        ),
    ),
    Mutation(
        "ok-nn-flatten-and-padding-same",
        None,
        (
            edit(
                Q6_SEQ,
                Q6_SEQ.replace("Flatten(),", "nn.Flatten(),").replace(
                    "kernel_size=5, padding=2", "kernel_size=5, padding='same'"
                ),
            ),
        ),
    ),
    Mutation(
        "ok-harmless-extra-prints-and-keyword-arguments",
        None,
        (
            edit(Q1_FC, Q1_FC + '    print("scores", scores.shape)\n'),
            edit(
                Q5_OPT,
                Q5_OPT.replace(
                    "optim.SGD(model.parameters(), lr=learning_rate)",
                    "optim.SGD(params=model.parameters(), lr=3e-3, momentum=0)\nprint('PASSED all tests!')",
                ),
            ),
            edit(
                "fc_b = zero_weight((10,))",
                "fc_b = zero_weight((10,))\nprint([p.shape for p in (conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b)])",
            ),
        ),
        form="py",
    ),
    Mutation(
        "ok-leaf-parameters-made-by-hand",
        None,
        (
            edit(
                "conv_w1 = random_weight((channel_1, 3, 5, 5))",
                "conv_w1 = (torch.randn(channel_1, 3, 5, 5) * math.sqrt(2 / (3 * 5 * 5))).requires_grad_()",
            ),
            edit("fc_b = zero_weight((10,))", "fc_b = torch.zeros(10, requires_grad=True)"),
        ),
    ),
]


def apply(mutation: Mutation, script: str) -> str:
    """The filled template's script with the mutation's edits applied."""
    for old, new in mutation.edits:
        count = script.count(old)
        if count != 1:
            raise AssertionError(
                f"{mutation.name}: expected the text to edit once in the template, found it {count} times: {old!r}"
            )
        script = script.replace(old, new)
    return script
