"""Assisted (speculative) decoding and prompt lookup decoding (issue 20, items 1, 2 and 6).

References: greedy against plain greedy and against generate(assistant_model=...) /
generate(prompt_lookup_num_tokens=...), token for token and target forward for target forward;
speculative sampling against the target's own distribution by a chi-square test over many seeds (which
a deliberately broken variant, accepting every draft, fails), and against generate()'s draws for the
same seed; the draft model's card against the held-out split."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st
from transformers import GPT2Config, GPT2LMHeadModel

from core.backends.vllm import VLLMPlayground
from core.cli import main
from core.decoding import engine, processors
from core.decoding import lineup as lineup_syntax
from core.decoding.settings import DecodeSettings, validate
from core.decoding.strategies import assisted
from core.errors import InvalidSetting, PlaygroundError
from core.models import registry
from core.models.lm import HFCausalLM
from core.playground import Playground

ROOT = Path(__file__).resolve().parents[1]
TARGET, DRAFT = "shakespeare-gpt2", "shakespeare-draft"
PROMPTS = ["Romeo.\n", "To be, or not to be", "KING.\nMy lords, "]
# prompt lookup needs text that repeats itself
LOOKUP_PROMPTS = ["To be, or not to be, that is the question. To be, or not to be",
                  "ROMEO.\nO Juliet, Juliet! ROMEO.\nO Juliet,", "KING.\nMy lords, my lords, my lords, "]


@pytest.fixture(scope="module")
def target():
    return Playground.load(TARGET, device="cpu")


class Draft:
    def __init__(self, model):
        self.model = model


@pytest.fixture(scope="module")
def draft():
    """A copy of the draft for generate(), which reads the draft's knobs from the assistant's generation_config
    (and its heuristic schedule writes into it): the engine's runs use the process's shared one, which
    nothing may change."""
    model = registry.load_hf_model(registry.resolve(DRAFT), torch.float32).eval()
    assert model is not Playground.load(DRAFT, device="cpu").model
    return Draft(model)


def forwards_of(model):
    """Count a model's forward passes (a hook; the model is not changed otherwise)."""
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def generate_ids(target, prompt_ids, settings, **extra):
    ids = torch.tensor([prompt_ids])
    calls, handle = forwards_of(target.model)
    try:
        out = target.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=target.facts.pad_token_id,
                                    **settings.generate_kwargs(), **extra)
    finally:
        handle.remove()
    return out[0, ids.shape[1]:].tolist(), len(calls)


def draft_config(draft_model, s: DecodeSettings):
    """generate() reads the draft's knobs from the assistant's own generation_config (see the recipe)."""
    config = draft_model.generation_config
    config.num_assistant_tokens = s.num_assistant_tokens
    config.num_assistant_tokens_schedule = s.num_assistant_tokens_schedule
    config.assistant_confidence_threshold = s.assistant_confidence_threshold


