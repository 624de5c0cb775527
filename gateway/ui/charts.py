"""Server-side inline SVG charts for the console: no JavaScript, no chart library.

Every chart is one complete `<svg>` with `role="img"`, an `aria-label` and a `<title>`; its
root says how many series it draws (`data-series`) and each series is one `<g>` with
`class="series <name>"` and `data-series-name`. Colours come from classes (`reference`,
`live`, `stable`, `canary`, `status-ok`, ...) that the console's stylesheet may restyle, and
from presentation attributes so that a chart reads without any: the console's
Content-Security-Policy forbids inline styles, so there is no `style` anywhere. Every text
is escaped (feature names come from users). Sizes are fixed in the viewBox, so a chart
scales with the page.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

WIDTH, HEIGHT = 480, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 24, 28  # margins: axis labels left and below, legend on top
BAND = 26  # width of the out-of-range bands beside a histogram
ROW_LABEL = 110  # room for the row names of a status strip
# Fill or stroke of each series and status where no stylesheet says otherwise.
COLOURS: Final[dict[str, str]] = {
    "reference": "#adb5bd",
    "live": "#e8590c",
    "stable": "#4dabf7",
    "canary": "#e8590c",
    "weight": "#1c7ed6",
    "status-ok": "#40c057",
    "status-warn": "#fab005",
    "status-drift": "#fa5252",
    "status-insufficient_data": "#ced4da",
}
VERDICT_CLASSES: Final[dict[str, str]] = {
    "pass": "status-ok",
    "fail": "status-drift",
    "inconclusive": "status-insufficient_data",
}


class Chart(msgspec.Struct, frozen=True, kw_only=True):
    """An inline SVG chart: one complete `<svg>` element, every text in it escaped."""

    title: str  # what it shows: its <title> and aria-label
    series: tuple[str, ...]  # the series drawn, in order: their `data-series-name`
    svg: str  # the markup

    def __html__(self) -> str:
        """The markup as is, for Jinja2's autoescape: `{{ chart }}` inserts the SVG."""
        return self.svg


