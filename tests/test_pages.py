"""Every page under Streamlit's AppTest, on the shipped default model, each with its real sidebar.

Pages are run from their own files (as AppTest.switch_page would): each draws the shared sidebar
itself, so its widgets are there without the entry file.
"""

import base64
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models import registry

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "compare": "pages/1_compare.py", "step": "pages/2_step_through.py", "lab": "pages/3_sampling_lab.py",
    "beam": "pages/4_beam_search.py", "anatomy": "pages/5_models_and_tokens.py", "score": "pages/6_score_a_text.py", "report": "pages/7_report.py",
    "pipeline": "pages/8_pipeline.py",
    "speculative": "pages/9_speculative_decoding.py",
    "watermark": "pages/10_watermark_lab.py",
}


def page(name: str, **params) -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGES[name]), default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = str(value)
    return at.run()


def shown(value: str) -> str:
    """What a visitor reads: messages are markdown-escaped (ui.warn / ui.fail), so drop the escapes."""
    return re.sub(r"\\(.)", r"\1", value)


def texts(at) -> list[str]:
    return [h.value for h in at.subheader] + [m.value for m in at.markdown] + [c.value for c in at.caption]


@pytest.mark.parametrize("name", PAGES)
def test_every_page_runs_with_its_sidebar(name):
    at = page(name, max_new_tokens=12)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.sidebar.selectbox(key=f"{name}_model").value == registry.default_model() == "shakespeare-gpt2"
    assert at.sidebar.number_input(key=f"{name}_seed").value == 0
    assert at.sidebar.slider(key=f"{name}_max_new_tokens").value == 12
    # the shipped default is a GPT-2: it decodes through the lean forward pass, and the sidebar says so
    assert any("Device: **cpu**" in c.value and "forward: **lean**" in c.value for c in at.sidebar.caption)


def test_entry_file_navigates_to_compare():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    at.query_params["max_new_tokens"] = "8"
    at.run()
    assert not at.exception and at.title[0].value == "Compare decoding strategies"


def test_compare_lineup_seed_and_link_round_trip():
    at = page("compare", max_new_tokens=10, prompt="Romeo.\n")
    names = {h.value for h in at.subheader}
    assert names == {"greedy", "beam 5", "beam 5 + no-repeat 2", "temperature 0.5", "temperature 1.0",
                     "temperature 2.0", "top-k 50", "top-p 0.9"}
    before = outputs(at)
    charts = [base64.b64decode(i.proto.imgs[0].url.split(",", 1)[1]).decode() for i in at.get("image")]
    assert len(charts) == 1 and charts[0].count('class="dp-point"') == 8  # one point per run, an SVG image
    # the URL holds the whole state ...
    params = dict(at.query_params)
    assert params["prompt"] == "Romeo.\n" and params["seed"] == "0" and "beam(num_beams=5)" in params["lineup"]
    # ... a new seed changes the sampled runs only ...
    at.sidebar.number_input(key="compare_seed").set_value(3).run()
    after = outputs(at)
    for name in ("greedy", "beam 5", "beam 5 + no-repeat 2"):
        assert after[name] == before[name]
    assert any(after[name] != before[name] for name in ("temperature 1.0", "temperature 2.0", "top-k 50"))
    # ... and opening the link reproduces the run exactly
    again = page("compare", **dict(at.query_params))
    assert outputs(again) == after


def outputs(at) -> dict[str, str]:
    """Each run's rendered tokens by run name (AppTest lists elements column by column)."""
    return dict(zip([h.value for h in at.subheader], [h.value for h in at.get("html")[1:]]))  # [0]: the legend


def test_compare_bad_inputs_are_one_sentence():
    at = page("compare", prompt="   ", max_new_tokens=5)
    assert not at.exception
    assert [shown(e.value) for e in at.error] == ["The prompt is empty; type some text for the model to continue."]
    at = page("compare", lineup="greedy\nsample(temperature=0)", max_new_tokens=5)
    assert not at.exception and len(at.error) == 1
    assert shown(at.error[0].value).startswith("Line 2 of the line-up") and "greedy" in at.error[0].value
    at = page("compare", seed="abc", max_new_tokens=5)
    assert not at.exception and any("seed='abc'" in shown(w.value) for w in at.warning)
    at = page("compare", max_new_tokens=5000)  # outside the slider: clamped, said, not a crash
    assert not at.exception and any("max_new_tokens='5000' is outside 1 to 200" in shown(w.value) for w in at.warning)
    at = page("beam", num_beams=99, max_new_tokens=4)
    assert not at.exception and at.slider(key="beam_num_beams").value == 10


