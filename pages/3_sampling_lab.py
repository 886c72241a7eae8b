"""Sampling lab: temperature reshaping a softmax, where top-k and top-p cut, and the nucleus over a run."""

import numpy as np
import streamlit as st

from ui import PRESETS, bounded, decode, remember, sidebar, state
from core import figures, inspect
from core.settings import DecodeSettings

PAGE = "lab"
SCHEMA = {"prompt": PRESETS["A long long time ago"], "temperature": 1.0, "top_k": 50, "top_p": 0.9, "step": 0}

pg = sidebar(PAGE, SCHEMA, "Sampling lab")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=80)
for name, low, high in (("temperature", 0.05, 5.0), ("top_k", 0, pg.facts.vocab_size), ("top_p", 0.05, 1.0)):
    bounded(PAGE, name, low, high)
cols = st.columns(3)
cols[0].slider("Temperature", 0.05, 5.0, step=0.05, key=f"{PAGE}_temperature")
cols[1].number_input("top-k (0 = off)", 0, pg.facts.vocab_size, step=1, key=f"{PAGE}_top_k")
cols[2].slider("top-p", 0.05, 1.0, step=0.05, key=f"{PAGE}_top_p")

st.subheader("Temperature reshapes the softmax")
left, right = st.columns(2)
left.plotly_chart(figures.temperature_figure([1, 5, 7, 10], [0.5, 1.0, 2.0], labels=["1", "5", "7", "10"],
                                             yours=state(PAGE, "temperature")), key=f"{PAGE}_toy")
left.caption("Seed 004's example: the logits 1, 5, 7, 10 at several temperatures; yours is dashed.")

settings = DecodeSettings("sample", temperature=state(PAGE, "temperature"), top_k=state(PAGE, "top_k"),
                          top_p=state(PAGE, "top_p"), max_new_tokens=state(PAGE, "max_new_tokens"),
                          seed=state(PAGE, "seed"))
result = decode(pg, state(PAGE, "prompt"), [settings])
if result is None:
    st.stop()
seq = result.runs[0].best
first = remember(("dist", pg.name, tuple(result.prompt_ids)), lambda: inspect.distribution_at(pg, result.prompt_ids))
top = first["ids"][:10].tolist()
right.plotly_chart(figures.temperature_figure(np.log(first["raw"][:10].numpy()), [0.5, 1.0, 2.0],
                   labels=[figures.visible(pg.token_text(i)) for i in top], yours=state(PAGE, "temperature")),
                   key=f"{PAGE}_real")
right.caption("The model's ten most likely first tokens (raw), re-softmaxed among themselves at each temperature.")

st.subheader(f"The run: {settings.name()}, seed {settings.seed}")
st.html(figures.tokens_html(seq, "processed"))
if len(seq.steps) > 1:
    st.slider("Step", 0, len(seq.steps) - 1, key=f"{PAGE}_step")
step = min(state(PAGE, "step"), len(seq.steps) - 1)
prefix = result.prompt_ids + seq.ids[:step]
at = remember(("dist", pg.name, tuple(prefix), settings), lambda: inspect.distribution_at(pg, prefix, settings))
left, right = st.columns(2)
left.plotly_chart(figures.cumulative_figure(at["raw"].numpy(), settings.top_k, settings.top_p,
                  f"Step {step}: sorted cumulative probability (raw)"), key=f"{PAGE}_cumulative")
s = seq.steps[step]
kept = ", then ".join(f"{name} kept {count:,}" for name, count in s.kept.items()) or "nothing was cut"
left.caption(f"The lines show each cut alone on the raw distribution; the run applies them in turn ({kept}). "
             f"At step {step} it drew {s.token!r}: raw p={np.exp(s.logprob):.2%} (rank {s.rank}), processed "
             f"p={np.exp(s.processed_logprob):.2%}; raw entropy {s.entropy:.2f} nats.")
right.plotly_chart(figures.nucleus_figure(seq), key=f"{PAGE}_nucleus")
