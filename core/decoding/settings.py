"""Decoding settings: one dataclass whose names and defaults mirror `model.generate()`, and its checks.

Each setting is declared once, as a field of `DecodeSettings` whose metadata is a `Knob`: its help,
its kind, the generation modes that read it, whether it is a `generate()` keyword, and its range (or
a check of its own). The command line's flags (`core.cli`), the URL and line-up parser (`core.views.share`),
`validate()`'s messages and `generate_kwargs()` are all derived from these declarations.

Every check raises `InvalidSetting` with one sentence that names the parameter, its value and the fix,
so the command line and the app can show it as it is.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from core.errors import InvalidSetting

STRATEGIES = ("greedy", "beam", "sample", "contrastive")
# generate()'s generation modes (GenerationConfig.get_generation_mode) that the engine runs; each has
# one class in core.decoding.strategies' registry
MODES = ("greedy_search", "sample", "beam_search", "group_beam_search", "contrastive_search")
DEFAULT_MAX_NEW_TOKENS = 40  # one default for the app, the command line and the line-ups (generate() has
# none of its own: its max_length=20 counts the prompt too, which would leave a long prompt no room)
MAX_TEMPERATURE = 100.0  # beyond this every token is about equally likely: nothing left to see

# Ranges chosen so the maths stays finite in float32 on every step (logits are within about +-1e2):
# logits / temperature, logits * or / repetition_penalty and length ** length_penalty over a
# 1024-token context all stay far below float32's 3.4e38, so no probability turns into inf or NaN.
MIN_TEMPERATURE = 0.01  # below this sampling is greedy decoding in all but name
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 0.01, 100.0
MAX_ABS_LENGTH_PENALTY = 10.0  # 1024 ** 10 = 1.3e30
MAX_DIVERSITY_PENALTY = 100.0  # x at most 64 beams of earlier groups: far from float32's limit
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Knob:
    """How one setting is declared: everything the flags, the URL parser and the checks need."""
    help: str  # one line for --help
    kind: str = "float"  # int | float | optional_float (None = off) | bool_or_never | choice
    used_by: tuple[str, ...] = ()  # generation modes that read it (() = every mode)
    keyword: bool = True  # a generate() keyword of the same name
    low: float | str | None = None  # the range; a str names a model limit: "vocab_size", "context_length"
    high: float | str | None = None
    open_low: bool = False  # (low, ... rather than [low, ...
    open_high: bool = False
    hint: str = ""  # added to the range message; may name {vocab_size} or {context_length}
    check: Callable | None = None  # a check of its own (several sentences) in place of the range
    kwarg_when_default: bool = True  # in generate_kwargs() even at its default (False: only when set)
    flag: bool = True  # a flag of `decode` made from this (False: `_prompt_args` gives decode and compare one)


def knob(default, help: str, **declaration):
    """A `DecodeSettings` field declared once: its default and its `Knob`."""
    return field(default=default, metadata={"knob": Knob(help, **declaration)})


def _finite(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSetting(f"{name} must be a finite number, got {value!r}.")


def _whole(name: str, value, low: int, high: int | None = None, hint: str = "") -> None:
    """A whole number (not a bool, which Python counts as an int) within [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InvalidSetting(f"{name} must be a whole number {span}{hint}, got {value!r}.")


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


def _check_repetition_penalty(value: float) -> None:
    if value <= 0:
        raise InvalidSetting(f"repetition_penalty must be greater than 0, got {value:g}; 1.0 turns it off.")
    if not MIN_REPETITION_PENALTY <= value <= MAX_REPETITION_PENALTY:
        raise InvalidSetting(
            f"repetition_penalty={value:g} is outside {MIN_REPETITION_PENALTY:g} to "
            f"{MAX_REPETITION_PENALTY:g}, where the penalised logits stay finite; 1.0 turns it off.")


def _check_length_penalty(value: float) -> None:
    if abs(value) > MAX_ABS_LENGTH_PENALTY:
        raise InvalidSetting(
            f"length_penalty={value:g} is outside -{MAX_ABS_LENGTH_PENALTY:g} to "
            f"{MAX_ABS_LENGTH_PENALTY:g}, where length ** length_penalty stays finite; 1.0 is generate()'s default.")


BEAMS = ("beam_search", "group_beam_search")


@dataclass(frozen=True)
class DecodeSettings:
    strategy: str = knob("greedy", "greedy | beam | sample | contrastive (generate(): do_sample, num_beams "
                         "and penalty_alpha pick it)", kind="choice", keyword=False)
    max_new_tokens: int = knob(DEFAULT_MAX_NEW_TOKENS, "tokens to generate after the prompt", kind="int",
                               low=1, flag=False)
    num_beams: int = knob(1, "beam width (beam: default 5)", kind="int", used_by=BEAMS, low=1)
    length_penalty: float = knob(1.0, "beam score = sum of log-probs / length ** length_penalty", used_by=BEAMS,
                                 check=_check_length_penalty)
    early_stopping: bool | str = knob(False, "true, false or never, as in generate()", kind="bool_or_never",
                                      used_by=BEAMS)
    num_return_sequences: int = knob(1, "finished beams (beam) or independent samples (sample) returned",
                                     kind="int", used_by=(*BEAMS, "sample"), low=1)
    no_repeat_ngram_size: int = knob(0, "ban any n-gram that already occurs (0 = off); any strategy", kind="int",
                                     low=0, high="context_length", hint=" (0 is off)", kwarg_when_default=False)
    repetition_penalty: float = knob(1.0, "CTRL's penalty on tokens already in the sequence (1.0 = off)",
                                     check=_check_repetition_penalty, kwarg_when_default=False)
    temperature: float = knob(1.0, "sampling: logits / temperature", used_by=("sample",), check=_check_temperature)
    top_k: int = knob(50, "sampling: keep the k most likely tokens (0 turns it off; generate()'s default is 50); "
                      "contrastive: the candidates re-ranked", kind="int", used_by=("sample", "contrastive_search"),
                      low=0, high="vocab_size", hint=" (0 is off; {vocab_size} is the vocabulary size)")
    top_p: float = knob(1.0, "sampling: keep the smallest set whose probability reaches top_p", used_by=("sample",),
                        low=0, high=1, open_low=True, hint="1.0 turns it off")
    min_p: float | None = knob(None, "sampling: drop tokens below min_p x the top token's probability",
                               kind="optional_float", used_by=("sample",), low=0, high=1, kwarg_when_default=False)
    typical_p: float = knob(1.0, "sampling: locally typical sampling mass (1.0 = off)", used_by=("sample",),
                            low=0, high=1, open_low=True, hint="1.0 turns it off")
    epsilon_cutoff: float = knob(0.0, "sampling: drop tokens whose probability is below epsilon (0 = off; "
                                 "3e-4 is the paper's choice)", used_by=("sample",), low=0, high=1, open_high=True,
                                 hint="0 turns it off", kwarg_when_default=False)
    eta_cutoff: float = knob(0.0, "sampling: drop tokens below min(eta, sqrt(eta) x exp(-entropy)) (0 = off; "
                             "3e-4 is the paper's choice)", used_by=("sample",), low=0, high=1, open_high=True,
                             hint="0 turns it off", kwarg_when_default=False)
    penalty_alpha: float | None = knob(None, "contrastive: weight of the degeneration penalty, in (0, 1] "
                                       "(0.6 is the paper's choice)", kind="optional_float",
                                       used_by=("contrastive_search",), low=0, high=1, open_low=True)
    num_beam_groups: int = knob(1, "diverse beam search: groups the beams are split into (1 = plain beam search)",
                                kind="int", used_by=("group_beam_search",), low=1)
    diversity_penalty: float = knob(0.0, "diverse beam search: subtracted from a token's score per beam of an "
                                    "earlier group that chose it this step", used_by=("group_beam_search",),
                                    low=0, high=MAX_DIVERSITY_PENALTY)
    seed: int = knob(0, "seeds this run's own torch.Generator (sampling only)", kind="int", keyword=False,
                     low=0, high=MAX_SEED, flag=False)
    label: str = field(default="", compare=False)  # a name for the run in a line-up

    def __post_init__(self):
        # transformers' processors insist on floats (RepetitionPenaltyLogitsProcessor(100) raises):
        # a whole number given for a float setting is taken as that float; anything else is left for
        # validate() to refuse in one sentence
        for name, k in KNOBS.items():
            value = getattr(self, name)
            if k.kind in ("float", "optional_float") and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))

    @property
    def mode(self) -> str:
        """generate()'s generation mode for these settings; it picks the strategy class that runs them."""
        if self.strategy == "sample":
            return "sample"
        if self.strategy == "contrastive":
            return "contrastive_search"
        if self.strategy == "beam" and self.num_beams > 1:  # generate() treats num_beams=1 as greedy
            return "group_beam_search" if self.num_beam_groups > 1 else "beam_search"
        return "greedy_search"

    @property
    def do_sample(self) -> bool:
        return self.strategy == "sample"

    @property
    def is_beam(self) -> bool:
        # generate() treats num_beams=1 as greedy search; so do we.
        return self.mode in BEAMS

    @property
    def rows(self) -> int:
        """Batch rows this run occupies while decoding (its strategy class says)."""
        from core.decoding.strategies import strategy_class

        return strategy_class(self.mode).rows_needed(self)

    def replace(self, **changes) -> "DecodeSettings":
        return dataclasses.replace(self, **changes)

    def name(self) -> str:
        """A short human name: the label if set, else the strategy and its non-default settings."""
        if self.label:
            return self.label
        if self.is_beam:
            parts = [f"beam {self.num_beams}"]
            if self.mode == "group_beam_search":
                parts.append(f"{self.num_beam_groups} groups, diversity penalty {_num(self.diversity_penalty)}")
            if self.length_penalty != 1.0:
                parts.append(f"length penalty {_num(self.length_penalty)}")
        elif self.mode == "contrastive_search":
            alpha = "?" if self.penalty_alpha is None else _num(self.penalty_alpha)
            parts = [f"contrastive, penalty alpha {alpha}", f"top-k {self.top_k}"]
        elif self.do_sample:
            parts = []
            only_temperature = (not self.top_k and self.top_p == 1.0 and self.min_p is None and self.typical_p == 1.0
                                and not self.epsilon_cutoff and not self.eta_cutoff)
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
            if self.epsilon_cutoff:
                parts.append(f"epsilon {self.epsilon_cutoff:g}")
            if self.eta_cutoff:
                parts.append(f"eta {self.eta_cutoff:g}")
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
        """The keyword arguments that make `model.generate()` decode exactly like this run: every
        generate() keyword its mode reads (those that are off by default only when set)."""
        kwargs: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        late = {}  # the settings of every mode come last, as they always have
        for name, k in KNOBS.items():
            value = getattr(self, name)
            if not k.keyword or name == "max_new_tokens":
                continue
            if k.used_by and self.mode not in k.used_by:
                continue
            if value is None or (not k.kwarg_when_default and value == _DEFAULT_VALUES[name]):
                continue
            (late if not k.used_by else kwargs)[name] = value
        return {**kwargs, **late}

    def params(self) -> dict:
        """The settings that matter for this strategy (what a recipe or the JSON output records)."""
        return {**self.generate_kwargs(), "strategy": self.strategy, "seed": self.seed}


