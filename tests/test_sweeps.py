"""Sweeps on the Report (issue 22): the sweep syntax and its checks against each knob's declared range,
the points against the report's own decode and each run decoded alone, batching and the budget, the
command line's JSON and CSV, and the Report page's curves."""

import argparse
import csv
import io
import json
import re
from pathlib import Path

import pytest

from core import cli, limits, report
from core.decoding.knobs import Knob
from core.decoding.settings import KNOBS
from core.errors import InvalidSetting
from core.report import Passage, sweep
from core.views import report_figures

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "A long long time ago, "
OTHER = "Once upon a time"


# the syntax --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, knob, values", [
    ("top_p=0.5:1.0:6", "top_p", (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),
    ("min_p=0.0:0.3:6", "min_p", (0.0, 0.06, 0.12, 0.18, 0.24, 0.3)),
    (" temperature = 0.5, 1, 1.5 ", "temperature", (0.5, 1.0, 1.5)),
    ("top_k=0:640:5", "top_k", (0, 160, 320, 480, 640)),
    ("top_k=0:2:5", "top_k", (0, 1, 2)),  # whole numbers: a value rounded twice is one point
    ("top_p=0.9,0.9,1.0", "top_p", (0.9, 1.0)),
    ("eta_cutoff=1e-4:1e-3:2", "eta_cutoff", (1e-4, 1e-3)),
    ("repetition_penalty=1.0:1.4:3", "repetition_penalty", (1.0, 1.2, 1.4)),
])
def test_a_sweep_is_evenly_spaced_or_listed(text, knob, values):
    spec = report.parse_sweep(text)
    assert spec.knob == knob and spec.values == values
    assert all(type(v) is (int if KNOBS[knob].kind == "int" else float) for v in spec.values)


@pytest.mark.parametrize("text, words", [
    ("top_p=0:1:6", "top_p must be in (0, 1], got 0"),  # the knob's own range and sentence
    ("temperature=0.001,1", "temperature"),
    ("top_k=-5:10:3", "top_k must be a whole number of at least 0"),
    ("top_k=1.5,2", "not a whole number"),
    ("top_p=nan,1", "finite"),
    ("top_p=0.5:1:1", "from 2 to 20"),
    ("top_p=0.5:1:21", "from 2 to 20"),
    ("top_p=0.5:1", "start:stop:count"),
    ("top_p", "malformed"),
    ("wibble=1,2", "names no setting"),
    ("seed=1,2", "no range to sweep"),
    ("num_beams=1,2", "no range to sweep"),
    ("top_p=" + ",".join(["0.5"] * 21), "at most 20"),
])
def test_a_bad_sweep_is_one_sentence(text, words):
    with pytest.raises(InvalidSetting, match=re.escape(words)) as exc:
        report.parse_sweep(text)
    assert "\n" not in str(exc.value)


def test_sweepable_knobs_follow_the_declarations(monkeypatch):
    knobs = report.sweepable()
    assert {"temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
            "repetition_penalty"} <= set(knobs)
    assert not {"seed", "max_new_tokens", "num_return_sequences", "num_beams", "strategy"} & set(knobs)
    # a setting a new processor declares (the watermark's bias, say) joins with its range, unlisted anywhere
    monkeypatch.setitem(KNOBS, "toy_bias", Knob(0.0, "a toy processor's bias", low=0, high=10))
    assert report.parse_sweep("toy_bias=0:10:3").values == (0.0, 5.0, 10.0)
    with pytest.raises(InvalidSetting, match="toy_bias must be in"):
        report.parse_sweep("toy_bias=0:20:3")


def test_several_sweeps_one_knob_each():
    specs = report.parse_sweeps(["top_p=0.5:1.0:6", "min_p=0.0:0.3:6"])
    assert [s.knob for s in specs] == ["top_p", "min_p"]
    with pytest.raises(InvalidSetting, match="swept twice"):
        report.parse_sweeps(["top_p=0.5,1", "top_p=0.7"])
    with pytest.raises(InvalidSetting, match="at most 6 knobs"):
        report.parse_sweeps([f"top_p=0.{i}" for i in range(1, 8)])
    assert [s.knob for s in report.parse_sweep_lines("top_p=0.5,1\n\n min_p=0.1\n")] == ["top_p", "min_p"]


