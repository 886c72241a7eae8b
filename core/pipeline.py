"""The pipeline at one step of one run: the next-token distribution after each of generate()'s stages.

generate() turns the model's scores into the distribution it chooses from through its logits
processors, one after another, in the order `_get_logits_processor` builds them (the bias, penalties,
bans and length rules first, then temperature and the cut-offs). `stages_at` replays them one at a time
from the processors the run itself builds (`build_processors`: transformers' own classes, from the
declarations in `core.decoding.processors`), so that every stage can be read: what its processor did,
how many tokens it keeps, the entropy, the top-N, and the chosen token's probability and rank there.
The last stage is the run's processed distribution.

Which sequence a step belongs to: greedy, sampling and contrastive runs show their first row (the
run's `best`); beam search shows the returned best hypothesis: at step K, the beam that hypothesis
descends from (the row generate()'s `beam_indices[0][K]` names), whose input is the prompt and the
hypothesis's first K tokens. Beam search processes log-softmax, not logits, as generate() does, and adds
the processed log-probs to a beam's score as they are; each stage's probabilities here are the softmax
of its scores (for the last stage: the softmax of generate(output_scores=True)'s scores for that beam).

The model's scores are recomputed for the step's prefix with one forward pass (as the Sampling lab's
replay does), so they equal the run's up to float rounding; nothing here mutates the run or the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from core.decoding.knobs import TokenTexts
from core.decoding.processors import (BANS, CUTS, PROCESSORS, RESHAPES, Processor, RunContext, build_processors,
                                      ordered)
from core.decoding.strategies.base import entropy
from core.errors import InvalidSetting

if TYPE_CHECKING:
    from core.decoding.settings import DecodeSettings
    from core.playground import DecodeResult, Playground

RAW = "raw"
MAX_LISTED = 20  # tokens a stage lists by name as cut, banned or changed (the most likely first)
MAX_TOP_N = 100


@dataclass(frozen=True)
class StageToken:
    id: int
    token: str
    prob: float  # in this stage's distribution


@dataclass
class Stage:
    """The distribution after one stage: `raw` (the model's own), then one per processor applied."""
    name: str  # generate()'s keyword for the processor (`top_k`, `no_repeat_ngram_size`); "raw" first
    processor: str  # its declaration's name, the key of a trace step's `kept` / `banned` ("" for raw)
    label: str  # for people: "top-k 50", "raw"
    does: str  # RESHAPES, CUTS or BANS (its declaration's); "raw" for the first stage
    acted: bool  # whether it changed any token's score at this step
    did: str  # what it did at this step, in words ("cut 8,142 tokens", "does nothing at this step")
    kept: int  # tokens with a probability above 0 after it
    entropy: float  # nats, of this stage's distribution
    chosen_prob: float
    chosen_rank: int  # 1 = this stage's most likely token
    chosen_score: float  # the chosen token's score after the stage: a logit, or a log-prob in beam search
    top: list[StageToken]
    changed: int = 0  # tokens it cut, banned or changed (RESHAPES: every token, not listed)
    changed_ids: list[int] = field(default_factory=list)  # the most likely of them first, at most MAX_LISTED
    changed_tokens: list[str] = field(default_factory=list)
    counted: str = ""  # `did`'s count of what it changed ("cut 8,152 tokens"), without what it kept
    removed: int = 0  # tokens it took out of the distribution
    probs: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (V,), not exported

    def did_naming(self, limit: int, show: Callable[[str], str] = repr) -> str:
        """`did`, naming the first `limit` tokens it changed right after their count: "cut 8,152 tokens: 'a',
        'b' and 8,150 more; keeps 40" (a stage that reshaped every score, or did nothing, names none)."""
        if not self.changed_tokens:
            return self.did
        names = ", ".join(show(t) for t in self.changed_tokens[:limit])
        more = self.changed - min(len(self.changed_tokens), limit)
        if more > 0:
            names += f" and {more:,} more"
        return f"{self.counted}: {names}" + (f"; keeps {self.kept:,}" if self.removed else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "processor": self.processor, "label": self.label, "does": self.does,
                "acted": self.acted, "did": self.did, "kept": self.kept, "entropy": self.entropy,
                "chosen_rank": self.chosen_rank, "chosen_prob": self.chosen_prob, "chosen_score": self.chosen_score,
                "changed": self.changed, "changed_ids": self.changed_ids, "changed_tokens": self.changed_tokens,
                "top": [{"id": t.id, "token": t.token, "prob": t.prob} for t in self.top]}


@dataclass
class Pipeline:
    """Step `step` of run `run` of a line-up, stage by stage."""
    model: str
    prompt_ids: list[int]
    run: int
    run_name: str
    strategy: str
    step: int
    steps: int  # how many steps the shown sequence has
    token_id: int  # the token the run chose at this step
    token: str
    sequence: str  # which sequence the step is of, in words
    scores: str  # what the processors transform: "logits", or "log-probs" (beam search)
    stages: list[Stage]
    not_applied: list[str]  # the labels of the processors declared but not applied by this run

    def to_dict(self) -> dict:
        return {"model": self.model, "prompt_ids": self.prompt_ids, "run": self.run, "name": self.run_name,
                "strategy": self.strategy, "step": self.step, "steps": self.steps,
                "token": {"id": self.token_id, "token": self.token}, "sequence": self.sequence,
                "scores": self.scores, "stages": [s.to_dict() for s in self.stages], "not_applied": self.not_applied}


def processes_logprobs(s: DecodeSettings) -> bool:
    """Whether generate() hands the processors log-softmax rather than logits: its beam searches do."""
    return s.runner.keeps_beams


# runs whose choice is not the last of the processors' stages, and why: their strategy scores the tokens again
# after the processors, with what the run's own path does not tell
NOT_REPLAYED = {
    "group_beam_search": "diverse beam search lowers each group's tokens by what the other groups chose at the same "
                         "step, which the returned path alone does not tell",
    "contrastive_decoding": "contrastive decoding chooses by the expert's log-prob minus an amateur model's, a score "
                            "it computes after the processors",
    "contrastive_decoding_beam_search": "contrastive decoding chooses by the expert's log-prob minus an amateur "
                                        "model's, a score it computes after the processors",
}


# generate() never reorders classifier-free guidance's unconditional branch with the beams, so a beam's
# branch holds other beams' tokens, which the returned path alone does not tell
GUIDED_BEAMS = ("classifier-free guidance's unconditional branch in beam search follows the rows, not the beams "
                "(generate() never reorders it), which the returned path alone does not tell")


def _not_replayed(s: DecodeSettings) -> str | None:
    if s.mode in NOT_REPLAYED:
        return NOT_REPLAYED[s.mode]
    if s.is_beam and s.guidance_scale != 1.0:
        return GUIDED_BEAMS
    return None


def replayable(s: DecodeSettings) -> bool:
    return _not_replayed(s) is None


def check_replayable(s: DecodeSettings) -> None:
    """One sentence for a run whose choice the processors' stages alone do not give."""
    if (why := _not_replayed(s)) is not None:
        raise InvalidSetting(f"The pipeline cannot be shown for {s.name()}: {why}; pick another run.")


def which_sequence(s: DecodeSettings) -> str:
    if s.runner.keeps_beams:
        return ("the best returned hypothesis: at each step, the beam it descends from (generate()'s beam_indices), "
                "whose input is the prompt and the hypothesis's tokens so far")
    if not s.runner.returns_one_sequence and s.num_return_sequences > 1:
        return f"the first of its {s.num_return_sequences} sequences"
    return "its sequence"


def check_position(runs: int, run: int, steps: int | None = None, step: int | None = None, name: str = "") -> None:
    """One sentence when `run` or `step` (counted from 0) lies outside the line-up or the run."""
    if isinstance(run, bool) or not isinstance(run, int) or not 0 <= run < runs:
        raise InvalidSetting(f"run={run!r} is not a run of this line-up: its {runs} run(s) are numbered from 0 to "
                             f"{runs - 1}.")
    if steps is not None and (isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < steps):
        if steps == 0:
            raise InvalidSetting(f"Run {run} ({name}) generated no token, so it has no step to show.")
        raise InvalidSetting(f"step={step!r} is not a step of run {run} ({name}): its {steps} step(s) are numbered "
                             f"from 0 to {steps - 1}.")


def pipeline_at(pg: Playground, prompt: str, runs: list[DecodeSettings], run: int, step: int, *, top_n: int = 10,
                result: DecodeResult | None = None) -> Pipeline:
    """Step `step` of run `run` (both from 0) of the line-up `runs` on `prompt`, stage by stage.

    `result` is the line-up's decode when the caller has it (the page shares Compare's); else it is decoded
    here, as `compare` decodes it, so the run is the very one Compare shows."""
    if pg.remote:
        raise InvalidSetting("The pipeline needs the model's weights in this process, and the vLLM backend gives "
                             "only what its server returns; decode in this process to see it.")
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= MAX_TOP_N:
        raise InvalidSetting(f"top_n (tokens listed per stage) must be from 1 to {MAX_TOP_N}, got {top_n!r}.")
    check_position(len(runs), run)
    settings = runs[run]
    check_replayable(settings)
    if result is None:
        result = pg.compare(prompt, runs)
    trace = result.runs[run]
    seq = trace.best
    check_position(len(runs), run, len(seq.steps), step, trace.name)
    chosen = seq.ids[step]
    stages = stages_at(pg, result.prompt_ids + seq.ids[:step], settings, chosen, top_n=top_n,
                       prompt_len=len(result.prompt_ids))
    applied = {st.processor for st in stages}
    return Pipeline(result.model, result.prompt_ids, run, trace.name, settings.strategy, step, len(seq.steps),
                    chosen, pg.token_text(chosen), which_sequence(settings),
                    "log-probs" if processes_logprobs(settings) else "logits", stages,
                    [p.label for p in ordered() if p.name not in applied and _could_apply(p, settings)])


def _could_apply(p: Processor, s: DecodeSettings) -> bool:
    """Whether `p` could act in this run, were its settings on: a warper needs sampling, and a processor
    a strategy builds itself (`build` None) belongs to that strategy."""
    return (s.do_sample or not p.sampling_only) and p.build is not None


@torch.inference_mode()
def stages_at(pg: Playground, ids: list[int], settings: DecodeSettings, chosen: int, *, top_n: int = 10,
              prompt_len: int | None = None) -> list[Stage]:
    """The distribution after each stage for the next token after `ids` (the prompt's and the path's ids,
    as the run's processors saw them at that step), `chosen` being the token the run took there.
    `prompt_len` (default: all of `ids`) is where the prompt ends, for the processors that count new tokens
    (min_new_tokens, the length decay) or start a branch of their own (classifier-free guidance)."""
    x = torch.tensor([ids], device=pg.lm.device)
    logits = pg.lm.all_logits(x)[:, -1].float()  # (1, V)
    scores = F.log_softmax(logits, dim=-1) if processes_logprobs(settings) else logits
    stages = [_stage(pg, None, settings, None, scores, chosen, top_n)]
    context = RunContext(x.device, len(ids) if prompt_len is None else prompt_len, pg.facts.eos_token_ids,
                         TokenTexts(pg.tokenizer, x.device), pg.lm)
    for name, proc in build_processors(settings, context):
        # a copy in: a processor may write into the scores it is given, and the stage before must stay as it was
        new = proc(x, scores.clone())
        stages.append(_stage(pg, PROCESSORS[name], settings, scores, new, chosen, top_n))
        scores = new
    return stages


def _stage(pg, p: Processor | None, s, before: torch.Tensor | None, after: torch.Tensor, chosen: int,
           top_n: int) -> Stage:
    row = after[0]
    lp = F.log_softmax(row, dim=-1)
    probs = lp.exp()
    kept = int(torch.isfinite(row).sum())
    top_p, top_ids = probs.topk(min(top_n, kept))
    top = [StageToken(i, pg.token_text(i), pr) for i, pr in zip(top_ids.tolist(), top_p.tolist())]
    stage = Stage(
        name=RAW if p is None else (p.knobs[0] if p.knobs else p.name), processor="" if p is None else p.name,
        label=RAW if p is None else p.applied_label(s), does=RAW if p is None else p.does, acted=p is None,
        did="the model's own distribution" + (" (log-softmax of its logits)" if processes_logprobs(s) else ""),
        kept=kept, entropy=float(entropy(lp, probs)), chosen_prob=float(probs[chosen]),
        chosen_rank=int((lp > lp[chosen]).sum()) + 1, chosen_score=float(row[chosen]), top=top, probs=probs.cpu())
    if p is not None:
        _effect(pg, stage, p, s, before[0], row)
    return stage


def _effect(pg, stage: Stage, p: Processor, s, before: torch.Tensor, after: torch.Tensor) -> None:
    """What the processor did, read off the scores before and after it (not from what it is declared to do,
    so a processor that did nothing at this step says so)."""
    was = torch.isfinite(before)
    changed = (after != before) & was
    removed = was & ~torch.isfinite(after)
    count = int(changed.sum())
    stage.acted = count > 0
    if not stage.acted:
        stage.did = "does nothing at this step"
        return
    stage.changed = count
    if p.does == RESHAPES and count == int(was.sum()):
        stage.did = f"reshapes every token's score ({p.applied_label(s)})"
        return
    ids = changed.nonzero().flatten()
    ids = ids[before[ids].argsort(descending=True, stable=True)][:MAX_LISTED].tolist()
    stage.changed_ids, stage.changed_tokens = ids, [pg.token_text(i) for i in ids]
    gone = int(removed.sum())
    verb = "cut" if p.does == CUTS else "banned" if p.does == BANS and p.removes else \
        (p.verb or "changed by").removesuffix(" by")
    stage.counted = f"{verb} {count:,} token{'s' if count != 1 else ''}"
    if gone and gone != count:
        stage.counted += f" ({gone:,} of them removed)"
    stage.removed = gone
    stage.did = stage.counted + (f", keeps {stage.kept:,}" if gone else "")
