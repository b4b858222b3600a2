"""The output files of a batch, as a list of small writers behind one interface.

Every writer renders the one results model (``SubmissionResult``) into files: it has a
``name`` (the file it writes) and ``write(batch, out)``. A writer ``per_submission``
writes into each submission's folder and runs as each submission finishes (so an
interrupted batch keeps what it graded); the others write the class files once the
batch is done. ``WRITERS`` lists those a batch writes; ``GRADEBOOKS`` those ``grade
export`` writes on demand (they need the course's settings). Adding an output is adding
a writer here.

``write_all`` runs writers so that one failing writer never costs the others' files:
each failure comes back as a sentence, for the batch to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .course import Course
from .export import GRADEBOOK_RENDERERS, gradebook_name
from .results import SubmissionResult


@dataclass
class Batch:
    """What writers render: results with the folder (under the output folder) of each,
    and what the class files add (entries skipped, an interrupted run, the similarity
    analysis, the course's settings)."""

    results: list[SubmissionResult]
    folders: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    partial: bool = False
    similarity: Any = None  # similarity.Analysis, when the batch ran it
    course: Course | None = None

    def __iter__(self) -> Iterator[tuple[SubmissionResult, str]]:
        return iter(zip(self.results, self.folders))

    def similar(self) -> list[dict | None] | None:
        """Each student's strongest match (for the gradebook), or None without an analysis."""
        if self.similarity is None:
            return None
        top = self.similarity.top_by_student()
        return [top.get(f) for f in self.folders]


class Writer(Protocol):
    name: str  # the file it writes ("results.json"), for messages and selection
    per_submission: bool  # True: one file per submission, in its folder

    def write(self, batch: Batch, out: Path) -> list[Path]:
        """Write the file(s) of ``batch`` under ``out``; return their paths."""
        ...


# -- one file per submission -----------------------------------------------------------------


class ResultsJson:
    """Each submission's results.json (Gradescope's format; render.write_results_json)."""

    name = "results.json"
    per_submission = True

    def write(self, batch: Batch, out: Path) -> list[Path]:
        from .render import write_results_json

        return [write_results_json(result, out / folder) for result, folder in batch]


class HtmlReports:
    """Each submission's report.html (instructor) and report-student.html."""

    name = "report.html"
    per_submission = True

    def write(self, batch: Batch, out: Path) -> list[Path]:
        from .report import write_submission_reports

        return [path for result, folder in batch for path in write_submission_reports(result, out / folder)]


# -- the class files ---------------------------------------------------------------------------


def _text_file(out: Path, name: str, text: str) -> list[Path]:
    """Write one class file under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text, encoding="utf-8")
    return [path]


class GradebookCsv:
    """gradebook.csv: one row per submission, per-question scores and what needs a look."""

    name = "gradebook.csv"
    per_submission = False

    def write(self, batch: Batch, out: Path) -> list[Path]:
        from .render import gradebook_csv

        return _text_file(out, self.name, gradebook_csv(batch.results, batch.similar()))


class SummaryJson:
    """summary.json: class-level figures (render.summary)."""

    name = "summary.json"
    per_submission = False

    def write(self, batch: Batch, out: Path) -> list[Path]:
        import json

        from .results import summary

        return _text_file(out, self.name, json.dumps(summary(batch.results), indent=2) + "\n")


class ClassPage:
    """index.html: the class summary, linking each submission's report."""

    name = "index.html"
    per_submission = False

    def write(self, batch: Batch, out: Path) -> list[Path]:
        from .report import write_class_summary

        path = write_class_summary(
            batch.results,
            batch.folders,
            out,
            skipped=batch.skipped,
            partial=batch.partial,
            similarity=batch.similarity,
        )
        return [path]


@dataclass
class LmsGradebook:
    """A gradebook an LMS imports (export.py renders it with the course's settings)."""

    format: str  # "canvas"
    render: Callable[[list[SubmissionResult], Course], str]
    per_submission: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return gradebook_name(self.format)

    def write(self, batch: Batch, out: Path) -> list[Path]:
        from .course import load_course

        return _text_file(out, self.name, self.render(batch.results, batch.course or load_course(None)))


# -- the registry ------------------------------------------------------------------------------

WRITERS: tuple[Writer, ...] = (ResultsJson(), HtmlReports(), GradebookCsv(), SummaryJson(), ClassPage())
GRADEBOOKS: dict[str, LmsGradebook] = {f: LmsGradebook(f, render) for f, render in GRADEBOOK_RENDERERS.items()}
HTML = {"report.html", "index.html"}  # left out by ``grade --no-reports``-style runs


def selected(*, per_submission: bool, html: bool = True, writers: Iterable[Writer] | None = None) -> list[Writer]:
    """The registered writers of one kind, without the HTML ones unless ``html``."""
    return [
        w
        for w in (WRITERS if writers is None else writers)
        if w.per_submission == per_submission and (html or w.name not in HTML)
    ]


def write_all(writers: Sequence[Writer], batch: Batch, out: Path) -> tuple[list[Path], list[str]]:
    """Run every writer; a writer that fails is reported, never stops the others.
    Returns the paths written and a sentence per failure."""
    paths: list[Path] = []
    problems: list[str] = []
    for writer in writers:
        try:
            paths += writer.write(batch, out)
        except Exception as exc:  # one output that cannot render must not cost the others
            problems.append(f"{writer.name} could not be written: {type(exc).__name__}: {exc}")
    return paths, problems
