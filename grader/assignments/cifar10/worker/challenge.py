"""Worker side of Question 7: the student's model evaluated with a checkpoint, or
retrained with the student's own training code on images the grader supplies.

Predictions go back to the grader, never accuracies: the labels of the images being
predicted stay in the grader's process.
"""

from __future__ import annotations

import contextlib
import io
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from grader.worker import runtime
from grader.worker.probes import describe_module, probe
from grader.worker.runtime import Runtime

# Prefixes that wrappers add to state_dict keys (DataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def q7_model(rt: Runtime, handle: str | None = None) -> nn.Module:
    """The Question 7 model: a retrained one, else best_model, else what Q7 trained."""
    if handle:
        return rt.handles[handle]
    candidates = [rt.ns.get("best_model")]
    capture = rt.capture_for("Q7")
    if capture is not None:
        candidates.append(capture.objects.get("model"))
    candidates.append(rt.ns.get("model"))
    for model in candidates:
        if isinstance(model, nn.Module):
            return model
    raise LookupError(
        "no Question 7 model: best_model is not an nn.Module and nothing was trained in the Question 7 cell"
    )


@probe
def q7_describe(rt: Runtime) -> dict:
    try:
        model = q7_model(rt)
    except LookupError as exc:
        return {"found": False, "reason": str(exc)}
    captures = rt.captures_for("Q7")
    epochs = [c.objects.get("epochs") for c in captures if c.kind == "train_part34"]
    return {
        "found": True,
        "model": describe_module(model),
        "trained_with": "train_part34" if epochs else "own code",
        "epochs": [e for e in epochs if isinstance(e, int)],
        "parameters": sum(p.numel() for p in model.parameters()),
        "unusual_state": unusual_state(model),
        "training_data": training_data(rt),
    }


# Cap on the index runs reported for a loader: a notebook's subset is one or two ranges.
_MAX_RUNS = 1000


def unusual_state(model: nn.Module) -> dict:
    """The state a model carries besides what ordinary layers use: buffers registered by
    modules that are not torch.nn's own (torch.nn's are BatchNorm statistics and the like),
    and tensors, arrays and containers kept as plain attributes. A lookup table of public
    images lives there; an ordinary ConvNet has none of it."""
    buffers, attributes, names = 0, 0, []
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        if not type(module).__module__.startswith("torch.nn."):
            for name, buffer in module.named_buffers(recurse=False):
                buffers += buffer.numel()
                names.append(prefix + name)
        for name, value in vars(module).items():
            if name.startswith("_") or name == "training":
                continue
            size = _size(value)
            if size:
                attributes += size
                names.append(prefix + name)
    return {"buffer_elements": buffers, "attribute_elements": attributes, "names": names[:8]}


def _size(value) -> int:
    """Elements held by an attribute: a tensor's or array's numel, a container's length."""
    if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
        return value.numel()
    if type(value).__name__ == "ndarray":
        return int(getattr(value, "size", 0))
    if isinstance(value, (dict, list, tuple, set, frozenset)) and len(value) > 16:
        return len(value)
    return 0


def training_data(rt: Runtime) -> dict:
    """Which images the notebook's ``loader_train`` draws: a subset of torchvision's
    CIFAR-10 (as index runs), or the training part of the grader's split. A claim about
    the notebook's code, not about how the checkpoint was really trained."""
    loader = rt.ns.get("loader_train")
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, runtime.FakeCIFAR10):
        sampler = getattr(loader, "sampler", None)
        indices = getattr(sampler, "indices", None)
        if indices is None:
            indices = range(len(dataset))  # a plain or shuffled loader draws every image
        runs = _runs(indices)
        if runs is None:
            return {"source": "unknown"}
        return {"source": "torchvision", "train": bool(dataset.train), "runs": runs}
    if isinstance(dataset, torch.utils.data.Subset) and isinstance(dataset.dataset, runtime.FakeCIFAR10):
        runs = _runs(dataset.indices)
        if runs is None:
            return {"source": "unknown"}
        return {"source": "torchvision", "train": bool(dataset.dataset.train), "runs": runs}
    val = getattr(rt.ns.get("loader_val"), "dataset", None)
    if _is_grader_split(dataset, val):
        return {"source": "grader split", "num_val": len(val.labels)}
    return {"source": "unknown"}


def _runs(indices) -> list[list[int]] | None:
    """A loader's indices as [start, stop) runs, or None if they are not plain integers or
    fragment into too many runs."""
    from grader.data import index_runs

    if isinstance(indices, range) and indices.step == 1:
        return [[indices.start, indices.stop]] if len(indices) else []
    try:
        return index_runs((int(i) for i in indices), max_runs=_MAX_RUNS)
    except (TypeError, ValueError):
        return None


