"""Every URL parameter of every page is a stranger's input: fuzzed through AppTest, with no exception,
no markdown rendered, and results shared between visitors but never changed by one."""

import hashlib
import pickle
import re

import pytest
from streamlit.testing.v1 import AppTest

from test_pages import PAGES, ROOT, page, shown

# garbage, huge, negative, NaN, unicode and markdown: each page gets every parameter set to one of these
HOSTILE = {
    "garbage": "abc;)(,:=",
    "huge": "9" * 400,
    "negative": "-5",
    "nan": "nan",
    "unicode": "\u202e🦄\u0000你好\ufffd",  # (a URL decodes bad bytes to U+FFFD)
    "markdown": "![x](http://127.0.0.1:9/x.png) **b** :material/home: <b>t</b> $x$",
}


def page_params(name: str) -> list[str]:
    """The page's parameters as it writes them to the address bar (its whole state)."""
    return sorted(page(name, max_new_tokens=4).query_params)


@pytest.mark.parametrize("name", PAGES)
def test_every_parameter_of_every_page_survives_hostile_values(name):
    params = page_params(name)
    assert {"model", "seed", "max_new_tokens"} <= set(params)
    for kind, value in HOSTILE.items():
        at = AppTest.from_file(str(ROOT / PAGES[name]), default_timeout=180)
        for param in params:
            at.query_params[param] = value
        at.run()
        assert not at.exception, (kind, at.exception)
        for element in [*at.warning, *at.error]:
            # every echoed value reached markdown escaped: no link, image, bold or HTML survives
            assert not re.search(r"(?<!\\)[!*<\[]", element.value), (kind, element.value)


@pytest.mark.parametrize("name, params, fragment", [
    ("lab", {"step": "-5"}, "step='-5' is outside"),
    ("lab", {"step": "1000000"}, "step='1000000' is outside"),
    ("anatomy", {"layer": "99"}, "layer"),
    ("anatomy", {"head": "-1"}, "head"),
    ("step", {"branches": "abc,1:2:3,0:999999,0:-1,-3:5,100:5"}, "not step:token_id"),
    ("compare", {"lineup": "sample(temperature=1e-300)"}, "below 0.01"),
    ("compare", {"lineup": "sample(repetition_penalty=1e-300)"}, "repetition_penalty"),
    ("compare", {"lineup": "beam(num_beams=2,length_penalty=250)"}, "length_penalty"),
    ("compare", {"lineup": "greedy;" * 40}, "at most 16 runs"),
    ("compare", {"lineup": "beam(num_beams=500)"}, "at most 64"),
    ("pipeline", {"run": "99"}, "run='99' is outside 0 to 15"),
    ("pipeline", {"lineup": "greedy\ngreedy", "run": "5"}, "run=5 is outside 0 to 1 here"),
    ("pipeline", {"step": "1000000"}, "step='1000000' is outside"),
    ("pipeline", {"step": "-3"}, "step='-3' is outside"),
    ("pipeline", {"lineup": "greedy", "step": "50"}, "step=50 is outside 0 to 5 here"),
    ("pipeline", {"lineup": "beam(num_beams=4,num_beam_groups=2,diversity_penalty=1)"}, "diverse beam search"),
])
def test_the_reported_links_get_one_sentence(name, params, fragment):
    at = page(name, max_new_tokens=6, **params)
    assert not at.exception
    said = " ".join(shown(e.value) for e in [*at.warning, *at.error])
    assert fragment in said, said


def test_a_link_value_is_echoed_as_text():
    at = page("compare", max_new_tokens=4, model="![x](http://127.0.0.1:9/x.png)")
    warning = next(w.value for w in at.warning if "model=" in shown(w.value))
    assert "\\!\\[x\\]\\(http" in warning  # escaped markdown: shown as written, never as an image
    assert at.sidebar.selectbox(key="compare_model").value == "shakespeare-gpt2"


def test_sampling_runs_of_a_lineup_draw_from_their_own_streams():
    lineup = "sample(temperature=1.0,top_k=0)\nsample(top_p=0.9,top_k=0)\nsample(temperature=1.0,top_k=0)"
    at = page("compare", max_new_tokens=12, lineup=lineup, prompt="Romeo.\n")
    texts = [h.value for h in at.get("html") if 'class="dp-tokens"' in h.value]  # the runs' texts (not legend, table)
    assert len(texts) == 3 and len(set(texts)) == 3  # even the two identical settings differ: seeds 0, 1, 2
    assert any("seed + *i*" in c.value for c in at.caption)
    again = page("compare", **dict(at.query_params))
    assert [h.value for h in again.get("html") if 'class="dp-tokens"' in h.value] == texts


def digest(values) -> str:
    return hashlib.sha256(pickle.dumps(values)).hexdigest()


def test_shared_results_are_never_changed_by_a_page():
    import ui

    for name in PAGES:  # fill the shared results from every page
        assert not page(name, max_new_tokens=8).exception
    results, _ = ui.server()
    before = {id(v): digest(v) for v in results.values()}
    assert before
    for name in PAGES:  # every page again, reading those results, with its view widgets moved
        at = page(name, max_new_tokens=8)
        for radio in at.radio:
            if radio.key and radio.key.endswith("_distribution"):
                radio.set_value("processed").run()
        assert not at.exception
    after = {id(v): digest(v) for v in results.values() if id(v) in before}
    assert after == {k: before[k] for k in after}


def test_a_second_visitor_gets_the_first_ones_result_without_decoding(monkeypatch):
    from core.playground import Playground

    first = page("compare", max_new_tokens=9, prompt="A second visitor")
    calls = []
    original = Playground.compare
    monkeypatch.setattr(Playground, "compare", lambda *a, **k: calls.append(1) or original(*a, **k))
    second = page("compare", **dict(first.query_params))
    assert calls == [] and [h.value for h in second.get("html")] == [h.value for h in first.get("html")]
