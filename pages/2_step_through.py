"""Step through: seed 004's greedy_search table, live; pick any alternative to branch from there."""

import streamlit as st

from ui import PRESETS, decode, distribution_toggle, sidebar, state
from core import figures
from core.settings import DecodeSettings

PAGE = "step"
SCHEMA = {"prompt": PRESETS["A long long time ago"], "branches": "", "distribution": "raw"}

pg = sidebar(PAGE, SCHEMA, "Step through greedy decoding")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=80)
st.caption("Each row is one step: the text so far and the model's five most likely next tokens. "
           "Pick an alternative below to branch: the model continues greedily from it, and every branch stays.")
shown = distribution_toggle(PAGE)
greedy = DecodeSettings("greedy", max_new_tokens=state(PAGE, "max_new_tokens"))
main = decode(pg, state(PAGE, "prompt"), [greedy])
if main is None:
    st.stop()
for notice in main.notices:
    st.warning(notice)

# a branch is "step:token_id": the main line's first `step` tokens, then that token, then greedy again
branches = [b for b in state(PAGE, "branches").split(",") if b]
main_ids = main.runs[0].best.ids
lines = [("main line", main.prompt_text, main.runs[0].best)]
for spec in branches:
    step, token = (int(x) for x in spec.split(":"))
    path = main_ids[:step] + [token]
    branch = decode(pg, state(PAGE, "prompt"), [greedy.replace(max_new_tokens=max(1, greedy.max_new_tokens - len(path)))],
                    continuation=path)
    if branch is not None:
        lines.append((f"branch at step {step}: {pg.token_text(token)!r}", branch.prompt_text, branch.runs[0].best))

for title, prompt_text, seq in lines:
    st.subheader(title)
    st.html(figures.prompt_html(prompt_text) + figures.tokens_html(seq, shown))
st.dataframe(figures.step_table(main.prompt_text, main.runs[0].best, 5, shown), hide_index=True,
             key=f"{PAGE}_table")

seq = main.runs[0].best
cols = st.columns([1, 3])
step = cols[0].number_input("Branch at step", 0, max(0, len(seq.steps) - 1), 0, key=f"{PAGE}_branch_step")
options = {f"{c.token!r} ({c.prob:.1%} raw)": c.id for c in seq.steps[step].top[:5]}
choice = cols[1].radio("Alternative", list(options), horizontal=True, key=f"{PAGE}_branch_choice")
if st.button("Branch from here", key=f"{PAGE}_branch_button"):
    spec = f"{step}:{options[choice]}"
    if spec not in branches:
        st.session_state[f"{PAGE}_branches"] = ",".join([*branches, spec])
    st.rerun()
if branches and st.button("Clear branches"):
    st.session_state[f"{PAGE}_branches"] = ""
    st.rerun()