def test_the_draft_is_shipped_small_and_carded():
    folder = registry.shipped_models()[DRAFT]
    assert DRAFT in registry.available_models()
    stats = json.loads((folder / "training.json").read_text())
    figures = stats["draft_for"]
    assert figures["model"] == TARGET and figures["flops_per_token"] < 0.4 * figures["target_flops_per_token"]
    assert 0.2 < figures["greedy_agreement"] < 1.0
    card = (folder / "README.md").read_text()
    assert "greedy agreement" in card and f"{figures['greedy_agreement']:.1%}" in card
    assert f"{stats['val_perplexity']:.1f}" in card
    assert (folder / "tokenizer.json").read_bytes() == (registry.shipped_models()[TARGET] / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_assisted_greedy_is_plain_greedy_and_generates_tokens_and_target_passes(target, draft, prompt):
    plain = DecodeSettings("greedy", max_new_tokens=40)
    s = plain.replace(assistant_model=DRAFT, num_assistant_tokens=5)
    result = target.compare(prompt, [s, plain])
    ours, alone = result.runs
    assert ours.best.ids == alone.best.ids
    assert ours.name == f"greedy, assisted by {DRAFT} (5 drafted)"
    draft_config(draft.model, s)
    expected, target_passes = generate_ids(target, result.prompt_ids, s, assistant_model=draft.model)
    assert ours.best.ids == expected
    assert ours.target_forwards == target_passes < alone.target_forwards == len(alone.best.ids)
    spec = ours.speculation
    assert spec.accepted > 0 and len(spec.checks) == ours.target_forwards
    # each step says where it came from, and the checks add up to the tokens
    assert sum(st.drafted for st in ours.best.steps) == spec.accepted
    assert sum(c.accepted + 1 for c in spec.checks) == len(ours.best.ids)
    for check in spec.checks:
        kept = ours.best.ids[check.first_token:check.first_token + check.accepted + 1]
        assert kept == check.drafted[:check.accepted] + [check.token]
        assert check.rejected is None or check.rejected != check.token


@pytest.mark.parametrize("schedule", ["heuristic_transient", "constant"])
def test_the_draft_schedule_and_confidence_follow_generate(target, draft, schedule):
    s = DecodeSettings("greedy", max_new_tokens=40, assistant_model=DRAFT, num_assistant_tokens=3,
                       num_assistant_tokens_schedule=schedule, assistant_confidence_threshold=0.0)
    run = target.decode(PROMPTS[1], s).runs[0]
    draft_config(draft.model, s)
    calls, handle = forwards_of(draft.model)
    try:
        expected, target_passes = generate_ids(target, target.encode_prompt(PROMPTS[1], 40)[0], s,
                                               assistant_model=draft.model)
    finally:
        handle.remove()
    assert run.best.ids == expected and run.target_forwards == target_passes
    assert run.speculation.draft_forwards == len(calls)
    lengths = {len(c.drafted) for c in run.speculation.checks[:-1]}
    assert lengths == {3} if schedule == "constant" else len(lengths) > 1


@pytest.mark.parametrize("prompt", LOOKUP_PROMPTS)
def test_prompt_lookup_is_plain_greedy_and_generates(target, prompt):
    plain = DecodeSettings("greedy", max_new_tokens=40)
    s = plain.replace(prompt_lookup_num_tokens=10)
    ours, alone = target.compare(prompt, [s, plain]).runs
    assert ours.best.ids == alone.best.ids
    expected, target_passes = generate_ids(target, target.encode_prompt(prompt, 40)[0], s)
    assert ours.best.ids == expected and ours.target_forwards == target_passes
    assert ours.speculation.source == "prompt lookup" and ours.speculation.draft_forwards == 0


STOPS = ([".]"], ["]", "!"], ["\n\n"], [","])


@pytest.mark.parametrize("stops", STOPS)
def test_stop_strings_stop_prompt_lookup_where_generate_stops_it(target, stops):
    """generate()'s assisted loop asks its stopping criteria once per check, after the tokens it kept: the
    same tokens and finish here, on every prompt; a stop string a check completes before its last token
    is passed over, so the run is plain greedy's, up to where plain greedy stops or further."""
    from core.decoding.knobs import TokenTexts

    stopped = 0
    for prompt in LOOKUP_PROMPTS:
        plain = DecodeSettings("greedy", max_new_tokens=40, stop_strings=tuple(stops))
        s = plain.replace(prompt_lookup_num_tokens=10)
        ours, alone = target.compare(prompt, [s, plain]).runs
        ids = torch.tensor([target.encode_prompt(prompt, 40)[0]])
        out = target.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=target.facts.pad_token_id,
                                    **s.generate_kwargs(TokenTexts(target.tokenizer)))
        assert ours.best.ids == out[0, ids.shape[1]:].tolist(), prompt
        unstopped = target.decode(prompt, plain.replace(stop_strings=())).runs[0].best.ids
        assert len(ours.best.ids) >= len(alone.best.ids) and ours.best.ids == unstopped[:len(ours.best.ids)]
        if ours.best.finish_reason == "stop_string":
            stopped += 1
            assert ours.best.finish_detail in stops
        else:
            assert ours.best.finish_reason == "max_new_tokens" and len(ours.best.ids) == 40
    assert stopped > 0


