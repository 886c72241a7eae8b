"""A page's whole state as URL query parameters, so that a link reproduces a run.

A line-up travels in its own syntax (core/decoding/lineup.py); this module reads and writes the other
parameters, checks every value a link brings, and turns a stranger's text into plain text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core import limits
from core.decoding.lineup import format_value
from core.errors import quote

MAX_TEXT_PARAM = 20_000  # characters of a prompt or text from a link

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
    return {k: format_value(v) if not isinstance(v, bool) else str(v).lower() for k, v in state.items()}


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