class Histogram(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """One distribution over value bins, as shares: a series of `histogram`."""

    name: str  # the series: "reference", "live", "stable", "canary"
    edges: Floats  # k + 1 ascending bin edges, in the feature's units
    shares: Floats  # k shares of the values, one per bin
    below: float = 0.0  # share of the values under edges[0] (out of the reference range)
    above: float = 0.0  # share over edges[-1]
    count: int  # values behind the shares; 0 draws nothing


class Bars(msgspec.Struct, frozen=True, kw_only=True):
    """One distribution over categories, as shares: a series of `grouped_bars`."""

    name: str
    shares: tuple[float, ...]  # one per category, in the chart's category order
    count: int


def histogram(title: str, series: Sequence[Histogram]) -> Chart:
    """Histograms overlaid on one value axis: the first series as filled bars, the others
    as outlines. Heights are densities (share per unit), so series binned differently
    compare; values outside a series' range stand in bands beside the axis."""
    low = min((float(s.edges[0]) for s in series if s.edges.size), default=0.0)
    high = max((float(s.edges[-1]) for s in series if s.edges.size), default=1.0)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    span = high - low
    left_band = any(s.below > 0 for s in series if s.count)
    right_band = any(s.above > 0 for s in series if s.count)
    x0 = LEFT + (BAND if left_band else 0)
    x1 = WIDTH - RIGHT - (BAND if right_band else 0)
    scale = (x1 - x0) / span
    # A band is drawn as one typical bin (a twentieth of the range) would be.
    band_width = span / 20
    densities = [_densities(s) for s in series]
    peak = max(
        (
            max(float(density.max(initial=0.0)), s.below / band_width, s.above / band_width)
            for s, density in zip(series, densities, strict=True)
            if s.count
        ),
        default=0.0,
    )
    y_scale = (HEIGHT - TOP - BOTTOM) / (peak * 1.1) if peak > 0 else 0.0
    base = HEIGHT - BOTTOM
    parts = [_open(title, series=len(series))]
    parts += _legend([s.name for s in series], outline=[index > 0 for index in range(len(series))])
    parts.append(_axis_line(x0, x1, base))
    for tick in _ticks(low, high):
        x = x0 + (tick - low) * scale
        parts.append(_tick(x, base, _number(tick)))
    if left_band:
        parts.append(_label(LEFT + BAND / 2, base + 22, "below", anchor="middle"))
    if right_band:
        parts.append(_label(WIDTH - RIGHT - BAND / 2, base + 22, "above", anchor="middle"))
    for index, (s, density) in enumerate(zip(series, densities, strict=True)):
        colour = COLOURS.get(s.name, "#495057")
        filled = index == 0
        paint = f'fill="{colour}"' if filled else f'fill="none" stroke="{colour}" stroke-width="2"'
        name = escape(s.name)
        parts.append(f'<g class="series {name}" data-series-name="{name}" {paint}>')
        if s.count:
            # One path per series, not a rect per bin: hundreds of charts render per page.
            xs = (x0 + (s.edges - low) * scale).tolist()
            tops = (base - density * y_scale).tolist()
            parts.append(_step_path(xs, tops, base, closed=filled))
            for share, band_x in ((s.below, LEFT), (s.above, WIDTH - RIGHT - BAND)):
                if share > 0:
                    h = share / band_width * y_scale
                    parts.append(
                        _rect(band_x + 3, base - h, BAND - 6, h, tip=f"{s.name} {share:.1%}")
                    )
        parts.append("</g>")
    if not any(s.count for s in series[1:]):
        parts.append(_label(WIDTH / 2, TOP + 24, "no live values yet", anchor="middle"))
    parts.append("</svg>")
    return Chart(title=title, series=tuple(s.name for s in series), svg="".join(parts))


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[Bars]) -> Chart:
    """Shares per category, the series side by side in each category's group."""
    peak = max((share for s in series if s.count for share in s.shares), default=0.0)
    top = _nice_ceiling(peak) if peak > 0 else 1.0
    base = HEIGHT - BOTTOM
    y_scale = (HEIGHT - TOP - BOTTOM) / top
    group = (WIDTH - LEFT - RIGHT) / max(len(categories), 1)
    bar = group * 0.8 / max(len(series), 1)
    parts = [_open(title, series=len(series))]
    parts += _legend([s.name for s in series], outline=[False] * len(series))
    parts.append(_axis_line(LEFT, WIDTH - RIGHT, base))
    for fraction in (0.5, 1.0):
        y = base - top * fraction * y_scale
        parts.append(_label(LEFT - 4, y + 4, f"{top * fraction:.0%}", anchor="end"))
    for index, category in enumerate(categories):
        shown = category if len(category) <= 10 else category[:9] + "…"
        x = LEFT + group * (index + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{base + 14}" text-anchor="middle">'
            f"<title>{escape(category)}</title>{escape(shown)}</text>"
        )
    for position, s in enumerate(series):
        colour = COLOURS.get(s.name, "#495057")
        name = escape(s.name)
        parts.append(f'<g class="series {name}" data-series-name="{name}" fill="{colour}">')
        if s.count:
            for index, share in enumerate(s.shares):
                height = share * y_scale
                x = LEFT + group * index + group * 0.1 + bar * position
                tip = f"{s.name} {categories[index]}: {share:.1%}"
                parts.append(_rect(x, base - height, bar, height, tip=tip))
        parts.append("</g>")
    parts.append("</svg>")
    return Chart(title=title, series=tuple(s.name for s in series), svg="".join(parts))


