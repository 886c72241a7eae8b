"""The pipeline page's views of one step, stage by stage (`core.pipeline`): its table, its two
figures, the text up to the step, and the link that opens the page at a run and a step."""

from __future__ import annotations

import plotly.graph_objects as go
from markupsafe import Markup
from plotly.subplots import make_subplots

from core.pipeline import RAW, Pipeline
from core.views.charts import layout
from core.views.colours import RUN_COLOURS
from core.views.markup import _style
from core.views.share import write_params
from core.views.templating import macros
from core.views.tokens import plotly_text, visible

TRACED_TOKENS = 8  # tokens followed through the stages in the figure
LISTED = 5  # tokens a table cell names
CONTEXT_CSS = "mark.dp-chosen-here{background:#ffe08a;color:#111;font-weight:600}"
_HTML = macros("pipeline.html.j2")


def _pct(p: float) -> str:
    return "0%" if p <= 0 else f"{p:.1e}" if p < 1e-4 else f"{p:.2%}"


def stages_table(view: Pipeline) -> list[dict]:
    """One row per stage, in the pipeline's order (rendered by `markup.table_html`, which escapes every cell)."""
    rows = []
    for i, st in enumerate(view.stages):
        rows.append({
            "#": i, "stage": st.label, "generate() keyword": st.name,
            "what it did": st.did_naming(LISTED, lambda t: repr(visible(t))),
            "tokens kept": st.kept, "entropy (nats)": round(st.entropy, 3),
            f"p({visible(view.token)})": _pct(st.chosen_prob), "its rank": st.chosen_rank,
            "most likely here": ", ".join(f"{visible(t.token)!r} {_pct(t.prob)}" for t in st.top[:LISTED]),
        })
    return rows


def traced_tokens(view: Pipeline, count: int = TRACED_TOKENS) -> list[int]:
    """The chosen token, then the most likely of the last stage, then of the raw one, up to `count`."""
    ids = [view.token_id]
    for st in (view.stages[-1], view.stages[0]):
        ids += [t.id for t in st.top]
    return list(dict.fromkeys(ids))[:count]


def _stage_labels(view: Pipeline) -> list[str]:
    return [f"{i}. {plotly_text(st.label)}" for i, st in enumerate(view.stages)]


def probabilities_figure(view: Pipeline) -> go.Figure:
    """Each followed token's probability after every stage (the chosen one drawn thick): where the mass moves."""
    x = _stage_labels(view)
    fig = go.Figure()
    for n, token_id in enumerate(traced_tokens(view)):
        chosen = token_id == view.token_id
        text = next((t.token for st in view.stages for t in st.top if t.id == token_id), view.token)
        name = plotly_text(repr(visible(text))) + (" (chosen)" if chosen else "")
        y = [float(st.probs[token_id]) if st.probs is not None else None for st in view.stages]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=name, meta={"token_id": token_id},
            line=dict(width=4 if chosen else 1.5, color=RUN_COLOURS[n % len(RUN_COLOURS)]),
            marker=dict(size=9 if chosen else 6),
            hovertemplate=f"{name}<br>%{{x}}<br>p = %{{y:.4f}}<extra></extra>"))
    fig = layout(fig, f"Step {view.step}: the leading tokens' probabilities after each stage", "stage, in generate()'s order",
                 "probability in that stage's distribution")
    highest = max((v for trace in fig.data for v in trace.y if v is not None), default=1.0)
    fig.update_yaxes(range=[0, min(1.02, highest * 1.15 + 0.01)])  # the leading tokens' range, not 0 to 1
    fig.update_layout(height=420, legend=dict(title="token"))
    return fig


def kept_figure(view: Pipeline) -> go.Figure:
    """Tokens kept (bars, log scale) and the entropy (line) after every stage."""
    x = _stage_labels(view)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    kept = [st.kept for st in view.stages]
    fig.add_trace(go.Bar(x=x, y=kept, name="tokens kept", marker_color="#9ecae1", text=[f"{k:,}" for k in kept],
                         textposition="outside", hovertemplate="%{x}<br>%{y:,} tokens kept<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=[st.entropy for st in view.stages], name="entropy (nats)", mode="lines+markers",
                             line=dict(color="#d62728"), hovertemplate="%{x}<br>entropy %{y:.3f} nats<extra></extra>"),
                  secondary_y=True)
    fig = layout(fig, "Tokens kept and entropy after each stage", "stage, in generate()'s order", "tokens kept (log scale)")
    decades = [10 ** i for i in range(len(str(max(kept))) + 1)]
    fig.update_yaxes(type="log", range=[-0.1, len(str(max(kept))) + 0.3], tickmode="array", tickvals=decades,
                     ticktext=[f"{d:,}" for d in decades], secondary_y=False)
    entropy = max(st.entropy for st in view.stages)
    fig.update_yaxes(title_text="entropy (nats)", range=[0, entropy * 1.15 + 0.05], showgrid=False, tickmode="linear",
                     tick0=0, dtick=1 if entropy > 2 else 0.25, secondary_y=True)
    fig.update_layout(height=420, legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    return fig


def context_html(text_before: str, token: str, *, chars: int = 600) -> Markup:
    """The text the model saw at the step (its last `chars` characters), then the token it chose, marked."""
    return _HTML.context(Markup(f"{_style()}<style>{CONTEXT_CSS}</style>"), text_before[-chars:], token,
                         len(text_before) > chars)


def link_params(*, prompt: str, lineup: str, run: int, step: int, model: str, seed: int, max_new_tokens: int) -> dict:
    """The pipeline page's URL parameters for run `run` and step `step` of a line-up (its whole state)."""
    return write_params({"prompt": prompt, "lineup": lineup, "run": run, "step": step, "model": model, "seed": seed,
                         "max_new_tokens": max_new_tokens})


def stage_names(view: Pipeline) -> list[str]:
    return [st.name for st in view.stages]


__all__ = ["RAW", "stages_table", "probabilities_figure", "kept_figure", "context_html", "link_params", "stage_names"]
