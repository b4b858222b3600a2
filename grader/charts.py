"""The HTML reports' charts, drawn in Python as inline SVG: a line chart of one series
against epochs, accuracies with their confidence intervals, and the class histogram.
Every piece of text a chart embeds is escaped (it may come from a student)."""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup, escape


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [float(round(k * step, 10)) for k in range(first, last + 1)]


def svg_text(x: float, y: float, text: str, *, anchor: str = "middle", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


def line_chart(
    title: str,
    xs: list[Any],
    ys: list[Any],
    *,
    percent: bool = False,
    target: float | None = None,
    target_label: str = "",
) -> Markup:
    """One series against epochs, with a dashed target line (e.g. the required accuracy)."""
    points = [
        (float(x), float(y))
        for x, y in zip(xs, ys)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(x) and math.isfinite(y)
    ]
    width, height, left, right, top, bottom = 420, 220, 52, 16, 28, 36
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    parts.append(svg_text(left, 16, title, anchor="start", cls="chart-title"))
    if not points:
        parts.append(svg_text(width / 2, height / 2, "no data", cls="muted"))
        return Markup("".join(parts) + "</svg>")
    values = [y for _, y in points] + ([target] if target is not None else [])
    y_ticks = nice_ticks(min(values), max(values), 4)
    if percent:
        y_ticks = [t for t in y_ticks if -1e-9 <= t <= 1 + 1e-9] or [0.0, 1.0]
    y0, y1 = min(y_ticks + values), max(y_ticks + values)
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (1 - (y - y0) / ((y1 - y0) or 1)) * (height - top - bottom)

    for t in y_ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{py(t):.1f}" y2="{py(t):.1f}"/>')
        label = f"{100 * t:.0f}%" if percent else f"{t:.3g}"
        parts.append(svg_text(left - 6, py(t) + 4, label, anchor="end", cls="tick"))
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1 and float(t).is_integer():
            parts.append(svg_text(px(t), height - bottom + 16, f"{t:g}", cls="tick"))
    parts.append(svg_text((left + width - right) / 2, height - 4, "epoch", cls="tick"))
    if target is not None:
        parts.append(
            f'<line class="target" x1="{left}" x2="{width - right}" y1="{py(target):.1f}" y2="{py(target):.1f}"/>'
        )
        parts.append(svg_text(width - right, py(target) - 5, target_label, anchor="end", cls="target-label"))
    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    parts.append(f'<polyline class="series" points="{path}"/>')
    if len(points) <= 60:
        for x, y in points:
            value = f"{100 * y:.1f}%" if percent else f"{y:.4g}"
            parts.append(
                f'<circle class="dot" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3"><title>{escape(f"epoch {x:g}: {value}")}</title></circle>'
            )
    return Markup("".join(parts) + "</svg>")


def ci_chart(
    rows: list[tuple[str, float, list | None]], threshold: float | None, self_reported: float | None
) -> Markup:
    """Accuracies with their confidence intervals on one axis, against the threshold."""
    rows = [(name, acc, ci) for name, acc, ci in rows if isinstance(acc, (int, float))]
    if not rows:
        return Markup("")
    values = [acc for _, acc, _ in rows]
    for _, _, ci in rows:
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            values += [float(v) for v in ci if isinstance(v, (int, float))]
    values += [v for v in (threshold, self_reported) if isinstance(v, (int, float))]
    lo = max(0.0, math.floor((min(values) - 0.05) * 10) / 10)
    hi = min(1.0, math.ceil((max(values) + 0.02) * 10) / 10)
    if hi <= lo:
        lo, hi = 0.0, 1.0
    width, left, right, row_height, top = 560, 110, 24, 34, 12
    height = top + row_height * len(rows) + 30

    def px(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    parts = [
        f'<svg class="chart ci" viewBox="0 0 {width} {height}" role="img" aria-label="accuracy with confidence intervals">'
    ]
    axis_y = top + row_height * len(rows)
    for t in nice_ticks(lo, hi, 5):
        if lo - 1e-9 <= t <= hi + 1e-9:
            parts.append(f'<line class="grid" x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{axis_y}"/>')
            parts.append(svg_text(px(t), axis_y + 16, f"{100 * t:.0f}%", cls="tick"))
    if isinstance(threshold, (int, float)):
        parts.append(
            f'<line class="target" x1="{px(threshold):.1f}" x2="{px(threshold):.1f}" y1="{top - 6}" y2="{axis_y}"/>'
        )
        parts.append(
            svg_text(
                px(threshold) + 4, axis_y + 28, f"required {100 * threshold:.0f}%", anchor="start", cls="target-label"
            )
        )
    for i, (name, acc, ci) in enumerate(rows):
        y = top + row_height * i + row_height / 2
        parts.append(svg_text(left - 10, y + 4, name, anchor="end"))
        label = f"{name}: {100 * acc:.2f}%"
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
            parts.append(f'<line class="whisker" x1="{px(ci[0]):.1f}" x2="{px(ci[1]):.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
            for v in ci:
                parts.append(
                    f'<line class="whisker" x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{y - 6:.1f}" y2="{y + 6:.1f}"/>'
                )
            label += f" (95% CI {100 * ci[0]:.2f}–{100 * ci[1]:.2f}%)"
        passed = not isinstance(threshold, (int, float)) or acc >= threshold
        dot = "dot" if passed else "dot below"
        parts.append(
            f'<circle class="{dot}" cx="{px(acc):.1f}" cy="{y:.1f}" r="5"><title>{escape(label)}</title></circle>'
        )
    if isinstance(self_reported, (int, float)):
        x, y = px(self_reported), top + 4
        parts.append(
            f'<path class="reported" d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} L{x - 5:.1f},{y:.1f} Z">'
            f"<title>{escape(f'self-reported {100 * self_reported:.2f}%')}</title></path>"
        )
        parts.append(svg_text(x + 8, y + 4, "self-reported", anchor="start", cls="reported-label"))
    return Markup("".join(parts) + "</svg>")


def histogram(totals: list[float], max_score: float, mean: float | None) -> Markup:
    """How many students earned each range of totals: about ten bins of a round width
    (5 points for a 51-point homework), the last one holding the full score."""
    most = max_score if max_score > 0 else max(totals, default=1.0) or 1.0
    width_of_bin = nice_ticks(0, most, 12)[1]
    bins = max(1, math.ceil(most / width_of_bin - 1e-9))
    top_score = bins * width_of_bin
    counts = [0] * bins
    for t in totals:
        counts[min(bins - 1, max(0, int(t / width_of_bin + 1e-9)))] += 1
    width, height, left, right, top, bottom = 620, 220, 36, 12, 16, 40
    count_ticks = nice_ticks(0, max(counts, default=0) or 1, min(max(counts, default=0) or 1, 4))
    tallest = count_ticks[-1]  # the top grid line, so that bars and grid share one scale
    slot = (width - left - right) / bins
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="histogram of totals">']
    for t in count_ticks:
        y = top + (1 - t / tallest) * (height - top - bottom)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(svg_text(left - 6, y + 4, f"{t:g}", anchor="end", cls="tick"))
    for i, n in enumerate(counts):
        lo_edge, hi_edge = top_score * i / bins, top_score * (i + 1) / bins
        bar_height = n / tallest * (height - top - bottom)
        x = left + i * slot
        y = height - bottom - bar_height
        what = f"{n} student{'s' if n != 1 else ''} with {lo_edge:g}–{hi_edge:g} points"
        parts.append(
            f'<rect class="hist-bar" x="{x + 2:.1f}" y="{y:.1f}" width="{slot - 4:.1f}" height="{bar_height:.1f}"><title>{escape(what)}</title></rect>'
        )
        if n:
            parts.append(svg_text(x + slot / 2, y - 4, str(n), cls="tick"))
        parts.append(svg_text(x, height - bottom + 16, f"{lo_edge:g}", cls="tick"))
    parts.append(svg_text(width - right, height - bottom + 16, f"{top_score:g}", cls="tick"))
    parts.append(svg_text((left + width - right) / 2, height - 4, "total points", cls="tick"))
    if mean is not None:
        x = left + mean / top_score * (width - left - right)
        parts.append(f'<line class="target" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}"/>')
        parts.append(svg_text(x + 4, top + 10, f"mean {mean:.1f}", anchor="start", cls="target-label"))
    return Markup("".join(parts) + "</svg>")
