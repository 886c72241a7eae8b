"""What the pages are built from: URL state, exports, the recipe snippet, and the figures."""

import contextlib
import csv
import io
import json
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from conftest import PROMPTS
from core.views import beam_tree, charts, markup
from core.views import internals
from core.views import recipe
from core.decoding import lineup as lineup_syntax
from core.views import share
from core.errors import InvalidSetting
from core.models import registry
from core.playground import default_lineup
from core.decoding.settings import DecodeSettings, lineup_seeds


def test_lineup_spec_round_trip():
    lineup = lineup_seeds(default_lineup(max_new_tokens=30, seed=4) + [
        DecodeSettings("beam", num_beams=3, length_penalty=0.5, early_stopping="never", max_new_tokens=30),
        DecodeSettings("sample", min_p=0.05, typical_p=0.9, repetition_penalty=1.2, max_new_tokens=30)], 4)
    spec = lineup_syntax.lineup_spec(lineup)
    assert lineup_syntax.parse_lineup(spec, max_new_tokens=30, seed=4) == lineup
    assert [s.seed for s in lineup] == list(range(4, 14))  # run i: seed + i
    assert "beam(num_beams=5,no_repeat_ngram_size=2)" in spec


@pytest.mark.parametrize("spec, fragment", [("beam(num_beams=x)", "not a number"), ("beam(width=3)", "unknown setting"),
                                            ("beam(num_beams=3", "malformed")])
def test_bad_specs_are_one_sentence(spec, fragment):
    with pytest.raises(InvalidSetting, match=fragment):
        lineup_syntax.parse_run(spec, max_new_tokens=5, seed=0)


def test_read_params_falls_back_with_a_note():
    state, problems = share.read_params({"seed": "abc", "max_new_tokens": "12"}, {"seed": 0, "max_new_tokens": 40,
                                                                                  "prompt": "x"})
    assert state == {"seed": 0, "max_new_tokens": 12, "prompt": "x"} and len(problems) == 1


@pytest.fixture(scope="module")
def lineup_result(playground):
    runs = [DecodeSettings("greedy", max_new_tokens=10), DecodeSettings("beam", num_beams=3, max_new_tokens=10),
            DecodeSettings("sample", top_p=0.9, top_k=0, max_new_tokens=10, seed=5),
            DecodeSettings("sample", temperature=0.7, top_k=20, max_new_tokens=10, seed=9)]
    return runs, playground.compare(PROMPTS[0], runs)


def test_recipe_snippet_reproduces_every_run_with_generate(lineup_result, tiny_dir, monkeypatch):
    runs, result = lineup_result
    rec = recipe.recipe(result, runs, PROMPTS[0])
    # a folder model is named by its folder's own name, and has no tokenizer of its own: GPT-2's, from the hub
    assert rec["model"] == rec["source"] == tiny_dir.name and rec["source_kind"] == "folder"
    assert rec["tokenizer"] == "openai-community/gpt2" and rec["revision"].startswith("sha256:")
    assert rec["versions"]["torch"] and len(rec["runs"]) == 4
    snippet = recipe.generate_snippet(rec)
    assert str(tiny_dir) not in snippet and "--tokenizer PATH" in snippet
    # as its reader would run it, with their copies (the shipped copy of GPT-2's tokenizer: no network here)
    monkeypatch.setattr(sys, "argv", ["recipe.py", "--model", str(tiny_dir), "--tokenizer", str(registry.GPT2_TOKENIZER)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "recipe.py", "exec"), {})
    assert printed.getvalue() == "".join(run.best.text + "\n" for run in result.runs)


def test_exports(lineup_result):
    runs, result = lineup_result
    rows = list(csv.DictReader(io.StringIO(recipe.to_csv(result))))
    assert len(rows) == sum(len(q.ids) for r in result.runs for q in r.sequences)
    assert rows[0]["run"] == "greedy" and int(rows[0]["token_id"]) == result.runs[0].best.ids[0]
    assert {"logprob_raw", "logprob_processed", "rank_raw"} <= set(rows[0])
    md = recipe.to_markdown(result)
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(result.runs) + 2  # header, rule, runs
    assert "sequence log-prob (raw)" in md
    data = json.loads(recipe.to_json(result, recipe.recipe(result, runs, PROMPTS[0])))
    assert data["recipe"]["prompt"] == PROMPTS[0] and len(data["runs"]) == 4


