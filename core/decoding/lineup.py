"""The line-up syntax: a run as `strategy(name=value,...)` with only the settings that differ from
`DecodeSettings`' defaults (`greedy`, `beam(num_beams=5,no_repeat_ngram_size=2)`,
`sample(temperature=0.5,top_k=0)`), and a line-up as its runs joined by `;` or new lines.

The app's links, the command line's `--lineup` and the report all read and write runs this way.
"""

from __future__ import annotations

import dataclasses
import json

from core import limits
from core.decoding.knobs import TEXT_KINDS, from_json, to_json
from core.decoding.settings import KNOBS, STRATEGIES, DecodeSettings, lineup_seeds
from core.errors import InvalidSetting, quote

MAX_LINEUP_CHARS = 4_000

_DEFAULTS = DecodeSettings()
_FIELDS = {f.name: f for f in dataclasses.fields(DecodeSettings)}
# strategy is the spec's head; seed and max_new_tokens live in the sidebar, shared by all runs; a label
# is free text that would need escaping, and the name is rebuilt from the settings anyway
_SKIP = {"strategy", "seed", "max_new_tokens", "label"}


def format_value(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _spec_value(name: str, value) -> str:
    """A setting's value in a spec: a number or word as it is; text (texts, a pair) as JSON, which
    `split_outside_quotes` keeps whole."""
    if KNOBS[name].kind in TEXT_KINDS:
        return json.dumps(to_json(KNOBS[name], value), ensure_ascii=False, separators=(",", ":"))
    return format_value(value)


def run_spec(s: DecodeSettings) -> str:
    changed = [f"{name}={_spec_value(name, getattr(s, name))}" for name in _FIELDS
               if name not in _SKIP and getattr(s, name) != getattr(_DEFAULTS, name)]
    return f"{s.strategy}({','.join(changed)})" if changed else s.strategy


def split_outside_quotes(text: str, separators: str) -> list[str]:
    """`text` cut at each separator that lies outside a JSON string and outside brackets, so a stop
    string may hold ';' or ',' and a list its commas."""
    parts, start, depth, quoted, escaped = [], 0, 0, False, False
    for i, c in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c in separators and depth <= 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_value(name: str, text: str):
    """A value from a spec, read as its declaration's kind says (core.decoding.settings.KNOBS)."""
    kind = KNOBS[name].kind
    if kind in TEXT_KINDS:
        try:
            return from_json(name, KNOBS[name], json.loads(text))
        except (ValueError, RecursionError):
            raise InvalidSetting(f"{name}={quote(text)} is not JSON: write texts as [\" king\",\" queen\"], one text "
                                 "as \"text\", biases as {\" king\":-5}, a pair as [10,1.02].") from None
    if kind == "bool_or_never":
        return {"true": True, "false": False, "never": "never"}.get(text.lower(), text)
    if kind == "bool":  # anything else stays text, which the setting's check refuses in one sentence
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), text)
    if kind == "choice":
        if len(text) > 40:
            raise ValueError(text)
        return text
    if kind in ("optional_float", "optional_int") and text in ("", "None"):
        return None
    if kind in ("int", "optional_int"):
        return int(text)
    if kind == "model":  # a model's name: its form is the knob's check, whether it is offered the playground's
        return None if text in ("", "None") else text
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
    for item in filter(None, split_outside_quotes(rest[:-1], ",")) if rest else []:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or name not in _FIELDS or name in _SKIP:
            raise InvalidSetting(f"{quote(spec)} has an unknown setting {quote(name)}.")
        try:
            values[name] = _parse_value(name, text.strip())
        except ValueError:
            what = "a choice it has" if KNOBS[name].kind == "choice" else "a number"
            raise InvalidSetting(f"{quote(spec)} gives {name} the value {quote(text)}, which is not {what}.") from None
    return DecodeSettings(strategy=strategy.strip(), max_new_tokens=max_new_tokens, seed=seed, **values)


def lineup_spec(runs: list[DecodeSettings]) -> str:
    return ";".join(run_spec(s) for s in runs)


def parse_lineup(spec: str, *, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """Runs separated by `;` or new lines; run i gets the seed `seed + i` (its own random stream).

    A problem is one sentence that names the line it is on."""
    if len(spec) > MAX_LINEUP_CHARS:
        raise InvalidSetting(f"The line-up has {len(spec):,} characters; at most {MAX_LINEUP_CHARS:,} are accepted.")
    parts = [part for part in split_outside_quotes(spec, ";\n") if part.strip()]
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
