"""Decoding settings: `DecodeSettings`, whose names and defaults mirror `model.generate()`, and its checks.

Each setting is declared once, as a `Knob` (`core.decoding.knobs`): here for the few that every strategy
reads (the strategy's name, max_new_tokens, the two penalties, the seed), in the strategy class
that introduces it for the rest (`Strategy.settings`, e.g. `num_beams` in `strategies/beam.py`), and in
a processor's declaration for a processor's own (`core.decoding.processors`). `DecodeSettings` is a
frozen dataclass assembled from those declarations once the registries are loaded, so a new strategy's
or processor's settings arrive with its own file. The command line's flags (`core.cli`), the URL
parser (`core.views.share`), the line-up parser (`core.decoding.lineup`), `validate()`'s messages and
`generate_kwargs()` are derived from `KNOBS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field

from core.decoding import processors, stopping, strategies  # importing them registers every declaration and its settings
from core.decoding.knobs import ANY_BACKEND, RECIPE_TEXTS, Knob, Runs, check_knob, knob, whole
from core.errors import InvalidSetting

DEFAULT_MAX_NEW_TOKENS = 40  # one default for the app, the command line and the line-ups (generate() has
# none of its own: its max_length=20 counts the prompt too, which would leave a long prompt no room)
# Ranges chosen so the maths stays finite in float32 on every step (logits are within about +-1e2):
# logits * or / repetition_penalty stays far below float32's 3.4e38, so no probability turns inf or NaN.
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 0.01, 100.0
MAX_SEED = 2**32 - 1  # the one bound of every seed: the app's, the command line's, a line-up run's

# generate()'s generation modes (GenerationConfig.get_generation_mode) that the engine runs, and the
# strategy names a user picks (--strategy, a line-up's head), in the registry's order
MODES = tuple(strategies.REGISTRY)
STRATEGIES = tuple(sorted({cls.strategy for cls in strategies.REGISTRY.values()}))  # not in the order files load


def _check_repetition_penalty(value: float) -> None:
    if value <= 0:
        raise InvalidSetting(f"repetition_penalty must be greater than 0, got {value:g}; 1.0 turns it off.")
    if not MIN_REPETITION_PENALTY <= value <= MAX_REPETITION_PENALTY:
        raise InvalidSetting(
            f"repetition_penalty={value:g} is outside {MIN_REPETITION_PENALTY:g} to "
            f"{MAX_REPETITION_PENALTY:g}, where the penalised logits stay finite; 1.0 turns it off.")


_EVERYWHERE = {ANY_BACKEND: Runs()}  # every backend's request carries these (the seed: where the strategy samples)
_FIRST = {
    "strategy": knob("greedy", f"{' | '.join(STRATEGIES)} (generate(): do_sample, num_beams and penalty_alpha "
                     "pick it)", kind="choice", keyword=False, backends=_EVERYWHERE),
    "max_new_tokens": knob(DEFAULT_MAX_NEW_TOKENS, "tokens to generate after the prompt", kind="int", low=1,
                           flag=False, backends=_EVERYWHERE),
}
_EVERY_STRATEGY = {  # the penalty processors, which generate() applies in every mode
    "no_repeat_ngram_size": knob(0, "ban any n-gram that already occurs (0 = off); any strategy", kind="int", low=0,
                                 high="context_length", hint=" (0 is off)", kwarg_when_default=False),
    "repetition_penalty": knob(1.0, "CTRL's penalty on tokens already in the sequence (1.0 = off)",
                               low=MIN_REPETITION_PENALTY, high=MAX_REPETITION_PENALTY,
                               check=_check_repetition_penalty, kwarg_when_default=False,
                               backends={"vllm": Runs(send=lambda s: {"repetition_penalty": s.repetition_penalty})}),
}
_LAST = {"seed": knob(0, "seeds this run's own torch.Generator (sampling only)", kind="int", keyword=False,
                      low=0, high=MAX_SEED, flag=False, backends=_EVERYWHERE)}


def _add(own: dict[str, Knob], declarer: str, settings: dict[str, Knob], used_by, taken=()) -> None:
    """`settings` into `own`, each marked with the modes that read it (`used_by(name)`)."""
    for name, k in settings.items():
        if name in own or name in taken or name in _FIRST or name in _EVERY_STRATEGY or name in _LAST:
            raise TypeError(f"{declarer} declares {name!r}, which is declared already; name it among those it reads.")
        own[name] = dataclasses.replace(k, used_by=used_by(name))


def _strategies_own() -> dict[str, Knob]:
    """Each strategy's settings, read by the class declaring them and those naming them in `reads`."""
    own: dict[str, Knob] = {}
    for cls in strategies.REGISTRY.values():
        _add(own, cls.__name__, cls.settings, lambda name: tuple(
            m for m, c in strategies.REGISTRY.items() if name in c.settings or name in c.reads))
    return own


