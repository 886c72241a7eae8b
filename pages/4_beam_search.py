"""Beam search: the tree of beams, their scores, and what length penalty and no-repeat-n-gram change."""

import dataclasses

import streamlit as st

from ui import PRESETS, decode, local_only, setting, sidebar, state, warn
from core import limits
from core.views import beam_page
from core.views import beam_tree
from core.views import markup
from core.views import html_export
from core.views import recipe
from core.views import share
from core.views.share import Param

PAGE = "beam"
# the page's own defaults show beam search at work: 5 beams, and what no-repeat-2 changes
SCHEMA = {"prompt": PRESETS["A long long time ago"],
          "num_beams": Param.from_knob("num_beams", default=5, high=limits.MAX_BEAM_PAGE_BEAMS, widget="slider",
                                       limit="the most beams this page draws"),
          "length_penalty": Param.from_knob("length_penalty", comfort=(-2.0, 3.0), step=0.1),
          "no_repeat_ngram_size": Param.from_knob("no_repeat_ngram_size", default=2, comfort=(0, 5)),
          "early_stopping": Param.from_knob("early_stopping"),
          "num_beam_groups": Param.from_knob("num_beam_groups"),
          "diversity_penalty": Param.from_knob("diversity_penalty", default=1.0, comfort=(0.1, 5.0), step=0.1)}

pg = sidebar(PAGE, SCHEMA, "Beam search")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=80)
cols = st.columns(4)
setting(PAGE, "num_beams", "num_beams", facts=pg.facts, where=cols[0])
setting(PAGE, "length_penalty", "length_penalty", facts=pg.facts, where=cols[1])
setting(PAGE, "no_repeat_ngram_size", "no_repeat_ngram_size", facts=pg.facts, where=cols[2])
setting(PAGE, "early_stopping", "early_stopping", where=cols[3])

beams = state(PAGE, "num_beams")
groups, why = beam_page.fit_groups(beams, state(PAGE, "num_beam_groups"))
if why:
    warn(why)
    st.session_state[f"{PAGE}_num_beam_groups"] = groups
cols = st.columns(2)
cols[0].select_slider("num_beam_groups (diverse beam search when above 1)", beam_page.group_choices(beams),
                      key=f"{PAGE}_num_beam_groups", help=share.plain(SCHEMA["num_beam_groups"].help))
setting(PAGE, "diversity_penalty", "diversity_penalty", facts=pg.facts, where=cols[1], disabled=groups == 1)
runs = beam_page.compared_runs(num_beams=beams, length_penalty=state(PAGE, "length_penalty"),
                               early_stopping=state(PAGE, "early_stopping"),
                               max_new_tokens=state(PAGE, "max_new_tokens"),
                               no_repeat_ngram_size=state(PAGE, "no_repeat_ngram_size"), num_beam_groups=groups,
                               diversity_penalty=state(PAGE, "diversity_penalty"))
result = decode(pg, state(PAGE, "prompt"), runs)
if result is None:
    st.stop()
for notice in result.notices:
    warn(notice)
if beams == 1:
    st.info("With one beam, beam search is greedy decoding (as in generate()); raise num_beams to see a tree.")

st.html(markup.probability_legend_html("raw"))
columns = st.columns(len(result.runs))
for column, run in zip(columns, result.runs):
    with column:
        f = run.best.figures()
        st.subheader(run.name)
        st.html(markup.tokens_html(run.best, "raw"))
        st.caption(f"sequence log-prob **{f.sequence_logprob:.2f}** (raw) · repeated 2-grams "
                   f"**{f.repeated_2grams}** · distinct-2 **{f.distinct_2:.2f}**")
for run in result.runs:
    st.markdown(f"**Hypotheses of {run.name}**, best first. Beam score: the sum of processed log-probs divided by "
                "length ** length_penalty; log-prob (raw): the same tokens under the model's own softmax. "
                "Hover a token for its alternatives.")
    st.html(markup.hypotheses_html(run, "raw"))
if len(result.runs) == 2:
    a, b = (r.best.figures() for r in result.runs)
    st.markdown(f"No-repeat-{state(PAGE, 'no_repeat_ngram_size')} changes the raw sequence log-prob by "
                f"**{b.sequence_logprob - a.sequence_logprob:+.2f}** and the repeated 2-grams from "
                f"**{a.repeated_2grams}** to **{b.repeated_2grams}** "
                "(as in the course's GPT-2 decoding lesson: the log-prob drops, the repetition goes).")
tree_run = result.runs[-1]
if tree_run.beam_tree is None and beams > 1:
    local_only(pg, "The beam tree (every candidate kept or pruned at every step)")
if tree_run.beam_tree and groups > 1:
    st.caption(f"Diverse beam search keeps {groups} groups of {beams // groups} beams; each group is a beam search "
               "of its own, penalised for the tokens earlier groups chose at the same step. One tree per group:")
    for g, tab in enumerate(st.tabs([f"group {g + 1}" for g in range(groups)])):
        with tab:
            part = dataclasses.replace(tree_run, beam_tree=[n for n in tree_run.beam_tree if n.group == g])
            st.plotly_chart(beam_tree.beam_tree_figure(part, max_steps=min(20, state(PAGE, "max_new_tokens"))),
                            key=f"{PAGE}_tree_{g}")
elif tree_run.beam_tree:
    st.plotly_chart(beam_tree.beam_tree_figure(tree_run, max_steps=min(20, state(PAGE, "max_new_tokens"))),
                    key=f"{PAGE}_tree")
if tree_run.beam_tree:
    st.caption(f"The tree of {share.plain(tree_run.name)}, first 20 steps: every step's {2 * beams} candidates, each joined to "
               "the beam it extends. Blue beams went on, green stars finished as hypotheses, faded grey ones were "
               "pruned; the red path is the hypothesis beam search returned (↵ is a new line, ␣ a space). Hover "
               "a node for its score: the sum of its processed log-probs, which are not renormalised after "
               "no-repeat-n-gram bans; a finished score is divided by length ** length_penalty.")


# the server calls page_html outside the script run, where st.session_state is not there: read the prompt now
prompt = state(PAGE, "prompt")


def page_html() -> str:  # built when the button is clicked, not on every rerun
    rec = recipe.recipe(result, runs, prompt)
    return html_export.export_html(result, rec, recipe.generate_snippet(rec), page="beam")


st.download_button("Download this page as one HTML file", page_html, "beam_search.html", "text/html",
                   key=f"{PAGE}_html")
