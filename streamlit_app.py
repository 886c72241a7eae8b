"""Decoding Playground: entry page. Widgets in, core/ called, results laid out."""

import streamlit as st

from core import models
from core.errors import PlaygroundError
from core.playground import Playground, default_lineup


@st.cache_resource(show_spinner="Loading the model…")
def load_playground(name: str) -> Playground:
    # one Playground per model per process, shared by every session and never mutated
    return Playground.load(name)


@st.cache_data(show_spinner="Decoding the line-up…", max_entries=32)
def run_lineup(_pg: Playground, model_name: str, prompt: str, max_new_tokens: int, seed: int) -> dict:
    return _pg.compare(prompt, default_lineup(max_new_tokens, seed)).to_dict()


st.set_page_config(page_title="Decoding Playground", layout="wide")
st.title("Decoding Playground")
st.caption("One prompt, eight decoding strategies, every token's log-probability.")

names = models.available_models()
default = models.default_model()
with st.sidebar:
    model_name = st.selectbox("Model", names, index=names.index(default) if default in names else 0,
                              key="home_model")
    max_new_tokens = st.slider("Max new tokens", 1, 128, 32, key="home_max_new_tokens")
    seed = st.number_input("Seed", min_value=0, value=0, step=1, key="home_seed")

prompt = st.text_area("Prompt", "A long long time ago, ", key="home_prompt")

try:
    playground = load_playground(model_name)
    st.sidebar.write(f"Device: `{playground.device}`")
    result = run_lineup(playground, model_name, prompt, int(max_new_tokens), int(seed))
except PlaygroundError as exc:
    st.error(str(exc))
    st.stop()

for notice in result["notices"]:
    st.warning(notice)
columns = st.columns(4)
for i, run in enumerate(result["runs"]):
    with columns[i % 4]:
        st.subheader(run["name"])
        st.write(run["text"])
        st.caption(f"sequence log-prob {run['sequence_logprob']:.2f} · perplexity {run['perplexity']:.1f} · "
                   f"distinct-2 {run['distinct']['distinct_2']:.2f}")
