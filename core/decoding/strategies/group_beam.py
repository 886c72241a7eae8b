"""Diverse (group) beam search (Vijayakumar et al. 2016), ported from transformers 4.55's
`_group_beam_search`, `BeamSearchScorer` and `HammingDiversityLogitsProcessor` for one prompt
(batch_size 1); transformers 5 no longer ships them.

The num_beams rows are split into num_beam_groups groups of equal size, decoded one after the other
within each step: a group is a small beam search of its own (its own finished hypotheses, its own
early stop), except that a token's score in group g drops by diversity_penalty for every beam of an
earlier group that chose it at this step. The trace's tree has one sub-tree per group (`group` on
every node), and `banned["diversity_penalty"]` lists the tokens the penalty lowered.
"""

from __future__ import annotations

from functools import partial

import torch

from core.decoding.knobs import knob, num
from core.decoding.processors import apply_processors
from core.decoding.strategies import register
from core.decoding.strategies.base import (
    RawBeamNode,
    RawRun,
    RawSequence,
    RowStats,
    Strategy,
    chosen_figures,
    raw_step,
)
from core.decoding.strategies.beam import BeamSearch, Hypothesis, check_returned_beams
from core.errors import InvalidSetting

MAX_DIVERSITY_PENALTY = 100.0  # x at most 64 beams of earlier groups: far from float32's limit


def hamming_diversity(input_ids, scores, *, current_tokens, beam_group_idx, diversity_penalty, group_size):
    """HammingDiversityLogitsProcessor.__call__ for one prompt: lower, in group `beam_group_idx`, every
    token that the groups before it chose at this step, by diversity_penalty per choice."""
    group_start_idx = beam_group_idx * group_size
    if group_start_idx == 0:
        return scores
    token_frequency = torch.bincount(current_tokens[:group_start_idx], minlength=scores.shape[-1])
    return scores - diversity_penalty * token_frequency.to(scores.device)


class BeamHypotheses:
    """transformers 4.55's `BeamHypotheses`: the best `size` finished hypotheses of one group."""

    def __init__(self, size: int, length_penalty: float, early_stopping, max_length: int):
        self.size, self.length_penalty = size, length_penalty
        self.early_stopping, self.max_length = early_stopping, max_length
        self.beams: list[tuple[float, Hypothesis]] = []
        self.worst_score = 1e9

    def add(self, hyp: Hypothesis, sum_logprobs: float, generated_len: int) -> float | None:
        """Keep the hypothesis if it is among the best; its length-penalised score if kept."""
        score = sum_logprobs / (generated_len ** self.length_penalty)
        if len(self.beams) < self.size or score > self.worst_score:
            self.beams.append((score, hyp))
            if len(self.beams) > self.size:
                sorted_next_scores = sorted([(s, idx) for idx, (s, _) in enumerate(self.beams)])
                del self.beams[sorted_next_scores[0][1]]
                self.worst_score = sorted_next_scores[1][0]
            else:
                self.worst_score = min(score, self.worst_score)
            return score
        return None

    def is_done(self, best_sum_logprobs: float, cur_len: int, prompt_len: int) -> bool:
        """Enough hypotheses, and no running beam can beat the worst of them any more."""
        if len(self.beams) < self.size:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping is False or self.length_penalty <= 0.0:
            best_len = cur_len - prompt_len
        else:  # "never": the best a running beam could reach at the length limit
            best_len = self.max_length - prompt_len
        return self.worst_score >= best_sum_logprobs / best_len ** self.length_penalty


