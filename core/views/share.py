"""A page's whole state as URL query parameters, so that a link reproduces a run.

A line-up travels in its own syntax (core/decoding/lineup.py); this module reads and writes the other
parameters, checks every value a link brings, and turns a stranger's text into plain text.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass

from core import limits
from core.decoding.knobs import TEXT_KINDS, check_knob, from_json, to_json
from core.decoding.lineup import format_value
from core.decoding.settings import KNOBS
from core.errors import InvalidSetting, quote

MAX_TEXT_PARAM = 20_000  # characters of a prompt or text from a link

# Markdown (and Streamlit's extensions: :material/...:, :red[...], $math$) is made of ASCII
# punctuation; CommonMark lets a backslash escape any of it, so nothing a stranger wrote is rendered.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: str) -> str:
    """Text to show through a markdown element (st.warning, st.error) exactly as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text).replace("\r", " ").replace("\n", " "))


_FROM_KNOB = object()  # Param.from_knob(default=...) not given: the knob's own default
_CHOICES = {"bool_or_never": (False, True, "never"), "bool": (False, True)}  # the values of a knob of that kind


@dataclass(frozen=True)
class Param:
    """One URL parameter of a page: its default, what a value must be to be used, and how it is shown.

    A page builds the parameter of a decoding setting with `Param.from_knob`, so the link, the widget and
    the engine's checks share one declaration: its default, its range and its help."""
    default: object
    low: float | str | None = None  # numbers: the range a value is brought into; a str names a model fact
    high: float | str | None = None  # ("vocab_size"), known once the model is loaded (`resolved`)
    choices: tuple | None = None  # strings: the values allowed
    max_chars: int = MAX_TEXT_PARAM
    open_low: bool = False  # the bound itself is not allowed: (low, ... rather than [low, ...
    open_high: bool = False
    knob: str = ""  # the setting (core.decoding.settings.KNOBS) this parameter stands for, if any
    help: str = ""  # the widget's help: the knob's own
    limit: str = ""  # why the range is narrower than the knob's (one of the app's limits), if it is
    widget: str = "number"  # "slider", "number" (a box), "choice" (one of `choices`) or "text" (a setting
    # that is text, written in the link as JSON: ["\\n","."], {" king":-5}, [10,1.02])
    comfort: tuple[float, float] | None = None  # a slider over a narrower range; a value outside it still counts
    step: float | None = None  # the widget's step (default: 1 for whole numbers, 0.01 otherwise)

    @classmethod
    def from_knob(cls, name: str, *, default=_FROM_KNOB, high: float | None = None, limit: str = "",
                  widget: str = "number", comfort: tuple[float, float] | None = None,
                  step: float | None = None) -> Param:
        """The parameter of the setting `name`: the knob's default, range and help. A page may give a
        default of its own (within the knob's range), a `comfort` range for its slider (a link's value
        outside it is still accepted as is, and shown in a box), or a `high` narrower than the knob's,
        which is one of the app's limits and says why in `limit`."""
        k = KNOBS[name]
        if k.kind in TEXT_KINDS:
            return cls(k.default if default is _FROM_KNOB else default, knob=name, help=k.help, widget="text")
        if k.kind in _CHOICES or (k.kind == "choice" and k.choices):
            return cls(k.default if default is _FROM_KNOB else default, choices=_CHOICES.get(k.kind, k.choices),
                       knob=name, help=k.help, widget="choice")
        if k.kind not in ("int", "optional_int", "float"):
            raise TypeError(f"{name} is a {k.kind} setting; Param.from_knob takes numbers and choices only.")
        cast = int if k.kind in ("int", "optional_int") else float  # a page shows an optional one when it is on
        number = lambda b: cast(b) if isinstance(b, (int, float)) else b  # noqa: E731 (a str: a model fact)
        p = cls(cast(k.default if default is _FROM_KNOB else default), number(k.low), number(k.high),
                open_low=k.open_low, open_high=k.open_high, knob=name, help=k.help, widget=widget,
                comfort=None if comfort is None else (cast(comfort[0]), cast(comfort[1])), step=step)
        if high is not None:
            if not limit:
                raise ValueError(f"{name}: a range narrower than the knob's is one of the app's limits; say why.")
            if isinstance(p.high, (int, float)) and high > p.high:
                raise ValueError(f"{name}: {high} is past the knob's own {p.high}.")
            p = dataclasses.replace(p, high=cast(high), open_high=False, limit=limit)
        outside = [v for v in (p.default, *(p.comfort or ())) if not p.allows(v)]
        if outside:
            raise ValueError(f"{name}: {outside} lies outside the knob's range, {p.span()}.")
        if widget not in ("slider", "number") or (widget == "slider" and comfort is None and None in (p.low, p.high)):
            raise ValueError(f"{name}: a {widget} needs a range with both ends; give it a comfort range.")
        return p

    def resolved(self, facts=None) -> Param:
        """This parameter with the bounds that name a model fact replaced by the loaded model's value
        (`facts`: a ModelFacts or a dict; None leaves them unknown)."""
        def fact(b):
            if not isinstance(b, str):
                return b
            if facts is None:
                return b
            value = facts[b] if isinstance(facts, dict) else getattr(facts, b)
            return type(self.default)(value)
        return dataclasses.replace(self, low=fact(self.low), high=fact(self.high))

    def bounds(self) -> tuple[float | None, float | None]:
        """(low, high) as numbers; a bound not known yet (a model fact not resolved) is None."""
        return tuple(b if isinstance(b, (int, float)) else None for b in (self.low, self.high))

    def allows(self, value) -> bool:
        """Whether `value` lies in the range (a bound not known yet allows anything)."""
        low, high = self.bounds()
        below = low is not None and (value <= low if self.open_low else value < low)
        above = high is not None and (value >= high if self.open_high else value > high)
        return not (below or above)

    def brought_in(self, value):
        """The nearest value the range allows: a bound, or the default where the bound itself is excluded."""
        low, high = self.bounds()
        if low is not None and value < low:
            return self.default if self.open_low else type(self.default)(low)
        if high is not None and value > high:
            return self.default if self.open_high else type(self.default)(high)
        return self.default if not self.allows(value) else value

    def span(self) -> str:
        """The range in words: '1 to 200', '0 (excluded) to 1', 'at least 1'."""
        low, high = (_bound(b) if isinstance(b, (int, float)) else b for b in (self.low, self.high))
        if low is not None and high is not None:
            return f"{low}{' (excluded)' if self.open_low else ''} to {high}{' (excluded)' if self.open_high else ''}"
        if low is not None:
            return f"more than {low}" if self.open_low else f"at least {low}"
        if high is not None:
            return f"less than {high}" if self.open_high else f"at most {high}"
        return "any number"

    def shown_as(self, value) -> Shown:
        """The widget for `value` (bounds resolved): the slider over the comfort range while the value lies
        in it, else a box over the whole range and one sentence saying why."""
        whole = isinstance(self.default, int)
        step = self.step if self.step is not None else (1 if whole else 0.01)
        low, high = self.bounds()
        if self.widget == "slider" and self.comfort is None:
            return Shown("slider", low, high, step)
        if self.comfort is not None:  # within the whole range, where a model fact narrows it
            easy = (max(self.comfort[0], low) if low is not None else self.comfort[0],
                    min(self.comfort[1], high) if high is not None else self.comfort[1])
            if easy[0] <= value <= easy[1]:
                return Shown("slider", *easy, step)
            note = (f"{self.knob or 'This setting'}={_bound(value)} lies outside the slider's "
                    f"{_bound(easy[0])} to {_bound(easy[1])}, so it is shown in a box that takes "
                    f"every value the setting allows here, {self.span()}.")
            return Shown("number", low, high, step, note)
        return Shown("number", low, high, step)


