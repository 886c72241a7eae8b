"""Settings declared once, the strategy registry, and the new strategies' traces, checks and syntax."""

import json
import pytest
import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from conftest import PROMPTS
from core.decoding import lineup as lineup_syntax
from core.cli import build_parser, settings_from_args
from core.decoding.engine import decode_batch
from core.errors import InvalidSetting
from core.decoding.knobs import TEXT_KINDS
from core.decoding.settings import KNOBS, MODES, DecodeSettings, validate
from core.decoding.strategies import REGISTRY
from core.decoding.strategies.base import Strategy


# generate() leaves these unset (None) and treats the value beside them exactly as unset; ours keep the
# number so that a widget and a link always hold one. The test below checks the equivalence in generate().
SAME_AS_UNSET = {"guidance_scale": 1.0, "min_new_tokens": 0}


def test_cli_defaults_are_generate_defaults():
    """Every flag that is a generate() keyword defaults to what generate() does without it."""
    args = build_parser().parse_args(["decode", "--prompt", "x"])
    generate_defaults = GenerationConfig._get_default_generation_params()
    config = GenerationConfig()
    checked = 0
    for name, knob in KNOBS.items():
        if not (knob.flag and knob.keyword):
            continue
        if not hasattr(config, name) and name not in generate_defaults:
            # text that becomes generate()'s ids under another keyword (negative_prompt_ids, bad_words_ids):
            # empty and not sent by default, as generate() has them unset
            assert knob.kwargs is not None and not knob.kwarg_when_default and not knob.default, name
            assert getattr(args, name) in ((), "", None, []), name
            continue
        expected = generate_defaults.get(name, getattr(config, name))
        if expected is None and name in SAME_AS_UNSET:
            expected = SAME_AS_UNSET[name]
        ours = getattr(args, name) if name != "num_beams" else settings_from_args(args).num_beams
        if expected is None and knob.kind in TEXT_KINDS:
            # generate()'s None is an empty list of texts (or no pair) here: nothing is banned, biased, stopped
            assert ours in (None, ()) and getattr(DecodeSettings(), name) in (None, ()), name
            checked += 1
            continue
        assert ours == expected, name
        assert getattr(DecodeSettings(), name) == expected, name
        checked += 1
    assert checked >= 16


def test_the_values_kept_for_unset_build_what_generate_builds_unset():
    """generate()'s processors for the value we keep and for None change no score, at every length."""
    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=1))
    torch.manual_seed(0)
    for name, value in SAME_AS_UNSET.items():
        outputs = []
        for v in (None, value):
            processors = model._get_logits_processor(
                GenerationConfig(eos_token_id=5, **{name: v}), input_ids_seq_length=3,
                encoder_input_ids=torch.zeros(1, 3, dtype=torch.long), prefix_allowed_tokens_fn=None,
                logits_processor=None)
            outputs.append(processors)
        for length in range(1, 8):
            ids, scores = torch.randint(0, 50, (2, length)), torch.randn(2, 50)
            a, b = (p(ids, scores.clone()) for p in outputs)
            assert torch.equal(a, b), (name, length)


def test_every_setting_has_a_flag_and_a_url_name():
    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["decode"]._actions}
    for name, knob in KNOBS.items():
        assert knob.help, name
        assert name in flags, name  # derived, or (max_new_tokens, seed) shared with `compare`
        if name not in ("strategy", "seed", "max_new_tokens"):
            assert name in lineup_syntax._FIELDS and name not in lineup_syntax._SKIP


def test_registry_covers_every_mode():
    assert set(REGISTRY) == set(MODES)
    assert all(issubclass(cls, Strategy) for cls in REGISTRY.values())
    modes = {DecodeSettings("greedy"): "greedy_search", DecodeSettings("beam", num_beams=1): "greedy_search",
             DecodeSettings("sample"): "sample", DecodeSettings("beam", num_beams=3): "beam_search",
             DecodeSettings("beam", num_beams=4, num_beam_groups=2): "group_beam_search",
             DecodeSettings("contrastive", penalty_alpha=0.6, top_k=4): "contrastive_search"}
    for settings, mode in modes.items():
        assert settings.mode == mode
    assert DecodeSettings("contrastive", penalty_alpha=0.6, top_k=4).rows == 4
    assert DecodeSettings("beam", num_beams=6, num_beam_groups=3).rows == 6


