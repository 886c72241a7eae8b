"""Making a report: every prompt decoded as one batch, the human passages scored, every figure computed."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field

from core import limits
from core.decoding import lineup as lineup_syntax
from core.decoding.settings import DEFAULT_MAX_NEW_TOKENS, DecodeSettings, offset_seed
from core.errors import InvalidSetting
from core.report.human import Passage, human_passages, score_human
from core.report.metrics import HUMAN, METRICS, RULES, Sample, StrategyReport, clean, strategy_report

# limits: a report is many rows at once, so it has its own budget (rows x new tokens over all prompts)
MAX_PROMPTS = 20
MAX_HUMAN = 300  # human passages scored
# batch rows x new tokens, summed over the prompts: the command line's default (5 prompts x 131 rows x 64
# tokens = 42k) took 3.8 min on the shipped model on 2 busy CPU cores (load 5, 1 torch thread)
ROW_TOKEN_BUDGET = 100_000

DEFAULT_SAMPLES = 20
DEFAULT_PROMPT_COUNT = 5  # the command line's default prompt set: the first held-out passages
# the paper's rows (Holtzman et al. 2020, Table 1); sampling runs set top_k=0 unless top-k is the point
DEFAULT_LINEUP = ("greedy;beam(num_beams=5);beam(num_beams=5,no_repeat_ngram_size=2);sample(top_k=0);"
                  "sample(temperature=0.7,top_k=0);sample(top_k=40);sample(top_k=640);"
                  "sample(top_k=0,top_p=0.95);sample(top_k=0,typical_p=0.95)")


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
                row[key], row[f"{key}_low"], row[f"{key}_high"] = clean(s.mean), clean(s.low), clean(s.high)
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


def report_lineup(spec: str, *, samples: int, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """The line-up (app syntax) with every sampling run drawing `samples` rows, run i seeded seed + i."""
    check_samples(samples)
    runs = lineup_syntax.parse_lineup(spec, max_new_tokens=max_new_tokens, seed=seed)
    if not runs:
        raise InvalidSetting("The line-up is empty: give at least one run, e.g. greedy;sample(top_k=0).")
    return [s.replace(num_return_sequences=samples) if s.do_sample else s for s in runs]  # seeds: parse_lineup


def check_samples(samples) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= limits.MAX_SAMPLES:
        raise InvalidSetting(f"Samples per strategy must be a whole number from 1 to {limits.MAX_SAMPLES}, got {samples!r}.")


def check_request(prompts: list[Passage], runs: list[DecodeSettings], human_count: int | None = None) -> None:
    """Refuse, in one sentence naming the limit, a report that is empty or over its budget."""
    check_prompts(prompts, human_count)
    rows = sum(s.rows for s in runs)
    tokens = max(s.max_new_tokens for s in runs)
    cost = rows * tokens * len(prompts)
    if cost > ROW_TOKEN_BUDGET:
        raise InvalidSetting(
            f"This report needs {rows} rows x {tokens} new tokens x {len(prompts)} prompt(s) = {cost:,} row-tokens "
            f"but a report may use at most {ROW_TOKEN_BUDGET:,}; lower the samples per strategy, max new tokens, "
            "the number of prompts or of runs.")


def check_prompts(prompts: list[Passage], human_count: int | None = None) -> None:
    """Refuse, in one sentence, no prompt, too many, an empty one, or a human count out of range."""
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


def decode_prompt(pg, prompt: str, runs: list[DecodeSettings], on_step=None, max_runs: int = limits.MAX_RUNS):
    """All runs on one prompt as one batch after one prefill. A report has more rows than an
    interactive request (N per sampling run), so it asks for the report's row limit (and a sweep,
    whose points are runs, for more runs than a line-up)."""
    result = pg.compare(prompt, runs, top_n=1, on_step=on_step, max_rows=limits.MAX_REPORT_ROWS, max_runs=max_runs)
    return result.runs, result.notices


def as_written(s: DecodeSettings) -> DecodeSettings:
    """The run as the line-up gives it: sampling runs without the report's num_return_sequences=N."""
    return s.replace(num_return_sequences=1) if s.do_sample else s


def prompt_seeds(runs: list[DecodeSettings], prompt_index: int, stride: int | None = None) -> list[DecodeSettings]:
    """Run i on prompt p draws from seed + p x len(runs) + i (prompt 0: the line-up's own seed + i), counted
    round past MAX_SEED to 0 (`offset_seed`). A sweep's points keep their base run's seed, so its `stride`
    is the number of base runs.

    One stream per run shared by every prompt coupled the prompts' samples: the same uniforms drawn from
    similar distributions picked the same tokens, and once two samples agreed they stayed together
    (pure sampling's Self-BLEU across prompts read 0.49 against human text's 0.08)."""
    step = len(runs) if stride is None else stride
    return [s.replace(seed=offset_seed(s.seed, prompt_index * step)) for s in runs]


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
    pg.check_budget(runs, prompts=len(prompts), max_rows=limits.MAX_REPORT_ROWS)  # every model the runs use
    n = max((s.num_return_sequences for s in runs if s.do_sample), default=1)
    if human_count is None:
        human_count = min(MAX_HUMAN, n * len(prompts))
    started = time.perf_counter()
    per_run: list[list[Sample]] = [[] for _ in runs]
    notices, longest = [], max(s.max_new_tokens for s in runs)
    traces_of_first = None
    for pi, p in enumerate(prompts):
        step_cb = _progress(on_step, pg, pi * longest, len(prompts) * longest) if on_step is not None else None
        traces, cut = decode_prompt(pg, p.prompt, prompt_seeds(runs, pi), step_cb)
        notices += [f"Prompt {pi + 1}: {note}" for note in cut]
        traces_of_first = traces_of_first or traces
        for k, trace in enumerate(traces):
            per_run[k] += [Sample(pi, q.ids, q.text, q.token_logprobs, q.finish_reason) for q in trace.sequences]
    strategies = [strategy_report(run_name(s), lineup_syntax.run_spec(as_written(s)), per_run[k])
                  for k, s in enumerate(runs)]
    human_row, human_samples = human_report(pg, prompts, human, human_count, longest)
    figure = figure1_data(pg, prompts[0].prompt, runs, traces_of_first, human_samples)
    lineup = lineup_syntax.lineup_spec([as_written(s) for s in runs])
    return Report(pg.label, pg.device, [p.prompt for p in prompts], lineup, n, longest, runs[0].seed, strategies,
                  human_row, figure, notices, time.perf_counter() - started)


def human_report(pg, prompts: list[Passage], heldout: list[Passage] | None, count: int,
                 max_new_tokens: int) -> tuple[StrategyReport | None, list[Sample]]:
    """The human row (None without passages) and its samples: `count` passages, those given with the
    prompts first, each cut to max_new_tokens tokens and scored given its own prompt."""
    passages = human_passages(prompts, heldout if heldout is not None else [], count)
    samples = score_human(pg, passages, max_new_tokens)
    return (strategy_report("human text", HUMAN, samples) if samples else None), samples


def _progress(on_step, pg, done_before: int, total: int):
    """The engine's per-step callback for one prompt, as the report's progress over all prompts."""
    return lambda step, ids: on_step(done_before + step + 1, total, [pg.text(i) for i in ids])


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
