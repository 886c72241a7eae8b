"""Model against model: one prompt and one line-up decoded by two or more models, side by side, and every
run scored under every other model of the comparison (how likely one model finds another's text).

Models that share a tokenizer read the same prompt ids (cut, when the prompt is too long, to the smallest
context among them, so that the ids are the same); a model with a tokenizer of its own reads the prompt in
its own tokens, and a notice says so. Scoring a run under another model: the prompt's ids and the run's
ids as they are where the two share a tokenizer; else the prompt and the continuation as text, tokenized
by the scoring model, which then scores its own tokens of the continuation (its perplexity is per its own
token, and the table says so).

Each model is a `Playground` (loaded once per process; a vLLM one decodes on its server), so this module
runs on any backend: it calls `compare`, `encode_prompt` and `score_ids` and nothing else of a model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

from core import limits
from core.decoding.settings import DecodeSettings
from core.errors import InvalidSetting
from core.playground import DecodeResult, Playground

MAX_MODELS = 4  # models in one comparison: each decodes the whole line-up and scores every other's runs


@dataclass
class CrossScore:
    """One run's continuation (its best sequence) under one model of the comparison."""
    model: str
    tokens: int  # continuation tokens scored, in the scoring model's tokens
    logprob: float  # their summed log-prob under the scoring model
    own_tokens: bool  # scored in the run's own token ids (a shared tokenizer), else re-tokenized as text

    @property
    def perplexity(self) -> float | None:
        return math.exp(-self.logprob / self.tokens) if self.tokens else None

    def to_dict(self) -> dict:
        return {"model": self.model, "tokens": self.tokens, "logprob": self.logprob,
                "perplexity": self.perplexity, "own_tokens": self.own_tokens}


@dataclass
class ModelComparison:
    prompt: str
    models: list[str]  # as exports name them
    results: list[DecodeResult]  # one per model, in the order given
    # cross[m][r]: run r of model m scored under every model (its own included), in the order of `models`
    cross: list[list[list[CrossScore]]]
    tokenizer_groups: list[list[str]]  # the models that share a tokenizer, so read the same prompt ids
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "models": self.models, "tokenizer_groups": self.tokenizer_groups,
                "notices": self.notices, "seconds": self.seconds,
                "results": [{**r.to_dict(), "cross_scores": [[c.to_dict() for c in run] for run in runs]}
                            for r, runs in zip(self.results, self.cross)]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def tokenizer_groups(playgrounds: list[Playground]) -> list[list[int]]:
    """Indices of the models grouped by tokenizer, in the order they first appear."""
    groups: list[list[int]] = []
    for i, pg in enumerate(playgrounds):
        for group in groups:
            if playgrounds[group[0]].shares_tokenizer(pg):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def check_models(playgrounds: list[Playground]) -> None:
    names = [pg.label for pg in playgrounds]
    if len(playgrounds) < 2:
        raise InvalidSetting("A comparison of models needs at least two models; choose another beside this one.")
    if len(playgrounds) > MAX_MODELS:
        raise InvalidSetting(f"A comparison takes at most {MAX_MODELS} models; this one has {len(playgrounds)}.")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise InvalidSetting(f"{twice} is named twice in the comparison; name each model once.")


def check_budget(playgrounds: list[Playground], runs: list[DecodeSettings], *, max_rows: int = limits.MAX_ROWS) -> None:
    """Every model decodes every run, and scores every other model's runs: the request's budget counts it
    all. Scoring a run is one pass over its tokens, like one row decoding as many tokens."""
    first, rest = playgrounds[0], playgrounds[1:]
    rows = sum(s.rows for s in runs)
    sequences = sum(s.num_return_sequences if s.do_sample else 1 for s in runs)
    others = [(pg.label, rows, pg.parameters) for pg in rest]
    # each model scores the runs of every other model: (models - 1) x sequences rows of its own
    others += [(f"{pg.label} (scoring)", sequences * (len(playgrounds) - 1), pg.parameters) for pg in playgrounds]
    for pg in playgrounds:
        for s, extra in zip(runs, pg.run_models(runs)):
            others += [(o.label, s.rows, o.parameters) for o in extra.values()]
    limits.check_request(runs=len(runs), rows=rows, new_tokens=max(s.max_new_tokens for s in runs),
                         parameters=first.parameters, device_type=first.device_type, max_rows=max_rows, others=others)