BAD = {
    "penalty_alpha 0": (dict(strategy="contrastive", penalty_alpha=0.0, top_k=4), "penalty_alpha must be in (0, 1]"),
    "penalty_alpha 1.5": (dict(strategy="contrastive", penalty_alpha=1.5, top_k=4), "penalty_alpha must be in (0, 1]"),
    "penalty_alpha nan": (dict(strategy="contrastive", penalty_alpha=float("nan"), top_k=4),
                          "penalty_alpha must be a finite number"),
    "contrastive without penalty_alpha": (dict(strategy="contrastive", top_k=4), "needs penalty_alpha"),
    "contrastive top_k 1": (dict(strategy="contrastive", penalty_alpha=0.6, top_k=1), "top_k of at least 2"),
    "epsilon_cutoff 1": (dict(strategy="sample", epsilon_cutoff=1.0), "epsilon_cutoff must be in [0, 1)"),
    "epsilon_cutoff negative": (dict(strategy="sample", epsilon_cutoff=-0.1), "epsilon_cutoff must be in [0, 1)"),
    "epsilon_cutoff inf": (dict(strategy="sample", epsilon_cutoff=float("inf")), "epsilon_cutoff must be a finite"),
    "eta_cutoff 2": (dict(strategy="sample", eta_cutoff=2.0), "eta_cutoff must be in [0, 1)"),
    "num_beam_groups 0": (dict(strategy="beam", num_beams=4, num_beam_groups=0), "num_beam_groups must be a whole"),
    "num_beam_groups not dividing": (dict(strategy="beam", num_beams=4, num_beam_groups=3, diversity_penalty=0.5),
                                     "num_beam_groups=3 must divide num_beams=4"),
    "num_beam_groups above num_beams": (dict(strategy="beam", num_beams=2, num_beam_groups=4, diversity_penalty=0.5),
                                        "num_beam_groups=4 must divide num_beams=2"),
    "diversity_penalty 0 with groups": (dict(strategy="beam", num_beams=4, num_beam_groups=2),
                                        "diversity_penalty must be greater than 0"),
    "diversity_penalty absurd": (dict(strategy="beam", num_beams=4, num_beam_groups=2, diversity_penalty=1e30),
                                 "diversity_penalty must be in [0, 100]"),
    "diversity_penalty negative": (dict(strategy="beam", num_beams=4, num_beam_groups=2, diversity_penalty=-1.0),
                                   "diversity_penalty must be in [0, 100]"),
}


@pytest.mark.parametrize("case", BAD)
def test_new_settings_are_refused_in_one_sentence(case):
    values, fragment = BAD[case]
    with pytest.raises(InvalidSetting) as caught:
        validate(DecodeSettings(**values), vocab_size=50257, context_length=1024)
    message = str(caught.value)
    assert fragment in message and message.count(". ") == 0 and message.endswith("."), message


def test_line_up_syntax_and_links_carry_the_new_strategies():
    spec = ("contrastive(penalty_alpha=0.6,top_k=4); beam(num_beams=4,num_beam_groups=2,diversity_penalty=0.5);"
            "sample(top_k=0,epsilon_cutoff=0.0003); sample(top_k=0,eta_cutoff=0.001)")
    runs = lineup_syntax.parse_lineup(spec, max_new_tokens=8, seed=3)
    assert [s.mode for s in runs] == ["contrastive_search", "group_beam_search", "sample", "sample"]
    assert runs[0].penalty_alpha == 0.6 and runs[1].diversity_penalty == 0.5 and runs[2].epsilon_cutoff == 0.0003
    assert [s.name() for s in runs] == ["contrastive, penalty alpha 0.6, top-k 4",
                                        "beam 4, 2 groups, diversity penalty 0.5", "epsilon 0.0003", "eta 0.001"]
    again = lineup_syntax.parse_lineup(lineup_syntax.lineup_spec(runs), max_new_tokens=8, seed=3)
    assert again == runs
    with pytest.raises(InvalidSetting, match="gives penalty_alpha the value 'x'"):
        lineup_syntax.parse_run("contrastive(penalty_alpha=x)", max_new_tokens=8, seed=0)


