"""The decoding report (issue 11): its figures against independent recomputation, the one-batch decode
against each strategy alone, the command line's JSON contract and refusals, and the Report page."""

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from core import cli, report
from core.errors import InvalidSetting
from core.report import Passage, Sample
from core.decoding.scoring import score_ids
from core.decoding.settings import DecodeSettings

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "A long long time ago, "


# figures on fixed texts -------------------------------------------------------------------------------
def test_self_bleu_of_identical_samples_is_one_and_of_disjoint_ones_near_zero():
    same = ["the cat sat on the mat today"] * 4
    assert report.self_bleu4(same) == pytest.approx([1.0] * 4)
    disjoint = [" ".join(f"w{i}x{j}" for j in range(12)) for i in range(4)]
    assert max(report.self_bleu4(disjoint)) < 0.01
    assert report.self_bleu4(["only one"]) == []


def test_self_bleu_equals_sacrebleu_sentence_bleu_against_all_others():
    rng = np.random.default_rng(1)
    words = ["the", "of", "and", "to", "a", "in", "thou", "art", "my", "lord", ",", "."]
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 25))) for _ in range(12)]
    bleu = BLEU(effective_order=True)
    expected = [bleu.sentence_score(t, texts[:i] + texts[i + 1:]).score / 100 for i, t in enumerate(texts)]
    assert report.self_bleu4(texts) == pytest.approx(expected, abs=1e-9)
    # with prompts (groups), a sample's references are the samples of the other prompts
    groups = [i % 3 for i in range(len(texts))]
    expected = [bleu.sentence_score(t, [u for u, g in zip(texts, groups) if g != groups[i]]).score / 100
                for i, t in enumerate(texts)]
    assert report.self_bleu4(texts, groups) == pytest.approx(expected, abs=1e-9)


def test_zipf_coefficient_recovers_a_known_slope():
    ranks = np.arange(1, 400)
    assert report.zipf_coefficient(1e6 * ranks ** -1.3) == pytest.approx(1.3, abs=1e-9)
    counts = Counter({f"t{r}": int(round(5000 * r ** -1.0)) for r in range(1, 200)})
    assert report.zipf_coefficient(counts) == pytest.approx(1.0, abs=0.05)
    assert math.isnan(report.zipf_coefficient(Counter({"a": 3})))


@pytest.mark.parametrize("ids, loop", [
    ([5, 6, 7] + [1, 2, 3] * 3, True),  # a 3-token phrase three times at the end
    ([9, 8] + [1, 2, 3] * 3 + [1, 2], True),  # ... with the last copy cut short by max_new_tokens
    ([4] * 6, True),  # one token six times
    ([4, 4, 4], False),  # too short to be a loop
    ([1, 2] * 2 + [3], False),  # the repetition is not at the end
    ([1, 2, 1, 2, 7, 8, 9, 10], False),
    (list(range(30)), False),
])
def test_loop_rule(ids, loop):
    assert report.ends_in_loop(ids) is loop


def test_metrics_spread_and_single_sample():
    samples = [Sample(0, [1, 2, 3, 4], "a b c d", [-1.0, -2.0, -1.0, -2.0], "max_new_tokens"),
               Sample(0, [1, 2, 1, 2, 1, 2], "a b a b a b", [-0.5] * 6, "max_new_tokens")]
    m = report.measure(samples)
    assert m["perplexity"].mean == pytest.approx(math.exp((6 + 3) / 10))  # pooled over tokens
    assert m["repetition_rate"].mean == pytest.approx(0.5)
    assert m["mean_length"].mean == pytest.approx(5.0)
    assert m["distinct_2"].mean == pytest.approx((1.0 + 2 / 5) / 2)
    assert m["perplexity"].low <= m["perplexity"].mean <= m["perplexity"].high
    single = report.measure(samples[:1])
    assert single["self_bleu4"].mean is None and single["perplexity"].low is None


# human text ------------------------------------------------------------------------------------------
def test_shipped_heldout_passages_split_where_tokenizing_apart_changes_nothing():
    from core.models.registry import load_tokenizer

    passages = report.load_passages()
    assert 200 <= len(passages) <= 400 and len({p.id for p in passages}) == len(passages)
    assert len({p.id.rsplit("-", 1)[0] for p in passages[:5]}) == 5  # the default prompt set spans works
    tok = load_tokenizer(ROOT / "assets" / "models" / "shakespeare-gpt2")
    for p in passages[:40]:
        assert tok.encode(p.prompt) + tok.encode(p.continuation) == tok.encode(p.prompt + p.continuation)


