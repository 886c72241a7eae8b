"""One self-contained HTML file of a run: opens offline in any browser, no network, no server.

The tokens are coloured with the same CSS-only hover cards as the app (`core.views.markup`), the figures
are plotly with plotly.js inlined once (the first figure carries it, the others reuse it), and every
piece of text that came from a user or a tokenizer is escaped: the page is a Jinja2 template
(templates/export.html.j2) that escapes every value by default.
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
from markupsafe import Markup

from core.views import beam_tree, charts, markup, tables
from core.views.templating import TEMPLATES
from core.decoding.trace import DISTRIBUTIONS, Sequence

PAGES = ("compare", "beam", "step")
PAGE_CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;max-width:1200px;margin:24px auto;
 padding:0 16px}
h1{font-size:1.6rem;margin-bottom:.2em}h2{font-size:1.25rem;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin:1.1em 0 .3em}
.dp-meta{color:#555}.dp-notice{background:#fff6d6;border:1px solid #f0d67a;padding:4px 8px;border-radius:4px}
.dp-figs{font-size:13px;color:#444}
pre.dp-code{background:#f6f6f6;border:1px solid #e0e0e0;border-radius:4px;padding:10px;overflow-x:auto;
 font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace}
.dp-runs{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:8px 24px}
"""


class _Figures:
    """Turns figures into HTML divs, with plotly.js inlined in the first one only."""

    def __init__(self):
        self.first = True

    def __call__(self, fig: go.Figure) -> Markup:
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, include_mathjax=False,
                          config={"displaylogo": False, "responsive": True})
        self.first = False
        return Markup(out)


def _settings_table(recipe_dict: dict) -> Markup:
    rows = []
    for run in recipe_dict.get("runs", []):
        params = {k: v for k, v in run.items() if k not in ("name", "generate_kwargs")}
        rows.append({"run": run.get("name", ""),
                     "settings": ", ".join(f"{k}={v!r}" for k, v in params.items()),
                     "generate() keyword arguments": ", ".join(
                         f"{k}={v!r}" for k, v in (run.get("generate_kwargs") or {}).items())})
    return Markup(markup.table_html(rows))


def _run(name: str, seq: Sequence, distribution: str) -> dict:
    f = seq.figures()
    return {"name": name, "tokens": Markup(markup.tokens_html(seq, distribution)),
            "sequence_logprob": f.sequence_logprob, "perplexity": f.perplexity,
            "distinct_2": f.distinct_2, "finish": seq.finished}


def _part(heading: str = "", level: str = "h2", runs=(), grid: bool = False, html: str = "", note: str = "") -> dict:
    """One section of the page; `html` is markup our own view code built (its text already escaped)."""
    return {"heading": heading, "level": level, "runs": list(runs), "grid": grid, "html": Markup(html), "note": note}


def _compare_parts(result, distribution: str, fig_html) -> list[dict]:
    return [_part(runs=[_run(r.name, r.best, distribution) for r in result.runs], grid=True),
            _part("Coherence vs diversity", html=fig_html(charts.lineup_chart(result.runs))),
            _part(html=markup.table_html(tables.lineup_table(result.runs)))]


def _beam_parts(result, distribution: str, fig_html) -> list[dict]:
    parts = []
    for run in result.runs:
        parts.append(_part(runs=[_run(run.name, run.best, distribution)]))
        if run.beam_tree:
            parts.append(_part(html=fig_html(beam_tree.beam_tree_figure(run, max_steps=20)),
                               note="Scores are sums of processed log-probs (not renormalised); a finished score "
                                    "is divided by length ** length_penalty. First 20 steps."))
        parts.append(_part(f"Hypotheses of {run.name}", "h3", html=markup.hypotheses_html(run, distribution)))
    return parts


def _step_parts(result, distribution: str, branches) -> list[dict]:
    main = result.runs[0]
    rows = tables.step_table(result.prompt_text, main.best, 5, distribution)
    parts = [_part(runs=[_run(main.name, main.best, distribution)]),
             _part(f"Steps ({distribution} probabilities)", html=markup.table_html(rows))]
    for name, prompt_text, seq in branches or []:
        parts.append(_part(name, "h3", html=markup.prompt_html(prompt_text) + markup.tokens_html(seq, distribution)))
    return parts


def export_html(result, recipe_dict: dict, snippet: str, *, page: str = "compare", distribution: str = "raw",
                branches: list[tuple[str, str, Sequence]] | None = None, title: str | None = None) -> str:
    """The whole page as one HTML document (a str).

    `result` is a `core.playground.DecodeResult`, `recipe_dict` what `core.views.recipe.recipe(...)` returns
    and `snippet` the recipe's Python (`core.views.recipe.generate_snippet`). `page` picks what it shows:
    "compare" (every run's tokens, the coherence-vs-diversity chart and the line-up table), "beam"
    (each beam run's tokens, tree and hypotheses) or "step" (the step table of the first run, and the
    `branches`, a list of (title, prompt text, Sequence), each shown after its prompt)."""
    if page not in PAGES:
        raise ValueError(f"page must be one of {', '.join(PAGES)}, got {page!r}")
    if distribution not in ("raw", "processed"):
        raise ValueError(f"distribution must be 'raw' or 'processed', got {distribution!r}")
    fig_html = _Figures()
    heading = title or {"compare": "Compare decoding strategies", "beam": "Beam search",
                        "step": "Step through greedy decoding"}[page]
    parts = {"compare": lambda: _compare_parts(result, distribution, fig_html),
             "beam": lambda: _beam_parts(result, distribution, fig_html),
             "step": lambda: _step_parts(result, distribution, branches)}[page]()
    return TEMPLATES.get_template("export.html.j2").render(
        heading=heading, css=Markup(PAGE_CSS), model=result.model, revision=recipe_dict.get("revision", ""),
        device=result.device, prompt_tokens=len(result.prompt_ids), notices=result.notices,
        prompt=Markup(markup.prompt_html(result.prompt_text)),
        legend=Markup(markup.probability_legend_html(distribution)),
        raw_meaning=DISTRIBUTIONS["prob"], processed_meaning=DISTRIBUTIONS["processed_prob"], parts=parts,
        settings=_settings_table(recipe_dict), versions=recipe_dict.get("versions") or {}, snippet=snippet,
        recipe_json=json.dumps(recipe_dict, ensure_ascii=False, indent=1))