def test_stop_strings_with_a_draft_model_are_one_sentence_as_generate_refuses_them(target, draft):
    s = DecodeSettings("greedy", max_new_tokens=8, stop_strings=("]",), assistant_model=DRAFT)
    with pytest.raises(InvalidSetting, match="stop_strings cannot end a run assisted by a draft model") as refused:
        target.decode(PROMPTS[0], s)
    assert "\n" not in str(refused.value)
    from core.decoding.knobs import TokenTexts

    ids = torch.tensor([target.encode_prompt(PROMPTS[0], 8)[0]])
    draft_config(draft.model, s)
    with pytest.raises(ValueError, match="could not locate a tokenizer"):  # generate() 5.23, for the record
        target.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=target.facts.pad_token_id,
                              assistant_model=draft.model, **s.generate_kwargs(TokenTexts(target.tokenizer)))


def test_prompt_lookup_drafts_from_the_text(target):
    runs = [target.decode(p, DecodeSettings("greedy", max_new_tokens=40, prompt_lookup_num_tokens=10)).runs[0]
            for p in LOOKUP_PROMPTS]
    assert sum(r.speculation.accepted for r in runs) > 0
    assert all(r.target_forwards < len(r.best.ids) for r in runs if r.speculation.accepted)


def _sampled_against_generate(target, draft, seed, source, temperature):
    s = DecodeSettings("sample", max_new_tokens=30, seed=seed, top_k=0, temperature=temperature)
    s = s.replace(assistant_model=DRAFT, num_assistant_tokens=4) if source == "draft" else \
        s.replace(prompt_lookup_num_tokens=5)
    run = target.decode(LOOKUP_PROMPTS[0], s).runs[0]
    extra = {}
    if source == "draft":
        draft_config(draft.model, s)
        extra["assistant_model"] = draft.model
    torch.manual_seed(seed)
    expected, target_passes = generate_ids(target, target.encode_prompt(LOOKUP_PROMPTS[0], 30)[0], s, **extra)
    return run, expected, target_passes


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("source, temperature", [("draft", 1.0), ("lookup", 0.9)])
def test_speculative_sampling_draws_what_generate_draws_for_the_same_seed(target, draft, seed, source, temperature):
    """The run's generator draws in generate()'s order (each draft token, one uniform per drafted token,
    the target's token), so torch.manual_seed(seed) before generate() gives the same tokens: with prompt
    lookup (no draft distribution), and with a draft model when no sampling warper is on."""
    run, expected, target_passes = _sampled_against_generate(target, draft, seed, source, temperature)
    assert run.best.ids == expected and run.target_forwards == target_passes


def test_with_a_warper_generate_warps_its_drafts_twice(target, draft, monkeypatch):
    """transformers 5.23's assistant applies the sampling warpers twice (the target's processors merged into
    its own, then its own warpers appended), so at temperature 0.9 its draft samples at 0.81: other proposals,
    other tokens (both sample the target's distribution). Our draft warps once; warping twice gives generate()'s
    tokens exactly, which shows that this is the whole difference."""
    differ = [_sampled_against_generate(target, draft, seed, "draft", 0.9) for seed in (0, 1, 2)]
    assert any(run.best.ids != expected for run, expected, _ in differ)

    def twice(self, seq, logits):
        once = assisted.apply_processors(self.processors, seq, logits)[0]
        warpers = [(name, p) for name, p in self.processors if processors.PROCESSORS[name].sampling_only]
        return assisted.apply_processors(warpers, seq, once)[0]

    monkeypatch.setattr(assisted.AssistedSampling, "draft_scores", twice)
    for seed in (0, 1, 2):
        run, expected, target_passes = _sampled_against_generate(target, draft, seed, "draft", 0.9)
        assert run.best.ids == expected and run.target_forwards == target_passes


# speculative sampling follows the target's distribution ---------------------------------------------------
VOCAB = 6
PROMPT_IDS = [1, 2, 3]
SEEDS = range(600)


def _small(seed: int, sharpen: float) -> HFCausalLM:
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                       eos_token_id=None, bos_token_id=None)).eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(sharpen)  # distributions far from uniform, and far apart
    return HFCausalLM(model)


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """The chi-square quantile at 1 - 0.001 (z = 3.09), by Wilson and Hilferty's approximation."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: dict, expected: dict, n: int) -> tuple[float, int]:
    """Pearson's statistic over the cells, those expected fewer than 5 times pooled into one."""
    stat, pooled_seen, pooled_expected, cells = 0.0, 0, 0.0, 0
    for cell, p in expected.items():
        e = p * n
        if e < 5:
            pooled_seen += counts.get(cell, 0)
            pooled_expected += e
            continue
        stat += (counts.get(cell, 0) - e) ** 2 / e
        cells += 1
    if pooled_expected > 0:
        stat += (pooled_seen - pooled_expected) ** 2 / max(pooled_expected, 1e-9)
        cells += 1
    return stat, cells - 1


