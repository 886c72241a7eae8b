"""Token-for-token parity with transformers' model.generate() on GPT-2-architecture models."""

import pytest
import torch

from conftest import PROMPTS, save_tiny_gpt2
from core.playground import Playground
from core.decoding.settings import DecodeSettings

DETERMINISTIC = {
    "greedy": DecodeSettings("greedy", max_new_tokens=24),
    "greedy + no-repeat 2": DecodeSettings("greedy", max_new_tokens=24, no_repeat_ngram_size=2),
    "beam 5": DecodeSettings("beam", max_new_tokens=24, num_beams=5),
    "beam 5 + no-repeat 2": DecodeSettings("beam", max_new_tokens=24, num_beams=5, no_repeat_ngram_size=2),
    "beam 4, 3 returned, early stop, length penalty 0.6": DecodeSettings(
        "beam", max_new_tokens=24, num_beams=4, num_return_sequences=3, early_stopping=True, length_penalty=0.6),
    "beam 3, never stop early, length penalty 2": DecodeSettings(
        "beam", max_new_tokens=24, num_beams=3, early_stopping="never", length_penalty=2.0),
    "greedy + repetition penalty 1.5": DecodeSettings("greedy", max_new_tokens=24, repetition_penalty=1.5),
}


@pytest.fixture(scope="module", params=[0, 1, 2], ids=lambda s: f"model-seed-{s}")
def seeded(request, tmp_path_factory):
    folder = save_tiny_gpt2(tmp_path_factory.mktemp(f"parity-{request.param}"), seed=request.param)
    return Playground.load(str(folder), device="cpu", allow_paths=True)


def generate(pg: Playground, ids, settings: DecodeSettings, **extra):
    prompt = torch.tensor([ids])
    return pg.model.generate(prompt, attention_mask=torch.ones_like(prompt),
                             pad_token_id=pg.facts.pad_token_id, **settings.generate_kwargs(), **extra)


@pytest.mark.parametrize("prompt", PROMPTS, ids=["ascii", "unicorn", "non-ascii"])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_same_tokens_as_generate(seeded, prompt, name):
    settings = DETERMINISTIC[name]
    result = seeded.decode(prompt, settings)
    out = generate(seeded, result.prompt_ids, settings, output_scores=True, return_dict_in_generate=True)
    run = result.runs[0]
    assert len(run.sequences) == (settings.num_return_sequences if settings.is_beam else 1)
    prompt_len = len(result.prompt_ids)
    for i, seq in enumerate(run.sequences):
        expected = out.sequences[i, prompt_len:].tolist()
        assert seq.ids == expected[:len(seq.ids)]
        # anything generate() has past our sequence is padding after an end-of-text
        assert all(t == seeded.facts.pad_token_id for t in expected[len(seq.ids):])
        if settings.is_beam:
            assert seq.beam_score == pytest.approx(out.sequences_scores[i].item(), abs=1e-5)


def test_eos_ends_sequences_as_in_generate(tmp_path):
    """Declare as end-of-text a token the model is known to produce: both stop at the same place."""
    from transformers import GPT2LMHeadModel

    folder = save_tiny_gpt2(tmp_path / "eos", seed=5)
    prompt = PROMPTS[0]
    first = Playground.load(str(folder), device="cpu", allow_paths=True)
    eos = first.decode(prompt, DETERMINISTIC["greedy"]).runs[0].best.ids[5]
    model = GPT2LMHeadModel.from_pretrained(folder)
    for config in (model.config, model.generation_config):
        config.eos_token_id = eos
        config.pad_token_id = eos
    model.save_pretrained(tmp_path / "eos-declared")
    pg = Playground.load(str(tmp_path / "eos-declared"), device="cpu", allow_paths=True)
    ended = 0
    for settings in (DETERMINISTIC["greedy"], DETERMINISTIC["beam 4, 3 returned, early stop, length penalty 0.6"],
                     DecodeSettings("beam", max_new_tokens=24, num_beams=5, num_return_sequences=5)):
        result = pg.decode(prompt, settings)
        out = generate(pg, result.prompt_ids, settings)
        for i, seq in enumerate(result.runs[0].sequences):
            expected = out[i, len(result.prompt_ids):].tolist()
            assert seq.ids == expected[:len(seq.ids)]
            assert all(t == eos for t in expected[len(seq.ids):])
            ended += seq.finish_reason == "eos"
    assert ended > 0, "the EOS path was never exercised"
