"""HTML for the pages and the exported file: coloured tokens with hover cards, the colour legend, the
prompt, and tables.

Every probability shown says which distribution it is from ("raw" or "processed").

The HTML needs no JavaScript: hover cards are CSS only (`:hover` / `:focus`), so they work inside
Streamlit's `st.html` (which keeps <style> and drops <script>) and in a standalone file
(`core.views.html_export`). Every piece of text that comes from a tokenizer or a user is escaped.
"""

from __future__ import annotations

import html
import math

from core.decoding.trace import RunTrace, Sequence
from core.views.colours import COLOURSCALE, LEGEND_TICKS, UNKNOWN_COLOUR, level, probability_colour
from core.views.tables import UNAVAILABLE, hypotheses_table
from core.views.tokens import cut_reason, visible

ALTERNATIVES = 5  # alternatives listed in a token's hover card


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
    ticks = "".join(f'<span style="left:{100 * level(p):.0f}%">{label}</span>' for p, label in LEGEND_TICKS)
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


def hypotheses_html(run: RunTrace, distribution: str = "raw") -> str:
    """`hypotheses_table` as HTML: the whole text of each hypothesis, coloured, with hover cards."""
    rows = hypotheses_table(run)
    for row, q in zip(rows, run.sequences):
        row["text"] = tokens_html(q, distribution, compact=True)
    return table_html(rows, html_columns=("text",))
