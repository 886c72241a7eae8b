"""Every page's widgets take their bounds, defaults and help from the settings' declarations (the knobs),
and a link may hold any value a knob allows (issue 17, "Deliver" 2 and proof 6(c)).

The only differences from the knobs are listed here, each declared by its page through `Param.from_knob`:
the app's limits (a narrower range, which a link's value is brought into with a sentence), a page's own
default (the knob's is generate()'s), and comfort sliders narrower than the knob, outside which a link's
value is still taken as is and shown in a box over the whole range.
"""

import pytest

import ui
from core import limits
from core.decoding import lineup as lineup_syntax
from core.decoding.knobs import check_knob
from core.decoding.settings import DEFAULT_MAX_NEW_TOKENS, KNOBS, MAX_SEED, offset_seed, validate
from core.errors import InvalidSetting
from core.models import registry
from core.views import share
from core.views.share import Param
from test_pages import PAGES, page, shown

# (page, setting) -> the app's limit, narrower than the knob's high ("*": every page, the sidebar's)
LIMITS = {("*", "max_new_tokens"): limits.MAX_APP_NEW_TOKENS, ("beam", "num_beams"): limits.MAX_BEAM_PAGE_BEAMS}
# (page, setting) -> the page's own default: beam search at work on its page, a cut to see on Sampling lab
PAGE_DEFAULTS = {("lab", "top_p"): 0.9, ("beam", "num_beams"): 5, ("beam", "no_repeat_ngram_size"): 2,
                 ("beam", "diversity_penalty"): 1.0, ("speculative", "num_assistant_tokens"): 5}
# (page, setting) with a slider narrower than the knob, for comfort: a link's value beyond it is kept
COMFORT = {("lab", "temperature"), ("lab", "top_p"), ("beam", "length_penalty"), ("beam", "no_repeat_ngram_size"),
           ("beam", "diversity_penalty"), ("speculative", "num_assistant_tokens"),
           ("speculative", "assistant_confidence_threshold")}
# widgets that stand for no decoding setting: a step of the run, a layer or head of the model, a step to
# branch at, the report's samples per strategy (its own limit), the pipeline's step
NOT_SETTINGS = {("lab", "step"), ("anatomy", "layer"), ("anatomy", "head"), ("step", "branch_step"),
                ("report", "samples"), ("pipeline", "step"), ("watermark", "threshold"), ("watermark", "edit_seed")}


@pytest.fixture(scope="module")
def facts() -> dict:
    from core.playground import Playground

    f = Playground.load(registry.default_model(), device="cpu").facts
    return {"vocab_size": f.vocab_size, "context_length": f.context_length}


def knob_range(name: str, setting: str, facts: dict) -> tuple:
    """What a widget of `setting` on page `name` must take: the knob's range, a model fact resolved, within
    the app's limit where there is one."""
    k = KNOBS[setting]
    low, high = (facts.get(b, b) if isinstance(b, str) else b for b in (k.low, k.high))
    limit = LIMITS.get((name, setting), LIMITS.get(("*", setting)))
    if limit is not None:
        assert high is None or limit < high, (setting, "a limit narrower than the knob's")
        high = limit
    return low, high


def outside_comfort(setting: str, slider, low, high) -> list:
    """Values the knob allows that the page's slider does not show: its far ends (inside an open end)."""
    k, whole = KNOBS[setting], KNOBS[setting].kind == "int"
    values = []
    if high is not None and high > slider.max:
        values.append(high if not k.open_high else (slider.max + high) / 2)
    if low is not None and low < slider.min:
        values.append(low if not k.open_low else (low + slider.min) / 2)
    return [int(v) if whole else float(v) for v in values]


