"""Watermark lab: mark a run, see every green token, detect any text, try to break it (widgets, calls, layout)."""

import pandas as pd
import streamlit as st

import ui
from ui import PRESETS, decode, fail, remember, setting, sidebar, state, warn
from core import limits, report, watermark
from core.decoding import lineup as lineup_syntax
from core.decoding.processors import PROCESSORS
from core.decoding.settings import MAX_SEED, DecodeSettings
from core.errors import PlaygroundError
from core.models import registry
from core.views import watermark_view
from core.views.share import Param

PAGE = "watermark"
KNOBS = [name for name in PROCESSORS["watermark"].knobs if name != "watermark"]  # the lab always marks
OTHERS = ("(none)", *registry.available_models())
SCHEMA = {
    "prompt": PRESETS["Romeo"], "run": Param("greedy", max_chars=400),
    **{name: Param.from_knob(name) for name in KNOBS},
    "threshold": Param(watermark.DEFAULT_THRESHOLD, watermark.MIN_THRESHOLD, watermark.MAX_THRESHOLD),
    "text": Param("", max_chars=20_000), "edit_seed": Param(0, 0, MAX_SEED),
    "other_model": Param("(none)", choices=OTHERS), "false_positives": Param(True), "quality": Param(False),
    "quality_lineup": Param("greedy\nsample(top_k=0)", max_chars=lineup_syntax.MAX_LINEUP_CHARS),
    "samples": Param(5, 1, limits.MAX_SAMPLES),
}
LABELS = {"watermark_bias": "Bias (added to green logits)", "greenlist_ratio": "Green share of the vocabulary",
          "hashing_key": "Hashing key", "seeding_scheme": "Seeding scheme", "context_width": "Context width"}

pg = sidebar(PAGE, SCHEMA, "Watermark lab")
if not ui.local_only(pg, "The watermark lab"):  # vLLM's API has no watermark
    st.stop()
st.caption("Kirchenbauer et al. (2023), \"A Watermark for Large Language Models\", as transformers ships it: at every "
           "step a pseudo-random green share of the vocabulary, seeded by a secret key and the token before, gets "
           "a bias added to its logits. The detector knows the key, counts the green tokens and asks how unlikely "
           "that many would be by chance (a z-score). Nothing here needs the model to detect: only the key.")
st.text_area("Prompt", key=f"{PAGE}_prompt", height=80)
st.text_input("The run to mark (line-up syntax)", key=f"{PAGE}_run",
              help="one run, e.g. greedy, beam(num_beams=5) or sample(top_k=0); the sidebar's seed seeds a sampling run")
cols = st.columns(len(KNOBS) + 1)
for col, name in zip(cols, KNOBS):
    setting(PAGE, name, LABELS[name], where=col)
cols[-1].number_input("z-score threshold", watermark.MIN_THRESHOLD, watermark.MAX_THRESHOLD, step=0.5,
                      key=f"{PAGE}_threshold", help="the detector calls a text marked above it (the paper's: 4)")

tokens, seed, threshold = state(PAGE, "max_new_tokens"), state(PAGE, "seed"), state(PAGE, "threshold")
key = DecodeSettings(watermark=True, **{name: state(PAGE, name) for name in KNOBS})
try:
    plain_run = lineup_syntax.parse_run(state(PAGE, "run"), max_new_tokens=tokens, seed=seed)
    marked_run = watermark.marked([plain_run], key)[0]
    pg.check(marked_run)
    if plain_run.watermark:
        raise PlaygroundError("The run to mark already sets watermark=true; set the watermark's knobs above instead.")
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()

result = decode(pg, state(PAGE, "prompt"), [marked_run, plain_run])
if result is None:
    st.stop()
for notice in result.notices:
    warn(notice)
marked_seq, plain_seq = result.runs[0].best, result.runs[1].best
spec = lineup_syntax.run_spec(marked_run)
try:  # a large vocabulary's green lists may cost more than a request may take: one sentence
    found = remember(("watermark-run", pg.fingerprint(), tuple(result.prompt_ids), spec, seed, tokens, threshold),
                     lambda: watermark.mark_run(pg, marked_run, result.prompt_ids, marked_seq.ids, threshold))
    unmarked = remember(("watermark-run", pg.fingerprint(), tuple(result.prompt_ids), spec, "plain", seed, tokens,
                         threshold), lambda: watermark.detect_for(pg, plain_seq.ids, key, threshold,
                                                                 context=result.prompt_ids))
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()

st.subheader(f"A marked run: {result.runs[0].name}")
cols = st.columns(5)
cols[0].metric("z-score", "n/a" if found.z_score is None else f"{found.z_score:.2f}")
cols[1].metric("p-value", "n/a" if found.p_value is None else f"{found.p_value:.2g}")
cols[2].metric("Green fraction", "n/a" if found.green_fraction is None else f"{found.green_fraction:.0%}",
               help=f"expected of unmarked text: {key.greenlist_ratio:.0%}")
