"""Speculative decoding: a draft proposes, the target checks; every check, the acceptance by position in
the draft, tokens per target forward pass, and the time against the same run without a draft."""

import streamlit as st

from ui import PRESETS, decode, fail, setting, sidebar, state, warn
from core.models import registry
from core.views import speculative
from core.views.share import Param

PAGE = "speculative"
DRAFTS = (*registry.available_models(), speculative.PROMPT_LOOKUP)
SCHEMA = {"prompt": PRESETS["Hamlet"],
          "decoding": Param("greedy", choices=("greedy", "sample"), widget="choice"),
          "draft": Param("shakespeare-draft", choices=DRAFTS, widget="choice"),
          "num_assistant_tokens": Param.from_knob("num_assistant_tokens", default=5, comfort=(1, 20)),
          "num_assistant_tokens_schedule": Param.from_knob("num_assistant_tokens_schedule"),
          "assistant_confidence_threshold": Param.from_knob("assistant_confidence_threshold", comfort=(0.0, 0.95),
                                                            step=0.05),
          "prompt_lookup_num_tokens": Param.from_knob("prompt_lookup_num_tokens", default=10, comfort=(1, 20)),
          "temperature": Param.from_knob("temperature", comfort=(0.1, 2.0), step=0.05)}

pg = sidebar(PAGE, SCHEMA, "Speculative decoding")
st.caption("A small draft model proposes a few tokens; the target model checks them all in one forward pass, keeps "
           "the longest prefix it agrees with and adds one token of its own. Greedy gives exactly plain greedy's "
           "tokens; sampling is speculative sampling (Leviathan et al. 2023), whose tokens follow the target's "
           "distribution. The page decodes the run with its draft and without it, in the same request.")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=80)
cols = st.columns(4)
cols[0].selectbox("Decoding", SCHEMA["decoding"].choices, key=f"{PAGE}_decoding")
cols[1].selectbox("Draft", DRAFTS, key=f"{PAGE}_draft",
                  help="the draft model (it must share the target's tokenizer), or prompt lookup: drafts copied "
                       "from where the text's last tokens occurred before")
lookup = state(PAGE, "draft") == speculative.PROMPT_LOOKUP
if lookup:
    setting(PAGE, "prompt_lookup_num_tokens", "prompt_lookup_num_tokens", where=cols[2])
else:
    setting(PAGE, "num_assistant_tokens", "num_assistant_tokens", where=cols[2])
    setting(PAGE, "assistant_confidence_threshold", "assistant_confidence_threshold", where=cols[3])
    setting(PAGE, "num_assistant_tokens_schedule", "num_assistant_tokens_schedule")
if state(PAGE, "decoding") == "sample":
    setting(PAGE, "temperature", "temperature")

runs = speculative.runs(strategy=state(PAGE, "decoding"), draft=state(PAGE, "draft"),
                        num_assistant_tokens=state(PAGE, "num_assistant_tokens"),
                        schedule=state(PAGE, "num_assistant_tokens_schedule"),
                        threshold=state(PAGE, "assistant_confidence_threshold"),
                        lookup_tokens=state(PAGE, "prompt_lookup_num_tokens"), temperature=state(PAGE, "temperature"),
                        max_new_tokens=state(PAGE, "max_new_tokens"), seed=state(PAGE, "seed"))
if pg.remote:
    fail("A vLLM server does its speculative decoding inside, configured when it starts, and its API does not "
         "show the drafts; choose the local backend for this page.")
    st.stop()
result = decode(pg, state(PAGE, "prompt"), runs)
if result is None:
    st.stop()
for notice in result.notices:
    warn(notice)
assisted, plain = result.runs
figures = speculative.summary(assisted, plain)

st.subheader(assisted.name)
cols = st.columns(5)
cols[0].metric("Tokens per target forward", f"{figures.tokens_per_forward:.2f}",
               help="generated tokens / forward passes of the target (plain decoding: 1.00)")
cols[1].metric("Target forwards", figures.target_forwards, delta=figures.target_forwards - figures.plain_forwards,
               delta_color="inverse", help="against plain decoding's, for the same tokens")
cols[2].metric("Acceptance rate", "n/a" if figures.acceptance_rate is None else f"{figures.acceptance_rate:.0%}",
               help=f"{figures.accepted} of {figures.drafted} drafted tokens accepted")
cols[3].metric("Draft forwards", figures.draft_forwards)
cols[4].metric("Speed-up over plain", f"{figures.speedup:.2f}x",
               help=f"plain {figures.plain_seconds * 1000:.0f} ms / assisted {figures.seconds * 1000:.0f} ms, "
                    "both decoded in this request, one after the other")
st.caption(f"Plain decoding ({plain.name}): {figures.plain_forwards} target forwards, "
           f"{figures.plain_seconds * 1000:.0f} ms; with the draft: {figures.target_forwards} target forwards and "
           f"{figures.draft_forwards} draft forwards, {figures.seconds * 1000:.0f} ms. "
           + ("The tokens are plain decoding's, token for token." if figures.same_tokens else
              "The tokens differ from plain sampling's: the same seed draws in another order (speculative sampling "
              "also draws the draft's tokens and one uniform number per drafted token); both follow the target's "
              "distribution." if state(PAGE, "decoding") == "sample" else
              "The tokens differ from plain greedy's (a near tie that the batched check breaks the other way)."))
st.markdown("**The continuation**: underlined green where the draft's token was accepted, blue where the target "
            "put its own.")
st.html(speculative.text_html(assisted))
st.markdown("**Every check by the target**")
st.html(speculative.checks_html(assisted))
if figures.drafted:
    st.plotly_chart(speculative.acceptance_figure(assisted), key=f"{PAGE}_acceptance")
