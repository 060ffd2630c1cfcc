"""Line charts as inline SVG: one line per method against the input length (log scale).

Drawn here rather than by a charting library so the report page needs nothing from the
network and nothing installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

__all__ = ["COLOURS", "line_chart", "size_label"]

#: One colour per method, in order (colour-blind-safe Okabe-Ito hues).
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")

_W, _H = 560, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 130, 28, 44


def size_label(tokens: int) -> str:
    """``8k``, ``128k``, ``1M``, ``1.5M``: a size as people write it."""
    if tokens >= 1_000_000 and tokens % 100_000 == 0:
        return f"{tokens / 1_000_000:g}M"
    if tokens >= 1_000 and tokens % 1_000 == 0:
        return f"{tokens // 1_000}k"
    return str(tokens)


def _ticks(top: float) -> list[float]:
    """Four or five round ticks from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def line_chart(
    title: str,
    series: dict[str, dict[int, float]],
    *,
    y_max: float | None = None,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
) -> str:
    """An SVG chart of ``series`` (method -> {size: value}) against size on a log axis.

    Args:
        title: Drawn above the plot.
        series: The points of each method; a method with no points is left out.
        y_max: The top of the y axis (default: the largest value, rounded up).
        y_format: How a y tick is written.
    """
    sizes = sorted({size for points in series.values() for size in points})
    values = [v for points in series.values() for v in points.values() if math.isfinite(v)]
    ticks = _ticks(y_max if y_max is not None else max(values, default=0.0))
    top = ticks[-1]
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    logs = [math.log(s) for s in sizes] or [0.0]
    span = max(logs) - min(logs)

    def x(size: int) -> float:
        if span == 0:
            return _LEFT + plot_w / 2
        return _LEFT + (math.log(size) - min(logs)) / span * plot_w

    def y(value: float) -> float:
        return _TOP + plot_h - (value / top * plot_h if top else 0.0)

    parts = [
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{escape(title)}">',
        f'<text x="{_LEFT}" y="16" class="title">{escape(title)}</text>',
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(tick))}</text>"
        )
    for size in sizes:
        parts.append(
            f'<text x="{x(size):.1f}" y="{_TOP + plot_h + 18}" text-anchor="middle">'
            f"{size_label(size)}</text>"
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 6}" text-anchor="middle" class="axis">'
        "input length (tokens)</text>"
    )
    drawn = [(name, points) for name, points in series.items() if points]
    for index, (name, points) in enumerate(drawn):
        colour = COLOURS[index % len(COLOURS)]
        ordered = [(s, v) for s, v in sorted(points.items()) if math.isfinite(v)]
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in ordered)
        if len(ordered) > 1:
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
        for s, v in ordered:
            parts.append(
                f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(name)} at {size_label(s)}: {escape(y_format(v))}</title></circle>"
            )
        legend_y = _TOP + 14 + index * 18
        parts.append(
            f'<rect x="{_W - _RIGHT + 14}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{colour}"/><text x="{_W - _RIGHT + 30}" y="{legend_y}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
