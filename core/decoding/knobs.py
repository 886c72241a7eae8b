"""How a decoding setting is declared (`Knob`), and the checks every declaration gets.

A setting is declared once, as a `Knob`: by `core.decoding.settings` for the few that every strategy
reads, else by the strategy class that introduces it (`Strategy.settings`). `DecodeSettings` is
assembled from those declarations, and the command line's flags, the line-up and URL parser,
`validate()`'s messages and `generate_kwargs()` are all derived from them. This module imports
nothing of the project's, so a strategy module can import it before `DecodeSettings` exists.

A strategy class and a setting also say which backends other than this process can run them, and how
(`Runs`, in their `backends`): an allow-list, so that what a backend was never taught is refused by
name instead of being sent without the setting that made it what it is.

Every check raises `InvalidSetting` with one sentence that names the parameter, its value and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from core.errors import InvalidSetting


class Settings(Protocol):
    """What a strategy or a processor sees of one run's settings. The class itself, `DecodeSettings`, is
    assembled in `core.decoding.settings` from every declaration once the strategies and processors have
    loaded, so they, below it, name only its shape: a field per declared setting, and these."""
    strategy: str
    max_new_tokens: int
    seed: int

    def __getattr__(self, name: str) -> Any: ...

    def replace(self, **changes) -> Settings: ...


ANY_BACKEND = "*"  # a `backends` key: every backend takes the setting (the strategy's name, the length, the seed)


def _no_fields(settings) -> dict:
    return {}


def _no_objection(settings) -> None:
    return None


@dataclass(frozen=True)
class Runs:
    """How a backend other than this process runs a strategy or takes a setting. A strategy or a
    setting that declares nothing for a backend cannot run there.

    - `send(settings)`: the fields it adds to the backend's request, sent also when the setting is off,
      so that a server's own defaults never stand in for ours;
    - `refuse(settings)`: why these settings cannot run there after all (one clause), or None;
    - `request`: for a strategy, which of the backend's requests runs it (vLLM: "complete" or "beam");
    - `with_texts`: `send` and `refuse` take the ids of the settings that are text as well,
      `(settings, texts)` with `texts` a `TokenTexts` (a backend that wants token ids: vLLM's logit_bias)."""
    send: Callable[..., dict] = _no_fields
    refuse: Callable[..., str | None] = _no_objection
    request: str = ""
    with_texts: bool = False

    def fields(self, settings, texts) -> dict:
        return self.send(settings, texts) if self.with_texts else self.send(settings)

    def objection(self, settings, texts) -> str | None:
        """Why not, or None; a refusal that needs the ids waits for them (`texts` None: not known yet)."""
        if self.with_texts:
            return self.refuse(settings, texts) if texts is not None else None
        return self.refuse(settings)


def off_only(name: str, off, reason: str) -> Runs:
    """Taken only while `name` is `off`: the backend has no such setting, and `reason` says so."""
    return Runs(refuse=lambda s: reason if getattr(s, name) != off else None)


@dataclass(frozen=True)
class Knob:
    """One setting: its default and everything the flags, the URL parser and the checks need."""
    default: object
    help: str  # one line for --help
    kind: str = "float"  # int | optional_int | float | optional_float (None = off) | bool | bool_or_never | choice | model (a
    # model's name, None = none: another model the run uses, loaded once per process; see `check_model_name`),
    # or text (see TEXT_KINDS): texts (a tuple of texts), text (one, "" = none), text_biases (TEXT=BIAS
    # pairs), pair (two numbers, None = off; `parts` declares each)
    keyword: bool = True  # a generate() keyword of the same name
    choices: tuple = ()  # a choice's values (none declared: any, checked elsewhere, as the strategy's name)
    low: float | str | None = None  # the range; a str names a model limit: "vocab_size", "context_length"
    high: float | str | None = None
    open_low: bool = False  # (low, ... rather than [low, ...
    open_high: bool = False
    hint: str = ""  # added to the range message; may name {vocab_size} or {context_length}
    check: Callable | None = None  # a check of its own (several sentences) in place of the range test; declare
    # the range it enforces as low and high all the same: the app's widgets and links read them
    kwarg_when_default: bool = True  # in generate_kwargs() even at its default (False: only when set)
    flag: bool = True  # a flag of `decode` made from this (False: the CLI gives decode and compare one)
    used_by: tuple[str, ...] = ()  # generation modes that read it (() = every mode); filled in by settings
    backends: Mapping[str, Runs] = field(default_factory=dict, compare=False)  # see `Runs`; "*": every backend
    # text kinds: `tokens` says what each text must tokenize to ("one" token, or "some": at least one);
    # `items` and `chars` bound how many texts and how long each; a pair's `parts` are two Knobs (int or
    # float, with their ranges) named by `part_names`; a text_biases' bias takes low and high
    tokens: str = ""
    items: int = 0
    chars: int = 0
    parts: tuple = ()
    part_names: tuple[str, ...] = ()
    # how the value becomes generate()'s keywords, where they differ from its own: (value, texts) -> dict,
    # `texts` a `TokenTexts` (the real ids) or `RECIPE_TEXTS` (the recipe's code for them)
    kwargs: Callable | None = None

    def runs_on(self, backend: str) -> Runs | None:
        return self.backends.get(backend) or self.backends.get(ANY_BACKEND)


def knob(default, help: str, **declaration) -> Knob:
    return Knob(default, help, **declaration)


def finite(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSetting(f"{name} must be a finite number, got {value!r}.")


def whole(name: str, value, low: int, high: int | None = None, hint: str = "") -> None:
    """A whole number (not a bool, which Python counts as an int) within [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InvalidSetting(f"{name} must be a whole number {span}{hint}, got {value!r}.")


class _Known(dict):
    def __missing__(self, key):  # a model fact a hint names, not known yet
        return key


def _interval(low, high, open_low, open_high) -> str:
    return f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def check_knob(name: str, value, k: Knob, limits: dict) -> None:
    """One setting against its declaration: its kind, then its own check or its range."""
    if k.kind == "choice":
        if k.choices and value not in k.choices:
            raise InvalidSetting(f"{name} must be one of {', '.join(map(str, k.choices))}, got {value!r}.")
        return
    if k.kind in ("optional_float", "optional_int", "model") and value is None:
        return
    if k.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidSetting(f"{name} must be true or false, got {value!r}.")
        return
    if k.kind == "model":
        check_model_name(name, value)
        return
    if k.kind in TEXT_KINDS:
        _check_texts(name, value, k, limits)
        return
    if k.kind == "bool_or_never":
        if value not in (True, False, "never") or (value != "never" and not isinstance(value, bool)):
            raise InvalidSetting(f"{name} must be true, false or 'never', got {value!r}.")
        return
    # a bound that names a model fact not known yet (a link read before the model loads) is left open
    low, high = (None if isinstance(b, str) else b for b in (limits.get(b, b) for b in (k.low, k.high)))
    if k.kind in ("int", "optional_int"):
        whole(name, value, low, high, k.hint.format_map(_Known(limits)))
        return
    finite(name, value)
    if k.check is not None:
        k.check(value)
        return
    below = low is not None and (value <= low if k.open_low else value < low)
    above = high is not None and (value >= high if k.open_high else value > high)
    if below or above:
        hint = f"; {k.hint}" if k.hint else ""
        span = _interval(low, high, k.open_low, k.open_high) if low is not None and high is not None \
            else f"at least {low:g}"
        raise InvalidSetting(f"{name} must be in {span}, got {value:g}{hint}.")


MAX_MODEL_NAME_CHARS = 200  # a registry name, a hub id, or on the command line a folder's path


def check_model_name(name: str, value) -> None:
    """The form of a model's name in a setting (whether such a model is offered is the playground's to say,
    where the registry and the folders allowed are known): text, not too long, no control characters and
    none of the line-up syntax's separators, so that a run written out reads back the same."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSetting(f"{name} must be a model's name, got {value!r}; `python -m core models` lists them.")
    if len(value) > MAX_MODEL_NAME_CHARS or any(c in value for c in ",;()=") or not value.isprintable():
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise InvalidSetting(f"{name}={shown!r} is not a model's name (at most {MAX_MODEL_NAME_CHARS} printable "
                             "characters, none of , ; ( ) =); `python -m core models` lists them.")


TEXT_KINDS = ("texts", "text", "text_biases", "pair")  # written as JSON in a line-up or a link


def from_json(name: str, k: Knob, value):
    """A text kind's value from its JSON form (a line-up's, a link's), in the shape `DecodeSettings` holds:
    texts -> tuple of str, text -> str, text_biases -> tuple of (text, bias) from an object, pair -> (a, b)
    from a list of two, None from null. Anything else is left as it is, for `check_knob`'s sentence."""
    if k.kind == "texts" and isinstance(value, list):
        return tuple(value)
    if k.kind == "text_biases" and isinstance(value, dict):
        return tuple(value.items())
    if k.kind == "pair" and isinstance(value, list):
        return tuple(value)
    return value


def to_json(k: Knob, value):
    """The JSON form `from_json` reads back."""
    if k.kind == "text_biases":
        return {text: bias for text, bias in value}
    return list(value) if isinstance(value, tuple) else value


def _shown(text: str, most: int = 40) -> str:
    """A stranger's text inside a sentence: quoted, cut short."""
    return repr(text[:most] + ("..." if len(text) > most else ""))


def _check_text(name: str, text, k: Knob, encode) -> None:
    if not isinstance(text, str):
        raise InvalidSetting(f"{name} takes text, got {text!r:.60}.")
    if not text:
        raise InvalidSetting(f"{name} holds an empty text, which would match everywhere or nothing; remove it.")
    if k.chars and len(text) > k.chars:
        raise InvalidSetting(f"{name}: {_shown(text)} has {len(text):,} characters; at most {k.chars} are accepted.")
    if not text.isprintable() and not all(c.isprintable() or c in "\n\t" for c in text):
        raise InvalidSetting(f"{name}: {_shown(text)} holds control characters; only text, new lines and tabs "
                             "are accepted.")
    if encode is None or not k.tokens:
        return
    ids = encode(text)
    if not ids:
        raise InvalidSetting(f"{name}: {_shown(text)} tokenizes to nothing; give text that is at least one token.")
    if k.tokens == "one" and len(ids) != 1:
        raise InvalidSetting(f"{name}: {_shown(text)} is {len(ids)} tokens, but each must be one token (type it as "
                             "the tokenizer splits it: a leading space is part of a word-initial token).")


def _check_texts(name: str, value, k: Knob, limits: dict) -> None:
    """The text kinds: their shape, how many and how long, each bias within its range, and, where the
    tokenizer is known (`limits["encode"]`), what each text tokenizes to."""
    encode = limits.get("encode")
    if k.kind == "text":
        if not isinstance(value, str):
            raise InvalidSetting(f"{name} takes one text, got {value!r:.60}.")
        if value:
            _check_text(name, value, k, encode)
        return
    if k.kind == "pair":
        if value is None:
            return
        if not isinstance(value, tuple) or len(value) != 2:
            raise InvalidSetting(f"{name} takes two numbers, {','.join(k.part_names).upper()}, got {value!r:.60}.")
        for part, part_name, part_value in zip(k.parts, k.part_names, value):
            check_knob(f"{name}'s {part_name}", part_value, part, limits)
        return
    pairs = k.kind == "text_biases"
    if not isinstance(value, tuple) or (pairs and not all(isinstance(v, tuple) and len(v) == 2 for v in value)):
        form = "TEXT=BIAS pairs" if pairs else "a list of texts"
        raise InvalidSetting(f"{name} takes {form}, got {value!r:.60}.")
    if k.items and len(value) > k.items:
        raise InvalidSetting(f"{name} has {len(value)} entries; at most {k.items} are accepted.")
    for item in value:
        text = item[0] if pairs else item
        _check_text(name, text, k, encode)
        if pairs:
            bias = item[1]
            if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias) \
                    or not k.low <= bias <= k.high:
                raise InvalidSetting(f"{name}: the bias of {_shown(text)} must be a finite number from {k.low:g} to "
                                     f"{k.high:g}, got {bias!r:.40}.")


