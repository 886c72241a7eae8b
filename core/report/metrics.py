"""The report's figures on fixed texts and ids: perplexity, Self-BLEU-4, Zipf, loops, repeated n-grams,
distinct-n and length, each with its interval. Pure functions, so the tests recompute them independently."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from core.decoding.trace import distinct_n, repeated_ngrams

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
ZIPF_TOP_RANKS = 5000  # as the paper's code: the fit runs over the 5,000 most frequent tokens at most
LOOP_MAX_PERIOD = 20
LOOP_MIN_PERIODS = 3
LOOP_MIN_TOKENS = 6
HUMAN = "human"

RULES = {
    "perplexity": "exp(-mean raw log-prob per token) over all continuation tokens of all samples pooled; "
                  "human continuations are scored given their prompt, as generated ones are",
    "self_bleu4": "sacrebleu 2.6 sentence BLEU-4 (default 13a tokenisation of the decoded text, exp smoothing, "
                  "effective order) of each sample against the strategy's samples of the OTHER prompts as "
                  "references (human: the other passages), averaged; with a single prompt, against all its other "
                  "samples, which measures sample diversity and is not comparable with the human row; "
                  "scale 0-1 (sacrebleu's score / 100); needs 2 samples or more",
    "zipf": "minus the slope of a least-squares line through (log rank, log frequency) of the pooled token ids, "
            f"top {ZIPF_TOP_RANKS} ranks",
    "repetition_rate": f"share of samples whose last L tokens repeat with a period of k tokens (1 <= k <= "
                       f"{LOOP_MAX_PERIOD}) where L >= {LOOP_MIN_PERIODS}k and L >= {LOOP_MIN_TOKENS}",
    "distinct_n": "unique n-grams / n-grams within each sample, averaged over samples",
    "repeated_3grams": "share of each sample's 3-grams that repeat an earlier one in it, averaged over samples",
    "mean_length": "generated tokens per sample",
    "spread": f"low/high: 95% percentile bootstrap interval ({BOOTSTRAP_RESAMPLES} resamples of the samples, "
              f"seed {BOOTSTRAP_SEED}); for zipf a jackknife interval (leave one sample out, estimate +- 1.96 SE); "
              "none when there is one sample",
    "human": "held-out continuations (or pasted text), cut to max_new_tokens tokens",
    "seeds": "run i of the line-up on prompt p draws from its own generator seeded seed + p x runs + i "
             "(counted round past 2^32 - 1 to 0)",
}
METRICS = ("perplexity", "self_bleu4", "zipf", "repetition_rate", "distinct_1", "distinct_2", "distinct_3",
           "repeated_3grams", "mean_length")
TABLE_METRICS = ("perplexity", "self_bleu4", "zipf", "repetition_rate", "distinct_2", "mean_length")


# results ---------------------------------------------------------------------------------------------
@dataclass
class Spread:
    mean: float | None  # None: not defined here (Self-BLEU of a single sample)
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict:
        return {k: clean(v) for k, v in asdict(self).items()}


@dataclass
class Sample:
    prompt_index: int | None  # which report prompt it continues; None: a human passage of its own
    ids: list[int]
    text: str
    token_logprobs: list[float]  # raw
    finish_reason: str

    def to_dict(self) -> dict:
        return {"prompt_index": self.prompt_index, "ids": self.ids, "text": self.text,
                "finish_reason": self.finish_reason,
                "perplexity": clean(_perplexity([self.token_logprobs])), "ends_in_loop": ends_in_loop(self.ids)}


@dataclass
class StrategyReport:
    name: str
    spec: str  # the line-up syntax of the run ("human" for human text)
    samples: list[Sample]
    metrics: dict[str, Spread]
    finish_reasons: dict[str, int]

    @property
    def is_human(self) -> bool:
        return self.spec == HUMAN

    def to_dict(self) -> dict:
        return {"name": self.name, "spec": self.spec, "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
                "finish_reasons": self.finish_reasons, "samples": [s.to_dict() for s in self.samples]}


def clean(value):
    """NaN/inf -> None, so JSON stays valid and 'not defined' reads as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# metrics on fixed texts and ids (pure functions: the tests recompute them independently) --------------
