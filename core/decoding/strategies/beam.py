"""Beam search, ported from transformers 5.x's vectorised `_beam_search` for one prompt (batch_size 1).

The step is split as transformers splits it, under the same names, so a reader who knows
`generation/utils.py` finds each piece: `_get_top_k_continuations`, `_get_running_beams_for_next_iteration`,
`_update_finished_beams`, `_check_early_stop_heuristic`; `_record_tree` is ours (the trace's beam tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.decoding.knobs import Runs, knob, num, off_only
from core.decoding import stopping
from core.decoding.processors import apply_processors
from core.decoding.strategies import register
from core.errors import InvalidSetting
from core.decoding.strategies.base import (
    Chosen,
    RawBeamNode,
    RawRun,
    RawSequence,
    RowStats,
    Strategy,
    chosen_figures,
    raw_step,
)


@dataclass
class Hypothesis:
    """A beam's path: per step (row at that step, token, chosen-token figures), and its tree node."""
    path: list[tuple[int, int, Chosen]] = field(default_factory=list)
    node: int | None = None
    stopped: tuple[str, str] | None = None  # (finish reason, what it met), where a stopping criterion ended it


MAX_ABS_LENGTH_PENALTY = 10.0  # 1024 ** 10 = 1.3e30: length ** length_penalty stays finite in float32
# vLLM's beam search request takes no logits processors, and it always stops as early_stopping=False does
BEAM_LIMITS_ON_VLLM = "vLLM's beam search takes no repetition penalty and stops as early_stopping=false does"


def _check_length_penalty(value: float) -> None:
    if abs(value) > MAX_ABS_LENGTH_PENALTY:
        raise InvalidSetting(
            f"length_penalty={value:g} is outside -{MAX_ABS_LENGTH_PENALTY:g} to "
            f"{MAX_ABS_LENGTH_PENALTY:g}, where length ** length_penalty stays finite; 1.0 is generate()'s default.")


def check_returned_beams(s) -> None:
    if s.num_return_sequences > s.num_beams:
        raise InvalidSetting(f"num_return_sequences={s.num_return_sequences} cannot exceed num_beams={s.num_beams}.")


