"""The Report page's figures: each metric per strategy against human text, the paper's Figure 1, and
sweeps as quality-against-diversity curves beside human text."""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from core.decoding import processors
from core.report import TABLE_METRICS, Figure1, Report, SweepReport
from core.report.sweep import value_label
from core.views.tokens import plotly_text

LABELS = {
    "perplexity": "perplexity (raw model)",
    "self_bleu4": "Self-BLEU-4 (0-1)",
    "zipf": "Zipf coefficient",
    "repetition_rate": "share of samples ending in a loop",
    "distinct_1": "distinct-1", "distinct_2": "distinct-2", "distinct_3": "distinct-3",
    "repeated_3grams": "share of repeated 3-grams",
    "mean_length": "mean length (tokens)",
}
HUMAN_COLOUR = "#d62728"


def metric_chart(report: Report, key: str) -> go.Figure:
    """One bar per strategy (mean, 95% interval as error bars) and the human value as a horizontal line:
    the paper's question is which strategy's text looks most like people's."""
    names, means, plus, minus = [], [], [], []
    for r in report.strategies:
        s = r.metrics[key]
        names.append(plotly_text(r.name))  # a line-up's label is a stranger's text; plotly reads some HTML
        means.append(s.mean)
        plus.append(None if s.high is None or s.mean is None else max(0.0, s.high - s.mean))
        minus.append(None if s.low is None or s.mean is None else max(0.0, s.mean - s.low))
    fig = go.Figure(go.Bar(x=names, y=means, name="strategies", marker_color="#1f77b4",
                           error_y=dict(type="data", array=plus, arrayminus=minus, visible=True),
                           hovertemplate="%{x}<br>%{y:.3f}<extra></extra>"))
    human = report.human.metrics[key] if report.human is not None else None
    log = key == "perplexity"
    if human is not None and human.mean is not None:
        # a line shape and its label apart: plotly places an annotation on a log axis in log10 units (the
        # label of add_hline at y=102 went to 1e102, and the axis with it)
        fig.add_hline(y=human.mean, line=dict(color=HUMAN_COLOUR, dash="dash", width=2))
        fig.add_annotation(x=0, xref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                           y=math.log10(human.mean) if log and human.mean > 0 else human.mean,
                           text=f"human text {human.mean:.3g}", font=dict(color=HUMAN_COLOUR))
    if log:
        ends = [v for s in _spreads(report, key) for v in (s.mean, s.low, s.high)]
        fig.update_yaxes(type="log", range=_log_range(ends))
    fig.update_layout(title=LABELS.get(key, key), yaxis_title=LABELS.get(key, key), template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=90), height=360, showlegend=False)
    return fig


def figure1_chart(data: Figure1) -> go.Figure:
    """The paper's Figure 1 live: the raw probability of each token along beam search's continuation and
    along the human continuation of the same prompt. Beam search stays high and flat; people do not."""
    fig = go.Figure()
    for name, tokens, probs, colour in ((data.beam_name, data.beam_tokens, data.beam_probs, "#1f77b4"),
                                        ("human text", data.human_tokens, data.human_probs, HUMAN_COLOUR)):
        if not tokens:
            continue
        fig.add_trace(go.Scatter(
            x=list(range(1, len(tokens) + 1)), y=probs, mode="lines+markers", name=plotly_text(name),
            line=dict(color=colour), customdata=[html.escape(repr(t)) for t in tokens],
            hovertemplate=f"{html.escape(name)}<br>token %{{x}}: %{{customdata}}<br>p (raw) %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title="Per-token probability (raw): beam search vs human text", xaxis_title="token",
                      yaxis_title="probability (raw)", yaxis_range=[0, 1.02], template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=40), height=380)
    return fig


def _spreads(report: Report, key: str) -> list:
    return [r.metrics[key] for r in report.rows]


def _log_range(values: list) -> list[float] | None:
    """The log axis from a little under the smallest value to a little over the largest (log10 units), so
    that bars are read against their own scale; None leaves it to plotly when nothing is positive."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return None
    low, high = math.log10(min(positive)), math.log10(max(positive))
    return [low - 0.1 - 0.05 * (high - low), high + 0.1 + 0.05 * (high - low)]


TABLE_LABELS = {"strategy": "strategy", "kind": "kind", "samples": "samples", **LABELS,
                "finish_reasons": "why samples ended"}


def figures_table(report: Report) -> list[dict]:
    """The Report's table for people: labelled columns, and in place of a figure that does not apply, the
    reason (Self-BLEU compares samples with each other, so one sample has none)."""
    shown = ["strategy", "kind", "samples", *TABLE_METRICS, "distinct_1", "distinct_3", "repeated_3grams",
             "finish_reasons"]
    rows = []
    for row in report.table():
        why = "n/a: 1 sample" if row["samples"] == 1 else "n/a"
        rows.append({TABLE_LABELS[k]: why if row[k] is None else row[k] for k in shown})
    return rows


# sweeps ---------------------------------------------------------------------------------------------------
CURVE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SWEEP_TABLE_LABELS = {"knob": "knob", "method": "base run", "value": "value", **TABLE_LABELS}


def knob_label(name: str) -> str:
    """How people name a setting: its processor's label ("top-p"), else the setting's own name."""
    return next((p.label for p in processors.ordered() if p.knobs and p.knobs[0] == name), name)


def curve_name(knob: str, method: str) -> str:
    return f"{knob_label(knob)} (base: {method})"


def point_options(result: SweepReport) -> list[str]:
    """A label for each point, in the order of `result.points` (the index a link keeps)."""
    return [f"{p.knob}={value_label(p.value)} on {p.method}" for p in result.points]


def picked_point(selection, count: int) -> int | None:
    """The point a click on the sweep chart picked (its index in `result.points`), from Streamlit's
    selection state; None for a click on human text or anything else."""
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for p in points or []:
        index = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(index, list) and index:
            index = index[0]
        if isinstance(index, (int, float)) and not isinstance(index, bool) and 0 <= index < count \
                and float(index).is_integer():
            return int(index)
    return None


def _errors(spreads: list) -> tuple[dict, dict]:
    """Plotly's asymmetric error bars from the spreads: (plus, minus) arrays, None where not known."""
    plus = [None if s.high is None or s.mean is None else max(0.0, s.high - s.mean) for s in spreads]
    minus = [None if s.low is None or s.mean is None else max(0.0, s.mean - s.low) for s in spreads]
    return dict(type="data", array=plus, arrayminus=minus, visible=True, thickness=1, width=3)


