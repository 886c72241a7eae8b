"""Figures and token renderings for the pages: plotly figures and small HTML strings, built from traces.

Every probability shown says which distribution it is from ("raw" or "processed").
"""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go

from core.trace import RunTrace, Sequence

STATUS_COLOURS = {"kept": "#1f77b4", "finished": "#2ca02c", "pruned": "#c7c7c7"}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=40), height=380)
    return fig


def lineup_chart(runs: list[RunTrace]) -> go.Figure:
    """Coherence (mean raw log-prob per token) against diversity (distinct-2), one point per run."""
    fig = go.Figure()
    for run in runs:
        f = run.best.figures()
        fig.add_trace(go.Scatter(
            x=[f["distinct"]["distinct_2"]], y=[f["mean_logprob"]], mode="markers+text", name=run.name,
            text=[run.name], textposition="top center", marker=dict(size=12),
            hovertemplate=f"{html.escape(run.name)}<br>distinct-2 %{{x:.2f}}<br>mean raw log-prob %{{y:.2f}}"
                          f"<br>perplexity {f['perplexity']:.1f}<extra></extra>"))
    fig.update_layout(showlegend=False)
    return _layout(fig, "Coherence vs diversity", "diversity: distinct-2 (higher = less repetition)",
                   "coherence: mean raw log-prob per token")


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max()  # the shift that seed 004's version lacks: no overflow at small temperatures
    e = np.exp(z)
    return e / e.sum()


def temperature_figure(logits, temperatures, labels=None, yours: float | None = None) -> go.Figure:
    """Seed 004's plot: one softmax curve per temperature over the same logits; `yours` dashed on top."""
    labels = labels or [str(i) for i in range(len(logits))]
    fig = go.Figure()
    for t in temperatures:
        fig.add_trace(go.Scatter(x=labels, y=softmax_with_temperature(logits, t), mode="lines+markers",
                                 name=f"T={t:g}"))
    if yours is not None:
        fig.add_trace(go.Scatter(x=labels, y=softmax_with_temperature(logits, yours), mode="lines+markers",
                                 name=f"T={yours:g} (yours)", line=dict(dash="dash", width=3, color="black")))
    return _layout(fig, "Softmax with temperature", "token", "probability")


def cut_points(sorted_raw: np.ndarray, top_k: int, top_p: float) -> tuple[int, int]:
    """How many tokens top-k and top-p keep for a sorted (descending) raw distribution."""
    k = len(sorted_raw) if top_k in (0, None) else min(top_k, len(sorted_raw))
    cumulative = np.cumsum(sorted_raw)
    # transformers' TopP keeps the smallest prefix whose mass reaches top_p
    p = int(np.searchsorted(cumulative, top_p - 1e-12) + 1) if top_p < 1 else len(sorted_raw)
    return k, min(p, len(sorted_raw))


def cumulative_figure(sorted_raw, top_k: int, top_p: float, title: str = "") -> go.Figure:
    """The sorted cumulative raw probability over rank, with where top-k and top-p cut."""
    sorted_raw = np.asarray(sorted_raw, dtype=np.float64)
    cumulative = np.cumsum(sorted_raw)
    ranks = np.arange(1, len(sorted_raw) + 1)
    k, p = cut_points(sorted_raw, top_k, top_p)
    fig = go.Figure(go.Scatter(x=ranks, y=cumulative, mode="lines", name="cumulative raw probability"))
    # the cuts as line traces: vline annotations on a log axis take log10 positions and blow up the range
    for x, label, colour, dash in ((k, f"top-k={top_k or 'off'} alone keeps {k:,}", "#d62728", "dash"),
                                   (p, f"top-p={top_p:g} alone keeps {p:,}", "#2ca02c", "dot")):
        fig.add_trace(go.Scatter(x=[x, x], y=[0, 1], mode="lines", name=label,
                                 line=dict(color=colour, dash=dash, width=2)))
    fig.update_xaxes(type="log", range=[0, math.log10(len(sorted_raw))])
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, title or "Sorted cumulative probability (raw)", "rank (log scale)", "cumulative probability")


