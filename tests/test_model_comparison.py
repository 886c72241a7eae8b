"""Model against model (issue 20, item 4): one prompt and one line-up on two or more models, side by side,
and every run scored under every other model; held to forward passes computed here by hand."""

import json
import math

import pytest
import torch

from core import cli, model_comparison
from core.decoding import lineup as lineup_syntax
from core.errors import InvalidSetting
from core.playground import Playground
from core.views import share, tables
from test_pages import page, shown

PROMPT = "Romeo.\n"


@pytest.fixture(scope="module")
def pair():
    expert = Playground.load("shakespeare-gpt2", device="cpu")
    return expert, expert.other("shakespeare-lstm")


def runs(spec="greedy;beam(num_beams=2)", tokens=6):
    return lineup_syntax.parse_lineup(spec, max_new_tokens=tokens, seed=0)


def by_hand(model, context: list[int], continuation: list[int]) -> float:
    """The continuation's summed log-prob under `model`, one forward pass over the whole text."""
    with torch.no_grad():
        logits = model(torch.tensor([context + continuation])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return sum(float(lp[len(context) - 1 + k, t]) for k, t in enumerate(continuation))


def test_models_sharing_a_tokenizer_read_the_same_ids_and_score_each_other(pair):
    gpt2, lstm = pair
    result = model_comparison.compare_models([gpt2, lstm], PROMPT, runs())
    assert result.models == ["shakespeare-gpt2", "shakespeare-lstm"]
    assert result.tokenizer_groups == [["shakespeare-gpt2", "shakespeare-lstm"]] and not result.notices
    assert result.results[0].prompt_ids == result.results[1].prompt_ids == gpt2.tokenizer.encode(PROMPT)
    for m, (author, other) in enumerate([(gpt2, lstm), (lstm, gpt2)]):
        alone = author.compare(PROMPT, runs())  # each model's runs are the runs it gives on its own
        assert [r.best.ids for r in result.results[m].runs] == [r.best.ids for r in alone.runs]
        for run, scores in zip(result.results[m].runs, result.cross[m]):
            assert [c.model for c in scores] == result.models  # every run under every model, in their order
            own, under = scores[m], scores[1 - m]
            assert own.model == author.label and own.logprob == pytest.approx(run.best.figures().sequence_logprob)
            want = by_hand(other.model, result.results[m].prompt_ids, run.best.ids)
            assert under.model == other.label and under.own_tokens and under.tokens == len(run.best.ids)
            assert under.logprob == pytest.approx(want, abs=1e-3)
            assert under.perplexity == pytest.approx(math.exp(-want / len(run.best.ids)), rel=1e-3)
    rows = tables.cross_table(result)
    assert [(r["model"], r["run"]) for r in rows] == [("shakespeare-gpt2", "greedy"), ("shakespeare-gpt2", "beam 2"),
                                                      ("shakespeare-lstm", "greedy"), ("shakespeare-lstm", "beam 2")]
    assert rows[0]["perplexity under shakespeare-lstm"] == round(result.cross[0][0][1].perplexity, 2)
    assert rows[2]["perplexity under shakespeare-gpt2"] == round(result.cross[1][0][0].perplexity, 2)
    assert rows[0]["perplexity under shakespeare-gpt2"] == "—"  # not its own model twice
    assert list(rows[0]) == ["model", "run", "tokens", "perplexity (own model)", "perplexity under shakespeare-gpt2",
                             "perplexity under shakespeare-lstm"]  # the scoring models in the comparison's order


def test_a_model_with_its_own_tokenizer_reads_its_own_ids_and_scores_the_text(pair, tiny_dir):
    gpt2 = Playground.load("shakespeare-gpt2", device="cpu", allow_paths=True)
    tiny = gpt2.other(str(tiny_dir))  # GPT-2's tokenizer
    result = model_comparison.compare_models([gpt2, tiny], PROMPT, runs("greedy", 5))
    assert result.results[1].prompt_ids == tiny.tokenizer.encode(PROMPT) != result.results[0].prompt_ids
    assert len(result.notices) == 2 and "its own tokenizer" in result.notices[1]
    run = result.results[0].runs[0].best
    under = result.cross[0][0][1]
    context = tiny.tokenizer.encode(result.results[0].prompt_text)
    whole = tiny.tokenizer.encode(result.results[0].prompt_text + gpt2.tokenizer.decode(run.ids))
    assert whole[:len(context)] == context and not under.own_tokens and under.tokens == len(whole) - len(context)
    assert under.logprob == pytest.approx(by_hand(tiny.model, context, whole[len(context):]), abs=1e-3)
    assert f"perplexity under {tiny.label} (in {tiny.label}'s tokens)" in tables.cross_table(result)[0]


def test_the_budget_counts_every_model_and_the_scoring(pair, monkeypatch):
    gpt2, lstm = pair
    lineup = runs("greedy", 10)
    monkeypatch.setenv("PLAYGROUND_BUDGET", str(10 * gpt2.parameters * 2))  # room for the first model twice over
    gpt2.compare(PROMPT, lineup)
    with pytest.raises(InvalidSetting, match="plus 1 rows on shakespeare-lstm"):
        model_comparison.compare_models([gpt2, lstm], PROMPT, lineup)


@pytest.mark.parametrize("names, fragment", [(["shakespeare-gpt2"], "at least two models"),
                                             (["shakespeare-gpt2"] * 2, "named twice"),
                                             (["shakespeare-gpt2", "shakespeare-lstm", "shakespeare-transformer-lm",
                                               "shakespeare-gpt2", "shakespeare-lstm"], "at most 4")])
def test_a_comparison_of_fewer_than_two_or_too_many_models_is_refused(names, fragment):
    models = [Playground.load(n, device="cpu") for n in names]
    with pytest.raises(InvalidSetting, match=fragment):
        model_comparison.compare_models(models, PROMPT, runs("greedy", 2))


def test_the_command_line_compares_models(capsys):
    args = ["compare", "--models", "shakespeare-gpt2", "shakespeare-transformer-lm", "--prompt", PROMPT, "--lineup",
            "greedy", "--max-new-tokens", "4", "--device", "cpu"]
    assert cli.main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models"] == ["shakespeare-gpt2", "shakespeare-transformer-lm"] and len(data["results"]) == 2
    assert data["results"][1]["cross_scores"][0][0]["model"] == "shakespeare-gpt2"
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "perplexity under shakespeare-transformer-lm" in out and "-- shakespeare-gpt2:" in out
    assert cli.main(["compare", "--models", "shakespeare-gpt2", "--prompt", "x"]) == 2
    assert "--models takes 2 to 4 models" in capsys.readouterr().err


def test_compare_links_are_parsed_by_offered_name():
    offered = ["a", "b", "c", "d", "e"]
    assert share.parse_models("b,c", offered=offered, model="a", most=3) == (["b", "c"], [])
    names, problems = share.parse_models("a, b,b,zz,c,d,e", offered=offered, model="a", most=3)
    assert names == ["b", "c", "d"] and len(problems) == 2
    assert "'zz' is not offered" in problems[0] and "'e' was dropped" in problems[1]


def test_the_compare_page_shows_two_models_side_by_side():
    at = page("compare", max_new_tokens=6, vs="shakespeare-lstm", lineup="greedy\nbeam(num_beams=2)", prompt=PROMPT)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [h.value for h in at.subheader] == ["greedy", "beam 2"]
    assert at.sidebar.multiselect(key="compare__vs").value == ["shakespeare-lstm"]
    assert at.query_params["vs"] == "shakespeare-lstm"
    names = [m.value for m in at.markdown if m.value.startswith("**shakespeare")]
    assert names == ["**shakespeare\\-gpt2**", "**shakespeare\\-lstm**"] * 2
    captions = [shown(c.value) for c in at.caption if "under" in c.value]
    assert len(captions) == 4 and "under shakespeare-lstm" in captions[0] and "under shakespeare-gpt2" in captions[1]
    table = next(h.value for h in at.get("html") if "dp-table" in h.value and "perplexity under" in h.value)
    assert "perplexity under shakespeare-lstm" in table and "perplexity (own model)" in table
    # the comparison's own figures: the page shows what the core computed
    gpt2 = Playground.load("shakespeare-gpt2")
    result = model_comparison.compare_models([gpt2, gpt2.other("shakespeare-lstm")], PROMPT,
                                             runs("greedy;beam(num_beams=2)", 6))
    assert f"{result.cross[0][0][1].perplexity:.2f} under shakespeare-lstm" in captions[0]
    # a link with a model this app does not offer: dropped, said once, and the rest still compared
    at = page("compare", max_new_tokens=4, vs="nope,shakespeare-lstm", lineup="greedy")
    assert not at.exception and at.sidebar.multiselect(key="compare__vs").value == ["shakespeare-lstm"]
    assert ["The link's model 'nope' is not offered here; it was dropped from the comparison."] == [
        shown(w.value) for w in at.warning]


def test_on_vllm_each_model_goes_to_a_server_that_serves_it_else_runs_beside_it():
    from core.backends import open_models
    from core.errors import PlaygroundError

    served = {"http://a:8000": "shakespeare-gpt2", "http://b:8000": "shakespeare-transformer-lm"}

    def connect(url, name):  # what core.backends.vllm.connect answers, without a server
        if served[url] != name:
            raise PlaygroundError(f"The vLLM server at {url} serves {served[url]}, not {name}.")
        return ("served", url, name)

    names = ["shakespeare-transformer-lm", "shakespeare-gpt2", "shakespeare-lstm"]
    models, notes = open_models(names, backend="vllm", servers=list(served), connect=connect, device="cpu")
    assert models[:2] == [("served", "http://b:8000", "shakespeare-transformer-lm"),
                          ("served", "http://a:8000", "shakespeare-gpt2")]
    assert models[2].label == "shakespeare-lstm" and not models[2].remote
    assert notes == ["shakespeare-lstm runs in this process beside the vLLM server(s): The vLLM server at "
                     "http://a:8000 serves shakespeare-gpt2, not shakespeare-lstm."]
    with pytest.raises(InvalidSetting, match="needs --server"):
        open_models(names, backend="vllm", servers=[])
