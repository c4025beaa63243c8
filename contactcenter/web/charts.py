"""Small SVG charts drawn on the server: no script, no chart library in the browser, and they print.

Each function returns an ``<svg>`` element as a string, safe to put in a page as is (every label escaped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 12, 36


def _frame(title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-size="11" font-family="sans-serif">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def count_axis(largest: float, most_steps: int = 5) -> tuple[int, int]:
    """A count axis's top and number of steps: whole-number steps of 1, 2 or 5 × 10ⁿ, so the grid reads
    0 / 20 / 40 / 60 rather than 27.75 / 55.5 / 83.25."""
    largest = max(1, math.ceil(largest))
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            steps = math.ceil(largest / step)
            if steps <= most_steps:
                return step * steps, steps
        magnitude *= 10


def _axes(maximum: float, steps: int = 4) -> list[str]:
    parts = []
    plot_h = HEIGHT - TOP - BOTTOM
    for n in range(steps + 1):
        value = maximum * n / steps
        y = TOP + plot_h - plot_h * n / steps
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    return parts


def line_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    maximum: float = 100.0,
    reference: tuple[float, str] | None = None,
) -> str:
    """A line through the values (a gap where a value is None), one x label every few points; ``reference``
    (value, label) draws a dashed line across, such as the pass line."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(values) - 1)
    body = _axes(maximum, 5)
    if reference is not None:
        level, name = reference
        y = TOP + plot_h - plot_h * min(max(level, 0.0), maximum) / maximum
        body.append(
            f'<line class="reference" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="#b00020" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - RIGHT - 2}" y="{y - 4:.1f}" text-anchor="end" fill="#b00020">{escape(name)}</text>'
        )
    runs: list[list[str]] = [[]]
    for n, value in enumerate(values):
        if value is None:
            runs.append([])
            continue
        x, y = LEFT + n * step, TOP + plot_h - plot_h * min(value, maximum) / maximum
        runs[-1].append(f"{x:.1f},{y:.1f}")
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1f4e79">'
            f"<title>{escape(labels[n])}: {value:g}</title></circle>"
        )
    body += [
        f'<polyline class="series" fill="none" stroke="#1f4e79" stroke-width="2" points="{" ".join(run)}"/>'
        for run in runs
        if len(run) > 1
    ]
    every = max(1, len(labels) // 8)
    body += [
        f'<text x="{LEFT + n * step:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
        f"{escape(label[5:] if len(label) == 10 else label)}</text>"
        for n, label in enumerate(labels)
        if n % every == 0
    ]
    return _frame(title, body)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """One bar per label, its value written on top."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    maximum, steps = count_axis(max([*values, 1]))
    slot = plot_w / max(1, len(values))
    body = _axes(maximum, steps)
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / maximum
        x, y = LEFT + n * slot + slot * 0.15, TOP + plot_h - h
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="#4a7fb0"><title>{escape(label)}: {value:g}</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle">{value:g}</text>'
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return _frame(title, body)
