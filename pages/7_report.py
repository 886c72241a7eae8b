"""Report: N samples per strategy with Holtzman et al.'s figures, beside human text (widgets, one call, layout)."""

import pandas as pd
import streamlit as st

from ui import decode_report, decode_sweep, fail, sidebar, state, warn
from core import limits, report
from core.views import report_figures
from core.decoding import lineup as lineup_syntax
from core.errors import PlaygroundError
from core.views.share import Param

PAGE = "report"
try:
    FIRST = report.load_passages()[0]
except PlaygroundError:
    FIRST = report.Passage("Romeo.\n", "")
SCHEMA = {"prompt": FIRST.prompt, "human": FIRST.continuation,
          "samples": Param(10, 1, limits.MAX_SAMPLES),
          "lineup": Param(report.DEFAULT_LINEUP.replace(";", "\n"), max_chars=lineup_syntax.MAX_LINEUP_CHARS),
          "metric": Param("perplexity", choices=report.METRICS),
          "mode": Param("report", choices=("report", "sweep")),
          "sweep": Param("top_p=0.5:1.0:6\nmin_p=0.0:0.3:6", max_chars=report.sweep.MAX_SWEEPS * 201),
          "base": Param(report.DEFAULT_BASE, max_chars=lineup_syntax.MAX_LINEUP_CHARS),
          "quality": Param("perplexity", choices=report.METRICS),
          "diversity": Param("distinct_2", choices=report.METRICS),
          "point": Param(0, 0, limits.MAX_SWEEP_POINTS - 1)}
MODES = {"report": "Line-up report: N samples per strategy", "sweep": "Sweep: one knob over a range of values"}

pg = sidebar(PAGE, SCHEMA, "Decoding report")
st.caption("N samples per strategy, decoded in one batch, scored as in Holtzman et al. (2020), \"The Curious Case "
           "of Neural Text Degeneration\", beside human text: the human continuation below plus held-out passages "
           "of the corpus the shipped models were trained on, each scored given its own prompt.")
left, right = st.columns(2)
left.text_area("Prompt", key=f"{PAGE}_prompt", height=150)
right.text_area("Human continuation of this prompt (optional)", key=f"{PAGE}_human", height=150)
st.number_input("Samples per sampling strategy or sweep point (N)", min_value=1, max_value=limits.MAX_SAMPLES, step=1,
                key=f"{PAGE}_samples")
st.radio("What to run", list(MODES), format_func=MODES.get, key=f"{PAGE}_mode", horizontal=True)
n, tokens, seed = state(PAGE, "samples"), state(PAGE, "max_new_tokens"), state(PAGE, "seed")
prompts = [report.Passage(state(PAGE, "prompt"), state(PAGE, "human"))]


def pick_from_chart() -> None:
    picked = report_figures.picked_point(st.session_state.get(f"{PAGE}_sweep_chart"), limits.MAX_SWEEP_POINTS)
    if picked is not None:
        st.session_state[f"{PAGE}_point"] = picked