def sweep_chart(result: SweepReport, x: str, y: str, picked: int | None = None) -> go.Figure:
    """One curve per knob and base run through its points (quality `y` against diversity `x`), each point
    labelled with the knob's value and drawn with its 95% intervals on both axes, human text as a star
    with its own intervals, and the picked point ringed. A point's customdata is its index in
    `result.points`, so a click says which it is."""
    fig = go.Figure()
    index = {id(p): i for i, p in enumerate(result.points)}
    curves = [(s.knob, method, points) for s in result.sweeps for method, points in s.curves().items()]
    for c, (knob, method, points) in enumerate(curves):
        xs, ys = [p.report.metrics[x] for p in points], [p.report.metrics[y] for p in points]
        name = curve_name(knob, method)
        fig.add_trace(go.Scatter(
            x=[s.mean for s in xs], y=[s.mean for s in ys], mode="lines+markers+text", name=html.escape(name),
            text=[value_label(p.value) for p in points], textposition="top center",
            textfont=dict(color=CURVE_COLOURS[c % len(CURVE_COLOURS)]),
            marker=dict(size=9, color=CURVE_COLOURS[c % len(CURVE_COLOURS)]),
            line=dict(color=CURVE_COLOURS[c % len(CURVE_COLOURS)]),
            error_x=_errors(xs), error_y=_errors(ys), customdata=[index[id(p)] for p in points],
            hovertemplate=(f"{html.escape(knob)}=%{{text}} on {html.escape(method)}<br>{LABELS[x]} %{{x:.3f}}<br>"
                           f"{LABELS[y]} %{{y:.3f}}<extra></extra>")))
    if result.human is not None:
        hx, hy = result.human.metrics[x], result.human.metrics[y]
        fig.add_trace(go.Scatter(
            x=[hx.mean], y=[hy.mean], mode="markers+text", name="human text", text=["human text"],
            textposition="bottom center", marker=dict(symbol="star", size=18, color=HUMAN_COLOUR),
            textfont=dict(color=HUMAN_COLOUR), error_x=_errors([hx]), error_y=_errors([hy]),
            hovertemplate=f"human text<br>{LABELS[x]} %{{x:.3f}}<br>{LABELS[y]} %{{y:.3f}}<extra></extra>"))
    if picked is not None and 0 <= picked < len(result.points):
        m = result.points[picked].report.metrics
        fig.add_trace(go.Scatter(x=[m[x].mean], y=[m[y].mean], mode="markers", name="picked", showlegend=False,
                                 marker=dict(symbol="circle-open", size=22, color="#111111", line=dict(width=2)),
                                 hoverinfo="skip"))
    for key, axis in ((x, fig.update_xaxes), (y, fig.update_yaxes)):
        if key == "perplexity":  # spans orders of magnitude between low and high temperatures
            ends = [v for p in result.points for v in _ends(p.report.metrics[key])]
            ends += _ends(result.human.metrics[key]) if result.human is not None else []
            axis(type="log", range=_log_range(ends))
    fig.update_layout(title=f"{LABELS[y]} against {LABELS[x]}", xaxis_title=LABELS[x], yaxis_title=LABELS[y],
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=480,
                      legend=dict(orientation="h", yanchor="top", y=-0.15), clickmode="event+select")
    return fig


def _ends(spread) -> list:
    return [spread.mean, spread.low, spread.high]


def sweep_table(result: SweepReport) -> list[dict]:
    """The sweep's table for people: one row per point and the human row, labelled columns, "n/a" where a
    figure does not apply."""
    shown = ["knob", "method", "value", "kind", "samples", *TABLE_METRICS, "distinct_1", "distinct_3",
             "repeated_3grams", "finish_reasons"]
    rows = []
    for row in result.table():
        why = "n/a: 1 sample" if row["samples"] == 1 else "n/a"
        value = "" if row["value"] is None else value_label(row["value"])
        rows.append({SWEEP_TABLE_LABELS[k]: value if k == "value" else (why if row[k] is None else row[k])
                     for k in shown})
    return rows