def self_bleu4(texts: list[str], groups: list | None = None) -> list[float]:
    """Each text's sentence BLEU-4 against the others as references, on a 0-1 scale.

    With `groups` (the prompt each sample continues) spanning two or more values, a text's references
    are the texts of the OTHER groups, as in Holtzman et al. (one generation per context): samples of
    one prompt share its names and scene, which would read as a lack of diversity. With one group (one
    prompt) the references are all the other texts.

    Exactly sacrebleu's `BLEU(effective_order=True).sentence_score(text, references)` (13a tokenisation,
    exp smoothing), but each group's n-grams are counted once: the best count of an n-gram over the
    other groups is the top group count unless this text's group holds it, then the second. N^2
    sacrebleu calls took 2 s for 100 samples; this takes milliseconds."""
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.helpers import extract_all_word_ngrams
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    if len(texts) < 2:
        return []
    if groups is None or len(set(groups)) < 2:
        groups = list(range(len(texts)))
    bleu = BLEU(effective_order=True)
    tokenize = Tokenizer13a()  # BLEU's default tokenisation, applied as BLEU does to a segment
    grams, lengths = zip(*(extract_all_word_ngrams(tokenize(t.rstrip()), 1, bleu.max_ngram_order)
                           for t in texts))
    per_group: dict = {}
    for g, counts in zip(groups, grams):
        merged = per_group.setdefault(g, Counter())
        for gram, c in counts.items():
            merged[gram] = max(merged[gram], c)
    best: dict[tuple, list] = {}  # n-gram -> [top count, its group, second count]
    for g, counts in per_group.items():
        for gram, c in counts.items():
            top = best.setdefault(gram, [0, None, 0])
            if c > top[0]:
                top[:] = [c, g, top[0]]
            elif c > top[2]:
                top[2] = c
    scores = []
    for i, counts in enumerate(grams):
        correct, total = [0] * bleu.max_ngram_order, [0] * bleu.max_ngram_order
        for gram, c in counts.items():
            top = best[gram]
            total[len(gram) - 1] += c
            correct[len(gram) - 1] += min(c, top[2] if top[1] == groups[i] else top[0])
        ref_len = closest_length(lengths[i], [n for j, n in enumerate(lengths) if groups[j] != groups[i]])
        score = BLEU.compute_bleu(correct, total, lengths[i], ref_len, smooth_method=bleu.smooth_method,
                                  smooth_value=bleu.smooth_value, effective_order=True)
        scores.append(score.score / 100)
    return scores


def closest_length(length: int, ref_lengths: list[int]) -> int:
    """BLEU's effective reference length: the reference length closest to the hypothesis', the shorter
    on a tie (as sacrebleu and multi-bleu do)."""
    return min(ref_lengths, key=lambda ref: (abs(ref - length), ref))


def rank_frequency(counts) -> np.ndarray:
    """Frequencies sorted from the most frequent down, zeros dropped, top ZIPF_TOP_RANKS."""
    freqs = np.sort(np.asarray(list(counts.values()) if isinstance(counts, dict) else counts, dtype=float))[::-1]
    return freqs[freqs > 0][:ZIPF_TOP_RANKS]


def zipf_coefficient(counts) -> float:
    """s in frequency ~ rank^-s: minus the least-squares slope of log frequency on log rank (as Holtzman
    et al.'s code). NaN with fewer than two distinct tokens."""
    freqs = rank_frequency(counts)
    if len(freqs) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(np.arange(1, len(freqs) + 1)), np.log(freqs), 1)
    return float(-slope)


