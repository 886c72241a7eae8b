"""What every strategy shares: the contract (`Strategy`), what a run returns (`RawRun`), and the
per-step statistics a trace is made of. The logits processors are declared in `core.decoding.processors`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, NamedTuple

import torch
import torch.nn.functional as F

from core.decoding import stopping
from core.decoding.knobs import Knob, Runs, Settings
from core.decoding.processors import RunContext, build_processors
from core.models.lm import ModelFacts, StepModel

CURVE_BUCKET_NATS = 0.5  # width of the log-prob buckets behind the cumulative curve
CURVE_BUCKETS = 60  # down to log p = -30 nats; the last bucket takes the rest


class Chosen(NamedTuple):
    """The chosen token's log-prob and 1-based rank under the raw and under the processed distribution."""
    logprob: float
    processed_logprob: float
    rank: int
    processed_rank: int


class ChosenRows(NamedTuple):
    """`Chosen` for a block of rows, as tensors (R,) still on the model's device."""
    logprob: torch.Tensor
    processed_logprob: torch.Tensor
    rank: torch.Tensor
    processed_rank: torch.Tensor

    def to_host(self) -> list[Chosen]:
        """One `Chosen` per row, in one device->host copy."""
        table = torch.stack([f.float() for f in self], -1).tolist()
        return [Chosen(lp, plp, int(rank), int(prank)) for lp, plp, rank, prank in table]


@dataclass
class RawStep:
    """One generated token of one sequence, with its row's view of the distributions (numbers only).
    `None` where a backend other than this process cannot know the figure (vLLM without the whole vocabulary)."""
    id: int
    logprob: float
    processed_logprob: float | None
    rank: int | None
    processed_rank: int | None
    entropy: float | None
    processed_entropy: float | None
    top_ids: list[int]
    top_probs: list[float]
    top_processed_probs: list[float | None]
    kept: dict[str, int]
    banned: dict[str, list[int]]
    curve: list[tuple[int, float]]
    distribution: torch.Tensor | None = None  # processed log-probs (V,), only with keep_distributions
    drafted: bool | None = None  # assisted decoding: proposed by the draft and accepted (False: the target's own)


@dataclass
class RawSequence:
    steps: list[RawStep]
    finish_reason: str
    beam_score: float | None = None
    finish_detail: str | None = None  # what a stopping criterion met (the stop string), with its finish reason

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
    group: int = 0  # diverse beam search: the group of beams the candidate belongs to


@dataclass
class RawRun:
    settings: Settings
    sequences: list[RawSequence]
    beam_tree: list[RawBeamNode] | None = None
    target_forwards: int | None = None  # forward passes of the model that gave this run logits (prefill included)
    seconds: float | None = None  # wall time of its decoding (a batched run: the whole batch's, shared)
    speculation: object | None = None  # assisted decoding: `strategies.assisted.Speculation`, check by check


class RawRows(NamedTuple):
    """This step's figures of the raw distribution for a block of rows. None of them depends on a run's
    processors, so the engine computes them once per step for the whole batch (`raw_figures`) and gives
    each run its rows (`Strategy.raw`); a run without them computes its own."""
    logprobs: torch.Tensor  # (R, V) log_softmax of the logits
    top_ids: torch.Tensor  # (R, n) the top-N, most likely first
    top_probs: torch.Tensor  # (R, n)
    entropy: torch.Tensor  # (R,) nats
    curve_ranks: torch.Tensor  # (R, B) the cumulative curve's points (`cumulative_curve`)
    curve_mass: torch.Tensor  # (R, B)

    def rows(self, block) -> "RawRows":
        """The figures of rows `block` (a slice: views, no copy)."""
        return RawRows(*(f[block] for f in self))

    def expand(self, rows: int) -> "RawRows":
        """One row's figures as `rows` identical rows (views, no copy): the prompt's, for every run."""
        return RawRows(*(f.expand(rows, *f.shape[1:]) for f in self))


def raw_figures(logits: torch.Tensor, top_n: int) -> RawRows:
    """The raw distribution's figures for every row of `logits` (R, V): one pass of each operation
    over all rows, however many runs they belong to."""
    return figures_of_logprobs(F.log_softmax(logits, dim=-1), top_n)


def figures_of_logprobs(logprobs: torch.Tensor, top_n: int) -> RawRows:
    probs = logprobs.exp()
    top_lp, top_ids = logprobs.topk(min(top_n, logprobs.shape[-1]), dim=-1)
    ranks, mass = cumulative_curve(logprobs, probs)
    return RawRows(logprobs, top_ids, top_lp.exp(), entropy(logprobs, probs), ranks, mass)


