"""The green-list watermark (issue 21): token parity with generate(watermarking_config=...), the detector's
figures held to transformers' own WatermarkDetector on the same ids, the attacks, the command line, and
bad input in one sentence each."""

import json
import math

import pytest
import torch
from hypothesis import example, given, settings as hsettings, strategies as st
from transformers import WatermarkDetector, WatermarkingConfig

from conftest import PROMPTS
from core import watermark
from core.cli import main
from core.decoding import lineup as lineup_syntax
from core.decoding.settings import DecodeSettings, validate
from core.errors import InvalidSetting
from core.models import registry
from core.playground import Playground
from core.views import recipe as recipe_view
from core.views import share

WATERMARKS = {  # each a different green list: ratio, key, scheme and width all reach the processor
    "lefthash 2.5": dict(watermark_bias=2.5),
    "selfhash width 2, half green, bias 4": dict(watermark_bias=4.0, seeding_scheme="selfhash", context_width=2,
                                                 greenlist_ratio=0.5),
    "lefthash width 3, key 7, bias 1": dict(watermark_bias=1.0, context_width=3, hashing_key=7),
}
DETERMINISTIC = {
    "greedy": DecodeSettings("greedy", max_new_tokens=12),
    "beam 3": DecodeSettings("beam", num_beams=3, max_new_tokens=12),
    "beam 3, 2 returned, no-repeat 2, repetition 1.3": DecodeSettings(
        "beam", num_beams=3, num_return_sequences=2, no_repeat_ngram_size=2, repetition_penalty=1.3, max_new_tokens=12),
}
# GPT-2's vocabulary is past 2^15 tokens, where torch's randperm (one per green list) takes ~28 ms: the tiny
# GPT-2 runs lefthash only; selfhash (40 lists a step) runs on the shipped model's 8,192 tokens
ON_TINY_GPT2 = [("greedy", "lefthash 2.5"), ("greedy", "lefthash width 3, key 7, bias 1"), ("beam 3", "lefthash 2.5"),
                ("beam 3, 2 returned, no-repeat 2, repetition 1.3", "lefthash width 3, key 7, bias 1")]


@pytest.fixture(scope="module")
def shipped():
    return Playground.load(registry.default_model(), device="cpu")


def marked(s: DecodeSettings, name: str) -> DecodeSettings:
    return s.replace(watermark=True, **WATERMARKS[name])


def generate(pg, ids, s: DecodeSettings, **extra):
    prompt = torch.tensor([ids])
    return pg.model.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=pg.facts.pad_token_id,
                             **s.generate_kwargs(), **extra)


def assert_same_tokens(pg, result, s, out):
    for i, seq in enumerate(result.runs[0].sequences):
        expected = out[i, len(result.prompt_ids):].tolist()
        assert seq.ids == expected[:len(seq.ids)]
        assert all(t == pg.facts.pad_token_id for t in expected[len(seq.ids):])  # padding after an end of text


def test_generate_kwargs_carry_one_watermarking_config():
    s = DecodeSettings("greedy", watermark=True, watermark_bias=2.5, seeding_scheme="selfhash", context_width=2)
    config = s.generate_kwargs()["watermarking_config"]
    assert isinstance(config, WatermarkingConfig)
    assert config.to_dict() == {"greenlist_ratio": 0.25, "bias": 2.5, "hashing_key": 15485863,
                                "seeding_scheme": "selfhash", "context_width": 2}
    assert "watermarking_config" not in DecodeSettings("greedy", watermark_bias=3.0).generate_kwargs()
    assert not {"watermark", "watermark_bias", "context_width"} & set(s.generate_kwargs())  # no loose keywords
    assert s.params()["watermarking_config"]["bias"] == 2.5 and json.dumps(s.params())
    assert s.name() == "greedy + watermark 2.5 (selfhash, width 2)"


@pytest.mark.parametrize("name, wm", ON_TINY_GPT2)
def test_same_tokens_as_generate_with_the_watermark(playground, name, wm):
    s = marked(DETERMINISTIC[name], wm)
    result = playground.decode(PROMPTS[1], s)
    assert_same_tokens(playground, result, s, generate(playground, result.prompt_ids, s))
    steps = result.runs[0].best.steps  # the watermark was applied: it moved the processed distribution
    assert any(abs(st.processed_logprob - st.logprob) > 1e-3 for st in steps), "no bias: the test would prove nothing"


