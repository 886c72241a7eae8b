"""Our own architectures (core/models/architectures.py) decode with transformers' generate() exactly as the engine
does: token for token, for greedy, beam search and sampling, through an incremental cache."""

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import core.models.architectures as custom_models
from core.views import recipe
from core.models.architectures import StateCache
from core.playground import Playground
from core.decoding.settings import DecodeSettings

MODELS = ["shakespeare-transformer-lm", "shakespeare-lstm"]
PROMPTS = ["Romeo.\n", "To be, or not to be", "KING RICHARD."]
N = 25
SETTINGS = {
    "greedy": DecodeSettings("greedy", max_new_tokens=N),
    "greedy + repetition penalty 1.3": DecodeSettings("greedy", max_new_tokens=N, repetition_penalty=1.3),
    "beam 5": DecodeSettings("beam", num_beams=5, max_new_tokens=N),
    "beam 5 + no-repeat 2": DecodeSettings("beam", num_beams=5, no_repeat_ngram_size=2, max_new_tokens=N),
    "beam 3, 3 returned, length penalty 0.6": DecodeSettings(
        "beam", num_beams=3, num_return_sequences=3, length_penalty=0.6, max_new_tokens=N),
    "temperature 0.7": DecodeSettings("sample", temperature=0.7, top_k=0, seed=11, max_new_tokens=N),
    "top-p 0.9": DecodeSettings("sample", top_p=0.9, top_k=0, seed=12, max_new_tokens=N),
    "top-k 50, 2 returned": DecodeSettings("sample", top_k=50, num_return_sequences=2, seed=13, max_new_tokens=N),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are small: one thread is several times faster than two on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=MODELS)
def pg(request):
    return Playground.load(request.param, device="cpu")


def generate(pg, prompt_ids, settings, **extra):
    ids = torch.tensor([prompt_ids])
    torch.manual_seed(settings.seed)  # as the recipe does; the engine seeds its own generator the same way
    return pg.model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=pg.facts.pad_token_id,
                             **settings.generate_kwargs(), **extra)


@pytest.mark.parametrize("prompt", PROMPTS, ids=["romeo", "to-be", "king"])
def test_generate_equals_the_engine(pg, prompt):
    for name, settings in SETTINGS.items():
        result = pg.compare(prompt, [settings], top_n=1)
        run = result.runs[0]
        out = generate(pg, result.prompt_ids, settings, return_dict_in_generate=True, output_scores=True)
        assert len(run.sequences) == settings.num_return_sequences == out.sequences.shape[0], name
        prompt_len = len(result.prompt_ids)
        for i, seq in enumerate(run.sequences):
            expected = out.sequences[i, prompt_len:].tolist()
            assert seq.ids == expected[:len(seq.ids)], (name, i)
            assert all(t == pg.facts.pad_token_id for t in expected[len(seq.ids):]), (name, i)
            if settings.is_beam:
                assert seq.beam_score == pytest.approx(out.sequences_scores[i].item(), abs=1e-5), (name, i)
        assert isinstance(out.past_key_values, StateCache)


@pytest.mark.parametrize("name", ["greedy", "beam 5", "top-k 50, 2 returned"])
def test_generate_prefills_once_then_feeds_one_token_per_step(pg, name, monkeypatch):
    """Through the engine's own `_run`: the prompt once (one row), then one token per row and step."""
    settings = SETTINGS[name].replace(max_new_tokens=6)
    calls = []
    run = pg.model._run

    def recording_run(input_ids, state=None):
        calls.append((tuple(input_ids.shape), state is not None))
        return run(input_ids, state)

    monkeypatch.setattr(pg.model, "_run", recording_run)
    prompt_ids = pg.tokenizer.encode("To be, or not to be")
    out = generate(pg, prompt_ids, settings, return_dict_in_generate=True)
    assert calls[0] == ((1, len(prompt_ids)), False)
    assert calls[1:] == [((settings.rows, 1), True)] * (len(calls) - 1) and len(calls) >= 2
    cache = out.past_key_values
    assert cache.get_seq_length() == len(prompt_ids) + len(calls) - 1 and cache.batch_size == settings.rows


def test_training_forward_and_padding(pg):
    ids = torch.tensor([pg.tokenizer.encode("Romeo.\nWhat light")])
    with torch.no_grad():
        out = pg.model(ids, labels=ids)
        assert out.past_key_values is None and out.loss is not None and out.logits.shape[:2] == ids.shape
        mask = torch.ones_like(ids)
        mask[0, 0] = 0
        with pytest.raises(ValueError, match="padding"):
            pg.model(ids, attention_mask=mask, use_cache=True)


def test_source_runs_again_as_a_pasted_recipe(tmp_path):
    """The recipe export pastes the file into a script: it must run in a process that already imported
    it (the first registration with the Auto classes stays), and its own classes must generate too."""
    source = Path(custom_models.__file__).read_text(encoding="utf-8")
    namespace = {"__name__": "recipe"}
    exec(compile(source, "recipe.py", "exec"), namespace)
    exec(compile(source.replace("from __future__ import annotations\n", ""), "recipe.py", "exec"), {"__name__": "r"})
    folder = Path(__file__).resolve().parents[1] / "assets" / "models" / "shakespeare-lstm"
    assert type(AutoModelForCausalLM.from_pretrained(folder)) is custom_models.LSTMLMForCausalLM
    pasted = namespace["LSTMLMForCausalLM"].from_pretrained(folder).eval()
    ours = custom_models.LSTMLMForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    for kwargs in ({"do_sample": False}, {"num_beams": 3, "do_sample": False}):
        a = pasted.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=0, max_new_tokens=8, **kwargs)
        b = ours.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=0, max_new_tokens=8, **kwargs)
        assert torch.equal(a, b) and a.shape == (1, 12)


def test_recipe_snippet_reproduces_custom_model_runs(monkeypatch):
    pg = Playground.load("shakespeare-lstm", device="cpu")
    runs = [SETTINGS["greedy"].replace(max_new_tokens=8), SETTINGS["beam 5"].replace(max_new_tokens=8),
            SETTINGS["top-p 0.9"].replace(max_new_tokens=8)]
    result = pg.compare("Romeo.\n", runs, top_n=1)
    rec = recipe.recipe(result, runs, "Romeo.\n")
    folder = Path(__file__).resolve().parents[1] / "assets" / "models" / "shakespeare-lstm"
    monkeypatch.setattr(sys, "argv", ["recipe.py", "--model", str(folder)])  # the reader's copy, from anywhere
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(recipe.generate_snippet(rec), "recipe.py", "exec"), {"__name__": "__main__"})
    assert printed.getvalue() == "".join(run.best.text + "\n" for run in result.runs)
