"""What a check reports beside its message: typed parts, shared by the checks that build
them and the reports that draw them.

A check's ``details`` (``Outcome.details``, then ``CheckResult.details`` and results.json)
is a dict of parts, each a plain JSON dict with a ``kind``, keyed by that kind:

    {"parity": {"kind": "parity", "max_abs_err": 3e-9, "rel_err": 1e-10, "tolerance": 1e-6},
     "substitution": {"kind": "substitution", "substituted": {...}}}

Checks build parts with the functions below (``of`` gathers them); views.py draws each
part by its kind. Details written before parts existed (flat keys such as ``rel_err``,
``diff`` or ``required``/``found``) are read through ``parts``, which converts them.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

# -- the kinds of parts ----------------------------------------------------------------------


class _Parity(TypedDict):
    kind: Literal["parity"]


class Parity(_Parity, total=False):
    """How far the student's numbers are from the reference's (relative errors are
    judged against ``tolerance``)."""

    max_abs_err: float
    rel_err: float
    grad_rel_err: float
    train_mode_rel_err: float
    tolerance: float


class TensorError(TypedDict):
    max_abs_err: float
    rel_err: float


class TensorErrors(TypedDict):
    """Parity tensor by tensor (the gradient of each parameter)."""

    kind: Literal["tensors"]
    tensors: dict[str, TensorError]


class LayerRow(TypedDict):
    expected: str
    found: str
    status: str  # same | changed | missing | extra | moved


class LayerDiff(TypedDict):
    """Expected and found layers, aligned (checks/compare.diff_layers)."""

    kind: Literal["layer_diff"]
    rows: list[LayerRow]


class LayerLists(TypedDict):
    """The expected and the found layer lists, compared position by position."""

    kind: Literal["layer_lists"]
    expected: list[str]
    found: list[str]


class Settings(TypedDict):
    """An optimizer's required settings against those found."""

    kind: Literal["settings"]
    type: str
    required: dict[str, Any]
    found: dict[str, Any]


class StdRow(TypedDict):
    found: float
    expected: float
    fan_in: int
    ratio: float
    ok: bool


class InitStd(TypedDict):
    """The standard deviation of each initialised weight against Kaiming's."""

    kind: Literal["init_std"]
    std: dict[str, StdRow]


class ErrorInfo(TypedDict, total=False):
    """An exception raised by the student's code, as the worker reports it."""

    type: str
    message: str
    traceback: str
    cell: int | None
    line: int | None


class CodeError(TypedDict):
    kind: Literal["error"]
    error: ErrorInfo


class InternalError(TypedDict):
    """A bug of the grader in a check: its traceback, for instructors only."""

    kind: Literal["internal"]
    traceback: str


class Substitution(TypedDict):
    """What a check ran with in place of the student's earlier answers (one mistake
    costs points on its own question): part -> what stood in for it."""

    kind: Literal["substitution"]
    substituted: dict[str, str]


class Learning(TypedDict):
    """A short training run on real images: held-out loss and accuracy before and after."""

    kind: Literal["learning"]
    loss_before: float
    loss_after: float
    accuracy_before: float
    accuracy_after: float
    steps: int
    batch_size: int


class Measurement(TypedDict, total=False):
    """Question 7's accuracy measurement (the full record is the result's ``challenge``)."""

    kind: Literal["measurement"]
    val_accuracy: float
    val_ci: list[float]
    test_accuracy: float
    test_ci: list[float]
    margin: float
    mode: str
    eval_set: dict[str, Any]
    perturbed: dict[str, Any]


class Values(TypedDict):
    """Any other named values, shown as a table."""

    kind: Literal["values"]
    values: dict[str, Any]


Part = (
    Parity
    | TensorErrors
    | LayerDiff
    | LayerLists
    | Settings
    | InitStd
    | CodeError
    | InternalError
    | Substitution
    | Learning
    | Measurement
    | Values
)
# kind -> Part. Values are Any: details read back from JSON (or in the flat form of
# before) are plain dicts until ``parts`` reads them.
Details = dict[str, Any]

KINDS = (
    "parity",
    "tensors",
    "layer_diff",
    "layer_lists",
    "settings",
    "init_std",
    "error",
    "internal",
    "substitution",
    "learning",
    "measurement",
    "values",
)

# -- building them ---------------------------------------------------------------------------


def of(*parts: Part) -> Details:
    """A check's details from its parts, each under its kind."""
    out: Details = {}
    for part in parts:
        key: str = part["kind"]
        n = 2
        while key in out:  # a second part of one kind keeps both
            key, n = f"{part['kind']}_{n}", n + 1
        out[key] = part
    return out