def test_figures_are_built_from_the_trace(lineup_result, playground):
    _, result = lineup_result
    chart = charts.lineup_chart(result.runs)
    assert isinstance(chart, go.Figure) and len(chart.data) == 4
    assert chart.data[0].y[0] == pytest.approx(result.runs[0].best.figures().mean_logprob)
    tree = beam_tree.beam_tree_figure(result.runs[1])
    nodes = [t for t in tree.data if t.name in ("kept", "finished", "pruned")]
    assert {t.name for t in nodes} == {"kept", "finished", "pruned"}
    assert sum(len(t.x) for t in nodes) == len(result.runs[1].beam_tree)
    nucleus = charts.nucleus_figure(result.runs[2].best)
    assert [t.name for t in nucleus.data] == ["kept by top_p"]
    assert list(nucleus.data[0].y) == [s.kept["top_p"] for s in result.runs[2].best.steps]
    html = markup.tokens_html(result.runs[0].best, "raw")
    assert html.count('class="dp-card"') == len(result.runs[0].best.ids) and "alternatives (raw)" in html


def test_temperature_and_cut_points():
    flat = charts.softmax_with_temperature([1, 5, 7, 10], 100.0)
    sharp = charts.softmax_with_temperature([1, 5, 7, 10], 0.01)
    assert np.allclose(flat.sum(), 1) and flat.max() < 0.3 and sharp[3] == pytest.approx(1.0)
    probs = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    assert charts.cut_points(probs, top_k=2, top_p=0.85) == (2, 3)
    assert charts.cut_points(probs, top_k=0, top_p=1.0) == (5, 5)
    # the cuts in turn, as the run applies them: top-p on what top-k left, renormalised
    at = {"raw": probs, "before_cuts": {"label": "raw", "sorted": probs},
          "stages": [{"name": "top_k", "param": 2, "label": "raw", "sorted": probs, "kept": 2},
                     {"name": "top_p", "param": 0.85, "label": "after top-k 2 (renormalised)",
                      "sorted": np.array([0.625, 0.375, 0, 0, 0]), "kept": 2}]}
    fig = charts.cumulative_figure(at)
    assert fig.data[0].y[-1] == pytest.approx(1.0)
    assert [t.name for t in fig.data if t.meta] == ["top-k=2 keeps 2", "top-p=0.85 keeps 2 of 2"]
    assert [list(t.x) for t in fig.data if t.meta] == [[2, 2], [2, 2]]


def test_distribution_at_matches_the_trace(playground):
    settings = DecodeSettings("sample", top_k=30, top_p=0.8, max_new_tokens=5, seed=1)
    result = playground.decode(PROMPTS[0], settings)
    seq = result.runs[0].best
    at = internals.distribution_at(playground, result.prompt_ids + seq.ids[:2], settings)
    assert int((at["processed"] > 0).sum()) == seq.steps[2].kept["top_p"]
    assert at["ids"][0].item() == seq.steps[2].top[0].id
    assert float(at["raw"][0]) == pytest.approx(seq.steps[2].top[0].prob, rel=1e-4)


def test_anatomy_and_attention(playground):
    a = internals.anatomy(playground)
    assert (a.layers, a.heads, a.head_size, a.context) == (2, 2, 16, 128)
    tokens, maps, total = internals.attention_maps(playground, "A long long time ago")
    assert tokens == ["A", " long", " long", " time", " ago"] and maps.shape == (2, 2, 5, 5) and total == 5
    assert np.allclose(maps.sum(-1).numpy(), 1, atol=1e-5) and float(maps[0, 0].triu(1).abs().sum()) == 0
    fig = charts.attention_figure(tokens, maps[1, 0], 1, 0)
    assert fig.data[0].z.shape == (5, 5)


def test_token_hover_says_what_was_banned_and_cut(playground):
    seq = playground.decode(PROMPTS[0], DecodeSettings("sample", top_k=7, no_repeat_ngram_size=1, max_new_tokens=12,
                                                       seed=2)).runs[0].best
    html = markup.tokens_html(seq, "processed")
    assert "top_k kept 7 tokens" in html
    banned = [s for s in seq.steps if s.banned_tokens.get("no_repeat_ngram")]
    assert banned and all(len(s.banned_tokens["no_repeat_ngram"]) == len(s.banned["no_repeat_ngram"]) for s in banned)
    assert "no_repeat_ngram banned/down-weighted" in html
