"""A plotly scatter figure drawn as a static SVG image, read from the figure itself (its traces' points,
markers, names and hover templates; its title, axis titles and ranges), so that a chart is defined once
and a first screen can show it without loading plotly.js in the browser.

It draws what the line-up chart uses (marker traces on linear axes with explicit ranges, a legend on the
right), not plotly in general: any other trace or axis type is refused rather than drawn wrong. This module
works out the geometry; the SVG is templates/chart.svg.j2, which escapes every text it is given."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

import plotly.graph_objects as go

from core.views.templating import TEMPLATES

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


def _marker(trace) -> dict:
    m = trace.marker
    return {"path": MARKERS[m.symbol or "circle"], "fill": m.color, "outline": m.line.color or "#333",
            "width": m.line.width if m.line.width is not None else 1}


def _traces(fig: go.Figure, frame: _Frame) -> list[dict]:
    """Each trace's finite points in image coordinates, each with its hover text (the point's title),
    and its legend entry."""
    traces = []
    for trace in fig.data:
        hovers = [hover_text(trace, i) for i in range(len(trace.x))]
        points = [(frame.sx(x), frame.sy(y), hover) for x, y, hover in zip(trace.x, trace.y, hovers)
                  if math.isfinite(x) and math.isfinite(y)]
        name = html.unescape(trace.name or "")
        traces.append({"points": points, "marker": _marker(trace), "legend": trace.showlegend is not False,
                       "name": name, "legend_title": hovers[0] if hovers else name})
    return traces


def figure_svg(fig: go.Figure, width: int = 760, height: int = 360) -> str:
    """`fig` as an SVG string that scales to its container (up to `width` px wide)."""
    _check(fig)
    left, right, top, bottom = 64, 250, 38, 52
    f = _Frame(width, height, left, top, width - left - right, height - top - bottom,
               tuple(fig.layout.xaxis.range), tuple(fig.layout.yaxis.range))
    return TEMPLATES.get_template("chart.svg.j2").render(
        f=f, bottom=f.top + f.plot_h, legend_x=f.left + f.plot_w + 22,
        title=fig.layout.title.text or "", label=fig.layout.title.text or "chart",
        x_title=fig.layout.xaxis.title.text or "", y_title=fig.layout.yaxis.title.text or "",
        x_ticks=[(f.sx(x), f"{x:g}") for x in ticks(*f.x_range, step=fig.layout.xaxis.dtick)],
        y_ticks=[(f.sy(y), f"{y:g}") for y in ticks(*f.y_range, step=fig.layout.yaxis.dtick)],
        traces=_traces(fig, f))