def show_sweep() -> None:
    """The sweep: its inputs, the curves, the table, a point's samples and the exports."""
    st.text_area("Sweeps: one knob a line, name=start:stop:count (evenly spaced) or name=v1,v2,...",
                 key=f"{PAGE}_sweep", height=100)
    st.caption("Knobs a sweep takes: " + ", ".join(report.sweepable()) + ".")
    st.text_input("Base run(s), in the line-up syntax (runs separated by ;)", key=f"{PAGE}_base",
                  help="each knob is swept on each base run; pure sampling (sample(top_k=0)) by default")
    try:
        specs = report.parse_sweep_lines(state(PAGE, "sweep"))
        base = report.base_runs(state(PAGE, "base"), samples=n, max_new_tokens=tokens, seed=seed)
        report.check_sweep(pg, prompts, base, specs)
        heldout = report.load_passages()
    except PlaygroundError as exc:
        fail(str(exc))
        st.stop()
    result = decode_sweep(pg, prompts, base, specs, heldout)
    if result is None:
        st.stop()
    for notice in result.notices:
        warn(notice)
    options = report_figures.point_options(result)
    if state(PAGE, "point") >= len(options):
        warn(f"point={state(PAGE, 'point')} is past this sweep's {len(options)} points; showing the first.")
        st.session_state[f"{PAGE}_point"] = 0
    cols = st.columns(2)
    cols[0].selectbox("Quality figure (vertical)", report.METRICS, key=f"{PAGE}_quality",
                      format_func=lambda k: report_figures.LABELS[k])
    cols[1].selectbox("Diversity figure (horizontal)", report.METRICS, key=f"{PAGE}_diversity",
                      format_func=lambda k: report_figures.LABELS[k])
    st.plotly_chart(report_figures.sweep_chart(result, state(PAGE, "diversity"), state(PAGE, "quality"),
                                               state(PAGE, "point")),
                    key=f"{PAGE}_sweep_chart", on_select=pick_from_chart, selection_mode="points")
    st.caption(f"{len(result.points)} points x {result.samples_per_point} samples ({result.decoded} runs decoded, "
               f"in {result.batches} batch(es)); bars: 95% intervals; the star: human text. Click a point to read its samples. With one "
               "prompt, a point's Self-BLEU-4 compares its samples with each other; `python -m core report --sweep` "
               "over several prompts compares samples of different prompts, as the human point does.")
    st.subheader("Figures per point")
    st.dataframe(pd.DataFrame(report_figures.sweep_table(result)).style.apply(
        lambda row: ["background-color: #fde2e1" if row["kind"] == "human" else ""] * len(row), axis=1)
        .format(precision=3), hide_index=True, key=f"{PAGE}_sweep_table")
    picked = st.selectbox("Point", range(len(options)), format_func=options.__getitem__, key=f"{PAGE}_point")
    point = result.points[picked]
    st.dataframe(pd.DataFrame([{k: v for k, v in s.to_dict().items() if k != "ids"} for s in point.report.samples]),
                 hide_index=True, key=f"{PAGE}_point_samples")
    with st.expander("Export"):
        cols = st.columns(2)
        cols[0].download_button("CSV (the points)", result.to_csv, "sweep.csv", "text/csv")
        cols[1].download_button("JSON (figures and samples)", result.to_json, "sweep.json", "application/json")


if state(PAGE, "mode") == "sweep":
    show_sweep()
    st.stop()

with st.expander("Line-up: one run per line, strategy(name=value,...)"):
    st.text_area("Runs", key=f"{PAGE}_lineup", height=230)
    st.button("Reset to the paper's line-up", on_click=lambda: st.session_state.update(
        {f"{PAGE}_lineup": SCHEMA["lineup"].default}))

try:
    runs = report.report_lineup(state(PAGE, "lineup"), samples=n, max_new_tokens=tokens, seed=seed)
    lineup_syntax.validate_lineup(runs, pg.check)
    report.check_request(prompts, runs)
    heldout = report.load_passages()
except PlaygroundError as exc:
    fail(str(exc))
    st.stop()

result = decode_report(pg, prompts, runs, heldout)
if result is None:
    st.stop()
for notice in result.notices:
    warn(notice)

st.subheader("Figures per strategy")
table = pd.DataFrame(report_figures.figures_table(result))
st.dataframe(table.style.apply(
    lambda row: ["background-color: #fde2e1" if row["kind"] == "human" else ""] * len(row), axis=1)
    .format(precision=3), hide_index=True, key=f"{PAGE}_table")
st.caption("Self-BLEU-4 here compares each strategy's samples of this one prompt with each other (diversity among "
           "samples), while the human row compares passages of different prompts; `python -m core report` over "
           "several prompts compares samples of different prompts, like with like.")
with st.expander("How each figure is computed"):
    st.dataframe(pd.DataFrame({"figure": list(report.RULES), "rule": list(report.RULES.values())}), hide_index=True)

st.selectbox("Chart", report.METRICS, key=f"{PAGE}_metric", format_func=lambda k: report_figures.LABELS[k])
st.plotly_chart(report_figures.metric_chart(result, state(PAGE, "metric")), key=f"{PAGE}_chart")
if result.figure1 is not None:
    st.plotly_chart(report_figures.figure1_chart(result.figure1), key=f"{PAGE}_figure1")
    if not result.figure1.human_tokens:
        st.caption("Type a human continuation of the prompt above to see it beside beam search.")

st.subheader("Samples")
for row in result.rows:
    with st.expander(f"{row.name}: {len(row.samples)} sample(s)"):
        st.dataframe(pd.DataFrame([{k: v for k, v in s.to_dict().items() if k != "ids"} for s in row.samples]),
                     hide_index=True)

with st.expander("Export"):
    cols = st.columns(2)
    # callables: each export is built when its button is clicked, not on every rerun
    cols[0].download_button("CSV (the table)", result.to_csv, "report.csv", "text/csv")
    cols[1].download_button("JSON (figures and samples)", result.to_json, "report.json", "application/json")
