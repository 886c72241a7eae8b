"""Score a text: how surprising each token of any text is to the chosen model."""

import math

import streamlit as st

from ui import PRESETS, fail, remember, sidebar, state
from core.views import charts
from core.views import markup
from core.views import tokens
from core.errors import PlaygroundError

PAGE = "score"
SCHEMA = {"text": PRESETS["Hamlet"] + ", that is the question."}
RULE = ("Each token is scored given all the tokens before it, and the first token, which has nothing before "
        "it, is shown but not scored. Nothing is put in front of the text (no <|endoftext|>): the rule the "
        "decoding pages follow, so a prompt and its continuation get the same log-probs here as on Compare.")

pg = sidebar(PAGE, SCHEMA, "Score a text")
st.text_area("Text", key=f"{PAGE}_text", height=140)
try:
    result = remember(("score", pg.fingerprint(), state(PAGE, "text")), lambda: pg.score(state(PAGE, "text")))
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()
cols = st.columns(3)
cols[0].metric("Perplexity", f"{result.perplexity:.1f}")
cols[1].metric("Total log-prob (raw)", f"{result.total_logprob:.2f}")
cols[2].metric("Tokens scored", len(result.tokens))
st.caption(RULE)
st.html(markup.scored_html(result.tokens, pg.token_text, legend=True, first_token=result.first_token))
st.plotly_chart(charts.surprisal_figure([t.token for t in result.tokens], [t.surprisal_bits for t in result.tokens]),
                key=f"{PAGE}_surprisal")
st.dataframe([{"token": tokens.visible(t.token), "id": t.id, "log-prob (raw)": round(t.logprob, 3), "p (raw)": f"{math.exp(t.logprob):.2%}",
               "rank": t.rank, "surprisal (bits)": round(t.surprisal_bits, 2),
               "model expected": tokens.visible(pg.token_text(t.top_id)), "its p": f"{t.top_prob:.2%}"} for t in result.tokens],
             hide_index=True, key=f"{PAGE}_table")
