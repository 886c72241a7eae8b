"""Contrastive decoding (Li et al. 2023, "Contrastive Decoding: Open-ended Text Generation as Optimization"):
the expert (this playground's model) and a smaller amateur (`amateur_model`) read the same tokens; each
step a token scores log p_expert - log p_amateur if it is plausible, that is if its expert probability is
at least cd_alpha times the most likely token's (the set V_head), and -inf otherwise. Greedy search takes
the best score every step; beam search (num_beams > 1) keeps the beams with the best sum of scores.

Not transformers' contrastive *search* (Su et al. 2022, `penalty_alpha`, strategy `contrastive`), which
uses one model and its hidden states: the names keep them apart everywhere ("contrastive decoding" here).

What the paper's equations leave open, decided after reading the authors' code
(XiangLi1999/ContrastiveDecoding, `transformers/src/transformers/generation_utils.py`):
- log p_expert is the expert's distribution after the penalties generate() applies in every mode
  (repetition penalty, no-repeat-n-gram), renormalised: their code runs the logits processors, then the
  plausibility warper, which takes a log_softmax of what it is given. V_head is cut on that distribution.
- The amateur's temperature T divides its logits before the softmax: log p_amateur =
  log_softmax(amateur logits / T), the tempered distribution the paper describes ("a high temperature
  flattens the amateur's distribution"). The authors' code divides the log-probs instead
  (log_softmax(logits) / T); the two differ by a constant per row, so greedy choices are the same, and
  beam scores differ by that constant per beam and step. The amateur takes no penalty (as in their code)
  and sees the whole prompt (the paper's restricted-context amateur is not offered).
- Implausible tokens score -inf (their code sets the expert's implausible log-probs to -inf, and an
  amateur's -inf to +inf, so the difference is -inf either way).
- Beam search: with beams, at least 2 tokens per beam stay plausible (their warper's min_tokens_to_keep=2),
  so that 2 x num_beams candidates always exist; the beams are ranked by their running sum of scores, as
  in transformers' beam search (the same code as `beam`, with its length penalty and early stopping).
  Their code pre-selects the 2 x num_beams candidates by the expert's log-prob of the step before
  ranking them by the summed score; we rank every candidate by the summed score, which is the paper's
  objective.
- Greedy search applies the cut as well (the paper's objective; their greedy code path left it off).

The trace: a token's raw log-prob is the expert's; its processed log-prob is under the contrastive
distribution, softmax of the scores over V_head (so the candidates' processed probabilities are numbers
people can read); `kept["plausibility"]` counts V_head. A beam's `beam_score` is the sum of scores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.decoding.knobs import knob, num
from core.decoding.processors import apply_processors
from core.decoding.strategies import register
from core.decoding.strategies.beam import BeamSearch, check_returned_beams
from core.decoding.strategies.single import MAX_TEMPERATURE, MIN_TEMPERATURE, GreedySearch
from core.errors import InvalidSetting

STRATEGY = "contrastive_decoding"
BEAM_MIN_PLAUSIBLE = 2  # tokens each beam keeps at least (the authors' min_tokens_to_keep with beams)


def contrastive_scores(expert_logprobs: torch.Tensor, amateur_logits: torch.Tensor, alpha: float,
                       amateur_temperature: float, min_plausible: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The contrastive score of every token (R, V), and how many tokens are plausible per row (R,).

    expert_logprobs: the expert's (processed, normalised) log-probs; amateur_logits: the amateur's raw
    logits. V_head = {x : p_expert(x) >= alpha * max p_expert}, with at least `min_plausible` tokens."""
    amateur_logprobs = F.log_softmax(amateur_logits / amateur_temperature, dim=-1)
    best = expert_logprobs.max(dim=-1, keepdim=True).values
    cut = best + (math.log(alpha) if alpha > 0 else -math.inf)
    if min_plausible > 1:
        nth = expert_logprobs.topk(min_plausible, dim=-1).values[:, -1:]
        cut = torch.minimum(cut, nth)
    plausible = expert_logprobs >= cut
    scores = torch.where(plausible, expert_logprobs - amateur_logprobs, -math.inf)
    return scores, plausible.sum(dim=-1)


def _check_amateur_temperature(value: float) -> None:
    if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise InvalidSetting(
            f"amateur_temperature must be from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, got {value:g}; the paper "
            "uses 0.5 or 1.0 (1.0 is the amateur as it is).")


