"""The plotly figures of the pages, built from traces. `lineup_chart_svg` is the line-up chart as an
SVG image (`core.views.svg` draws it from the same figure), for a first screen without plotly.js."""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go

from core.decoding.processors import CUTS, PROCESSORS, ordered
from core.decoding.trace import RunTrace, Sequence
from core.views.colours import RUN_COLOURS, STRATEGY_SYMBOLS
from core.views.svg import figure_svg
from core.views.tokens import plotly_text, visible


def layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=40), height=380)
    return fig


def lineup_chart(runs: list[RunTrace]) -> go.Figure:
    """Coherence (mean raw log-prob per token) against diversity (distinct-2), one point per run.

    Runs are told apart by colour and marker (circle greedy, square beam, diamond sampling) with a
    legend, not by text next to the points: texts of runs with close figures overlapped."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        f = run.best.figures()
        name = plotly_text(run.name)
        fig.add_trace(go.Scatter(
            x=[f.distinct_2], y=[f.mean_logprob], mode="markers", name=name,
            marker=dict(size=13, color=RUN_COLOURS[i % len(RUN_COLOURS)],
                        symbol=STRATEGY_SYMBOLS.get(run.strategy, "circle"), line=dict(width=1, color="#333")),
            customdata=[[f.perplexity, f.sequence_logprob]],
            hovertemplate=f"<b>{name}</b><br>distinct-2 %{{x:.2f}}<br>mean raw log-prob %{{y:.2f}}"
                          "<br>perplexity %{customdata[0]:.1f}<br>sequence log-prob (raw) %{customdata[1]:.2f}"
                          "<extra></extra>"))
    fig.update_layout(showlegend=True, legend=dict(title="run", itemsizing="constant"))
    fig = layout(fig, "Coherence vs diversity", "diversity: distinct-2 (higher = less repetition)",
                 "coherence: mean raw log-prob per token")
    fig.update_layout(margin=dict(l=50, r=20, t=50, b=40))
    fig.update_xaxes(range=_lineup_range([t.x[0] for t in fig.data], 0.0, 1.0, pad=0.03), dtick=0.2)
    fig.update_yaxes(range=_lineup_range([t.y[0] for t in fig.data]))
    return fig


def _lineup_range(values: list[float], low: float | None = None, high: float | None = None,
                  pad: float | None = None) -> list[float]:
    """An explicit axis range (the SVG rendering needs one): distinct-2's whole 0-1 with room for a
    marker at either end; log-probs padded by 8% of their spread, at least 0.5."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    lo = min(finite) if low is None else min(low, min(finite))
    hi = max(finite) if high is None else max(high, max(finite))
    pad = max(0.5, 0.08 * (hi - lo)) if pad is None else pad
    return [lo - pad, hi + pad]


def lineup_chart_svg(runs: list[RunTrace]) -> str:
    """`lineup_chart` as an SVG image for the Compare page's first screen: loading plotly.js held a new
    visitor's Compare results back by about 1.5 s. Each point's hover text is its title."""
    return figure_svg(lineup_chart(runs))


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max()  # the shift that seed 004's version lacks: no overflow at small temperatures
    e = np.exp(z)
    return e / e.sum()


def temperature_figure(logits, temperatures, labels=None, yours: float | None = None,
                       top: int | None = None) -> go.Figure:
    """One softmax curve per temperature over the same logits; `yours` dashed on top.

    With `top`, `logits` is the model's whole vocabulary: the softmax is taken over all of it at each
    temperature and the `top` most likely tokens are plotted (so their probabilities need not sum to
    1); `labels` then names those tokens, most likely first."""
    logits = np.asarray(logits, dtype=np.float64)
    index = np.argsort(-logits, kind="stable")[:top] if top else np.arange(len(logits))
    labels = list(labels) if labels is not None else [str(i) for i in range(len(index))]
    if len(set(labels)) < len(labels):  # a category axis would merge equal labels
        labels = [f"{i + 1}. {t}" for i, t in enumerate(labels)]
    labels = [plotly_text(t) for t in labels]
    fig = go.Figure()
    shown = [(t, False) for t in temperatures] + ([(yours, True)] if yours is not None else [])
    for t, mine in shown:
        y = softmax_with_temperature(logits, t)[index]
        fig.add_trace(go.Scatter(
            x=labels, y=y, mode="lines+markers", name=f"T={t:g}" + (" (yours)" if mine else ""),
            line=dict(dash="dash", width=3, color="black") if mine else None,
            hovertemplate="%{x}<br>p=%{y:.2%}<extra>T=" + f"{t:g}</extra>"))
    fig.update_xaxes(type="category")
    what = (f"probability (softmax over all {len(logits):,} tokens)" if top else "probability")
    return layout(fig, "Softmax with temperature", "token", what)


