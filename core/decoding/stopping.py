"""What ends a run besides the end-of-text token and the length: generate()'s stopping criteria, each
declared once (`Criterion`), like the processors.

A criterion gives its own finish reason (its `name`) and says what it met (the `detail`, e.g. which stop
string), which the trace keeps beside the reason. The strategies ask every criterion of a run after each
token (`stops`): greedy and sampling rows finish there, beam search's candidates finish there as
generate()'s `next_token_hits_stopping_criteria` does. Every declaration's settings become flags, line-up
and URL names like a processor's (`core.decoding.settings`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from transformers.generation.stopping_criteria import StopStringCriteria

from core import limits
from core.decoding.knobs import Knob, Runs, knob
from core.errors import InvalidSetting


@dataclass(frozen=True)
class Criterion:
    """One stopping criterion.

    - `name`: the finish reason it gives; `label`: for people; `finished`: how a finish says it, given the
      detail ('stopped at the stop string "\\n"');
    - `knobs`: the settings it reads, its generate() keyword first; `settings`: those it introduces;
    - `active(settings)`; `build(settings, context)` (a `RunContext`): a callable that takes the rows'
      sequences (R, T), prompt included, and returns per row what it met (a str) or None;
    - `modes`: the generation modes that stop on it (others refuse it in one sentence); `in_name(settings)`:
      its part of a run's name."""
    name: str
    label: str
    finished: Callable[[str], str]
    knobs: tuple[str, ...]
    active: Callable
    build: Callable
    modes: tuple[str, ...]
    settings: Mapping[str, Knob] = field(default_factory=dict)
    in_name: Callable | None = None


CRITERIA: dict[str, Criterion] = {}


def register(criterion: Criterion) -> Criterion:
    CRITERIA[criterion.name] = criterion
    return criterion


def applied_to(s) -> list[Criterion]:
    return [c for c in CRITERIA.values() if c.active(s)]


def check(s) -> None:
    for c in applied_to(s):
        if s.mode not in c.modes:
            modes = [m.replace("_", " ") for m in c.modes]  # said from the declaration, so it never goes stale
            raise InvalidSetting(f"{c.knobs[0]} ends {', '.join(modes[:-1])} and {modes[-1]} runs, not "
                                 f"{s.mode.replace('_', ' ')}; remove it from this run.")


def build_stops(s, context) -> list[tuple[str, Callable]]:
    """(finish reason, the criterion's callable) for every criterion the run applies."""
    return [(c.name, c.build(s, context)) for c in applied_to(s)]


def met(stops, sequences: torch.Tensor) -> list[tuple[str, str] | None]:
    """Per row of `sequences`: (finish reason, what it met) for the first criterion met, or None."""
    found: list[tuple[str, str] | None] = [None] * sequences.shape[0]
    for name, stop in stops:
        for row, detail in enumerate(stop(sequences)):
            if detail is not None and found[row] is None:
                found[row] = (name, detail)
    return found


# ---- stop strings ---------------------------------------------------------------------------------
def _stop_strings(s, context):
    """transformers' StopStringCriteria over every stop string (what generate() builds), and the string
    met, found by the same class: the criterion again with every other string's length out of reach."""
    strings = list(s.stop_strings)
    criterion = StopStringCriteria(tokenizer=context.texts.tokenizer, stop_strings=strings)
    out_of_reach = torch.iinfo(criterion.target_lens.dtype).max

    def which(sequence: torch.Tensor) -> str:
        for j, text in enumerate(strings):
            alone = copy.copy(criterion)
            alone.target_lens = torch.where(torch.arange(len(strings)) == j, criterion.target_lens.cpu(), out_of_reach)
            if bool(alone(sequence, None)[0]):
                return text
        return strings[0]

    def stop(sequences: torch.Tensor) -> list[str | None]:
        hits = criterion(sequences, None).tolist()
        return [which(sequences[row:row + 1]) if hit else None for row, hit in enumerate(hits)]
    return stop


register(Criterion(
    name="stop_string", label="stop strings", knobs=("stop_strings",),
    finished=lambda detail: f"stopped at the stop string {detail!r}",
    active=lambda s: bool(s.stop_strings), build=_stop_strings,
    modes=("greedy_search", "sample", "beam_search", "contrastive_search", "assisted_generation", "assisted_sampling"),
    in_name=lambda s: f"{len(s.stop_strings)} stop string{'s' if len(s.stop_strings) != 1 else ''}",
    settings={"stop_strings": knob(
        (), "stop as soon as the text ends with one of these (tokenized in any way; generate()'s stop_strings)",
        kind="texts", items=limits.MAX_STOP_STRINGS, chars=limits.MAX_STOP_STRING_CHARS, kwarg_when_default=False,
        kwargs=lambda v, t: {"stop_strings": list(v), "tokenizer": t.tokenizer},
        backends={"vllm": Runs(send=lambda s: {"stop": list(s.stop_strings), "include_stop_str_in_output": True},
                               refuse=lambda s: "vLLM's beam search takes no stop strings"
                               if s.is_beam and s.stop_strings else None)})}))
