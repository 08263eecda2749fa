"""Server-rendered SVG charts for the console: line, bar and goal (progress) charts.

No JavaScript and no chart library: the page carries the finished picture, so a chart works
under the strict CSP, without scripts, and costs nothing on the client. Colours are SVG
presentation attributes (``fill=``, ``stroke=``), which CSP's ``style-src`` does not govern,
never ``style=`` attributes. Every text (titles, labels) is escaped; every chart has
``role="img"``, a ``<title>`` and a ``<desc>`` summarising its numbers for screen readers.

Coordinates are rounded to 0.1 px so the markup stays small and stable (tests compare it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Colour-blind-safe (Okabe-Ito) series colours, each with at least 3:1 contrast on white.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")
AXIS = "#5b6570"
GRID = "#d9dee3"
THRESHOLD = "#b00020"

Formatter = Callable[[float], str]


def plain(value: float) -> str:
    """A number as people read it: no needless decimals."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(value: float) -> str:
    """A share (0..1) as a percentage."""
    return f"{value * 100:.1f} %"


@dataclass(frozen=True)
class Series:
    """One line: points are (x, y); a y of None is a gap (no data for that moment)."""

    label: str
    points: Sequence[tuple[float, float | None]]


@dataclass(frozen=True)
class Frame:
    width: int = 640
    height: int = 220
    left: int = 56
    right: int = 16
    top: int = 28
    bottom: int = 36

    @property
    def plot_width(self) -> float:
        return float(self.width - self.left - self.right)

    @property
    def plot_height(self) -> float:
        return float(self.height - self.top - self.bottom)


def _n(value: float) -> str:
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else str(rounded)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= value (axis maximum)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0**exponent
        if candidate >= value * (1 - 1e-9):
            return candidate
    return float(10.0 ** (exponent + 1))  # pragma: no cover - the loop always returns


def _open(frame: Frame, title: str, summary: str, css_class: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" role="img" '
        f'viewBox="0 0 {frame.width} {frame.height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(summary)}</desc>",
        f'<text x="{frame.left}" y="16" font-size="13" font-weight="600" fill="#1f2933">'
        f"{escape(title)}</text>",
    ]


def _y_axis(frame: Frame, y_max: float, y_format: Formatter, ticks: int = 4) -> list[str]:
    parts = []
    for index in range(ticks + 1):
        value = y_max * index / ticks
        y = frame.top + frame.plot_height * (1 - index / ticks)
        parts.append(
            f'<line x1="{frame.left}" y1="{_n(y)}" x2="{frame.width - frame.right}" '
            f'y2="{_n(y)}" stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{frame.left - 6}" y="{_n(y + 4)}" font-size="11" text-anchor="end" '
            f'fill="{AXIS}">{escape(y_format(value))}</text>'
        )
    return parts


def _no_data(frame: Frame) -> str:
    return (
        f'<text x="{_n(frame.left + frame.plot_width / 2)}" '
        f'y="{_n(frame.top + frame.plot_height / 2)}" font-size="13" text-anchor="middle" '
        f'fill="{AXIS}">No data yet</text>'
    )


