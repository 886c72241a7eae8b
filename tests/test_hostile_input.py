"""A stranger's input: every parser fuzzed, every limit refused in one sentence, nothing rendered as
markdown, and the Python API's own checks."""

import math
import re
import threading
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from conftest import PROMPTS
from core import limits
from core import serving
from core.decoding import lineup as lineup_syntax
from core.views import share
from core.errors import InvalidSetting, PlaygroundError
from core.decoding.settings import DecodeSettings, validate

NASTY = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-1", "-3:5", "0:-1", "1:2:3", "9" * 400,
                     "![x](http://127.0.0.1:9/x.png)", "<script>alert(1)</script>", ":material/home:",
                     "\x00\u202e\ud7ff", "🦄" * 50, "true", "0x10", "1_000", " 5 ", ""]),
)


@given(params=st.dictionaries(st.sampled_from(["seed", "max_new_tokens", "prompt", "distribution", "step", "flag"]),
                              NASTY, max_size=6))
@hsettings(max_examples=300, deadline=None)
def test_read_params_never_raises_and_keeps_values_in_range(params):
    schema = {"seed": share.Param(0, 0, 2**31 - 1), "max_new_tokens": share.Param(40, 1, 200), "prompt": "hi",
              "distribution": share.Param("raw", choices=("raw", "processed")), "step": share.Param(0, 0, 63),
              "flag": False}
    state, problems = share.read_params(params, schema)
    assert 0 <= state["seed"] <= 2**31 - 1 and 1 <= state["max_new_tokens"] <= 200 and 0 <= state["step"] <= 63
    assert state["distribution"] in ("raw", "processed") and isinstance(state["flag"], bool)
    assert len(state["prompt"]) <= share.MAX_TEXT_PARAM
    assert len(problems) <= len(params)
    for problem in problems:
        assert "\n" not in problem and len(problem) < 400


@given(text=NASTY)
@hsettings(max_examples=300, deadline=None)
def test_lineup_parser_is_one_sentence_or_settings(text):
    try:
        runs = lineup_syntax.parse_lineup(text, max_new_tokens=5, seed=0)
    except InvalidSetting as exc:
        assert "\n" not in str(exc)
        return
    assert all(isinstance(r, DecodeSettings) for r in runs) and len(runs) <= limits.MAX_RUNS


SWEEP_HEADS = st.sampled_from(["top_p=", "temperature=", "top_k=", "min_p=", "eta_cutoff=", "seed=", "wibble=",
                                "top_p=0.5:", "top_k=0:", "top_p=0.1,", "=", ""])


@given(text=st.one_of(NASTY, st.builds(lambda head, tail: head + tail, SWEEP_HEADS, NASTY)))
@hsettings(max_examples=300, deadline=None)
def test_sweep_parser_is_one_sentence_or_values_in_the_knobs_range(text):
    from core.report import sweep

    try:
        spec = sweep.parse_sweep(text)
    except InvalidSetting as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 700
        return
    assert spec.knob in sweep.sweepable() and 1 <= len(spec.values) <= sweep.MAX_VALUES
    assert len(set(spec.values)) == len(spec.values)
    k = sweep.KNOBS[spec.knob]
    for value in spec.values:  # within the knob's declared range (a bound that is a model fact: at decode time)
        assert isinstance(value, int if k.kind == "int" else float) and math.isfinite(value)
        if not isinstance(k.low, str):
            assert value > k.low if k.open_low else value >= k.low
        if not isinstance(k.high, str):
            assert value < k.high if k.open_high else value <= k.high


@given(text=NASTY)
@hsettings(max_examples=200, deadline=None)
def test_a_model_name_in_a_line_up_is_one_sentence_or_a_checked_name(text):
    """contrastive_decoding's amateur_model (a setting of kind "model"): the parser and the knob's check
    either refuse it in one sentence or give a name of bounded form, which the playground looks up."""
    try:
        runs = lineup_syntax.parse_lineup(f"contrastive_decoding(amateur_model={text})", max_new_tokens=5, seed=0)
        validate(runs[0], vocab_size=8192, context_length=256)
    except InvalidSetting as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    name = runs[0].amateur_model
    assert isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable()
    assert not any(c in name for c in ",;()=")


