"""generate()'s other controls (issue 19, items 2-5): stop strings, min_new_tokens, bad words, suppressed
tokens, sequence bias, the exponential decay length penalty, top-h and classifier-free guidance, each one
declaration. Held to `model.generate()` of the app's transformers token for token (greedy, beam, and
sampling through the same seed), each alone and all together; their bad inputs are one sentence each."""

import json
from pathlib import Path

import pytest
import torch

from controls_parity import STRATEGIES, applies, controls, eos_model, equal
from conftest import PROMPTS
from core import limits
from core.decoding import lineup as lineup_syntax
from core.decoding.knobs import RECIPE_TEXTS, TokenTexts
from core.decoding.processors import PROCESSORS, build_processors
from core.decoding.settings import KNOBS, DecodeSettings, validate
from core.decoding.stopping import CRITERIA
from core.errors import InvalidSetting
from core.views import share
from core.views.share import Param

ROOT = Path(__file__).resolve().parents[1]
CONTROLS = ["stop_strings", "min_new_tokens", "bad_words", "suppress_tokens", "sequence_bias",
            "exponential_decay_length_penalty", "top_h", "guidance_scale", "negative_prompt", "all"]


@pytest.fixture(scope="module")
def eos_pg(tiny_dir, tmp_path_factory):
    return eos_model(tiny_dir, tmp_path_factory.mktemp("tiny-eos"), PROMPTS[0])


@pytest.fixture(scope="module")
def cases(eos_pg):
    return controls(eos_pg, PROMPTS[0])


@pytest.fixture(scope="module")
def plain(eos_pg):
    return {name: equal(eos_pg, PROMPTS[0], base)[1] for name, base in STRATEGIES.items()}


@pytest.mark.parametrize("control", CONTROLS)
def test_each_control_and_all_together_give_generates_tokens(eos_pg, cases, plain, control):
    """Greedy, beam and seeded sampling with the control equal generate()'s tokens; and the control
    acted (the tokens or the finish differ from the run without it on at least one strategy), so this
    is not parity of a control that never did anything. The whole table: tests/controls_parity.py."""
    changed = False
    for strategy, base in STRATEGIES.items():
        s = base.replace(**cases[control])
        if not applies(s, control):
            if s.negative_prompt:  # generate() cannot run it (its negative prompt is one row): one sentence here
                with pytest.raises(InvalidSetting, match="negative_prompt takes a run of one row"):
                    eos_pg.check(s)
            continue
        same, sequences = equal(eos_pg, PROMPTS[0], s)
        assert same, (control, strategy, s.name())
        changed |= sequences != plain[strategy]
    assert changed, control


