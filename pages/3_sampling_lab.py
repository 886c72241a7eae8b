"""Sampling lab: temperature reshaping a softmax, where top-k and top-p cut, and the nucleus over a run."""

import numpy as np
import streamlit as st

from ui import PRESETS, bounded, cuts_known, decode, link_to, local_only, remember, setting, sidebar, state
from core.views import charts
from core.views import markup
from core.views import tokens
from core.views import internals
from core.views import pipeline_view
from core.decoding import lineup as lineup_syntax
from core.decoding.settings import DecodeSettings
from core.views.share import Param

PAGE = "lab"
SCHEMA = {"prompt": PRESETS["A long long time ago"],
          "temperature": Param.from_knob("temperature", comfort=(0.05, 5.0), step=0.05),
          "top_k": Param.from_knob("top_k"),
          "top_p": Param.from_knob("top_p", default=0.9, comfort=(0.05, 1.0), step=0.05),  # a cut to see at once
          "step": Param(0, 0, 10**4)}

pg = sidebar(PAGE, SCHEMA, "Sampling lab")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=80)
cols = st.columns(3)
setting(PAGE, "temperature", "Temperature", facts=pg.facts, where=cols[0])
setting(PAGE, "top_k", "top-k (0 = off)", facts=pg.facts, where=cols[1])
setting(PAGE, "top_p", "top-p", facts=pg.facts, where=cols[2])

st.subheader("Temperature reshapes the softmax")
left, right = st.columns(2)
left.plotly_chart(charts.temperature_figure([1, 5, 7, 10], [0.5, 1.0, 2.0], labels=["1", "5", "7", "10"],
                                            yours=state(PAGE, "temperature")), key=f"{PAGE}_toy")
left.caption("Four made-up logits, 1, 5, 7 and 10 (the toy example of the course's GPT-2 decoding lesson), turned "
             "into probabilities at several temperatures; yours is dashed. Low temperatures sharpen the softmax, "
             "high ones flatten it.")

settings = DecodeSettings("sample", temperature=state(PAGE, "temperature"), top_k=state(PAGE, "top_k"),
                          top_p=state(PAGE, "top_p"), max_new_tokens=state(PAGE, "max_new_tokens"),
                          seed=state(PAGE, "seed"))
result = decode(pg, state(PAGE, "prompt"), [settings])
if result is None:
    st.stop()
seq = result.runs[0].best
with right:
    local = local_only(pg, "The model's real logits at several temperatures")
if local:
    first = remember(("dist", pg.name, tuple(result.prompt_ids)), lambda: internals.distribution_at(pg, result.prompt_ids))
    top = first["ids"][:10].tolist()
    right.plotly_chart(charts.temperature_figure(first["logits"].numpy(), [0.5, 1.0, 2.0], top=10,
                       labels=[tokens.visible(tokens.token_label(pg.tokenizer, i)) for i in top],
                       yours=state(PAGE, "temperature")), key=f"{PAGE}_real")
    right.caption(f"The model's ten most likely first tokens for this prompt. At each temperature the softmax is taken "
                  f"over the whole vocabulary ({pg.facts.vocab_size:,} tokens) and these ten are plotted, so their "
                  "probabilities need not add up to 1.")

st.subheader(f"The run: {settings.name()}, seed {settings.seed}")
st.html(markup.tokens_html(seq, "processed", legend=True))
if not seq.steps:
    st.stop()
bounded(PAGE, "step", 0, len(seq.steps) - 1)
if len(seq.steps) > 1:
    st.slider("Step", 0, len(seq.steps) - 1, key=f"{PAGE}_step")
step = min(state(PAGE, "step"), len(seq.steps) - 1)
prefix = result.prompt_ids + seq.ids[:step]
left, right = st.columns(2)
with left:
    local = local_only(pg, "The whole sorted distribution at a chosen step, with where each cut falls")
if local:
    at = remember(("dist", pg.name, tuple(prefix), settings), lambda: internals.distribution_at(pg, prefix, settings))
    left.plotly_chart(charts.cumulative_figure(at, f"Step {step}: the distributions the cuts saw"),
                      key=f"{PAGE}_cumulative")
s = seq.steps[step]
link_to("pipeline", f"Step {step}'s whole pipeline, stage by stage", pipeline_view.link_params(
    prompt=state(PAGE, "prompt"), lineup=lineup_syntax.run_spec(settings), run=0, step=step, model=state(PAGE, "model"),
    seed=state(PAGE, "seed"), max_new_tokens=state(PAGE, "max_new_tokens")), icon=":material/filter_alt:", where=right)
if cuts_known(pg):
    kept = ", then ".join(f"{name} kept {count:,}" for name, count in s.kept.items()) or "nothing was cut"
else:
    kept = ("what each cut kept is not known (the vLLM server returned only the top alternatives; turn on "
            "'Whole vocabulary at every step' under Backend)")
left.caption(f"As the run did it: temperature first, then top-k, then top-p on what top-k left (renormalised), "
             f"as transformers' warpers do. Each curve is the distribution that cut saw, sorted; at this step "
             f"{kept}. The dotted grey curve is the raw distribution, for comparison. At step {step} the run "
             f"drew {tokens.visible(s.token)!r}: raw p={np.exp(s.logprob):.2%} (rank {markup.or_na(s.rank)}), "
             f"processed p={markup.pct_of_logprob(s.processed_logprob)}; raw entropy "
             f"{markup.or_na(s.entropy, '{:.2f}')} nats.")
if cuts_known(pg):
    right.plotly_chart(charts.nucleus_figure(seq), key=f"{PAGE}_nucleus")
else:
    right.info("The nucleus size over the run: not known, because the vLLM server returned only the top "
               "alternatives at each step. Turn on 'Whole vocabulary at every step' under the sidebar's Backend to "
               "count what top-k and top-p kept.", icon=":material/cloud_off:")