def test_human_perplexity_is_the_scoring_paths_and_the_engines_forced_path(playground):
    passage = Passage(PROMPT, "and then the wizard came back to the tower with a lamp.")
    [human] = report.score_human(playground, [(0, passage)], max_new_tokens=10)
    prompt_ids = playground.tokenizer.encode(PROMPT)
    cont = playground.tokenizer.encode(passage.continuation)[:10]
    scored = [lp for _, lp, *_ in score_ids(playground.lm, prompt_ids + cont, None)][-len(cont):]
    assert human.ids == cont and human.token_logprobs == pytest.approx(scored, abs=1e-6)
    forced = playground.compare(PROMPT, [DecodeSettings("greedy", max_new_tokens=len(cont))], forced_ids=cont)
    assert forced.runs[0].best.token_logprobs == pytest.approx(scored, abs=1e-4)
    m = report.measure([human])
    assert m["perplexity"].mean == pytest.approx(math.exp(-sum(scored) / len(scored)), rel=1e-9)


def test_human_row_takes_given_continuations_then_the_heldout_set():
    heldout = [Passage("p1", "c1", "a"), Passage("p2", "c2", "b"), Passage("p3", "c3", "c")]
    prompts = [Passage("mine", "my continuation"), Passage("p3", "")]
    chosen = report.human_passages(prompts, heldout, 3)
    assert [(i, p.continuation) for i, p in chosen] == [(0, "my continuation"), (1, "c3"), (None, "c1")]


# the report: one batch per prompt equals each strategy alone ------------------------------------------
LINEUP = "greedy;beam(num_beams=3);sample(top_k=0);sample(temperature=0.7,top_p=0.9,top_k=0)"


def test_batched_report_equals_each_strategy_decoded_alone(playground):
    runs = report.report_lineup(LINEUP, samples=3, max_new_tokens=8, seed=5)
    assert [s.seed for s in runs] == [5, 6, 7, 8] and [s.rows for s in runs] == [1, 3, 3, 3]
    heldout = [Passage("Once upon a time", " there lived a king who had three daughters.", "x")]
    rep = report.make_report(playground, [Passage(PROMPT, "")], runs, human=heldout)
    for run, row in zip(runs, rep.strategies):
        alone = playground.compare(PROMPT, [run]).runs[0]
        assert [s.ids for s in row.samples] == [q.ids for q in alone.sequences], row.name
        assert [lp for s in row.samples for lp in s.token_logprobs] == pytest.approx(
            [lp for q in alone.sequences for lp in q.token_logprobs], abs=1e-5)
    assert [r.name for r in rep.strategies] == ["greedy", "beam 3", "temperature 1.0", "temperature 0.7, top-p 0.9"]
    assert len(rep.strategies[2].samples) == 3 and rep.human is not None and len(rep.human.samples) == 1
    assert rep.figure1.beam_name == "beam 3" and len(rep.figure1.beam_probs) == len(rep.strategies[1].samples[0].ids)


# command line ------------------------------------------------------------------------------------------
def parse(*argv):
    parser = argparse.ArgumentParser()
    cli.add_report_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["report", *argv])


def test_cli_json_contract(tiny_dir, capsys):
    args = parse("--model", str(tiny_dir), "--prompt", PROMPT, "--samples", "2", "--max-new-tokens", "6",
                 "--lineup", "greedy;sample(top_k=0)", "--human-count", "3", "--seed", "1", "--json")
    assert cli.run_report(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in out["strategies"]] == ["greedy", "temperature 1.0"]
    for row in out["strategies"] + [out["human"]]:
        for key in ("perplexity", "self_bleu4", "zipf", "repetition_rate", "distinct_2", "mean_length"):
            assert set(row["metrics"][key]) == {"mean", "low", "high"}
        assert all({"ids", "text"} <= set(s) for s in row["samples"])
    assert len(out["strategies"][1]["samples"]) == 2 and len(out["human"]["samples"]) == 3
    assert out["strategies"][0]["metrics"]["self_bleu4"]["mean"] is None  # one greedy sample
    assert "13a" in out["rules"]["self_bleu4"] and out["seed"] == 1


def test_cli_table_marks_the_human_row(tiny_dir, capsys):
    assert cli.run_report(parse("--model", str(tiny_dir), "--prompt", PROMPT, "--samples", "2",
                                   "--max-new-tokens", "4", "--lineup", "greedy", "--human-count", "2")) == 0
    out = capsys.readouterr().out
    assert "* human text" in out and "greedy" in out and "repetition_rate:" in out


