"""Compare: one prompt, a line-up of strategies decoded together, one row per run."""

import streamlit as st

from ui import (PRESETS, decode, decode_models, distribution_toggle, fail, is_remote, link_to, other_models,
                sidebar, state, warn)
from core.views import charts
from core.views import markup
from core.views import tables
from core.views import html_export
from core.views import pipeline_view
from core.views import recipe
from core.decoding import lineup as lineup_syntax
from core.errors import PlaygroundError
from core.pipeline import replayable
from core.playground import default_lineup
from core.model_comparison import MAX_MODELS
from core.models import registry
from core.views import share
from core.views.share import Param
from core.views import share

PAGE = "compare"
SCHEMA = {"prompt": PRESETS["A long long time ago"],
          "lineup": Param(lineup_syntax.lineup_spec(default_lineup()).replace(";", "\n"), max_chars=lineup_syntax.MAX_LINEUP_CHARS),
          "distribution": Param("raw", choices=("raw", "processed")),
          "vs": Param("", max_chars=400)}  # model against model: the other models, name,name
LINEUP_HELP = ("One run per line: strategy(name=value,...), with generate()'s names. For example "
               "`sample(temperature=0.7,top_k=0,top_p=0.95)` is nucleus sampling at temperature 0.7 "
               "(sampling keeps generate()'s default top_k=50 unless you set top_k=0), "
               "`beam(num_beams=5,no_repeat_ngram_size=2)`, `greedy`.")



def show_models(pg, vs: list[str], runs) -> None:
    """Model against model: each run of the line-up as a row, one column per model, then the figures with
    every run's perplexity under every model."""
    others, notes = other_models(pg, vs)
    if not others:
        return
    comparison = decode_models([pg, *others], state(PAGE, "prompt"), runs)
    if comparison is None:
        return
    for note in notes + comparison.notices:
        st.info(share.plain(note), icon=":material/info:")
    shown = distribution_toggle(PAGE)
    st.html(markup.probability_legend_html(shown))
    by_name = [{r.name: (r, scores) for r, scores in zip(res.runs, cross)}
               for res, cross in zip(comparison.results, comparison.cross)]
    for name in dict.fromkeys(s.name() for s in runs):
        st.subheader(name)
        for col, model, found in zip(st.columns(len(by_name)), comparison.models, by_name):
            col.markdown(f"**{share.plain(model)}**")
            if name not in found:
                col.caption("not run on this backend (see the notes above)")
                continue
            run, scores = found[name]
            f = run.best.figures()
            under = " · ".join(f"{markup.or_na(c.perplexity, '{:.2f}')} under {share.plain(c.model)}"
                               for c in scores if c.model != model)
            col.caption(f"log-prob **{f.sequence_logprob:.2f}** · perplexity **{f.perplexity:.2f}** · {under}")
            col.html(markup.tokens_html(run.best, shown))
    st.markdown("**Figures.** Each run's perplexity under its own model and under every other model of the "
                "comparison: how likely one model finds another's text.")
    st.html(markup.table_html(tables.cross_table(comparison)))
    st.download_button("JSON", lambda: comparison.to_json(), "models.json", "application/json", on_click="ignore")


pg = sidebar(PAGE, SCHEMA, "Compare decoding strategies")
offered = registry.available_models()
vs, problems = share.parse_models(state(PAGE, "vs"), offered=offered, model=pg.name, most=MAX_MODELS - 1)
for problem in problems:
    warn(problem)
st.session_state[f"{PAGE}_vs"] = ",".join(vs)  # the next link holds only what is used
st.session_state[f"{PAGE}__vs"] = vs
st.sidebar.multiselect(
    "Compare with other models", [n for n in offered if n != pg.name], key=f"{PAGE}__vs",
    max_selections=MAX_MODELS - 1, on_change=lambda: st.session_state.update(
        {f"{PAGE}_vs": ",".join(st.session_state[f"{PAGE}__vs"])}),
    help="Model against model: the same prompt and line-up on each model, side by side, and every run scored "
         "under every other model (cross-perplexity in the figures table).")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=90)