def _processors_own(taken: dict[str, Knob]) -> dict[str, Knob]:
    """Each processor's own settings, read by the modes that apply it: every mode, or, for a warper,
    the modes that sample."""
    sampling = tuple(m for m, c in strategies.REGISTRY.items() if c.samples)
    own: dict[str, Knob] = {}
    for p in processors.ordered():
        _add(own, f"The {p.name} processor", p.settings, lambda name: sampling if p.sampling_only else (), taken)
    return own


def _criteria_own(taken: dict[str, Knob]) -> dict[str, Knob]:
    """Each stopping criterion's own settings (every mode reads them; `stopping.check` refuses a mode
    that does not stop on one)."""
    own: dict[str, Knob] = {}
    for c in stopping.CRITERIA.values():
        _add(own, f"The {c.name} criterion", c.settings, lambda name: (), taken)
    return own


def _declarations() -> dict[str, Knob]:
    """Every setting, in the order of the fields: the shared ones first and last, the strategies' own,
    then the processors' and the stopping criteria's own, in between."""
    own = _strategies_own()
    processors_own = _processors_own(own)
    return {**_FIRST, **own, **_EVERY_STRATEGY, **processors_own, **_criteria_own({**own, **processors_own}), **_LAST}


KNOBS: dict[str, Knob] = _declarations()
_POSITION = {name: i for i, name in enumerate(KNOBS)}  # a run's name lists its processors as its settings


def knobs_read(mode: str) -> list[tuple[str, Knob]]:
    """The settings a mode reads: those of every mode first (generate() applies its penalties before
    a strategy's own processors), then the mode's own, each group in declaration order."""
    return ([(name, k) for name, k in KNOBS.items() if not k.used_by]
            + [(name, k) for name, k in KNOBS.items() if mode in k.used_by])


class _Behaviour:
    """What `DecodeSettings` does; its fields come from `KNOBS`."""

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
        return strategies.mode_of(self)

    @property
    def runner(self) -> type[strategies.Strategy]:
        """The strategy class that runs these settings."""
        return strategies.strategy_class(self.mode)

    @property
    def do_sample(self) -> bool:
        return self.runner.samples

    @property
    def is_beam(self) -> bool:
        # generate() treats num_beams=1 as greedy search; so do we.
        return self.runner.keeps_beams

    @property
    def rows(self) -> int:
        """Batch rows this run decodes: its strategy class's, and any a processor decodes besides them
        (classifier-free guidance's unconditional branch), which the request's budget counts too."""
        extra = sum(p.extra_rows(self) for p in processors.applied_to(self) if p.extra_rows is not None)
        return self.runner.rows_needed(self) + extra

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def name(self) -> str:
        """A short human name: the label if set, else the strategy and its non-default settings."""
        if self.label:
            return self.label
        name = ", ".join(self.runner.describe(self))
        named = [p for p in [*processors.applied_to(self), *stopping.applied_to(self)] if p.in_name]
        for p in sorted(named, key=lambda p: _POSITION[p.knobs[0]]):
            try:
                # a stranger's text (a value not yet validated, in a refusal): control characters escaped, cut short
                part = "".join(c if c.isprintable() else repr(c)[1:-1] for c in p.in_name(self))
                name += f" + {part if len(part) <= 60 else part[:57] + '...'}"
            except (TypeError, ValueError, IndexError, AttributeError):  # a value of the wrong shape, named in a
                # refusal before validate()
                name += f" + {p.label}"
        if self.num_return_sequences > 1:
            name += f" ({self.num_return_sequences} returned)"
        return name

    def _read(self):
        """(name, knob, value) of every generate() keyword its mode reads, in the order generate_kwargs()
        writes them (those that are off by default only when set; the settings of every mode last)."""
        first, late = [], []
        mode = self.mode
        for name, k in KNOBS.items():
            value = getattr(self, name)
            if not k.keyword or name == "max_new_tokens":
                continue
            if k.used_by and mode not in k.used_by:
                continue
            if value is None or (not k.kwarg_when_default and value == k.default):
                continue
            (late if not k.used_by else first).append((name, k, value))
        return first + late

    def generate_kwargs(self, texts=RECIPE_TEXTS) -> dict:
        """The keyword arguments that make `model.generate()` decode exactly like this run: every
        generate() keyword its mode reads. A setting that is text becomes generate()'s ids through
        `texts`: a `core.decoding.knobs.TokenTexts` gives the ids themselves (and the tokenizer), the
        default gives the recipe's code for them (`ids(' king')`)."""
        kwargs: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        for name, k, value in self._read():
            kwargs.update(k.kwargs(value, texts) if k.kwargs is not None else {name: value})
        for p in processors.applied_to(self):  # a processor whose settings travel as one config object
            if p.generate_kwargs is not None:
                kwargs.update(p.generate_kwargs(self))
        return kwargs

    def params(self) -> dict:
        """The settings that matter for this strategy, as typed (what a recipe or the JSON output records):
        its generate() keywords, a config object (the watermark's) as its fields, and the settings of its own
        that are none (contrastive decoding's amateur)."""
        mode = self.mode
        typed = {name: (list(value) if isinstance(value, tuple) else value) for name, _, value in self._read()}
        own = {name: getattr(self, name) for name, k in KNOBS.items() if not k.keyword and mode in k.used_by}
        configs = {k: v.to_dict() for p in processors.applied_to(self) if p.generate_kwargs is not None
                   for k, v in p.generate_kwargs(self).items()}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, **typed, **configs, **own,
                "strategy": self.strategy, "seed": self.seed}