@register("beam_search")
class BeamSearch(Strategy):
    """num_beams rows; each step keeps the num_beams best unfinished continuations of all beams and
    the num_beams best finished hypotheses (length penalty applied when a hypothesis finishes)."""

    strategy = "beam"
    keeps_beams = True
    returns_one_sequence = False
    backends = {"vllm": Runs(request="beam", send=lambda s: {"length_penalty": s.length_penalty},
                             refuse=lambda s: BEAM_LIMITS_ON_VLLM if s.repetition_penalty != 1.0 else None)}
    settings = {  # vLLM's requests carry the beam width and the number returned (as n)
        "num_beams": knob(1, "beam width (beam: default 5)", kind="int", low=1, backends={"vllm": Runs()}),
        "length_penalty": knob(1.0, "beam score = sum of log-probs / length ** length_penalty",
                               low=-MAX_ABS_LENGTH_PENALTY, high=MAX_ABS_LENGTH_PENALTY, check=_check_length_penalty,
                               backends={"vllm": Runs()}),
        "early_stopping": knob(False, "true, false or never, as in generate()", kind="bool_or_never",
                               backends={"vllm": off_only("early_stopping", False, BEAM_LIMITS_ON_VLLM)}),
        "num_return_sequences": knob(1, "finished beams (beam) or independent samples (sample) returned",
                                     kind="int", low=1, backends={"vllm": Runs()}),
    }

    @classmethod
    def claims(cls, settings):
        return settings.strategy == "beam" and settings.num_beams > 1  # generate(): one beam is greedy

    @classmethod
    def describe(cls, s):
        parts = [f"beam {s.num_beams}"]
        if s.length_penalty != 1.0:
            parts.append(f"length penalty {num(s.length_penalty)}")
        return parts

    @classmethod
    def check(cls, s):
        check_returned_beams(s)

    @classmethod
    def rows_needed(cls, settings):
        return settings.num_beams

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        device = self.sequences.device
        self.num_beams = self.settings.num_beams
        n_eos = len(self.facts.eos_token_ids)
        self.beams_to_keep = max(2, 1 + n_eos) * self.num_beams
        self.top_num_beam_mask = torch.cat((torch.ones(self.num_beams, dtype=torch.bool),
                                            torch.zeros(self.beams_to_keep - self.num_beams,
                                                        dtype=torch.bool))).to(device)
        self.max_length = self.prompt_len + self.max_new_tokens
        self.cur_len = self.prompt_len
        # only beam 0 is live at first, so the identical prompt rows do not all pick the same token
        self.running_scores = torch.zeros((1, self.num_beams), dtype=torch.float, device=device)
        self.running_scores[:, 1:] = -1e9
        self.running = [Hypothesis() for _ in range(self.num_beams)]
        self.beam_scores = torch.full((1, self.num_beams), -1e9, dtype=torch.float, device=device)
        self.finished: list[Hypothesis | None] = [None] * self.num_beams
        self.is_sent_finished = torch.zeros((1, self.num_beams), dtype=torch.bool, device=device)
        self.heuristic_unsatisfied = torch.ones((1, 1), dtype=torch.bool, device=device)
        self.tree: list[RawBeamNode] = []

    def scores(self, logits, raw_lp):
        """(step scores the beams add up, the processed log-probs a trace shows, kept, banned): both are
        the processed log-probs here (transformers does not renormalise them)."""
        proc_lp, kept, banned = apply_processors(self.processors, self.sequences, raw_lp)
        return proc_lp, proc_lp, kept, banned

    def advance(self, logits, hidden=None):
        step = len(self.stats)
        raw = self.raw(logits)
        raw_lp = raw.logprobs
        step_scores, proc_lp, kept, banned = self.scores(logits, raw_lp)
        self.stats.append(RowStats(raw, proc_lp, kept, banned, self.top_n, self.keep_distributions,
                                   unnormalised=True))

        topk_log_probs, src, ids = self._get_top_k_continuations(step_scores)
        # a candidate stops when it is an end-of-text or reaches the length limit
        hits = torch.isin(ids, self.eos) if len(self.eos) else torch.zeros_like(ids, dtype=torch.bool)
        hits = hits | (self.cur_len + 1 >= self.max_length)
        stopped = [None] * len(ids)
        if self.stops:  # generate(): the stopping criteria on every candidate's sequence
            stopped = stopping.met(self.stops, torch.cat([self.sequences[src], ids[:, None]], dim=-1))
            hits = hits | torch.tensor([found is not None for found in stopped], device=hits.device)
        hits = hits[None, :]  # (1, K)
        next_topk, next_running_scores = self._get_running_beams_for_next_iteration(topk_log_probs, hits)
        did_finish, fin_lp, keep_merged, merged_scores, merged_finished = self._update_finished_beams(
            topk_log_probs, hits)
        candidates = self._record_tree(step, raw_lp, proc_lp, src, ids, topk_log_probs, hits, did_finish, fin_lp,
                                       next_topk[0].tolist(), keep_merged[0].tolist())
        for candidate, found in zip(candidates, stopped):
            candidate.stopped = found

        merged_hyps = self.finished + candidates
        self.finished = [merged_hyps[i] for i in keep_merged[0].tolist()]
        self.beam_scores = torch.take_along_dim(merged_scores, keep_merged, dim=1)
        self.is_sent_finished = torch.take_along_dim(merged_finished, keep_merged, dim=1)
        self.running = [candidates[i] for i in next_topk[0].tolist()]
        self.running_scores = next_running_scores
        rows = src[next_topk[0]]  # old row each new running beam continues
        self.sequences = torch.cat([self.sequences[src], ids[:, None]], dim=-1)[next_topk[0]]
        self.cur_len += 1
        self._check_early_stop_heuristic()
        improvement_possible = bool(self.heuristic_unsatisfied.any())
        exists_open_beam = not (bool(self.is_sent_finished.all()) and self.settings.early_stopping is True)
        valid_continuations = not bool(hits.all())
        self.done = not (improvement_possible and exists_open_beam and valid_continuations)
        return self.sequences[:, -1], rows

    def _get_top_k_continuations(self, proc_lp):
        """The 2 x num_beams best (beam, token) pairs by running score + log-prob: (1, K) scores, and
        (K,) source beams and tokens."""
        vocab = proc_lp.shape[-1]
        accumulated = (proc_lp + self.running_scores[0, :, None]).reshape(1, -1)  # (1, beams * V)
        topk_log_probs, topk_indices = torch.topk(accumulated, k=self.beams_to_keep)
        return topk_log_probs, (topk_indices // vocab)[0], (topk_indices % vocab)[0]

    def _get_running_beams_for_next_iteration(self, topk_log_probs, hits):
        """The best num_beams candidates that did not stop keep running: their indices and scores."""
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
        next_topk = torch.topk(topk_running_log_probs, k=self.num_beams)[1]
        return next_topk, torch.take_along_dim(topk_running_log_probs, next_topk, dim=1)

    def _update_finished_beams(self, topk_log_probs, hits):
        """Stopped candidates among the top num_beams join the finished hypotheses, scored with the
        length penalty; the best num_beams of old and new are kept (indices into old + new)."""
        s = self.settings
        did_finish = hits & self.top_num_beam_mask[None, :]
        fin_lp = topk_log_probs / ((self.cur_len + 1 - self.prompt_len) ** s.length_penalty)
        beams_full = torch.all(self.is_sent_finished, axis=-1, keepdims=True) & (s.early_stopping is True)
        fin_lp += beams_full.to(torch.float32) * -1.0e9
        fin_lp += (~self.heuristic_unsatisfied).to(torch.float32) * -1.0e9
        fin_lp += (~did_finish) * -1.0e9
        merged_scores = torch.cat((self.beam_scores, fin_lp), dim=1)
        merged_finished = torch.cat((self.is_sent_finished, did_finish), dim=1)
        keep_merged = torch.topk(merged_scores, k=self.num_beams)[1]
        return did_finish, fin_lp, keep_merged, merged_scores, merged_finished

    def _check_early_stop_heuristic(self):
        """Can the best running beam still beat the worst finished hypothesis? Once it cannot, it never can."""
        s = self.settings
        if s.early_stopping == "never" and s.length_penalty > 0.0:
            best_len = self.max_length - self.prompt_len
        else:
            best_len = self.cur_len - self.prompt_len
        best_possible = self.running_scores[:, :1] / (best_len ** s.length_penalty)
        worst_finished = torch.where(self.is_sent_finished,
                                     torch.min(self.beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        self.heuristic_unsatisfied = self.heuristic_unsatisfied & torch.any(
            best_possible > worst_finished, dim=-1, keepdim=True)

    def _record_tree(self, step, raw_lp, proc_lp, src, ids, topk_log_probs, hits, did_finish, fin_lp,
                     next_l, keep_l) -> list[Hypothesis]:
        """One tree node per candidate (kept, finished or pruned) and the hypothesis it would extend."""
        rows = raw_lp[src]  # (K, V): a copy, made once when no processor changed anything
        chosen = chosen_figures(rows, rows if proc_lp is raw_lp else proc_lp[src], ids).to_host()
        src_l, ids_l, scores_l = src.tolist(), ids.tolist(), topk_log_probs[0].tolist()
        fin_l, hits_l, stopped_l = fin_lp[0].tolist(), did_finish[0].tolist(), hits[0].tolist()
        candidates = []
        for k in range(self.beams_to_keep):
            parent = self.running[src_l[k]]
            node_id = len(self.tree)
            finished_here = (self.num_beams + k) in keep_l and hits_l[k]
            # a candidate that hit EOS or the length limit never continues, even when generate() keeps
            # it in a running slot (with a -1e9 score) for want of better ones
            if finished_here:
                status = "finished"
            elif k in next_l and not stopped_l[k]:
                status = "kept"
            else:
                status = "pruned"
            self.tree.append(RawBeamNode(node_id, step, parent.node, ids_l[k], scores_l[k], status,
                                         fin_l[k] if finished_here else None))
            candidates.append(Hypothesis(parent.path + [(src_l[k], ids_l[k], chosen[k])], node_id))
        return candidates

    def best_so_far(self) -> list[int]:
        return [token for _, token, _ in self.running[0].path]

    def result(self) -> RawRun:
        scores = self.beam_scores[0].tolist()
        sequences = []
        for hyp, score in zip(self.finished[: self.settings.num_return_sequences], scores):
            steps = [raw_step(self.stats[i], row, token, figs)
                     for i, (row, token, figs) in enumerate(hyp.path)]
            last = hyp.path[-1][1]
            reason, detail = "eos" if last in self.facts.eos_token_ids else "max_new_tokens", None
            if reason != "eos" and hyp.stopped is not None:
                reason, detail = hyp.stopped
            sequences.append(RawSequence(steps, reason, beam_score=score, finish_detail=detail))
        return RawRun(self.settings, sequences, beam_tree=self.tree)
