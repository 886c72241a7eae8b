"""Report: N samples per strategy with Holtzman et al.'s figures, beside human text (widgets, one call, layout)."""

import pandas as pd
import streamlit as st

from ui import decode_report, fail, sidebar, state, warn
from core import limits, report
from core.views import report_figures
from core.decoding import lineup as lineup_syntax
from core.errors import PlaygroundError
from core.views.share import Param

PAGE = "report"
try:
    FIRST = report.load_passages()[0]
except PlaygroundError:
    FIRST = report.Passage("Romeo.\n", "")
SCHEMA = {"prompt": FIRST.prompt, "human": FIRST.continuation,
          "samples": Param(10, 1, limits.MAX_SAMPLES),
          "lineup": Param(report.DEFAULT_LINEUP.replace(";", "\n"), max_chars=lineup_syntax.MAX_LINEUP_CHARS),
          "metric": Param("perplexity", choices=report.METRICS)}

pg = sidebar(PAGE, SCHEMA, "Decoding report")
st.caption("N samples per strategy, decoded in one batch, scored as in Holtzman et al. (2020), \"The Curious Case "
           "of Neural Text Degeneration\", beside human text: the human continuation below plus held-out passages "
           "of the corpus the shipped models were trained on, each scored given its own prompt.")
left, right = st.columns(2)
left.text_area("Prompt", key=f"{PAGE}_prompt", height=150)
right.text_area("Human continuation of this prompt (optional)", key=f"{PAGE}_human", height=150)
st.number_input("Samples per sampling strategy (N)", min_value=1, max_value=limits.MAX_SAMPLES, step=1,
                key=f"{PAGE}_samples")
with st.expander("Line-up: one run per line, strategy(name=value,...)"):
    st.text_area("Runs", key=f"{PAGE}_lineup", height=230)
    st.button("Reset to the paper's line-up", on_click=lambda: st.session_state.update(
        {f"{PAGE}_lineup": SCHEMA["lineup"].default}))

n, tokens, seed = state(PAGE, "samples"), state(PAGE, "max_new_tokens"), state(PAGE, "seed")
prompts = [report.Passage(state(PAGE, "prompt"), state(PAGE, "human"))]
try:
    runs = report.report_lineup(state(PAGE, "lineup"), samples=n, max_new_tokens=tokens, seed=seed)
    lineup_syntax.validate_lineup(runs, pg.check)
    report.check_request(prompts, runs)
    heldout = report.load_passages()
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()

result = decode_report(pg, prompts, runs, heldout)
if result is None:
    st.stop()
for notice in result.notices:
    warn(notice)

st.subheader("Figures per strategy")
table = pd.DataFrame(report_figures.figures_table(result))
st.dataframe(table.style.apply(
    lambda row: ["background-color: #fde2e1" if row["kind"] == "human" else ""] * len(row), axis=1)
    .format(precision=3), hide_index=True, key=f"{PAGE}_table")
st.caption("Self-BLEU-4 here compares each strategy's samples of this one prompt with each other (diversity among "
           "samples), while the human row compares passages of different prompts; `python -m core report` over "
           "several prompts compares samples of different prompts, like with like.")
with st.expander("How each figure is computed"):
    st.dataframe(pd.DataFrame({"figure": list(report.RULES), "rule": list(report.RULES.values())}), hide_index=True)

st.selectbox("Chart", report.METRICS, key=f"{PAGE}_metric", format_func=lambda k: report_figures.LABELS[k])
st.plotly_chart(report_figures.metric_chart(result, state(PAGE, "metric")), key=f"{PAGE}_chart")
if result.figure1 is not None:
    st.plotly_chart(report_figures.figure1_chart(result.figure1), key=f"{PAGE}_figure1")
    if not result.figure1.human_tokens:
        st.caption("Type a human continuation of the prompt above to see it beside beam search.")

st.subheader("Samples")
for row in result.rows:
    with st.expander(f"{row.name}: {len(row.samples)} sample(s)"):
        st.dataframe(pd.DataFrame([{k: v for k, v in s.to_dict().items() if k != "ids"} for s in row.samples]),
                     hide_index=True)

with st.expander("Export"):
    cols = st.columns(2)
    # callables: each export is built when its button is clicked, not on every rerun
    cols[0].download_button("CSV (the table)", result.to_csv, "report.csv", "text/csv")
    cols[1].download_button("JSON (figures and samples)", result.to_json, "report.json", "application/json")
