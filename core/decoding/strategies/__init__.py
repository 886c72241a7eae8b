"""The strategy registry: generate()'s mode name -> the class that runs it (as transformers'
`GENERATION_MODES_MAPPING`). A new strategy is one module here with one registered class (see
`base.Strategy` for the contract), plus its settings declared in `core.decoding.settings`."""

from __future__ import annotations

from core.errors import InvalidSetting
from core.decoding.strategies.base import Strategy

REGISTRY: dict[str, type[Strategy]] = {}


def register(mode: str):
    """Class decorator: `@register("beam_search")` makes the engine run that mode with the class."""
    def add(cls: type[Strategy]) -> type[Strategy]:
        REGISTRY[mode] = cls
        cls.mode = mode
        return cls
    return add


def strategy_class(mode: str) -> type[Strategy]:
    try:
        return REGISTRY[mode]
    except KeyError:
        raise InvalidSetting(f"No strategy runs the mode {mode!r}; known: {', '.join(REGISTRY)}.") from None


# importing the modules registers their classes
from core.decoding.strategies import beam, contrastive, group_beam, single  # noqa: E402,F401