# the points ---------------------------------------------------------------------------------------------
def test_each_point_is_the_reports_run_and_its_run_decoded_alone(playground):
    """The point at the base run's own value is the report's row for that run, sample for sample (same
    streams); any other point is its run decoded alone, prompt by prompt (seed + p x base runs)."""
    prompts = [Passage(PROMPT, ""), Passage(OTHER, "")]
    base = report.base_runs(None, samples=2, max_new_tokens=3, seed=4)
    specs = report.parse_sweeps(["top_p=0.8,1.0", "temperature=0.7,1.0"])
    result = report.make_sweep(playground, prompts, base, specs, human_count=0)
    assert result.batches == 1 and [len(s.points) for s in result.sweeps] == [2, 2]
    rep = report.make_report(playground, prompts, report.report_lineup("sample(top_k=0)", samples=2, max_new_tokens=3,
                                                                         seed=4), human_count=0)
    at_base = result.sweeps[0].points[1]
    assert at_base.value == 1.0 and at_base.method == "temperature 1.0"
    assert [s.ids for s in at_base.report.samples] == [s.ids for s in rep.strategies[0].samples]
    assert at_base.report is result.sweeps[1].points[1].report and result.decoded == 3  # equal settings: decoded once
    for point, pi in ((result.sweeps[0].points[0], 1), (result.sweeps[1].points[0], 0)):
        alone = playground.compare(prompts[pi].prompt, [point.run.replace(seed=4 + pi)]).runs[0]
        assert [s.ids for s in point.report.samples if s.prompt_index == pi] == [q.ids for q in alone.sequences]
        assert point.report.metrics["distinct_2"].mean == pytest.approx(
            report.measure(point.report.samples)["distinct_2"].mean)
    assert result.sweeps[0].points[0].report.name == "top-p 0.8"


def test_batches_split_by_rows_and_give_the_same_samples(playground, monkeypatch):
    prompts = [Passage(PROMPT, "")]
    base = report.base_runs(None, samples=3, max_new_tokens=3, seed=0)
    specs = [report.parse_sweep("min_p=0.05,0.2")]
    together = report.make_sweep(playground, prompts, base, specs, human_count=0)
    monkeypatch.setattr(limits, "MAX_REPORT_ROWS", 4)  # one 3-row point per batch
    assert sweep.plan_batches(sweep.distinct_runs(sweep.sweep_points(base, specs))) == [[0], [1]]
    apart = report.make_sweep(playground, prompts, base, specs, human_count=0)
    assert (together.batches, apart.batches) == (1, 2)
    assert [[s.ids for s in p.report.samples] for p in apart.points] == \
        [[s.ids for s in p.report.samples] for p in together.points]


def test_a_sweep_past_the_budget_says_how_many_points_fit():
    prompts = [Passage(f"p{i}", "") for i in range(5)]
    base = report.base_runs(None, samples=50, max_new_tokens=200, seed=0)
    points = sweep.sweep_points(base, [report.parse_sweep("top_p=0.1:1.0:10")])
    # 10 points x 50 rows x 200 tokens x 5 prompts = 500,000 row-tokens; 50,000 a point
    with pytest.raises(InvalidSetting, match="500,000 row-tokens, but a report may use at most 100,000 row-tokens: "
                                             "2 of its 10 points fit"):
        sweep.check_budget(prompts, points)
    small = report.base_runs(None, samples=2, max_new_tokens=10, seed=0)
    few = sweep.sweep_points(small, [report.parse_sweep("top_p=0.5,1.0")])
    sweep.check_budget(prompts[:1], few, parameters=5_000_000)  # 40 row-tokens: fine
    with pytest.raises(InvalidSetting, match=r"row-token-parameters on this 10000M-parameter model: not even one"):
        sweep.check_budget(prompts, few, parameters=10**10, device_type="cpu")


