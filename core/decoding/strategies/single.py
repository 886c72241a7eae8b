"""Greedy search and sampling: each row continues itself (transformers' `_sample`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.decoding.knobs import Runs, knob, num, off_only
from core.decoding import stopping
from core.decoding.processors import apply_processors
from core.decoding.strategies import register
from core.errors import InvalidSetting
from core.decoding.strategies.base import (
    RawRun,
    RawSequence,
    RawStep,
    RowStats,
    Strategy,
    chosen_figures,
    raw_step,
)


class _OneRowPerSequence(Strategy):
    """Greedy or sampling: pick one token per row from the processed scores; rows never move."""

    follows_forced_ids = True

    def __init__(self, *args, forced_ids: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.forced = forced_ids
        self.unfinished = torch.ones(self.rows, dtype=torch.bool, device=self.sequences.device)
        self.records: list[tuple] = []  # per step: (live rows, chosen ids, chosen-token figures)
        self.finish = ["max_new_tokens"] * self.rows
        self.finish_detail: list[str | None] = [None] * self.rows

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """Next ids (R,) from the processed scores (R, V)."""
        raise NotImplementedError

    def scores(self, logits, raw_lp):
        """(scores a token is chosen by, the processed log-probs, kept, banned) for the rows' logits."""
        scores, kept, banned = apply_processors(self.processors, self.sequences, logits)
        return scores, raw_lp if scores is logits else F.log_softmax(scores, dim=-1), kept, banned

    def advance(self, logits, hidden=None):
        step = len(self.stats)
        raw = self.raw(logits)
        raw_lp = raw.logprobs
        scores, proc_lp, kept, banned = self.scores(logits, raw_lp)
        if self.forced is not None:
            next_ids = torch.full((self.rows,), self.forced[step], device=logits.device)
        else:
            next_ids = self.choose(scores)
        live = self.unfinished.clone()
        if self.facts.pad_token_id is not None and len(self.eos):
            # as generate(): rows that already finished keep receiving the pad token
            next_ids = torch.where(live, next_ids, self.facts.pad_token_id)
        self.stats.append(RowStats(raw, proc_lp, kept, banned, self.top_n, self.keep_distributions))
        self.records.append((live, next_ids, chosen_figures(raw_lp, proc_lp, next_ids)))
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=-1)
        if len(self.eos):
            hit_eos = torch.isin(next_ids, self.eos) & live
            for row in hit_eos.nonzero().flatten().tolist():
                self.finish[row] = "eos"
            self.unfinished &= ~hit_eos
        if self.stops:  # generate(): unfinished & ~stopping_criteria(input_ids), after the end of text
            for row, found in enumerate(stopping.met(self.stops, self.sequences)):
                if found is not None and bool(self.unfinished[row]):
                    self.finish[row], self.finish_detail[row] = found
                    self.unfinished[row] = False
        self.done = step + 1 >= self.max_new_tokens or not bool(self.unfinished.any())
        return next_ids, torch.arange(self.rows, device=logits.device)

    def result(self) -> RawRun:
        sequences = []
        steps_per_row: list[list[RawStep]] = [[] for _ in range(self.rows)]
        for step, (live, next_ids, chosen) in enumerate(self.records):
            live, ids, chosen = live.tolist(), next_ids.tolist(), chosen.to_host()
            for row in range(self.rows):
                if live[row]:
                    steps_per_row[row].append(raw_step(self.stats[step], row, ids[row], chosen[row]))
        for row in range(self.rows):
            sequences.append(RawSequence(steps_per_row[row], self.finish[row], finish_detail=self.finish_detail[row]))
        return RawRun(self.settings, sequences)


# Below MIN_TEMPERATURE sampling is greedy decoding in all but name and logits / T overflow float32
# (logits are within about +-1e2); above MAX_TEMPERATURE every token is about equally likely.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0
NO_CUTOFFS_ON_VLLM = "vLLM's API has no typical-p, epsilon or eta sampling"


def _check_temperature(value: float) -> None:
    if value <= 0:
        raise InvalidSetting(
            f"temperature must be greater than 0, got {value:g}; as temperature falls to 0 "
            "sampling becomes greedy decoding, so choose the greedy strategy for that.")
    if value < MIN_TEMPERATURE:
        raise InvalidSetting(
            f"temperature={value:g} is below {MIN_TEMPERATURE:g}, where sampling is greedy decoding in "
            f"all but name (and the maths overflows); use {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, or greedy.")
    if value > MAX_TEMPERATURE:
        raise InvalidSetting(
            f"temperature={value:g} is absurd: above {MAX_TEMPERATURE:g} every token is about "
            "equally likely; use a value between 0.1 and 5.")