def nucleus_figure(seq: Sequence) -> go.Figure:
    """How many tokens each cutting processor left at every step of a run."""
    fig = go.Figure()
    names = sorted({name for s in seq.steps for name in s.kept})
    for name in names:
        fig.add_trace(go.Scatter(x=[s.index for s in seq.steps], y=[s.kept.get(name) for s in seq.steps],
                                 mode="lines+markers", name=f"kept by {name}"))
    if not names:
        fig.add_annotation(text="this run cuts nothing (no top-k / top-p / min-p / typical-p)",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_yaxes(type="log")
    return _layout(fig, "Nucleus size over the run", "step", "tokens kept (log scale)")


def beam_tree_figure(run: RunTrace, max_steps: int | None = None) -> go.Figure:
    """Every candidate beam at every step: kept (blue), finished (green), pruned (grey)."""
    nodes = [n for n in run.beam_tree or [] if max_steps is None or n.step < max_steps]
    by_id = {n.id: n for n in nodes}
    order: dict[int, int] = {}
    for n in nodes:  # y = the candidate's place among its step's candidates (0 = best score)
        order[n.id] = sum(1 for m in nodes if m.step == n.step and m.id < n.id)
    edge_x, edge_y = [], []
    for n in nodes:
        if n.parent in by_id:
            edge_x += [n.step - 1, n.step, None]
            edge_y += [order[n.parent], order[n.id], None]
    fig = go.Figure(go.Scatter(x=edge_x, y=edge_y, mode="lines", line=dict(color="#dddddd", width=1),
                               hoverinfo="skip", showlegend=False))
    for status, colour in STATUS_COLOURS.items():
        group = [n for n in nodes if n.status == status]
        fig.add_trace(go.Scatter(
            x=[n.step for n in group], y=[order[n.id] for n in group], mode="markers+text", name=status,
            text=[n.token for n in group], textposition="middle right", textfont=dict(size=10),
            marker=dict(color=colour, size=9),
            customdata=[[n.score, n.finished_score if n.finished_score is not None else float("nan")]
                        for n in group],
            hovertemplate="%{text}<br>beam score (processed log-prob sum) %{customdata[0]:.3f}"
                          "<br>finished score (length-penalised) %{customdata[1]:.3f}<extra>" + status + "</extra>"))
    fig.update_yaxes(autorange="reversed")
    fig = _layout(fig, "Beam search tree", "step", "candidate (best first)")
    fig.update_layout(height=max(380, 28 * (1 + max(order.values(), default=0))))
    return fig


def attention_figure(tokens: list[str], weights, layer: int, head: int) -> go.Figure:
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(z=np.asarray(weights), x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig = _layout(fig, f"Attention, layer {layer + 1}, head {head + 1}", "attended-to token (key)",
                  "attending token (query)")
    fig.update_layout(height=max(380, 18 * len(tokens) + 120))
    return fig


def surprisal_figure(tokens: list[str], surprisal_bits: list[float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"{i}:{t}" for i, t in enumerate(tokens)], y=surprisal_bits,
                           hovertemplate="%{x}<br>surprisal %{y:.2f} bits<extra></extra>"))
    return _layout(fig, "Surprisal per token (raw distribution)", "token", "surprisal (bits)")


def _colour(prob: float) -> str:
    """White (improbable) to green (certain), on a log scale from 1e-4 to 1."""
    level = 0.0 if prob <= 0 else min(1.0, max(0.0, 1 + math.log10(max(prob, 1e-4)) / 4))
    r, g, b = int(255 - 155 * level), int(255 - 55 * level), int(255 - 155 * level)
    return f"rgb({r},{g},{b})"


def _span(text: str, prob: float, title: str) -> str:
    shown = html.escape(text).replace("\n", "↵<br>")
    return (f'<span title="{html.escape(title, quote=True)}" style="background:{_colour(prob)};'
            f'border-radius:3px;padding:1px 0">{shown}</span>')


def visible(token: str) -> str:
    """A token with its whitespace made visible, for tables."""
    return token.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣")


def prompt_html(text: str) -> str:
    """The prompt (or a branch's path so far), set apart from the generated tokens."""
    shown = html.escape(text).replace("\n", "↵<br>")
    return f'<div style="font-family:serif;color:#555;border-left:3px solid #ccc;padding-left:6px">{shown}</div>'


def _cuts(step) -> str:
    """What the processors did at this step: survivors of each cut, and the tokens banned."""
    lines = [f"{name} kept {count:,} tokens" for name, count in step.kept.items()]
    lines += [f"{name} banned/down-weighted: " + ", ".join(repr(t) for t in tokens)
              for name, tokens in step.banned_tokens.items() if tokens]
    return ("\n" + "\n".join(lines)) if lines else ""


def tokens_html(seq: Sequence, distribution: str = "raw") -> str:
    """The generated text, each token coloured by its probability; hover shows the alternatives."""
    processed = distribution == "processed"
    parts = []
    for s in seq.steps:
        prob = math.exp(s.processed_logprob if processed else s.logprob)
        alternatives = "\n".join(
            f"{c.token!r}: {(c.processed_prob if processed else c.prob):.2%}" for c in s.top[:5])
        title = (f"{s.token!r} {prob:.2%} ({distribution}), rank {s.processed_rank if processed else s.rank}"
                 f"\nalternatives ({distribution}):\n{alternatives}{_cuts(s)}")
        parts.append(_span(s.token, prob, title))
    return f'<div style="line-height:1.9;font-family:serif">{"".join(parts)}</div>'


def scored_html(tokens) -> str:
    """Scoring mode: each token coloured by its raw probability, with rank and surprisal on hover."""
    parts = [_span(t.token, math.exp(t.logprob),
                   f"{t.token!r}: p={math.exp(t.logprob):.2%} (raw), rank {t.rank}, {t.surprisal_bits:.2f} bits")
             for t in tokens]
    return f'<div style="line-height:1.9;font-family:serif">{"".join(parts)}</div>'


def step_table(prompt_text: str, seq: Sequence, choices: int = 5, distribution: str = "raw") -> list[dict]:
    """Seed 004's greedy_search table: the text so far, then the top choices with their %."""
    rows, text = [], prompt_text
    for s in seq.steps:
        row = {"step": s.index, "input": text}
        for i, c in enumerate(s.top[:choices]):
            p = c.processed_prob if distribution == "processed" else c.prob
            row[f"choice {i + 1}"] = f"{c.token}({100 * p:.2f}%)"
        rows.append(row)
        text += s.token
    return rows
