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
    - `request`: for a strategy, which of the backend's requests runs it (vLLM: "complete" or "beam")."""
    send: Callable[[object], dict] = _no_fields
    refuse: Callable[[object], str | None] = _no_objection
    request: str = ""


def off_only(name: str, off, reason: str) -> Runs:
    """Taken only while `name` is `off`: the backend has no such setting, and `reason` says so."""
    return Runs(refuse=lambda s: reason if getattr(s, name) != off else None)


@dataclass(frozen=True)
class Knob:
    """One setting: its default and everything the flags, the URL parser and the checks need."""
    default: object
    help: str  # one line for --help
    kind: str = "float"  # int | float | optional_float (None = off) | bool | bool_or_never | choice | model (a
    # model's name, None = none: another model the run uses, loaded once per process; see `check_model_name`)
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


def _interval(low, high, open_low, open_high) -> str:
    return f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def check_knob(name: str, value, k: Knob, limits: dict) -> None:
    """One setting against its declaration: its kind, then its own check or its range."""
    if k.kind == "choice":
        if k.choices and value not in k.choices:
            raise InvalidSetting(f"{name} must be one of {', '.join(map(str, k.choices))}, got {value!r}.")
        return
    if k.kind in ("optional_float", "model") and value is None:
        return
    if k.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidSetting(f"{name} must be true or false, got {value!r}.")
        return
    if k.kind == "model":
        check_model_name(name, value)
        return
    if k.kind == "bool_or_never":
        if value not in (True, False, "never") or (value != "never" and not isinstance(value, bool)):
            raise InvalidSetting(f"{name} must be true, false or 'never', got {value!r}.")
        return
    low, high = (limits.get(b, b) for b in (k.low, k.high))
    if k.kind == "int":
        whole(name, value, low, high, k.hint.format(**limits))
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


def num(value: float) -> str:
    """1.0 -> '1.0', 0.25 -> '0.25': one decimal at least, as people write temperatures."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"
