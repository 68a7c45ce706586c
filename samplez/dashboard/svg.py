"""Inline SVG charts for the dashboard: sparklines, bar charts, histograms,
and timelines (one or more series over time, with axes).

Charts are drawn on the server as small SVG fragments, so the pages need no
script and no external asset (the Content-Security-Policy forbids both).
They are returned as :class:`markupsafe.Markup` for jinja2 to insert as is;
every piece of text inside them goes through :func:`markupsafe.escape` here.
Styling (colours, strokes) lives in the stylesheet, via class names.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

from markupsafe import Markup, escape

__all__ = ["bars", "histogram", "histogram_bins", "meter", "sparkline", "timeline"]

Formatter = Callable[[float], str]


def _numbers(values: Iterable[object]) -> list[float]:
    """The finite numbers of ``values`` (anything else counts as 0)."""
    out = []
    for value in values:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
        out.append(float(number) if math.isfinite(number) else 0.0)
    return out


def _scale(low: float, high: float) -> float:
    """What to multiply values from ``low`` to ``high`` by so that their
    differences are finite floats: 1, or 0.5 (exact) for values of both signs
    near the float limit, which are further apart than a float holds."""
    return 1.0 if math.isfinite(high - low) else 0.5


def _svg(css: str, width: int, height: int, label: str, body: str) -> Markup:
    return Markup(
        f'<svg class="{css}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>{body}</svg>'
    )


def sparkline(series: Sequence[object], label: str = "", width: int = 120, height: int = 24) -> Markup:
    """A line through ``series`` (oldest first), scaled to its own range."""
    values = _numbers(series)
    if not values:
        return Markup('<span class="muted">no data</span>')
    if len(values) == 1:
        values = values * 2
    # Counts start at zero: a steady count is a line at the top, not the floor.
    low, high = min(min(values), 0.0), max(values)
    scale = _scale(low, high)
    span = (high * scale - low * scale) or 1.0
    step = (width - 2) / (len(values) - 1)
    points = " ".join(
        f"{1 + i * step:.1f},{height - 2 - (v * scale - low * scale) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    last_x, last_y = points.rsplit(" ", 1)[-1].split(",")
    body = f'<polyline points="{points}"/><circle cx="{last_x}" cy="{last_y}" r="2"/>'
    return _svg("spark", width, height, label, body)


def bars(
    series: Sequence[object],
    label: str = "",
    names: Sequence[object] | None = None,
    fmt: Formatter = str,
    width: int = 240,
    height: int = 40,
) -> Markup:
    """One bar per value, from 0 to the largest; each bar's tooltip reads
    ``name: value``."""
    values = _numbers(series)
    if not values:
        return Markup('<span class="muted">no data</span>')
    top = max(max(values), 0.0) or 1.0
    slot = width / len(values)
    gap = 1.0 if slot > 3 else 0.0
    parts = []
    for i, value in enumerate(values):
        h = max(value, 0.0) / top * (height - 1)
        name = names[i] if names is not None and i < len(names) else i
        tip = escape(f"{name}: {fmt(value)}")
        parts.append(
            f'<rect x="{i * slot:.1f}" y="{height - h:.1f}" width="{max(slot - gap, 0.5):.1f}" '
            f'height="{h:.1f}"><title>{tip}</title></rect>'
        )
    parts.append(f'<line class="axis" x1="0" y1="{height}" x2="{width}" y2="{height}"/>')
    return _svg("bars", width, height, label, "".join(parts))


def histogram_bins(values: Sequence[float], bins: int = 24) -> tuple[list[float], list[int]]:
    """``(edges, counts)``: ``bins`` equal-width bins from min to max
    (``len(edges) == len(counts) + 1``); one bin when every value is equal."""
    numbers = [v for v in _numbers(values)]
    if not numbers:
        return [], []
    low, high = min(numbers), max(numbers)
    if high == low:
        return [low, high], [len(numbers)]
    scale = _scale(low, high)
    width = (high * scale - low * scale) / bins
    counts = [0] * bins
    for value in numbers:
        counts[min(int((value * scale - low * scale) / width), bins - 1)] += 1
    return [(low * scale + i * width) / scale for i in range(bins)] + [high], counts


def histogram(
    edges: Sequence[float],
    counts: Sequence[int],
    label: str = "",
    fmt: Formatter = str,
    width: int = 560,
    height: int = 180,
) -> Markup:
    """Bars of ``counts`` over ``edges`` with the range and the tallest count
    written on the axes."""
    if not counts:
        return Markup('<span class="muted">no samples</span>')
    left, bottom, top_pad = 44, 22, 8
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    tallest = max(counts) or 1
    slot = plot_w / len(counts)
    parts = [
        f'<line class="axis" x1="{left}" y1="{top_pad + plot_h}" x2="{width - 4}" y2="{top_pad + plot_h}"/>',
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end">{tallest:,}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 6}">{escape(fmt(edges[0]))}</text>',
        f'<text x="{width - 4}" y="{height - 6}" text-anchor="end">{escape(fmt(edges[-1]))}</text>',
    ]
    for i, count in enumerate(counts):
        h = count / tallest * plot_h
        tip = escape(f"{fmt(edges[i])} – {fmt(edges[i + 1])}: {count:,}")
        parts.append(
            f'<rect x="{left + i * slot + 0.5:.1f}" y="{top_pad + plot_h - h:.1f}" '
            f'width="{max(slot - 1, 0.5):.1f}" height="{h:.1f}"><title>{tip}</title></rect>'
        )
    return _svg("histogram", width, height, label, "".join(parts))


def meter(fraction: object, width: int = 48, height: int = 6) -> Markup:
    """A thin bar filled to ``fraction`` (0-1): a share at a glance."""
    value = _numbers([fraction])[0]
    filled = min(max(value, 0.0), 1.0) * width
    return Markup(
        f'<svg class="meter" viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-hidden="true">'
        f'<rect class="track" width="{width}" height="{height}"/><rect width="{filled:.1f}" height="{height}"/></svg>'
    )


def _gaps(values: Iterable[object]) -> list[float | None]:
    """The finite numbers of ``values``, anything else ``None`` (a gap)."""
    return [
        float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        for v in values
    ]


def _runs(points: Sequence[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """The unbroken stretches of ``points`` between gaps."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def _shown(value: float | None, fmt: Formatter) -> str:
    return "–" if value is None else fmt(value)