@register("group_beam_search")
class GroupBeamSearch(Strategy):
    strategy = "beam"
    precedence = 1  # beam search with groups is still beam search, but this class runs it
    keeps_beams = True
    returns_one_sequence = False
    reads = tuple(BeamSearch.settings)
    settings = {
        "num_beam_groups": knob(1, "diverse beam search: groups the beams are split into (1 = plain beam search)",
                                kind="int", low=1),
        "diversity_penalty": knob(0.0, "diverse beam search: subtracted from a token's score per beam of an "
                                  "earlier group that chose it this step", low=0, high=MAX_DIVERSITY_PENALTY),
    }

    @classmethod
    def claims(cls, settings):
        return settings.strategy == "beam" and settings.num_beam_groups > 1

    @classmethod
    def describe(cls, s):
        return [BeamSearch.describe(s)[0],
                f"{s.num_beam_groups} groups, diversity penalty {num(s.diversity_penalty)}",
                *BeamSearch.describe(s)[1:]]

    @classmethod
    def check(cls, s):
        check_returned_beams(s)
        if s.num_beam_groups > s.num_beams or s.num_beams % s.num_beam_groups:
            raise InvalidSetting(f"num_beam_groups={s.num_beam_groups} must divide num_beams={s.num_beams} "
                                 "into groups of equal size.")
        if s.diversity_penalty == 0:
            raise InvalidSetting(f"diversity_penalty must be greater than 0 with num_beam_groups={s.num_beam_groups}, "
                                 "or every group repeats the first; 0.5 is a common choice.")

    @classmethod
    def rows_needed(cls, settings):
        return settings.num_beams

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        device = self.sequences.device
        self.groups = s.num_beam_groups
        self.group_size = s.num_beams // s.num_beam_groups
        self.max_length = self.prompt_len + self.max_new_tokens
        self.beams_to_keep = max(2, 1 + len(self.facts.eos_token_ids)) * self.group_size
        # only the first beam of each group is live at first
        self.beam_scores = torch.full((s.num_beams,), -1e9, dtype=torch.float, device=device)
        self.beam_scores[::self.group_size] = 0
        self.running = [Hypothesis() for _ in range(s.num_beams)]
        self.hyps = [BeamHypotheses(self.group_size, s.length_penalty, s.early_stopping, self.max_length)
                     for _ in range(self.groups)]
        self.group_done = [False] * self.groups
        self.tree: list[RawBeamNode] = []

    def advance(self, logits, hidden=None):
        step = len(self.stats)
        current_tokens = torch.zeros(self.rows, dtype=torch.long, device=logits.device)
        reordering = torch.zeros(self.rows, dtype=torch.long, device=logits.device)
        raw = self.raw(logits)
        processed, banned = [], []
        for g in range(self.groups):
            rows = slice(g * self.group_size, (g + 1) * self.group_size)
            raw_lp = raw.logprobs[rows]
            proc_lp, _, group_banned = apply_processors(self._processors(g, current_tokens), self.sequences[rows],
                                                        raw_lp)
            processed.append(proc_lp)
            banned.append(group_banned)
            scores, tokens, beam_idx = self._beam_group_step(step, g, raw_lp, proc_lp)
            self.beam_scores[rows] = scores
            current_tokens[rows] = tokens
            reordering[rows] = g * self.group_size + beam_idx
        self.stats.append(RowStats(raw, torch.cat(processed), {}, _merge_banned(banned, self.group_size),
                                   self.top_n, self.keep_distributions, unnormalised=True))
        self.sequences = torch.cat([self.sequences[reordering], current_tokens[:, None]], dim=-1)
        self.done = all(self.group_done) or self.sequences.shape[1] >= self.max_length
        return current_tokens, reordering

    def _processors(self, g: int, current_tokens):
        """The Hamming diversity penalty first (as generate() orders it), then the usual penalties."""
        s = self.settings
        diversity = partial(hamming_diversity, current_tokens=current_tokens, beam_group_idx=g,
                            diversity_penalty=s.diversity_penalty, group_size=self.group_size)
        return ([("diversity_penalty", diversity)] if s.diversity_penalty > 0 else []) + self.processors

    def _beam_group_step(self, step, g, raw_lp, proc_lp):
        """One group's step: its top continuations, then BeamSearchScorer.process. Returns the group's
        next beam scores, tokens and source beams (within the group)."""
        first = g * self.group_size
        if self.group_done[g]:  # a finished group idles on the pad token
            pad = self.facts.pad_token_id if self.facts.pad_token_id is not None else 0
            zeros = torch.zeros(self.group_size, dtype=torch.long, device=proc_lp.device)
            return torch.zeros(self.group_size, device=proc_lp.device), zeros + pad, zeros
        top_scores, src, ids = self._get_top_k_continuations(proc_lp, self.beam_scores[first:first + self.group_size])
        scores, tokens, beam_idx = self._update_finished_beams(step, g, raw_lp, proc_lp, top_scores, src, ids)
        cur_len = self.sequences.shape[1] + 1
        self.group_done[g] = self._check_early_stop_heuristic(g, max(top_scores.tolist()), cur_len)
        return scores, tokens, beam_idx

    def _get_top_k_continuations(self, proc_lp, beam_scores):
        """The 2 x group_size best (beam, token) pairs of the group: scores, source beams, tokens."""
        vocab = proc_lp.shape[-1]
        next_token_scores = (proc_lp + beam_scores.unsqueeze(-1)).view(1, -1)  # (1, group_size * V)
        top_scores, top_tokens = torch.topk(next_token_scores, self.beams_to_keep, dim=1, largest=True, sorted=True)
        return top_scores[0], torch.div(top_tokens[0], vocab, rounding_mode="floor"), top_tokens[0] % vocab

    def _update_finished_beams(self, step, g, raw_lp, proc_lp, top_scores, src, ids):
        """BeamSearchScorer.process: in rank order, an end-of-text among the top group_size joins the
        group's finished hypotheses, any other candidate takes the next running slot until all are
        filled. Every candidate becomes a node of the group's tree."""
        first = g * self.group_size
        candidates = self._record_tree(step, g, raw_lp, proc_lp, top_scores, src, ids)
        scores_l, src_l, ids_l = top_scores.tolist(), src.tolist(), ids.tolist()
        eos = set(self.facts.eos_token_ids)
        cur_len = self.sequences.shape[1] + 1
        next_scores, next_tokens, next_beams, running = [], [], [], []
        for rank, (score, beam, token) in enumerate(zip(scores_l, src_l, ids_l)):
            node = self.tree[candidates[rank].node]
            if token in eos:
                if rank >= self.group_size:
                    continue
                kept = self.hyps[g].add(candidates[rank], score, cur_len - self.prompt_len)
                if kept is not None:
                    node.status, node.finished_score = "finished", kept
            else:
                node.status = "kept"
                next_scores.append(score)
                next_tokens.append(token)
                next_beams.append(beam)
                running.append(candidates[rank])
            if len(next_scores) == self.group_size:
                break
        self.running[first:first + self.group_size] = running
        device = top_scores.device
        return (torch.tensor(next_scores, dtype=top_scores.dtype, device=device),
                torch.tensor(next_tokens, dtype=torch.long, device=device),
                torch.tensor(next_beams, dtype=torch.long, device=device))

    def _check_early_stop_heuristic(self, g, best_sum_logprobs: float, cur_len: int) -> bool:
        """Is group g done: enough finished hypotheses that no running beam can beat?"""
        return self.group_done[g] or self.hyps[g].is_done(best_sum_logprobs, cur_len, self.prompt_len)

    def _record_tree(self, step, g, raw_lp, proc_lp, top_scores, src, ids) -> list[Hypothesis]:
        """One node per candidate of group g (pruned until it is kept or finishes) and its hypothesis."""
        first = g * self.group_size
        chosen = chosen_figures(raw_lp[src], proc_lp[src], ids).to_host()
        candidates = []
        for beam, token, score, figures in zip(src.tolist(), ids.tolist(), top_scores.tolist(), chosen):
            parent = self.running[first + beam]
            node_id = len(self.tree)
            self.tree.append(RawBeamNode(node_id, step, parent.node, token, score, "pruned", group=g))
            candidates.append(Hypothesis(parent.path + [(first + beam, token, figures)], node_id))
        return candidates

    def _finalize(self) -> list[tuple[float, Hypothesis]]:
        """BeamSearchScorer.finalize: the running beams of unfinished groups join their hypotheses; then
        the best of all groups, best first (ties: the later one, as transformers pops a stable sort)."""
        generated_len = self.sequences.shape[1] - self.prompt_len
        scores = self.beam_scores.tolist()
        for g in range(self.groups):
            if self.group_done[g]:
                continue
            for row in range(g * self.group_size, (g + 1) * self.group_size):
                kept = self.hyps[g].add(self.running[row], scores[row], generated_len)
                if kept is not None and self.running[row].node is not None:
                    node = self.tree[self.running[row].node]
                    node.status, node.finished_score = "finished", kept
        candidates = sorted((beam for h in self.hyps for beam in h.beams), key=lambda x: x[0])
        return [candidates.pop() for _ in range(self.settings.num_return_sequences)]

    def best_so_far(self) -> list[int]:
        return [token for _, token, _ in self.running[0].path]

    def result(self) -> RawRun:
        sequences = []
        for score, hyp in self._finalize():
            steps = [raw_step(self.stats[i], row, token, figs) for i, (row, token, figs) in enumerate(hyp.path)]
            reason = "eos" if hyp.path[-1][1] in self.facts.eos_token_ids else "max_new_tokens"
            sequences.append(RawSequence(steps, reason, beam_score=score))
        return RawRun(self.settings, sequences, beam_tree=self.tree)


def _merge_banned(per_group: list[dict], group_size: int) -> dict[str, list[list[int]]]:
    """Each group's banned ids (name -> per row) as one dict over all rows; [] where a group had none."""
    names = [name for group in per_group for name in group]
    return {name: [ids for group in per_group for ids in group.get(name, [[]] * group_size)]
            for name in dict.fromkeys(names)}
