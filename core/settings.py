"""Decoding settings: one dataclass whose names and defaults mirror `model.generate()`, and its checks.

Every check raises `InvalidSetting` with one sentence that names the parameter, its value and the fix,
so the command line and the app can show it as it is.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from core.errors import InvalidSetting

STRATEGIES = ("greedy", "beam", "sample")
MAX_TEMPERATURE = 100.0  # beyond this every token is about equally likely: nothing left to see


@dataclass(frozen=True)
class DecodeSettings:
    strategy: str = "greedy"  # greedy | beam | sample (generate(): do_sample and num_beams pick it)
    max_new_tokens: int = 20  # tokens to generate after the prompt
    num_beams: int = 1  # beam width; used by strategy "beam" only
    length_penalty: float = 1.0  # beam score = sum log-probs / length ** length_penalty
    early_stopping: bool | str = False  # True, False or "never", as in generate()
    num_return_sequences: int = 1  # finished beams (beam) or independent samples (sample) returned
    no_repeat_ngram_size: int = 0  # ban any n-gram that already occurs (0 = off); any strategy
    repetition_penalty: float = 1.0  # CTRL's penalty on tokens already in the sequence (1.0 = off)
    temperature: float = 1.0  # sampling only: logits / temperature
    top_k: int = 50  # sampling only: keep the k most likely tokens (0 = off); generate()'s default is 50
    top_p: float = 1.0  # sampling only: keep the smallest set whose probability reaches top_p
    min_p: float | None = None  # sampling only: drop tokens below min_p x the top token's probability
    typical_p: float = 1.0  # sampling only: locally typical sampling mass (1.0 = off)
    seed: int = 0  # seeds this run's own torch.Generator (sampling only)
    label: str = field(default="", compare=False)  # a name for the run in a line-up

    @property
    def do_sample(self) -> bool:
        return self.strategy == "sample"

    @property
    def is_beam(self) -> bool:
        # generate() treats num_beams=1 as greedy search; so do we.
        return self.strategy == "beam" and self.num_beams > 1

    @property
    def rows(self) -> int:
        """Batch rows this run occupies while decoding."""
        if self.is_beam:
            return self.num_beams
        return self.num_return_sequences if self.do_sample else 1

    def replace(self, **changes) -> "DecodeSettings":
        return dataclasses.replace(self, **changes)

    def name(self) -> str:
        """A short human name: the label if set, else the strategy and its non-default settings."""
        if self.label:
            return self.label
        if self.is_beam:
            parts = [f"beam {self.num_beams}"]
            if self.length_penalty != 1.0:
                parts.append(f"length penalty {_num(self.length_penalty)}")
        elif self.do_sample:
            parts = []
            only_temperature = not self.top_k and self.top_p == 1.0 and self.min_p is None and self.typical_p == 1.0
            if self.temperature != 1.0 or only_temperature:
                parts.append(f"temperature {_num(self.temperature)}")
            if self.top_k:
                parts.append(f"top-k {self.top_k}")
            if self.top_p < 1.0:
                parts.append(f"top-p {_num(self.top_p)}")
            if self.min_p is not None:
                parts.append(f"min-p {_num(self.min_p)}")
            if self.typical_p < 1.0:
                parts.append(f"typical-p {_num(self.typical_p)}")
        else:
            parts = ["greedy"]
        name = ", ".join(parts)
        if self.no_repeat_ngram_size:
            name += f" + no-repeat {self.no_repeat_ngram_size}"
        if self.repetition_penalty != 1.0:
            name += f" + repetition penalty {_num(self.repetition_penalty)}"
        if self.num_return_sequences > 1:
            name += f" ({self.num_return_sequences} returned)"
        return name

    def generate_kwargs(self) -> dict:
        """The keyword arguments that make `model.generate()` decode exactly like this run."""
        kwargs: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.is_beam:
            kwargs.update(num_beams=self.num_beams, length_penalty=self.length_penalty,
                          early_stopping=self.early_stopping,
                          num_return_sequences=self.num_return_sequences)
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                          typical_p=self.typical_p, num_return_sequences=self.num_return_sequences)
            if self.min_p is not None:
                kwargs["min_p"] = self.min_p
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs

    def params(self) -> dict:
        """The settings that matter for this strategy (what a recipe or the JSON output records)."""
        return {**self.generate_kwargs(), "strategy": self.strategy, "seed": self.seed}


def _num(value: float) -> str:
    """1.0 -> '1.0', 0.25 -> '0.25': one decimal at least, as people write temperatures."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSetting(f"{name} must be a finite number, got {value!r}.")


