"""The trace: log-probs, ranks, candidates, what processors cut, figures, and the beam tree."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import PROMPTS
from core.playground import default_lineup
from core.decoding.settings import DecodeSettings
from core.decoding.trace import distinct_n, repeated_ngrams


def seed004_sequence_logprob(model, labels, prompt_len):
    """Seed 004's sequence_logprob, verbatim in spirit: one full forward pass, no cache."""
    with torch.no_grad():
        logits = model(labels).logits
        logp = F.log_softmax(logits[:, :-1, :], dim=-1)
        logp_label = torch.gather(logp, 2, labels[:, 1:].unsqueeze(2)).squeeze(-1)
        return torch.sum(logp_label[:, prompt_len - 1:]).item()


@pytest.mark.parametrize("settings", [DecodeSettings("greedy", max_new_tokens=20),
                                      DecodeSettings("beam", num_beams=4, max_new_tokens=20),
                                      DecodeSettings("sample", top_p=0.9, top_k=0, max_new_tokens=20, seed=2)],
                         ids=["greedy", "beam", "top-p"])
def test_sequence_logprob_equals_independent_recomputation(playground, settings):
    result = playground.decode(PROMPTS[1], settings)
    seq = result.runs[0].best
    labels = torch.tensor([result.prompt_ids + seq.ids])
    expected = seed004_sequence_logprob(playground.model, labels, len(result.prompt_ids))
    assert seq.sequence_logprob == pytest.approx(expected, abs=1e-3)
    figures = seq.figures()
    assert figures.mean_logprob == pytest.approx(expected / len(seq.ids), abs=1e-4)
    assert figures.perplexity == pytest.approx(math.exp(-expected / len(seq.ids)), rel=1e-3)


def test_step_records_are_consistent(playground):
    seq = playground.decode(PROMPTS[0], DecodeSettings("sample", top_k=40, top_p=0.95, max_new_tokens=15,
                                                       seed=4)).runs[0].best
    for step in seq.steps:
        probs = [c.prob for c in step.top]
        assert probs == sorted(probs, reverse=True) and len(step.top) == 10
        if step.rank <= 10:
            assert step.top[step.rank - 1].id == step.id
            assert math.log(step.top[step.rank - 1].prob) == pytest.approx(step.logprob, abs=1e-5)
        assert step.kept["top_k"] == 40 and 1 <= step.kept["top_p"] <= 40
        assert step.processed_logprob >= step.logprob  # cutting the tail only raises the kept tokens
        ranks = [r for r, _ in step.curve]
        mass = [m for _, m in step.curve]
        assert ranks == sorted(ranks) and ranks[-1] == playground.facts.vocab_size
        assert mass == sorted(mass) and mass[-1] == pytest.approx(1.0, abs=1e-4)
        assert 0 <= step.entropy <= math.log(playground.facts.vocab_size)


def test_no_repeat_ngram_bans_are_recorded(playground):
    seq = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=30,
                                                       no_repeat_ngram_size=1)).runs[0].best
    assert len(set(seq.ids)) == len(seq.ids)  # size 1: no token twice
    prompt_ids = playground.tokenizer.encode(PROMPTS[0])
    later = seq.steps[-1]
    banned = set(later.banned["no_repeat_ngram"])
    assert banned and banned <= set(prompt_ids + seq.ids[:-1])


def test_greedy_picks_rank_one_and_processed_equals_raw(playground):
    seq = playground.decode(PROMPTS[2], DecodeSettings("greedy", max_new_tokens=10)).runs[0].best
    assert all(s.rank == 1 and s.processed_logprob == s.logprob for s in seq.steps)


def test_beam_tree(playground):
    run = playground.decode(PROMPTS[1], DecodeSettings("beam", num_beams=3, max_new_tokens=8,
                                                       num_return_sequences=2)).runs[0]
    nodes = {n.id: n for n in run.beam_tree}
    per_step = {}
    for n in run.beam_tree:
        per_step.setdefault(n.step, []).append(n)
        if n.parent is not None:
            parent = nodes[n.parent]
            assert parent.step == n.step - 1 and parent.status == "kept"
            assert n.score <= parent.score + 1e-6  # log-probs only add negatives
    for step, group in per_step.items():
        assert len(group) == 6  # 2 x num_beams candidates every step
        assert sum(n.status == "kept" for n in group) == (3 if step < 7 else 0)
    finished = [n for n in run.beam_tree if n.status == "finished"]
    assert finished and all(n.finished_score is not None for n in finished)
    # the best hypothesis's tokens are a chain of tree nodes ending in a finished one
    best = max(finished, key=lambda n: n.finished_score)
    chain = []
    node = best
    while node is not None:
        chain.append(node.token_id)
        node = nodes[node.parent] if node.parent is not None else None
    assert chain[::-1] == run.best.ids
    assert best.finished_score == pytest.approx(run.best.beam_score, abs=1e-6)


def test_lineup_in_one_batch_equals_each_run_alone(playground):
    lineup = default_lineup(max_new_tokens=16, seed=11)
    together = playground.compare(PROMPTS[1], lineup)
    assert [r.name for r in together.runs] == [s.name() for s in lineup]
    for settings, run in zip(lineup, together.runs):
        alone = playground.decode(PROMPTS[1], settings).runs[0]
        assert [s.ids for s in run.sequences] == [s.ids for s in alone.sequences], settings.name()
        assert run.best.sequence_logprob == pytest.approx(alone.best.sequence_logprob, abs=1e-4)


def test_distinct_and_repeats():
    assert distinct_n([1, 2, 3, 4], 1) == 1.0
    assert distinct_n([1, 1, 1, 1], 1) == 0.25
    assert distinct_n([1, 2, 1, 2, 1], 2) == 0.5
    assert repeated_ngrams([1, 2, 1, 2, 1], 2) == 2
    assert distinct_n([1], 2) == 0.0


def test_a_branch_continues_from_the_exact_token_path(playground):
    main = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=12))
    ids = main.runs[0].best.ids
    # taking the main line's own token at step 3 must reproduce the main line from there
    same = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=8), continuation=ids[:4])
    assert same.prompt_ids == main.prompt_ids + ids[:4]
    assert same.runs[0].best.ids == ids[4:12]
    # an alternative token really changes the path
    alternative = main.runs[0].best.steps[3].top[1].id
    other = playground.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=8),
                              continuation=ids[:3] + [alternative])
    assert other.prompt_ids[-1] == alternative and other.prompt_ids[:-1] == main.prompt_ids + ids[:3]


def test_entropy_from_log_probs_is_torch_entr_of_the_distribution():
    """The trace's entropy (-sum p log p from the log-probs at hand) against torch.special.entr of the
    probabilities, with tokens a processor removed (-inf) and probabilities that underflow to 0."""
    from core.decoding.strategies.base import entropy

    torch.manual_seed(5)
    logits = torch.randn(6, 500) * torch.tensor([0.1, 1.0, 5.0, 30.0, 200.0, 1.0])[:, None]
    logits[5, 100:] = float("-inf")  # top-k-like cut
    logprobs = F.log_softmax(logits, dim=-1)
    probs = logprobs.exp()
    got = entropy(logprobs, probs)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.special.entr(probs).sum(-1), rtol=1e-5, atol=1e-6)
    assert got[4] < 1e-3 and abs(got[0] - math.log(500)) < 0.01  # nearly one-hot; nearly uniform
    logits[2, 7] = float("nan")  # a broken model's row stays NaN, as entr leaves it
    logprobs = F.log_softmax(logits, dim=-1)
    assert entropy(logprobs, logprobs.exp()).isnan().tolist() == [False, False, True, False, False, False]