@given(text=st.one_of(NASTY, st.lists(st.sampled_from(["shakespeare-lstm", "gpt2", "x", " ", ""]), max_size=8).map(",".join)))
@hsettings(max_examples=200, deadline=None)
def test_compares_models_parser_keeps_only_offered_names(text):
    offered = ["shakespeare-gpt2", "shakespeare-lstm", "shakespeare-transformer-lm"]
    names, problems = share.parse_models(text, offered=offered, model="shakespeare-gpt2", most=3)
    assert len(names) <= 3 and len(set(names)) == len(names) and set(names) <= set(offered) - {"shakespeare-gpt2"}
    for problem in problems:
        assert "\n" not in problem and len(problem) < 400


@given(text=NASTY, steps=st.integers(0, 200))
@hsettings(max_examples=300, deadline=None)
def test_branch_parser_keeps_only_valid_branches(text, steps):
    branches, problems = share.parse_branches(text, steps=steps, vocab_size=8192)
    assert len(branches) <= limits.MAX_BRANCHES and len(set(branches)) == len(branches)
    assert all(0 <= s < steps and 0 <= t < 8192 for s, t in branches)


@pytest.mark.parametrize("text", ["abc", "1:2:3", "0:999999", "0:-1", "-3:5", "100:5"])
def test_the_reported_branch_links_are_dropped_with_a_note(text):
    branches, problems = share.parse_branches(text, steps=40, vocab_size=8192)
    assert branches == [] and len(problems) == 1


@given(text=st.text(max_size=200))
@hsettings(max_examples=300, deadline=None)
def test_plain_text_has_no_markdown_left(text):
    shown = share.plain(text)
    # every ASCII punctuation character is escaped, so no markdown, HTML, emoji or directive syntax survives
    unescaped = re.sub(r"\\[!-/:-@\[-`{-~]", "", shown)
    assert not re.search(r"[!-/:-@\[-`{-~]", unescaped)


def test_a_value_is_quoted_short_and_on_one_line():
    assert share.quote("x" * 500).endswith("…") and len(share.quote("x" * 500)) < 70
    assert "\n" not in share.quote("a\nb") and "\\n" in share.quote("a\nb")
    # cut after escaping (Hypothesis found a 17-character value shown in 115)
    found = "000000000\x1f\x1f\x1f\x1f\x1f\x1f\x08\x08\x08\U000105a2\U0001166d\U00011daa\U00012544\U0001342f"
    assert len(share.quote(found)) <= 63 and share.quote(found).endswith("…")
    assert len(share.quote("\x00" * 500)) <= 63


@given(text=NASTY)
@hsettings(max_examples=200, deadline=None)
def test_the_forward_choice_is_a_known_name_or_one_short_sentence(text):
    """--forward is argparse's choice, but $PLAYGROUND_FORWARD is read as it is."""
    from core.models.lm import FORWARDS, forward_choice

    try:
        assert forward_choice(text) in FORWARDS
    except InvalidSetting as exc:
        assert text not in FORWARDS and "\n" not in str(exc) and len(str(exc)) < 250


# ---- settings whose maths would overflow, and the Python API's types -------------------------------------

@pytest.mark.parametrize("changes, fragment", [
    (dict(strategy="sample", temperature=1e-300), "below 0.01"),
    (dict(strategy="sample", repetition_penalty=1e-300), "repetition_penalty"),
    (dict(strategy="beam", num_beams=2, length_penalty=250), "length_penalty"),
    (dict(strategy="sample", temperature=math.nan), "finite"),
    (dict(seed=True), "seed"), (dict(strategy="sample", top_k=True), "top_k"),
    (dict(seed=2**64), "seed"), (dict(max_new_tokens=True), "max_new_tokens"),
    (dict(early_stopping=1), "early_stopping"), (dict(no_repeat_ngram_size=10**9), "no_repeat_ngram_size"),
])
def test_settings_that_would_overflow_or_are_of_the_wrong_type_are_refused(playground, changes, fragment):
    with pytest.raises(InvalidSetting, match=fragment):
        playground.decode("Hello", DecodeSettings(**{"max_new_tokens": 3, **changes}))


