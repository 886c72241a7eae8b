"""The logits processors, each declared once (`Processor`), in a registry like the strategies' one.

A declaration says everything the project needs to know about a processor: its name in a trace, its
label for people, what it does to the scores, the settings it reads (or introduces), its place in
generate()'s order and how to build transformers' class for it. Every module in this folder is imported
and registers its declarations, so a new processor is one file; the strategies build their processors
from here (`build_processors`), a step's `kept` / `banned` are recorded by what each does
(`apply_processors`), and the distribution replay, the figures, the run's name and the vLLM backend read
the rest. This package imports nothing of the project's but the knobs, so the strategies can import it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from core.decoding.knobs import Knob

RESHAPES, CUTS, BANS = "reshapes", "cuts", "bans"
MAX_BANNED_LISTED = 20  # ids listed per step for a ban: a trace stays small when a ban hits thousands


def _value(p: Processor, s) -> str:
    value = getattr(s, p.knobs[0])
    return f"{p.label} {value:g}"


@dataclass(frozen=True)
class Processor:
    """One logits processor.

    - `name`: its key in a step's `kept` (what `CUTS`) or `banned` (what `BANS`; `RESHAPES`: neither);
    - `label`: for people ("top-k"); `verb`: how a figure says a token fell to it ("cut by");
    - `knobs`: the settings it reads, its generate() keyword first; `settings`: those it introduces
      (a new processor's own, which become flags, line-up and URL names like a strategy's);
    - `order`: its place in generate()'s order, smaller first; `sampling_only`: a warper, which
      generate() applies only when it samples;
    - `active(settings)`: whether it runs; `build(settings, device)`: transformers' class for it (None
      where the strategy builds it itself, with what only the strategy knows at each step);
    - `applied(settings)`: how the distribution replay names it once applied (default: label and value);
      `in_name(settings)`: its part of a run's name, where the strategy's own description leaves it out;
    - for figures: `colour`; `prefix_cut` (it keeps the most likely tokens, so the k-th survivor falls to
      the first cut that kept fewer than k); `mass_cut` (its value is a cumulative probability, drawn
      on the curve); `removes` (a ban that takes tokens out rather than lowering them); `reorders`
      (it changes the order of the tokens it leaves);
    - `replays_on_logprobs`: applied to log-probs it gives what it gives on logits (False: the
      repetition penalty, which scales positive and negative logits apart);
    - `generate_kwargs(settings)`: the generate() keyword arguments that turn it on, where its settings are
      not generate() keywords of their own (the watermark: `watermarking_config=WatermarkingConfig(...)`);
    - `in_run`: `build` takes the run's `RunContext` in place of the device (the prompt's length, the
      end-of-text ids, the tokenizer for settings that are text, the model for a second branch);
    - `extra_rows(settings)`: rows it decodes besides the run's own (classifier-free guidance's
      unconditional branch), counted in the request's budget;
    - `check(settings, limits)`: rules tying its settings to the others and to the model (`limits`:
      vocab_size, context_length, and `encode` for text, as `validate()` has them), one sentence each."""
    name: str
    label: str
    does: str
    knobs: tuple[str, ...]
    order: int
    active: Callable
    build: Callable | None
    verb: str = ""
    sampling_only: bool = False
    settings: Mapping[str, Knob] = field(default_factory=dict)
    applied: Callable | None = None
    in_name: Callable | None = None
    colour: str = "#7f7f7f"
    prefix_cut: bool = False
    mass_cut: bool = False
    removes: bool = True
    reorders: bool = False
    replays_on_logprobs: bool = True
    generate_kwargs: Callable | None = None
    in_run: bool = False
    extra_rows: Callable | None = None
    check: Callable | None = None

    def applied_label(self, s) -> str:
        return self.applied(s) if self.applied is not None else _value(self, s)

    def reason(self) -> str:
        """Why a token is gone, in a figure: "cut by top-k"."""
        return f"{self.verb or {CUTS: 'cut by', BANS: 'banned by'}.get(self.does, 'changed by')} {self.label}"


@dataclass(frozen=True)
class RunContext:
    """What a processor declared `in_run` is built with: the device, the prompt's length (generate()'s
    input_ids_seq_length), the end-of-text ids, `texts` (a `core.decoding.knobs.TokenTexts`: the ids of
    a setting that is text, and the tokenizer) and `lm` (the model, a `StepModel`), where known."""
    device: torch.device | str = "cpu"
    prompt_len: int = 0
    eos_token_ids: tuple[int, ...] = ()
    texts: object = None
    lm: object = None


PROCESSORS: dict[str, Processor] = {}


def register(processor: Processor) -> Processor:
    if processor.does not in (RESHAPES, CUTS, BANS):
        raise TypeError(f"{processor.name} must reshape, cut or ban, not {processor.does!r}.")
    PROCESSORS[processor.name] = processor
    return processor


def ordered() -> list[Processor]:
    """Every declared processor in generate()'s order."""
    return sorted(PROCESSORS.values(), key=lambda p: p.order)


def applied_to(s) -> list[Processor]:
    """The processors a run of `s` applies, in generate()'s order: the active ones its mode takes."""
    return [p for p in ordered() if (s.do_sample or not p.sampling_only) and p.active(s)]


def build_processors(s, device: torch.device | str | RunContext = "cpu") -> list[tuple[str, object]]:
    """transformers' own processors for `s`, in generate()'s order, then any the strategy adds. `device`
    may be the run's `RunContext`, which the processors declared `in_run` need; one that builds to None
    has nothing to do in this run (generate() leaves it out too: a length rule without an end-of-text)."""
    context = device if isinstance(device, RunContext) else RunContext(device)
    built = []
    for p in applied_to(s):
        if p.build is not None:
            proc = p.build(s, context if p.in_run else context.device)
            if proc is not None:
                built.append((p.name, proc))
    return built + s.runner.processors(s, context.device)


def apply_processors(processors, input_ids, scores):
    """Run the processors one by one, recording what each cut (a count of survivors) or banned (ids)."""
    kept: dict[str, torch.Tensor] = {}
    banned: dict[str, list[list[int]]] = {}
    for name, proc in processors:
        new = proc(input_ids, scores)
        does = PROCESSORS[name].does
        if does == BANS:
            changed = (new != scores) & torch.isfinite(scores)
            banned[name] = [row.nonzero().flatten()[:MAX_BANNED_LISTED].tolist() for row in changed]
        elif does == CUTS:
            kept[name] = torch.isfinite(new).sum(-1)
        scores = new
    return scores, kept, banned


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
