"""A plotly scatter figure drawn as a static SVG image, read from the figure itself (its traces' points,
markers, names and hover templates; its title, axis titles and ranges), so that a chart is defined once
and a first screen can show it without loading plotly.js in the browser.

It draws what the line-up chart uses (marker traces on linear axes with explicit ranges, a legend on the
right), not plotly in general: any other trace or axis type is refused rather than drawn wrong."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

import plotly.graph_objects as go

MARKERS = {  # plotly's symbols as SVG paths around (0, 0), for a marker of size ~13 px
    "circle": "M 6.5 0 A 6.5 6.5 0 1 1 -6.5 0 A 6.5 6.5 0 1 1 6.5 0 Z",
    "square": "M -5.8 -5.8 H 5.8 V 5.8 H -5.8 Z",
    "diamond": "M 0 -7.5 L 7.5 0 L 0 7.5 L -7.5 0 Z",
}
_FIELD = re.compile(r"%\{(\w+)(?:\[(\d+)\])?(?::([^}]*))?\}")


@dataclass(frozen=True)
class _Frame:
    """Where the plot area sits in the image, and the data ranges it shows."""
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def sx(self, x: float) -> float:
        low, high = self.x_range
        return self.left + (x - low) / (high - low) * self.plot_w

    def sy(self, y: float) -> float:
        low, high = self.y_range
        return self.top + (high - y) / (high - low) * self.plot_h


def ticks(low: float, high: float, count: int = 5, step: float | None = None) -> list[float]:
    """Round tick values across [low, high], `step` apart (the axis's dtick) or about `count` of them."""
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = step or next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def hover_text(trace, i: int) -> str:
    """The plain text of point `i`'s hover label: its hover template filled in (d3's fixed-point
    formats are Python's), line breaks kept, tags dropped and entities decoded."""
    def value(match) -> str:
        key, index, fmt = match.groups()
        v = trace.customdata[i][int(index)] if key == "customdata" else trace[key][i]
        return format(v, fmt or "")

    text = _FIELD.sub(value, re.sub(r"<extra>.*?</extra>", "", trace.hovertemplate or trace.name or ""))
    return html.unescape(re.sub(r"<[^>]+>", "", text.replace("<br>", "\n")))


def _check(fig: go.Figure) -> None:
    for trace in fig.data:
        if trace.type != "scatter" or trace.mode != "markers":
            raise ValueError(f"figure_svg draws marker scatter traces only, not {trace.type} ({trace.mode})")
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        if axis.range is None or axis.type not in (None, "linear", "-"):
            raise ValueError("figure_svg needs linear axes with explicit ranges")


def _axes(fig: go.Figure, frame: _Frame) -> list[str]:
    """Title, grid lines with their tick labels, the plot's border and the axis titles."""
    f, bottom = frame, frame.top + frame.plot_h
    title = html.escape(fig.layout.title.text or "")
    parts = [f'<text x="{f.left}" y="22" font-size="16" font-weight="600" fill="#333">{title}</text>']
    for x in ticks(*f.x_range, step=fig.layout.xaxis.dtick):
        parts.append(f'<line x1="{f.sx(x):.1f}" y1="{f.top}" x2="{f.sx(x):.1f}" y2="{bottom}" stroke="#eee"/>'
                     f'<text x="{f.sx(x):.1f}" y="{bottom + 16}" font-size="11" fill="#666" '
                     f'text-anchor="middle">{x:g}</text>')
    for y in ticks(*f.y_range, step=fig.layout.yaxis.dtick):
        parts.append(f'<line x1="{f.left}" y1="{f.sy(y):.1f}" x2="{f.left + f.plot_w}" y2="{f.sy(y):.1f}" '
                     f'stroke="#eee"/><text x="{f.left - 6}" y="{f.sy(y) + 4:.1f}" font-size="11" fill="#666" '
                     f'text-anchor="end">{y:g}</text>')
    x_title = html.escape(fig.layout.xaxis.title.text or "")
    y_title = html.escape(fig.layout.yaxis.title.text or "")
    parts.append(f'<rect x="{f.left}" y="{f.top}" width="{f.plot_w}" height="{f.plot_h}" fill="none" stroke="#ccc"/>'
                 f'<text x="{f.left + f.plot_w / 2:.1f}" y="{f.height - 10}" font-size="12" fill="#444" '
                 f'text-anchor="middle">{x_title}</text>'
                 f'<text transform="translate(16 {f.top + f.plot_h / 2:.1f}) rotate(-90)" font-size="12" '
                 f'fill="#444" text-anchor="middle">{y_title}</text>')
    return parts


def _marker(trace, scale: float = 1.0) -> str:
    m = trace.marker
    outline = m.line.color or "#333"
    width = m.line.width if m.line.width is not None else 1
    shrink = f' transform="scale({scale:g})"' if scale != 1 else ""
    return (f'<path d="{MARKERS[m.symbol or "circle"]}"{shrink} fill="{m.color}" stroke="{outline}" '
            f'stroke-width="{width:g}"/>')


def _points(fig: go.Figure, frame: _Frame) -> list[str]:
    """Each trace's points (each with its hover text as a title), then its legend entry on the right."""
    parts, legend_x = [], frame.left + frame.plot_w + 22
    for k, trace in enumerate(fig.data):
        titles = [html.escape(hover_text(trace, i)) for i in range(len(trace.x))]
        for x, y, title in zip(trace.x, trace.y, titles):
            if math.isfinite(x) and math.isfinite(y):
                parts.append(f'<g class="dp-point" transform="translate({frame.sx(x):.1f} {frame.sy(y):.1f})">'
                             f'<title>{title}</title>{_marker(trace)}</g>')
        if trace.showlegend is not False:
            name = html.escape(html.unescape(trace.name or ""))
            title = titles[0] if titles else name
            parts.append(f'<g transform="translate({legend_x} {frame.top + 8 + 18 * k})"><title>{title}</title>'
                         f'{_marker(trace, 0.8)}'
                         f'<text x="14" y="4" font-size="12" fill="#333">{name}</text></g>')
    return parts


def figure_svg(fig: go.Figure, width: int = 760, height: int = 360) -> str:
    """`fig` as an SVG string that scales to its container (up to `width` px wide)."""
    _check(fig)
    left, right, top, bottom = 64, 250, 38, 52
    frame = _Frame(width, height, left, top, width - left - right, height - top - bottom,
                   tuple(fig.layout.xaxis.range), tuple(fig.layout.yaxis.range))
    label = html.escape(fig.layout.title.text or "chart")
    head = (f'<svg class="dp-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" style="max-width:{width}px" font-family="sans-serif" role="img" aria-label="{label}">')
    return head + "".join(_axes(fig, frame) + _points(fig, frame)) + "</svg>"