def test_command_line_flags_mirror_generate():
    parse = build_parser().parse_args
    s = settings_from_args(parse(["decode", "--prompt", "x", "--strategy", "contrastive", "--penalty-alpha", "0.6",
                                  "--top-k", "4"]))
    assert s.generate_kwargs() == {"max_new_tokens": 40, "do_sample": False, "top_k": 4, "penalty_alpha": 0.6}
    s = settings_from_args(parse(["decode", "--prompt", "x", "--strategy", "beam", "--num-beams", "6",
                                  "--num-beam-groups", "3", "--diversity-penalty", "0.5"]))
    assert s.generate_kwargs() == {"max_new_tokens": 40, "do_sample": False, "num_beams": 6, "length_penalty": 1.0,
                                   "early_stopping": False, "num_return_sequences": 1, "num_beam_groups": 3,
                                   "diversity_penalty": 0.5}
    s = settings_from_args(parse(["decode", "--prompt", "x", "--strategy", "sample", "--eta-cutoff", "0.001"]))
    assert s.generate_kwargs()["eta_cutoff"] == 0.001 and "epsilon_cutoff" not in s.generate_kwargs()
    # the existing runs' keyword arguments are unchanged by the new settings
    assert DecodeSettings("beam", num_beams=5).generate_kwargs() == {
        "max_new_tokens": 40, "do_sample": False, "num_beams": 5, "length_penalty": 1.0, "early_stopping": False,
        "num_return_sequences": 1}
    assert DecodeSettings("sample", min_p=0.1).generate_kwargs() == {
        "max_new_tokens": 40, "do_sample": True, "num_return_sequences": 1, "temperature": 1.0, "top_k": 50,
        "top_p": 1.0, "min_p": 0.1, "typical_p": 1.0}


def test_contrastive_trace(playground):
    settings = DecodeSettings("contrastive", penalty_alpha=0.6, top_k=5, max_new_tokens=12)
    run = playground.decode(PROMPTS[1], settings).runs[0]
    steps = run.best.steps
    assert len(steps) == 12 and run.beam_tree is None
    assert all(s.kept["top_k"] == 5 for s in steps)
    for s in steps:
        passed_over = s.banned["degeneration_penalty"]
        assert s.id not in passed_over and len(passed_over) == s.processed_rank - 1
    assert any(s.banned["degeneration_penalty"] for s in steps), "the penalty never changed a choice"


def test_group_beam_tree_has_one_sub_tree_per_group(playground):
    settings = DecodeSettings("beam", num_beams=6, num_beam_groups=3, diversity_penalty=1.0, max_new_tokens=8,
                              num_return_sequences=2)
    run = playground.decode(PROMPTS[1], settings).runs[0]
    raw = decode_batch(playground.lm, playground.encode_prompt(PROMPTS[1], 8)[0], [settings])[0]
    nodes = {n.id: n for n in raw.beam_tree}
    assert {n.group for n in raw.beam_tree} == {0, 1, 2}
    for n in raw.beam_tree:
        if n.parent is not None:
            assert nodes[n.parent].group == n.group and nodes[n.parent].step == n.step - 1
            assert nodes[n.parent].status in ("kept", "finished")
    for step in range(7):
        for group in range(3):
            kept = [n for n in raw.beam_tree if n.step == step and n.group == group and n.status == "kept"]
            assert len(kept) == (2 if step == 0 else len(kept)) and len(kept) in (0, 2)  # group size, or done
    # later groups are pushed away from the tokens earlier groups chose at the same step
    assert any(s.banned.get("diversity_penalty") for s in run.best.steps) or any(
        st.banned.get("diversity_penalty") for seq in run.sequences for st in seq.steps)
    assert [s.ids for s in run.sequences] == [s.ids for s in raw.sequences]


