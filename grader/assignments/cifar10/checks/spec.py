"""The architectures the assignment specifies, as data in the form ``describe_module``
gives for a student's model. Structural checks compare against these, so they need
neither the reference solution nor any student code; a test keeps the reference
solution in agreement with them. Below them, the specification's values (channels,
learning rates, Question 6's momentum, Question 7's threshold and epoch limit) as one
``Variant``, which an instructor's variant file overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def conv2d(in_channels: int, out_channels: int, kernel: int, padding: int) -> dict:
    config = {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "kernel_size": [kernel, kernel],
        "stride": [1, 1],
        "padding": [padding, padding],
        "dilation": [1, 1],
        "groups": 1,
        "padding_mode": "zeros",
        "bias": True,
    }
    return {"kind": "Conv2d", "class": "Conv2d", "config": config}


def linear(in_features: int, out_features: int) -> dict:
    return {
        "kind": "Linear",
        "class": "Linear",
        "config": {"in_features": in_features, "out_features": out_features, "bias": True},
    }


def relu() -> dict:
    return {"kind": "ReLU", "class": "ReLU", "config": {}}


def flatten() -> dict:
    return {"kind": "Flatten", "class": "Flatten", "config": {}}


def three_layer_convnet(
    in_channel: int, channel_1: int, channel_2: int, num_classes: int, size: int = 32
) -> list[dict]:
    """The parameterised layers of ThreeLayerConvNet (its ReLUs are functional)."""
    return [
        conv2d(in_channel, channel_1, 5, 2),
        conv2d(channel_1, channel_2, 3, 1),
        linear(channel_2 * size * size, num_classes),
    ]


def sequential_convnet(channel_1: int = 32, channel_2: int = 16, num_classes: int = 10) -> list[dict]:
    """Question 6: every layer of the Sequential, in order."""
    return [
        conv2d(3, channel_1, 5, 2),
        relu(),
        conv2d(channel_1, channel_2, 3, 1),
        relu(),
        flatten(),
        linear(channel_2 * 32 * 32, num_classes),
    ]


# -- the specification's values, and the variants an instructor makes of them --------------
#
# A course changes the homework every term (public solutions exist for the standard one).
# Everything the checks, the answer key, the template and the rubric take from the
# specification is one ``Variant``; the default is the standard homework. A variant file
# (TOML, ``EXAMPLE``) overrides some values.

EXAMPLE = """\
channel_1 = 64        # the three-layer ConvNet's channels (Questions 2, 3, 5 and 6); default 32
channel_2 = 32        # default 16
[Q2]
lr = 3e-3             # the barebones learning rate
[Q5]
lr = 5e-3             # plain SGD's learning rate; default 3e-3
[Q6]
lr = 1e-2
momentum = 0.8        # default 0.9
nesterov = true
[Q7]
threshold = 0.72      # validation accuracy for full points, as a fraction; default 0.70
epochs = 8            # the most epochs the challenge may train; default 10
"""


class VariantError(Exception):
    """A variant file that cannot be read or asks for something the homework cannot be."""


@dataclass(frozen=True)
class Barebones:
    """Question 2: the learning rate train_part2 is called with."""

    lr: float = 3e-3


@dataclass(frozen=True)
class ModuleAPI:
    """Question 5: plain SGD (no momentum) with this learning rate."""

    lr: float = 3e-3


@dataclass(frozen=True)
class SequentialAPI:
    """Question 6: SGD with these settings."""

    lr: float = 1e-2
    momentum: float = 0.9
    nesterov: bool = True


@dataclass(frozen=True)
class Challenge:
    """Question 7: the accuracy that earns full points, and the most epochs of training."""

    threshold: float = 0.70
    epochs: int = 10


# The answer key's Question 7 trains this many epochs (reference_solution.CHALLENGE_EPOCHS)
# and reaches about 84%: a variant must leave it within the rules, with a margin.
ANSWER_KEY_EPOCHS = 6
MAX_THRESHOLD = 0.80


@dataclass(frozen=True)
class Variant:
    """The values of the specification; ``Variant()`` is the standard homework."""

    channel_1: int = 32
    channel_2: int = 16
    q2: Barebones = Barebones()
    q5: ModuleAPI = ModuleAPI()
    q6: SequentialAPI = SequentialAPI()
    q7: Challenge = Challenge()

    @property
    def convnet_args(self) -> tuple[int, int, int, int]:
        """ThreeLayerConvNet's arguments: in_channel, channel_1, channel_2, num_classes."""
        return (3, self.channel_1, self.channel_2, 10)

    @property
    def q5_sgd(self) -> dict[str, float | bool]:
        return {"lr": self.q5.lr, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "dampening": 0.0}

    @property
    def q6_sgd(self) -> dict[str, float | bool]:
        q6 = self.q6
        return {"lr": q6.lr, "momentum": q6.momentum, "nesterov": q6.nesterov, "weight_decay": 0.0, "dampening": 0.0}

    def words(self) -> dict[str, str]:
        """The values as the homework's text writes them (check titles, template, rubric)."""
        q6 = self.q6
        sgd = [f"learning rate {number(q6.lr)}"] + ([f"momentum {q6.momentum:g}"] if q6.momentum else [])
        sgd += ["Nesterov momentum"] if q6.nesterov else []
        return {
            "channel_1": str(self.channel_1),
            "channel_2": str(self.channel_2),
            "convnet": "ThreeLayerConvNet({}, {}, {}, {})".format(*self.convnet_args),
            "q2_lr": number(self.q2.lr),
            "q5_lr": number(self.q5.lr),
            "q6_lr": number(q6.lr),
            "q6_momentum": f"{q6.momentum:g}",
            "q6_nesterov": str(q6.nesterov),
            "q6_sgd": ", ".join(sgd[:-1]) + " and " + sgd[-1] if len(sgd) > 1 else sgd[0],
            "q6_sgd_short": ", ".join([f"lr {number(q6.lr)}"] + ([f"momentum {q6.momentum:g}"] if q6.momentum else []))
            + (" and Nesterov" if q6.nesterov else ""),
            "q7_threshold": f"{100 * self.q7.threshold:g}%",
            "q7_epochs": str(self.q7.epochs),
        }

    def title(self, text: str) -> str:
        """A check's title with the values filled in: "learning rate is {q2_lr}"."""
        return text.format_map(self.words())

    def changes(self) -> dict[str, object]:
        """What differs from the standard homework, as dotted keys ("Q6.momentum": 0.8)."""
        return {k: v for k, v in _flat(self).items() if _flat(DEFAULT)[k] != v}


