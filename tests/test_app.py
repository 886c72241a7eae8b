"""The app's entry page runs on a configured model, decodes the line-up, and reports bad input."""

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def app(tmp_path, monkeypatch, tiny_dir):
    shutil.copytree(tiny_dir, tmp_path / "tiny-gpt2")
    monkeypatch.setenv("PLAYGROUND_MODEL_DIRS", str(tmp_path))
    at = AppTest.from_file(ENTRY, default_timeout=120)
    return at


def test_home_page_decodes_the_lineup(app):
    at = app.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="home_model").value == "tiny-gpt2"
    assert {s.value for s in at.subheader} == {
        "greedy", "beam 5", "beam 5 + no-repeat 2", "temperature 0.5", "temperature 1.0", "temperature 2.0",
        "top-k 50", "top-p 0.9"}
    before = [m.value for m in at.markdown]
    at.text_area(key="home_prompt").set_value("Once upon a time").run()
    assert not at.exception and [m.value for m in at.markdown] != before


def test_empty_prompt_shows_one_sentence(app):
    at = app.run()
    at.text_area(key="home_prompt").set_value("   ").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The prompt is empty; type some text for the model to continue."]
