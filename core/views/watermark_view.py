"""What the Watermark lab shows: tokens coloured by the list they fell in (with a CSS-only hover card: the
bias the token got, the z-score so far), the z-score and p-value as the text grows, detection against the
share of a text edited, the human passages' z-scores, and the cost in quality. No streamlit here; the
tokens' HTML is a Jinja2 template (templates/watermark.html.j2) that escapes every value."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from markupsafe import Markup
from plotly.subplots import make_subplots

from core.views.charts import layout
from core.views.templating import macros
from core.views.tokens import visible

_HTML = macros("watermark.html.j2")
GREEN, RED, UNSCORED = ("#b7e4b0", "#14361a"), ("#f6c3bd", "#4a1410"), ("#e6e6e6", "#555555")
CSS = """<style>
.wm-tokens{line-height:2.05;font-family:Georgia,'Times New Roman',serif;font-size:1.02rem;color:#111}
.wm-tok{position:relative;border-radius:3px;padding:1px 0;white-space:pre-wrap;cursor:help}
.wm-tok:hover,.wm-tok:focus{outline:2px solid #111;z-index:40}
.wm-card{display:none;position:absolute;left:0;top:calc(100% + 3px);z-index:50;width:max-content;max-width:24em;
 background:#fff;color:#111;border:1px solid #b9b9b9;border-radius:6px;box-shadow:0 4px 16px rgba(0,0,0,.2);
 padding:5px 8px;font:12.5px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;white-space:normal}
.wm-tok:hover>.wm-card,.wm-tok:focus>.wm-card{display:block}
.wm-card b{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre}
.wm-legend{font:12px/1.6 system-ui,-apple-system,'Segoe UI',sans-serif;color:#333;margin:2px 0 8px}
.wm-legend span{border-radius:3px;padding:1px 6px;margin-right:6px}
.wm-prompt{font-family:Georgia,serif;color:#666;white-space:pre-wrap}
</style>"""


def _colours(mark) -> tuple[str, str]:
    if mark.green is None:
        return UNSCORED
    return GREEN if mark.green else RED


def _card_lines(mark, marked_run: bool) -> list[str]:
    """The hover card's lines after its first (the token and its id)."""
    lines = []
    if mark.green is None:
        lines.append("no list: the tokens that seed its green list are not in the text")
    else:
        where = "at its step (the prompt before it included)" if marked_run else "after the tokens before it"
        lines.append(f"{'green' if mark.green else 'red'} list {where}")
    if mark.bias is not None:
        lines.append(f"the watermark added {mark.bias:+.2f} to its score" if mark.bias else
                     "the watermark added nothing to its score")
    if mark.scored:
        lines.append(f"z-score so far {mark.z:.2f} (p = {mark.p:.2g})")
    else:
        lines.append("not scored by the detector: it reads the text alone, and this token's list is seeded "
                     "by tokens before the text")
    return lines


def tokens_html(detection, *, prompt: str = "", marked_run: bool = False) -> Markup:
    """The text's tokens on green or red (grey: no list), each with its card; a marked run's prompt first, plain."""
    marks = [{"colours": _colours(m), "text": m.token.replace("\n", "↵\n"), "number": m.index + 1,
              "token": visible(m.token), "id": m.id, "lines": _card_lines(m, marked_run)} for m in detection.tokens]
    return Markup(CSS) + legend_html() + _HTML.tokens(marks, prompt)


def legend_html() -> Markup:
    return _HTML.legend(GREEN, RED, UNSCORED)


def growth_figure(detection, title: str = "The detector's z-score and p-value as the text grows") -> go.Figure:
    """z-score (left axis) and p-value (right, log) after each scored token, with the threshold."""
    scored = [m for m in detection.tokens if m.scored]
    x = list(range(1, len(scored) + 1))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=[m.z for m in scored], name="z-score", mode="lines+markers",
                             line=dict(color="#2ca02c"), marker=dict(size=4),
                             hovertemplate="%{x} tokens scored<br>z = %{y:.2f}<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[max(m.p, 1e-300) for m in scored], name="p-value", mode="lines",
                             line=dict(color="#7f7f7f", dash="dot"),
                             hovertemplate="%{x} tokens scored<br>p = %{y:.2g}<extra></extra>"), secondary_y=True)
    fig.add_hline(y=detection.threshold, line=dict(color="#d62728", dash="dash"),
                  annotation_text=f"threshold z = {detection.threshold:g}", secondary_y=False)
    layout(fig, title, "tokens scored", "z-score")
    decades = -math.log10(max(min((m.p for m in scored), default=1.0), 1e-300))
    fig.update_yaxes(title_text="p-value (log)", type="log", secondary_y=True, showgrid=False,
                     exponentformat="power", dtick=max(1, math.ceil(decades / 6)))  # whole powers of ten
    return fig


def attack_figure(edits, continued=None, threshold: float = 4.0) -> go.Figure:
    """The z-score after editing a share of the tokens at random, and after another model rewrote that share."""
    fig = go.Figure()
    for points, name, colour in ((edits, "random token edits", "#1f77b4"),
                                 (continued or [], "another model continues", "#ff7f0e")):
        if not points:
            continue
        fig.add_trace(go.Scatter(
            x=[p.share for p in points], y=[p.z_score for p in points], name=name, mode="lines+markers",
            line=dict(color=colour), customdata=[_said(p.prediction) for p in points],
            hovertemplate="%{x:.0%} edited<br>z = %{y:.2f}<br>%{customdata}<extra></extra>"))
    fig.add_hline(y=threshold, line=dict(color="#d62728", dash="dash"), annotation_text=f"threshold z = {threshold:g}")
    layout(fig, "Detection against the share of the text edited", "share of tokens edited", "z-score")
    fig.update_xaxes(tickformat=".0%", range=[-0.02, 1.0 if any(p.share > 0.65 for p in edits) else 0.65])
    return fig


def _said(prediction) -> str:
    return {True: "watermarked", False: "not found", None: "too short to judge"}[prediction]


def false_positive_figure(fp) -> go.Figure:
    """The human passages' z-scores (none was marked), with the threshold: every bar past it is a false positive."""
    zs = [z for z in fp.z_scores if z is not None]
    fig = go.Figure(go.Histogram(x=zs, nbinsx=40, marker=dict(color="#9e9e9e"), name="human passages",
                                 hovertemplate="z %{x}<br>%{y} passages<extra></extra>"))
    fig.add_vline(x=fp.threshold, line=dict(color="#d62728", dash="dash"), annotation_text=f"z = {fp.threshold:g}")
    rate = "n/a" if fp.rate is None else f"{fp.rate:.1%}"
    return layout(fig, f"z-scores of {fp.judged} human passages ({fp.tokens} tokens each): {fp.flagged} flagged, "
                       f"false-positive rate {rate}", "z-score", "passages")


def quality_rows(report, unmarked: int) -> list[dict]:
    """The report's figures of each run beside those of the same run marked (the report's rows: the
    `unmarked` runs first, then the same runs marked, in the same order)."""
    rows = []
    for plain, mark in zip(report.strategies[:unmarked], report.strategies[unmarked:]):
        row = {"run": plain.name}
        for key, label in (("perplexity", "perplexity"), ("self_bleu4", "Self-BLEU-4"), ("distinct_2", "distinct-2")):
            a, b = plain.metrics[key].mean, mark.metrics[key].mean
            row[f"{label} unmarked"] = a
            row[f"{label} marked"] = b
        rows.append(row)
    return rows
