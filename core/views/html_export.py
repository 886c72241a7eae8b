"""One self-contained HTML file of a run: opens offline in any browser, no network, no server.

The tokens are coloured with the same CSS-only hover cards as the app (`core.views.figures`), the figures
are plotly with plotly.js inlined once (the first figure carries it, the others reuse it), and every
piece of text that came from a user or a tokenizer is escaped.
"""

from __future__ import annotations

import html
import json

import plotly.graph_objects as go

from core.views import figures
from core.decoding.trace import DISTRIBUTIONS, FINISH_REASONS, Sequence

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

    def __call__(self, fig: go.Figure) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.first, include_mathjax=False,
                          config={"displaylogo": False, "responsive": True})
        self.first = False
        return out


def _esc(text) -> str:
    return html.escape(str(text))


def _settings_table(recipe_dict: dict) -> str:
    rows = []
    for run in recipe_dict.get("runs", []):
        params = {k: v for k, v in run.items() if k not in ("name", "generate_kwargs")}
        rows.append({"run": run.get("name", ""),
                     "settings": ", ".join(f"{k}={v!r}" for k, v in params.items()),
                     "generate() keyword arguments": ", ".join(
                         f"{k}={v!r}" for k, v in (run.get("generate_kwargs") or {}).items())})
    return figures.table_html(rows)


def _run_block(name: str, seq: Sequence, distribution: str) -> str:
    f = seq.figures()
    return (f"<div><h3>{_esc(name)}</h3>{figures.tokens_html(seq, distribution)}"
            f'<p class="dp-figs">sequence log-prob {f["sequence_logprob"]:.2f} (raw) · perplexity '
            f'{f["perplexity"]:.1f} · distinct-2 {f["distinct"]["distinct_2"]:.2f} · '
            f'{_esc(FINISH_REASONS.get(seq.finish_reason, seq.finish_reason))}</p></div>')


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
    parts = [f"<h1>{_esc(heading)}</h1>",
             f'<p class="dp-meta">Decoding Playground · model <b>{_esc(result.model)}</b> '
             f'({_esc(recipe_dict.get("revision", ""))}) on {_esc(result.device)} · '
             f'{len(result.prompt_ids)} prompt tokens</p>']
    parts += [f'<p class="dp-notice">{_esc(n)}</p>' for n in result.notices]
    parts.append("<h2>Prompt</h2>" + figures.prompt_html(result.prompt_text))
    parts.append("<h2>Outputs</h2>" + figures.probability_legend_html(distribution))
    parts.append(f'<p class="dp-meta">{_esc(DISTRIBUTIONS["prob"])}. {_esc(DISTRIBUTIONS["processed_prob"])}.</p>')

    if page == "compare":
        parts.append('<div class="dp-runs">'
                     + "".join(_run_block(r.name, r.best, distribution) for r in result.runs) + "</div>")
        parts.append("<h2>Coherence vs diversity</h2>" + fig_html(figures.lineup_chart(result.runs)))
        parts.append(figures.table_html(figures.lineup_table(result.runs)))
    elif page == "beam":
        for run in result.runs:
            parts.append(_run_block(run.name, run.best, distribution))
            if run.beam_tree:
                parts.append(fig_html(figures.beam_tree_figure(run, max_steps=20)))
                parts.append('<p class="dp-meta">Scores are sums of processed log-probs (not renormalised); '
                             "a finished score is divided by length ** length_penalty. First 20 steps.</p>")
            parts.append(f"<h3>Hypotheses of {_esc(run.name)}</h3>" + figures.hypotheses_html(run, distribution))
    else:
        main = result.runs[0]
        parts.append(_run_block(main.name, main.best, distribution))
        rows = figures.step_table(result.prompt_text, main.best, 5, distribution)
        parts.append(f"<h2>Steps ({_esc(distribution)} probabilities)</h2>" + figures.table_html(rows))
        for name, prompt_text, seq in branches or []:
            parts.append(f"<h3>{_esc(name)}</h3>" + figures.prompt_html(prompt_text)
                         + figures.tokens_html(seq, distribution))

    parts.append("<h2>Settings</h2>" + _settings_table(recipe_dict))
    versions = recipe_dict.get("versions") or {}
    if versions:
        parts.append('<p class="dp-meta">' + " · ".join(f"{_esc(k)} {_esc(v)}" for k, v in versions.items()) + "</p>")
    parts.append("<h2>Recipe</h2><p class=\"dp-meta\">Runs the same decoding with transformers' generate():</p>"
                 f'<pre class="dp-code">{_esc(snippet)}</pre>')
    parts.append("<details><summary>Recipe as JSON</summary>"
                 f'<pre class="dp-code">{_esc(json.dumps(recipe_dict, ensure_ascii=False, indent=1))}</pre></details>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(heading)} · Decoding Playground</title><style>{PAGE_CSS}</style></head><body>"
            + "\n".join(parts) + "\n</body></html>\n")
