"""Compare: one prompt, a line-up of strategies decoded together, one row per run."""

import streamlit as st

from ui import PRESETS, decode, distribution_toggle, fail, is_remote, link_to, sidebar, state, warn
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
from core.views.share import Param
from core.decoding.trace import FINISH_REASONS

PAGE = "compare"
SCHEMA = {"prompt": PRESETS["A long long time ago"],
          "lineup": Param(lineup_syntax.lineup_spec(default_lineup()).replace(";", "\n"), max_chars=lineup_syntax.MAX_LINEUP_CHARS),
          "distribution": Param("raw", choices=("raw", "processed"))}
LINEUP_HELP = ("One run per line: strategy(name=value,...), with generate()'s names. For example "
               "`sample(temperature=0.7,top_k=0,top_p=0.95)` is nucleus sampling at temperature 0.7 "
               "(sampling keeps generate()'s default top_k=50 unless you set top_k=0), "
               "`beam(num_beams=5,no_repeat_ngram_size=2)`, `greedy`.")

pg = sidebar(PAGE, SCHEMA, "Compare decoding strategies")
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
                   f"{processed} · {FINISH_REASONS[run.best.finish_reason]}")
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