def cut_points(sorted_probs: np.ndarray, top_k: int, top_p: float) -> tuple[int, int]:
    """How many tokens top-k and top-p would each keep of one sorted (descending) distribution.
    (The run applies them in turn, top-p after top-k: `cumulative_figure` shows that.)"""
    k = len(sorted_probs) if top_k in (0, None) else min(top_k, len(sorted_probs))
    cumulative = np.cumsum(sorted_probs)
    # transformers' TopP keeps the smallest prefix whose mass reaches top_p
    p = int(np.searchsorted(cumulative, top_p - 1e-12) + 1) if top_p < 1 else len(sorted_probs)
    return k, min(p, len(sorted_probs))


def _curve(sorted_probs: np.ndarray, marks=()) -> tuple[np.ndarray, np.ndarray]:
    """(rank, cumulative mass) at every rank up to 200, then ~400 log-spaced ranks (the curve only
    rises, so that draws it exactly), plus the `marks`. Ranks past the last non-zero are dropped."""
    sorted_probs = np.asarray(sorted_probs, dtype=np.float64)
    n = int(np.count_nonzero(sorted_probs > 0)) or len(sorted_probs)
    cumulative = np.cumsum(sorted_probs[:n])
    ranks = np.concatenate([np.arange(1, min(n, 200) + 1), np.geomspace(1, n, 400).round().astype(int),
                            [m for m in marks if 1 <= m <= n], [n]])
    ranks = np.unique(ranks.astype(int))
    return ranks, cumulative[ranks - 1]


def _stage_traces(stages: list[dict]) -> list[go.Scatter]:
    """Each cut in the order the run applied it: the curve it sees (the first one's is drawn by the
    caller), the line where it falls, and for a mass cut the mass it keeps."""
    traces, previous = [], None
    for i, stage in enumerate(stages):
        name, kept = stage["name"], stage["kept"]
        pretty, colour = PROCESSORS[name].label, PROCESSORS[name].colour
        sees = np.asarray(stage["sorted"], dtype=np.float64)
        if i > 0:
            r, c = _curve(sees, [kept])
            traces.append(go.Scatter(
                x=r, y=c, mode="lines", line=dict(color=colour, width=2),
                name=f"{stage['label']}: what {pretty} sees",
                hovertemplate="rank %{x:,}<br>cumulative p %{y:.3f}<extra>" + html.escape(stage["label"]) + "</extra>"))
        label = f"{pretty}={stage['param']:g} keeps {kept:,}" + (f" of {previous:,}" if previous is not None else "")
        traces.append(go.Scatter(x=[kept, kept], y=[0, 1], mode="lines", name=label,
                                 line=dict(color=colour, dash="dash", width=2), meta={"processor": name, "kept": kept},
                                 hovertemplate=f"{label}<extra></extra>"))
        if PROCESSORS[name].mass_cut:
            traces.append(go.Scatter(x=[1, kept], y=[stage["param"]] * 2, mode="lines", showlegend=False,
                                     line=dict(color=colour, dash="dot", width=1), hoverinfo="skip"))
        previous = kept
    return traces