DEFAULT = Variant()


def variant_of(ctx) -> Variant:
    """The variant a check grades against: the one the grading run was given, else the
    standard homework."""
    return getattr(ctx, "variant", None) or DEFAULT


def number(x: float) -> str:
    """A learning rate as the homework writes it: 3e-3, 1e-2, 2.5e-3 (1 for 1.0)."""
    if x == 0 or 1e-1 <= abs(x) < 1e3:
        return f"{x:g}"
    mantissa, exponent = f"{x:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


_SECTIONS = {"Q2": ("q2", Barebones), "Q5": ("q5", ModuleAPI), "Q6": ("q6", SequentialAPI), "Q7": ("q7", Challenge)}
_TOP = ("channel_1", "channel_2")


def _flat(variant: Variant) -> dict[str, object]:
    out: dict[str, object] = {k: getattr(variant, k) for k in _TOP}
    for section, (attr, _) in _SECTIONS.items():
        for key, value in dataclasses.asdict(getattr(variant, attr)).items():
            out[f"{section}.{key}"] = value
    return out


def _typed(where: str, value: object, want: type) -> object:
    """``value`` as ``want`` (an int is a float too), or VariantError naming the key."""
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    names = {float: "a number", int: "a whole number", bool: "true or false"}
    raise VariantError(f"{where} must be {names[want]}, not {value!r}")