def shared_prompt_ids(playgrounds: list[Playground], group: list[int], prompt: str, longest: int,
                      truncate: bool) -> tuple[list[int], list[str]]:
    """The prompt's ids for a group of models sharing a tokenizer, cut (if it must be) to fit the smallest
    context among them."""
    smallest = min(group, key=lambda i: playgrounds[i].facts.context_length)
    return playgrounds[smallest].encode_prompt(prompt, longest, truncate=truncate)


def compare_models(playgrounds: list[Playground], prompt: str, runs: list[DecodeSettings], *, truncate: bool = True,
                   top_n: int = 10, on_step=None, max_rows: int = limits.MAX_ROWS) -> ModelComparison:
    """Decode the line-up on every model, then score every run under every model."""
    check_models(playgrounds)
    if not runs:
        raise InvalidSetting("There is nothing to run: add at least one strategy.")
    for pg in playgrounds:
        for s in runs:
            pg.check(s)
    check_budget(playgrounds, runs, max_rows=max_rows)
    started = time.perf_counter()
    longest = max(s.max_new_tokens for s in runs)
    groups = tokenizer_groups(playgrounds)
    notices: list[str] = []
    results: list[DecodeResult | None] = [None] * len(playgrounds)
    for group in groups:
        ids, cut = shared_prompt_ids(playgrounds, group, prompt, longest, truncate)
        names = ", ".join(playgrounds[i].label for i in group)
        if len(groups) > 1:
            notices.append(f"{names} read the prompt as {len(ids)} token ids of "
                           f"{'their shared' if len(group) > 1 else 'its own'} tokenizer"
                           f"{'' if len(group) > 1 else ', not the other models’ ids'}.")
        notices += [f"{names}: {note}" for note in cut]
        for i in group:
            step = (lambda k: lambda s, ids_: on_step(k, s, ids_))(i) if on_step is not None else None
            results[i] = playgrounds[i].compare(prompt, runs, truncate=truncate, top_n=top_n, on_step=step,
                                                max_rows=max_rows, prompt_ids=ids)
    cross = [[[_score(playgrounds[m], results[m], run, scorer) for scorer in playgrounds]
              for run in results[m].runs] for m in range(len(playgrounds))]
    for r, pg in zip(results, playgrounds):
        notices += [f"{pg.label}: {note}" for note in r.notices if f"{pg.label}: {note}" not in notices]
    return ModelComparison(prompt, [pg.label for pg in playgrounds], results, cross,
                           [[playgrounds[i].label for i in g] for g in groups], notices,
                           time.perf_counter() - started)


def _score(author: Playground, result: DecodeResult, run, scorer: Playground) -> CrossScore:
    """The run's best continuation under `scorer`, given the prompt the author read."""
    seq = run.best
    if scorer is author:  # its own figures: no second pass
        return CrossScore(scorer.label, len(seq.ids), sum(s.logprob for s in seq.steps), True)
    if not seq.ids:
        return CrossScore(scorer.label, 0, 0.0, True)
    if scorer.shares_tokenizer(author):
        context, continuation = result.prompt_ids, list(seq.ids)
        own = True
    else:
        prompt_text = result.prompt_text
        text = author.tokenizer.decode(seq.ids, skip_special_tokens=True)
        context = scorer.tokenizer.encode(prompt_text)
        whole = scorer.tokenizer.encode(prompt_text + text)
        shared = next((k for k, (a, b) in enumerate(zip(context, whole)) if a != b), min(len(context), len(whole)))
        context, continuation = whole[:shared], whole[shared:]  # a token across the seam counts as continuation
        own = False
        if not continuation:
            return CrossScore(scorer.label, 0, 0.0, own)
    # every token after the first is scored given all before it (in windows past the scorer's context), and
    # the context holds at least one token, so each continuation token is among the last len(continuation)
    tail = scorer.score_ids(context + continuation).tokens[-len(continuation):]
    return CrossScore(scorer.label, len(tail), sum(t.logprob for t in tail), own)
