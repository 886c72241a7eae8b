"""Compare: one prompt, a line-up of strategies decoded together, side by side."""

import streamlit as st

from ui import PRESETS, decode, distribution_toggle, sidebar, state
from core import figures, recipe, share
from core.errors import PlaygroundError
from core.playground import default_lineup
from core.trace import FINISH_REASONS

PAGE = "compare"
SCHEMA = {"prompt": PRESETS["A long long time ago"], "lineup": share.lineup_spec(default_lineup()).replace(";", "\n"),
          "distribution": "raw"}

pg = sidebar(PAGE, SCHEMA, "Compare decoding strategies")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=90)
with st.expander("Line-up: one run per line, strategy(name=value,...)"):
    st.text_area("Runs", key=f"{PAGE}_lineup", height=200,
                 help="e.g. greedy, beam(num_beams=5,no_repeat_ngram_size=2), sample(temperature=0.7,top_p=0.9)")
    st.button("Reset to the default line-up", on_click=lambda: st.session_state.update(
        {f"{PAGE}_lineup": SCHEMA["lineup"]}))

try:
    runs = share.parse_lineup(state(PAGE, "lineup"), max_new_tokens=state(PAGE, "max_new_tokens"),
                              seed=state(PAGE, "seed"))
except PlaygroundError as exc:
    st.error(str(exc))
    st.stop()
result = decode(pg, state(PAGE, "prompt"), runs)
if result is None:
    st.stop()
for notice in result.notices:
    st.warning(notice)

shown = distribution_toggle(PAGE)
columns = st.columns(min(4, len(result.runs)))
for i, run in enumerate(result.runs):
    f = run.best.figures()
    with columns[i % len(columns)]:
        st.subheader(run.name)
        st.html(figures.tokens_html(run.best, shown))
        st.caption(f"sequence log-prob **{f['sequence_logprob']:.2f}** (raw) · perplexity **{f['perplexity']:.1f}**"
                   f" · distinct-2 **{f['distinct']['distinct_2']:.2f}** · {FINISH_REASONS[run.best.finish_reason]}")
st.plotly_chart(figures.lineup_chart(result.runs), key=f"{PAGE}_chart")

rec = recipe.recipe(result, runs, state(PAGE, "prompt"))
with st.expander("Export and reproduce"):
    cols = st.columns(4)
    # callables: each export is built when its button is clicked, not on every rerun
    cols[0].download_button("JSON", lambda: recipe.to_json(result, rec), "decoding.json", "application/json")
    cols[1].download_button("CSV", lambda: recipe.to_csv(result), "decoding.csv", "text/csv")
    cols[2].download_button("Markdown", lambda: recipe.to_markdown(result), "decoding.md", "text/markdown")
    cols[3].download_button("Recipe", lambda: recipe.generate_snippet(rec), "recipe.py", "text/x-python")
    st.code(recipe.generate_snippet(rec), language="python")
