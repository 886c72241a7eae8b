"""Figures and token renderings for the pages: plotly figures and small HTML strings, built from traces.

Every probability shown says which distribution it is from ("raw" or "processed").

The HTML needs no JavaScript: hover cards are CSS only (`:hover` / `:focus`), so they work inside
Streamlit's `st.html` (which keeps <style> and drops <script>) and in a standalone file
(`core.views.html_export`). Every piece of text that comes from a tokenizer or a user is escaped.
"""

from __future__ import annotations

import codecs
import html
import math
from collections import defaultdict
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from core.decoding.processors import CUTS, PROCESSORS, ordered
from core.decoding.trace import RunTrace, Sequence

STATUS_COLOURS = {"kept": "#1f77b4", "finished": "#2ca02c", "pruned": "#b0b0b0"}
BEST_COLOUR = "#d62728"
RUN_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
STRATEGY_SYMBOLS = {"greedy": "circle", "beam": "square", "sample": "diamond"}
SHORT_FINISH = {"eos": "<|endoftext|>", "max_new_tokens": "max new tokens", "context": "context limit"}
ALTERNATIVES = 5  # alternatives listed in a token's hover card

# ---------------------------------------------------------------------------------------------
# colour scale: viridis on log10(p) from 1e-4 (dark purple: improbable) to 1 (yellow: certain)
COLOURSCALE = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
               "#b5de2b", "#fde725"]
LOG10_FLOOR = -4.0
LEGEND_TICKS = [(1e-4, "0.01%"), (1e-3, "0.1%"), (1e-2, "1%"), (1e-1, "10%"), (1.0, "100%")]


def _level(prob: float) -> float:
    """Where a probability sits on the colour scale: 0 at p <= 1e-4, 1 at p = 1 (log scale)."""
    if not prob > 0:
        return 0.0
    return min(1.0, max(0.0, (math.log10(prob) - LOG10_FLOOR) / -LOG10_FLOOR))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _luminance(rgb) -> float:
    def lin(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def probability_colour(prob: float) -> tuple[str, str]:
    """(background, text colour) for a token of probability `prob`: the text colour is whichever of
    black or white contrasts more with the background."""
    x = _level(prob) * (len(COLOURSCALE) - 1)
    i = min(int(x), len(COLOURSCALE) - 2)
    a, b = _rgb(COLOURSCALE[i]), _rgb(COLOURSCALE[i + 1])
    rgb = tuple(round(ca + (cb - ca) * (x - i)) for ca, cb in zip(a, b))
    lum = _luminance(rgb)
    text = "#111111" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"
    return "rgb({},{},{})".format(*rgb), text


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=40), height=380)
    return fig


def visible(token: str) -> str:
    """A token with its whitespace made visible, for tables and figure labels."""
    return token.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣")


def _plotly_text(text: str) -> str:
    """Untrusted text for a plotly label or hover: plotly reads a few HTML tags, so escape them."""
    return html.escape(text, quote=False)