cols[3].metric("Tokens scored", found.tokens_scored)
cols[4].metric("Unmarked run's z-score", "n/a" if unmarked.z_score is None else f"{unmarked.z_score:.2f}")
st.text(found.verdict)
st.html(watermark_view.tokens_html(found, prompt=result.prompt_text, marked_run=True))
st.plotly_chart(watermark_view.growth_figure(found), key=f"{PAGE}_growth")
with st.expander(f"The same run unmarked ({result.runs[1].name}): {unmarked.verdict}"):
    st.html(watermark_view.tokens_html(unmarked, prompt=result.prompt_text, marked_run=True))

st.subheader("Detect a text")
st.text_area("Paste any text (empty: the marked run's)", key=f"{PAGE}_text", height=100)
pasted = state(PAGE, "text")
if pasted.strip():
    try:
        seen = remember(("watermark-detect", pg.name, pasted, spec, threshold),
                        lambda: watermark.detect_text(pg, pasted, key, threshold))
    except PlaygroundError as exc:
        fail(str(exc))
    else:
        st.text(seen.verdict)
        st.html(watermark_view.tokens_html(seen))
        if seen.tokens_scored:
            st.plotly_chart(watermark_view.growth_figure(seen, "The pasted text's z-score as it grows"),
                            key=f"{PAGE}_pasted_growth")

st.subheader("Try to break it")
left, right = st.columns(2)
left.number_input("Seed of the random edits", 0, MAX_SEED, key=f"{PAGE}_edit_seed")
right.selectbox("Another model continues it", OTHERS, key=f"{PAGE}_other_model",
                help="keeps the first part of the marked text and lets this model write the rest (greedy)")


def continue_with(model, text, runs):
    out = decode(model, text, runs)  # queued and shared like every decode; None: it said why
    if out is None:
        st.stop()
    return out


try:
    edits = remember(("watermark-edits", pg.fingerprint(), tuple(marked_seq.ids), spec, state(PAGE, "edit_seed"),
                      threshold), lambda: watermark.edit_curve(pg, marked_seq.ids, key, seed=state(PAGE, "edit_seed"),
                                                               threshold=threshold))
    continued = None
    if state(PAGE, "other_model") != "(none)":
        continued = watermark.continuation_curve(pg, ui.load_playground(state(PAGE, "other_model")),
                                                 result.prompt_text, marked_seq.ids, key, threshold=threshold,
                                                 compare=continue_with)
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()
st.plotly_chart(watermark_view.attack_figure(edits, continued, threshold), key=f"{PAGE}_attack")
st.dataframe(pd.DataFrame([{"attack": name, "share edited": f"{p.share:.0%}", "z-score": p.z_score,
                            "p-value": p.p_value, "verdict": watermark_view._said(p.prediction)}
                           for name, points in (("random edits", edits), ("other model", continued or []))
                           for p in points]), hide_index=True, key=f"{PAGE}_attack_table")

st.subheader("False positives on human text")
st.checkbox("Score the 298 held-out human passages", key=f"{PAGE}_false_positives",
            help="each passage (prompt and continuation, never marked) cut to the marked run's length")
if state(PAGE, "false_positives"):
    try:
        passages = report.load_passages()
        fp = remember(("watermark-fpr", pg.fingerprint(), spec, len(marked_seq.ids)),
                      lambda: watermark.false_positives(pg, passages, key, tokens=max(1, len(marked_seq.ids))))
    except PlaygroundError as exc:
        fail(str(exc))
    else:
        fp = fp.at(threshold)
        rate = "n/a" if fp.rate is None else f"{fp.rate:.1%}"
        st.metric(f"False-positive rate at z > {threshold:g}", rate,
                  help=f"{fp.flagged} of {fp.judged} passages judged; {len(fp.z_scores) - fp.judged} too short")
        st.plotly_chart(watermark_view.false_positive_figure(fp), key=f"{PAGE}_fpr")

st.subheader("The cost in quality")
st.checkbox("Measure it with the report's figures (N samples of each run, marked and unmarked)", key=f"{PAGE}_quality")
if state(PAGE, "quality"):
    st.text_area("Runs", key=f"{PAGE}_quality_lineup", height=80)
    st.number_input("Samples per sampling run (N)", 1, limits.MAX_SAMPLES, key=f"{PAGE}_samples")
    try:
        runs = report.report_lineup(state(PAGE, "quality_lineup"), samples=state(PAGE, "samples"),
                                    max_new_tokens=tokens, seed=seed)
        both = runs + watermark.marked(runs, key)
        lineup_syntax.validate_lineup(both, pg.check)
        prompts = [report.Passage(state(PAGE, "prompt"), "")]
        report.check_request(prompts, both, 0)
    except PlaygroundError as exc:
        fail(str(exc))
        st.stop()
    measured = ui.decode_report(pg, prompts, both, [])
    if measured is not None:
        st.dataframe(pd.DataFrame(watermark_view.quality_rows(measured, len(runs))).style.format(precision=3),
                     hide_index=True, key=f"{PAGE}_quality_table")
        st.caption("Perplexity under the raw model (lower: the model finds the text more likely), Self-BLEU-4 "
                   "among a run's samples (higher: less diverse), distinct-2 (higher: fewer repeated bigrams).")