@pytest.mark.parametrize("settings", [
    DecodeSettings("sample", temperature=0.01, max_new_tokens=6, top_k=0),
    DecodeSettings("sample", repetition_penalty=0.01, max_new_tokens=6),
    DecodeSettings("sample", repetition_penalty=100, max_new_tokens=6),
    DecodeSettings("beam", num_beams=2, length_penalty=10, max_new_tokens=6),
    DecodeSettings("beam", num_beams=2, length_penalty=-10, max_new_tokens=6),
])
def test_the_edges_of_each_range_stay_finite(playground, settings):
    seq = playground.decode(PROMPTS[0], settings).runs[0].best
    assert all(math.isfinite(s.logprob) for s in seq.steps)
    assert seq.beam_score is None or math.isfinite(seq.beam_score)


def test_forced_ids_must_cover_the_run(playground):
    with pytest.raises(InvalidSetting, match="forced_ids"):
        playground.compare("Hello", [DecodeSettings(max_new_tokens=5)], forced_ids=[1, 2])
    with pytest.raises(InvalidSetting, match="token ids"):
        playground.compare("Hello", [DecodeSettings(max_new_tokens=2)], forced_ids=[1, 10**9])
    seq = playground.compare("Hello", [DecodeSettings(max_new_tokens=2)], forced_ids=[11, 12, 13]).runs[0].best
    assert seq.ids == [11, 12]


# ---- the budget of one request -------------------------------------------------------------------------

def test_a_request_over_the_budget_is_one_sentence_that_names_the_limit(playground, monkeypatch):
    with pytest.raises(InvalidSetting, match="at most 64"):
        playground.decode("Hello", DecodeSettings("beam", num_beams=10000, max_new_tokens=5))
    runs = [DecodeSettings(max_new_tokens=2)] * (limits.MAX_RUNS + 1)
    with pytest.raises(InvalidSetting, match=f"at most {limits.MAX_RUNS} runs"):
        playground.compare("Hello", runs)
    monkeypatch.setenv("PLAYGROUND_BUDGET", str(playground.parameters * 5 * 20))
    playground.decode("Hello", DecodeSettings("beam", num_beams=5, max_new_tokens=20))  # exactly the budget
    with pytest.raises(InvalidSetting, match="use at most 20 new tokens"):
        playground.decode("Hello", DecodeSettings("beam", num_beams=5, max_new_tokens=21))


def test_the_budget_admits_the_default_lineup_on_gpt2_small():
    from core.playground import default_lineup

    rows = sum(s.rows for s in default_lineup())
    limits.check_request(runs=8, rows=rows, new_tokens=64, parameters=124_439_808, device_type="cpu")
    with pytest.raises(InvalidSetting):
        limits.check_request(runs=8, rows=rows, new_tokens=200, parameters=124_439_808, device_type="cpu")


# ---- serving: shared results and decoding slots -------------------------------------------------------