def timeline(
    lines: Sequence[Sequence[object]],
    label: str = "",
    names: Sequence[str] = (),
    times: Sequence[str] = (),
    fmt: Formatter = str,
    axis: tuple[str, str] = ("", ""),
    width: int = 400,
    height: int = 130,
) -> Markup:
    """Each series of ``lines`` (oldest first, equally long; ``None`` is a
    gap) as a line from 0 to the largest value, with the largest and 0
    written on the y axis and ``axis`` (start, end) under the x axis. Each
    point in time has a tooltip: its ``times`` entry and every series'
    value (``names[j]: fmt(value)``)."""
    count = max((len(line) for line in lines), default=0)
    series = [_gaps(line) + [None] * (count - len(line)) for line in lines]
    if all(v is None for s in series for v in s):
        return Markup('<span class="muted">no data</span>')
    left, bottom, pad = 52, 18, 6
    plot_w, plot_h = width - left - pad, height - bottom - pad
    top = max(v for s in series for v in s if v is not None) or 1.0
    slot = plot_w / count

    def place(i: int, value: float | None) -> tuple[float, float] | None:
        if value is None:
            return None
        return left + (i + 0.5) * slot, pad + plot_h - min(max(value / top, 0.0), 1.0) * plot_h

    base = pad + plot_h
    parts = [
        f'<line class="axis" x1="{left}" y1="{base}" x2="{width - pad}" y2="{base}"/>',
        f'<line class="grid" x1="{left}" y1="{pad}" x2="{width - pad}" y2="{pad}"/>',
        f'<text x="{left - 4}" y="{pad + 4}" text-anchor="end">{escape(fmt(top))}</text>',
        f'<text x="{left - 4}" y="{base}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 4}">{escape(axis[0])}</text>',
        f'<text x="{width - pad}" y="{height - 4}" text-anchor="end">{escape(axis[1])}</text>',
    ]
    for j, values in enumerate(series):
        for run in _runs([place(i, v) for i, v in enumerate(values)]):
            if len(run) == 1:
                parts.append(f'<circle class="s{j}" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="1.5"/>')
            else:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline class="s{j}" points="{points}"/>')
    for i in range(count):
        readings = ", ".join(f"{names[j] if j < len(names) else j}: {_shown(s[i], fmt)}" for j, s in enumerate(series))
        when = f"{times[i]} " if i < len(times) else ""
        parts.append(
            f'<rect class="hover" x="{left + i * slot:.1f}" y="{pad}" width="{slot:.1f}" height="{plot_h}">'
            f"<title>{escape(when + readings)}</title></rect>"
        )
    return _svg("timeline", width, height, label, "".join(parts))