# ---------------------------------------------------------------------------------------------
# tokens: byte-level pieces shown as bytes


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character -> byte (the inverse of `bytes_to_unicode`)."""
    try:
        from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
    except ImportError:
        try:
            from transformers.convert_slow_tokenizer import bytes_to_unicode
        except ImportError:  # the same 10 lines as GPT-2's own
            def bytes_to_unicode():
                bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                      + list(range(ord("®"), ord("ÿ") + 1)))
                cs, n = bs[:], 0
                for b in range(256):
                    if b not in bs:
                        bs.append(b)
                        cs.append(256 + n)
                        n += 1
                return dict(zip(bs, map(chr, cs)))
    return {c: b for b, c in bytes_to_unicode().items()}


def _hex_bytes(error: UnicodeDecodeError):
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


codecs.register_error("decoding_playground_hexbytes", _hex_bytes)


def token_label(tokenizer, token_id: int) -> str:
    """A token's text, except that bytes which are not a whole UTF-8 character (the pieces of a CJK
    character or an emoji, which decode to "�") are shown as `<0xE4><0xBD>`."""
    text = tokenizer.decode([int(token_id)])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    decoder = _byte_decoder()
    if not isinstance(piece, str) or not piece or any(ch not in decoder for ch in piece):
        return text  # not a byte-level piece: nothing better to show
    return bytes(decoder[ch] for ch in piece).decode("utf-8", errors="decoding_playground_hexbytes")


# ---------------------------------------------------------------------------------------------
# HTML: coloured tokens with CSS-only hover cards

TOKEN_CSS_UNSCORED = ".dp-unscored{color:#888;font-style:italic}"
TOKEN_CSS = """
.dp-tokens{line-height:2.05;font-family:Georgia,'Times New Roman',serif;font-size:1.02rem;color:#111}
.dp-tok{position:relative;border-radius:3px;padding:1px 0;white-space:pre-wrap;cursor:help}
.dp-tok:hover,.dp-tok:focus{outline:2px solid #111;outline-offset:0;z-index:40}
.dp-card{display:none;position:absolute;left:0;top:calc(100% + 3px);z-index:50;width:max-content;
 min-width:16em;max-width:26em;background:#fff;color:#111;border:1px solid #b9b9b9;border-radius:6px;
 box-shadow:0 4px 16px rgba(0,0,0,.2);padding:6px 9px;font:12.5px/1.45 system-ui,-apple-system,
 'Segoe UI',sans-serif;white-space:normal;text-align:left;cursor:auto}
.dp-tok:hover>.dp-card,.dp-tok:focus>.dp-card,.dp-tok:focus-within>.dp-card{display:block}
.dp-card .dp-line{display:block}
.dp-card .dp-head{display:block;font-weight:600;margin-bottom:2px}
.dp-card .dp-sub{display:block;color:#555;margin-bottom:4px}
.dp-card .dp-title{display:block;color:#555;font-size:11px;text-transform:uppercase;letter-spacing:.04em;
 margin:3px 0 1px}
.dp-card .dp-alt{display:flex;gap:8px;align-items:baseline}
.dp-card .dp-alt-tok{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre;overflow:hidden;
 text-overflow:ellipsis;max-width:12em}
.dp-card .dp-alt-p{margin-left:auto;font-variant-numeric:tabular-nums}
.dp-card .dp-chosen{font-weight:700}
.dp-card .dp-chosen .dp-alt-tok::before{content:'\\25B8 '}
.dp-card .dp-cut .dp-alt-tok,.dp-card .dp-cut .dp-alt-p{text-decoration:line-through;color:#999}
.dp-card .dp-why{color:#b22222;font-size:11px}
.dp-card .dp-cuts{display:block;border-top:1px solid #e3e3e3;margin-top:4px;padding-top:3px;color:#333}
.dp-card .dp-mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:pre-wrap}
.dp-legend{font:12px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#333;margin:2px 0 8px;
 max-width:28em}
.dp-legend-bar{display:block;height:12px;border-radius:3px;border:1px solid #ccc}
.dp-legend-ticks{display:block;position:relative;height:1.3em}
.dp-legend-ticks span{position:absolute;top:0;transform:translateX(-50%);white-space:nowrap}
.dp-legend-ticks span:first-child{transform:none}
.dp-legend-ticks span:last-child{transform:translateX(-100%)}
.dp-prompt{font-family:Georgia,serif;color:#555;border-left:3px solid #ccc;padding-left:6px;white-space:pre-wrap}
table.dp-table{border-collapse:collapse;font:13px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;width:100%}
table.dp-table th,table.dp-table td{border-bottom:1px solid #e3e3e3;padding:4px 8px;text-align:left;
 vertical-align:top}
table.dp-table td.dp-wide{width:68%}
table.dp-table td.dp-short{white-space:nowrap}
table.dp-table th{font-weight:600;color:#444;white-space:nowrap;vertical-align:bottom}
table.dp-table.dp-figures th{white-space:normal}
table.dp-table td.dp-num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
"""


def _style() -> str:
    return f"<style>{TOKEN_CSS}{TOKEN_CSS_UNSCORED}</style>"


def _shown_text(token: str, compact: bool = False) -> str:
    """A token as it sits in the running text: escaped, a new line marked (↵) and kept (or, compact,
    only marked)."""
    return html.escape(token).replace("\n", "↵" if compact else "↵\n")


def _mono(token: str) -> str:
    return html.escape(visible(token))


UNAVAILABLE = "n/a"  # a figure this backend cannot give (the vLLM backend without the whole vocabulary)
UNKNOWN_COLOUR = ("#e0e0e0", "#111111")


def _pct(p: float | None) -> str:
    if p is None:
        return UNAVAILABLE
    if p <= 0:
        return "0%"
    if p < 0.0001:
        return f"{p:.1e}"
    return f"{p:.2%}"


def _exp(logprob: float | None) -> float | None:
    return None if logprob is None else math.exp(logprob)


def _span(text: str, prob: float | None, card: str, compact: bool = False) -> str:
    bg, fg = probability_colour(prob) if prob is not None else UNKNOWN_COLOUR
    return (f'<span class="dp-tok" tabindex="0" style="background:{bg};color:{fg}">{_shown_text(text, compact)}'
            f'<span class="dp-card">{card}</span></span>')


def _or_na(value):
    return UNAVAILABLE if value is None else value


def or_na(value, fmt: str = "{}") -> str:
    """A figure as text, or "n/a" where the backend could not give it."""
    return UNAVAILABLE if value is None else fmt.format(value)


def pct_of_logprob(logprob: float | None) -> str:
    return _pct(_exp(logprob))


def _rounded(value: float | None, digits: int):
    return None if value is None else round(value, digits)


def _banned_ids(step) -> set[int]:
    return {i for ids in step.banned.values() for i in ids}


def cut_reason(step, position: int) -> str | None:
    """Why the processors removed the step's `position`-th raw candidate, or None if they did not.

    A banned id says which ban; otherwise the cut is found from the survivor counts: the candidates
    are in raw order, which temperature keeps, so the k-th surviving one falls to the first cut that
    keeps the most likely tokens and kept fewer than k. (A processor that reorders, such as the
    repetition penalty, spoils that: then it says which processors could have cut it.) The names and
    what each processor does are its declaration's (`core.decoding.processors`)."""
    cand = step.top[position]
    if cand.processed_prob is None or cand.processed_prob > 0:
        return None
    for name, ids in step.banned.items():
        if cand.id in ids and name in PROCESSORS:
            return PROCESSORS[name].reason()
    cutters = [PROCESSORS[name] for name in step.kept if name in PROCESSORS]
    if not cutters:
        removers = [PROCESSORS[n] for n in step.banned if n in PROCESSORS and PROCESSORS[n].removes]
        return removers[0].reason() if removers else "removed by the processors"
    if not any(PROCESSORS[n].reorders for n in step.banned if n in PROCESSORS):
        return _first_cut(step, position, cutters) or _cut_by(cutters)
    return _cut_by(cutters)


def _first_cut(step, position: int, cutters: list) -> str | None:
    banned = _banned_ids(step)
    place = 1 + sum(1 for c in step.top[:position] if c.id not in banned)
    for p in cutters:
        if not p.prefix_cut or place > step.kept[p.name]:
            return p.reason()
    return None


def _cut_by(cutters: list) -> str:
    return "cut by " + " / ".join(p.label for p in cutters)


def _cuts(step) -> str:
    """What the processors did at this step: survivors of each cut, and the tokens banned (HTML)."""
    lines = [f"{html.escape(name)} kept {count:,} tokens" for name, count in step.kept.items()]
    lines += [f"{html.escape(name)} banned/down-weighted: "
              + ", ".join(f'<span class="dp-mono">{_mono(t)}</span>' for t in tokens)
              for name, tokens in step.banned_tokens.items() if tokens]
    if not lines:
        return ""
    return '<span class="dp-cuts">' + "".join(f'<span class="dp-line">{line}</span>' for line in lines) + "</span>"


def _step_card(s, distribution: str) -> str:
    processed = distribution == "processed"
    other = "raw" if processed else "processed"
    prob = _exp(s.processed_logprob if processed else s.logprob)
    other_prob = _exp(s.logprob if processed else s.processed_logprob)
    rank = _or_na(s.processed_rank if processed else s.rank)
    other_rank = _or_na(s.rank if processed else s.processed_rank)
    rows = []
    for i, c in enumerate(s.top[:ALTERNATIVES]):
        why = cut_reason(s, i)
        p = c.processed_prob if processed else c.prob
        classes = "dp-alt" + (" dp-chosen" if c.id == s.id else "") + (" dp-cut" if why else "")
        rows.append(f'<span class="{classes}"><span class="dp-alt-tok">{_mono(c.token)}</span>'
                    + (f'<span class="dp-why">{html.escape(why)}</span>' if why else "")
                    + f'<span class="dp-alt-p">{_pct(p)}</span></span>')
    if all(c.id != s.id for c in s.top[:ALTERNATIVES]):  # the chosen token is further down: show it too
        rows.append(f'<span class="dp-alt dp-chosen"><span class="dp-alt-tok">{_mono(s.token)}</span>'
                    f'<span class="dp-why">rank {rank}</span><span class="dp-alt-p">{_pct(prob)}</span></span>')
    return (f'<span class="dp-head"><span class="dp-mono">{_mono(s.token)}</span> · p={_pct(prob)} '
            f'({distribution}) · rank {rank}</span>'
            f'<span class="dp-sub">{other}: p={_pct(other_prob)}, rank {other_rank} · step {s.index}</span>'
            f'<span class="dp-title">alternatives ({distribution}), top {min(ALTERNATIVES, len(s.top))}</span>'
            + "".join(rows) + _cuts(s))


def tokens_html(seq: Sequence, distribution: str = "raw", *, legend: bool = False, compact: bool = False) -> str:
    """The generated text, each token coloured by its probability under `distribution` ("raw" or
    "processed"); hovering (or focusing) a token shows a card with its probability and rank, the top
    alternatives from the same distribution (those the processors removed struck through, with why),
    and what each processor kept or banned at that step. `legend=True` puts the colour legend first;
    `compact=True` marks new lines (↵) without breaking the line (for tables)."""
    parts = [_span(s.token, _exp(s.processed_logprob if distribution == "processed" else s.logprob),
                   _step_card(s, distribution), compact) for s in seq.steps]
    head = probability_legend_html(distribution, style=False) if legend else ""
    if distribution == "processed" and any(s.processed_logprob is None for s in seq.steps):
        head += ('<div class="dp-legend"><span class="dp-line">Grey: the backend did not give the processed '
                 'probability of these tokens (it needs the whole distribution).</span></div>')
    return f'{_style()}{head}<div class="dp-tokens">{"".join(parts)}</div>'


def probability_legend_html(distribution: str = "raw", *, style: bool = True) -> str:
    """The colour scale of the tokens, with tick labels from 0.01% to 100% (log scale)."""
    stops = ", ".join(f"{c} {100 * i / (len(COLOURSCALE) - 1):.1f}%" for i, c in enumerate(COLOURSCALE))
    ticks = "".join(f'<span style="left:{100 * _level(p):.0f}%">{label}</span>' for p, label in LEGEND_TICKS)
    what = ("the chosen token's probability under the raw distribution (the model's softmax)"
            if distribution == "raw" else
            "the chosen token's probability under the processed distribution (what the strategy chose from)")
    return ((_style() if style else "")
            + f'<div class="dp-legend"><span class="dp-line">Colour: {html.escape(what)}; log scale, '
            f'hover a token for its alternatives.</span>'
            f'<span class="dp-legend-bar" style="background:linear-gradient(to right, {stops})"></span>'
            f'<span class="dp-legend-ticks">{ticks}</span></div>')


def scored_html(tokens, token_text=None, *, legend: bool = False, first_token: str = "") -> str:
    """Scoring mode: each token coloured by its raw probability; the hover card gives p, rank,
    surprisal and what the model expected there (its text when `token_text(id)` is given). An
    unscored `first_token` (it has no context) leads the text, grey and uncoloured."""
    parts = [f'<span class="dp-unscored" title="no context: not scored">{_shown_text(first_token)}</span>'] \
        if first_token else []
    for t in tokens:
        p = math.exp(t.logprob)
        expected = token_text(t.top_id) if token_text is not None else f"id {t.top_id}"
        card = (f'<span class="dp-head"><span class="dp-mono">{_mono(t.token)}</span> · p={_pct(p)} (raw) · '
                f'rank {t.rank}</span>'
                f'<span class="dp-line">surprisal {t.surprisal_bits:.2f} bits</span>'
                f'<span class="dp-line">the model expected <span class="dp-mono">{_mono(expected)}</span> '
                f'({_pct(t.top_prob)}, raw)</span>')
        parts.append(_span(t.token, p, card))
    head = probability_legend_html("raw", style=False) if legend else ""
    return f'{_style()}{head}<div class="dp-tokens">{"".join(parts)}</div>'


def prompt_html(text: str) -> str:
    """The prompt (or a branch's path so far), set apart from the generated tokens."""
    return f'{_style()}<div class="dp-prompt">{_shown_text(text)}</div>'


# ---------------------------------------------------------------------------------------------
# Compare


def lineup_chart(runs: list[RunTrace]) -> go.Figure:
    """Coherence (mean raw log-prob per token) against diversity (distinct-2), one point per run.

    Runs are told apart by colour and marker (circle greedy, square beam, diamond sampling) with a
    legend, not by text next to the points: texts of runs with close figures overlapped."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        f = run.best.figures()
        name = _plotly_text(run.name)
        fig.add_trace(go.Scatter(
            x=[f.distinct_2], y=[f.mean_logprob], mode="markers", name=name,
            marker=dict(size=13, color=RUN_COLOURS[i % len(RUN_COLOURS)],
                        symbol=STRATEGY_SYMBOLS.get(run.strategy, "circle"), line=dict(width=1, color="#333")),
            customdata=[[f.perplexity, f.sequence_logprob]],
            hovertemplate=f"<b>{name}</b><br>distinct-2 %{{x:.2f}}<br>mean raw log-prob %{{y:.2f}}"
                          "<br>perplexity %{customdata[0]:.1f}<br>sequence log-prob (raw) %{customdata[1]:.2f}"
                          "<extra></extra>"))
    fig.update_layout(showlegend=True, legend=dict(title="run", itemsizing="constant"))
    fig = _layout(fig, "Coherence vs diversity", "diversity: distinct-2 (higher = less repetition)",
                  "coherence: mean raw log-prob per token")
    fig.update_layout(margin=dict(l=50, r=20, t=50, b=40))
    return fig


SVG_MARKERS = {  # the plotly chart's symbols, as SVG paths around (0, 0) for a marker of size ~13 px
    "circle": "M 6.5 0 A 6.5 6.5 0 1 1 -6.5 0 A 6.5 6.5 0 1 1 6.5 0 Z",
    "square": "M -5.8 -5.8 H 5.8 V 5.8 H -5.8 Z",
    "diamond": "M 0 -7.5 L 7.5 0 L 0 7.5 L -7.5 0 Z",
}


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values across [low, high]."""
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def lineup_chart_svg(runs: list[RunTrace]) -> str:
    """`lineup_chart` drawn as SVG, for the Compare page: the same points, markers, colours and legend
    (each point's figures as its title, where the SVG is inline). It needs no chart library in the
    browser: loading plotly.js held a new visitor's Compare results back by about 1.5 s."""
    width, height, left, right, top, bottom = 760, 360, 64, 250, 38, 52
    points = []
    for i, run in enumerate(runs):
        f = run.best.figures()
        points.append((f.distinct_2, f.mean_logprob, f, run, RUN_COLOURS[i % len(RUN_COLOURS)]))
    xs = [x for x, *_ in points] or [0.0]
    ys = [y for _, y, *_ in points if math.isfinite(y)] or [0.0]
    x_low, x_high = min(0.0, min(xs)) - 0.03, max(1.0, max(xs)) + 0.03  # room for a marker at 0 or 1
    pad = max(0.5, 0.08 * (max(ys) - min(ys)))
    y_low, y_high = min(ys) - pad, max(ys) + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y):
        return top + (y_high - y) / (y_high - y_low) * plot_h

    parts = [f'<svg class="dp-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="100%" style="max-width:{width}px" font-family="sans-serif" role="img" '
             'aria-label="Coherence vs diversity">',
             f'<text x="{left}" y="22" font-size="16" font-weight="600" fill="#333">Coherence vs diversity</text>']
    for x in _ticks(0.0, 1.0):
        parts.append(f'<line x1="{sx(x):.1f}" y1="{top}" x2="{sx(x):.1f}" y2="{top + plot_h}" stroke="#eee"/>'
                     f'<text x="{sx(x):.1f}" y="{top + plot_h + 16}" font-size="11" fill="#666" '
                     f'text-anchor="middle">{x:g}</text>')
    for y in _ticks(y_low, y_high):
        parts.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + plot_w}" y2="{sy(y):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" font-size="11" fill="#666" '
                     f'text-anchor="end">{y:g}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>'
                 f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" font-size="12" fill="#444" '
                 'text-anchor="middle">diversity: distinct-2 (higher = less repetition)</text>'
                 f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" font-size="12" fill="#444" '
                 'text-anchor="middle">coherence: mean raw log-prob per token</text>')
    for k, (x, y, f, run, colour) in enumerate(points):
        marker = SVG_MARKERS[STRATEGY_SYMBOLS.get(run.strategy, "circle")]
        title = html.escape(f"{run.name}\ndistinct-2 {x:.2f}\nmean raw log-prob {y:.2f}\n"
                            f"perplexity {f.perplexity:.1f}\nsequence log-prob (raw) {f.sequence_logprob:.2f}")
        if math.isfinite(y):
            parts.append(f'<g class="dp-point" transform="translate({sx(x):.1f} {sy(y):.1f})"><title>{title}</title>'
                         f'<path d="{marker}" fill="{colour}" stroke="#333" stroke-width="1"/></g>')
        ly = top + 8 + 18 * k
        parts.append(f'<g transform="translate({left + plot_w + 22} {ly})"><title>{title}</title>'
                     f'<path d="{marker}" transform="scale(0.8)" fill="{colour}" stroke="#333" stroke-width="1"/>'
                     f'<text x="14" y="4" font-size="12" fill="#333">{html.escape(run.name)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def lineup_table(runs: list[RunTrace]) -> list[dict]:
    """One row per run (its best sequence): the figures the Compare page shows side by side."""
    rows = []
    for run in runs:
        seq = run.best
        f = seq.figures()
        rows.append({
            "run": run.name,
            "sequence log-prob (raw)": round(f.sequence_logprob, 2),
            "sequence log-prob (processed)": _rounded(f.processed_sequence_logprob, 2),
            "perplexity (raw)": round(f.perplexity, 2),
            "distinct-2": round(f.distinct_2, 3),
            "repeated 2-grams": f.repeated_2grams,
            "tokens": len(seq.ids),
            "finish": SHORT_FINISH.get(seq.finish_reason, seq.finish_reason),
        })
    return rows


def table_html(rows: list[dict], html_columns: tuple[str, ...] = ()) -> str:
    """A list of dicts as an HTML table; every cell escaped except the named ones (already HTML)."""
    if not rows:
        return ""
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            if c in html_columns:
                cells.append(f'<td class="dp-wide">{v}</td>')
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="dp-num">{html.escape(str(v))}</td>')
            elif len(str(v)) <= 24:  # short labels stay on one line
                cells.append(f'<td class="dp-short">{html.escape(str(v))}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    # A table of figures only lets its headers wrap, so that many columns fit (Compare's eight). A table
    # with a text column keeps them on one line and gives the text the room. No scrolling box around
    # either: it would clip the hover cards of the tokens in the cells.
    classes = "dp-table" if html_columns else "dp-table dp-figures"
    return f'{_style()}<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


# ---------------------------------------------------------------------------------------------
# Sampling lab


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
    labels = [_plotly_text(t) for t in labels]
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
    return _layout(fig, "Softmax with temperature", "token", what)


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
    previous = None
    for i, stage in enumerate(stages):
        name, kept = stage["name"], stage["kept"]
        pretty, colour = PROCESSORS[name].label, PROCESSORS[name].colour
        sees = np.asarray(stage["sorted"], dtype=np.float64)
        if i > 0:
            r, c = _curve(sees, [kept])
            fig.add_trace(go.Scatter(
                x=r, y=c, mode="lines", line=dict(color=colour, width=2),
                name=f"{stage['label']}: what {pretty} sees",
                hovertemplate="rank %{x:,}<br>cumulative p %{y:.3f}<extra>" + html.escape(stage["label"]) + "</extra>"))
        label = f"{pretty}={stage['param']:g} keeps {kept:,}" + (f" of {previous:,}" if previous is not None else "")
        fig.add_trace(go.Scatter(x=[kept, kept], y=[0, 1], mode="lines", name=label,
                                 line=dict(color=colour, dash="dash", width=2), meta={"processor": name, "kept": kept},
                                 hovertemplate=f"{label}<extra></extra>"))
        if PROCESSORS[name].mass_cut:
            fig.add_trace(go.Scatter(x=[1, kept], y=[stage["param"]] * 2, mode="lines", showlegend=False,
                                     line=dict(color=colour, dash="dot", width=1), hoverinfo="skip"))
        previous = kept
    if not stages:
        fig.add_annotation(text="nothing is cut (top-k off, top-p 1)", showarrow=False, x=0.5, y=0.15,
                           xref="paper", yref="paper")
    decades = [10 ** i for i in range(int(math.log10(max(vocab, 10))) + 1)]
    fig.update_xaxes(type="log", range=[0, math.log10(max(vocab, 10))], tickmode="array", tickvals=decades,
                     ticktext=[f"{d:,}" for d in decades])
    fig.update_yaxes(range=[0, 1.02])
    fig = _layout(fig, title or "Sorted cumulative probability: what each cut sees",
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
    return _layout(fig, "Nucleus size over the run", "step", "tokens kept (log scale)")


# ---------------------------------------------------------------------------------------------
# Beam search


def _best_path(run: RunTrace, nodes: list, by_id: dict) -> list[int]:
    """Node ids of the returned best hypothesis (as far as the shown steps go), prompt side first."""
    target = run.best.ids[: 1 + max((n.step for n in nodes), default=-1)]
    if not target:
        return []

    def path(node):
        out = []
        while node is not None:
            out.append(node)
            node = by_id.get(node.parent)
        return out[::-1]

    ends = [n for n in nodes if n.step == len(target) - 1 and n.status != "pruned"]
    ends.sort(key=lambda n: n.status != "finished")
    for end in ends:
        p = path(end)
        if [n.token_id for n in p] == list(target) and p[0].parent is None:
            return [n.id for n in p]
    return []


def beam_tree_layout(run: RunTrace, max_steps: int | None = None) -> dict:
    """The beam tree laid out: x = step, y = row. Beams that went on (kept) and finished hypotheses
    form the tree; its leaves get rows in depth-first order (best-scored child first), and a node
    sits at the middle of its children, so children sit next to their parent. Pruned candidates sit
    beside their parent's row. Returns nodes, y by id, the best path's node ids, and the root's row."""
    nodes = [n for n in run.beam_tree or [] if max_steps is None or n.step < max_steps]
    by_id = {n.id: n for n in nodes}
    children: dict = defaultdict(list)
    for n in nodes:
        children[n.parent if n.parent in by_id else None].append(n)
    y: dict = {}
    counter = 0
    # iterative DFS (post-order) over the surviving tree
    stack: list = [(None, False)]
    while stack:
        node_id, expanded = stack.pop()
        kids = sorted((c for c in children[node_id] if c.status != "pruned"), key=lambda c: -c.score)
        if not kids:
            y[node_id] = counter
            counter += 1
        elif expanded:
            y[node_id] = (y[kids[0].id] + y[kids[-1].id]) / 2
        else:
            stack.append((node_id, True))
            stack.extend((c.id, False) for c in reversed(kids))
    for parent, kids in children.items():
        pruned = sorted((c for c in kids if c.status == "pruned"), key=lambda c: -c.score)
        for j, c in enumerate(pruned):  # a fan beside the parent's row
            y[c.id] = y[parent] + (j - (len(pruned) - 1) / 2) * min(0.8 / max(len(pruned), 1), 0.2)
    return {"nodes": nodes, "by_id": by_id, "y": y, "rows": counter, "best": _best_path(run, nodes, by_id)}


def beam_tree_figure(run: RunTrace, max_steps: int | None = None) -> go.Figure:
    """The beam tree: edges parent -> child, the returned best hypothesis thick and red, beams that
    went on (blue) and finished hypotheses (green stars) labelled with their token, pruned candidates
    faded and unlabelled; every node's scores on hover."""
    lay = beam_tree_layout(run, max_steps)
    nodes, by_id, y, best = lay["nodes"], lay["by_id"], lay["y"], lay["best"]
    best_set = set(best)
    fig = go.Figure()
    for status, colour, width in (("pruned", "#e2e2e2", 0.8), ("kept", "#9ab7d3", 1.2)):
        ex, ey = [], []
        for n in nodes:
            if (n.status == "pruned") == (status == "pruned") and n.id not in best_set:
                px = by_id[n.parent].step if n.parent in by_id else -1
                ex += [px, n.step, None]
                ey += [y[n.parent if n.parent in by_id else None], y[n.id], None]
        fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color=colour, width=width),
                                 hoverinfo="skip", showlegend=False, name=f"edges ({status})"))
    labels = {}
    for status, colour in STATUS_COLOURS.items():
        group = [n for n in nodes if n.status == status]
        text = [_plotly_text(visible(n.token)) for n in group]
        labelled = status != "pruned"
        fig.add_trace(go.Scatter(
            x=[n.step for n in group], y=[y[n.id] for n in group], name=status,
            mode="markers+text" if labelled else "markers", text=text,
            textposition="top center", textfont=dict(size=9, color="#444"),
            marker=dict(color=colour, size=5 if status == "pruned" else (11 if status == "finished" else 7),
                        symbol="star" if status == "finished" else "circle",
                        opacity=0.5 if status == "pruned" else 1.0),
            customdata=[[n.score, n.finished_score if n.finished_score is not None else float("nan"), n.step]
                        for n in group],
            hovertemplate="<b>%{text}</b> (step %{customdata[2]})<br>beam score %{customdata[0]:.3f}"
                          "<br>(sum of processed log-probs, not renormalised)"
                          + ("<br>finished score %{customdata[1]:.3f} (÷ length ** length_penalty)"
                             if status == "finished" else "") + "<extra>" + status + "</extra>"))
        labels[status] = len(group)
    if best:
        path = [by_id[i] for i in best]
        fig.add_trace(go.Scatter(
            x=[-1] + [n.step for n in path], y=[y[None]] + [y[n.id] for n in path],
            mode="lines+markers", name="returned best hypothesis",
            line=dict(color=BEST_COLOUR, width=4), marker=dict(color=BEST_COLOUR, size=9),
            text=["prompt"] + [_plotly_text(visible(n.token)) for n in path],
            customdata=[[float("nan")]] + [[n.score] for n in path],
            hovertemplate="%{text}<br>beam score %{customdata[0]:.3f}<extra>best</extra>"))
        for n in path:  # the best path's tokens on a white label, so the red line does not hide them
            fig.add_annotation(x=n.step, y=y[n.id], text=f"<b>{_plotly_text(visible(n.token))}</b>", showarrow=False,
                               yshift=11, font=dict(size=10, color=BEST_COLOUR), bgcolor="rgba(255,255,255,0.85)",
                               borderpad=1)
    fig.add_trace(go.Scatter(x=[-1], y=[y.get(None, 0)], mode="markers+text", text=["prompt"],
                             textposition="bottom center", marker=dict(color="#333", size=9, symbol="square"),
                             showlegend=False, hoverinfo="skip", name="prompt"))
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(dtick=1, zeroline=False, range=[-1.6, max((n.step for n in nodes), default=0) + 0.8])
    fig = _layout(fig, "Beam search tree", "step", "")
    fig.update_layout(height=min(1800, max(420, 17 * lay["rows"] + 140)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, title=None),
                      margin=dict(l=20, r=20, t=70, b=40))
    return fig


def hypotheses_table(run: RunTrace) -> list[dict]:
    """The returned hypotheses, best first, with their whole text."""
    return [{"rank": i + 1,
             "beam score": round(q.beam_score, 3) if q.beam_score is not None else None,
             "log-prob (raw)": round(q.sequence_logprob, 2), "tokens": len(q.ids),
             "finish": SHORT_FINISH.get(q.finish_reason, q.finish_reason), "text": q.text}
            for i, q in enumerate(run.sequences)]


def hypotheses_html(run: RunTrace, distribution: str = "raw") -> str:
    """`hypotheses_table` as HTML: the whole text of each hypothesis, coloured, with hover cards."""
    rows = hypotheses_table(run)
    for row, q in zip(rows, run.sequences):
        row["text"] = tokens_html(q, distribution, compact=True)
    return table_html(rows, html_columns=("text",))


# ---------------------------------------------------------------------------------------------
# Models & tokens, Score a text, Step through


def attention_figure(tokens: list[str], weights, layer: int, head: int) -> go.Figure:
    labels = [f"{i}:{_plotly_text(visible(t))}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(z=np.asarray(weights), x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig = _layout(fig, f"Attention, layer {layer + 1}, head {head + 1}", "attended-to token (key)",
                  "attending token (query)")
    fig.update_layout(height=min(1400, max(380, 18 * len(tokens) + 120)))
    return fig


def surprisal_figure(tokens: list[str], surprisal_bits: list[float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"{i}:{_plotly_text(visible(t))}" for i, t in enumerate(tokens)], y=surprisal_bits,
                           hovertemplate="%{x}<br>surprisal %{y:.2f} bits<extra></extra>"))
    return _layout(fig, "Surprisal per token (raw distribution)", "token", "surprisal (bits)")


def step_table(prompt_text: str, seq: Sequence, choices: int = 5, distribution: str = "raw") -> list[dict]:
    """Seed 004's greedy_search table: the text so far, then the top choices with their %."""
    rows, text = [], prompt_text
    for s in seq.steps:
        row = {"step": s.index, "input": text}
        for i, c in enumerate(s.top[:choices]):
            p = c.processed_prob if distribution == "processed" else c.prob
            row[f"choice {i + 1}"] = f"{c.token}({100 * p:.2f}%)" if p is not None else f"{c.token}({UNAVAILABLE})"
        rows.append(row)
        text += s.token
    return rows
