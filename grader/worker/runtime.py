"""The student's side of grading: a namespace in which the submission's cells run.

Everything here executes inside the worker process, beside untrusted code. It holds no
expected values and imports nothing from the grader but the wire format, the data layer
and the homework's worker-side module (named in the set-up message). Its jobs:

- run each cell with a time limit and capped output, recording errors against the cell;
- replace the heavy calls (the CIFAR-10 loaders here; the homework's training helpers,
  by the homework's recording stand-ins) so that grading captures what each question
  hands to training instead of training it;
- keep the captured objects so that probes (``probes.py``) can examine them later.

The homework's worker module provides ``TRAINING_HELPERS`` (names of the provided
helpers to intercept), ``stand_ins(rt)`` (their recording versions, which call
``rt.capture``), ``meaning(rt, kind, objects)`` (what a capture is),
``cell_end(rt, question, fresh)`` (what a cell that trained nothing answered) and
``captures_for(rt, question)`` (which captures answer a question); importing it
registers the homework's own probes.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import io
import itertools
import linecache
import random
import re
import signal
import sys
import traceback
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# Cells may loop over the intercepted data loaders; a few batches show what they do.
FAKE_BATCHES = 2


class GraderTimeout(BaseException):
    """Raised in the worker when a cell or probe exceeds its time limit.

    It derives from BaseException so that a student's ``except Exception`` cannot
    swallow it.
    """


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Interrupt the block with GraderTimeout after ``seconds`` of wall-clock time."""
    if not seconds:
        yield
        return

    def on_alarm(signum, frame):
        raise GraderTimeout(f"time limit of {seconds:g} s exceeded")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CappedText(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters and counts the rest."""

    def __init__(self, cap: int):
        self.cap = cap
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        s = str(s)
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(room, len(s))
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[... {self.dropped} more characters of output not kept]"
        return out


@dataclass
class Capture:
    """What a cell handed to training (or left defined when it ended).

    ``question`` is the cell's label (from metadata, markers or content: it depends on
    the layout); ``meaning`` is what the handed objects are, whatever the layout, as the
    homework's ``meaning`` reads them ("example" for the notebook's own demonstrations,
    which nothing grades). The homework's ``captures_for`` decides from both which one a
    question grades.
    """

    question: str | None
    cell: int
    kind: str  # "train_part2", "train_part34" or "cell_end"
    cell_questions: tuple[str, ...] = ()  # every question the cell was recognised as
    objects: dict[str, Any] = field(default_factory=dict)
    meaning: str | None = None
    model_ref: Any = None  # a weak reference to the model handed over (the objects hold a copy)


def error_info(exc: BaseException, *, limit_chars: int = 6000) -> dict:
    """A plain description of an exception, with the student's own frames only."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_WORKER_DIR)]
    where = next((f for f in reversed(frames) if _CELL_FILE.fullmatch(f.filename)), None)
    try:  # the student's exception class may fail to describe itself
        message = str(exc)
        text = "".join(traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc))
    except Exception:
        message = text = f"<{type(exc).__name__} that cannot be printed>"
    return {
        "type": type(exc).__name__,
        "message": message[:2000],
        "traceback": "Traceback (most recent call last):\n" + text[-limit_chars:],
        "cell": int(_CELL_FILE.fullmatch(where.filename)[1]) if where else None,
        "line": where.lineno if where else None,
    }


_WORKER_DIR = __file__.rsplit("/", 1)[0]