def target_joint(lm: HFCausalLM, temperature: float) -> dict:
    """P(t1, t2 | prompt) under the target's processed (temperature) distribution, exactly."""
    ids = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        first = torch.softmax(lm.model(ids).logits[0, -1] / temperature, -1)
        joint = {}
        for t1 in range(VOCAB):
            second = torch.softmax(lm.model(torch.tensor([PROMPT_IDS + [t1]])).logits[0, -1] / temperature, -1)
            for t2 in range(VOCAB):
                joint[(t1, t2)] = float(first[t1] * second[t2])
    return joint


def sampled_pairs(target_lm, draft_lm, temperature: float) -> dict:
    s = DecodeSettings("sample", max_new_tokens=2, top_k=0, temperature=temperature, assistant_model="draft",
                       num_assistant_tokens=2, assistant_confidence_threshold=0.0)
    counts: dict = {}
    for seed in SEEDS:
        run = engine.decode_batch(target_lm, PROMPT_IDS, [s.replace(seed=seed)], top_n=1,
                                  others=[{"assistant_model": draft_lm}])[0]
        pair = tuple(run.sequences[0].ids)
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def accept_every_draft(candidates, draft_scores, target_scores, generator):
    """A wrong speculative sampling: every drafted token kept, so the tokens follow the draft."""
    token = torch.multinomial(torch.softmax(target_scores[-1], -1)[None], 1, generator=generator)[0]
    return torch.cat([candidates, token]), candidates.numel()


@pytest.mark.parametrize("variant", ["speculative sampling", "broken: accepts every draft"])
def test_speculative_sampling_follows_the_targets_distribution(monkeypatch, variant):
    target_lm, draft_lm = _small(0, 6.0), _small(1, 6.0)
    temperature = 0.8
    if variant != "speculative sampling":
        monkeypatch.setattr(assisted, "speculative_sampling", accept_every_draft)
    counts = sampled_pairs(target_lm, draft_lm, temperature)
    stat, df = chi_square(counts, target_joint(target_lm, temperature), len(SEEDS))
    critical = chi_square_critical(df)
    if variant == "speculative sampling":
        assert stat < critical, (stat, df, critical)
    else:
        assert stat > critical, (stat, df, critical)  # the test can tell a wrong implementation