@dataclass(frozen=True)
class Shown:
    """How a page shows a number parameter: a slider or a box, its bounds and step, and a sentence
    saying why it is a box where the page's slider is narrower than the value."""
    kind: str
    low: float | None
    high: float | None
    step: float
    note: str = ""


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
    if p.widget == "text":
        return _read_text(name, text, p)
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True, None
        if lowered in ("0", "false", "no", "off"):
            return False, None
        words = [c for c in p.choices or () if not isinstance(c, bool)]  # early_stopping's "never"
        if lowered in words:
            return lowered, None
        allowed = "true or false" if not words else f"true, false or {' or '.join(words)}"
        return default, f"The link's {name}={quote(text)} is not {allowed}; using {default!r}."
    if isinstance(default, (int, float)):
        try:
            value = int(text) if isinstance(default, int) else float(text)
        except (ValueError, OverflowError):
            return default, f"The link's {name}={quote(text)} is not a number; using {default!r}."
        if isinstance(value, float) and not math.isfinite(value):
            return default, f"The link's {name}={quote(text)} is not a finite number; using {default!r}."
        if not p.allows(value):  # a bound that is a model fact is checked once the model is loaded
            kept = p.brought_in(value)
            why = f" ({p.limit})" if p.limit else ""
            return kept, f"The link's {name}={quote(text)} is outside {p.span()}{why}; using {kept!r}."
        return value, None
    if p.choices is not None and text not in p.choices:
        return default, f"The link's {name}={quote(text)} is not one of {', '.join(map(str, p.choices))}; using {default!r}."
    return text, None


def _read_text(name: str, text: str, p: Param):
    """A setting that is text, from its JSON in a link: checked against its knob (the tokenizer's part of
    the check waits for the model), else the default and one sentence."""
    k = KNOBS[p.knob]
    try:
        value = from_json(p.knob, k, json.loads(text))
        check_knob(p.knob, value, k, {})
    except (ValueError, RecursionError):
        return p.default, f"The link's {name}={quote(text)} is not JSON; using the default."
    except InvalidSetting as exc:
        return p.default, f"The link's {name} was not used: {exc}"
    return value, None


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


def write_value(value, name: str = "") -> str:
    """A value as a link writes it: true / false, 0.9, never; a setting that is text as JSON."""
    if name in KNOBS and KNOBS[name].kind in TEXT_KINDS:
        return json.dumps(to_json(KNOBS[name], value), ensure_ascii=False, separators=(",", ":"))
    return str(value).lower() if isinstance(value, bool) else format_value(value)


def write_params(state: dict) -> dict[str, str]:
    return {k: write_value(v, k) for k, v in state.items()}


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


def parse_models(text: str, *, offered: list[str], model: str, most: int) -> tuple[list[str], list[str]]:
    """Compare's other models from a link, `name,name`: the ones offered here, besides the page's `model`, in
    order, each once, at most `most`; one note per name that was dropped."""
    names: list[str] = []
    problems: list[str] = []
    for piece in filter(None, (p.strip() for p in str(text).split(","))):
        if piece == model or piece in names:
            continue  # the page's own model, or named twice: nothing to add
        if piece not in offered:
            problems.append(f"The link's model {quote(piece)} is not offered here; it was dropped from the comparison.")
        elif len(names) >= most:
            problems.append(f"At most {most} other models are compared; {quote(piece)} was dropped.")
        else:
            names.append(piece)
    return names, problems
