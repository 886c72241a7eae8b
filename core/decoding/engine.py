"""One step loop for every strategy: prefill once, then decode all runs of a line-up as one batch.

The engine knows nothing about tokenization: it takes prompt ids and returns ids and numbers
(`RawRun`); `core.playground` turns them into traces with text. Nor does it know any strategy: each
run is an instance of the class `core.decoding.strategies` registers for its mode (greedy_search, sample,
beam_search, group_beam_search, contrastive_search), behind the contract of `Strategy`.

Each run owns a contiguous block of batch rows (1 for greedy, num_beams for beam search,
num_return_sequences for sampling, top_k for contrastive search). Every step each run reads its rows'
logits, picks its next tokens and says which old row each new row continues; the engine then reorders
the model state once for the whole batch (dropping the rows of runs that finished) and runs one
forward pass.

Each strategy follows transformers' own method for its mode operation for operation (`_sample`,
`_beam_search` of transformers 5.x; `_group_beam_search` and `_contrastive_search` of 4.55, the last
release that has them), so the tokens match `model.generate()`.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from core.errors import InvalidSetting, PlaygroundError
from core.models.lm import ModelFacts, StepModel
from core.decoding.processors import RunContext
from core.decoding.settings import DecodeSettings
from core.decoding.strategies import strategy_class
from core.decoding.strategies.base import RawRun, Strategy, raw_figures

StepCallback = Callable[[int, list[list[int]]], None]


@torch.inference_mode()
def decode_batch(lm: StepModel, prompt_ids: list[int], runs: list[DecodeSettings], *,
                 top_n: int = 10, keep_distributions: bool = False,
                 forced_ids: list[int] | None = None, on_step: StepCallback | None = None,
                 others: list[dict[str, StepModel]] | None = None, texts=None) -> list[RawRun]:
    """Decode every run on one prompt: one prefill, then one forward pass per step for all rows.

    Settings must already be validated and prompt + max_new_tokens must fit the context
    (`core.playground` sees to both). `forced_ids` makes a single greedy/sample run follow the given
    tokens instead of choosing (to read the distributions along a fixed path). `on_step(step, ids)`
    is called after every step with each run's best ids so far. `others[i]`: the models besides `lm`
    that run i uses (`Strategy.other_models`), by the setting that names them; the run drives them itself.
    `texts` (a `TokenTexts`) turns the settings that are text into ids, for the processors and stopping
    criteria that take text.
    A strategy that `decodes_alone` (assisted decoding) runs its own loop first, one run at a time; the
    others then decode as one batch.
    """
    device = lm.device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    context = RunContext(device, len(prompt_ids), lm.facts.eos_token_ids, texts, lm)
    try:
        others = others or [{} for _ in runs]
        objs = [_start(s, prompt, lm.facts, top_n, keep_distributions, forced_ids, o, context)
                for s, o in zip(runs, others)]
        calls = [0]

        def alone_step():
            if on_step is not None:
                on_step(calls[0], [o.best_so_far() for o in objs])
            calls[0] += 1

        for run in objs:
            if run.decodes_alone:
                run.decode_alone(lm, alone_step)
        batched = [o for o in objs if not o.decodes_alone]
        if batched:
            _decode_together(lm, prompt, batched, objs, on_step, calls[0], top_n)
    except torch.OutOfMemoryError as exc:
        rows = sum(s.rows for s in runs)
        raise PlaygroundError(
            f"Out of memory while decoding {rows} rows; lower num_beams, num_return_sequences or "
            "max_new_tokens, or choose a smaller model.") from exc
    results = [o.result() for o in objs]
    for o, r in zip(objs, results):  # a batched run's counts, kept by _decode_together
        if r.target_forwards is None:
            r.target_forwards, r.seconds = getattr(o, "target_forwards", None), getattr(o, "seconds", None)
    return results


def _decode_together(lm: StepModel, prompt, objs: list[Strategy], everyone: list[Strategy], on_step, step: int,
                     top_n: int):
    """The batched runs: one prefill, then one forward pass a step for all their rows. Each run's result
    gets the forward passes that gave it logits and the batch's wall time."""
    device = lm.device
    started = time.perf_counter()
    forwards = {id(o): 0 for o in objs}
    # the last hidden states cost nothing extra to return, but only contrastive search reads them
    hidden_states = any(o.needs_hidden_states for o in objs)
    logits, state, hidden = _forward(lm.prefill, (prompt,), hidden_states)  # (1, V), state, (1, T, H)
    total = sum(o.rows for o in objs)
    state = lm.select_rows(state, torch.zeros(total, dtype=torch.long, device=device))
    # the trace's raw figures once per step for the whole batch (at the prompt: once for its one row)
    raw = raw_figures(logits, top_n).expand(total)
    logits = logits.expand(total, -1)
    hidden = hidden.expand(total, -1, -1) if hidden is not None else None
    active = objs
    while active:
        next_ids, sources, still, offset = [], [], [], 0
        for run in active:
            block = slice(offset, offset + run.rows)
            run.shared_raw = raw.rows(block)
            ids, rows = run.advance(logits[block], hidden[block] if run.needs_hidden_states else None)
            forwards[id(run)] += 1
            if not run.done:
                next_ids.append(ids)
                sources.append(rows + offset)
                still.append(run)
            offset += run.rows
        if on_step is not None:
            on_step(step, [o.best_so_far() for o in everyone])
        step += 1
        if not still:
            break
        rows = torch.cat(sources)
        if rows.shape[0] != offset or not torch.equal(rows, torch.arange(offset, device=device)):
            state = lm.select_rows(state, rows)
        logits, state, hidden = _forward(lm.step, (torch.cat(next_ids)[:, None], state), hidden_states)
        raw = raw_figures(logits, top_n)
        active = still
    seconds = time.perf_counter() - started
    for o in objs:
        o.target_forwards, o.seconds = forwards[id(o)], seconds


def _start(s: DecodeSettings, prompt, facts: ModelFacts, top_n, keep_distributions, forced_ids, others,
           context) -> Strategy:
    """The run of `s`: an instance of the class registered for its mode."""
    cls = strategy_class(s.mode)
    if forced_ids is not None and not cls.follows_forced_ids:
        raise InvalidSetting(f"forced_ids can only steer a greedy or sampling run, not {s.name()}.")
    extra = {"forced_ids": forced_ids} if forced_ids is not None else {}
    if others:
        extra["other_lms"] = others
    extra["context"] = context
    max_new = min(s.max_new_tokens, facts.context_length - prompt.shape[1])
    return cls(s, prompt, facts, max_new, top_n, keep_distributions, **extra)


def _forward(call, args, hidden_states: bool):
    """(logits, state, hidden or None) from prefill or step, asking for hidden states only when needed."""
    if not hidden_states:
        return (*call(*args), None)
    return call(*args, hidden_states=True)


def state_bytes_estimate(facts: ModelFacts, rows: int, total_len: int) -> int:
    """Memory a batch of `rows` needs: its state at full length plus a few (rows, V) float buffers."""
    return rows * total_len * facts.state_bytes_per_token + rows * facts.vocab_size * 4 * 8