@pytest.mark.parametrize("wm", ["lefthash 2.5", "selfhash width 2, half green, bias 4"])
@pytest.mark.parametrize("name", ["greedy", "beam 3, 2 returned, no-repeat 2, repetition 1.3"])
def test_same_tokens_as_generate_on_the_shipped_model(shipped, name, wm):
    s = marked(DETERMINISTIC[name].replace(max_new_tokens=16), wm)
    result = shipped.decode("Romeo.\n", s)
    assert_same_tokens(shipped, result, s, generate(shipped, result.prompt_ids, s))


@pytest.mark.parametrize("wm", ["lefthash 2.5", "selfhash width 2, half green, bias 4"])
def test_sampling_with_the_same_seed_draws_the_same_tokens_as_generate(shipped, wm):
    """generate() draws from the global generator seeded with torch.manual_seed(seed); the engine from its own
    generator seeded with the same seed: on the CPU the same stream, so the same tokens."""
    for seed in (0, 7):
        s = marked(DecodeSettings("sample", top_k=0, temperature=1.3, max_new_tokens=20, seed=seed), wm)
        result = shipped.decode(PROMPTS[0], s)
        torch.manual_seed(seed)
        assert_same_tokens(shipped, result, s, generate(shipped, result.prompt_ids, s))


def test_each_sampling_step_is_the_distribution_generate_samples_from(shipped):
    s = marked(DecodeSettings("sample", top_k=20, temperature=0.8, max_new_tokens=12, seed=3), "lefthash 2.5")
    ids = shipped.encode_prompt(PROMPTS[1], 12)[0]
    torch.manual_seed(1234)
    out = generate(shipped, ids, s, output_scores=True, return_dict_in_generate=True)
    drawn = out.sequences[0, len(ids):].tolist()
    steps = shipped.decode(PROMPTS[1], s, forced_ids=drawn, keep_distributions=True).runs[0].best.steps
    for step, theirs in zip(steps, out.scores):
        expected = torch.log_softmax(theirs[0], -1)
        kept = torch.isfinite(expected)
        assert torch.equal(torch.isfinite(step.distribution), kept)
        assert torch.allclose(step.distribution[kept].exp(), expected[kept].exp(), atol=1e-6)


def detector_says(pg, s, ids, threshold=watermark.DEFAULT_THRESHOLD):
    detector = WatermarkDetector(model_config=pg.model.config, device="cpu",
                                 watermarking_config=s.generate_kwargs()["watermarking_config"])
    return detector(torch.tensor([ids]), z_threshold=threshold, return_dict=True)


