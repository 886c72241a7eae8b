"""Models & tokens: the model's anatomy, the tokenizer, and attention over a prompt."""

import streamlit as st

from ui import PRESETS, bounded, local_only, remember, sidebar, state
from core.views import charts
from core.views import tokens
from core.views import internals
from core.views.share import Param

PAGE = "anatomy"
SCHEMA = {"prompt": PRESETS["A long long time ago"], "tokenize": Param(" hello", max_chars=2000),
          "layer": Param(1, 1, 1000), "head": Param(1, 1, 1000)}
EXAMPLES = [" ", "  ", "Hello", "hello", " hello", "  hello", " chartreuse", "<|endoftext|>", "A long long time ago, "]

pg = sidebar(PAGE, SCHEMA, "Models & tokens")
st.subheader("Anatomy")
if local_only(pg, "The model's anatomy"):
    a = internals.anatomy(pg)
    cols = st.columns(5)
    cols[0].metric("Architecture", a.architecture.replace("ForCausalLM", "").replace("LMHeadModel", ""))
    cols[1].metric("Layers", a.layers)
    cols[2].metric("Heads × head size", f"{a.heads} × {a.head_size}" if a.heads else "n/a (RNN)")
    cols[3].metric("Parameters", f"{a.parameters / 1e6:.2f}M")
    cols[4].metric("Context · vocabulary", f"{a.context} · {a.vocab:,}")
    st.caption(f"Hidden size {a.hidden}; weights in {a.dtype} on {a.device}.")

st.subheader("Tokenizer explorer")
st.text_input("Text to tokenize", key=f"{PAGE}_tokenize")
st.caption("Examples from the course's GPT-2 decoding lesson: " + " · ".join(repr(e) for e in EXAMPLES))
ids = pg.tokenizer.encode(state(PAGE, "tokenize"))
st.dataframe([{"id": i, "token": tokens.visible(tokens.token_label(pg.tokenizer, i)),
               "piece": pg.tokenizer.convert_ids_to_tokens(i)} for i in ids],
             hide_index=True, key=f"{PAGE}_tokens")
st.caption(f"{len(ids)} tokens (␣ marks a space, ↵ a new line). Case and a leading space change the tokens: "
           "compare 'Hello', 'hello' and ' hello'. A token that holds only part of a character's UTF-8 bytes "
           "(Chinese text, emoji) is shown as its bytes, e.g. <0xE4><0xBD>.")

st.subheader("Attention over the prompt")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=70)
if not local_only(pg, "Attention over the prompt"):
    st.stop()
tokens, maps, total = remember(("attention", pg.name, state(PAGE, "prompt")),
                               lambda: internals.attention_maps(pg, state(PAGE, "prompt")))
if maps is None:
    st.info(f"{a.architecture} has no attention to show (an RNN carries its context in its hidden state).")
elif not tokens:
    st.error("The prompt is empty; type some text to see its attention.")
else:
    bounded(PAGE, "layer", 1, maps.shape[0])
    bounded(PAGE, "head", 1, maps.shape[1])
    cols = st.columns(2)
    layer = cols[0].slider("Layer", 1, maps.shape[0], key=f"{PAGE}_layer")
    head = cols[1].slider("Head", 1, maps.shape[1], key=f"{PAGE}_head")
    if total > len(tokens):
        st.warning(f"The prompt has {total:,} tokens; the heat-map shows the first {len(tokens):,} of them.")
    else:
        st.caption(f"All {total:,} tokens of the prompt.")
    st.plotly_chart(charts.attention_figure(tokens, maps[layer - 1, head - 1], layer - 1, head - 1),
                    key=f"{PAGE}_attention")