DecodeSettings = dataclasses.make_dataclass(
    "DecodeSettings",
    [(name, object, field(default=k.default)) for name, k in KNOBS.items()]
    + [("label", str, field(default="", compare=False))],  # a name for the run in a line-up
    bases=(_Behaviour,), frozen=True)
DecodeSettings.__module__ = __name__  # pickles and reprs name it where it is defined
DecodeSettings.__doc__ = ("One run's settings, with generate()'s names and defaults: one field per declaration "
                          "in KNOBS, plus an optional label.")


def lineup_seeds(runs: list, seed: int) -> list:
    """Give run i of a line-up its own random stream, seeded `seed + i` (`offset_seed`).

    One seed for every run made different strategies start alike (temperature 1.0 and top-p 0.9 drew
    the same first tokens); `seed + position` keeps each stream distinct, reproducible from the link
    (seed and line-up), and writable in a recipe as one `torch.manual_seed(seed + i)` per run."""
    return [s.replace(seed=offset_seed(seed, i)) for i, s in enumerate(runs)]


def offset_seed(seed: int, offset: int) -> int:
    """`seed + offset`, counted round past MAX_SEED to 0, so that every seed a link or a flag may hold
    leaves room for a line-up's runs (and a report's prompts) after it."""
    return (seed + offset) % (MAX_SEED + 1)


def validate(settings, *, vocab_size: int, context_length: int, encode=None) -> None:
    """Raise `InvalidSetting` (one sentence) for any setting the engine cannot honour: each setting
    against its declaration, then the rules its strategy class, its processors and its stopping criteria
    add. `encode` (text -> ids, as typed) checks what the settings that are text tokenize to."""
    s = settings
    if s.strategy not in STRATEGIES:
        raise InvalidSetting(f"strategy must be one of {', '.join(STRATEGIES)}, got {s.strategy!r}.")
    limits = {"vocab_size": vocab_size, "context_length": context_length, "encode": encode}
    whole("max_new_tokens", s.max_new_tokens, 1)
    if s.max_new_tokens >= context_length:
        raise InvalidSetting(
            f"max_new_tokens={s.max_new_tokens} is past the model's {context_length}-token context "
            f"(prompt included); use at most {context_length - 1}.")
    for name, k in KNOBS.items():
        check_knob(name, getattr(s, name), k, limits)
    runner = s.runner
    if runner.returns_one_sequence and s.num_return_sequences != 1:
        raise InvalidSetting(f"{runner.strategy} decoding returns one sequence; set num_return_sequences to 1.")
    runner.check(s)
    for p in processors.applied_to(s):
        if p.check is not None:
            p.check(s, limits)
    stopping.check(s)