KNOBS: dict[str, Knob] = {f.name: f.metadata["knob"] for f in dataclasses.fields(DecodeSettings)
                          if "knob" in f.metadata}
_DEFAULT_VALUES = {f.name: f.default for f in dataclasses.fields(DecodeSettings)}


def lineup_seeds(runs: list[DecodeSettings], seed: int) -> list[DecodeSettings]:
    """Give run i of a line-up its own random stream, seeded `seed + i`.

    One seed for every run made different strategies start alike (temperature 1.0 and top-p 0.9 drew
    the same first tokens); `seed + position` keeps each stream distinct, reproducible from the link
    (seed and line-up), and writable in a recipe as one `torch.manual_seed(seed + i)` per run."""
    return [s.replace(seed=seed + i) for i, s in enumerate(runs)]


def _num(value: float) -> str:
    """1.0 -> '1.0', 0.25 -> '0.25': one decimal at least, as people write temperatures."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _interval(k: Knob) -> str:
    return f"{'(' if k.open_low else '['}{k.low:g}, {k.high:g}{')' if k.open_high else ']'}"


def check_knob(name: str, value, k: Knob, limits: dict) -> None:
    """One setting against its declaration: its kind, then its own check or its range."""
    if k.kind == "choice" or (k.kind == "optional_float" and value is None):
        return
    if k.kind == "bool_or_never":
        if value not in (True, False, "never") or (value != "never" and not isinstance(value, bool)):
            raise InvalidSetting(f"{name} must be true, false or 'never', got {value!r}.")
        return
    low, high = (limits.get(b, b) for b in (k.low, k.high))
    if k.kind == "int":
        _whole(name, value, low, high, k.hint.format(**limits))
        return
    _finite(name, value)
    if k.check is not None:
        k.check(value)
        return
    below = low is not None and (value <= low if k.open_low else value < low)
    above = high is not None and (value >= high if k.open_high else value > high)
    if below or above:
        hint = f"; {k.hint}" if k.hint else ""
        span = _interval(Knob("", low=low, high=high, open_low=k.open_low, open_high=k.open_high)) \
            if low is not None and high is not None else f"at least {low:g}"
        raise InvalidSetting(f"{name} must be in {span}, got {value:g}{hint}.")


def validate(settings: DecodeSettings, *, vocab_size: int, context_length: int) -> None:
    """Raise `InvalidSetting` (one sentence) for any setting the engine cannot honour: each setting
    against its declaration, then the rules that tie settings together."""
    s = settings
    if s.strategy not in STRATEGIES:
        raise InvalidSetting(f"strategy must be one of {', '.join(STRATEGIES)}, got {s.strategy!r}.")
    limits = {"vocab_size": vocab_size, "context_length": context_length}
    _whole("max_new_tokens", s.max_new_tokens, 1)
    if s.max_new_tokens >= context_length:
        raise InvalidSetting(
            f"max_new_tokens={s.max_new_tokens} is past the model's {context_length}-token context "
            f"(prompt included); use at most {context_length - 1}.")
    for name, k in KNOBS.items():
        check_knob(name, getattr(s, name), k, limits)
    if s.is_beam and s.num_return_sequences > s.num_beams:
        raise InvalidSetting(
            f"num_return_sequences={s.num_return_sequences} cannot exceed num_beams={s.num_beams}.")
    if not s.is_beam and not s.do_sample and s.num_return_sequences != 1:
        raise InvalidSetting(f"{'greedy' if s.strategy != 'contrastive' else 'contrastive'} decoding returns one "
                             "sequence; set num_return_sequences to 1.")
    if s.strategy == "contrastive":
        if s.penalty_alpha is None:
            raise InvalidSetting("contrastive search needs penalty_alpha, the weight of its degeneration penalty, "
                                 "in (0, 1]; 0.6 is the paper's choice.")
        if s.top_k < 2:
            raise InvalidSetting(f"contrastive search needs top_k of at least 2 candidates to re-rank, got "
                                 f"{s.top_k}; with 1 it is greedy decoding.")
    if s.strategy == "beam" and s.num_beam_groups > 1:
        if s.num_beam_groups > s.num_beams or s.num_beams % s.num_beam_groups:
            raise InvalidSetting(f"num_beam_groups={s.num_beam_groups} must divide num_beams={s.num_beams} "
                                 "into groups of equal size.")
        if s.diversity_penalty == 0:
            raise InvalidSetting(f"diversity_penalty must be greater than 0 with num_beam_groups={s.num_beam_groups}, "
                                 "or every group repeats the first; 0.5 is a common choice.")