def test_raw_processed_toggle_does_not_decode_again(monkeypatch):
    at = page("compare", max_new_tokens=8, lineup="sample(top_k=5)")
    raw = at.get("html")[1].value
    assert "(raw)" in raw
    calls = []
    from core.playground import Playground
    monkeypatch.setattr(Playground, "compare", lambda *a, **k: calls.append(1))
    at.radio(key="compare_distribution").set_value("processed").run()
    assert not at.exception and calls == []
    assert "(processed)" in at.get("html")[1].value and at.get("html")[1].value != raw


def test_step_through_branches_stay():
    at = page("step", max_new_tokens=8)
    assert at.dataframe[0].value.shape[0] == 8 and list(at.dataframe[0].value.columns)[:3] == ["step", "input", "choice 1"]
    at.number_input(key="step_branch_step").set_value(2)
    at.radio(key="step_branch_choice").set_value(at.radio(key="step_branch_choice").options[1])
    at.button(key="step_branch_button").click().run()
    assert not at.exception
    assert [h.value for h in at.subheader][0] == "main line"
    assert any(h.value.startswith("branch at step 2") for h in at.subheader)
    assert "2:" in at.query_params["branches"]


def test_sampling_lab_reacts_to_top_p():
    at = page("lab", max_new_tokens=6, top_k=0, top_p=0.5)
    first = [c.value for c in at.caption if c.value.startswith("As the run did it")]
    at.slider(key="lab_top_p").set_value(0.95).run()
    second = [c.value for c in at.caption if c.value.startswith("As the run did it")]
    assert not at.exception and first and first != second
    assert len(at.get("plotly_chart")) == 4


def test_beam_page_shows_tree_and_no_repeat_effect():
    at = page("beam", max_new_tokens=10, num_beams=3)
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert any("No-repeat-2 changes the raw sequence log-prob" in m.value for m in at.markdown)
    tables = [h.value for h in at.get("html") if 'class="dp-table"' in h.value]  # whole texts, not cut
    assert tables and tables[0].count("<tr>") == 3 + 1


def test_models_and_tokens_page():
    from core.playground import Playground

    pg = Playground.load("shakespeare-gpt2", device="cpu")
    at = page("anatomy", tokenize="To be, or not to be")
    assert not at.exception
    assert at.dataframe[0].value["id"].tolist() == pg.tokenizer.encode("To be, or not to be")
    assert [m.value for m in at.metric][1] == "4"
    assert len(at.get("plotly_chart")) == 1


def test_score_page():
    at = page("score", text="Romeo.\nBut soft, what light through yonder window breaks?")
    assert not at.exception and at.metric[0].label == "Perplexity"
    at.text_area(key="score_text").set_value(" ").run()
    assert [shown(e.value) for e in at.error] == ["The text is empty; paste some text to score."]


def test_sliders_that_only_change_the_view_run_no_model(monkeypatch):
    from core.views import internals

    at = page("anatomy", prompt="To be, or not to be")
    calls = []
    monkeypatch.setattr(internals, "attention_maps", lambda *a, **k: calls.append(1))
    at.slider(key="anatomy_layer").set_value(2).run()
    assert not at.exception and calls == [] and len(at.get("plotly_chart")) == 1
    lab = page("lab", max_new_tokens=6, step=1)
    monkeypatch.setattr(internals, "distribution_at", lambda *a, **k: calls.append(1))
    lab.slider(key="lab_step").set_value(1).run()  # already computed for this step on the first run
    assert not lab.exception and calls == []


def test_beam_page_draws_one_tree_per_group_for_diverse_beam_search():
    at = page("beam", max_new_tokens=8, num_beams=4, num_beam_groups=2, diversity_penalty=1.5, no_repeat_ngram_size=0)
    assert not at.exception, at.exception
    assert len(at.tabs) == 2 and len(at.get("plotly_chart")) == 2
    assert any("2 groups" in h.value for h in at.subheader)
    at = page("beam", max_new_tokens=8, num_beams=5, num_beam_groups=2)  # 2 does not divide 5: one group
    assert not at.exception and len(at.tabs) == 0 and at.select_slider(key="beam_num_beam_groups").value == 1