def entropy(logprobs: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Nats, per row: -sum p log p from the log-probs already at hand. torch.special.entr takes the log of
    every probability again, element by element: 4-5x slower on this CPU (1.5 ms against 0.3 ms for 16 rows
    of GPT-2's vocabulary). A token a processor removed (log p = -inf, p = 0) adds 0 (nansum: 0 x -inf);
    a row the model gave NaN stays NaN, as entr would leave it."""
    return torch.where(logprobs.sum(-1).isnan(), float("nan"), -(probs * logprobs).nansum(-1))


class RowStats:
    """Per-step statistics of a block of rows, computed once per step and looked up per token later.
    `raw`: the rows' `RawRows` (or their raw log-probs, from which they are computed here).
    `unnormalised`: the processed log-probs are beam search's, which transformers does not renormalise (a
    bias or a penalty moves them); the processed entropy is then the distribution's they make. Everyone
    else's are a log_softmax already."""

    def __init__(self, raw, processed_logprobs, kept, banned, top_n, keep_distributions, *, unnormalised=False):
        if isinstance(raw, torch.Tensor):
            raw = figures_of_logprobs(raw, top_n)
        self.top_ids, self.top_probs, self.entropy = raw.top_ids, raw.top_probs, raw.entropy
        self.curve_ranks, self.curve_mass = raw.curve_ranks, raw.curve_mass
        if processed_logprobs is raw.logprobs:  # no processor changed anything: skip the copies
            self.top_processed, self.processed_entropy = self.top_probs, self.entropy
        else:
            self.top_processed = processed_logprobs.gather(1, self.top_ids).exp()
            normalised = F.log_softmax(processed_logprobs, dim=-1) if unnormalised else processed_logprobs
            self.processed_entropy = entropy(normalised, normalised.exp())
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


def chosen_figures(raw_lp, proc_lp, ids) -> ChosenRows:
    """Log-probs and 1-based ranks of the chosen ids under both distributions. ids: (R,). When no
    processor changed anything (`proc_lp is raw_lp`) the figures are computed once."""
    col = ids[:, None]
    raw = raw_lp.gather(1, col)
    rank = (raw_lp > raw).sum(-1) + 1
    if proc_lp is raw_lp:
        return ChosenRows(logprob=raw.squeeze(1), processed_logprob=raw.squeeze(1), rank=rank, processed_rank=rank)
    proc = proc_lp.gather(1, col)
    return ChosenRows(logprob=raw.squeeze(1), processed_logprob=proc.squeeze(1),
                      rank=rank, processed_rank=(proc_lp > proc).sum(-1) + 1)


def curve_points(ranks: list[float], mass: list[float]) -> list[tuple[int, float]]:
    """(rank, cumulative mass) pairs, empty buckets dropped."""
    points, last = [], 0
    for r, m in zip(ranks, mass):
        if r > last:
            points.append((int(r), m))
            last = r
    return points


class Strategy:
    """One decoding strategy: a run's block of batch rows, advanced one step at a time.

    What a class declares (read before any run, from the settings alone):
    - `strategy`: the name a user picks (`--strategy beam`, a line-up's `beam(...)`);
    - `settings`: the settings it introduces, `{name: Knob}` (`core.decoding.knobs`), which become fields
      of `DecodeSettings`, flags, URL and line-up names; `reads`: settings declared elsewhere it also
      reads (so `generate_kwargs()` passes them);
    - `claims(settings)`: whether it runs these settings (default: the strategy name matches), and its
      `precedence` where several classes claim them;
    - `describe(settings)`: the parts of the run's human name; `check(settings)`: rules tying its
      settings together (one sentence each); `processors(settings, device)`: `(name, processor)` pairs
      it adds after those its mode applies, each name declared in `core.decoding.processors`;
    - `samples` (generate()'s do_sample), `keeps_beams`, `returns_one_sequence`; `in_generate`: whether
      generate() runs it (a recipe says how else to reproduce a run it cannot call);
    - `rows_needed(settings)`: how many batch rows the run occupies while decoding;
    - `needs_hidden_states`: whether `advance` needs the model's last-layer hidden states;
    - `other_models(settings)`: the models besides the playground's that a run uses, `{setting: name}`
      (by default every setting of kind "model" it declares or reads that is set): the playground loads
      each once per process, counts its rows in the request's budget, and the run gets them as
      `self.other_lms[setting]` (`StepModel`s on the same device, sharing the model's tokenizer);
      `contrasts_with`: those of its settings whose model must differ from the run's own (a method that
      sets one model against another learns nothing from a model set against itself);
    - `backends`: `{backend: Runs}`, the backends other than this process that can run it, and how
      (`core.decoding.knobs.Runs`); a class inherits none, see `runs_on`.

    What a run does (the engine knows nothing else about a strategy):
    - `advance(logits, hidden)`: logits (R, V) in float32 for its rows (and hidden (R, T, H) for the
      positions the last forward pass added, when asked) -> (next_ids (R,), source_rows (R,)): the token
      each row is fed next and the old row (0..R-1) each new row continues. It sets `done` when its rows
      can be dropped; the ids it returns on that step are not fed;
    - `best_so_far()`: the best sequence's generated ids so far (for streaming);
    - `result()`: the `RawRun`, once done.
    A run asks its stopping criteria (`self.stops`, `stopping.met`) after each token, as generate() does.
    A class is registered under generate()'s mode name (`@register("beam_search")`).
    """

    strategy: ClassVar[str] = ""
    settings: ClassVar[dict[str, Knob]] = {}
    reads: ClassVar[tuple[str, ...]] = ()
    contrasts_with: ClassVar[tuple[str, ...]] = ()
    precedence: ClassVar[int] = 0
    samples: ClassVar[bool] = False
    keeps_beams: ClassVar[bool] = False
    returns_one_sequence: ClassVar[bool] = True
    needs_hidden_states: ClassVar[bool] = False
    follows_forced_ids: ClassVar[bool] = False  # accepts forced_ids (a fixed token path)
    in_generate: ClassVar[bool] = True  # generate() has this mode, so a recipe can call it
    # runs its own loop over the model (`decode_alone(lm, on_step)`) beside the batch, instead of `advance`
    # one token per batch step: assisted decoding, whose checks take a variable number of tokens
    decodes_alone: ClassVar[bool] = False
    backends: ClassVar[dict[str, Runs]] = {}
    mode: ClassVar[str]  # set by @register

    @classmethod
    def claims(cls, settings: Settings) -> bool:
        return settings.strategy == cls.strategy

    @classmethod
    def describe(cls, settings: Settings) -> list[str]:
        return [cls.strategy]

    @classmethod
    def check(cls, settings: Settings) -> None:
        pass

    @classmethod
    def processors(cls, settings: Settings, device) -> list[tuple[str, object]]:
        return []

    @classmethod
    def rows_needed(cls, settings: Settings) -> int:
        return 1

    @classmethod
    def other_models(cls, settings: Settings) -> dict[str, str]:
        from core.decoding.strategies import REGISTRY  # the registry, not the settings: no import circle

        declared = {name: k for c in REGISTRY.values() for name, k in c.settings.items()}
        return {name: getattr(settings, name) for name in (*cls.settings, *cls.reads)
                if name in declared and declared[name].kind == "model" and getattr(settings, name) is not None}

    @classmethod
    def runs_on(cls, backend: str) -> Runs | None:
        """How `backend` runs this class, as the class itself declares it: a subclass reuses its
        parent's code but not its declaration, since a server would run the parent's method instead."""
        return vars(cls).get("backends", {}).get(backend)

    def __init__(self, settings: Settings, prompt: torch.Tensor, facts: ModelFacts,
                 max_new_tokens: int, top_n: int, keep_distributions: bool, *,
                 other_lms: Mapping[str, StepModel] | None = None, context: RunContext | None = None):
        self.settings = settings
        self.other_lms = dict(other_lms or {})  # setting -> the model it names (`other_models`)
        self.rows = self.rows_needed(settings)
        self.sequences = prompt.expand(self.rows, -1).clone()  # (R, T): what the processors see
        self.prompt_len = prompt.shape[1]
        self.facts = facts
        self.max_new_tokens = max_new_tokens
        self.top_n = min(top_n, facts.vocab_size)
        self.keep_distributions = keep_distributions
        # what the processors and stopping criteria that need more than the settings are built with
        context = context or RunContext(prompt.device, self.prompt_len, facts.eos_token_ids)
        self.processors = build_processors(settings, context)
        self.stops = stopping.build_stops(settings, context)
        self.stats: list[RowStats] = []  # one per step
        self.done = False
        self.eos = torch.tensor(facts.eos_token_ids, dtype=torch.long, device=prompt.device)
        self.shared_raw: RawRows | None = None  # the engine's raw figures for this step's rows (`raw`)

    def advance(self, logits: torch.Tensor, hidden: torch.Tensor | None = None):
        raise NotImplementedError

    def raw(self, logits: torch.Tensor) -> RawRows:
        """This step's raw figures for the rows of `logits` (the run's block, as `advance` got it): those
        the engine computed for the whole batch and left in `shared_raw` before calling `advance`, else
        computed here. A strategy that needs them for a part of its rows slices them (`RawRows.rows`)."""
        shared, self.shared_raw = self.shared_raw, None
        if shared is not None and shared.logprobs.shape == logits.shape:
            return shared
        return raw_figures(logits, self.top_n)

    def best_so_far(self) -> list[int]:
        return self.sequences[0, self.prompt_len:].tolist()

    def result(self) -> RawRun:
        raise NotImplementedError



def raw_step(stats: RowStats, row: int, token_id: int, chosen: Chosen) -> RawStep:
    """One token's `RawStep` from its step's statistics, row `row`, and the chosen token's figures."""
    host = stats.to_host()
    return RawStep(
        id=token_id, logprob=chosen.logprob, processed_logprob=chosen.processed_logprob, rank=chosen.rank,
        processed_rank=chosen.processed_rank,
        entropy=host["entropy"][row], processed_entropy=host["processed_entropy"][row],
        top_ids=host["top_ids"][row], top_probs=host["top_probs"][row],
        top_processed_probs=host["top_processed"][row],
        kept={k: v[row] for k, v in host["kept"].items()},
        banned={k: v[row] for k, v in stats.banned.items()},
        curve=curve_points(host["curve_ranks"][row], host["curve_mass"][row]),
        distribution=stats.distributions[row] if stats.distributions is not None else None,
    )
