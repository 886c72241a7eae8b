"""Step through: the lesson's greedy_search table, live; pick any alternative to branch from there."""

import streamlit as st

from ui import PRESETS, decode, distribution_toggle, sidebar, state, warn
from core.views import markup
from core.views import tables
from core.views import html_export
from core import limits
from core.views import recipe
from core.views import share
from core.decoding.settings import DecodeSettings
from core.views.share import Param

PAGE = "step"
SCHEMA = {"prompt": PRESETS["A long long time ago"], "branches": Param("", max_chars=400),
          "distribution": Param("raw", choices=("raw", "processed"))}

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
    warn(notice)

# a branch is "step:token_id": the main line's first `step` tokens, then that token, then greedy again
main_ids = main.runs[0].best.ids
branches, problems = share.parse_branches(state(PAGE, "branches"), steps=len(main_ids), vocab_size=pg.facts.vocab_size)
for problem in problems:
    warn(problem)
lines = [("main line", main.prompt_text, main.runs[0].best)]
for step, token in branches:
    path = main_ids[:step] + [token]
    branch = decode(pg, state(PAGE, "prompt"), [greedy.replace(max_new_tokens=max(1, greedy.max_new_tokens - len(path)))],
                    continuation=path)
    if branch is not None:
        lines.append((f"branch at step {step}: {pg.token_text(token)!r}", branch.prompt_text, branch.runs[0].best))

for title, prompt_text, seq in lines:
    st.subheader(share.plain(title))
    st.html(markup.prompt_html(prompt_text) + markup.tokens_html(seq, shown))
st.dataframe(tables.step_table(main.prompt_text, main.runs[0].best, 5, shown), hide_index=True,
             key=f"{PAGE}_table")

rec = recipe.recipe(main, [greedy], state(PAGE, "prompt"))
st.download_button("Download as one HTML page", lambda: html_export.export_html(
    main, rec, recipe.generate_snippet(rec), page="step", distribution=shown, branches=lines[1:]),
    "step_through.html", "text/html", help="the table and every branch, in one file that opens offline")

seq = main.runs[0].best
if not seq.steps:
    st.stop()
last = len(seq.steps) - 1
if st.session_state.get(f"{PAGE}_branch_step", 0) > last:  # the run got shorter since it was chosen
    st.session_state[f"{PAGE}_branch_step"] = last
cols = st.columns([1, 3])
step = cols[0].number_input("Branch at step", 0, last, 0, key=f"{PAGE}_branch_step")
options = {f"{c.token!r} ({c.prob:.1%} raw)": c.id for c in seq.steps[step].top[:5]}
choice = cols[1].radio("Alternative", list(options), horizontal=True, key=f"{PAGE}_branch_choice")
full = len(branches) >= limits.MAX_BRANCHES
if full:
    st.caption(f"{limits.MAX_BRANCHES} branches is the most one page keeps; clear them to branch again.")
if st.button("Branch from here", key=f"{PAGE}_branch_button", disabled=full):
    if (step, options[choice]) not in branches:
        st.session_state[f"{PAGE}_branches"] = share.branches_spec([*branches, (step, options[choice])])
    st.rerun()
if branches and st.button("Clear branches"):
    st.session_state[f"{PAGE}_branches"] = ""
    st.rerun()