class _Contrast:
    """What greedy and beam contrastive decoding share: the amateur, stepped along the run's rows, and the
    step's scores."""

    min_plausible = 1

    def _start_amateur(self, prompt: torch.Tensor) -> None:
        self.amateur = self.other_lms["amateur_model"]
        logits, state = self.amateur.prefill(prompt)
        rows = torch.zeros(self.rows, dtype=torch.long, device=prompt.device)
        self.amateur_state = self.amateur.select_rows(state, rows)
        self.amateur_logits = logits.expand(self.rows, -1)

    def scores(self, logits, raw_lp):
        """(contrastive scores, the contrastive distribution's log-probs, kept, banned)."""
        # the penalties see what generate() gives them: logits in greedy search, log-probs in beam search
        given = raw_lp if self.keeps_beams else logits
        processed, kept, banned = apply_processors(self.processors, self.sequences, given)
        expert_lp = raw_lp if processed is given else F.log_softmax(processed, dim=-1)
        s = self.settings
        scores, plausible = contrastive_scores(expert_lp, self.amateur_logits, s.cd_alpha, s.amateur_temperature,
                                               self.min_plausible)
        return scores, F.log_softmax(scores, dim=-1), {**kept, "plausibility": plausible}, banned

    def _step_amateur(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Feed the amateur the tokens the run feeds the expert, row for row, unless the run is over."""
        if self.done:
            return
        if not torch.equal(rows, torch.arange(rows.shape[0], device=rows.device)):
            self.amateur_state = self.amateur.select_rows(self.amateur_state, rows)
        self.amateur_logits, self.amateur_state = self.amateur.step(ids[:, None], self.amateur_state)


def _describe(s) -> list[str]:
    parts = [f"contrastive decoding vs {s.amateur_model}", f"cd_alpha {num(s.cd_alpha)}"]
    if s.amateur_temperature != 1.0:
        parts.append(f"amateur temperature {num(s.amateur_temperature)}")
    return parts


@register("contrastive_decoding")
class ContrastiveDecoding(_Contrast, GreedySearch):
    """Greedy contrastive decoding: one row, the best contrastive score every step."""

    strategy = STRATEGY
    precedence = 0
    follows_forced_ids = False
    in_generate = False
    contrasts_with = ("amateur_model",)
    backends = {}  # a vLLM server runs one model per request: refused there by name
    settings = {
        "amateur_model": knob(None, "contrastive decoding: the amateur model whose log-probs are subtracted (a "
                              "smaller model with the same tokenizer)", kind="model", keyword=False),
        "cd_alpha": knob(0.1, "contrastive decoding: keep tokens whose expert probability is at least cd_alpha x "
                         "the largest (the paper's 0.1)", low=0, high=1, keyword=False),
        "amateur_temperature": knob(1.0, "contrastive decoding: the amateur's temperature (the paper: 0.5 or 1.0)",
                                    low=MIN_TEMPERATURE, high=MAX_TEMPERATURE, check=_check_amateur_temperature,
                                    keyword=False),
    }

    @classmethod
    def claims(cls, settings):
        return settings.strategy == STRATEGY and settings.num_beams == 1

    @classmethod
    def describe(cls, s):
        return _describe(s)

    @classmethod
    def check(cls, s):
        if s.amateur_model is None:
            raise InvalidSetting("contrastive_decoding needs amateur_model, the smaller model whose log-probs are "
                                 "subtracted (for example shakespeare-lstm, or distilgpt2 with gpt2).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._start_amateur(self.sequences[:1])

    def advance(self, logits, hidden=None):
        ids, rows = super().advance(logits, hidden)
        self._step_amateur(ids, rows)
        return ids, rows


@register("contrastive_decoding_beam_search")
class ContrastiveDecodingBeam(_Contrast, BeamSearch):
    """Beam search over the summed contrastive scores (num_beams > 1)."""

    strategy = STRATEGY
    in_generate = False
    contrasts_with = ("amateur_model",)
    backends = {}
    settings = {}
    reads = ("amateur_model", "cd_alpha", "amateur_temperature", "num_beams", "length_penalty", "early_stopping",
             "num_return_sequences")
    min_plausible = BEAM_MIN_PLAUSIBLE

    @classmethod
    def claims(cls, settings):
        return settings.strategy == STRATEGY and settings.num_beams > 1

    @classmethod
    def describe(cls, s):
        parts = _describe(s)
        parts.insert(1, f"beam {s.num_beams}")
        if s.length_penalty != 1.0:
            parts.append(f"length penalty {num(s.length_penalty)}")
        return parts

    @classmethod
    def check(cls, s):
        ContrastiveDecoding.check(s)
        check_returned_beams(s)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._start_amateur(self.sequences[:1])

    def advance(self, logits, hidden=None):
        ids, rows = super().advance(logits, hidden)
        self._step_amateur(ids, rows)
        return ids, rows