@pytest.mark.parametrize("settings", [DecodeSettings("sample", top_k=0, epsilon_cutoff=3e-4),
                                      DecodeSettings("sample", top_k=0, eta_cutoff=3e-4),
                                      DecodeSettings("sample", top_k=20, temperature=0.7, epsilon_cutoff=1e-3)],
                         ids=["epsilon", "eta", "top-k 20, temperature 0.7, epsilon"])
def test_epsilon_and_eta_step_distributions_equal_generate(playground, settings):
    """As tests/test_sampling.py: follow the tokens generate() drew; every step's distribution is its."""
    settings = settings.replace(max_new_tokens=10)
    ids, _ = playground.encode_prompt(PROMPTS[1], settings.max_new_tokens)
    prompt = torch.tensor([ids])
    torch.manual_seed(4321)
    out = playground.model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                    pad_token_id=playground.facts.pad_token_id, output_scores=True,
                                    return_dict_in_generate=True, **settings.generate_kwargs())
    drawn = out.sequences[0, len(ids):].tolist()
    steps = playground.decode(PROMPTS[1], settings, forced_ids=drawn, keep_distributions=True).runs[0].best.steps
    name = "epsilon" if settings.epsilon_cutoff else "eta"
    for step, theirs in zip(steps, out.scores):
        expected = F.log_softmax(theirs[0], dim=-1)
        assert torch.equal(torch.isfinite(step.distribution), torch.isfinite(expected)), f"step {step.index}"
        kept = torch.isfinite(expected)
        assert torch.allclose(step.distribution[kept].exp(), expected[kept].exp(), atol=1e-6)
        assert step.kept[name] == int(kept.sum()) < playground.facts.vocab_size


def test_new_strategies_in_one_batch_equal_each_alone(playground):
    lineup = lineup_syntax.parse_lineup("greedy; contrastive(penalty_alpha=0.6,top_k=4);"
                                "beam(num_beams=4,num_beam_groups=2,diversity_penalty=0.5,num_return_sequences=2);"
                                "beam(num_beams=3); sample(top_k=0,eta_cutoff=0.001,num_return_sequences=2)",
                                max_new_tokens=10, seed=5)
    steps = []
    together = playground.compare(PROMPTS[0], lineup, on_step=lambda step, ids: steps.append(ids))
    for settings, run in zip(lineup, together.runs):
        alone = playground.decode(PROMPTS[0], settings).runs[0]
        assert [s.ids for s in run.sequences] == [s.ids for s in alone.sequences], settings.name()
    assert len(steps[-1]) == len(lineup) and steps[-1][1] == together.runs[1].best.ids


def test_forced_ids_only_steer_greedy_or_sampling(playground):
    with pytest.raises(InvalidSetting, match="forced_ids can only steer"):
        decode_batch(playground.lm, [1, 2, 3], [DecodeSettings("contrastive", penalty_alpha=0.5, top_k=3,
                                                               max_new_tokens=3)], forced_ids=[4, 5, 6])


