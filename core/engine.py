"""One step loop for every strategy: prefill once, then decode all runs of a line-up as one batch.

The engine knows nothing about tokenization: it takes prompt ids and returns ids and numbers
(`RawRun`); `core.playground` turns them into traces with text.

Each run owns a contiguous block of batch rows (1 for greedy, num_beams for beam search,
num_return_sequences for sampling). Every step each run reads its rows' logits, picks its next tokens
and says which old row each new row continues; the engine then reorders the model state once for the
whole batch (dropping the rows of runs that finished) and runs one forward pass.

Greedy and sampling follow transformers' `_sample`, beam search its vectorised `_beam_search`
(transformers 5.x), operation for operation, so the tokens match `model.generate()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from core.errors import PlaygroundError
from core.lm import ModelFacts, StepModel
from core.settings import DecodeSettings

# Processors whose effect is recorded as a list of token ids (few); the others as a count of survivors.
BANNING = ("no_repeat_ngram", "repetition_penalty")
MAX_BANNED_LISTED = 20
CURVE_BUCKET_NATS = 0.5  # width of the log-prob buckets behind the cumulative curve
CURVE_BUCKETS = 60  # down to log p = -30 nats; the last bucket takes the rest


def build_processors(s: DecodeSettings) -> list[tuple[str, object]]:
    """transformers' own processors, in generate()'s order: penalties, then the sampling warpers."""
    procs: list[tuple[str, object]] = []
    if s.repetition_penalty != 1.0:
        procs.append(("repetition_penalty", RepetitionPenaltyLogitsProcessor(s.repetition_penalty)))
    if s.no_repeat_ngram_size > 0:
        procs.append(("no_repeat_ngram", NoRepeatNGramLogitsProcessor(s.no_repeat_ngram_size)))
    if s.do_sample:
        if s.temperature != 1.0:
            procs.append(("temperature", TemperatureLogitsWarper(s.temperature)))
        if s.top_k != 0:
            procs.append(("top_k", TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1)))
        if s.top_p < 1.0:
            procs.append(("top_p", TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1)))
        if s.min_p is not None:
            procs.append(("min_p", MinPLogitsWarper(min_p=s.min_p, min_tokens_to_keep=1)))
        if s.typical_p < 1.0:
            procs.append(("typical_p", TypicalLogitsWarper(mass=s.typical_p, min_tokens_to_keep=1)))
    return procs


@dataclass
class RawStep:
    """One generated token of one sequence, with its row's view of the distributions (numbers only)."""
    id: int
    logprob: float
    processed_logprob: float
    rank: int
    processed_rank: int
    entropy: float
    processed_entropy: float
    top_ids: list[int]
    top_probs: list[float]
    top_processed_probs: list[float]
    kept: dict[str, int]
    banned: dict[str, list[int]]
    curve: list[tuple[int, float]]
    distribution: torch.Tensor | None = None  # processed log-probs (V,), only with keep_distributions


@dataclass
class RawSequence:
    steps: list[RawStep]
    finish_reason: str
    beam_score: float | None = None

    @property
    def ids(self) -> list[int]:
        return [s.id for s in self.steps]


@dataclass
class RawBeamNode:
    id: int
    step: int
    parent: int | None
    token_id: int
    score: float
    status: str
    finished_score: float | None = None


@dataclass
class RawRun:
    settings: DecodeSettings
    sequences: list[RawSequence]
    beam_tree: list[RawBeamNode] | None = None


class _RowStats:
    """Per-step statistics of a block of rows, computed once per step and looked up per token later."""

    def __init__(self, raw_logprobs, processed_logprobs, kept, banned, top_n, keep_distributions):
        probs = raw_logprobs.exp()
        top_lp, self.top_ids = raw_logprobs.topk(top_n, dim=-1)
        self.top_probs = top_lp.exp()
        self.entropy = torch.special.entr(probs).sum(-1)
        if processed_logprobs is raw_logprobs:  # no processor changed anything: skip the copies
            self.top_processed, self.processed_entropy = self.top_probs, self.entropy
        else:
            self.top_processed = processed_logprobs.gather(1, self.top_ids).exp()
            self.processed_entropy = torch.special.entr(F.softmax(processed_logprobs, dim=-1)).sum(-1)
        self.curve_ranks, self.curve_mass = cumulative_curve(raw_logprobs, probs)
        self.kept = kept  # name -> (R,) counts
        self.banned = banned  # name -> list (per row) of id lists
        self.distributions = processed_logprobs.cpu() if keep_distributions else None
        self.host: dict | None = None

    def to_host(self):
        if self.host is None:  # one device->host copy per step, made only when a trace is assembled
            self.host = {
                "top_ids": self.top_ids.tolist(), "top_probs": self.top_probs.tolist(),
                "top_processed": self.top_processed.tolist(), "entropy": self.entropy.tolist(),
                "processed_entropy": self.processed_entropy.tolist(),
                "curve_ranks": self.curve_ranks.tolist(), "curve_mass": self.curve_mass.tolist(),
                "kept": {k: v.tolist() for k, v in self.kept.items()},
            }
        return self.host