def validate(settings: DecodeSettings, *, vocab_size: int, context_length: int) -> None:
    """Raise `InvalidSetting` (one sentence) for any setting the engine cannot honour."""
    s = settings
    if s.strategy not in STRATEGIES:
        raise InvalidSetting(f"strategy must be one of {', '.join(STRATEGIES)}, got {s.strategy!r}.")
    if not isinstance(s.max_new_tokens, int) or s.max_new_tokens <= 0:
        raise InvalidSetting(f"max_new_tokens must be a positive whole number, got {s.max_new_tokens!r}.")
    if s.max_new_tokens >= context_length:
        raise InvalidSetting(
            f"max_new_tokens={s.max_new_tokens} is past the model's {context_length}-token context "
            f"(prompt included); use at most {context_length - 1}.")
    for name in ("temperature", "top_p", "typical_p", "repetition_penalty", "length_penalty"):
        _finite(name, getattr(s, name))
    if s.temperature <= 0:
        raise InvalidSetting(
            f"temperature must be greater than 0, got {s.temperature:g}; as temperature falls to 0 "
            "sampling becomes greedy decoding, so choose the greedy strategy for that.")
    if s.temperature > MAX_TEMPERATURE:
        raise InvalidSetting(
            f"temperature={s.temperature:g} is absurd: above {MAX_TEMPERATURE:g} every token is about "
            "equally likely; use a value between 0.1 and 5.")
    if not isinstance(s.top_k, int) or s.top_k < 0 or s.top_k > vocab_size:
        raise InvalidSetting(
            f"top_k must be a whole number from 0 (off) to the vocabulary size {vocab_size}, got {s.top_k!r}.")
    if not 0 < s.top_p <= 1:
        raise InvalidSetting(f"top_p must be in (0, 1], got {s.top_p:g}; 1.0 turns it off.")
    if s.min_p is not None:
        _finite("min_p", s.min_p)
        if not 0 <= s.min_p <= 1:
            raise InvalidSetting(f"min_p must be in [0, 1], got {s.min_p:g}.")
    if not 0 < s.typical_p <= 1:
        raise InvalidSetting(f"typical_p must be in (0, 1], got {s.typical_p:g}; 1.0 turns it off.")
    if s.repetition_penalty <= 0:
        raise InvalidSetting(
            f"repetition_penalty must be greater than 0, got {s.repetition_penalty:g}; 1.0 turns it off.")
    if not isinstance(s.no_repeat_ngram_size, int) or s.no_repeat_ngram_size < 0:
        raise InvalidSetting(
            f"no_repeat_ngram_size must be 0 (off) or a positive whole number, got {s.no_repeat_ngram_size!r}.")
    if not isinstance(s.num_beams, int) or s.num_beams < 1:
        raise InvalidSetting(f"num_beams must be a whole number of at least 1, got {s.num_beams!r}.")
    if not isinstance(s.num_return_sequences, int) or s.num_return_sequences < 1:
        raise InvalidSetting(
            f"num_return_sequences must be at least 1, got {s.num_return_sequences!r}.")
    if s.is_beam and s.num_return_sequences > s.num_beams:
        raise InvalidSetting(
            f"num_return_sequences={s.num_return_sequences} cannot exceed num_beams={s.num_beams}.")
    if not s.is_beam and not s.do_sample and s.num_return_sequences != 1:
        raise InvalidSetting("greedy decoding returns one sequence; set num_return_sequences to 1.")
    if s.early_stopping not in (True, False, "never"):
        raise InvalidSetting(f"early_stopping must be true, false or 'never', got {s.early_stopping!r}.")
    if not isinstance(s.seed, int) or s.seed < 0:
        raise InvalidSetting(f"seed must be a whole number of at least 0, got {s.seed!r}.")