def ends_in_loop(ids: list[int]) -> bool:
    """Does the sample end in a repeating loop? True when its last L tokens repeat with some period k
    (ids[i] == ids[i - k] throughout them), 1 <= k <= LOOP_MAX_PERIOD, covering at least LOOP_MIN_PERIODS
    periods and LOOP_MIN_TOKENS tokens. A last copy cut short by max_new_tokens still counts (only the
    period matters), so `A B C A B C A B C A B` is a loop; `! ! !` (3 tokens) is not."""
    n = len(ids)
    for k in range(1, min(LOOP_MAX_PERIOD, n // LOOP_MIN_PERIODS) + 1):
        run = 0
        while run < n - k and ids[n - 1 - run] == ids[n - 1 - run - k]:
            run += 1
        length = run + k
        if length >= max(LOOP_MIN_PERIODS * k, LOOP_MIN_TOKENS):
            return True
    return False


def repeated_share(ids: list[int], n: int) -> float:
    grams = len(ids) - n + 1
    return repeated_ngrams(ids, n) / grams if grams > 0 else 0.0


def _perplexity(logprob_lists: list[list[float]]) -> float:
    tokens = sum(len(lps) for lps in logprob_lists)
    return math.exp(-sum(sum(lps) for lps in logprob_lists) / tokens) if tokens else float("nan")


# spreads: one set of bootstrap resamples per strategy, shared by its metrics ---------------------------
def _resamples(n: int) -> np.ndarray:
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _mean_spread(values: list[float], idx: np.ndarray | None) -> Spread:
    if not values:
        return Spread(None)
    arr = np.asarray(values, dtype=float)
    if idx is None or len(arr) != idx.shape[1]:
        idx = _resamples(len(arr)) if len(arr) > 1 else None
    return Spread(float(arr.mean()), *(_interval(arr[idx].mean(1)) if idx is not None else (None, None)))


def _perplexity_spread(samples: list[Sample], idx: np.ndarray | None) -> Spread:
    sums = np.array([sum(s.token_logprobs) for s in samples])
    counts = np.array([len(s.token_logprobs) for s in samples], dtype=float)
    mean = _perplexity([s.token_logprobs for s in samples])
    if idx is None:
        return Spread(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.exp(-sums[idx].sum(1) / counts[idx].sum(1))
    return Spread(mean, *_interval(boot))


def _zipf_spread(samples: list[Sample]) -> Spread:
    """Zipf of the pooled counts, with a jackknife interval (leave one sample out, mean +- 1.96 SE).

    Not the bootstrap: a resample repeats whole samples, which turns count-1 tokens into count-2 ones and
    steepens the fit, so the bootstrap interval sat beside the estimate rather than around it."""
    pooled = Counter(i for s in samples for i in s.ids)
    mean = zipf_coefficient(pooled)
    if len(samples) < 2 or not math.isfinite(mean):
        return Spread(mean)
    leave_out = np.array([zipf_coefficient(pooled - Counter(s.ids)) for s in samples])
    leave_out = leave_out[np.isfinite(leave_out)]
    n = len(leave_out)
    if n < 2:
        return Spread(mean)
    se = math.sqrt((n - 1) / n * float(((leave_out - leave_out.mean()) ** 2).sum()))
    return Spread(mean, mean - 1.96 * se, mean + 1.96 * se)


def measure(samples: list[Sample]) -> dict[str, Spread]:
    """Every figure of the report for one strategy's samples (or the human passages)."""
    idx = _resamples(len(samples)) if len(samples) > 1 else None
    groups = [s.prompt_index if s.prompt_index is not None else ("passage", k) for k, s in enumerate(samples)]
    bleu = self_bleu4([s.text for s in samples], groups)
    out = {
        "perplexity": _perplexity_spread(samples, idx),
        "self_bleu4": _mean_spread(bleu, idx),
        "zipf": _zipf_spread(samples),
        "repetition_rate": _mean_spread([float(ends_in_loop(s.ids)) for s in samples], idx),
    }
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = _mean_spread([distinct_n(s.ids, n) for s in samples], idx)
    out["repeated_3grams"] = _mean_spread([repeated_share(s.ids, 3) for s in samples], idx)
    out["mean_length"] = _mean_spread([float(len(s.ids)) for s in samples], idx)
    return out


def strategy_report(name: str, spec: str, samples: list[Sample]) -> StrategyReport:
    return StrategyReport(name, spec, samples, measure(samples), dict(Counter(s.finish_reason for s in samples)))
