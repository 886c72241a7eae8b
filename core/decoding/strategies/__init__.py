"""The strategy registry: generate()'s mode name -> the class that runs it (as transformers'
`GENERATION_MODES_MAPPING`).

A new strategy is one module in this folder with one class registered by `@register("mode_name")`:
every module here is imported (and so registered) when the package is, and the class declares its own
settings (`Strategy.settings`), so nothing else needs to change. `base.Strategy` gives the contract."""

from __future__ import annotations

import importlib
import pkgutil

from core.decoding.strategies.base import Strategy
from core.errors import InvalidSetting

REGISTRY: dict[str, type[Strategy]] = {}


def register(mode: str):
    """Class decorator: `@register("beam_search")` makes the engine run that mode with the class."""
    def add(cls: type[Strategy]) -> type[Strategy]:
        if not cls.strategy:
            raise TypeError(f"{cls.__name__} names no `strategy` (what a user picks to run it).")
        REGISTRY[mode] = cls
        cls.mode = mode
        return cls
    return add


def strategy_class(mode: str) -> type[Strategy]:
    try:
        return REGISTRY[mode]
    except KeyError:
        raise InvalidSetting(f"No strategy runs the mode {mode!r}; known: {', '.join(REGISTRY)}.") from None


def mode_of(settings) -> str:
    """The mode whose class claims these settings; where several do (beam search with groups is also
    beam search), the one with the highest `precedence`."""
    claims = [(cls.precedence, mode) for mode, cls in REGISTRY.items() if cls.claims(settings)]
    if not claims:
        known = ", ".join(dict.fromkeys(cls.strategy for cls in REGISTRY.values()))
        raise InvalidSetting(f"strategy must be one of {known}, got {settings.strategy!r}.")
    return max(claims)[1]


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")