@pytest.mark.parametrize("name", PAGES)
def test_every_widget_takes_its_bounds_default_and_help_from_its_knob(name, facts):
    at = page(name, max_new_tokens=4)
    assert not at.exception, at.exception
    for param, spec in ui.SCHEMAS[name].items():  # each URL parameter named after a setting is built from it
        assert param not in KNOBS or (isinstance(spec, Param) and spec.knob == param), param
    widgets = {w.key: w for w in [*at.slider, *at.number_input, *at.select_slider, *at.selectbox]
               if w.key and w.key.startswith(f"{name}_")}
    seen = set()
    comfort = []
    for key, w in widgets.items():
        setting = key.removeprefix(f"{name}_")
        if (name, setting) in NOT_SETTINGS:
            seen.add((name, setting))
            continue
        if setting == "model" or (w.type == "selectbox" and setting not in KNOBS):
            continue  # the model, a choice of the page's own (raw/processed, a chart)
        k = KNOBS[setting]  # every other widget stands for the decoding setting of its name
        assert shown(w.help) == k.help, key
        default = PAGE_DEFAULTS.get((name, setting), k.default)
        check_knob(setting, default, k, facts)  # a page's own default is one the knob allows
        if setting != "max_new_tokens":  # set by the link above; its default is checked below
            assert w.value == default, (key, w.value, default)
        low, high = knob_range(name, setting, facts)
        if w.type == "selectbox":  # early_stopping, seeding_scheme: every value the knob allows, and nothing else
            values = Param.from_knob(setting).choices
            assert w.options == [share.write_value(v) for v in values], key
            assert values == ((False, True, "never") if k.kind == "bool_or_never" else k.choices), key
            for value in values:
                check_knob(setting, value, k, facts)
        elif w.type == "select_slider":  # num_beam_groups: the divisors of num_beams, within the knob's range
            assert all(low <= int(o) and (high is None or int(o) <= high) for o in w.options), key
        elif w.type == "number_input" or (w.min, w.max) == (low, high):
            assert (w.min, w.max) == (low, high), (key, (w.min, w.max), (low, high))
        else:  # a comfort slider: narrower than the knob, and a link beyond it is taken as is (below)
            assert low <= w.min and (high is None or w.max <= high) and (w.min, w.max) != (low, high), key
            comfort.append((setting, w, low, high))
        seen.add((name, setting))
    assert {(name, "seed"), (name, "max_new_tokens")} <= seen
    declared = {key for key in [*PAGE_DEFAULTS, *LIMITS, *NOT_SETTINGS, *COMFORT] if key[0] == name}
    assert declared <= seen, declared - seen  # nothing listed above is stale
    assert {(name, c[0]) for c in comfort} == {key for key in COMFORT if key[0] == name}

    for setting, slider, low, high in comfort:
        for value in outside_comfort(setting, slider, low, high):
            there = page(name, max_new_tokens=4, **{setting: value})
            assert not there.exception, (setting, value, there.exception)
            box = there.number_input(key=f"{name}_{setting}")
            assert box.value == value and (box.min, box.max) == (low, high), (setting, value)
            assert there.query_params[setting] == share.write_value(value)  # the link keeps it as is
            assert not any(setting in shown(w.value) for w in there.warning), (setting, value)
            said = [shown(c.value) for c in there.caption if "lies outside the slider" in c.value]
            assert said == [f"{setting}={share._bound(value)} lies outside the slider's {share._bound(slider.min)} to "
                            f"{share._bound(slider.max)}, so it is shown in a box that takes every value the "
                            f"setting allows here, {span(setting, low, high)}."], said


def span(setting: str, low, high) -> str:
    k = KNOBS[setting]
    return (f"{share._bound(low)}{' (excluded)' if k.open_low else ''} to "
            f"{share._bound(high)}{' (excluded)' if k.open_high else ''}")


def test_the_sidebar_defaults_are_the_knobs():
    at = page("step")  # greedy only: the cheapest page to run at the default length
    assert not at.exception
    seed, tokens = at.sidebar.number_input(key="step_seed"), at.sidebar.slider(key="step_max_new_tokens")
    assert (seed.value, seed.min, seed.max) == (KNOBS["seed"].default, KNOBS["seed"].low, MAX_SEED)
    assert tokens.value == KNOBS["max_new_tokens"].default == DEFAULT_MAX_NEW_TOKENS
    assert (tokens.min, tokens.max) == (KNOBS["max_new_tokens"].low, limits.MAX_APP_NEW_TOKENS)


def test_a_temperature_of_50_from_a_link_is_taken_as_is_on_sampling_lab():
    at = page("lab", max_new_tokens=4, temperature=50)
    assert not at.exception and not at.warning and not at.error
    box = at.number_input(key="lab_temperature")
    assert (box.value, box.min, box.max) == (50.0, 0.01, 100.0)
    assert [k for k in (w.key for w in at.slider) if k == "lab_temperature"] == []
    assert "The run: temperature 50.0, top-k 50, top-p 0.9, seed 0" in [h.value for h in at.subheader]
    assert at.query_params["temperature"] == "50"
    assert ("temperature=50 lies outside the slider's 0.05 to 5, so it is shown in a box that takes every value "
            "the setting allows here, 0.01 to 100.") in [shown(c.value) for c in at.caption]
    # back inside the slider's range: the slider returns, with the value
    at.number_input(key="lab_temperature").set_value(2.0).run()
    assert not at.exception and at.slider(key="lab_temperature").value == 2.0
    assert (at.slider(key="lab_temperature").min, at.slider(key="lab_temperature").max) == (0.05, 5.0)
    assert not any("lies outside the slider" in c.value for c in at.caption)
    # past what the knob allows: brought to its end, and said
    at = page("lab", max_new_tokens=4, temperature=500)
    assert not at.exception and at.number_input(key="lab_temperature").value == 100.0
    assert ["The link's temperature='500' is outside 0.01 to 100; using 100.0."] == [shown(w.value) for w in at.warning]


