"""Score a text: how surprising each token of any text is to the chosen model."""

import math

import streamlit as st

from ui import PRESETS, remember, sidebar, state
from core import figures
from core.errors import PlaygroundError

PAGE = "score"
SCHEMA = {"text": PRESETS["Hamlet"] + ", that is the question."}

pg = sidebar(PAGE, SCHEMA, "Score a text")
st.text_area("Text", key=f"{PAGE}_text", height=140)
try:
    result = remember(("score", pg.name, state(PAGE, "text")), lambda: pg.score(state(PAGE, "text")))
except PlaygroundError as exc:
    st.error(str(exc))
    st.stop()
cols = st.columns(3)
cols[0].metric("Perplexity", f"{result.perplexity:.1f}")
cols[1].metric("Total log-prob (raw)", f"{result.total_logprob:.2f}")
cols[2].metric("Tokens scored", len(result.tokens))
if pg.tokenizer.bos_token_id is not None:
    st.caption("The first token is scored after <|endoftext|>, as if the text began a document.")
st.html(figures.scored_html(result.tokens))
st.plotly_chart(figures.surprisal_figure([t.token for t in result.tokens], [t.surprisal_bits for t in result.tokens]),
                key=f"{PAGE}_surprisal")
st.dataframe([{"token": figures.visible(t.token), "id": t.id, "log-prob (raw)": round(t.logprob, 3), "p (raw)": f"{math.exp(t.logprob):.2%}",
               "rank": t.rank, "surprisal (bits)": round(t.surprisal_bits, 2),
               "model expected": figures.visible(pg.token_text(t.top_id)), "its p": f"{t.top_prob:.2%}"} for t in result.tokens],
             hide_index=True, key=f"{PAGE}_table")