@pytest.mark.parametrize("name", ["shakespeare-gpt2", "shakespeare-transformer-lm", "shakespeare-lstm"])
def test_contrastive_search_on_every_shipped_architecture(name):
    """The hidden states come from every model behind StepModel (a transformer's last layer, the
    LSTM's top-layer output), asking for them changes no logit, and as penalty_alpha falls to 0
    contrastive search becomes greedy decoding."""
    from core.playground import Playground

    pg = Playground.load(name, device="cpu")
    prompt = torch.tensor([pg.tokenizer.encode("Romeo.\n")])
    logits, state = pg.lm.prefill(prompt)
    logits_h, state_h, hidden = pg.lm.prefill(prompt, hidden_states=True)
    width = getattr(pg.model.config, "hidden_size", getattr(pg.model.config, "n_embd", None))
    assert torch.equal(logits, logits_h) and hidden.shape == (1, prompt.shape[1], width)
    step, _, step_hidden = pg.lm.step(torch.tensor([[11]]), state_h, hidden_states=True)
    assert step.shape == (1, pg.facts.vocab_size) and step_hidden.shape == (1, 1, width)
    greedy = pg.decode("Romeo.\n", DecodeSettings("greedy", max_new_tokens=12)).runs[0].best.ids
    almost_greedy = DecodeSettings("contrastive", penalty_alpha=1e-7, top_k=3, max_new_tokens=12)
    assert pg.decode("Romeo.\n", almost_greedy).runs[0].best.ids == greedy
    run = pg.decode("Romeo.\n", almost_greedy.replace(penalty_alpha=0.6)).runs[0]
    assert len(run.best.ids) == 12 and all(s.kept["top_k"] == 3 for s in run.best.steps)


KTH_CHOICE = '''"""A strategy written for the test: every step takes the rank-th most likely token."""
import torch

from core.decoding.knobs import knob
from core.decoding.strategies import register
from core.decoding.strategies.single import _OneRowPerSequence


@register("kth_choice_search")
class KthChoice(_OneRowPerSequence):
    strategy = "kth"
    settings = {"rank": knob(2, "take the rank-th most likely token", kind="int", low=1, high="vocab_size",
                             keyword=False)}

    @classmethod
    def describe(cls, s):
        return [f"choice {s.rank}"]

    def choose(self, scores):
        return scores.topk(self.settings.rank, dim=-1).indices[:, -1]
'''


def test_a_new_strategy_is_one_new_file(tmp_path, tiny_dir, playground):
    """Drop one module into a copy of core/decoding/strategies/ and nothing else: the command line's
    --strategy and flag, the line-up syntax, the checks and the engine all take it."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "core", tmp_path / "core", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "assets").symlink_to(root / "assets")
    (tmp_path / "core/decoding/strategies/kth_choice.py").write_text(KTH_CHOICE, encoding="utf-8")

    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "core", *argv], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})

    prompt = "A long long time ago, "
    proc = cli("decode", "--model", str(tiny_dir), "--prompt", prompt, "--strategy", "kth", "--rank", "3",
               "--max-new-tokens", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    assert run["strategy"] == "kth" and run["ids"]
    for step, chosen in zip(run["steps"], run["ids"]):
        assert step["rank"] == 3 and step["top"][2]["id"] == chosen  # the third choice, every step
    # the same ids as the engine reaching the 3rd choice by hand, step by step
    ids = playground.encode_prompt(prompt, 5)[0]
    for chosen in run["ids"]:
        logits = playground.model(torch.tensor([ids])).logits[0, -1]
        assert logits.topk(3).indices[-1].item() == chosen
        ids.append(chosen)
    proc = cli("compare", "--model", str(tiny_dir), "--prompt", prompt, "--max-new-tokens", "3", "--json",
               "--lineup", "greedy; kth(rank=2)")
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)["runs"]] == ["greedy", "choice 2"]
    proc = cli("decode", "--model", str(tiny_dir), "--prompt", prompt, "--strategy", "kth", "--rank", "0")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: rank must be a whole number from 1")
    assert "kth_choice_search" not in REGISTRY  # the real registry never saw it


@pytest.mark.parametrize("line", ["kth(rank=2)", "bogus(top_k=5)", "bogus"])
def test_a_line_with_no_known_strategy_says_so(line):
    with pytest.raises(InvalidSetting) as caught:
        lineup_syntax.parse_lineup(f"greedy\n{line}", max_new_tokens=8, seed=0)
    from core.decoding.settings import STRATEGIES

    assert {"beam", "contrastive", "greedy", "sample", "contrastive_decoding"} <= set(STRATEGIES)  # and any added
    assert str(caught.value) == (f"Line 2 of the line-up: '{line}' names no strategy: begin it with one of "
                                 f"{', '.join(STRATEGIES)}.")