def status_strip(
    title: str, times: Sequence[float], rows: Sequence[tuple[str, Sequence[str]]]
) -> Chart:
    """Statuses over evaluations, one row per series: each evaluation holds its status
    until the next (the last for one typical interval); equal neighbours merge."""
    height = TOP + BOTTOM + 16 * max(len(rows), 1)
    start = times[0] if times else 0.0
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    end = (times[-1] + step) if times else 1.0
    x0, x1 = LEFT + ROW_LABEL, WIDTH - RIGHT
    scale = (x1 - x0) / max(end - start, 1e-9)
    base = height - BOTTOM
    parts = [_open(title, series=len(rows), height=height)]
    parts += _legend(
        ["ok", "warn", "drift", "insufficient_data"], outline=[False] * 4, prefix="status-"
    )
    parts.append(_axis_line(x0, x1, base))
    for tick in _time_ticks(start, end):
        parts.append(_tick(x0 + (tick - start) * scale, base, _clock(tick)))
    for row, (name, statuses) in enumerate(rows):
        y = TOP + 16 * row
        shown = name if len(name) <= 18 else name[:17] + "…"
        parts.append(
            f'<text x="{x0 - 4}" y="{y + 11}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(shown)}</text>"
        )
        parts.append(f'<g class="series" data-series-name="{escape(name)}">')
        index = 0
        while index < len(statuses):
            last = index
            while last + 1 < len(statuses) and statuses[last + 1] == statuses[index]:
                last += 1
            left = x0 + (times[index] - start) * scale
            right = x0 + ((times[last + 1] if last + 1 < len(times) else end) - start) * scale
            status = f"status-{statuses[index]}"
            parts.append(
                f'<rect class="{escape(status)}" fill="{COLOURS.get(status, "#868e96")}" '
                f'x="{left:.1f}" y="{y + 2}" width="{max(right - left, 0.5):.1f}" height="12">'
                f"<title>{escape(name)}: {escape(statuses[index])} from "
                f"{_clock(times[index])}</title></rect>"
            )
            index = last + 1
        parts.append("</g>")
    parts.append("</svg>")
    return Chart(title=title, series=tuple(name for name, _ in rows), svg="".join(parts))


def weight_steps(
    title: str,
    points: Sequence[tuple[float, float]],
    marks: Sequence[tuple[float, float, str]],
    *,
    end: float,
) -> Chart:
    """A weight (percent) over time as a step line through `points` (time, weight) up to
    `end`, with `marks` (time, weight, verdict) as dots coloured by verdict."""
    start = points[0][0] if points else end - 1.0
    x0, x1 = LEFT, WIDTH - RIGHT
    scale = (x1 - x0) / max(end - start, 1e-9)
    base = HEIGHT - BOTTOM
    y_scale = (HEIGHT - TOP - BOTTOM) / 100.0
    parts = [_open(title, series=2)]
    parts += _legend(["weight", "evaluations"], outline=[True, False])
    parts.append(_axis_line(x0, x1, base))
    for percent in (0, 50, 100):
        y = base - percent * y_scale
        parts.append(_label(x0 - 4, y + 4, f"{percent}%", anchor="end"))
    for tick in _time_ticks(start, end):
        parts.append(_tick(x0 + (tick - start) * scale, base, _clock(tick)))
    path = []
    for index, (at, weight) in enumerate(points):
        x, y = x0 + (at - start) * scale, base - weight * y_scale
        if index == 0:
            path.append(f"M{x:.1f},{y:.1f}")
        elif weight != points[index - 1][1]:
            path.append(f"V{y:.1f}")
        following = points[index + 1][0] if index + 1 < len(points) else end
        path.append(f"H{x0 + (following - start) * scale:.1f}")
    parts.append(
        f'<g class="series weight" data-series-name="weight" fill="none" '
        f'stroke="{COLOURS["weight"]}" stroke-width="2"><path d="{"".join(path)}"/></g>'
    )
    parts.append('<g class="series evaluations" data-series-name="evaluations">')
    for at, weight, verdict in marks:
        status = VERDICT_CLASSES.get(verdict, "status-insufficient_data")
        parts.append(
            f'<circle class="{status}" fill="{COLOURS[status]}" stroke="#212529" '
            f'stroke-width="0.5" cx="{x0 + (at - start) * scale:.1f}" '
            f'cy="{base - weight * y_scale:.1f}" r="4"><title>{_clock(at)}: '
            f"{escape(verdict)} at {weight:g}%</title></circle>"
        )
    parts.append("</g></svg>")
    return Chart(title=title, series=("weight", "evaluations"), svg="".join(parts))


