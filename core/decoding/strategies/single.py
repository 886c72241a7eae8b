"""Greedy search and sampling: each row continues itself (transformers' `_sample`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.decoding.strategies import register
from core.decoding.strategies.base import RawRun, RawSequence, RawStep, RowStats, Strategy, apply_processors, chosen_figures


class _OneRowPerSequence(Strategy):
    """Greedy or sampling: pick one token per row from the processed scores; rows never move."""

    follows_forced_ids = True

    def __init__(self, *args, forced_ids: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.forced = forced_ids
        self.unfinished = torch.ones(self.rows, dtype=torch.bool, device=self.sequences.device)
        self.records: list[tuple] = []  # per step: (live rows, chosen ids, chosen-token figures)
        self.finish = ["max_new_tokens"] * self.rows

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """Next ids (R,) from the processed scores (R, V)."""
        raise NotImplementedError

    def advance(self, logits, hidden=None):
        step = len(self.stats)
        raw_lp = F.log_softmax(logits, dim=-1)
        scores, kept, banned = apply_processors(self.processors, self.sequences, logits)
        proc_lp = raw_lp if scores is logits else F.log_softmax(scores, dim=-1)
        if self.forced is not None:
            next_ids = torch.full((self.rows,), self.forced[step], device=logits.device)
        else:
            next_ids = self.choose(scores)
        live = self.unfinished.clone()
        if self.facts.pad_token_id is not None and len(self.eos):
            # as generate(): rows that already finished keep receiving the pad token
            next_ids = torch.where(live, next_ids, self.facts.pad_token_id)
        self.stats.append(RowStats(raw_lp, proc_lp, kept, banned, self.top_n, self.keep_distributions))
        figures = torch.stack([f.float() for f in chosen_figures(raw_lp, proc_lp, next_ids)], -1)
        self.records.append((live, next_ids, figures))
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=-1)
        if len(self.eos):
            hit_eos = torch.isin(next_ids, self.eos) & live
            for row in hit_eos.nonzero().flatten().tolist():
                self.finish[row] = "eos"
            self.unfinished &= ~hit_eos
        self.done = step + 1 >= self.max_new_tokens or not bool(self.unfinished.any())
        return next_ids, torch.arange(self.rows, device=logits.device)

    def result(self) -> RawRun:
        sequences = []
        steps_per_row: list[list[RawStep]] = [[] for _ in range(self.rows)]
        for step, (live, next_ids, figs) in enumerate(self.records):
            live, ids, figs = live.tolist(), next_ids.tolist(), figs.tolist()
            for row in range(self.rows):
                if live[row]:
                    lp, plp, rank, prank = figs[row]
                    steps_per_row[row].append(self._raw_step(
                        self.stats[step], row, ids[row], (lp, plp, int(rank), int(prank))))
        for row in range(self.rows):
            sequences.append(RawSequence(steps_per_row[row], self.finish[row]))
        return RawRun(self.settings, sequences)


@register("greedy_search")
class GreedySearch(_OneRowPerSequence):
    """The most likely token under the processed scores, every step."""

    def choose(self, scores):
        return torch.argmax(scores, dim=-1)


@register("sample")
class Sampling(_OneRowPerSequence):
    """A draw from the processed distribution, from the run's own generator (seeded with its seed);
    num_return_sequences rows, each an independent sample."""

    @classmethod
    def rows_needed(cls, settings):
        return settings.num_return_sequences

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator(device=self.sequences.device)
        self.generator.manual_seed(self.settings.seed)

    def choose(self, scores):
        probs = F.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(1)