def test_a_stop_string_ends_the_run_where_generate_does_and_is_named(eos_pg):
    base = eos_pg.decode(PROMPTS[1], STRATEGIES["greedy"]).runs[0].best
    piece = base.text[len(base.text) // 2:][:3]  # three characters from the middle of the greedy text
    for strategy in ("greedy", "beam 3 (2 returned)"):
        s = STRATEGIES[strategy].replace(stop_strings=("zzzq", piece))
        same, finished = equal(eos_pg, PROMPTS[1], s)
        assert same
        if strategy == "greedy":
            best = eos_pg.decode(PROMPTS[1], s).runs[0].best
            assert finished[0][1:] == ("stop_string", piece) and piece in best.text and len(best.ids) < len(base.ids)
            assert best.finished == f"stopped at the stop string {piece!r}"
            assert best.to_dict()["finish_reason"] == "stop_string" and best.to_dict()["finish_detail"] == piece


def test_guidance_decodes_an_extra_row_per_row_and_the_budget_counts_it():
    s = DecodeSettings("beam", num_beams=4, guidance_scale=1.5)
    assert s.rows == 8 and s.runner.rows_needed(s) == 4
    with pytest.raises(InvalidSetting, match="batch rows"):
        limits.check_request(runs=1, rows=sum(x.rows for x in [s] * 9), new_tokens=4, parameters=1, device_type="cpu")


def test_every_control_is_one_declaration_with_generates_name():
    """A processor or a criterion per control, each owning its settings; generate() takes every keyword."""
    import inspect

    from transformers import GenerationConfig

    owners = {name: p.name for p in PROCESSORS.values() for name in p.settings}
    owners |= {name: c.name for c in CRITERIA.values() for name in c.settings}
    for name in CONTROLS[:-1]:
        assert name in owners and name in KNOBS, name
    config = GenerationConfig()
    kwargs = DecodeSettings("greedy", stop_strings=("x",), min_new_tokens=2, bad_words=(" a",), suppress_tokens=(" b",),
                            sequence_bias=((" c", 1.0),), exponential_decay_length_penalty=(2, 1.1),
                            guidance_scale=2.0, negative_prompt="d").generate_kwargs(RECIPE_TEXTS)
    from transformers import GenerationMixin

    for keyword in kwargs:
        known = hasattr(config, keyword) or keyword in inspect.signature(GenerationMixin.generate).parameters
        assert known or keyword == "tokenizer", keyword  # generate() takes the tokenizer by name for stop strings


@pytest.mark.parametrize("changes, fragment", [
    ({"stop_strings": ()}, None),
    ({"stop_strings": ("",)}, "empty text"),
    ({"stop_strings": tuple("abcdefghij")}, f"at most {limits.MAX_STOP_STRINGS}"),
    ({"stop_strings": ("x" * 500,)}, f"at most {limits.MAX_STOP_STRING_CHARS} are accepted"),
    ({"stop_strings": ("a\x00b",)}, "control characters"),
    ({"stop_strings": "abc"}, "takes a list of texts"),
    ({"bad_words": (" king", 5)}, "takes text"),
    ({"sequence_bias": ((" king", float("nan")),)}, "finite number from -100 to 100"),
    ({"sequence_bias": ((" king", float("inf")),)}, "finite number from -100 to 100"),
    ({"sequence_bias": ((" king", 1e9),)}, "finite number from -100 to 100"),
    ({"sequence_bias": ((" king",),)}, "TEXT=BIAS pairs"),
    ({"guidance_scale": -1.0}, "guidance_scale must be in [0, 100]"),
    ({"guidance_scale": 1e6}, "guidance_scale must be in [0, 100]"),
    ({"guidance_scale": float("nan")}, "finite number"),
    ({"exponential_decay_length_penalty": (2, 0.0)}, "factor must be in (0, 10]"),
    ({"exponential_decay_length_penalty": (2, 50.0)}, "factor must be in (0, 10]"),
    ({"exponential_decay_length_penalty": (-1, 1.5)}, "start must be a whole number from 0 to 128"),
    ({"exponential_decay_length_penalty": (0, 9.0), "max_new_tokens": 100}, "past float32's range"),
    ({"exponential_decay_length_penalty": (1, 2, 3)}, "takes two numbers, START,FACTOR"),
    ({"top_h": 0.0}, "top_h must be in (0, 1]"),
    ({"top_h": 1.5}, "top_h must be in (0, 1]"),
    ({"min_new_tokens": -1}, "min_new_tokens must be a whole number from 0 to 128"),
    ({"suppress_tokens": (" kingdom ofEngland",)}, "but each must be one token"),
    ({"negative_prompt": "x" * 5000, "guidance_scale": 2.0}, "at most 4000 are accepted"),
    ({"negative_prompt": "Once upon a time", "guidance_scale": 2.0, "strategy": "beam", "num_beams": 2},
     "negative_prompt takes a run of one row"),
    ({"guidance_scale": 2.0, "strategy": "contrastive", "penalty_alpha": 0.6, "top_k": 4}, "guidance_scale runs with"),
    ({"stop_strings": ("x",), "strategy": "beam", "num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.5},
     "stop_strings ends greedy"),
])
def test_a_bad_control_is_one_sentence_with_its_range(playground, changes, fragment):
    s = DecodeSettings(max_new_tokens=8).replace(**changes)
    if fragment is None:
        playground.check(s)
        return
    with pytest.raises(InvalidSetting) as caught:
        playground.check(s)
    message = str(caught.value)
    assert fragment in message and "\n" not in message and len(message) < 400, message


def test_a_text_that_tokenizes_to_nothing_is_one_sentence():
    s = DecodeSettings(bad_words=("caf\u00e9",))  # any text: this tokenizer stand-in gives nothing for it
    with pytest.raises(InvalidSetting, match="tokenizes to nothing"):
        validate(s, vocab_size=100, context_length=64, encode=lambda text: [])


def test_the_lineup_link_and_flags_carry_every_control(playground):
    s = DecodeSettings("greedy", max_new_tokens=5, stop_strings=("\n", ";", '"),'), bad_words=(" king",),
                       suppress_tokens=(" the",), sequence_bias=((" queen", -5.0), ("a=b", 2.5)), min_new_tokens=2,
                       exponential_decay_length_penalty=(3, 1.2), guidance_scale=1.5, negative_prompt="Once, upon")
    spec = lineup_syntax.lineup_spec([s, DecodeSettings("sample", top_h=0.4, max_new_tokens=5)])
    back = lineup_syntax.parse_lineup(spec, max_new_tokens=5, seed=0)
    assert back[0] == s and back[1].top_h == 0.4
    for name in ("stop_strings", "sequence_bias", "exponential_decay_length_penalty", "negative_prompt"):
        p = Param.from_knob(name)
        state, problems = share.read_params({name: share.write_value(getattr(s, name), name)}, {name: p})
        assert state[name] == getattr(s, name) and not problems, name
    state, problems = share.read_params({"stop_strings": '["' + "x" * 99 + '"]'},
                                        {"stop_strings": Param.from_knob("stop_strings")})
    assert state["stop_strings"] == () and problems == [
        f"The link's stop_strings was not used: stop_strings: {'x' * 40 + '...'!r} has 99 characters; at most "
        f"{limits.MAX_STOP_STRING_CHARS} are accepted."]


def test_the_command_line_takes_the_controls_as_the_issue_names_them(capsys):
    from core.cli import main

    code = main(["decode", "--prompt", "ROMEO.", "--max-new-tokens", "30", "--stop-strings", ".", "\n\n",
                 "--min-new-tokens", "2", "--bad-words", " thee", " thou art", "--suppress-tokens", " my",
                 "--sequence-bias", " lord=-3", "--sequence-bias", " love=2.5",
                 "--exponential-decay-length-penalty", "20,1.1", "--guidance-scale", "1.2", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    run = json.loads(out.out)["runs"][0]
    assert run["params"]["stop_strings"] == [".", "\n\n"] and run["params"]["sequence_bias"] == [[" lord", -3.0], [" love", 2.5]]
    assert run["params"]["exponential_decay_length_penalty"] == [20, 1.1] and run["params"]["guidance_scale"] == 1.2
    assert (run["finish_reason"], run["finish_detail"]) in (("stop_string", "."), ("stop_string", "\n\n"))
    for argv, said in ((["--sequence-bias", " lord"], "TEXT=BIAS"), (["--sequence-bias", " lord=nan"], "finite number"),
                       (["--top-h", "2", "--strategy", "sample"], "(0, 1]"),
                       (["--exponential-decay-length-penalty", "x"], "START,FACTOR"),
                       (["--suppress-tokens", " thou art"], "one token")):
        with pytest.raises(SystemExit) if argv[1] in ("x", " lord") else _nothing():
            code = main(["decode", "--prompt", "ROMEO.", "--max-new-tokens", "3", *argv])
            assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_recipe_tokenizes_the_texts_as_the_app_does(playground):
    from core.views import recipe

    s = DecodeSettings("greedy", max_new_tokens=6, stop_strings=("\n",), bad_words=(" king",), suppress_tokens=(" the",),
                       sequence_bias=((" queen", -5.0),), guidance_scale=1.5, negative_prompt="Once")
    result = playground.compare(PROMPTS[0], [s])
    code = recipe.generate_snippet(recipe.recipe(result, [s], PROMPTS[0]))
    assert "def ids(text):" in code and "return tokenizer(text, add_special_tokens=False).input_ids" in code
    for piece in ("stop_strings=['\\n'], tokenizer=tokenizer", "bad_words_ids=[ids(' king')]",
                  "suppress_tokens=[ids(' the')[0]]", "sequence_bias={tuple(ids(' queen')): -5.0}",
                  "guidance_scale=1.5", "negative_prompt_ids=torch.tensor([ids('Once')], device=DEVICE)"):
        assert piece in code, piece
    texts = TokenTexts(playground.tokenizer)
    assert s.generate_kwargs(texts)["bad_words_ids"] == [playground.encode_text(" king")]
    compile(code, "recipe.py", "exec")


def test_top_h_is_transformers_warper_and_cuts_in_the_trace(playground):
    from transformers.generation.logits_process import TopHLogitsWarper

    s = DecodeSettings("sample", top_k=0, top_h=0.5, max_new_tokens=4, seed=3)
    run = playground.decode(PROMPTS[0], s).runs[0].best
    logits = torch.randn(2, 300) * 3
    mine = dict(build_processors(s))["top_h"]
    assert torch.equal(mine(None, logits), TopHLogitsWarper(0.5)(None, logits))
    assert all(1 <= st.kept["top_h"] <= 100 for st in run.steps)