@register("greedy_search")
class GreedySearch(_OneRowPerSequence):
    """The most likely token under the processed scores, every step."""

    strategy = "greedy"
    precedence = -1  # also runs beam search with one beam, which generate() treats as greedy search
    backends = {"vllm": Runs(request="complete", send=lambda s: {"temperature": 0.0})}

    @classmethod
    def claims(cls, settings):
        return settings.strategy == "greedy" or (settings.strategy == "beam" and settings.num_beams == 1)

    @classmethod
    def describe(cls, settings):
        return ["greedy"]

    def choose(self, scores):
        return torch.argmax(scores, dim=-1)


@register("sample")
class Sampling(_OneRowPerSequence):
    """A draw from the processed distribution, from the run's own generator (seeded with its seed);
    num_return_sequences rows, each an independent sample."""

    strategy = "sample"
    samples = True
    returns_one_sequence = False
    reads = ("num_return_sequences",)
    backends = {"vllm": Runs(request="complete", send=lambda s: {"seed": s.seed})}
    settings = {
        "temperature": knob(1.0, "sampling: logits / temperature", low=MIN_TEMPERATURE, high=MAX_TEMPERATURE,
                            check=_check_temperature,
                            backends={"vllm": Runs(send=lambda s: {"temperature": s.temperature})}),
        "top_k": knob(50, "sampling: keep the k most likely tokens (0 turns it off; generate()'s default is 50); "
                      "contrastive: the candidates re-ranked", kind="int", low=0, high="vocab_size",
                      hint=" (0 is off; {vocab_size} is the vocabulary size)",
                      backends={"vllm": Runs(send=lambda s: {"top_k": s.top_k or -1})}),  # vLLM's off is -1
        "top_p": knob(1.0, "sampling: keep the smallest set whose probability reaches top_p", low=0, high=1,
                      open_low=True, hint="1.0 turns it off", backends={"vllm": Runs(send=lambda s: {"top_p": s.top_p})}),
        "min_p": knob(None, "sampling: drop tokens below min_p x the top token's probability", kind="optional_float",
                      low=0, high=1, kwarg_when_default=False,
                      backends={"vllm": Runs(send=lambda s: {"min_p": s.min_p or 0.0})}),  # vLLM's off is 0
        "typical_p": knob(1.0, "sampling: locally typical sampling mass (1.0 = off)", low=0, high=1, open_low=True,
                          hint="1.0 turns it off", backends={"vllm": off_only("typical_p", 1.0, NO_CUTOFFS_ON_VLLM)}),
        "epsilon_cutoff": knob(0.0, "sampling: drop tokens whose probability is below epsilon (0 = off; 3e-4 is "
                               "the paper's choice)", low=0, high=1, open_high=True, hint="0 turns it off",
                               kwarg_when_default=False,
                               backends={"vllm": off_only("epsilon_cutoff", 0.0, NO_CUTOFFS_ON_VLLM)}),
        "eta_cutoff": knob(0.0, "sampling: drop tokens below min(eta, sqrt(eta) x exp(-entropy)) (0 = off; 3e-4 "
                           "is the paper's choice)", low=0, high=1, open_high=True, hint="0 turns it off",
                           kwarg_when_default=False, backends={"vllm": off_only("eta_cutoff", 0.0, NO_CUTOFFS_ON_VLLM)}),
    }

    @classmethod
    def rows_needed(cls, settings):
        return settings.num_return_sequences

    @classmethod
    def describe(cls, s):
        parts = []
        only_temperature = (not s.top_k and s.top_p == 1.0 and s.min_p is None and s.typical_p == 1.0
                            and not s.epsilon_cutoff and not s.eta_cutoff)
        if s.temperature != 1.0 or only_temperature:
            parts.append(f"temperature {num(s.temperature)}")
        if s.top_k:
            parts.append(f"top-k {s.top_k}")
        if s.top_p < 1.0:
            parts.append(f"top-p {num(s.top_p)}")
        if s.min_p is not None:
            parts.append(f"min-p {num(s.min_p)}")
        if s.typical_p < 1.0:
            parts.append(f"typical-p {num(s.typical_p)}")
        if s.epsilon_cutoff:
            parts.append(f"epsilon {s.epsilon_cutoff:g}")
        if s.eta_cutoff:
            parts.append(f"eta {s.eta_cutoff:g}")
        return parts

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator(device=self.sequences.device)
        self.generator.manual_seed(self.settings.seed)

    def choose(self, scores):
        probs = F.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(1)
