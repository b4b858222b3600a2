"""Comparisons the checks share: numerical parity, initialisation statistics, and the
structural diff of two lists of layers. Each returns data and a sentence for humans."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import torch

from ..details import LayerRow, StdRow

# Forward and gradient parity run in float64 throughout: a correct answer agrees with
# the reference to about 1e-15.
PARITY_RTOL = 1e-9


@dataclass
class Parity:
    max_abs: float
    rel: float
    ok: bool

    def describe(self) -> str:
        return f"max abs error {self.max_abs:.3g}, relative error {self.rel:.3g}"


def parity(found: torch.Tensor, expected: torch.Tensor, *, rtol: float) -> Parity:
    """Max absolute error, and that error relative to the largest expected magnitude."""
    found, expected = found.double(), expected.double()
    if found.shape != expected.shape:
        return Parity(math.inf, math.inf, False)
    if not torch.isfinite(found).all():
        return Parity(math.inf, math.inf, False)
    max_abs = (found - expected).abs().max().item() if found.numel() else 0.0
    scale = expected.abs().max().item() if expected.numel() else 0.0
    rel = max_abs / max(scale, 1e-300)
    return Parity(max_abs, rel, rel <= rtol)


def shape_str(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


@dataclass
class StdTest:
    name: str
    found: float
    expected: float
    fan_in: int
    ok: bool

    @property
    def ratio(self) -> float:
        return self.found / self.expected if self.expected else math.inf

    def details(self) -> StdRow:
        return {
            "found": self.found,
            "expected": self.expected,
            "fan_in": self.fan_in,
            "ratio": self.ratio,
            "ok": self.ok,
        }

    def describe(self) -> str:
        text = (
            f"{self.name}: std {self.found:.4g}, expected {self.expected:.4g} "
            f"= sqrt(2 / {self.fan_in}) (ratio {self.ratio:.2f})"
        )
        if not self.ok:
            text += " — " + self.hint()
        return text

    def hint(self) -> str:
        r = self.ratio
        if abs(r - 1 / math.sqrt(6)) < 0.05:
            return "this is PyTorch's default initialisation; apply Kaiming normal (std sqrt(2 / fan_in))"
        if r > 3:
            return "far too large: is fan_in taken from the wrong dimension of the weight?"
        if r < 0.02:
            return "almost zero: was the weight left at zero or scaled twice?"
        return "not the Kaiming normal scale sqrt(2 / fan_in)"


def kaiming_std(name: str, weight: torch.Tensor, fan_in: int, *, rel_tol: float = 0.12) -> StdTest:
    """Test a weight against Kaiming normal, std sqrt(2 / fan_in).

    The sample std of n normal draws has a relative spread of about 1/sqrt(2n); the
    tolerance stays far above that (the smallest weight here has 2,400 entries: 1.4%)
    and far below PyTorch's default init (ratio 0.41), so the verdict is stable.
    """
    expected = math.sqrt(2.0 / fan_in)
    found = weight.double().std().item() if weight.numel() > 1 else 0.0
    ok = abs(found / expected - 1) <= max(rel_tol, 6 / math.sqrt(2 * weight.numel()))
    return StdTest(name, found, expected, fan_in, ok)


# -- layer lists ---------------------------------------------------------------------------


def canonical(layer: dict) -> dict:
    """The same layer written one way: padding="same" (stride 1) as its numbers."""
    c = layer.get("config", {})
    if layer.get("kind") == "Conv2d" and c.get("padding") == "same":
        k = c.get("kernel_size") or [1, 1]
        c = {**c, "padding": [(int(x) - 1) // 2 for x in k]}
        return {**layer, "config": c}
    return layer


def layer_str(layer: dict) -> str:
    """A layer as a person would write it: Conv2d(3, 32, kernel_size=5, padding=2)."""
    layer = canonical(layer)
    kind, c = layer["kind"], layer.get("config", {})

    def one(v):
        return v[0] if isinstance(v, list) and len(set(v)) == 1 else v

    if kind == "Conv2d":
        text = f"Conv2d({c.get('in_channels')}, {c.get('out_channels')}, kernel_size={one(c.get('kernel_size'))}"
        if one(c.get("stride")) not in (1, None):
            text += f", stride={one(c.get('stride'))}"
        text += f", padding={one(c.get('padding'))}"
        if c.get("bias") is False:
            text += ", bias=False"
        return text + ")"
    if kind == "Linear":
        text = f"Linear({c.get('in_features')}, {c.get('out_features')}"
        return text + (", bias=False)" if c.get("bias") is False else ")")
    if kind in ("MaxPool2d", "AvgPool2d"):
        return f"{kind}({one(c.get('kernel_size'))})"
    if "p" in c:
        return f"{kind}(p={c['p']})"
    if "dim" in c and c["dim"] is not None:
        return f"{kind}(dim={c['dim']})"
    return f"{kind}()"


def _short(layer: dict) -> str:
    """The name used in diff sentences: Conv2d(3, 32, 5), ReLU, Linear(16384, 10)."""
    kind, c = layer["kind"], layer.get("config", {})
    if kind == "Conv2d":
        k = c.get("kernel_size")
        k = k[0] if isinstance(k, list) else k
        return f"Conv2d({c.get('in_channels')}, {c.get('out_channels')}, {k})"
    if kind == "Linear":
        return f"Linear({c.get('in_features')}, {c.get('out_features')})"
    return kind


def normalized_kind(layer: dict) -> str:
    """Kinds that count as the same layer: any flatten module is a Flatten."""
    if "flatten" in layer["kind"].lower() or "flatten" in layer.get("class", "").lower():
        return "Flatten"
    return layer["kind"]


def _config_differences(expected: dict, found: dict) -> list[str]:
    found = canonical(found)
    diffs = []
    ce, cf = expected.get("config", {}), found.get("config", {})
    for key, want in ce.items():
        if key in ("padding_mode", "dilation", "groups", "end_dim", "start_dim") and key not in cf:
            continue
        have = cf.get(key)
        if _norm(have) != _norm(want):
            diffs.append(f"{key}={_norm(have)} (expected {_norm(want)})")
    return diffs


def _norm(v):
    if isinstance(v, list) and v and len(set(map(str, v))) == 1:
        return v[0]
    return v


def diff_layers(expected: list[dict], found: list) -> tuple[list[str], list[LayerRow]]:
    """Compare two layer lists; return sentences naming every difference, and rows for a
    side-by-side view ({"expected", "found", "status"})."""
    a = [normalized_kind(x) for x in expected]
    b = [normalized_kind(x) for x in found]
    problems: list[str] = []
    rows: list[LayerRow] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    moved = _diff_order(expected, found) if a != b and sorted(a) == sorted(b) else None
    if moved is not None:
        return moved

    def between(first: int, last: int) -> str:
        """Where the expected layers first..last-1 belong: between their neighbours."""
        before = _short(expected[first - 1]) if first > 0 else None
        after = _short(expected[last]) if last < len(expected) else None
        if before and after:
            return f"between {before} and {after}"
        if before:
            return f"after {before}"
        return f"before {after}" if after else ""

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                diffs = _config_differences(expected[i], found[j])
                if diffs and normalized_kind(expected[i]) != "Flatten":
                    problems.append(f"{_short(found[j])} has " + ", ".join(diffs))
                    rows.append({"expected": layer_str(expected[i]), "found": layer_str(found[j]), "status": "changed"})
                else:
                    rows.append({"expected": layer_str(expected[i]), "found": layer_str(found[j]), "status": "same"})
        elif tag == "delete":
            for i in range(i1, i2):
                problems.append(f"missing {_short(expected[i])} {between(i1, i2)}".rstrip())
                rows.append({"expected": layer_str(expected[i]), "found": "", "status": "missing"})
        elif tag == "insert":
            for j in range(j1, j2):
                where = f"after {_short(found[j - 1])}" if j > 0 else "at the start"
                problems.append(f"unexpected {layer_str(found[j])} {where}")
                rows.append({"expected": "", "found": layer_str(found[j]), "status": "extra"})
        else:  # replace
            for k in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + k, j1 + k
                if i < i2 and j < j2:
                    problems.append(f"found {layer_str(found[j])} where {layer_str(expected[i])} was expected")
                    rows.append({"expected": layer_str(expected[i]), "found": layer_str(found[j]), "status": "changed"})
                elif i < i2:
                    problems.append(f"missing {_short(expected[i])} {between(i1, i2)}".rstrip())
                    rows.append({"expected": layer_str(expected[i]), "found": "", "status": "missing"})
                else:
                    problems.append(f"unexpected {layer_str(found[j])}")
                    rows.append({"expected": "", "found": layer_str(found[j]), "status": "extra"})
    return problems, rows


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")


def _moves(kinds: list[str], found_kinds: list[str]) -> list[tuple[int, int]]:
    """Every (j, t) such that moving the found layer at index j to index t gives the
    expected order of kinds."""
    moves = []
    for j in range(len(found_kinds)):
        rest = found_kinds[:j] + found_kinds[j + 1 :]
        for t in range(len(kinds)):
            if t != j and [*rest[:t], found_kinds[j], *rest[t:]] == kinds:
                moves.append((j, t))
    return moves


def _moved(found: list[dict], j: int, t: int) -> list[dict]:
    rest = found[:j] + found[j + 1 :]
    return [*rest[:t], found[j], *rest[t:]]


def _diff_order(expected: list[dict], found: list[dict]) -> tuple[list[str], list[LayerRow]] | None:
    """One layer in the wrong place: say where it is and where it belongs ("Flatten is at
    position 3; it must come after the second ReLU") rather than calling present layers
    missing. None when no single move puts the layers in order."""
    kinds = [normalized_kind(x) for x in expected]
    moves = _moves(kinds, [normalized_kind(x) for x in found])
    if not moves:
        return None

    def differences(move: tuple[int, int]) -> int:  # the move that explains the configs too
        return sum(bool(_config_differences(e, f)) for e, f in zip(expected, _moved(found, *move)))

    j, t = min(moves, key=differences)
    if t == 0:
        place = "it must come first"
    else:
        nth = kinds[:t].count(kinds[t - 1])
        place = f"it must come after the {_ORDINALS[nth - 1] if nth <= len(_ORDINALS) else f'{nth}th'} {kinds[t - 1]}"
    problems = [f"{kinds[t]} is at position {j + 1}; {place}"]
    for e, f in zip(expected, _moved(found, j, t)):
        diffs = _config_differences(e, f)
        if diffs and normalized_kind(e) != "Flatten":
            problems.append(f"{_short(f)} has " + ", ".join(diffs))
    rows: list[LayerRow] = [
        {
            "expected": layer_str(e),
            "found": layer_str(f),
            "status": "same" if normalized_kind(e) == normalized_kind(f) else "moved",
        }
        for e, f in zip(expected, found)
    ]
    return problems, rows


def map_state(reference: dict[str, torch.Tensor], student_shapes: dict[str, list[int]]) -> dict[str, str] | None:
    """Pair each student parameter with a reference parameter of the same shape, in
    order, so identical weights can be loaded whatever the student named their layers.
    None if the shapes do not pair up one to one."""
    unused = list(reference.items())
    mapping = {}
    for name, shape in student_shapes.items():
        for k, (ref_name, tensor) in enumerate(unused):
            if list(tensor.shape) == list(shape):
                mapping[name] = ref_name
                del unused[k]
                break
        else:
            return None
    return mapping if not unused else None