def test_every_seed_the_knob_allows_runs_a_line_up():
    at = page("compare", max_new_tokens=4, seed=MAX_SEED)
    assert not at.exception and not at.error and not at.warning
    seed = at.sidebar.number_input(key="compare_seed")
    assert (seed.value, seed.max) == (MAX_SEED, KNOBS["seed"].high) == (2**32 - 1, 2**32 - 1)
    at.sidebar.number_input(key="compare_seed").set_value(MAX_SEED - 1).run()
    assert not at.exception and at.query_params["seed"] == str(MAX_SEED - 1)
    at = page("compare", max_new_tokens=4, seed=MAX_SEED + 1)
    assert f"The link's seed='{MAX_SEED + 1}' is outside 0 to 4,294,967,295; using {MAX_SEED}." in [
        shown(w.value) for w in at.warning]
    runs = lineup_syntax.parse_lineup("greedy\nsample\nsample", max_new_tokens=4, seed=MAX_SEED - 1)
    assert [s.seed for s in runs] == [MAX_SEED - 1, MAX_SEED, 0]  # counted round, never past the knob
    for s in runs:
        validate(s, vocab_size=100, context_length=64)
    assert offset_seed(5, 3) == 8 and offset_seed(MAX_SEED, 1) == 0


def test_a_link_may_hold_early_stopping_never():
    at = page("beam", max_new_tokens=4, early_stopping="never", num_beams=2)
    assert not at.exception and not at.warning and not at.error
    assert at.selectbox(key="beam_early_stopping").value == "never" and at.query_params["early_stopping"] == "never"


@pytest.mark.parametrize("name", [n for n, k in KNOBS.items() if k.kind in ("int", "float", "bool", "bool_or_never")
                                  or k.choices])
def test_a_param_from_a_knob_is_the_knob(name):
    k, p = KNOBS[name], Param.from_knob(name)
    assert (p.default, p.help, p.knob) == (k.default, k.help, name)
    if k.kind in ("bool", "bool_or_never", "choice"):
        assert p.choices == {"bool": (False, True), "bool_or_never": (False, True, "never")}.get(k.kind, k.choices)
        for value in p.choices:
            check_knob(name, value, k, {})
            assert share.read_params({name: share.write_value(value)}, {name: p}) == ({name: value}, [])
        return
    assert (p.low, p.high, p.open_low, p.open_high) == (k.low, k.high, k.open_low, k.open_high)
    assert type(p.default) is (int if k.kind == "int" else float)
    for end, excluded in ((k.low, k.open_low), (k.high, k.open_high)):
        if not isinstance(end, (int, float)):
            continue  # none, or a model fact
        state, problems = share.read_params({name: share.write_value(p.default.__class__(end))}, {name: p})
        if excluded:  # an end the knob excludes: the default, and a sentence
            assert state[name] == p.default and len(problems) == 1
        else:  # a link with the knob's own end is taken as is
            assert state[name] == end and not problems


@pytest.mark.parametrize("name, below, above", [
    ("temperature", "below 0.01", "absurd"),
    ("repetition_penalty", "outside 0.01 to 100", "outside 0.01 to 100"),
    ("length_penalty", "outside -10 to 10", "outside -10 to 10"),
])
def test_a_knob_with_its_own_check_declares_the_range_it_enforces(name, below, above):
    """The widgets and links read low and high; the check keeps its own sentences."""
    k = KNOBS[name]
    assert k.check is not None and isinstance(k.low, float) and isinstance(k.high, float)
    for inside in (k.low, k.high, k.default):
        check_knob(name, inside, k, {})
    for value, fragment in ((k.low - 1e-3, below), (k.high * 1.001, above)):
        with pytest.raises(InvalidSetting, match=fragment):
            check_knob(name, value, k, {})
    for other, kn in KNOBS.items():
        if kn.check is not None and kn.kind in ("int", "float"):
            assert isinstance(kn.low, (int, float)) and isinstance(kn.high, (int, float)), other


def test_from_knob_refuses_what_the_knob_does_not_allow():
    with pytest.raises(ValueError):
        Param.from_knob("temperature", default=500.0)
    with pytest.raises(ValueError):
        Param.from_knob("temperature", comfort=(0.001, 5.0))
    with pytest.raises(ValueError):
        Param.from_knob("seed", high=2**40, limit="more than the knob")
    with pytest.raises(ValueError):
        Param.from_knob("num_beams", high=10)  # a limit says why
    with pytest.raises(ValueError):
        Param.from_knob("num_beams", widget="slider")  # no end to slide to


def test_a_bound_that_is_a_model_fact_is_known_once_the_model_is():
    p = Param.from_knob("top_k")
    state, problems = share.read_params({"top_k": "100000"}, {"top_k": p})
    assert state["top_k"] == 100000 and not problems  # no model yet: the page brings it in once loaded
    here = p.resolved({"vocab_size": 8192, "context_length": 256})
    assert (here.low, here.high) == (0, 8192) and not here.allows(100000) and here.brought_in(100000) == 8192
    assert here.shown_as(50) == share.Shown("number", 0, 8192, 1)
    lab = Param.from_knob("temperature", comfort=(0.05, 5.0), step=0.05)
    assert lab.shown_as(1.0) == share.Shown("slider", 0.05, 5.0, 0.05)
    assert lab.shown_as(50.0).kind == "number" and (lab.shown_as(50.0).low, lab.shown_as(50.0).high) == (0.01, 100.0)
