"""HTML reports rendered from the results model: one page per submission (an instructor
view with everything, and a student view without the hidden checks' findings) and a
class summary, index.html.

The pages are static files that work offline: inline CSS, a few lines of inline script
for sorting, and charts drawn as inline SVG (charts.py). The templates draw view models
(views.py) computed from the results. Everything that comes from a student (names,
output, messages, tracebacks) is escaped: the templates autoescape, and the SVG code
escapes every piece of text it embeds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from .assignment import default_assignment
from .charts import histogram, line_chart
from .results import SubmissionResult
from .views import class_view, excerpt, submission_view

__all__ = [
    "class_view",
    "environment",
    "excerpt",
    "histogram",
    "line_chart",
    "render_submission",
    "write_class_summary",
    "write_submission_reports",
]

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache  # templates are compiled once per process, not once per page
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # Autoescape every .html.j2 template: student text must never become markup.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=True),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the tests, not silently
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The homework's challenge question (graded by accuracy), as ids and headings name it.
    assignment = default_assignment()
    challenge = assignment.challenge or "challenge"
    env.globals.update(challenge=challenge, challenge_name=assignment.spoken(challenge))
    return env


def render_submission(result: SubmissionResult, *, student_view: bool) -> str:
    return environment().get_template("report.html.j2").render(r=submission_view(result, student_view=student_view))


def write_submission_reports(result: SubmissionResult, folder: Path) -> list[Path]:
    """Write folder/report.html (instructor view: everything) and folder/report-student.html (student view)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, student_view in (("report.html", False), ("report-student.html", True)):
        path = folder / name
        path.write_text(render_submission(result, student_view=student_view), encoding="utf-8")
        paths.append(path)
    return paths


def write_class_summary(
    results: list[SubmissionResult],
    folders: list[str],
    out: Path,
    *,
    skipped: list[tuple[str, str]] | None = None,
    partial: bool = False,
    similarity=None,
) -> Path:
    """Write out/index.html; folders[i] is the sub-folder (relative to out) holding results[i]'s reports.
    ``skipped`` lists what the download held that is not a submission; ``partial`` marks a
    batch that was interrupted or not yet complete; ``similarity`` (an analysis of the
    batch) adds the "Similar submissions" section."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(
        environment()
        .get_template("index.html.j2")
        .render(c=class_view(results, folders, skipped=skipped, partial=partial, similarity=similarity)),
        encoding="utf-8",
    )
    return path
