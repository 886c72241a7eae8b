"""Models & tokens: the model's anatomy, the tokenizer, and attention over a prompt."""

import streamlit as st

from ui import PRESETS, remember, sidebar, state
from core import figures, inspect

PAGE = "anatomy"
SCHEMA = {"prompt": PRESETS["A long long time ago"], "tokenize": " hello", "layer": 1, "head": 1}
EXAMPLES = [" ", "  ", "Hello", "hello", " hello", "  hello", " chartreuse", "<|endoftext|>", "A long long time ago, "]

pg = sidebar(PAGE, SCHEMA, "Models & tokens")
a = inspect.anatomy(pg)
st.subheader("Anatomy")
cols = st.columns(5)
cols[0].metric("Architecture", a.architecture.replace("ForCausalLM", "").replace("LMHeadModel", ""))
cols[1].metric("Layers", a.layers)
cols[2].metric("Heads × head size", f"{a.heads} × {a.head_size}" if a.heads else "n/a (RNN)")
cols[3].metric("Parameters", f"{a.parameters / 1e6:.2f}M")
cols[4].metric("Context · vocabulary", f"{a.context} · {a.vocab:,}")
st.caption(f"Hidden size {a.hidden}; weights in {a.dtype} on {a.device}.")

st.subheader("Tokenizer explorer")
st.text_input("Text to tokenize", key=f"{PAGE}_tokenize")
st.caption("Seed 004's examples: " + " · ".join(repr(e) for e in EXAMPLES))
ids = pg.tokenizer.encode(state(PAGE, "tokenize"))
st.dataframe([{"id": i, "token": figures.visible(pg.token_text(i)), "piece": pg.tokenizer.convert_ids_to_tokens(i)}
              for i in ids],
             hide_index=True, key=f"{PAGE}_tokens")
st.caption(f"{len(ids)} tokens (␣ marks a space, ↵ a new line). Case and a leading space change the tokens: "
           "compare 'Hello', 'hello' and ' hello'.")

st.subheader("Attention over the prompt")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=70)
tokens, maps = remember(("attention", pg.name, state(PAGE, "prompt")),
                        lambda: inspect.attention_maps(pg, state(PAGE, "prompt")))
if maps is None:
    st.info(f"{a.architecture} has no attention to show (an RNN carries its context in its hidden state).")
elif not tokens:
    st.error("The prompt is empty; type some text to see its attention.")
else:
    cols = st.columns(2)
    layer = cols[0].slider("Layer", 1, maps.shape[0], key=f"{PAGE}_layer")
    head = cols[1].slider("Head", 1, maps.shape[1], key=f"{PAGE}_head")
    st.plotly_chart(figures.attention_figure(tokens, maps[layer - 1, head - 1], layer - 1, head - 1),
                    key=f"{PAGE}_attention")