@pytest.mark.parametrize("argv, words", [
    (["--samples", "0"], "from 1 to 50"),
    (["--samples", "51"], "from 1 to 50"),
    (["--prompt", "   "], "empty"),
    (["--prompts-file", "/nonexistent/prompts.jsonl"], "cannot be read"),
    (["--lineup", "sample(top_k=0)", "--samples", "50", "--max-new-tokens", "200", "--prompt", "a", "--prompt", "b",
      "--prompt", "c", "--prompt", "d", "--prompt", "e", "--prompt", "f", "--prompt", "g", "--prompt", "h",
      "--prompt", "i", "--prompt", "j", "--prompt", "k"], "at most 100,000"),
    (["--lineup", "wibble(x=1)"], "names no strategy"),
    (["--lineup", "sample(x=1)"], "unknown setting"),
    (["--human-count", "-1"], "from 0 to 300"),
])
def test_cli_bad_input_is_one_sentence(argv, words):
    with pytest.raises(InvalidSetting, match=words):
        cli.run_report(parse("--model", "no-such-model", *argv))


@pytest.mark.parametrize("content, words", [("", "has no prompts"), ('{"prompt": 3}\n', "needs a text"),
                                            ("{not json\n", "not valid JSON")])
def test_bad_prompts_files(tmp_path, content, words):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(InvalidSetting, match=words):
        cli.run_report(parse("--model", "no-such-model", "--prompts-file", str(path)))


def test_prompts_file_with_continuations(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "Romeo.\\n", "continuation": "O, she doth teach"}\nJuliet.\n')
    prompts = cli.prompts_from_args(parse("--prompts-file", str(path)))
    assert prompts == [Passage("Romeo.\n", "O, she doth teach"), Passage("Juliet.", "")]


# the page ----------------------------------------------------------------------------------------------
def test_report_page_shows_every_strategy_and_the_human_row():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "7_report.py"), default_timeout=180)
    at.query_params["samples"] = "2"
    at.query_params["max_new_tokens"] = "8"
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["strategy"]) == ["greedy", "beam 5", "beam 5 + no-repeat 2", "temperature 1.0",
                                       "temperature 0.7", "top-k 40", "top-k 640", "top-p 0.95", "typical-p 0.95",
                                       "human text"]
    assert list(table["kind"]).count("human") == 1 and table["samples"].iloc[3] == 2
    assert len(at.get("plotly_chart")) == 2  # the chosen metric, and Figure 1
    assert dict(at.query_params)["samples"] == "2" and "lineup" in dict(at.query_params)
    at.selectbox(key="report_metric").set_value("zipf").run()  # no new decode: same table, new chart
    assert not at.exception and at.query_params["metric"] == "zipf"


def test_report_page_labels_its_table_and_scales_its_perplexity_chart_to_the_data():
    """Seen in a browser: the perplexity axis ran to 1e95 (plotly put the human line's label at 10^102) and
    the table showed identifiers and "None"."""
    import json

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "7_report.py"), default_timeout=180)
    at.query_params["samples"] = "2"
    at.query_params["max_new_tokens"] = "8"
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert {"Self-BLEU-4 (0-1)", "share of samples ending in a loop", "mean length (tokens)"} <= set(table.columns)
    assert not {"self_bleu4", "repetition_rate", "mean_length"} & set(table.columns)
    greedy = table[table["strategy"] == "greedy"].iloc[0]
    assert greedy["Self-BLEU-4 (0-1)"] == "n/a: 1 sample"
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = [v for v in chart["data"][0]["y"] if v is not None]
    low, high = chart["layout"]["yaxis"]["range"]
    assert chart["layout"]["yaxis"]["type"] == "log"
    assert low <= math.log10(min(bars)) and high >= math.log10(max(bars)) and high - low < 6, (low, high, bars)
    label = chart["layout"]["annotations"][0]
    assert label["text"].startswith("human text") and low <= label["y"] <= high


def test_each_prompt_draws_from_its_own_streams(playground):
    """Prompt p's run i is seeded seed + p x runs + i: prompts never share a random stream."""
    runs = report.report_lineup("greedy;sample(top_k=0)", samples=2, max_new_tokens=5, seed=3)
    assert [s.seed for s in report.prompt_seeds(runs, 0)] == [3, 4]
    assert [s.seed for s in report.prompt_seeds(runs, 2)] == [7, 8]
    rep = report.make_report(playground, [Passage(PROMPT, ""), Passage("Once upon a time", "")], runs,
                             human_count=0)
    second = playground.compare("Once upon a time", [runs[1].replace(seed=6)]).runs[0]
    assert [s.ids for s in rep.strategies[1].samples if s.prompt_index == 1] == [q.ids for q in second.sequences]