def test_a_base_run_that_does_not_read_the_knob_is_refused():
    base = report.base_runs("greedy", samples=2, max_new_tokens=4, seed=0)
    with pytest.raises(InvalidSetting, match="temperature is not read by greedy"):
        sweep.sweep_points(base, [report.parse_sweep("temperature=0.5,1")])
    with pytest.raises(InvalidSetting, match="at most 48"):
        sweep.sweep_points(report.base_runs("sample(top_k=0);sample(top_k=40);sample(top_p=0.9)", samples=1,
                                            max_new_tokens=4, seed=0),
                           report.parse_sweeps(["top_p=0.05:1:20", "min_p=0:0.5:20"]))


def test_the_model_checks_each_point(playground):
    base = report.base_runs(None, samples=1, max_new_tokens=4, seed=0)
    with pytest.raises(InvalidSetting, match="The sweep of top_k at 99999 on temperature 1.0: top_k must be"):
        report.check_sweep(playground, [Passage(PROMPT, "")], base, [report.parse_sweep("top_k=5,99999")])


# command line -------------------------------------------------------------------------------------------
def parse(*argv):
    parser = argparse.ArgumentParser()
    cli.add_report_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["report", *argv])


def test_cli_sweep_json_and_csv(tmp_path, capsys):
    out_csv = tmp_path / "sweep.csv"
    args = parse("--prompt", PROMPT, "--samples", "2",
                 "--max-new-tokens", "3", "--sweep", "top_p=0.5:1.0:3", "--sweep", "min_p=0.1,0.2",
                 "--human-count", "3", "--json", "--csv", str(out_csv))
    assert cli.run_report(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["knob"] for s in out["sweeps"]] == ["top_p", "min_p"]
    assert [p["value"] for p in out["sweeps"][0]["points"]] == [0.5, 0.75, 1.0]
    for point in out["sweeps"][0]["points"] + out["sweeps"][1]["points"]:
        assert set(point["metrics"]) == set(report.METRICS)
        assert all(set(m) == {"mean", "low", "high"} for m in point["metrics"].values())
        assert point["method"] == "temperature 1.0" and len(point["samples"]) == 2
        assert point["metrics"]["perplexity"]["low"] <= point["metrics"]["perplexity"]["mean"] \
            <= point["metrics"]["perplexity"]["high"]
    assert out["human"]["name"] == "human text" and len(out["human"]["samples"]) == 3
    assert out["base"] == "sample(top_k=0)" and out["samples_per_point"] == 2 and "sweep_seeds" in out["rules"]
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [(r["knob"], r["value"], r["kind"]) for r in rows] == [
        ("top_p", "0.5", "point"), ("top_p", "0.75", "point"), ("top_p", "1.0", "point"),
        ("min_p", "0.1", "point"), ("min_p", "0.2", "point"), ("", "", "human")]
    assert float(rows[0]["perplexity"]) == pytest.approx(out["sweeps"][0]["points"][0]["metrics"]["perplexity"]["mean"])