def _statements(source: str, filename: str) -> list[tuple[tuple[int, int], types.CodeType]]:
    """The cell's top-level statements, each compiled on its own with its line numbers
    kept ((first, last) line, code); SyntaxError if the cell does not parse."""
    tree = ast.parse(source, filename)
    if not tree.body:
        return []
    flags = 0
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:  # a future import applies to the rest of the cell
                feature = getattr(__import__("__future__"), alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
        module = ast.Module(body=[node], type_ignores=[])
        out.append(((node.lineno, node.end_lineno), compile(module, filename, "exec", flags=flags)))
    return out


_CELL_FILE = re.compile(r"<cell (\d+)>")


class FakeCIFAR10(torch.utils.data.Dataset):
    """Stands in for torchvision's CIFAR10 while a notebook's cells run: same length and
    item format, random pixels, nothing downloaded. While Question 7 is retrained it
    serves the grader's images instead (``real``: split name -> (images, labels))."""

    real: dict[bool, tuple[torch.Tensor, torch.Tensor]] | None = None

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        self.train = train
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        if self.real is not None:
            return len(self.real[self.train][1])
        return 50_000 if self.train else 10_000

    def __getitem__(self, index: int):
        from PIL import Image

        if self.real is not None:
            images, labels = self.real[self.train]
            pixels, target = images[index].permute(1, 2, 0), int(labels[index])
        else:
            g = torch.Generator().manual_seed(int(index))
            pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=g)
            target = int(index) % 10
        img = Image.fromarray(pixels.numpy())
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class ShortLoader(torch.utils.data.DataLoader):
    """A DataLoader that yields only a few batches (``limit``), in the main process."""

    limit: int | None = FAKE_BATCHES

    def __init__(self, *args, **kwargs):
        kwargs["num_workers"] = 0
        kwargs.pop("persistent_workers", None)
        kwargs.pop("prefetch_factor", None)
        super().__init__(*args, **kwargs)

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.limit)

    def __len__(self) -> int:
        return super().__len__() if self.limit is None else min(self.limit, super().__len__())


@contextlib.contextmanager
def real_data(rt, images, labels, holdout_images, holdout_labels):
    """Serve the grader's images to whatever data code the student wrote, and yield the
    notebook globals that point at them. The hold-out images (from the training set)
    stand in for the validation and test sets, whose labels the worker never receives."""
    from grader import data

    previous = (FakeCIFAR10.real, ShortLoader.limit, data.load_cifar10)
    dataset = data.CIFAR10(
        train_images=images,
        train_labels=labels,
        test_images=holdout_images,
        test_labels=holdout_labels,
        source="the grader's training images",
    )
    FakeCIFAR10.real = {True: (images, labels), False: (holdout_images, holdout_labels)}
    ShortLoader.limit = None
    data.load_cifar10 = lambda *a, **k: dataset
    patched_check = torch.cuda.is_available
    device = rt.ns.get("device") if isinstance(rt.ns.get("device"), torch.device) else None
    if rt.gpu and rt.cuda_available():
        # Retrain where it is fast: the notebook's code reads `device` from its globals.
        torch.cuda.is_available = rt.cuda_available
        device = rt.ns["device"] = torch.device("cuda")
    dtype = rt.ns.get("dtype") if isinstance(rt.ns.get("dtype"), torch.dtype) else torch.float32
    train = data.TensorLoader(images, labels, batch_size=64, shuffle=True, seed=rt.seed, dtype=dtype, device=device)
    val = data.TensorLoader(holdout_images, holdout_labels, batch_size=64, dtype=dtype, device=device, train=True)
    test = data.TensorLoader(holdout_images, holdout_labels, batch_size=64, dtype=dtype, device=device, train=False)
    bound = {"loader_train": train, "loader_val": val, "loader_test": test, "cifar10": dataset}
    bound["loaders"] = data.Loaders(train=train, val=val, test=test)
    try:
        yield bound
    finally:
        FakeCIFAR10.real, ShortLoader.limit, data.load_cifar10 = previous
        torch.cuda.is_available = patched_check


def fake_cifar10_tensors(*args, **kwargs):
    """Stands in for the project's ``load_cifar10`` while cells run: a small random set
    in the real format (120 training and 20 test images per class)."""
    from grader import data

    g = torch.Generator().manual_seed(0)
    train_labels = torch.arange(10).repeat_interleave(120)
    test_labels = torch.arange(10).repeat_interleave(20)
    return data.CIFAR10(
        train_images=torch.randint(0, 256, (1200, 3, 32, 32), dtype=torch.uint8, generator=g),
        train_labels=train_labels,
        test_images=torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=g),
        test_labels=test_labels,
        source="grader stand-in (random images)",
    )


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Sets attributes of a module right after it is first imported."""

    def __init__(self, name: str, attributes: dict[str, Any]):
        self.name, self.attributes = name, attributes

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            for attribute, value in self.attributes.items():
                setattr(module, attribute, value)

        spec.loader.exec_module = exec_module
        return spec


class NullModule(types.ModuleType):
    """An importable stand-in for display-only packages (plotting, Colab) that the
    worker does not provide: every attribute is a harmless no-op."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Null()