def cumulative_figure(at: dict, title: str = "") -> go.Figure:
    """The sorted cumulative-probability curve of the distribution the cuts actually see, with where
    each cut falls, as the run applied them (temperature, then top-k, then top-p on what top-k left,
    renormalised). `at` is what `core.views.internals.distribution_at(pg, ids, settings)` returns; each
    cut line carries `meta={"processor", "kept"}`, the count equal to the run's `kept` at that step."""
    raw = np.asarray(at["raw"], dtype=np.float64)
    vocab = len(raw)
    before, stages = at["before_cuts"], at["stages"]
    fig = go.Figure()
    if before["label"] != "raw":
        r, c = _curve(raw)
        fig.add_trace(go.Scatter(x=r, y=c, mode="lines", name="raw distribution (before any processor)",
                                 line=dict(color="#bbbbbb", width=1.5, dash="dot"),
                                 hovertemplate="rank %{x:,}<br>cumulative p %{y:.3f} (raw)<extra></extra>"))
    first = PROCESSORS[stages[0]["name"]].label if stages else None
    r, c = _curve(before["sorted"], [stages[0]["kept"]] if stages else [])
    fig.add_trace(go.Scatter(
        x=r, y=c, mode="lines", line=dict(color="#1f77b4", width=2.5),
        name=f"{before['label']}" + (f": what {first} sees" if first else ": nothing is cut"),
        hovertemplate="rank %{x:,}<br>cumulative p %{y:.3f}<extra>" + html.escape(before["label"]) + "</extra>"))
    fig.add_traces(_stage_traces(stages))
    if not stages:
        fig.add_annotation(text="nothing is cut (top-k off, top-p 1)", showarrow=False, x=0.5, y=0.15,
                           xref="paper", yref="paper")
    decades = [10 ** i for i in range(int(math.log10(max(vocab, 10))) + 1)]
    fig.update_xaxes(type="log", range=[0, math.log10(max(vocab, 10))], tickmode="array", tickvals=decades,
                     ticktext=[f"{d:,}" for d in decades])
    fig.update_yaxes(range=[0, 1.02])
    fig = layout(fig, title or "Sorted cumulative probability: what each cut sees",
                 "rank in that distribution (log scale)", "cumulative probability")
    fig.update_layout(height=470, legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                      margin=dict(l=50, r=20, t=50, b=10))
    return fig


def _log_ticks(high: float) -> tuple[list[int], list[str]]:
    """1, 2, 5, 10, 20, 50, ... up to just past `high`, written out in full."""
    values, decade = [], 1
    while True:
        for m in (1, 2, 5):
            values.append(m * decade)
            if m * decade >= high:
                return values, [f"{v:,}" for v in values]
        decade *= 10


def nucleus_figure(seq: Sequence) -> go.Figure:
    """How many tokens each cutting processor left at every step of a run (log axis, full numbers)."""
    fig = go.Figure()
    names = sorted({name for s in seq.steps for name in s.kept})
    for name in names:
        fig.add_trace(go.Scatter(x=[s.index for s in seq.steps], y=[s.kept.get(name) for s in seq.steps],
                                 mode="lines+markers", name=f"kept by {name}",
                                 line=dict(color=PROCESSORS[name].colour if name in PROCESSORS else None),
                                 hovertemplate="step %{x}<br>%{y:,} tokens kept<extra>" + name + "</extra>"))
    if not names:
        cuts = " / ".join(p.label for p in ordered() if p.does == CUTS)
        fig.add_annotation(text=f"this run cuts nothing (no {cuts})",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    high = max([s.kept[n] for s in seq.steps for n in s.kept] or [10])
    values, text = _log_ticks(high)
    fig.update_yaxes(type="log", tickmode="array", tickvals=values, ticktext=text,
                     range=[-0.05, math.log10(values[-1]) + 0.05])
    return layout(fig, "Nucleus size over the run", "step", "tokens kept (log scale)")


def attention_figure(tokens: list[str], weights, layer: int, head: int) -> go.Figure:
    labels = [f"{i}:{plotly_text(visible(t))}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(z=np.asarray(weights), x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig = layout(fig, f"Attention, layer {layer + 1}, head {head + 1}", "attended-to token (key)",
                 "attending token (query)")
    fig.update_layout(height=min(1400, max(380, 18 * len(tokens) + 120)))
    return fig


def surprisal_figure(tokens: list[str], surprisal_bits: list[float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"{i}:{plotly_text(visible(t))}" for i, t in enumerate(tokens)], y=surprisal_bits,
                           hovertemplate="%{x}<br>surprisal %{y:.2f} bits<extra></extra>"))
    return layout(fig, "Surprisal per token (raw distribution)", "token", "surprisal (bits)")