class Expr(str):
    """Code for a recipe: a value whose repr is the code itself (`ids(' king')`)."""

    def __repr__(self) -> str:
        return str(self)


class RecipeTexts:
    """The recipe's code for the ids of a text, tokenized as typed by the recipe's own `ids(text)`."""
    tokenizer = Expr("tokenizer")

    def ids(self, text: str):
        return Expr(f"ids({text!r})")

    def key(self, text: str):
        return Expr(f"tuple(ids({text!r}))")

    def one(self, text: str):
        return Expr(f"ids({text!r})[0]")

    def tensor(self, text: str):
        return Expr(f"torch.tensor([ids({text!r})], device=DEVICE)")


RECIPE_TEXTS = RecipeTexts()


class TokenTexts:
    """The ids of a text, tokenized as typed (no special tokens added), with the tokenizer itself."""

    def __init__(self, tokenizer, device="cpu"):
        self.tokenizer = tokenizer
        self.device = device

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def key(self, text: str) -> tuple[int, ...]:
        return tuple(self.ids(text))

    def one(self, text: str) -> int:
        return self.ids(text)[0]

    def tensor(self, text: str):
        import torch

        return torch.tensor([self.ids(text)], dtype=torch.long, device=self.device)


def num(value: float) -> str:
    """1.0 -> '1.0', 0.25 -> '0.25': one decimal at least, as people write temperatures."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"