def test_the_first_token_follows_p_whatever_the_draft():
    """Algorithm 1 on fixed tensors: the first kept token is distributed as p[0], for a draft q far from p."""
    p = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    q = torch.tensor([[-1.0, 2.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    counts = torch.zeros(4)
    draws = 6000
    for seed in range(draws):
        g = torch.Generator().manual_seed(seed)
        candidates = torch.multinomial(torch.softmax(q, -1), 1, generator=g)[:, 0]
        tokens, n = assisted.speculative_sampling(candidates, q, p, g)
        counts[tokens[0]] += 1
    expected = torch.softmax(p[0], -1) * draws
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < chi_square_critical(3)


# refusals, the command line, the line-up ---------------------------------------------------------------
def test_assisted_runs_are_refused_by_name_on_vllm():
    assert VLLMPlayground.unsupported(DecodeSettings("greedy", assistant_model=DRAFT)) == "vLLM has no assisted generation"
    assert VLLMPlayground.unsupported(DecodeSettings("sample", prompt_lookup_num_tokens=4)) == "vLLM has no assisted sampling"


@pytest.mark.parametrize("changes, fragment", [
    (dict(strategy="beam", num_beams=3, assistant_model=DRAFT), "not beam"),
    (dict(assistant_model=DRAFT, prompt_lookup_num_tokens=3), "choose one"),
    (dict(assistant_model="no-such-model"), "Unknown model 'no-such-model'"),
    (dict(assistant_model="../../etc"), "Unknown model"),
    (dict(num_assistant_tokens_schedule="sometimes", assistant_model=DRAFT), "must be one of constant, heuristic"),
    (dict(num_assistant_tokens=0, assistant_model=DRAFT), "num_assistant_tokens must be a whole number from 1"),
])
def test_bad_assisted_settings_are_one_sentence(target, changes, fragment):
    with pytest.raises(PlaygroundError, match=fragment):
        target.decode("Romeo.\n", DecodeSettings(**{"max_new_tokens": 4, **changes}))


def test_a_draft_with_another_tokenizer_or_no_cache_to_cut_is_refused(tiny_dir):
    from_command_line = Playground.load(TARGET, device="cpu", allow_paths=True)  # a folder only there
    with pytest.raises(InvalidSetting, match="reads other token ids than shakespeare-gpt2"):
        from_command_line.decode("Romeo.\n", DecodeSettings("greedy", max_new_tokens=4, assistant_model=str(tiny_dir)))
    lstm = Playground.load("shakespeare-lstm", device="cpu")
    with pytest.raises(InvalidSetting, match="which the target shakespeare-lstm cannot"):
        lstm.decode("Romeo.\n", DecodeSettings("greedy", max_new_tokens=4, assistant_model=DRAFT))
    with pytest.raises(InvalidSetting, match="which the target shakespeare-lstm cannot"):
        lstm.decode("Romeo.\n", DecodeSettings("greedy", max_new_tokens=4, prompt_lookup_num_tokens=3))


def test_the_command_line_and_the_lineup(capsys):
    code = main(["decode", "--model", TARGET, "--prompt", "To be, or not to be", "--max-new-tokens", "20",
                 "--assistant-model", DRAFT, "--num-assistant-tokens", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = json.loads(out)["runs"][0]
    assert all(isinstance(step["drafted"], bool) for step in run["steps"])
    assert run["target_forwards"] == run["speculation"]["target_forwards"] < len(run["ids"])
    assert sum(step["drafted"] for step in run["steps"]) == run["speculation"]["accepted"]
    lineup = f"greedy(assistant_model={DRAFT},num_assistant_tokens=3); greedy(prompt_lookup_num_tokens=5); greedy"
    code = main(["compare", "--model", TARGET, "--prompt", "To be, or not to be", "--max-new-tokens", "20",
                 "--lineup", lineup, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    runs = json.loads(out)["runs"]
    assert runs[0]["ids"] == runs[1]["ids"] == runs[2]["ids"]
    assert "drafted" not in runs[2]["steps"][0] and runs[2]["target_forwards"] == len(runs[2]["ids"])
    parsed = lineup_syntax.parse_lineup(lineup, max_new_tokens=20, seed=0)
    assert lineup_syntax.lineup_spec(parsed) == lineup.replace(" ", "")
    code = main(["decode", "--model", TARGET, "--prompt", "x", "--assistant-model", "nope"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: assistant_model='nope' cannot be used: Unknown model 'nope'")
    assert err.count("\n") == 1


@given(name=st.text(max_size=80), schedule=st.text(max_size=20))
@hsettings(max_examples=200, deadline=None)
def test_a_strangers_draft_in_a_lineup_is_one_sentence_or_a_registry_name(name, schedule):
    spec = f"greedy(assistant_model={name},num_assistant_tokens_schedule={schedule})"
    try:
        for run in lineup_syntax.parse_lineup(spec, max_new_tokens=5, seed=0):
            validate(run, vocab_size=8192, context_length=256)
            if run.assistant_model is not None:
                registry.resolve(run.assistant_model)  # what the playground loads by: names, never paths
    except PlaygroundError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600


def test_the_recipe_reproduces_assisted_runs_with_generate(capsys, tmp_path):
    recipe_file = tmp_path / "recipe.py"
    lineup = f"greedy(assistant_model={DRAFT},num_assistant_tokens=3); sample(assistant_model={DRAFT},top_k=0)"
    code = main(["compare", "--model", TARGET, "--prompt", "To be, or not to be", "--max-new-tokens", "20",
                 "--lineup", lineup, "--seed", "2", "--json", "--recipe", str(recipe_file)])
    out, err = capsys.readouterr()
    assert code == 0, err
    texts = [run["text"] for run in json.loads(out)["runs"]]
    source = recipe_file.read_text()
    assert "assistant_model=assistant" in source and "assistant.generation_config.num_assistant_tokens = 3" in source
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RECIPE_MODEL")}
    proc = subprocess.run([sys.executable, "-I", str(recipe_file)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "".join(text + "\n" for text in texts)