def test_a_newcomer_meets_the_pipeline_on_a_run_with_several_stages():
    """The page's own address, no parameters: Compare's line-up and one run more, shown at step 5, each stage
    with what it did and the tokens it changed listed beside that count, not beside what it kept."""
    at = page("pipeline")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.subheader[0].value.startswith("Run 8: temperature 0.8, top-k 40, top-p 0.9 + repetition penalty 1.3 · "
                                            "step 5 of ")
    table = next(h.value for h in at.get("html") if "<table" in h.value)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    assert [c[2] for c in cells] == ["raw", "repetition_penalty", "temperature", "top_k", "top_p"]
    assert re.fullmatch(r"cut [\d,]+ tokens: .* and [\d,]+ more; keeps 40", cells[3][3]) and cells[3][4] == "40"


def test_pipeline_page_shows_each_stage_as_the_run_applied_it():
    """The stages' names in generate()'s order and their kept counts, as core computes them for that step; the
    address reproduces the page."""
    from core.pipeline import pipeline_at
    from core.decoding.settings import DecodeSettings
    from core.playground import Playground

    lineup = "greedy\nsample(repetition_penalty=1.3,top_k=20,top_p=0.9)"
    at = page("pipeline", max_new_tokens=8, prompt="Romeo.\n", lineup=lineup, run=1, step=5, seed=4)
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(h.value for h in at.get("html") if "<table" in h.value)
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [c[2] for c in cells] == ["raw", "repetition_penalty", "top_k", "top_p"]
    pg = Playground.load("shakespeare-gpt2", device="cpu")
    runs = [DecodeSettings("greedy", max_new_tokens=8, seed=4),
            DecodeSettings("sample", repetition_penalty=1.3, top_k=20, top_p=0.9, max_new_tokens=8, seed=5)]
    view = pipeline_at(pg, "Romeo.\n", runs, 1, 5)
    assert [int(c[4]) for c in cells] == [st.kept for st in view.stages] and int(cells[2][4]) == 20
    assert [c[1] for c in cells] == ["raw", "repetition penalty 1.3", "top-k 20", "top-p 0.9"]
    assert "Run 1: top-k 20, top-p 0.9 + repetition penalty 1.3 · step 5 of 8" in [h.value for h in at.subheader]
    assert len(at.get("plotly_chart")) == 2
    params = dict(at.query_params)
    assert (params["run"], params["step"], params["seed"], params["lineup"]) == ("1", "5", "4", lineup)
    again = page("pipeline", **params)
    assert next(h.value for h in again.get("html") if "<table" in h.value) == table


def test_compare_rows_and_the_sampling_lab_link_to_the_pipeline():
    from urllib.parse import parse_qs, urlparse

    at = page("compare", max_new_tokens=4, prompt="Romeo.\n", lineup="greedy\nsample(top_k=5)", seed=7)
    links = [m.value for m in at.markdown if "/pipeline?" in m.value]
    assert len(links) == 2  # one per row, each with the whole state the pipeline page needs
    query = {k: v[0] for k, v in parse_qs(urlparse(re.search(r"\((/pipeline\?[^)]*)\)", links[1]).group(1)).query).items()}
    assert query == {"prompt": "Romeo.\n", "lineup": "greedy\nsample(top_k=5)", "run": "1", "step": "0",
                     "model": "shakespeare-gpt2", "seed": "7", "max_new_tokens": "4"}
    there = page("pipeline", **query)
    assert not there.exception and not there.error and not there.warning
    assert [h.value for h in there.subheader] == ["Run 1: top-k 5 · step 0 of 4"]
    lab = page("lab", max_new_tokens=4, step=2, top_k=0, top_p=0.8, seed=3)
    link = next(m.value for m in lab.markdown if "/pipeline?" in m.value)
    query = {k: v[0] for k, v in parse_qs(urlparse(re.search(r"\((/pipeline\?[^)]*)\)", link).group(1)).query).items()}
    assert (query["lineup"], query["run"], query["step"], query["seed"]) == ("sample(top_k=0,top_p=0.8)", "0", "2", "3")