def _is_grader_split(train, val) -> bool:
    """Whether the loaders are ``grader.data.assignment_loaders`` over the stand-in data set
    the cells saw: the training loader holds the rest of the training images, the validation
    loader the balanced split."""
    from grader import data

    if not (isinstance(train, data.LoaderDataset) and isinstance(val, data.LoaderDataset)):
        return False
    stand_in = runtime.fake_cifar10_tensors()
    num_val = len(val.labels)
    if num_val == 0 or num_val % len(data.CLASSES) or len(train.labels) + num_val != len(stand_in.train_labels):
        return False
    try:
        _, val_index = stand_in.split(num_val)
    except data.DataError:
        return False
    return torch.equal(val.images.cpu(), stand_in.train_images[val_index])


def _predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class predictions on uint8 images, batch by batch, on the model's device (a GPU
    after a retrain there). The caller sets the mode and disables gradients."""
    from grader.data import normalize

    device = next(model.parameters(), torch.empty(0)).device
    return torch.cat(
        [
            model(normalize(images[i : i + batch_size], device=device)).argmax(dim=1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> dict:
    """Load a state_dict strictly, but describe every mismatch instead of raising."""
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {list(state[k].shape)}, model {list(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    report = {"missing": missing, "unexpected": unexpected, "mismatched": mismatched, "loaded": False}
    if not (missing or unexpected or mismatched):
        model.load_state_dict(state)
        report["loaded"] = True
    return report


@probe
def q7_predict(
    rt: Runtime,
    *,
    images: torch.Tensor,
    checkpoint: torch.Tensor | None = None,
    state: dict | None = None,
    handle: str | None = None,
    batch_size: int = 500,
) -> dict:
    """Class predictions of the Question 7 model on uint8 images, after loading the
    checkpoint (torch.load with weights_only) or the given state_dict if any."""
    model = q7_model(rt, handle)
    load = None
    if checkpoint is not None:
        state = torch.load(io.BytesIO(checkpoint.numpy().tobytes()), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise TypeError("the checkpoint does not hold a state_dict (a mapping of names to tensors)")
    if state is not None:
        load = _load(model, dict(state))
        if not load["loaded"]:
            return {"predictions": None, "load": load}
    model.eval()
    started = time.monotonic()
    with rt.globals_bound(), torch.no_grad():
        predictions = _predict(model, images, batch_size)
    return {"predictions": predictions, "load": load, "seconds": time.monotonic() - started}


class StopTraining(BaseException):
    """Raised inside the student's training loop when the epoch cap or the time budget
    is reached (a BaseException, so a student's ``except Exception`` lets it through)."""


class TrainingMeter:
    """Counts the images the model trains on, whatever loop or loader the student uses,
    through global forward hooks: a top-level forward call in training mode with
    gradients enabled is a training step. Stops training at the epoch cap or the time
    budget, and at each epoch boundary records predictions on the held-out images."""

    def __init__(self, *, epoch_images: int, max_epochs: int, budget: float, eval_images: torch.Tensor):
        self.epoch_images, self.max_epochs, self.budget = epoch_images, max_epochs, budget
        self.eval_images = eval_images
        self.seen, self.depth, self.stopped = 0, 0, None
        self.started = time.monotonic()
        self.epoch_predictions: list[torch.Tensor] = []
        self.epoch_seconds: list[float] = []
        self.losses: list[list[float]] = [[]]
        self.eval_seconds = 0.0

    def pre(self, module, args):
        if (
            self.depth == 0
            and module.training
            and torch.is_grad_enabled()
            and args
            and isinstance(args[0], torch.Tensor)
        ):
            # An epoch is recorded once its last step has been applied: at the next step.
            if self.seen // self.epoch_images > len(self.epoch_predictions):
                self.end_of_epoch(module)
            n = args[0].shape[0] if args[0].dim() > 0 else 1
            if self.seen + n > self.epoch_images * self.max_epochs:
                self.stopped = "epochs"
                raise StopTraining(f"the {self.max_epochs}-epoch limit was reached")
            if time.monotonic() - self.started - self.eval_seconds > self.budget:
                self.stopped = "budget"
                raise StopTraining(f"the training budget of {self.budget:g} s ran out")
            self.seen += n
        self.depth += 1

    def post(self, module, args, output):
        self.depth = max(0, self.depth - 1)

    def end_of_epoch(self, module: nn.Module) -> None:
        t0 = time.monotonic()
        self.epoch_seconds.append(t0 - self.started - self.eval_seconds)
        self.epoch_predictions.append(self.predict(module))
        self.losses.append([])
        self.eval_seconds += time.monotonic() - t0

    def finish(self, module: nn.Module | None) -> None:
        """Record the last completed epoch when training ends."""
        if module is not None and self.seen // self.epoch_images > len(self.epoch_predictions):
            self.end_of_epoch(module)

    def predict(self, module: nn.Module) -> torch.Tensor:
        was_training = module.training
        module.eval()
        depth, self.depth = self.depth, 1  # forward calls made here are not training steps
        try:
            with torch.no_grad():
                return _predict(module, self.eval_images)
        finally:
            self.depth = depth
            module.train(was_training)

    def record_loss(self, loss) -> None:
        if isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1:
            self.losses[-1].append(float(loss.detach()))

    @contextlib.contextmanager
    def installed(self):
        from torch.nn.modules import module as nn_module

        handles = [
            nn_module.register_module_forward_pre_hook(self.pre),
            nn_module.register_module_forward_hook(self.post),
        ]
        original_fn, original_cls = F.cross_entropy, nn.CrossEntropyLoss.forward

        def cross_entropy(*args, **kwargs):
            loss = original_fn(*args, **kwargs)
            self.record_loss(loss)
            return loss

        def loss_forward(module_self, *args, **kwargs):
            loss = original_cls(module_self, *args, **kwargs)
            self.record_loss(loss)
            return loss

        F.cross_entropy, nn.CrossEntropyLoss.forward = cross_entropy, loss_forward
        try:
            yield self
        finally:
            F.cross_entropy, nn.CrossEntropyLoss.forward = original_fn, original_cls
            for h in handles:
                h.remove()


@probe
def q7_retrain(
    rt: Runtime,
    *,
    images: torch.Tensor,
    labels: torch.Tensor,
    holdout_images: torch.Tensor,
    holdout_labels: torch.Tensor,
    eval_images: torch.Tensor,
    max_epochs: int,
    budget: float,
    cells: list[dict],
    seed: int = 0,
) -> dict:
    """Retrain the Question 7 model as the notebook would, on the grader's training
    images: replay the captured ``train_part34`` calls, or re-run the Question 7 cells
    (for a student's own loop). ``holdout_*`` are training images the student's code
    may use as its validation and test loaders; ``eval_images`` are the grader's
    validation images, without labels, predicted at each epoch's end."""
    rt.reseed(seed)
    meter = TrainingMeter(epoch_images=len(images), max_epochs=max_epochs, budget=budget, eval_images=eval_images)
    captures = [c for c in rt.captures_for("Q7") if c.kind == "train_part34"]
    error = None
    with runtime.real_data(rt, images, labels, holdout_images, holdout_labels) as bound, meter.installed():
        try:
            if captures:
                model, optimizer = captures[0].objects["model"], captures[0].objects["optimizer"]
                train = rt.helper("train_part34")
                for capture in captures:
                    if capture.objects.get("model_id") != captures[0].objects.get("model_id"):
                        continue
                    epochs = capture.objects.get("epochs") if isinstance(capture.objects.get("epochs"), int) else 1
                    rt.ns.update(bound)
                    with rt.globals_bound():
                        train(model, optimizer, epochs=epochs)
                rt.handles["q7-retrained"] = model
            else:
                rt.ns.update(bound)
                for cell in cells:
                    out = rt.run_cell(**cell, timeout=None)
                    if out["status"] != "ok" and out["error"] and out["error"]["type"] != "StopTraining":
                        error = out["error"]
                        break
                    if meter.stopped:
                        break
                rt.handles["q7-retrained"] = q7_model(rt)
        except StopTraining:
            rt.handles["q7-retrained"] = q7_model(rt) if not captures else captures[0].objects["model"]
        except Exception as exc:  # the student's training code failed
            error = runtime.error_info(exc)
            with contextlib.suppress(LookupError):
                rt.handles["q7-retrained"] = q7_model(rt) if not captures else captures[0].objects["model"]
    meter.finish(rt.handles.get("q7-retrained"))
    trained = rt.handles.get("q7-retrained")
    device = next(trained.parameters(), torch.empty(0)).device.type if isinstance(trained, torch.nn.Module) else None
    losses = [sum(v) / len(v) if v else None for v in meter.losses[: len(meter.epoch_predictions)]]
    return {
        "stopped": meter.stopped,
        "error": error,
        "images_seen": meter.seen,
        "epochs_completed": meter.seen / len(images),
        "train_seconds": time.monotonic() - meter.started - meter.eval_seconds,
        "epoch_seconds": meter.epoch_seconds,
        "epoch_predictions": meter.epoch_predictions,
        "train_loss": losses,
        "mode": "train_part34" if captures else "own code",
        "ready": "q7-retrained" in rt.handles,
        "device": device,  # where the model's weights ended up: "cuda" when the GPU was used
    }