def cumulative_curve(raw_logprobs: torch.Tensor, probs: torch.Tensor):
    """Exact points of the sorted cumulative-probability curve, without sorting the vocabulary.

    Tokens are bucketed by raw log-prob (CURVE_BUCKET_NATS wide); after bucket b the curve has passed
    exactly count(log p >= edge_b) tokens holding mass(log p >= edge_b). A full sort would cost ~4 ms
    a row per step on a CPU; this costs a scatter. Returns (R, B) ranks and (R, B) cumulative mass.
    """
    rows = raw_logprobs.shape[0]
    bucket = (-raw_logprobs / CURVE_BUCKET_NATS).clamp_(0, CURVE_BUCKETS - 1).long()
    counts = torch.zeros(rows, CURVE_BUCKETS, device=probs.device).scatter_add_(1, bucket, torch.ones_like(probs))
    mass = torch.zeros(rows, CURVE_BUCKETS, device=probs.device).scatter_add_(1, bucket, probs)
    return counts.cumsum(-1), mass.cumsum(-1)


def _apply_processors(processors, input_ids, scores):
    """Run the processors one by one, recording what each removed or down-weighted."""
    kept: dict[str, torch.Tensor] = {}
    banned: dict[str, list[list[int]]] = {}
    for name, proc in processors:
        new = proc(input_ids, scores)
        if name in BANNING:
            changed = (new != scores) & torch.isfinite(scores)
            banned[name] = [row.nonzero().flatten()[:MAX_BANNED_LISTED].tolist() for row in changed]
        elif name != "temperature":
            kept[name] = torch.isfinite(new).sum(-1)
        scores = new
    return scores, kept, banned


def _chosen_figures(raw_lp, proc_lp, ids):
    """Log-probs and 1-based ranks of the chosen ids under both distributions. ids: (R,)."""
    col = ids[:, None]
    raw = raw_lp.gather(1, col)
    proc = proc_lp.gather(1, col)
    return (raw.squeeze(1), proc.squeeze(1),
            (raw_lp > raw).sum(-1) + 1, (proc_lp > proc).sum(-1) + 1)


class _Run:
    """A run's rows in the batch. `advance` picks next tokens; `done` says its rows can be dropped."""

    def __init__(self, settings: DecodeSettings, prompt: torch.Tensor, facts: ModelFacts,
                 max_new_tokens: int, top_n: int, keep_distributions: bool):
        self.settings = settings
        self.rows = settings.rows
        self.sequences = prompt.expand(self.rows, -1).clone()  # (R, T): what the processors see
        self.prompt_len = prompt.shape[1]
        self.facts = facts
        self.max_new_tokens = max_new_tokens
        self.top_n = min(top_n, facts.vocab_size)
        self.keep_distributions = keep_distributions
        self.processors = build_processors(settings)
        self.stats: list[_RowStats] = []  # one per step
        self.done = False
        self.eos = torch.tensor(facts.eos_token_ids, dtype=torch.long, device=prompt.device)

    def _raw_step(self, stats: _RowStats, row: int, token_id: int, figures) -> RawStep:
        host = stats.to_host()
        lp, plp, rank, prank = figures
        return RawStep(
            id=token_id, logprob=lp, processed_logprob=plp, rank=rank, processed_rank=prank,
            entropy=host["entropy"][row], processed_entropy=host["processed_entropy"][row],
            top_ids=host["top_ids"][row], top_probs=host["top_probs"][row],
            top_processed_probs=host["top_processed"][row],
            kept={k: v[row] for k, v in host["kept"].items()},
            banned={k: v[row] for k, v in stats.banned.items()},
            curve=_curve_points(host["curve_ranks"][row], host["curve_mass"][row]),
            distribution=stats.distributions[row] if stats.distributions is not None else None,
        )


