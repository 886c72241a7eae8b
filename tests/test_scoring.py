"""Scoring mode: per-token log-prob, rank and surprisal of a given text."""

import math

import pytest

from conftest import PROMPTS
from core.errors import InvalidSetting
from core.decoding.scoring import score_ids
from core.decoding.settings import DecodeSettings


def test_scores_match_the_decoding_trace(playground):
    result = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=12))
    seq = result.runs[0].best
    scored = score_ids(playground.lm, result.prompt_ids + seq.ids, bos_id=None)
    tail = scored[-len(seq.ids):]
    assert [t[0] for t in tail] == seq.ids
    assert [t[1] for t in tail] == pytest.approx(seq.token_logprobs, abs=1e-4)
    assert [t[2] for t in tail] == [s.rank for s in seq.steps]


def test_score_text_follows_the_decoding_rule(playground):
    """One rule for both: no <|endoftext|> in front; the first token is shown, not scored."""
    text = "To be, or not to be"
    ids = playground.tokenizer.encode(text)
    result = playground.score(text)
    assert [t.id for t in result.tokens] == ids[1:] and result.unscored_first_token
    assert result.first_token == playground.token_text(ids[0])
    for t in result.tokens:
        assert t.logprob <= 0 and t.rank >= 1
        assert t.surprisal_bits == pytest.approx(-t.logprob / math.log(2))
    assert result.perplexity == pytest.approx(math.exp(-result.total_logprob / len(result.tokens)))


def test_scoring_a_prompt_and_its_output_agrees_with_decoding(playground):
    # the case: Score a text on "prompt + greedy output" said -19.72, Compare -22.68
    result = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=12))
    seq = result.runs[0].best
    text = result.prompt_text + seq.text
    assert playground.tokenizer.encode(text) == result.prompt_ids + seq.ids  # the text round-trips here
    scored = playground.score(text).tokens[-len(seq.ids):]
    assert [t.logprob for t in scored] == pytest.approx(seq.token_logprobs, abs=1e-4)
    assert sum(t.logprob for t in scored) == pytest.approx(seq.sequence_logprob, abs=1e-3)


def test_text_longer_than_the_context_is_scored_in_windows(playground):
    ctx = playground.facts.context_length
    ids = playground.tokenizer.encode(" and then the story went on" * 60)
    assert len(ids) > 2 * ctx
    scored = score_ids(playground.lm, ids, bos_id=50256)
    assert [t[0] for t in scored] == ids
    head = score_ids(playground.lm, ids[: ctx - 1], bos_id=50256)
    assert [t[1] for t in scored[: ctx - 1]] == pytest.approx([t[1] for t in head], abs=1e-5)


def test_empty_text_is_refused(playground):
    with pytest.raises(InvalidSetting, match="text is empty"):
        playground.score("   ")
    with pytest.raises(InvalidSetting, match="fewer than two tokens"):
        playground.score("Hi")