def _densities(series: Histogram) -> Floats:
    """Share per unit of each bin (0 for a bin without width)."""
    widths = series.edges[1:] - series.edges[:-1]
    positive = widths > 0
    return np.where(positive, series.shares / np.where(positive, widths, 1.0), 0.0)


def _open(title: str, *, series: int, height: int = HEIGHT) -> str:
    text = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{text}" '
        f'data-series="{series}" font-family="sans-serif" font-size="10" fill="#343a40">'
        f"<title>{text}</title>"
    )


def _legend(names: Sequence[str], *, outline: Sequence[bool], prefix: str = "") -> list[str]:
    parts, x = [], float(LEFT)
    for name, hollow in zip(names, outline, strict=True):
        kind = escape(prefix + name)
        colour = COLOURS.get(prefix + name, "#495057")
        paint = f'fill="none" stroke="{colour}" stroke-width="2"' if hollow else f'fill="{colour}"'
        parts.append(
            f'<rect class="legend {kind}" {paint} x="{x:.1f}" y="6" width="10" height="10"/>'
        )
        parts.append(_label(x + 14, 15, name))
        x += 22 + 6 * len(name)
    return parts


def _axis_line(x0: float, x1: float, y: float) -> str:
    return f'<path class="axis" stroke="#868e96" d="M{x0:.1f},{y:.1f}H{x1:.1f}"/>'


def _tick(x: float, y: float, text: str) -> str:
    """A tick and its label: a number or a clock time we formatted (nothing to escape)."""
    # Near the right edge the label ends at its tick, so that it is not cut off.
    anchor = "end" if x > WIDTH - 3 * len(text) - RIGHT else "middle"
    return (
        f'<path class="axis" stroke="#868e96" d="M{x:.1f},{y:.1f}v4"/>'
        f'<text x="{x:.1f}" y="{y + 14:.1f}" text-anchor="{anchor}">{text}</text>'
    )


def _label(x: float, y: float, text: str, *, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def _rect(x: float, y: float, width: float, height: float, *, tip: str = "") -> str:
    title = f"<title>{escape(tip)}</title>" if tip else ""
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}">{title}</rect>'


def _step_path(xs: Sequence[float], tops: Sequence[float], base: float, *, closed: bool) -> str:
    """Bars on `xs` edges up to `tops`, as one outline along the base (closed: to fill)."""
    corners = [value for pair in zip(tops, xs[1:], strict=True) for value in pair]
    steps = ("V%.1fH%.1f" * len(tops)) % tuple(corners)  # one formatting call for the path
    return f'<path d="M{xs[0]:.1f},{base:.1f}{steps}V{base:.1f}{"Z" if closed else ""}"/>'


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values between `low` and `high`, about `count` of them."""
    step = _nice_ceiling((high - low) / count)
    first = math.ceil(low / step) * step
    return [first + step * index for index in range(int((high - first) / step + 1e-9) + 1)]


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or over `value` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= value * (1 - 1e-9))


def _time_ticks(start: float, end: float) -> list[float]:
    """About four clock times on round seconds, minutes or hours between start and end."""
    span = max(end - start, 1.0)
    step = next(
        (s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if span / s <= 4),
        7200,
    )
    first = math.ceil(start / step) * step
    return [float(first + step * i) for i in range(int((end - first) // step) + 1)]


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def _number(value: float) -> str:
    return f"{value:.4g}" if value else "0"
