"""The Speculative decoding page: what it shows is what the engine gives for the same runs, and its
address reproduces it."""

import json

from core.playground import Playground
from core.views import speculative
from test_pages import page

PROMPT = "To be, or not to be"


def _figures(**changes):
    knobs = dict(strategy="greedy", draft="shakespeare-draft", num_assistant_tokens=5, schedule="constant",
                 threshold=0.4, lookup_tokens=10, temperature=1.0, max_new_tokens=24, seed=0)
    knobs.update(changes)
    pg = Playground.load("shakespeare-gpt2", device="cpu")
    return pg.compare(PROMPT, speculative.runs(**knobs)).runs


def test_the_page_shows_every_check_and_the_figures_of_the_engines_runs():
    at = page("speculative", max_new_tokens=24, prompt=PROMPT)
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assisted, plain = _figures()
    assert at.subheader[0].value == "greedy, assisted by shakespeare-draft (5 drafted)"
    metrics = {m.label: m.value for m in at.metric}
    spec = assisted.speculation
    assert metrics["Tokens per target forward"] == f"{len(assisted.best.ids) / assisted.target_forwards:.2f}"
    assert metrics["Target forwards"] == str(assisted.target_forwards)
    assert metrics["Acceptance rate"] == f"{spec.accepted / spec.drafted:.0%}"
    assert metrics["Draft forwards"] == str(spec.draft_forwards)
    assert metrics["Speed-up over plain"].endswith("x")
    assert any("token for token" in c.value for c in at.caption)
    checks = next(h.value for h in at.get("html") if 'class="dp-checks"' in h.value)
    assert checks.count("<tr>") == len(spec.checks) + 1  # a row per check, and the head
    first = spec.checks[0]
    assert f"<td>{first.accepted} / {len(first.drafted)}</td>" in checks
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["yaxis"]["range"] == [0, 1.1]
    assert chart["layout"]["xaxis"]["title"]["text"] == "position in the draft"
    assert len(chart["data"][0]["x"]) == max(len(c.drafted) for c in spec.checks)
    # the address holds the page's state: opened again it shows the same run
    params = dict(at.query_params)
    assert params["draft"] == "shakespeare-draft" and params["num_assistant_tokens"] == "5"
    again = page("speculative", **params)
    assert {m.label: m.value for m in again.metric}["Target forwards"] == metrics["Target forwards"]


def test_prompt_lookup_and_sampling_from_a_link():
    at = page("speculative", max_new_tokens=24, prompt=PROMPT, draft="prompt lookup", decoding="sample",
              temperature=0.7, seed=3)
    assert not at.exception and not at.error
    assisted, _ = _figures(draft="prompt lookup", strategy="sample", temperature=0.7, seed=3)
    assert at.subheader[0].value == assisted.name == "temperature 0.7, prompt lookup 10"
    assert {m.label: m.value for m in at.metric}["Target forwards"] == str(assisted.target_forwards)