with st.expander("Line-up: one run per line, strategy(name=value,...)"):
    st.text_area("Runs", key=f"{PAGE}_lineup", height=200, help=LINEUP_HELP)
    st.button("Reset to the default line-up", on_click=lambda: st.session_state.update(
        {f"{PAGE}_lineup": SCHEMA["lineup"].default}))

try:
    runs = lineup_syntax.parse_lineup(state(PAGE, "lineup"), max_new_tokens=state(PAGE, "max_new_tokens"),
                              seed=state(PAGE, "seed"))
    lineup_syntax.validate_lineup(runs, pg.check)
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()
if vs:
    show_models(pg, vs, runs)
    st.stop()
result = decode(pg, state(PAGE, "prompt"), runs)
if result is None:
    st.stop()
for notice in result.notices:
    warn(notice)

shown = distribution_toggle(PAGE)
st.html(markup.probability_legend_html(shown))
st.caption(f"Sampling run *i* of the line-up draws from its own random stream, seeded with the sidebar's seed "
           f"+ *i* (seed {state(PAGE, 'seed')} here), so the link and the recipe reproduce every run. "
           "Hover a token for its alternatives and what the strategy cut.")
for i, run in enumerate(result.runs):
    f = run.best.figures()
    name_col, text_col = st.columns([1, 4], vertical_alignment="top")
    with name_col:
        st.subheader(run.name)
        processed = tables.processed_label(run)
        st.caption(f"log-prob **{f.sequence_logprob:.2f}** raw · "
                   f"**{markup.or_na(f.processed_sequence_logprob, '{:.2f}')}** "
                   f"{processed} · {share.plain(run.best.finished)}")
        if run.best.steps and not is_remote(pg) and replayable(runs[i]):
            link_to("pipeline", "Its pipeline, step by step", pipeline_view.link_params(
                prompt=state(PAGE, "prompt"), lineup=state(PAGE, "lineup"), run=i, step=0, model=state(PAGE, "model"),
                seed=state(PAGE, "seed"), max_new_tokens=state(PAGE, "max_new_tokens")), icon=":material/filter_alt:")
    with text_col:
        st.html(markup.tokens_html(run.best, shown))

# a plain table, like the chart below it: no data-grid code for a new visitor's browser to load for 8 rows
st.html(markup.table_html(tables.lineup_table(result.runs)))
# an SVG image drawn here: no chart library for a new visitor's browser to load (the figures table has the numbers)
st.image(charts.lineup_chart_svg(result.runs), width=760)

rec = recipe.recipe(result, runs, state(PAGE, "prompt"))
snippet = recipe.generate_snippet(rec)
# on_change="rerun": the code view is drawn only once the expander is opened. Its syntax highlighter is 1.6 MB
# of JavaScript that a new visitor's browser would otherwise fetch and parse before showing any result.
with st.expander("Export and reproduce", key=f"{PAGE}__export_open", on_change="rerun") as export:
    cols = st.columns(5)
    # callables: each export is built when its button is clicked, not on every rerun; on_click="ignore": a click
    # does not rerun the page, whose new run would replace the callable the browser is fetching (downloads were lost)
    cols[0].download_button("JSON", lambda: recipe.to_json(result, rec), "decoding.json", "application/json",
                            on_click="ignore")
    cols[1].download_button("CSV", lambda: recipe.to_csv(result), "decoding.csv", "text/csv", on_click="ignore")
    cols[2].download_button("Markdown", lambda: recipe.to_markdown(result), "decoding.md", "text/markdown", on_click="ignore")
    cols[3].download_button("HTML page", lambda: html_export.export_html(result, rec, snippet, page="compare", distribution=shown),
                            "decoding.html", "text/html", help="one file that opens offline in any browser", on_click="ignore")
    cols[4].download_button("Recipe", snippet, "recipe.py", "text/x-python", on_click="ignore")
    st.caption("The recipe runs on its own with the pinned torch and transformers and prints the texts above; "
               "its first lines say where to get the model and how to point it at your copy (`--model PATH`).")
    if export.open:
        st.code(snippet, language="python")
