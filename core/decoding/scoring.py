"""Scoring mode: how likely the model finds a given text, token by token."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from core.models.lm import StepModel


@dataclass
class ScoredToken:
    id: int
    token: str
    logprob: float  # raw distribution, natural log
    rank: int  # 1 = the model's first choice at this position
    surprisal_bits: float  # -log2 p
    top_id: int  # what the model expected most here
    top_prob: float


@dataclass
class ScoreResult:
    model: str
    tokens: list[ScoredToken]
    unscored_first_token: bool  # the first token has no context, so it is shown but not scored
    first_token: str = ""

    @property
    def total_logprob(self) -> float:
        return float(sum(t.logprob for t in self.tokens))

    @property
    def perplexity(self) -> float:
        return math.exp(-self.total_logprob / len(self.tokens)) if self.tokens else float("nan")

    def to_dict(self) -> dict:
        return {"model": self.model, "perplexity": self.perplexity, "total_logprob": self.total_logprob,
                "unscored_first_token": self.unscored_first_token, "first_token": self.first_token,
                "tokens": [asdict(t) for t in self.tokens]}


@torch.inference_mode()
def score_ids(lm: StepModel, ids: list[int], bos_id: int | None) -> list[tuple[int, float, int, int, float]]:
    """(id, logprob, rank, top_id, top_prob) for every id that has context.

    With a BOS id the first token is scored after it. Texts longer than the context are scored in
    windows that overlap by half, so every token keeps at least half a context of history.
    """
    seq = ([bos_id] if bos_id is not None else []) + list(ids)
    ctx = lm.facts.context_length
    stride = max(1, ctx // 2)
    out: list[tuple[int, float, int, int, float]] = []
    start, next_target = 0, 1
    while next_target < len(seq):
        end = min(start + ctx, len(seq))
        window = torch.tensor([seq[start:end]], device=lm.device)
        logprobs = F.log_softmax(lm.all_logits(window)[0], dim=-1)  # (L, V)
        targets = torch.tensor(seq[next_target:end], device=lm.device)
        rows = logprobs[next_target - 1 - start: end - 1 - start]  # position t-1 predicts token t
        chosen = rows.gather(1, targets[:, None]).squeeze(1)
        ranks = (rows > chosen[:, None]).sum(-1) + 1
        top_lp, top_id = rows.max(-1)
        out.extend(zip(targets.tolist(), chosen.tolist(), ranks.tolist(), top_id.tolist(), top_lp.exp().tolist()))
        next_target = end
        start = max(start + 1, end - stride)
    return out