class _Null:
    def __call__(self, *args, **kwargs):
        return _Null()

    def __getattr__(self, name: str):
        return _Null()

    def __iter__(self):
        return iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# Display-only packages a notebook may import: stand-ins where they are missing (and
# always for Colab, which is never real here), so an import does not fail the cell.
NULL_MODULES = ("google", "google.colab", "google.colab.drive", "matplotlib", "matplotlib.pyplot")


class Runtime:
    """The student's namespace, the intercepts, and what the cells handed to training."""

    def __init__(self, *, seed: int = 0, output_cap: int = 20_000, gpu: bool = False, homework: str | None = None):
        if homework is None:  # the default homework's definition is plain data: cheap to read
            from grader.assignment import default_assignment

            homework = default_assignment().worker_module
        if not homework.startswith("grader.assignments."):  # never the answer key or anything else
            raise ValueError(f"{homework} is not a homework's worker module")
        self.homework = importlib.import_module(homework)
        self.seed = seed
        self.output_cap = output_cap
        self.gpu = gpu  # whether retraining Question 7 may use a GPU
        self.cuda_available = torch.cuda.is_available  # the real check, before the stand-in
        self.ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.captures: list[Capture] = []
        self.student_helpers: dict[str, Any] = {}
        self.handles: dict[str, Any] = {}
        self.current: tuple[int, str | None] = (-1, None)
        self.current_questions: tuple[str, ...] = ()
        self._install_intercepts()
        self.reseed(seed)

    # -- set-up ---------------------------------------------------------------------

    def reseed(self, seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)

    def _install_intercepts(self) -> None:
        import torch.utils.data
        import torch.utils.data.dataloader

        # Grading runs on the CPU whatever the notebook asks for; probes send CPU tensors.
        torch.cuda.is_available = lambda: False
        torch.utils.data.DataLoader = ShortLoader
        torch.utils.data.dataloader.DataLoader = ShortLoader
        # torchvision takes seconds to import and few notebooks use it: its CIFAR10 is
        # replaced when (and if) the student's code imports torchvision.datasets.
        if "torchvision.datasets" in sys.modules:
            sys.modules["torchvision.datasets"].CIFAR10 = FakeCIFAR10
        else:
            sys.meta_path.insert(0, _PatchOnImport("torchvision.datasets", {"CIFAR10": FakeCIFAR10}))
        from grader import data

        data.load_cifar10 = fake_cifar10_tensors
        for name in NULL_MODULES:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found or name.startswith("google.colab"):
                sys.modules[name] = NullModule(name)

        self.stand_ins = self.homework.stand_ins(self)

    def capture(self, kind: str, objects: dict, snapshot: bool = False) -> None:
        """Record what a cell handed to training (``kind``: the helper, or "cell_end")."""
        meaning = self.homework.meaning(self, kind, objects)
        model_ref = None
        with contextlib.suppress(TypeError):
            model_ref = weakref.ref(objects["model"]) if isinstance(objects.get("model"), torch.nn.Module) else None
        if snapshot and meaning != "example":  # nothing grades the notebook's own demonstrations
            # Later cells may keep training or mutating the same objects: keep the state
            # they had when handed to training. Model and optimizer are copied together so
            # the copy's optimizer still points at the copy's parameters.
            with contextlib.suppress(Exception):
                objects["model"], objects["optimizer"] = copy.deepcopy((objects["model"], objects["optimizer"]))
        cell, question = self.current
        self.captures.append(
            Capture(
                question=question,
                cell=cell,
                kind=kind,
                objects=objects,
                cell_questions=self.current_questions,
                meaning=meaning,
                model_ref=model_ref,
            )
        )

    def _swap_helpers(self) -> None:
        for name in self.homework.TRAINING_HELPERS:
            value = self.ns.get(name)
            if value is not None and value is not self.stand_ins[name]:
                self.student_helpers[name] = value
                self.ns[name] = self.stand_ins[name]

    # -- running cells ----------------------------------------------------------------

    def run_cell(
        self,
        *,
        index: int,
        source: str,
        question: str | None = None,
        questions: list[str] | None = None,
        line_offset: int = 0,
        timeout: float | None = None,
    ) -> dict:
        """Execute one cell in the namespace; report its outcome and output."""
        filename = f"<cell {index}>"
        padded = "\n" * line_offset + source
        linecache.cache[filename] = (len(padded), None, padded.splitlines(True), filename)
        out, err = CappedText(self.output_cap), CappedText(self.output_cap)
        self.current = (index, question)
        self.current_questions = tuple(questions or ([question] if question else []))
        before = {k: id(v) for k, v in self.ns.items()}
        captures_before = len(self.captures)
        result: dict[str, Any] = {"index": index, "status": "ok", "error": None}
        try:
            statements = _statements(padded, filename)
        except SyntaxError as exc:
            result.update(status="syntax-error", error=error_info(exc))
            result["error"]["line"] = exc.lineno
            result["error"]["cell"] = index
        else:
            # Statement by statement: one that raises (or calls sys.exit) is recorded and
            # the cell's later statements still run, so a cell merged from several gives
            # the same objects as the separate cells would (the report says what ran on).
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(timeout):
                    for lines, code in statements:
                        try:
                            exec(code, self.ns)
                        except GraderTimeout:
                            raise
                        except BaseException as exc:  # a student's sys.exit() is an error like any other
                            self._swap_helpers()
                            if result["error"] is None:
                                result.update(status="error", error=error_info(exc))
                                result["ran_after_error"] = []
                            else:
                                result["ran_after_error"].append(lines)
                            continue
                        # a helper defined by this statement is intercepted from the next one on
                        self._swap_helpers()
                        if result["error"] is not None:
                            result["ran_after_error"].append(lines)
            except GraderTimeout as exc:
                result.update(status="timeout", error=error_info(exc))
        self._swap_helpers()
        if question and len(self.captures) == captures_before:
            self._capture_cell_end(question, before)
        result["stdout"] = out.text()
        result["stderr"] = err.text()
        self.current, self.current_questions = (-1, None), ()
        return result

    def _capture_cell_end(self, question: str, before: dict[str, int]) -> None:
        """A question cell that never called a training helper: keep what it defined."""
        fresh = {k for k, v in self.ns.items() if before.get(k) != id(v)}
        kept = self.homework.cell_end(self, question, fresh)
        if kept is not None:
            objects, snapshot = kept
            self.capture("cell_end", objects, snapshot=snapshot)

    # -- what probes use ---------------------------------------------------------------

    def captures_for(self, question: str) -> list[Capture]:
        """Every capture that answers ``question``, in the order recorded (the last one
        counts), by the homework's rules."""
        return self.homework.captures_for(self, question)

    def capture_for(self, question: str) -> Capture | None:
        """The capture a question grades: the last one that answers it."""
        found = self.captures_for(question)
        return found[-1] if found else None

    def helper(self, name: str):
        """The student's own version of a provided helper (falls back to the namespace)."""
        value = self.student_helpers.get(name, self.ns.get(name))
        if value is None:
            raise LookupError(f"{name} is not defined in the submission")
        return value

    def lookup(self, name: str):
        if name not in self.ns:
            raise LookupError(f"{name} is not defined in the submission")
        return self.ns[name]

    @contextlib.contextmanager
    def globals_bound(self, **values):
        """Temporarily rebind notebook globals (the helpers read loaders and print_every
        from there) and silence the student's prints."""
        missing = object()
        saved = {k: self.ns.get(k, missing) for k in values}
        self.ns.update(values)
        out = CappedText(self.output_cap)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                yield out
        finally:
            for k, v in saved.items():
                if v is missing:
                    self.ns.pop(k, None)
                else:
                    self.ns[k] = v