def parity_figures(
    *,
    rel_err: float,
    max_abs_err: float | None = None,
    tolerance: float | None = None,
    grad_rel_err: float | None = None,
    train_mode_rel_err: float | None = None,
) -> Parity:
    part: Parity = {"kind": "parity"}
    if max_abs_err is not None:
        part["max_abs_err"] = max_abs_err
    part["rel_err"] = rel_err
    if grad_rel_err is not None:
        part["grad_rel_err"] = grad_rel_err
    if train_mode_rel_err is not None:
        part["train_mode_rel_err"] = train_mode_rel_err
    if tolerance is not None:
        part["tolerance"] = tolerance
    return part


def tensor_errors(tensors: dict[str, TensorError]) -> TensorErrors:
    return {"kind": "tensors", "tensors": tensors}


def layer_diff(rows: list[LayerRow]) -> LayerDiff:
    return {"kind": "layer_diff", "rows": rows}


def layer_lists(expected: list[str], found: list[str]) -> LayerLists:
    return {"kind": "layer_lists", "expected": expected, "found": found}


def settings_found(type: str, required: dict[str, Any], found: dict[str, Any]) -> Settings:
    return {"kind": "settings", "type": type, "required": required, "found": found}


def init_std(std: dict[str, StdRow]) -> InitStd:
    return {"kind": "init_std", "std": std}


def student_error(info: ErrorInfo | dict[str, Any]) -> CodeError:
    return {"kind": "error", "error": info}  # type: ignore[typeddict-item]  # the worker's reply, as sent


def internal_error(traceback: str) -> InternalError:
    return {"kind": "internal", "traceback": traceback}


def substitution(substituted: dict[str, str]) -> Substitution:
    return {"kind": "substitution", "substituted": substituted}


def learning_run(
    *, loss_before: float, loss_after: float, accuracy_before: float, accuracy_after: float, steps: int, batch_size: int
) -> Learning:
    return {
        "kind": "learning",
        "loss_before": loss_before,
        "loss_after": loss_after,
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
        "steps": steps,
        "batch_size": batch_size,
    }


def measurement(record: dict[str, Any]) -> Measurement:
    """The figures of Question 7's evaluation record that explain its score."""
    keys = ("val_accuracy", "val_ci", "test_accuracy", "test_ci", "margin", "mode", "eval_set", "perturbed")
    return {"kind": "measurement", **{k: record.get(k) for k in keys}}  # type: ignore[typeddict-item]


def values(**named: Any) -> Values:
    return {"kind": "values", "values": named}


# -- reading them ----------------------------------------------------------------------------


def parts(details: Details | None) -> list[Part]:
    """The parts of a check's details, in order. Entries that are not parts (details
    written before parts existed, or a value added by hand) are converted by their keys."""
    details = details or {}
    found: list[Part] = []
    legacy: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, dict) and value.get("kind") in KINDS:
            found.append(value)  # type: ignore[arg-type]  # a part: its kind says which
        else:
            legacy[key] = value
    return found + _from_flat(legacy) if legacy else found


_PARITY_KEYS = ("max_abs_err", "rel_err", "grad_rel_err", "tolerance")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _from_flat(rest: dict[str, Any]) -> list[Part]:
    """Parts from details as flat keys (the format before parts): the keys each kind used."""
    rest = dict(rest)
    out: list[Part] = []
    figures = {k: rest.pop(k) for k in _PARITY_KEYS if _number(rest.get(k))}
    if figures:
        out.append({"kind": "parity", **figures})  # type: ignore[arg-type]
    tensors = {
        k: v
        for k, v in rest.items()
        if isinstance(v, dict) and ("max_abs_err" in v or "rel_err" in v) and "kind" not in v
    }
    if tensors:
        for k in tensors:
            rest.pop(k)
        out.append(tensor_errors(tensors))  # type: ignore[arg-type]  # as read back from JSON
    if isinstance(rest.get("diff"), list):
        out.append(layer_diff([r for r in rest.pop("diff") if isinstance(r, dict)]))  # type: ignore[misc]
    if isinstance(rest.get("expected"), list) and isinstance(rest.get("found"), list):
        out.append(layer_lists(rest.pop("expected"), rest.pop("found")))
    if isinstance(rest.get("required"), dict) and isinstance(rest.get("found"), dict):
        required, found = rest.pop("required"), rest.pop("found")
        out.append(settings_found(str(rest.pop("type", "")), required, found))
    if isinstance(rest.get("std"), dict):
        out.append(init_std(rest.pop("std")))
    if isinstance(rest.get("error"), dict):
        out.append(student_error(rest.pop("error")))
    if "traceback" in rest:
        out.append(internal_error(str(rest.pop("traceback") or "")))
    if rest:
        out.append(values(**rest))
    return out