def variant_from_dict(doc: dict, *, source: str = "the variant") -> Variant:
    """A Variant from a parsed variant file; VariantError for unknown keys, wrong types and
    values the homework cannot have."""
    known = [*_TOP, *(f"[{s}]" for s in _SECTIONS)]
    top: dict[str, typing.Any] = {}
    sections: dict[str, typing.Any] = {}
    for key, value in doc.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise VariantError(f"{source}: {key} must be a table ([{key}] followed by its keys)")
            cls = _SECTIONS[key][1]
            fields = {f.name: f for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise VariantError(
                    f"{source}: unknown key(s) in [{key}]: {', '.join(unknown)} (known: {', '.join(fields)})"
                )
            kinds = typing.get_type_hints(cls)
            sections[_SECTIONS[key][0]] = cls(
                **{k: _typed(f"{source}: [{key}] {k}", v, kinds[k]) for k, v in value.items()}
            )
        elif key in _TOP:
            top[key] = _typed(f"{source}: {key}", value, int)
        else:
            raise VariantError(f"{source}: unknown key {key!r} (known: {', '.join(known)})")
    variant = Variant(**top, **sections)
    problems = _problems(variant)
    if problems:
        raise VariantError(f"{source}: " + "; ".join(problems))
    return variant


def _problems(v: Variant) -> list[str]:
    """Values the homework cannot have, in words."""
    problems = []
    for key in _TOP:
        if not 1 <= getattr(v, key) <= 512:
            problems.append(f"{key} must be between 1 and 512 channels, not {getattr(v, key)}")
    for section, lr in (("Q2", v.q2.lr), ("Q5", v.q5.lr), ("Q6", v.q6.lr)):
        if not (0 < lr <= 1 and math.isfinite(lr)):
            problems.append(f"[{section}] lr must be above 0 and at most 1, not {lr:g}")
    if not 0 <= v.q6.momentum < 1:
        problems.append(f"[Q6] momentum must be at least 0 and below 1, not {v.q6.momentum:g}")
    elif v.q6.nesterov and v.q6.momentum == 0:
        problems.append("[Q6] nesterov = true needs a momentum above 0 (PyTorch's SGD refuses it)")
    if v.q7.threshold >= 1 and v.q7.threshold <= 100:
        problems.append(f"[Q7] threshold is a fraction: {v.q7.threshold / 100:g} for {v.q7.threshold:g}%")
    elif not 0.1 < v.q7.threshold <= MAX_THRESHOLD:
        problems.append(
            f"[Q7] threshold must be above 0.1 (chance) and at most {MAX_THRESHOLD:g}, where the answer key's "
            f"model (about 84%) still passes with a margin; not {v.q7.threshold:g}"
        )
    if not ANSWER_KEY_EPOCHS <= v.q7.epochs <= 100:
        problems.append(
            f"[Q7] epochs must be between {ANSWER_KEY_EPOCHS} (the answer key's Question 7 trains "
            f"{ANSWER_KEY_EPOCHS} epochs) and 100, not {v.q7.epochs}"
        )
    return problems


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        text = number(value)
        return text if any(c in text for c in ".e") else text + ".0"
    return str(value)


def load_variant(path: str | Path | None) -> Variant:
    """The variant in the TOML file at ``path`` (the standard homework when None)."""
    if path is None:
        return DEFAULT
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise VariantError(f"cannot read the variant {path}: {exc}") from None
    return variant_from_dict(doc, source=str(path))


def variant_toml(variant: Variant) -> str:
    """The variant file that makes ``variant``: every value, so it documents itself."""
    lines = [
        "# A variant of the CIFAR-10 homework: `grade assign --variant FILE --out DIR` makes its template,",
        "# answer key example and rubric; `grade SUBMISSIONS --variant FILE` grades against it.",
        f"channel_1 = {variant.channel_1}",
        f"channel_2 = {variant.channel_2}",
    ]
    for section, (attr, _) in _SECTIONS.items():
        lines += ["", f"[{section}]"]
        for key, value in dataclasses.asdict(getattr(variant, attr)).items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


# -- the variant's rubric: Question 7's threshold lives in the rubric ------------------------

_Q7_TITLE = re.compile(r'(?m)^(title = "Open-ended challenge: )[\d.]+%( validation accuracy")$')
_Q7_THRESHOLD = re.compile(r"full_at = [\d.]+, zero_at = [\d.]+")


def _fraction(x: float) -> str:
    return f"{x:.2f}" if round(x, 2) == x else repr(x)


def _zero_at(threshold: float, default: float) -> float:
    """The ramp's bottom for a threshold: the rubric's, or 10 points below a lower threshold."""
    return min(default, round(threshold - 0.10, 4))


def variant_rubric_text(text: str, variant: Variant) -> str:
    """The rubric ``text`` (the shipped rubric.toml) with Question 7's threshold and title
    set to the variant's."""
    t = variant.q7.threshold
    text, titled = _Q7_TITLE.subn(rf"\g<1>{variant.words()['q7_threshold']}\g<2>", text)
    text, set_at = _Q7_THRESHOLD.subn(f"full_at = {_fraction(t)}, zero_at = {_fraction(_zero_at(t, 0.60))}", text)
    if titled != 1 or set_at != 1:
        raise ValueError("the rubric's Question 7 title or threshold line is not where the variant expects it")
    return text


def rubric_for_variant(rubric, variant: Variant, *, explicit: bool):
    """The rubric to grade ``variant`` with. A rubric the instructor gave (``explicit``)
    must already hold the variant's Question 7 threshold (the one ``grade assign
    --variant`` wrote does); the shipped one gets it, as that file would."""
    t = variant.q7.threshold
    if explicit:
        if not math.isclose(rubric.threshold.full_at, t):
            raise VariantError(
                f"the rubric {rubric.path} sets Question 7's threshold to full_at = {rubric.threshold.full_at:g}, "
                f"the variant to {t:g}: use the rubric `grade assign --variant` wrote, or set full_at = {t:g}"
            )
        return rubric
    if variant == DEFAULT:
        return rubric
    threshold = dataclasses.replace(rubric.threshold, full_at=t, zero_at=_zero_at(t, rubric.threshold.zero_at))
    title = _Q7_TITLE.sub(rf"\g<1>{variant.words()['q7_threshold']}\g<2>", f'title = "{rubric.titles["Q7"]}"')
    digest = hashlib.sha256(f"{rubric.sha256}\n{variant_toml(variant)}".encode()).hexdigest()
    return dataclasses.replace(
        rubric,
        titles={**rubric.titles, "Q7": title[len('title = "') : -1]},
        threshold=threshold,
        sha256=digest,
    )