class _SingleRun(_Run):
    """Greedy or sampling: each row continues itself (transformers' `_sample`)."""

    def __init__(self, *args, forced_ids: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = None
        if self.settings.do_sample:
            self.generator = torch.Generator(device=self.sequences.device)
            self.generator.manual_seed(self.settings.seed)
        self.forced = forced_ids
        self.unfinished = torch.ones(self.rows, dtype=torch.bool, device=self.sequences.device)
        self.records: list[tuple] = []  # per step: (live rows, chosen ids, chosen-token figures)
        self.finish = ["max_new_tokens"] * self.rows

    def advance(self, logits):
        step = len(self.stats)
        raw_lp = F.log_softmax(logits, dim=-1)
        scores, kept, banned = _apply_processors(self.processors, self.sequences, logits)
        proc_lp = raw_lp if scores is logits else F.log_softmax(scores, dim=-1)
        if self.forced is not None:
            next_ids = torch.full((self.rows,), self.forced[step], device=logits.device)
        elif self.settings.do_sample:
            probs = F.softmax(scores, dim=-1)
            next_ids = torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(1)
        else:
            next_ids = torch.argmax(scores, dim=-1)
        live = self.unfinished.clone()
        if self.facts.pad_token_id is not None and len(self.eos):
            # as generate(): rows that already finished keep receiving the pad token
            next_ids = torch.where(live, next_ids, self.facts.pad_token_id)
        self.stats.append(_RowStats(raw_lp, proc_lp, kept, banned, self.top_n, self.keep_distributions))
        figures = torch.stack([f.float() for f in _chosen_figures(raw_lp, proc_lp, next_ids)], -1)
        self.records.append((live, next_ids, figures))
        self.sequences = torch.cat([self.sequences, next_ids[:, None]], dim=-1)
        if len(self.eos):
            hit_eos = torch.isin(next_ids, self.eos) & live
            for row in hit_eos.nonzero().flatten().tolist():
                self.finish[row] = "eos"
            self.unfinished &= ~hit_eos
        self.done = step + 1 >= self.max_new_tokens or not bool(self.unfinished.any())
        return next_ids, torch.arange(self.rows, device=logits.device)

    def result(self) -> RawRun:
        sequences = []
        steps_per_row: list[list[RawStep]] = [[] for _ in range(self.rows)]
        for step, (live, next_ids, figs) in enumerate(self.records):
            live, ids, figs = live.tolist(), next_ids.tolist(), figs.tolist()
            for row in range(self.rows):
                if live[row]:
                    lp, plp, rank, prank = figs[row]
                    steps_per_row[row].append(self._raw_step(
                        self.stats[step], row, ids[row], (lp, plp, int(rank), int(prank))))
        for row in range(self.rows):
            sequences.append(RawSequence(steps_per_row[row], self.finish[row]))
        return RawRun(self.settings, sequences)


@dataclass
class _Hypothesis:
    """A beam's path: per step (row at that step, token, chosen-token figures), and its tree node."""
    path: list[tuple[int, int, tuple]] = field(default_factory=list)
    node: int | None = None


class _BeamRun(_Run):
    """Beam search, ported from transformers 5.x `_beam_search` for one prompt (batch_size 1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        device = self.sequences.device
        self.num_beams = s.num_beams
        n_eos = len(self.facts.eos_token_ids)
        self.beams_to_keep = max(2, 1 + n_eos) * self.num_beams
        self.top_num_beam_mask = torch.cat((torch.ones(self.num_beams, dtype=torch.bool),
                                            torch.zeros(self.beams_to_keep - self.num_beams,
                                                        dtype=torch.bool))).to(device)
        self.max_length = self.prompt_len + self.max_new_tokens
        self.cur_len = self.prompt_len
        # only beam 0 is live at first, so the identical prompt rows do not all pick the same token
        self.running_scores = torch.zeros((1, self.num_beams), dtype=torch.float, device=device)
        self.running_scores[:, 1:] = -1e9
        self.running = [_Hypothesis() for _ in range(self.num_beams)]
        self.beam_scores = torch.full((1, self.num_beams), -1e9, dtype=torch.float, device=device)
        self.finished: list[_Hypothesis | None] = [None] * self.num_beams
        self.is_sent_finished = torch.zeros((1, self.num_beams), dtype=torch.bool, device=device)
        self.heuristic_unsatisfied = torch.ones((1, 1), dtype=torch.bool, device=device)
        self.tree: list[RawBeamNode] = []

    def advance(self, logits):
        s = self.settings
        step = len(self.stats)
        vocab = logits.shape[-1]
        raw_lp = F.log_softmax(logits, dim=-1)
        proc_lp, kept, banned = _apply_processors(self.processors, self.sequences, raw_lp)
        self.stats.append(_RowStats(raw_lp, proc_lp, kept, banned, self.top_n, self.keep_distributions))

        accumulated = (proc_lp + self.running_scores[0, :, None]).reshape(1, -1)  # (1, beams * V)
        topk_log_probs, topk_indices = torch.topk(accumulated, k=self.beams_to_keep)
        source_beam = topk_indices // vocab  # (1, K)
        topk_ids = topk_indices % vocab
        src, ids = source_beam[0], topk_ids[0]
        candidates = torch.cat([self.sequences[src], ids[:, None]], dim=-1)  # (K, T + 1)

        hits = torch.isin(ids, self.eos) if len(self.eos) else torch.zeros_like(ids, dtype=torch.bool)
        hits = (hits | (self.cur_len + 1 >= self.max_length))[None, :]  # (1, K)

        # e. the best num_beams unfinished candidates keep running
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
        next_topk = torch.topk(topk_running_log_probs, k=self.num_beams)[1]
        next_running_scores = torch.take_along_dim(topk_running_log_probs, next_topk, dim=1)

        # f. candidates among the top num_beams that finished join the finished hypotheses
        did_finish = hits & self.top_num_beam_mask[None, :]
        fin_lp = topk_log_probs / ((self.cur_len + 1 - self.prompt_len) ** s.length_penalty)
        beams_full = torch.all(self.is_sent_finished, axis=-1, keepdims=True) & (s.early_stopping is True)
        fin_lp += beams_full.to(torch.float32) * -1.0e9
        fin_lp += (~self.heuristic_unsatisfied).to(torch.float32) * -1.0e9
        fin_lp += (~did_finish) * -1.0e9
        merged_scores = torch.cat((self.beam_scores, fin_lp), dim=1)
        merged_finished = torch.cat((self.is_sent_finished, did_finish), dim=1)
        keep_merged = torch.topk(merged_scores, k=self.num_beams)[1]

        # trace: each candidate's token figures, its tree node, and which hypothesis it extends
        raw_c, proc_c, rank_c, prank_c = _chosen_figures(raw_lp[src], proc_lp[src], ids)
        figs = torch.stack([raw_c, proc_c, rank_c.float(), prank_c.float()], -1).tolist()
        src_l, ids_l, scores_l = src.tolist(), ids.tolist(), topk_log_probs[0].tolist()
        next_l, keep_l = next_topk[0].tolist(), keep_merged[0].tolist()
        fin_l, hits_l, stopped_l = fin_lp[0].tolist(), did_finish[0].tolist(), hits[0].tolist()
        cand_hyps = []
        for k in range(self.beams_to_keep):
            parent = self.running[src_l[k]]
            lp, plp, rank, prank = figs[k]
            node_id = len(self.tree)
            finished_here = (self.num_beams + k) in keep_l and hits_l[k]
            # a candidate that hit EOS or the length limit never continues, even when generate() keeps
            # it in a running slot (with a -1e9 score) for want of better ones
            if finished_here:
                status = "finished"
            elif k in next_l and not stopped_l[k]:
                status = "kept"
            else:
                status = "pruned"
            self.tree.append(RawBeamNode(node_id, step, parent.node, ids_l[k], scores_l[k], status,
                                         fin_l[k] if finished_here else None))
            cand_hyps.append(_Hypothesis(parent.path + [(src_l[k], ids_l[k], (lp, plp, int(rank), int(prank)))],
                                         node_id))
        merged_hyps = self.finished + cand_hyps
        self.finished = [merged_hyps[i] for i in keep_l]
        self.beam_scores = torch.take_along_dim(merged_scores, keep_merged, dim=1)
        self.is_sent_finished = torch.take_along_dim(merged_finished, keep_merged, dim=1)

        self.running = [cand_hyps[i] for i in next_l]
        self.running_scores = next_running_scores
        rows = src[next_topk[0]]  # old row each new running beam continues
        self.sequences = candidates[next_topk[0]]

        # g. stopping: can a running beam still beat the worst finished one?
        self.cur_len += 1
        if s.early_stopping == "never" and s.length_penalty > 0.0:
            best_len = self.max_length - self.prompt_len
        else:
            best_len = self.cur_len - self.prompt_len
        best_possible = self.running_scores[:, :1] / (best_len ** s.length_penalty)
        worst_finished = torch.where(self.is_sent_finished,
                                     torch.min(self.beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        self.heuristic_unsatisfied = self.heuristic_unsatisfied & torch.any(
            best_possible > worst_finished, dim=-1, keepdim=True)
        improvement_possible = bool(self.heuristic_unsatisfied.any())
        exists_open_beam = not (bool(self.is_sent_finished.all()) and s.early_stopping is True)
        valid_continuations = not bool(hits.all())
        self.done = not (improvement_possible and exists_open_beam and valid_continuations)
        return self.sequences[:, -1], rows

    def result(self) -> RawRun:
        scores = self.beam_scores[0].tolist()
        sequences = []
        for hyp, score in zip(self.finished[: self.settings.num_return_sequences], scores):
            steps = [self._raw_step(self.stats[i], row, token, figs)
                     for i, (row, token, figs) in enumerate(hyp.path)]
            last = hyp.path[-1][1]
            reason = "eos" if last in self.facts.eos_token_ids else "max_new_tokens"
            sequences.append(RawSequence(steps, reason, beam_score=score))
        return RawRun(self.settings, sequences, beam_tree=self.tree)


def _curve_points(ranks: list[float], mass: list[float]) -> list[tuple[int, float]]:
    """(rank, cumulative mass) pairs, empty buckets dropped."""
    points, last = [], 0
    for r, m in zip(ranks, mass):
        if r > last:
            points.append((int(r), m))
            last = r
    return points


StepCallback = Callable[[int, list[list[int]]], None]


@torch.inference_mode()
def decode_batch(lm: StepModel, prompt_ids: list[int], runs: list[DecodeSettings], *,
                 top_n: int = 10, keep_distributions: bool = False,
                 forced_ids: list[int] | None = None, on_step: StepCallback | None = None) -> list[RawRun]:
    """Decode every run on one prompt: one prefill, then one forward pass per step for all rows.

    Settings must already be validated and prompt + max_new_tokens must fit the context
    (`core.playground` sees to both). `forced_ids` makes a single greedy/sample run follow the given
    tokens instead of choosing (to read the distributions along a fixed path). `on_step(step, ids)`
    is called after every step with each run's best ids so far.
    """
    device = lm.device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    try:
        logits, state = lm.prefill(prompt)  # (1, V)
        objs = []
        for s in runs:
            cls = _BeamRun if s.is_beam else _SingleRun
            extra = {"forced_ids": forced_ids} if forced_ids is not None and cls is _SingleRun else {}
            max_new = min(s.max_new_tokens, lm.facts.context_length - len(prompt_ids))
            objs.append(cls(s, prompt, lm.facts, max_new, top_n, keep_distributions, **extra))
        total = sum(o.rows for o in objs)
        state = lm.select_rows(state, torch.zeros(total, dtype=torch.long, device=device))
        logits = logits.expand(total, -1)
        active, step = objs, 0
        while active:
            next_ids, sources, still, offset = [], [], [], 0
            for run in active:
                ids, rows = run.advance(logits[offset: offset + run.rows])
                if not run.done:
                    next_ids.append(ids)
                    sources.append(rows + offset)
                    still.append(run)
                offset += run.rows
            if on_step is not None:
                on_step(step, [_best_so_far(o) for o in objs])
            step += 1
            if not still:
                break
            rows = torch.cat(sources)
            if rows.shape[0] != offset or not torch.equal(rows, torch.arange(offset, device=device)):
                state = lm.select_rows(state, rows)
            logits, state = lm.step(torch.cat(next_ids)[:, None], state)
            active = still
    except torch.OutOfMemoryError as exc:
        rows = sum(s.rows for s in runs)
        raise PlaygroundError(
            f"Out of memory while decoding {rows} rows; lower num_beams, num_return_sequences or "
            "max_new_tokens, or choose a smaller model.") from exc
    return [o.result() for o in objs]


def _best_so_far(run: _Run) -> list[int]:
    if isinstance(run, _BeamRun):
        return [token for _, token, _ in run.running[0].path]
    return run.sequences[0, run.prompt_len:].tolist()


def state_bytes_estimate(facts: ModelFacts, rows: int, total_len: int) -> int:
    """Memory a batch of `rows` needs: its state at full length plus a few (rows, V) float buffers."""
    return rows * total_len * facts.state_bytes_per_token + rows * facts.vocab_size * 4 * 8
