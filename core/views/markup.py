"""HTML for the pages and the exported file: coloured tokens with hover cards, the colour legend, the
prompt, and tables.

Every probability shown says which distribution it is from ("raw" or "processed").

The HTML needs no JavaScript: hover cards are CSS only (`:hover` / `:focus`), so they work inside
Streamlit's `st.html` (which keeps <style> and drops <script>) and in a standalone file
(`core.views.html_export`). Every piece of text that comes from a tokenizer or a user is escaped: the HTML is the macros of
templates/markup.html.j2, which escape every value they are given; this module only works out the values.
"""

from __future__ import annotations

import math

from markupsafe import Markup

from core.decoding.trace import RunTrace, Sequence
from core.views.colours import COLOURSCALE, LEGEND_TICKS, UNKNOWN_COLOUR, level, probability_colour
from core.views.tables import UNAVAILABLE, hypotheses_table
from core.views.templating import macros
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


_HTML = macros("markup.html.j2")


def _style() -> Markup:
    return Markup(f"<style>{TOKEN_CSS}{TOKEN_CSS_UNSCORED}</style>")


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


def _span(text: str, prob: float | None, card: Markup, compact: bool = False) -> Markup:
    bg, fg = probability_colour(prob) if prob is not None else UNKNOWN_COLOUR
    return _HTML.token(text, bg, fg, card, compact)


def _or_na(value):
    return UNAVAILABLE if value is None else value


def or_na(value, fmt: str = "{}") -> str:
    """A figure as text, or "n/a" where the backend could not give it."""
    return UNAVAILABLE if value is None else fmt.format(value)


def pct_of_logprob(logprob: float | None) -> str:
    return _pct(_exp(logprob))


def _step_card(s, distribution: str, finished: str = "") -> Markup:
    """A token's hover card: its probability and rank in both distributions, the top alternatives (those
    the processors removed marked, with why), what each processor kept or banned at this step, and,
    where a stopping criterion ended the run at this token, which (`finished`)."""
    processed = distribution == "processed"
    prob = _exp(s.processed_logprob if processed else s.logprob)
    rank = _or_na(s.processed_rank if processed else s.rank)
    alternatives = []
    for i, c in enumerate(s.top[:ALTERNATIVES]):
        why = cut_reason(s, i)
        alternatives.append({"text": visible(c.token), "p": _pct(c.processed_prob if processed else c.prob),
                             "why": why or "", "chosen": c.id == s.id, "cut": bool(why)})
    if all(c.id != s.id for c in s.top[:ALTERNATIVES]):  # the chosen token is further down: show it too
        alternatives.append({"text": visible(s.token), "p": _pct(prob), "why": f"rank {rank}", "chosen": True,
                             "cut": False})
    banned = [(name, [visible(t) for t in tokens]) for name, tokens in s.banned_tokens.items() if tokens]
    return _HTML.step_card(
        visible(s.token), _pct(prob), distribution, rank, "raw" if processed else "processed",
        _pct(_exp(s.logprob if processed else s.processed_logprob)),
        _or_na(s.rank if processed else s.processed_rank), s.index, min(ALTERNATIVES, len(s.top)),
        alternatives, list(s.kept.items()), banned, finished)


def tokens_html(seq: Sequence, distribution: str = "raw", *, legend: bool = False, compact: bool = False) -> Markup:
    """The generated text, each token coloured by its probability under `distribution` ("raw" or
    "processed"); hovering (or focusing) a token shows a card with its probability and rank, the top
    alternatives from the same distribution (those the processors removed struck through, with why),
    and what each processor kept or banned at that step. `legend=True` puts the colour legend first;
    `compact=True` marks new lines (↵) without breaking the line (for tables)."""
    last = len(seq.steps) - 1  # a stopping criterion (a stop string) ended the run at the last token: its card says which
    ended = f"{seq.finished} here" if seq.finish_detail is not None else ""
    spans = [_span(s.token, _exp(s.processed_logprob if distribution == "processed" else s.logprob),
                   _step_card(s, distribution, ended if i == last else ""), compact) for i, s in enumerate(seq.steps)]
    head = probability_legend_html(distribution, style=False) if legend else Markup()
    if distribution == "processed" and any(s.processed_logprob is None for s in seq.steps):
        head += _HTML.note("Grey: the backend did not give the processed probability of these tokens (it needs "
                           "the whole distribution).")
    return _HTML.tokens(_style(), head, spans)


def probability_legend_html(distribution: str = "raw", *, style: bool = True) -> Markup:
    """The colour scale of the tokens, with tick labels from 0.01% to 100% (log scale)."""
    stops = ", ".join(f"{c} {100 * i / (len(COLOURSCALE) - 1):.1f}%" for i, c in enumerate(COLOURSCALE))
    ticks = [(100 * level(p), label) for p, label in LEGEND_TICKS]
    what = ("the chosen token's probability under the raw distribution (the model's softmax)"
            if distribution == "raw" else
            "the chosen token's probability under the processed distribution (what the strategy chose from)")
    return _HTML.legend(_style() if style else "", what, stops, ticks)


def scored_html(tokens, token_text=None, *, legend: bool = False, first_token: str = "") -> Markup:
    """Scoring mode: each token coloured by its raw probability; the hover card gives p, rank,
    surprisal and what the model expected there (its text when `token_text(id)` is given). An
    unscored `first_token` (it has no context) leads the text, grey and uncoloured."""
    spans = [_HTML.unscored(first_token)] if first_token else []
    for t in tokens:
        p = math.exp(t.logprob)
        expected = token_text(t.top_id) if token_text is not None else f"id {t.top_id}"
        card = _HTML.scored_card(visible(t.token), _pct(p), t.rank, t.surprisal_bits, visible(expected),
                                 _pct(t.top_prob))
        spans.append(_span(t.token, p, card))
    head = probability_legend_html("raw", style=False) if legend else ""
    return _HTML.tokens(_style(), head, spans)


def prompt_html(text: str) -> Markup:
    """The prompt (or a branch's path so far), set apart from the generated tokens."""
    return _HTML.prompt(_style(), text)


def _cell(value, is_html: bool) -> tuple[str, object]:
    if is_html:
        return "wide", Markup(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "num", value
    return ("short" if len(str(value)) <= 24 else "text"), value  # short labels stay on one line


def table_html(rows: list[dict], html_columns: tuple[str, ...] = ()) -> Markup:
    """A list of dicts as an HTML table; every cell escaped except the named ones (HTML our views built)."""
    if not rows:
        return Markup()
    columns = list(rows[0])
    cells = [[_cell(row.get(c, ""), c in html_columns) for c in columns] for row in rows]
    # A table of figures only lets its headers wrap, so that many columns fit (Compare's eight). A table
    # with a text column keeps them on one line and gives the text the room. No scrolling box around
    # either: it would clip the hover cards of the tokens in the cells.
    classes = "dp-table" if html_columns else "dp-table dp-figures"
    return _HTML.table(_style(), classes, columns, cells)


def hypotheses_html(run: RunTrace, distribution: str = "raw") -> Markup:
    """`hypotheses_table` as HTML: the whole text of each hypothesis, coloured, with hover cards."""
    rows = hypotheses_table(run)
    for row, q in zip(rows, run.sequences):
        row["text"] = tokens_html(q, distribution, compact=True)
    return table_html(rows, html_columns=("text",))
