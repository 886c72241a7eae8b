"""What a decoding run leaves behind: per-token and per-step records, the beam tree, and the figures.

Two distributions appear everywhere and are never mixed up:
- "raw": softmax of the model's logits, before any processor;
- "processed": the scores the strategy actually chose from, after the processors. For greedy and
  sampling that is softmax of the processed logits (what is sampled from); for beam search it is
  generate()'s beam scores: log_softmax, then the processors (a banned token gets -inf, nothing is
  renormalised), so a beam's score is the sum of its processed log-probs.
Field names say which: `prob` / `logprob` / `rank` are raw, `processed_*` are processed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields

FINISH_REASONS = {
    "eos": "ended with <|endoftext|>",
    "max_new_tokens": "stopped at max new tokens",
    "context": "stopped at the model's context limit",
    "stop_string": "stopped at a stop string",
}

DISTRIBUTIONS = {
    "prob": "raw: softmax of the model's logits before any processor",
    "logprob": "raw: log of `prob`",
    "processed_prob": "processed: the distribution the strategy chose from, after its processors",
    "processed_logprob": "processed: log of `processed_prob` (beam search: its unnormalised beam score step)",
}


@dataclass
class Candidate:
    id: int
    token: str
    prob: float  # raw
    processed_prob: float | None  # 0.0 when a processor removed it; None: not known


@dataclass
class Step:
    index: int  # 0 = first generated token
    id: int  # the chosen token
    token: str
    logprob: float  # raw log-prob of the chosen token
    processed_logprob: float | None  # None: this backend cannot give it (vLLM without the whole vocabulary)
    rank: int | None  # 1 = the raw distribution's most likely token; None: below the top-N a backend gave
    processed_rank: int | None
    entropy: float | None  # raw distribution, nats; None without the whole distribution
    processed_entropy: float | None
    top: list[Candidate]  # the raw distribution's top-N, each with its processed probability
    kept: dict[str, int]  # tokens left after each processor declared to cut (top_k, top_p, min_p, ...)
    banned: dict[str, list[int]]  # ids each processor declared to ban hit (no_repeat_ngram, repetition_penalty, ...)
    curve: list[tuple[int, float]]  # raw sorted cumulative-probability curve: exact (rank, mass) points
    banned_tokens: dict[str, list[str]] = field(default_factory=dict)  # the banned ids as text
    # assisted decoding: True = proposed by the draft and accepted by the target, False = the target's own
    # token (in place of a rejected draft, or after the last accepted one); None: not an assisted run
    drafted: bool | None = None
    # the full processed log-prob vector (V,), only when asked for (keep_distributions); not exported
    distribution: object = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        # field by field: asdict() would deep-copy the distribution tensor only to drop it
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "distribution"}
        out["top"] = [asdict(c) for c in self.top]
        if self.drafted is None:  # only assisted runs' steps say it
            del out["drafted"]
        return out


@dataclass(frozen=True)
class SequenceFigures:
    """A sequence's summary figures (raw log-probs unless named processed)."""
    sequence_logprob: float
    processed_sequence_logprob: float | None  # None: the backend could not give every processed log-prob
    mean_logprob: float
    perplexity: float  # nan for an empty sequence
    distinct_1: float
    distinct_2: float
    distinct_3: float
    repeated_2grams: int
    repeated_3grams: int

    def to_dict(self) -> dict:
        """The nested shape the command line's JSON and the exports have always had."""
        return {
            "sequence_logprob": self.sequence_logprob,
            "processed_sequence_logprob": self.processed_sequence_logprob,
            "mean_logprob": self.mean_logprob,
            "perplexity": self.perplexity,
            "distinct": {"distinct_1": self.distinct_1, "distinct_2": self.distinct_2, "distinct_3": self.distinct_3},
            "repeated_ngrams": {"2-grams": self.repeated_2grams, "3-grams": self.repeated_3grams},
        }


