"""Pipeline: at one step of one run of a line-up, the next-token distribution after each processor."""

import json

import streamlit as st

from ui import PRESETS, bounded, decode, fail, local_only, remember, sidebar, state
from core import limits
from core.decoding import lineup as lineup_syntax
from core.pipeline import check_replayable, pipeline_at
from core.errors import PlaygroundError
from core.playground import default_lineup
from core.views import markup, pipeline_view
from core.views.share import Param
from core.views.tokens import visible

PAGE = "pipeline"
# A newcomer first sees a run that goes through several stages: Compare's line-up and one run more.
SHOWCASE = "sample(repetition_penalty=1.3,temperature=0.8,top_k=40,top_p=0.9)"
DEFAULT_LINEUP = lineup_syntax.lineup_spec(default_lineup()).replace(";", "\n") + "\n" + SHOWCASE
SCHEMA = {"prompt": PRESETS["A long long time ago"],
          "lineup": Param(DEFAULT_LINEUP, max_chars=lineup_syntax.MAX_LINEUP_CHARS),
          "run": Param(len(default_lineup()), 0, limits.MAX_RUNS - 1),
          "step": Param(5, 0, limits.MAX_APP_NEW_TOKENS - 1)}

pg = sidebar(PAGE, SCHEMA, "The pipeline, stage by stage")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=90)
with st.expander("Line-up: one run per line, strategy(name=value,...)"):
    st.text_area("Runs", key=f"{PAGE}_lineup", height=200, help="The Compare page's line-up syntax; pick a run below.")
try:
    runs = lineup_syntax.parse_lineup(state(PAGE, "lineup"), max_new_tokens=state(PAGE, "max_new_tokens"),
                                      seed=state(PAGE, "seed"))
    lineup_syntax.validate_lineup(runs, pg.check)
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()
if not local_only(pg, "The distribution after each processor"):
    st.stop()
bounded(PAGE, "run", 0, len(runs) - 1)
st.selectbox("Run", range(len(runs)), key=f"{PAGE}_run", format_func=lambda i: f"{i}: {runs[i].name()}")
run = state(PAGE, "run")
try:
    check_replayable(runs[run])
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()
result = decode(pg, state(PAGE, "prompt"), runs)  # the same decode as Compare's: a link from there reuses it
if result is None:
    st.stop()
seq = result.runs[run].best
if not seq.steps:
    fail(f"Run {run} ({result.runs[run].name}) generated no token, so it has no step to show.")
    st.stop()
bounded(PAGE, "step", 0, len(seq.steps) - 1)
if len(seq.steps) > 1:
    st.slider("Step", 0, len(seq.steps) - 1, key=f"{PAGE}_step")
step = state(PAGE, "step")
key = ("pipeline", pg.fingerprint(), state(PAGE, "prompt"), lineup_syntax.lineup_spec(runs),
       tuple(s.seed for s in runs), tuple(s.max_new_tokens for s in runs), run, step)
try:
    view = remember(key, lambda: pipeline_at(pg, state(PAGE, "prompt"), runs, run, step, result=result))
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()

st.subheader(f"Run {run}: {view.run_name} · step {view.step} of {view.steps}")
st.html(pipeline_view.context_html(result.prompt_text + pg.text(seq.ids[:step]), view.token))
st.caption(f"The model saw the text above and the run chose the marked token, {visible(view.token)!r} (id "
           f"{view.token_id}). Shown: {view.sequence}. Each stage below is the distribution after one more of the "
           f"run's processors, in the order generate() applies them; they transform the model's {view.scores}, and "
           "each stage's probabilities are the softmax of its scores. The last stage is the distribution the run "
           "chose from.")
if view.scores == "log-probs":
    st.caption("Beam search adds each stage's log-probs to a beam's score as they are: a banned token's probability "
               "is not handed to the others there, so the last stage's probabilities (renormalised here, as the "
               "softmax of generate(output_scores=True)'s scores) can be higher than the beam's own step scores.")
st.html(markup.table_html(pipeline_view.stages_table(view)))
if view.not_applied:
    st.caption("Not applied in this run: " + ", ".join(view.not_applied) + ".")
left, right = st.columns(2)
left.plotly_chart(pipeline_view.probabilities_figure(view), key=f"{PAGE}_probabilities")
right.plotly_chart(pipeline_view.kept_figure(view), key=f"{PAGE}_kept")
st.download_button("JSON", json.dumps(view.to_dict(), ensure_ascii=False), "pipeline.json", "application/json",
                   on_click="ignore", help="the stages as `python -m core pipeline --json` prints them")