def test_shared_results_compute_once_even_when_asked_together():
    cache = serving.SharedResults(1 << 20)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return {"answer": 42}

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_compute("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(g is got[0] for g in got) and cache.hits == 3


def test_shared_results_are_bounded_and_failures_are_not_cached():
    cache = serving.SharedResults(10_000)
    for i in range(50):
        cache.get_or_compute(i, lambda: b"x" * 1000)
    assert cache.bytes <= 10_000 and len(cache.values()) < 50
    with pytest.raises(PlaygroundError):
        cache.get_or_compute("bad", lambda: (_ for _ in ()).throw(PlaygroundError("no")))
    assert cache.get_or_compute("bad", lambda: "fine now") == "fine now"


def test_decode_slots_queue_in_order_and_give_places_up():
    slots = serving.DecodeSlots(1)
    order, places = [], []
    release = threading.Event()

    def first():
        order.append("first")
        release.wait(5)

    t1 = threading.Thread(target=lambda: slots.run(first))
    t1.start()
    time.sleep(0.1)

    def impatient(ahead):
        places.append(ahead)
        raise KeyboardInterrupt  # what a visitor leaving looks like to the waiting script

    with pytest.raises(KeyboardInterrupt):
        slots.run(lambda: order.append("never"), on_wait=impatient)
    assert places == [1] and slots.waiting == 0
    t2 = threading.Thread(target=lambda: slots.run(lambda: order.append("second"), on_wait=places.append))
    t2.start()
    time.sleep(0.7)
    release.set()
    t1.join(5)
    t2.join(5)
    assert order == ["first", "second"] and places[1:] and set(places[1:]) == {1}


def test_thread_plan_never_oversubscribes(monkeypatch):
    for cores in (1, 2, 3, 8, 16):
        slots, threads = serving.plan_threads(cores)
        assert slots * threads <= cores and slots >= 1
    monkeypatch.setenv("PLAYGROUND_DECODE_SLOTS", "4")
    assert serving.plan_threads(8) == (4, 2)


def test_visitors_never_see_a_stack_trace():
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_models_not_on_this_machine_are_marked(monkeypatch, tmp_path, capsys):
    from core.models import registry
    from core.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    statuses = registry.model_statuses()
    assert statuses["shakespeare-gpt2"].startswith("ready")
    assert statuses["gpt2"].startswith("not on this machine") and "download gpt2" in statuses["gpt2"]
    snapshot = tmp_path / "models--openai-community--gpt2" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    assert registry.model_statuses()["gpt2"].startswith("ready")
    assert main(["models"]) == 0 and "ready (Hugging Face cache)" in capsys.readouterr().out


# generate()'s controls that take text (issue 19, item 3) --------------------------------------------------
TEXT_VALUES = st.one_of(NASTY, st.sampled_from([
    '[]', '[""]', '["a"]', '["' + "x" * 5000 + '"]', "[" + ",".join(['"a"'] * 500) + "]", '{" king": NaN}',
    '{" king": 1e999}', '{" king": -1e9}', '{"": 1}', '[1, 2]', '[0, 1e308]', '[-5, 1.5]', "null", '"\\u0000"',
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    '["a;b", "c,d", "e)f"]', '{"a": true}', '"' + "🦄" * 3000 + '"']))
CONTROL_NAMES = ["stop_strings", "bad_words", "suppress_tokens", "sequence_bias", "exponential_decay_length_penalty",
                 "negative_prompt", "guidance_scale", "top_h", "min_new_tokens"]


@given(name=st.sampled_from(CONTROL_NAMES), value=TEXT_VALUES, strategy=st.sampled_from(["greedy", "beam", "sample"]))
@hsettings(max_examples=300, deadline=None)
def test_a_lineup_with_controls_is_one_sentence_or_checked_settings(playground, name, value, strategy):
    try:
        runs = lineup_syntax.parse_lineup(f"{strategy}({name}={value})", max_new_tokens=5, seed=0)
        lineup_syntax.validate_lineup(runs, playground.check)
    except InvalidSetting as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    assert len(runs) == 1 and isinstance(runs[0], DecodeSettings)


@given(name=st.sampled_from(["stop_strings", "bad_words", "suppress_tokens", "sequence_bias",
                             "exponential_decay_length_penalty", "negative_prompt"]), value=TEXT_VALUES)
@hsettings(max_examples=300, deadline=None)
def test_a_link_with_a_control_keeps_a_checked_value_or_the_default(name, value):
    from core.decoding.knobs import check_knob
    from core.decoding.settings import KNOBS

    p = share.Param.from_knob(name)
    state, problems = share.read_params({name: value}, {name: p})
    check_knob(name, state[name], KNOBS[name], {})  # what a link keeps is what the knob allows
    assert len(problems) <= 1 and all("\n" not in x and len(x) < 600 for x in problems)
