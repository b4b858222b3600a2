"""How the shipped example submissions in examples/ are made, and what each must score.

The filled and empty templates come from ``grade assign``; the others are the filled
template exported as students export it (``jupyter nbconvert --to script``, Colab's
"Download .py"), one-bug variants of it (from the mutation corpus), a notebook in the
public CS231n-style layout, and a broken file. ``python tests/examples_source.py`` rewrites
them (``--train`` also retrains the filled template's checkpoint, a few minutes); a test
fails if the committed files differ from what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
sys.path[:0] = [str(HERE), str(HERE.parent)]

import cs231n_style  # noqa: E402
import mutations  # noqa: E402
import nbformat  # noqa: E402
import representations  # noqa: E402

from grader.assign import render_script, script_to_notebook  # noqa: E402

# Example name -> (mutation from the corpus, form, the questions that lose points).
BUGGY = {
    "missing_relu_q6": ("q6-real-case-first-relu-missing", "ipynb", {"Q6"}),
    "fan_in_wrong_axis_q5": ("q5-weights-overwritten-with-fan-in-from-the-wrong-axis", "py", {"Q5"}),
    "hard_coded_batch_q1": ("q1-view-64", "ipynb", {"Q1"}),
}
# The filled template as students export it: example name -> representation.
EXPORTED = {"filled_template_nbconvert": "nbconvert", "filled_template_colab": "colab"}
# What every example must score: "full", "zero", or the set of questions losing points.
EXPECTED = {
    "filled_template": "full",
    "empty_template": "zero",
    "cs231n_layout": "full",
    **{name: "full" for name in EXPORTED},
    "broken_notebook": "invalid",
    **{name: lost for name, (_, _, lost) in BUGGY.items()},
}
# Folders hold copies of one checkpoint, not links: the grader refuses a linked file in a
# submission (it could point anywhere on the grading machine).
TEMPLATE_CHECKPOINT = EXAMPLES / "filled_template" / "best_model.pt"
TYPICAL_CHECKPOINT = HERE / "fixtures" / "typical_10_epochs.pt"


def files() -> dict[Path, str | Path]:
    """Every example file (relative to examples/) and its content, or for checkpoints the
    file it is a copy of. The template's own files are written by grade assign."""
    script = render_script(filled=True)
    out: dict[Path, str | Path] = {}
    for name, (mutation_name, form, _) in BUGGY.items():
        mutation = next(m for m in mutations.BUGS if m.name == mutation_name)
        text = mutations.apply(mutation, script)
        if form == "py":
            out[Path(name) / "homework.py"] = text
        else:
            out[Path(name) / "homework.ipynb"] = nbformat.writes(script_to_notebook(text)) + "\n"
        out[Path(name) / "best_model.pt"] = TEMPLATE_CHECKPOINT
    for name, representation in EXPORTED.items():
        out[Path(name) / "cifar10_pytorch.py"] = representations.convert(script, ".py", representation)[1]
        out[Path(name) / "best_model.pt"] = TEMPLATE_CHECKPOINT
    out[Path("cs231n_layout") / "PyTorch.ipynb"] = nbformat.writes(cs231n_style.build(edition=2022)) + "\n"
    out[Path("cs231n_layout") / "best_model.pt"] = TYPICAL_CHECKPOINT
    out[Path("broken_notebook.ipynb")] = '{"cells": [{"cell_type": "code", "source": "print(1)"\n'
    return out


def train_reference_checkpoint(data: str | None = None) -> None:
    """examples/filled_template/best_model.pt: the answer key's Question 7 model, trained
    with its full schedule on the 49,000 training images (a few minutes on a CPU)."""
    import torch

    from grader.data import load_cifar10
    from reference_solution import ChallengeNet, evaluate, train_challenge

    cifar10 = load_cifar10(data or str(HERE.parents[1] / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    train_idx, val_idx = cifar10.split()
    model = ChallengeNet()
    train_challenge(model, cifar10.train_images[train_idx], cifar10.train_labels[train_idx])
    val = evaluate(model, cifar10.train_images[val_idx], cifar10.train_labels[val_idx])
    test = evaluate(model, cifar10.test_images, cifar10.test_labels)
    print(f"validation {val:.2%}, test {test:.2%}")
    torch.save(model.state_dict(), EXAMPLES / "filled_template" / "best_model.pt")


def write() -> None:
    for rel, content in files().items():
        path = EXAMPLES / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            if path.is_symlink():
                path.unlink()
            path.write_bytes(content.read_bytes())
        else:
            path.write_text(content)


if __name__ == "__main__":
    if "--train" in sys.argv:
        train_reference_checkpoint()
    write()