def test_cli_sweep_table_on_a_lineup(capsys):
    assert cli.run_report(parse("--prompt", PROMPT, "--samples", "2", "--max-new-tokens",
                                "3", "--lineup", "sample(top_k=0);sample(top_k=0,temperature=0.7)",
                                "--sweep", "top_p=0.9,1.0", "--human-count", "2")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "4 points (4 runs decoded) in 1 batch(es) per prompt" in lines[0]
    assert lines[1].split()[:3] == ["knob", "base", "run"]
    assert sum(line.startswith("  top_p") for line in lines) == 4 and any(line.startswith("* human text") for line in lines)
    assert any("temperature 0.7" in line and "0.9" in line for line in lines)


@pytest.mark.parametrize("argv, words", [
    (["--sweep", "top_p=0:1:6"], "top_p must be in"),
    (["--sweep", "wibble=1,2"], "names no setting"),
    (["--sweep", "top_p=0.5:1:1"], "from 2 to 20"),
    (["--sweep", "temperature=0.5,1", "--lineup", "greedy"], "not read by greedy"),
    (["--sweep", "top_p=0.1:1:20", "--sweep", "min_p=0:0.3:20", "--samples", "50", "--max-new-tokens", "200"],
     "points fit"),
])
def test_cli_bad_sweeps_are_one_sentence_before_the_model_loads(argv, words):
    with pytest.raises(InvalidSetting, match=words):
        cli.run_report(parse("--model", "no-such-model", *argv))


# the page -----------------------------------------------------------------------------------------------
def test_picked_point_reads_only_a_points_index():
    assert report_figures.picked_point({"selection": {"points": [{"customdata": 3}]}}, 4) == 3
    assert report_figures.picked_point({"selection": {"points": [{"customdata": [2]}]}}, 4) == 2
    for junk in (None, {}, {"selection": {"points": [{"x": 1}]}}, {"selection": {"points": [{"customdata": 9}]}},
                 {"selection": {"points": [{"customdata": True}]}}, {"selection": {"points": "x"}}):
        assert report_figures.picked_point(junk, 4) is None


def test_report_page_draws_the_sweep_and_a_points_samples():
    from streamlit.testing.v1 import AppTest

    from core.views import share

    at = AppTest.from_file(str(ROOT / "pages" / "7_report.py"), default_timeout=180)
    for key, value in {"mode": "sweep", "sweep": "top_p=0.5,1.0\nmin_p=0.1,0.2", "samples": "2",
                       "max_new_tokens": "6", "point": "3"}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    layout = chart["layout"]
    assert layout["xaxis"]["title"]["text"] == "distinct-2" and layout["yaxis"]["title"]["text"] == "perplexity (raw model)"
    assert layout["yaxis"]["type"] == "log"
    curves = {t["name"]: t for t in chart["data"]}
    assert set(curves) == {"top-p (base: temperature 1.0)", "min-p (base: temperature 1.0)", "human text", "picked"}
    assert curves["top-p (base: temperature 1.0)"]["text"] == ["0.5", "1.0"]
    assert curves["min-p (base: temperature 1.0)"]["text"] == ["0.1", "0.2"]
    assert curves["min-p (base: temperature 1.0)"]["customdata"] == [2, 3]
    assert curves["human text"]["marker"]["symbol"] == "star"
    assert curves["top-p (base: temperature 1.0)"]["error_y"]["visible"] is True
    assert curves["picked"]["x"] == [curves["min-p (base: temperature 1.0)"]["x"][1]]
    table = at.dataframe[0].value
    assert list(table["value"]) == ["0.5", "1.0", "0.1", "0.2", ""] and list(table["kind"])[-1] == "human"
    samples = at.dataframe[1].value
    assert len(samples) == 2 and at.selectbox(key="report_point").value == 3
    assert at.selectbox(key="report_point").options[3] == "min_p=0.2 on temperature 1.0"
    assert dict(at.query_params)["mode"] == "sweep" and dict(at.query_params)["point"] == "3"
    assert share.read_params(dict(at.query_params), {"sweep": ""})[0]["sweep"] == "top_p=0.5,1.0\nmin_p=0.1,0.2"
    at.selectbox(key="report_diversity").set_value("self_bleu4").run()  # the same points, the other figure
    assert not at.exception
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["xaxis"]["title"]["text"] == "Self-BLEU-4 (0-1)"
    assert at.query_params["diversity"] == "self_bleu4"


def test_report_page_refuses_a_bad_sweep_from_a_link_in_one_sentence():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "7_report.py"), default_timeout=60)
    for key, value in {"mode": "sweep", "sweep": "top_p=0:1:6", "max_new_tokens": "4", "point": "40"}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] and "top\\_p must be in" in at.error[0].value
    assert not at.get("plotly_chart")