def _threshold_line(frame: Frame, threshold: float, y_max: float, label: str) -> list[str]:
    y = frame.top + frame.plot_height * (1 - min(threshold, y_max) / y_max)
    return [
        f'<line class="threshold" x1="{frame.left}" y1="{_n(y)}" '
        f'x2="{frame.width - frame.right}" y2="{_n(y)}" stroke="{THRESHOLD}" '
        f'stroke-width="1.5" stroke-dasharray="6 4"/>',
        f'<text x="{frame.width - frame.right}" y="{_n(y - 4)}" font-size="11" '
        f'text-anchor="end" fill="{THRESHOLD}">{escape(label)}</text>',
    ]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_format: Formatter = plain,
    x_format: Formatter = plain,
    y_max: float | None = None,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    frame: Frame | None = None,
) -> Markup:
    """Lines over a shared x axis (usually Unix seconds). ``y_max`` fixes the scale (1.0 for
    shares); otherwise it is the data's maximum rounded up to a nice number."""
    frame = frame or Frame()
    known = [(x, y) for s in series for x, y in s.points if y is not None]
    summary_parts = []
    for s in series:
        values = [y for _x, y in s.points if y is not None]
        if values:
            summary_parts.append(
                f"{s.label}: last {y_format(values[-1])}, "
                f"min {y_format(min(values))}, max {y_format(max(values))}"
            )
        else:
            summary_parts.append(f"{s.label}: no data")
    parts = _open(frame, title, "; ".join(summary_parts) or "no data", "chart-line")
    top = y_max if y_max is not None else nice_ceiling(max([y for _x, y in known] or [0.0]))
    if threshold is not None and y_max is None:
        top = max(top, nice_ceiling(threshold))
    parts += _y_axis(frame, top, y_format)
    if not known:
        parts.append(_no_data(frame))
        parts.append("</svg>")
        return Markup("".join(parts))  # noqa: S704 - every text above went through escape()
    xs = [x for x, _y in known]
    x_min, x_max = min(xs), max(xs)
    span = (x_max - x_min) or 1.0

    def px(x: float) -> float:
        return frame.left + frame.plot_width * (x - x_min) / span

    def py(y: float) -> float:
        return frame.top + frame.plot_height * (1 - min(max(y, 0.0), top) / top)

    for x_value, anchor in ((x_min, "start"), (x_max, "end")):
        parts.append(
            f'<text x="{_n(px(x_value))}" y="{frame.height - 12}" font-size="11" '
            f'text-anchor="{anchor}" fill="{AXIS}">{escape(x_format(x_value))}</text>'
        )
    if threshold is not None:
        parts += _threshold_line(frame, threshold, top, threshold_label)
    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        segments: list[list[tuple[float, float]]] = [[]]
        for x, y in s.points:
            if y is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((px(x), py(y)))
        for segment in segments:
            if len(segment) == 1:
                x, y = segment[0]
                parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{colour}"/>')
            elif segment:
                path = " ".join(
                    f"{'M' if i == 0 else 'L'}{_n(x)},{_n(y)}" for i, (x, y) in enumerate(segment)
                )
                parts.append(
                    f'<path class="series" d="{path}" fill="none" stroke="{colour}" '
                    f'stroke-width="2" stroke-linejoin="round"/>'
                )
    if len(series) > 1:
        x = frame.left + 200
        for index, s in enumerate(series):
            colour = PALETTE[index % len(PALETTE)]
            parts.append(
                f'<rect x="{x}" y="7" width="10" height="10" fill="{colour}"/>'
                f'<text x="{x + 14}" y="16" font-size="11" fill="#1f2933">{escape(s.label)}</text>'
            )
            x += 24 + 7 * len(s.label)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    y_format: Formatter = plain,
    y_max: float | None = None,
    limit: float | None = None,
    limit_label: str = "limit",
    frame: Frame | None = None,
) -> Markup:
    """Vertical bars with their labels under them; ``limit`` draws a dashed line (a quota)."""
    frame = frame or Frame()
    summary = "; ".join(f"{label}: {y_format(value)}" for label, value in bars) or "no data"
    if limit is not None:
        summary += f"; {limit_label}: {y_format(limit)}"
    parts = _open(frame, title, summary, "chart-bar")
    highest = max([value for _label, value in bars] + [limit or 0.0, 0.0])
    top = y_max if y_max is not None else nice_ceiling(highest)
    parts += _y_axis(frame, top, y_format)
    if not bars:
        parts.append(_no_data(frame))
    slot = frame.plot_width / max(len(bars), 1)
    width = max(slot * 0.7, 1.0)
    label_every = max(1, math.ceil(len(bars) / 12))  # at most ~12 labels under the axis
    for index, (label, value) in enumerate(bars):
        height = frame.plot_height * min(max(value, 0.0), top) / top
        x = frame.left + slot * index + (slot - width) / 2
        y = frame.top + frame.plot_height - height
        over = limit is not None and value > limit
        colour = THRESHOLD if over else PALETTE[0]
        parts.append(
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}" '
            f'fill="{colour}"><title>{escape(label)}: {escape(y_format(value))}</title></rect>'
        )
        if index % label_every == 0:
            parts.append(
                f'<text x="{_n(x + width / 2)}" y="{frame.height - 12}" font-size="11" '
                f'text-anchor="middle" fill="{AXIS}">{escape(label)}</text>'
            )
    if limit is not None:
        parts += _threshold_line(frame, limit, top, limit_label)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def goal_chart(
    value: float, goal: float, *, title: str, value_format: Formatter = plain, width: int = 320
) -> Markup:
    """A horizontal progress bar of ``value`` towards ``goal`` (e.g. MRR against $5,000)."""
    height = 44
    share = 0.0 if goal <= 0 else min(max(value / goal, 0.0), 1.0)
    summary = f"{value_format(value)} of {value_format(goal)} ({share * 100:.0f} %)"
    frame = Frame(width=width, height=height, left=0, right=0, top=20, bottom=8)
    parts = _open(frame, title, summary, "chart-goal")
    bar_width = width * share
    colour = PALETTE[2] if share >= 1 else PALETTE[0]
    parts += [
        f'<rect x="0" y="22" width="{width}" height="14" rx="3" fill="{GRID}"/>',
        f'<rect x="0" y="22" width="{_n(bar_width)}" height="14" rx="3" fill="{colour}"/>',
        f'<text x="{width}" y="16" font-size="11" text-anchor="end" fill="{AXIS}">'
        f"{escape(summary)}</text>",
        "</svg>",
    ]
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()
