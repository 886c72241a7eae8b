"""A page's whole state as URL query parameters, so that a link reproduces a run.

Runs are written as readable specs, `strategy(name=value,...)`, with only the settings that differ from
`DecodeSettings`' defaults: `greedy`, `beam(num_beams=5,no_repeat_ngram_size=2)`,
`sample(temperature=0.5,top_k=0)`. A line-up is its runs joined by `;`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from core import limits
from core.errors import InvalidSetting
from core.decoding.settings import KNOBS, STRATEGIES, DecodeSettings, lineup_seeds

MAX_TEXT_PARAM = 20_000  # characters of a prompt or text from a link
MAX_LINEUP_CHARS = 4_000

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
    """A value from a spec, read as its declaration's kind says (core.decoding.settings.KNOBS)."""
    kind = KNOBS[name].kind
    if kind == "bool_or_never":
        return {"true": True, "false": False, "never": "never"}.get(text.lower(), text)
    if kind == "optional_float" and text in ("", "None"):
        return None
    if kind == "int":
        return int(text)
    if len(text) > 40:
        raise ValueError(text)
    return float(text)


def parse_run(spec: str, *, max_new_tokens: int, seed: int) -> DecodeSettings:
    """`beam(num_beams=5)` -> DecodeSettings; one sentence on anything malformed."""
    spec = spec.strip()
    strategy, _, rest = spec.partition("(")
    if rest and not rest.endswith(")"):
        raise InvalidSetting(f"{quote(spec)} is malformed: expected strategy(name=value,...).")
    if strategy.strip() not in STRATEGIES:  # first: an unknown strategy's settings are unknown too
        raise InvalidSetting(f"{quote(spec)} names no strategy: begin it with one of {', '.join(STRATEGIES)}.")
    values = {}
    for item in filter(None, rest[:-1].split(",")) if rest else []:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or name not in _FIELDS or name in _SKIP:
            raise InvalidSetting(f"{quote(spec)} has an unknown setting {quote(name)}.")
        try:
            values[name] = _parse_value(name, text.strip())
        except ValueError:
            raise InvalidSetting(f"{quote(spec)} gives {name} the value {quote(text)}, which is not a number.") from None
    return DecodeSettings(strategy=strategy.strip(), max_new_tokens=max_new_tokens, seed=seed, **values)


def lineup_spec(runs: list[DecodeSettings]) -> str:
    return ";".join(run_spec(s) for s in runs)


