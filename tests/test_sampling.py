"""Sampling: each step's filtered distribution is generate()'s, and a run is reproducible from its seed.

generate() samples from the global RNG and takes no generator, so draws cannot be compared; instead
the engine follows the tokens generate() drew and, at every step, its processed distribution must
equal the scores generate() sampled from (output_scores=True).
"""

import pytest
import torch
import torch.nn.functional as F

from conftest import PROMPTS
from core.decoding.settings import DecodeSettings

SAMPLING = {
    "temperature 0.5": DecodeSettings("sample", temperature=0.5, top_k=0),
    "temperature 2.0": DecodeSettings("sample", temperature=2.0, top_k=0),
    "top-k 50 (default)": DecodeSettings("sample"),
    "top-k 5, temperature 0.7": DecodeSettings("sample", top_k=5, temperature=0.7),
    "top-p 0.9": DecodeSettings("sample", top_p=0.9, top_k=0),
    "min-p 0.1": DecodeSettings("sample", min_p=0.1, top_k=0),
    "typical-p 0.8": DecodeSettings("sample", typical_p=0.8, top_k=0),
    "top-p 0.8 + repetition 1.3 + no-repeat 2": DecodeSettings(
        "sample", top_p=0.8, top_k=0, repetition_penalty=1.3, no_repeat_ngram_size=2),
}


@pytest.mark.parametrize("name", SAMPLING)
def test_each_step_distribution_equals_generate(playground, name):
    settings = SAMPLING[name].replace(max_new_tokens=12)
    ids, _ = playground.encode_prompt(PROMPTS[1], settings.max_new_tokens)
    prompt = torch.tensor([ids])
    torch.manual_seed(1234)
    out = playground.model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                    pad_token_id=playground.facts.pad_token_id, output_scores=True,
                                    return_dict_in_generate=True, **settings.generate_kwargs())
    drawn = out.sequences[0, len(ids):].tolist()
    result = playground.decode(PROMPTS[1], settings, forced_ids=drawn, keep_distributions=True)
    steps = result.runs[0].best.steps
    assert [s.id for s in steps] == drawn
    for step, theirs in zip(steps, out.scores):
        ours = step.distribution
        expected = F.log_softmax(theirs[0], dim=-1)
        assert torch.equal(torch.isfinite(ours), torch.isfinite(expected)), f"step {step.index}: kept sets differ"
        kept = torch.isfinite(expected)
        assert torch.allclose(ours[kept].exp(), expected[kept].exp(), atol=1e-6)
        # the trace's processed log-prob of the drawn token is read off that same distribution
        assert step.processed_logprob == pytest.approx(expected[step.id].item(), abs=1e-5)
    if settings.top_k:
        assert all(s.kept["top_k"] == settings.top_k for s in steps)


def test_same_seed_same_output_and_global_rng_untouched(playground):
    settings = DecodeSettings("sample", top_k=0, max_new_tokens=16, seed=7)
    state = torch.get_rng_state()
    first = playground.decode(PROMPTS[0], settings).runs[0].best.ids
    assert torch.equal(state, torch.get_rng_state()), "the engine must not draw from the global RNG"
    torch.manual_seed(999)  # disturbing the global RNG changes nothing
    assert playground.decode(PROMPTS[0], settings).runs[0].best.ids == first
    others = {tuple(playground.decode(PROMPTS[0], settings.replace(seed=s)).runs[0].best.ids) for s in range(1, 5)}
    assert tuple(first) not in others or len(others) > 1


def test_num_return_sequences_draws_independent_samples(playground):
    run = playground.decode(PROMPTS[0], DecodeSettings("sample", top_k=0, max_new_tokens=12,
                                                       num_return_sequences=3, seed=3)).runs[0]
    assert len(run.sequences) == 3
    assert len({tuple(s.ids) for s in run.sequences}) > 1