@pytest.mark.parametrize("wm", WATERMARKS)
def test_the_detector_figures_are_watermark_detectors(shipped, wm):
    s = marked(DecodeSettings("sample", top_k=0, max_new_tokens=60, seed=1), wm)
    result = shipped.decode("Romeo.\n", s)
    plain = shipped.decode("Romeo.\n", s.replace(watermark=False)).runs[0].best.ids
    for ids in (result.runs[0].best.ids, plain, plain[:25]):
        ours = watermark.detect_for(shipped, ids, s)
        theirs = detector_says(shipped, s, ids)
        assert ours.tokens_scored == theirs.num_tokens_scored[0]
        assert ours.green_tokens == theirs.num_green_tokens[0]
        assert ours.green_fraction == pytest.approx(theirs.green_fraction[0], abs=1e-12)
        assert ours.z_score == pytest.approx(theirs.z_score[0], abs=1e-9)
        assert ours.p_value == pytest.approx(float(theirs.p_value[0]), rel=1e-6, abs=1e-300)
        assert ours.prediction == bool(theirs.prediction[0])
        # the z-score as the text grows is the detector's on each prefix
        scored = [m for m in ours.tokens if m.scored and m.index >= s.context_width]  # a prefix the detector reads
        for mark in (scored[0], scored[len(scored) // 2], scored[-1]):
            prefix = ids[:mark.index + 1]
            assert mark.z == pytest.approx(detector_says(shipped, s, prefix).z_score[0], abs=1e-9)
    marked_z = watermark.detect_for(shipped, result.runs[0].best.ids, s).z_score
    assert marked_z > watermark.detect_for(shipped, plain, s).z_score


def test_a_marked_greedy_run_is_found_and_the_same_run_unmarked_is_not(shipped):
    """The issue's example: bias 2.5, greedy, 60 tokens: z near 9 marked, near 0 unmarked."""
    s = DecodeSettings("greedy", max_new_tokens=60, watermark=True, watermark_bias=2.5)
    result = shipped.compare("Romeo.\n", [s, s.replace(watermark=False)])
    found = watermark.mark_run(shipped, s, result.prompt_ids, result.runs[0].best.ids)
    plain = watermark.detect_for(shipped, result.runs[1].best.ids, s)
    assert found.prediction is True and found.z_score > 6 and "Watermarked" in found.verdict
    assert plain.prediction is False and abs(plain.z_score) < 3
    # each token's list at its step, with the bias the processor gave it: green tokens got 2.5, red nothing
    assert all(m.bias == pytest.approx(2.5 if m.green else 0.0, abs=1e-5) for m in found.tokens)
    assert found.tokens[0].green is not None and not found.tokens[0].scored  # its list came from the prompt


def test_selfhash_favours_only_green_tokens_among_the_40_most_likely(shipped):
    """The bias each token got is what transformers' processor added at its step, replayed: under selfhash a
    green token outside the 40 most likely candidates got nothing."""
    s = marked(DecodeSettings("sample", top_k=0, temperature=2.0, max_new_tokens=40, seed=2),
               "selfhash width 2, half green, bias 4")
    result = shipped.decode(PROMPTS[0], s)
    found = watermark.mark_run(shipped, s, result.prompt_ids, result.runs[0].best.ids)
    steps = result.runs[0].best.steps
    for m, step in zip(found.tokens, steps):
        assert m.bias in (0.0, pytest.approx(4.0, abs=1e-4))
        if m.bias:
            assert m.green
        if step.rank <= 10 and m.green:  # a likely green token is always among the 40 looked at
            assert m.bias == pytest.approx(4.0, abs=1e-4)
    assert any(m.green and not m.bias for m in found.tokens), "no green token outside the 40 was drawn"


def test_too_short_to_judge_is_said_not_guessed(shipped):
    s = DecodeSettings(watermark=True)
    ids = shipped.tokenizer.encode("To be, or not to be")
    few = watermark.detect_for(shipped, ids, s)
    assert few.prediction is None and few.verdict.startswith("Too short to judge")
    one = watermark.detect_for(shipped, ids[:1], s)
    assert one.tokens_scored == 0 and one.prediction is None and one.z_score is None
    with pytest.raises(ValueError):  # the detector itself refuses that one
        detector_says(shipped, s, ids[:1])
    wide = watermark.detect_for(shipped, ids, s.replace(context_width=5, greenlist_ratio=0.9))
    assert wide.prediction is None and "even if all" in wide.verdict


@pytest.mark.parametrize("text", ["", "   \n", "\u200b"])
def test_text_that_tokenizes_to_nothing_is_one_sentence(shipped, text, monkeypatch):
    if text == "\u200b":  # a text the tokenizer turns into no ids at all
        monkeypatch.setattr(shipped.tokenizer, "encode", lambda t: [])
    with pytest.raises(InvalidSetting) as info:
        watermark.detect_text(shipped, text, DecodeSettings(watermark=True))
    assert str(info.value).count(".") == 1 and "\n" not in str(info.value)


def test_edits_lower_the_z_score_and_are_seeded(shipped):
    s = DecodeSettings("sample", top_k=0, max_new_tokens=80, seed=4, watermark=True, watermark_bias=4.0)
    ids = shipped.decode("Romeo.\n", s).runs[0].best.ids
    edited, where = watermark.edit_tokens(ids, 0.3, 5, shipped.facts.vocab_size)
    assert len(where) == round(0.3 * len(ids)) and all(edited[i] != ids[i] for i in where)
    assert [i for i in range(len(ids)) if edited[i] != ids[i]] == where
    assert watermark.edit_tokens(ids, 0.3, 5, shipped.facts.vocab_size) == (edited, where)
    curve = watermark.edit_curve(shipped, ids, s, shares=(0.0, 0.3, 0.6, 1.0), seed=5)
    zs = [p.z_score for p in curve]
    assert zs[0] > 6 and zs[0] > zs[1] > zs[2] and abs(zs[3]) < 3.5
    assert curve[1].z_score == watermark.detect_for(shipped, edited, s).z_score


def test_another_model_continuing_dilutes_the_mark(shipped):
    other = Playground.load("shakespeare-lstm", device="cpu")
    s = DecodeSettings("sample", top_k=0, max_new_tokens=60, seed=4, watermark=True, watermark_bias=4.0)
    ids = shipped.decode("Romeo.\n", s).runs[0].best.ids
    curve = watermark.continuation_curve(shipped, other, "Romeo.\n", ids, s, shares=(0.0, 0.5, 1.0))
    assert curve[0].z_score == pytest.approx(watermark.detect_for(shipped, ids, s).z_score)
    assert curve[0].z_score > curve[1].z_score > curve[2].z_score and abs(curve[2].z_score) < 3.5


def test_false_positives_on_the_human_passages(shipped):
    from core import report

    passages = report.load_passages()
    assert len(passages) == 298
    fp = watermark.false_positives(shipped, passages[:60], DecodeSettings(watermark=True), tokens=50)
    assert fp.judged == 60 and fp.flagged == sum(z > 4 for z in fp.z_scores) and fp.rate < 0.05
    loose = fp.at(0.0)
    assert loose.z_scores == fp.z_scores and 0.2 < loose.rate < 0.8  # about half above 0 when nothing is marked


def test_the_recipe_calls_generate_with_a_watermarking_config(shipped):
    s = DecodeSettings("greedy", max_new_tokens=8, watermark=True, watermark_bias=2.5, seeding_scheme="selfhash")
    result = shipped.decode("Romeo.\n", s)
    rec = recipe_view.recipe(result, [s], "Romeo.\n")
    json.dumps(rec)
    code = recipe_view.generate_snippet(rec)
    assert "from transformers import WatermarkingConfig" in code
    assert ("watermarking_config=WatermarkingConfig(greenlist_ratio=0.25, bias=2.5, hashing_key=15485863, "
            "seeding_scheme='selfhash', context_width=1)") in code
    call = next(line for line in code.splitlines() if "model.generate(" in line)
    namespace = {"model": shipped.model, "prompt_ids": torch.tensor([result.prompt_ids]), "torch": torch,
                 "pad": shipped.facts.pad_token_id, "WatermarkingConfig": WatermarkingConfig}
    exec(call, namespace)  # the script's own call gives the run's tokens
    assert namespace["out"][0, len(result.prompt_ids):].tolist() == result.runs[0].best.ids


def test_lineup_and_link_round_trip_the_watermark():
    runs = lineup_syntax.parse_lineup("greedy(watermark=true,watermark_bias=2.5,seeding_scheme=selfhash)",
                                      max_new_tokens=5, seed=0)
    assert runs[0].watermark is True and runs[0].seeding_scheme == "selfhash"
    assert lineup_syntax.parse_run(lineup_syntax.run_spec(runs[0]), max_new_tokens=5, seed=0) == runs[0]
    state, problems = share.read_params({"seeding_scheme": "selfhash"}, {"seeding_scheme": share.Param.from_knob(
        "seeding_scheme")})
    assert state["seeding_scheme"] == "selfhash" and not problems
    state, problems = share.read_params({"seeding_scheme": "<b>x</b>"}, {"seeding_scheme": share.Param.from_knob(
        "seeding_scheme")})
    assert state["seeding_scheme"] == "lefthash" and problems == [
        "The link's seeding_scheme='<b>x</b>' is not one of lefthash, selfhash; using 'lefthash'."]


@pytest.mark.parametrize("changes, message", [
    ({"watermark": "yes"}, "watermark must be true or false, got 'yes'."),
    ({"watermark_bias": -1.0}, "watermark_bias must be in [0, 20], got -1; the paper uses 0.5 to 10; 2.0 is "
                               "transformers' default."),
    ({"watermark_bias": 21.0}, "watermark_bias must be in [0, 20], got 21; the paper uses 0.5 to 10; 2.0 is "
                               "transformers' default."),
    ({"watermark_bias": float("nan")}, "watermark_bias must be a finite number, got nan."),
    ({"greenlist_ratio": 0.0}, "greenlist_ratio must be in (0, 1), got 0; 0.25 is transformers' default."),
    ({"greenlist_ratio": 1.0}, "greenlist_ratio must be in (0, 1), got 1; 0.25 is transformers' default."),
    ({"hashing_key": -1}, "hashing_key must be a whole number from 0 to 4294967295, got -1."),
    ({"hashing_key": 2**64}, f"hashing_key must be a whole number from 0 to 4294967295, got {2**64}."),
    ({"hashing_key": 1.5}, "hashing_key must be a whole number from 0 to 4294967295, got 1.5."),
    ({"seeding_scheme": "minhash"}, "seeding_scheme must be one of lefthash, selfhash, got 'minhash'."),
    ({"context_width": 0}, "context_width must be a whole number from 1 to 16, got 0."),
    ({"context_width": 17}, "context_width must be a whole number from 1 to 16, got 17."),
])
def test_bad_watermark_settings_are_one_sentence(changes, message):
    with pytest.raises(InvalidSetting) as info:
        validate(DecodeSettings("greedy", **{"watermark": True, **changes}), vocab_size=8192, context_length=256)
    assert str(info.value) == message


@given(name=st.sampled_from(["watermark", "watermark_bias", "greenlist_ratio", "hashing_key", "seeding_scheme",
                             "context_width"]),
       value=st.one_of(st.text(max_size=60), st.sampled_from(["nan", "-inf", "1e309", "-1", "0", "1", "true",
                                                              "selfhash", "9" * 80, "0x10", "<i>x</i>"])))
@example(name="seeding_scheme", value="[\n0")  # found by Hypothesis: the run's name in the refusal held the newline
@hsettings(max_examples=300, deadline=None)
def test_the_watermark_in_a_lineup_is_settings_or_one_sentence(name, value):
    try:
        runs = lineup_syntax.parse_lineup(f"greedy(watermark=true,{name}={value})", max_new_tokens=5, seed=0)
        lineup_syntax.validate_lineup(runs, lambda s: validate(s, vocab_size=8192, context_length=256))
    except InvalidSetting as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert isinstance(runs[0].watermark, bool) and runs[0].seeding_scheme in ("lefthash", "selfhash")


@given(params=st.dictionaries(st.sampled_from(["watermark_bias", "greenlist_ratio", "hashing_key", "seeding_scheme",
                                               "context_width"]),
                              st.one_of(st.text(max_size=40), st.sampled_from(["nan", "1e309", "-1", "0", "1", "17"])),
                              max_size=5))
@hsettings(max_examples=200, deadline=None)
def test_watermark_links_fall_back_to_allowed_values(params):
    schema = {name: share.Param.from_knob(name) for name in ("watermark_bias", "greenlist_ratio", "hashing_key",
                                                             "seeding_scheme", "context_width")}
    state, problems = share.read_params(params, schema)
    validate(DecodeSettings("greedy", watermark=True, **state), vocab_size=8192, context_length=256)
    assert len(problems) <= len(params) and all("\n" not in p for p in problems)


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own refusals: one line, exit 2
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_on_the_command_line_is_the_detectors(shipped, capsys):
    s = DecodeSettings("greedy", max_new_tokens=50, watermark=True, watermark_bias=2.5, hashing_key=42)
    code, out, err = run_cli(capsys, "decode", "--prompt", "Romeo.\n", "--max-new-tokens", 50, "--watermark",
                             "--watermark-bias", 2.5, "--hashing-key", 42, "--json")
    assert code == 0, err
    run = json.loads(out)["runs"][0]
    assert run["ids"] == shipped.decode("Romeo.\n", s).runs[0].best.ids
    assert run["params"]["watermarking_config"]["hashing_key"] == 42
    code, out, err = run_cli(capsys, "detect", "--text", run["text"], "--watermark-bias", 2.5, "--hashing-key", 42,
                             "--json")
    assert code == 0, err
    seen = json.loads(out)
    ids = shipped.tokenizer.encode(run["text"])
    theirs = detector_says(shipped, s, ids)
    assert seen["z_score"] == pytest.approx(theirs.z_score[0]) and seen["prediction"] is True
    assert seen["tokens_scored"] == theirs.num_tokens_scored[0] and seen["green_fraction"] == pytest.approx(
        theirs.green_fraction[0])
    assert {"z_score", "p_value", "green_fraction", "prediction", "tokens_scored", "verdict", "tokens"} <= set(seen)
    code, out, err = run_cli(capsys, "detect", "--text", run["text"], "--hashing-key", 43)  # the wrong key
    assert code == 0 and out.startswith("No watermark found: z = ")


@pytest.mark.parametrize("argv, message", [
    (["detect", "--text", "   "], "error: The text is empty; paste the text to look for a watermark in."),
    (["detect", "--text", "Romeo", "--seeding-scheme", "minhash"], "error: argument --seeding-scheme: invalid choice"),
    (["detect", "--text", "Romeo", "--greenlist-ratio", "1.5"], "error: greenlist_ratio must be in (0, 1), got 1.5"),
    (["detect", "--text", "Romeo", "--z-threshold", "nan"], "error: The z-score threshold must be a number from 0"),
    (["detect", "--text", "Romeo", "--context-width", "0"], "error: context_width must be a whole number from 1 to 16"),
    (["decode", "--prompt", "Romeo", "--watermark", "--watermark-bias", "-2"], "error: watermark_bias must be in [0, 20]"),
    (["decode", "--prompt", "Romeo", "--watermark", "maybe"], "error: argument --watermark: expected true or false, got 'maybe'"),
])
def test_bad_detect_and_watermark_flags_are_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1, err


def test_vllm_refuses_the_watermark_by_name():
    from core.backends.vllm import VLLMPlayground

    assert VLLMPlayground.unsupported(DecodeSettings("greedy", watermark=True)) == "vLLM's API has no watermark"
    assert VLLMPlayground.unsupported(DecodeSettings("greedy", watermark_bias=5.0)) is None  # off: nothing to refuse


def test_threshold_is_checked():
    for bad in (-1, 21, float("nan"), True, "4"):
        with pytest.raises(InvalidSetting):
            watermark.check_threshold(bad)
    assert watermark.check_threshold(4) == 4.0 and math.isfinite(watermark.check_threshold(0))


def test_the_lab_shows_the_detectors_figures_and_its_link_reproduces_them(shipped):
    from test_pages import page

    pasted = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
    at = page("watermark", max_new_tokens=30, watermark_bias=2.5, prompt="Romeo.\n", text=pasted, quality="true",
              quality_lineup="greedy", samples=2)
    assert not at.exception and not at.error, [e.value for e in at.error]
    s = DecodeSettings("greedy", max_new_tokens=30, watermark=True, watermark_bias=2.5)
    result = shipped.decode("Romeo.\n", s)
    found = watermark.mark_run(shipped, s, result.prompt_ids, result.runs[0].best.ids)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["z-score"] == f"{found.z_score:.2f}" and metrics["Tokens scored"] == str(found.tokens_scored)
    assert metrics["Green fraction"] == f"{found.green_fraction:.0%}"
    assert [h.value for h in at.subheader][:2] == ["A marked run: greedy + watermark 2.5", "Detect a text"]
    said = [t.value for t in at.text]
    assert found.verdict in said and watermark.detect_text(shipped, pasted, s).verdict in said
    charts = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
              for c in at.get("plotly_chart")}
    attack = charts["Detection against the share of the text edited"]
    assert attack["layout"]["xaxis"]["range"] == [-0.02, 0.65]
    assert attack["data"][0]["x"] == list(watermark.EDIT_SHARES)
    assert attack["data"][0]["y"][0] == pytest.approx(found.z_score)  # nothing edited: the run's own z-score
    quality = next(d.value for d in at.dataframe if "perplexity marked" in d.value.columns)
    assert list(quality["run"]) == ["greedy"] and {"perplexity unmarked", "perplexity marked"} <= set(quality.columns)
    assert at.query_params["watermark_bias"] == "2.5" and at.query_params["quality_lineup"] == "greedy"