@dataclass
class Sequence:
    ids: list[int]  # generated ids only
    text: str
    steps: list[Step]
    finish_reason: str  # "eos", "max_new_tokens", "context", or a stopping criterion's name ("stop_string")
    beam_score: float | None = None  # beam search: generate()'s sequences_scores (length-penalised)
    finish_detail: str | None = None  # what the stopping criterion met: the stop string

    @property
    def finished(self) -> str:
        """Why it ended, in words, naming the stop string where one ended it."""
        if self.finish_detail is not None:
            from core.decoding.stopping import CRITERIA

            if self.finish_reason in CRITERIA:
                return CRITERIA[self.finish_reason].finished(self.finish_detail)
        return FINISH_REASONS.get(self.finish_reason, self.finish_reason)

    @property
    def token_logprobs(self) -> list[float]:
        return [s.logprob for s in self.steps]

    @property
    def sequence_logprob(self) -> float:
        """Seed 004's sequence_logprob: the raw log-probs of the generated tokens, summed."""
        return float(sum(self.token_logprobs))

    def figures(self) -> SequenceFigures:
        n = len(self.steps)
        mean = self.sequence_logprob / n if n else 0.0
        return SequenceFigures(
            sequence_logprob=self.sequence_logprob,
            # None where a backend could not give the processed distribution (the vLLM backend, partly)
            processed_sequence_logprob=None if any(s.processed_logprob is None for s in self.steps)
            else float(sum(s.processed_logprob for s in self.steps)),
            mean_logprob=mean,
            perplexity=math.exp(-mean) if n else float("nan"),
            distinct_1=distinct_n(self.ids, 1), distinct_2=distinct_n(self.ids, 2), distinct_3=distinct_n(self.ids, 3),
            repeated_2grams=repeated_ngrams(self.ids, 2), repeated_3grams=repeated_ngrams(self.ids, 3),
        )

    def to_dict(self) -> dict:
        return {
            "ids": self.ids,
            "text": self.text,
            "token_logprobs": self.token_logprobs,
            "processed_token_logprobs": [s.processed_logprob for s in self.steps],
            **self.figures().to_dict(),
            "finish_reason": self.finish_reason,
            "finish_detail": self.finish_detail,
            "beam_score": self.beam_score,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass
class BeamNode:
    id: int  # unique within the run
    step: int
    parent: int | None  # None: child of the prompt
    token_id: int
    token: str
    score: float  # cumulative processed log-prob of the beam up to and including this token
    status: str  # "kept" (continues), "finished" (a hypothesis), "pruned"
    finished_score: float | None = None  # length-penalised score, when finished
    group: int = 0  # diverse beam search: the group the beam belongs to


@dataclass
class DraftCheck:
    """Assisted decoding: one forward pass of the target over drafted tokens."""
    index: int  # 0 = the first check
    first_token: int  # the generated token (index) this check's first kept token became
    drafted: list[int]
    drafted_tokens: list[str]
    accepted: int  # the first `accepted` drafted tokens were kept
    token: int  # the target's own token after them: in place of the rejected draft, or a bonus after the last
    token_text: str
    rejected: int | None  # drafted[accepted], when the target did not keep every drafted token
    rejected_text: str | None
    draft_probs: list[float]  # the draft's processed probability of each drafted token it got to (prompt lookup: [])
    target_probs: list[float]  # the target's processed probability of the same tokens


@dataclass
class Speculation:
    """Assisted decoding, check by check: what was drafted, kept and put instead."""
    source: str  # the draft model, or "prompt lookup"
    checks: list[DraftCheck]
    target_forwards: int
    draft_forwards: int

    @property
    def drafted(self) -> int:
        return sum(len(c.drafted) for c in self.checks)

    @property
    def accepted(self) -> int:
        return sum(c.accepted for c in self.checks)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted drafted tokens / drafted tokens (None when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else None

    def acceptance_by_position(self) -> list[tuple[int, int, int]]:
        """(position in the draft, checks that drafted a token there, of which accepted): a token at
        position j is accepted only if every one before it was."""
        longest = max((len(c.drafted) for c in self.checks), default=0)
        return [(j, sum(len(c.drafted) > j for c in self.checks), sum(c.accepted > j for c in self.checks))
                for j in range(longest)]

    def to_dict(self) -> dict:
        return {"source": self.source, "target_forwards": self.target_forwards, "draft_forwards": self.draft_forwards,
                "drafted": self.drafted, "accepted": self.accepted, "acceptance_rate": self.acceptance_rate,
                "acceptance_by_position": [{"position": j, "drafted": d, "accepted": a}
                                           for j, d, a in self.acceptance_by_position()],
                "checks": [asdict(c) for c in self.checks]}


@dataclass
class RunTrace:
    strategy: str
    name: str
    params: dict
    sequences: list[Sequence]  # best first
    beam_tree: list[BeamNode] | None = None
    notices: list[str] = field(default_factory=list)
    target_forwards: int | None = None  # forward passes of the model that gave this run logits (prefill included)
    seconds: float | None = None  # its decoding's wall time; a batched run shares its batch's
    speculation: Speculation | None = None  # assisted decoding only

    @property
    def tokens_per_forward(self) -> float | None:
        return len(self.best.ids) / self.target_forwards if self.target_forwards else None

    @property
    def best(self) -> Sequence:
        return self.sequences[0]

    def to_dict(self) -> dict:
        best = self.best.to_dict()
        return {
            "strategy": self.strategy,
            "name": self.name,
            "params": self.params,
            # the best sequence's fields at the top level: the command line's JSON contract
            **best,
            "sequences": [s.to_dict() for s in self.sequences] if len(self.sequences) > 1 else None,
            "beam_tree": [asdict(n) for n in self.beam_tree] if self.beam_tree is not None else None,
            "target_forwards": self.target_forwards,
            **({"speculation": self.speculation.to_dict()} if self.speculation is not None else {}),
        }


def distinct_n(ids: list[int], n: int) -> float:
    """Unique n-grams / all n-grams of the sequence (1.0 = no repetition); 0.0 when too short."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngrams(ids: list[int], n: int) -> int:
    """How many n-gram occurrences repeat an earlier one."""
    counts = Counter(tuple(ids[i:i + n]) for i in range(len(ids) - n + 1))
    return sum(c - 1 for c in counts.values() if c > 1)
