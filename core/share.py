"""A page's whole state as URL query parameters, so that a link reproduces a run.

Runs are written as readable specs, `strategy(name=value,...)`, with only the settings that differ from
`DecodeSettings`' defaults: `greedy`, `beam(num_beams=5,no_repeat_ngram_size=2)`,
`sample(temperature=0.5,top_k=0)`. A line-up is its runs joined by `;`.
"""

from __future__ import annotations

import dataclasses

from core.errors import InvalidSetting
from core.settings import DecodeSettings

_DEFAULTS = DecodeSettings()
_FIELDS = {f.name: f for f in dataclasses.fields(DecodeSettings)}
# strategy is the spec's head; seed and max_new_tokens live in the sidebar, shared by all runs; a label
# is free text that would need escaping, and the name is rebuilt from the settings anyway
_SKIP = {"strategy", "seed", "max_new_tokens", "label"}


def _format(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def run_spec(s: DecodeSettings) -> str:
    changed = [f"{name}={_format(getattr(s, name))}" for name in _FIELDS
               if name not in _SKIP and getattr(s, name) != getattr(_DEFAULTS, name)]
    return f"{s.strategy}({','.join(changed)})" if changed else s.strategy


def _parse_value(name: str, text: str):
    default = getattr(_DEFAULTS, name)
    if name == "early_stopping":
        return {"true": True, "false": False, "never": "never"}.get(text.lower(), text)
    if name == "min_p":
        return None if text in ("", "None") else float(text)
    if isinstance(default, bool):
        return text.lower() == "true"
    if isinstance(default, int):
        return int(text)
    return float(text)


def parse_run(spec: str, *, max_new_tokens: int, seed: int) -> DecodeSettings:
    """`beam(num_beams=5)` -> DecodeSettings; one sentence on anything malformed."""
    spec = spec.strip()
    strategy, _, rest = spec.partition("(")
    if rest and not rest.endswith(")"):
        raise InvalidSetting(f"The run {spec!r} is malformed: expected strategy(name=value,...).")
    values = {}
    for item in filter(None, rest[:-1].split(",")) if rest else []:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or name not in _FIELDS or name in _SKIP:
            raise InvalidSetting(f"The run {spec!r} has an unknown setting {name!r}.")
        try:
            values[name] = _parse_value(name, text.strip())
        except ValueError:
            raise InvalidSetting(f"The run {spec!r} gives {name} the value {text!r}, which is not a number.") from None
    return DecodeSettings(strategy=strategy.strip(), max_new_tokens=max_new_tokens, seed=seed, **values)


def lineup_spec(runs: list[DecodeSettings]) -> str:
    return ";".join(run_spec(s) for s in runs)


def parse_lineup(spec: str, *, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """Runs separated by `;` or new lines."""
    parts = spec.replace("\n", ";").split(";")
    return [parse_run(part, max_new_tokens=max_new_tokens, seed=seed) for part in parts if part.strip()]


def read_params(params: dict, schema: dict) -> tuple[dict, list[str]]:
    """Typed values for `schema` ({name: default}) from query params; bad values fall back, with a note."""
    state, problems = {}, []
    for name, default in schema.items():
        if name not in params:
            state[name] = default
            continue
        raw = params[name]
        try:
            if isinstance(default, bool):
                state[name] = str(raw).lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                state[name] = int(raw)
            elif isinstance(default, float):
                state[name] = float(raw)
            else:
                state[name] = str(raw)
        except ValueError:
            state[name] = default
            problems.append(f"The link's {name}={raw!r} is not valid; using {default!r}.")
    return state, problems


def write_params(state: dict) -> dict[str, str]:
    return {k: _format(v) if not isinstance(v, bool) else str(v).lower() for k, v in state.items()}
