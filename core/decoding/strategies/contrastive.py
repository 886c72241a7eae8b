"""Contrastive search (Su et al. 2022), ported from transformers 4.55's `_contrastive_search` and
`_ranking_fast` for one prompt (batch_size 1).

The run occupies top_k rows. Each step it proposes the top_k most likely tokens (after the penalty
processors, no warpers), feeds all of them at once, and when their hidden states come back keeps the
candidate with the best (1 - alpha) x probability - alpha x degeneration penalty, where the penalty is
the candidate's highest cosine similarity to the hidden states of every token so far. The chosen
candidate's logits are the next step's distribution, so each token costs one forward pass of top_k rows.

The trace records, per token, `kept["top_k"]` (the candidates re-ranked) and
`banned["degeneration_penalty"]`: the candidates more likely than the chosen one that the penalty
pushed below it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.decoding import stopping
from core.decoding.knobs import knob, num
from core.decoding.processors import apply_processors
from core.decoding.strategies import register
from core.errors import InvalidSetting
from core.decoding.strategies.base import (
    Chosen,
    RawRun,
    RawSequence,
    RowStats,
    Strategy,
    chosen_figures,
    raw_step,
)


@register("contrastive_search")
class ContrastiveSearch(Strategy):
    strategy = "contrastive"
    needs_hidden_states = True
    reads = ("top_k",)
    settings = {
        "penalty_alpha": knob(None, "contrastive: weight of the degeneration penalty, in (0, 1] (0.6 is the "
                              "paper's choice)", kind="optional_float", low=0, high=1, open_low=True),
    }

    @classmethod
    def describe(cls, s):
        alpha = "?" if s.penalty_alpha is None else num(s.penalty_alpha)
        return [f"contrastive, penalty alpha {alpha}", f"top-k {s.top_k}"]

    @classmethod
    def check(cls, s):
        if s.penalty_alpha is None:
            raise InvalidSetting("contrastive search needs penalty_alpha, the weight of its degeneration penalty, "
                                 "in (0, 1]; 0.6 is the paper's choice.")
        if s.top_k < 2:
            raise InvalidSetting(f"contrastive search needs top_k of at least 2 candidates to re-rank, got "
                                 f"{s.top_k}; with 1 it is greedy decoding.")

    @classmethod
    def rows_needed(cls, settings):
        return settings.top_k

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sequences = self.sequences[:1]  # (1, T): the one sequence the processors see
        self.alpha = self.settings.penalty_alpha
        self.context_hidden: torch.Tensor | None = None  # (1, S, H): the prompt's and chosen tokens' states
        self.pending: tuple | None = None  # the candidates fed last step, with their distributions
        self.records: list[tuple[int, Chosen]] = []  # per token
        self.finish = "max_new_tokens"
        self.finish_detail: str | None = None

    def advance(self, logits, hidden=None):
        raw = self.raw(logits)
        if self.pending is None:  # the prefill: the prompt's hidden states are the first context
            self.context_hidden = hidden[:1]
            return self._propose(logits[:1], raw.rows(slice(0, 1)), source_row=0)
        next_hidden = hidden[:, -1:, :]  # (K, 1, H): each candidate's state at its own position
        selected = self._rank_candidates(next_hidden)
        self._commit(selected, next_hidden[selected])
        if self.done:
            return self.sequences[0, -1:].expand(self.rows), torch.zeros(self.rows, dtype=torch.long, device=logits.device)
        return self._propose(logits[selected:selected + 1], raw.rows(slice(selected, selected + 1)),
                             source_row=selected)

    def _propose(self, row_logits, raw, source_row: int):
        """Feed the top_k tokens of the processed distribution, every one continuing `source_row`."""
        raw_lp = raw.logprobs
        scores, kept, banned = apply_processors(self.processors, self.sequences, row_logits)
        proc_lp = raw_lp if scores is row_logits else F.log_softmax(scores, dim=-1)
        top_k_probs, top_k_ids = torch.topk(F.softmax(scores, dim=-1), dim=-1, k=self.rows)  # (1, K)
        self.pending = (top_k_probs, top_k_ids[0], raw, proc_lp, kept, banned)
        return top_k_ids[0], torch.full((self.rows,), source_row, dtype=torch.long, device=row_logits.device)

    def _rank_candidates(self, next_hidden) -> int:
        """transformers' `_ranking_fast`: the candidate with the best contrastive score. (The padding
        mask it adds is all zeros for one unpadded prompt.)"""
        top_k_probs = self.pending[0]
        context_hidden = self.context_hidden.repeat_interleave(self.rows, dim=0)  # (K, S, H)
        norm_context_hidden = context_hidden / context_hidden.norm(dim=2, keepdim=True)
        norm_next_hidden = next_hidden / next_hidden.norm(dim=2, keepdim=True)
        cosine_matrix = torch.matmul(norm_context_hidden, norm_next_hidden.transpose(1, 2)).squeeze(-1)  # (K, S)
        degeneration_penalty, _ = torch.max(cosine_matrix, dim=-1)  # (K,)
        contrastive_score = (1.0 - self.alpha) * top_k_probs.view(-1) - self.alpha * degeneration_penalty
        contrastive_score = torch.stack(torch.split(contrastive_score, self.rows))  # (1, K)
        _, selected_idx = contrastive_score.max(dim=-1)
        return int(selected_idx[0])

    def _commit(self, selected: int, hidden) -> None:
        """Append the chosen candidate: its token, its hidden state, and its step of the trace."""
        _, top_k_ids, raw, proc_lp, kept, banned = self.pending
        token = top_k_ids[selected:selected + 1]
        kept = {**kept, "top_k": torch.tensor([self.rows])}
        banned = {**banned, "degeneration_penalty": [top_k_ids[:selected].tolist()]}
        self.stats.append(RowStats(raw, proc_lp, kept, banned, self.top_n, self.keep_distributions))
        self.records.append((int(token), chosen_figures(raw.logprobs, proc_lp, token).to_host()[0]))
        self.sequences = torch.cat([self.sequences, token[None, :]], dim=-1)
        self.context_hidden = torch.cat([self.context_hidden, hidden[None]], dim=1)
        if len(self.eos) and bool(torch.isin(token, self.eos)):
            self.finish = "eos"
        elif self.stops and (found := stopping.met(self.stops, self.sequences)[0]) is not None:
            self.finish, self.finish_detail = found
        self.done = self.finish != "max_new_tokens" or len(self.records) >= self.max_new_tokens

    def result(self) -> RawRun:
        steps = [raw_step(self.stats[i], 0, token, chosen) for i, (token, chosen) in enumerate(self.records)]
        return RawRun(self.settings, [RawSequence(steps, self.finish, finish_detail=self.finish_detail)])