def parse_lineup(spec: str, *, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """Runs separated by `;` or new lines; run i gets the seed `seed + i` (its own random stream).

    A problem is one sentence that names the line it is on."""
    if len(spec) > MAX_LINEUP_CHARS:
        raise InvalidSetting(f"The line-up has {len(spec):,} characters; at most {MAX_LINEUP_CHARS:,} are accepted.")
    parts = [part for part in spec.replace("\n", ";").split(";") if part.strip()]
    if len(parts) > limits.MAX_RUNS:
        raise InvalidSetting(f"A line-up may have at most {limits.MAX_RUNS} runs; this one has {len(parts)}.")
    runs = []
    for line, part in enumerate(parts, 1):
        try:
            runs.append(parse_run(part, max_new_tokens=max_new_tokens, seed=seed))
        except InvalidSetting as exc:
            raise InvalidSetting(f"Line {line} of the line-up: {exc}") from None
        except TypeError:  # a value of the wrong kind for DecodeSettings
            raise InvalidSetting(f"Line {line} of the line-up, {quote(part)}, is malformed.") from None
    return lineup_seeds(runs, seed)


def validate_lineup(runs: list[DecodeSettings], check) -> None:
    """Run `check` (a Playground's) on every run, naming the line of the first that fails."""
    for line, run in enumerate(runs, 1):
        try:
            check(run)
        except InvalidSetting as exc:
            raise InvalidSetting(f"Line {line} of the line-up ({run.name()}): {exc}") from None


def quote(value, limit: int = 60) -> str:
    """A stranger's value as a short, quoted literal: cut, and with every control character escaped."""
    text = str(value)
    shown = repr(text[:limit])
    return shown + ("…" if len(text) > limit else "")


# Markdown (and Streamlit's extensions: :material/...:, :red[...], $math$) is made of ASCII
# punctuation; CommonMark lets a backslash escape any of it, so nothing a stranger wrote is rendered.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: str) -> str:
    """Text to show through a markdown element (st.warning, st.error) exactly as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text).replace("\r", " ").replace("\n", " "))


@dataclass(frozen=True)
class Param:
    """One URL parameter of a page: its default and what a value must be to be used."""
    default: object
    low: float | None = None  # numbers: the range a value is brought into
    high: float | None = None
    choices: tuple | None = None  # strings: the values allowed
    max_chars: int = MAX_TEXT_PARAM


def _as_param(spec) -> Param:
    return spec if isinstance(spec, Param) else Param(spec)


def defaults(schema: dict) -> dict:
    return {name: _as_param(spec).default for name, spec in schema.items()}


def _bound(value: float) -> str:
    """2147483647 as '2,147,483,647' (not 2.14748e+09), 0.05 as '0.05'."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _read_one(name: str, raw, p: Param):
    """(value, problem or None) for one parameter from a link; any garbage falls back to the default."""
    text = str(raw)
    default = p.default
    if len(text) > p.max_chars:
        return default, f"The link's {name} is {len(text):,} characters long (at most {p.max_chars:,}); using the default."
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True, None
        if lowered in ("0", "false", "no", "off"):
            return False, None
        return default, f"The link's {name}={quote(text)} is not true or false; using {default!r}."
    if isinstance(default, (int, float)):
        try:
            value = int(text) if isinstance(default, int) else float(text)
        except (ValueError, OverflowError):
            return default, f"The link's {name}={quote(text)} is not a number; using {default!r}."
        if isinstance(value, float) and not math.isfinite(value):
            return default, f"The link's {name}={quote(text)} is not a finite number; using {default!r}."
        low, high = p.low, p.high
        if (low is not None and value < low) or (high is not None and value > high):
            clamped = min(max(value, low if low is not None else value), high if high is not None else value)
            clamped = type(default)(clamped)
            span = (f"{_bound(low)} to {_bound(high)}" if low is not None and high is not None
                    else f"at least {_bound(low)}" if low is not None else f"at most {_bound(high)}")
            return clamped, f"The link's {name}={quote(text)} is outside {span}; using {clamped!r}."
        return value, None
    if p.choices is not None and text not in p.choices:
        return default, f"The link's {name}={quote(text)} is not one of {', '.join(map(str, p.choices))}; using {default!r}."
    return text, None


def read_params(params: dict, schema: dict) -> tuple[dict, list[str]]:
    """Typed values for `schema` ({name: default or Param}) from query params: every value checked,
    garbage replaced by the default and a value out of range brought into it, each with one note."""
    state, problems = {}, []
    for name, spec in schema.items():
        p = _as_param(spec)
        if name not in params:
            state[name] = p.default
            continue
        state[name], problem = _read_one(name, params[name], p)
        if problem:
            problems.append(problem)
    return state, problems


def write_params(state: dict) -> dict[str, str]:
    return {k: _format(v) if not isinstance(v, bool) else str(v).lower() for k, v in state.items()}


def parse_branches(text: str, *, steps: int, vocab_size: int) -> tuple[list[tuple[int, int]], list[str]]:
    """Step through's branches, `step:token_id,...`: the well-formed ones (in order, no repeats, at most
    MAX_BRANCHES), and one note per piece that was dropped."""
    branches: list[tuple[int, int]] = []
    problems: list[str] = []
    for piece in filter(None, (p.strip() for p in str(text).split(","))):
        step, sep, token = piece.partition(":")
        if not sep or not step.isdigit() or not token.isdigit() or len(piece) > 20:
            problems.append(f"The link's branch {quote(piece)} is not step:token_id; it was dropped.")
            continue
        branch = (int(step), int(token))
        if not branch[0] < steps:
            problems.append(f"The link's branch {quote(piece)} starts after the last step ({steps - 1}); it was dropped.")
        elif not branch[1] < vocab_size:
            problems.append(f"The link's branch {quote(piece)} names no token (ids go to {vocab_size - 1}); it was dropped.")
        elif branch in branches:
            continue
        elif len(branches) >= limits.MAX_BRANCHES:
            problems.append(f"At most {limits.MAX_BRANCHES} branches are kept; {quote(piece)} was dropped.")
        else:
            branches.append(branch)
    return branches, problems


def branches_spec(branches: list[tuple[int, int]]) -> str:
    return ",".join(f"{step}:{token}" for step, token in branches)
