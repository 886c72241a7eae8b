"""The context limit: generate() raises IndexError past it; the engine cuts and stops instead."""

import pytest
import torch

from core.errors import InvalidSetting
from core.decoding.settings import DecodeSettings


def long_prompt(pg, tokens):
    text = " the quick brown fox" * tokens
    ids = pg.tokenizer.encode(text)[:tokens]
    return pg.text(ids)


def test_generate_itself_fails_past_the_context(playground):
    ids = playground.tokenizer.encode(long_prompt(playground, 120))
    with pytest.raises(IndexError):
        playground.model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False,
                                  pad_token_id=playground.facts.pad_token_id)


@pytest.mark.parametrize("settings", [DecodeSettings("greedy", max_new_tokens=20),
                                      DecodeSettings("beam", num_beams=3, max_new_tokens=20)])
def test_long_prompt_is_cut_from_the_left_with_a_message(playground, settings):
    ctx = playground.facts.context_length  # 128 for the test model
    prompt = long_prompt(playground, 200)
    full = playground.tokenizer.encode(prompt)
    result = playground.decode(prompt, settings)
    assert result.prompt_ids == full[-(ctx - 20):]
    assert len(result.notices) == 1 and f"first {len(full) - (ctx - 20)} tokens were cut" in result.notices[0]
    seq = result.runs[0].best
    assert len(result.prompt_ids) + len(seq.ids) <= ctx
    assert seq.finish_reason in ("context", "eos")


def test_generation_stops_at_the_limit(playground):
    ctx = playground.facts.context_length
    prompt = long_prompt(playground, ctx - 1)
    result = playground.decode(prompt, DecodeSettings("greedy", max_new_tokens=1))
    assert len(result.prompt_ids) + len(result.runs[0].best.ids) == ctx
    assert result.runs[0].best.finish_reason == "context"


def test_refuses_instead_of_cutting_when_asked(playground):
    with pytest.raises(InvalidSetting, match="pass --truncate"):
        playground.encode_prompt(long_prompt(playground, 200), 20, truncate=False)
