"""The Report page's figures: each metric per strategy against human text, and the paper's Figure 1."""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from core.report import TABLE_METRICS, Figure1, Report

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
        names.append(r.name)
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
            x=list(range(1, len(tokens) + 1)), y=probs, mode="lines+markers", name=name,
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
