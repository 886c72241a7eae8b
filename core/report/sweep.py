"""Sweeps: one knob over a range of values on a base run, N samples per point on the report's prompts,
every point with the report's figures and their intervals, beside the same human text.

One setting per method decides little (the min-p debate turned on which temperature and threshold each
side picked); a curve over the knob's range says more. A sweep is written `name=start:stop:count`
(`count` evenly spaced values from start to stop) or `name=v1,v2,...`. The knobs a sweep may take are
derived from the settings' declarations (`sweepable`), so a setting a new processor or strategy declares
joins by itself.

Every point is a run: the base run (pure sampling, `sample(top_k=0)`, unless the caller gives a line-up)
with the knob set to the value and N samples. All points are decoded together, one batch per prompt as
long as their rows fit (`limits.MAX_REPORT_ROWS`), since the engine runs any line-up as one batch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field

from core import limits
from core.decoding import lineup as lineup_syntax
from core.decoding.knobs import Knob, check_knob, num
from core.decoding.settings import KNOBS, DecodeSettings, offset_seed
from core.errors import InvalidSetting, quote
from core.report.human import Passage
from core.report.metrics import METRICS, RULES, StrategyReport, clean, Sample, strategy_report
from core.report.run import (MAX_HUMAN, ROW_TOKEN_BUDGET, as_written, check_prompts, decode_prompt, human_report,
                             report_lineup, run_name)

DEFAULT_BASE = "sample(top_k=0)"  # pure sampling: every other knob at its default, top-k off
MAX_VALUES = 20  # values of one knob
MAX_SWEEPS = 6  # knobs swept in one request
MAX_SPEC_CHARS = 200  # one sweep as written
MAX_NUMBER_CHARS = 40
NUMERIC = ("int", "float", "optional_float")
# what a sweep sets itself, for every point alike: they are the request's, not a method's
OWN = ("seed", "max_new_tokens", "num_return_sequences")
SWEEP_RULES = {
    "sweep": "each point is the base run with the knob set to its value and N samples per prompt; every figure "
             "as in the report, over the point's samples of all prompts",
    "sweep_seeds": "a point draws from its base run's streams (base run i on prompt p: seed + p x base runs + i), "
                   "the same at every value of the knob, so neighbouring points differ by the knob rather than by "
                   "the draw; points whose settings are equal are decoded once",
}


def sweepable() -> dict[str, Knob]:
    """The settings a sweep may take: those declared as numbers with both ends of their range (a bound may
    be a model fact, such as the vocabulary size), except the request's own (seed, length, samples)."""
    return {name: k for name, k in KNOBS.items()
            if k.kind in NUMERIC and k.low is not None and k.high is not None and name not in OWN}


@dataclass(frozen=True)
class SweepSpec:
    """One knob and the values it takes, in the order given."""
    knob: str
    values: tuple

    def text(self) -> str:
        return f"{self.knob}={','.join(value_label(v) for v in self.values)}"


def value_label(value) -> str:
    """A swept value as people write it: 1.0, 0.06, 40."""
    return num(value) if isinstance(value, float) else str(value)


def _number(spec: str, name: str, k: Knob, text: str):
    text = text.strip()
    whole = k.kind == "int"
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidSetting(f"The sweep {quote(spec)} has a value of {len(text)} characters; numbers are shorter.")
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise InvalidSetting(f"The sweep {quote(spec)} gives {name} the value {quote(text)}, which is not {kind}.") \
            from None
    if not whole and not math.isfinite(value):
        raise InvalidSetting(f"The sweep {quote(spec)} gives {name} the value {quote(text)}; give a finite number.")
    return value


def _evenly(start, stop, count: int, whole: bool) -> list:
    """`count` values from start to stop inclusive; floats rounded to 12 significant digits (0.6, not
    0.6000000000000001), whole numbers to the nearest."""
    values = [start + (stop - start) * i / (count - 1) for i in range(count)]
    return [int(round(v)) for v in values] if whole else [float(f"{v:.12g}") for v in values]


def check_value(name: str, value, facts: dict | None = None) -> None:
    """`value` against the knob's declared range (one sentence). Without the model's `facts`, a bound that
    is a model fact (the vocabulary size) is left out: the runs are checked against the model before
    decoding anyway."""
    k = KNOBS[name]
    if facts is None and any(isinstance(b, str) for b in (k.low, k.high)):
        k = dataclasses.replace(k, low=None if isinstance(k.low, str) else k.low,
                                high=None if isinstance(k.high, str) else k.high, hint="")
        if k.low is None:
            return
    check_knob(name, value, k, facts or {})


def parse_sweep(text: str, facts: dict | None = None) -> SweepSpec:
    """`name=start:stop:count` or `name=v1,v2,...` -> SweepSpec; one sentence on anything wrong, the values
    checked against the knob's range."""
    if not isinstance(text, str):
        raise InvalidSetting(f"A sweep is text such as top_p=0.5:1.0:6, got {text!r}.")
    spec = text.strip()
    if len(spec) > MAX_SPEC_CHARS:
        raise InvalidSetting(f"A sweep has {len(spec):,} characters; at most {MAX_SPEC_CHARS} are accepted.")
    name, eq, rest = spec.partition("=")
    name = name.strip()
    if not eq or not rest.strip():
        raise InvalidSetting(f"The sweep {quote(spec)} is malformed: write name=start:stop:count (e.g. "
                             "top_p=0.5:1.0:6) or name=v1,v2 (a list of values).")
    knobs = sweepable()
    if name not in knobs:
        what = "is a setting with no range to sweep" if name in KNOBS else "names no setting"
        raise InvalidSetting(f"The sweep {quote(spec)} {what}; a sweep takes one of {', '.join(knobs)}.")
    k = knobs[name]
    if ":" in rest:
        parts = rest.split(":")
        if len(parts) != 3:
            raise InvalidSetting(f"The sweep {quote(spec)} is malformed: a range is start:stop:count, e.g. "
                                 f"{name}={_example(name)}.")
        start, stop = (_number(spec, name, k, p) for p in parts[:2])
        try:
            count = int(parts[2].strip()) if len(parts[2].strip()) <= MAX_NUMBER_CHARS else -1
        except ValueError:
            count = -1
        if not 2 <= count <= MAX_VALUES:
            raise InvalidSetting(f"The sweep {quote(spec)} asks for {quote(parts[2].strip())} values; the count is a "
                                 f"whole number from 2 to {MAX_VALUES}.")
        values = _evenly(start, stop, count, k.kind == "int")
    else:
        parts = rest.split(",")
        if len(parts) > MAX_VALUES:
            raise InvalidSetting(f"The sweep {quote(spec)} has {len(parts)} values; at most {MAX_VALUES} are swept.")
        values = [_number(spec, name, k, p) for p in parts]
    values = list(dict.fromkeys(values))  # a value twice is one point (a range of whole numbers may repeat one)
    for value in values:
        try:
            check_value(name, value, facts)
        except InvalidSetting as exc:
            raise InvalidSetting(f"The sweep {quote(spec)}: {exc}") from None
    return SweepSpec(name, tuple(values))


def _example(name: str) -> str:
    k = KNOBS[name]
    if k.kind == "int":
        return "0:100:5"
    return "0.5:1.0:6" if (k.low, k.high) == (0, 1) else "0.5:1.5:5"


def parse_sweeps(texts: list[str], facts: dict | None = None) -> list[SweepSpec]:
    """Several sweeps (one per knob), each parsed as `parse_sweep`; empty entries are skipped."""
    texts = [t for t in texts if isinstance(t, str) and t.strip()] if isinstance(texts, list) else texts
    if not isinstance(texts, list) or not texts:
        raise InvalidSetting("There is no sweep: give one as name=start:stop:count, e.g. top_p=0.5:1.0:6.")
    if len(texts) > MAX_SWEEPS:
        raise InvalidSetting(f"A request sweeps at most {MAX_SWEEPS} knobs; this one has {len(texts)}.")
    sweeps = [parse_sweep(t, facts) for t in texts]
    seen = set()
    for s in sweeps:
        if s.knob in seen:
            raise InvalidSetting(f"{s.knob} is swept twice; give all its values in one sweep.")
        seen.add(s.knob)
    return sweeps


def parse_sweep_lines(text: str, facts: dict | None = None) -> list[SweepSpec]:
    """The page's form: one sweep a line."""
    if not isinstance(text, str):
        raise InvalidSetting("The sweeps are text, one per line.")
    if len(text) > MAX_SWEEPS * (MAX_SPEC_CHARS + 1):
        raise InvalidSetting(f"The sweeps have {len(text):,} characters; at most "
                             f"{MAX_SWEEPS * (MAX_SPEC_CHARS + 1):,} are accepted.")
    return parse_sweeps([line for line in text.splitlines() if line.strip()], facts)


# the points -------------------------------------------------------------------------------------------
@dataclass
class SweepPoint:
    knob: str
    value: float | int
    base: DecodeSettings  # the base run, with the report's N samples
    run: DecodeSettings  # the base run at this value
    report: StrategyReport | None = None  # the point's figures, once decoded

    @property
    def method(self) -> str:
        return run_name(self.base)

    def to_dict(self, samples: bool = True) -> dict:
        r = self.report
        out = {"value": self.value, "method": self.method, "base": lineup_syntax.run_spec(as_written(self.base)),
               "name": run_name(self.run), "spec": lineup_syntax.run_spec(as_written(self.run)),
               "metrics": {k: v.to_dict() for k, v in r.metrics.items()}, "finish_reasons": r.finish_reasons}
        if samples:
            out["samples"] = [s.to_dict() for s in r.samples]
        return out


@dataclass
class Sweep:
    knob: str
    values: list
    points: list[SweepPoint]  # base run by base run, each over the values in order

    def curves(self) -> dict[str, list[SweepPoint]]:
        """The points of each method (base run), in the order of the values."""
        out: dict[str, list[SweepPoint]] = {}
        for p in self.points:
            out.setdefault(p.method, []).append(p)
        return out

    def to_dict(self) -> dict:
        return {"knob": self.knob, "values": self.values, "points": [p.to_dict() for p in self.points]}


def sweep_points(base: list[DecodeSettings], sweeps: list[SweepSpec]) -> list[Sweep]:
    """Each sweep's points: every base run that reads the knob, at every value. A base run that does
    not read it (its strategy never looks at it) is refused, since its curve would be one point repeated."""
    out = []
    for spec in sweeps:
        k = KNOBS[spec.knob]
        points = []
        for line, b in enumerate(base, 1):
            if k.used_by and b.mode not in k.used_by:
                raise InvalidSetting(
                    f"{spec.knob} is not read by {run_name(b)} (line {line} of the base line-up), so its sweep would "
                    f"change nothing; sweep it on a run whose strategy reads it.")
            points += [SweepPoint(spec.knob, v, b, b.replace(**{spec.knob: v})) for v in spec.values]
        out.append(Sweep(spec.knob, list(spec.values), points))
    total = sum(len(s.points) for s in out)
    if total > limits.MAX_SWEEP_POINTS:
        raise InvalidSetting(f"These sweeps have {total} points (values x base runs) but a request may have at most "
                             f"{limits.MAX_SWEEP_POINTS}; sweep fewer values, knobs or base runs.")
    return out


def run_key(run: DecodeSettings) -> tuple:
    """What makes two runs the same run: every compared setting, by its exact repr (a setting may hold a
    list, which does not hash, and '%g' would merge 0.1234567 with 0.1234568)."""
    return tuple(repr(getattr(run, f.name)) for f in dataclasses.fields(run) if f.compare)


def distinct_runs(sweeps: list[Sweep]) -> list[DecodeSettings]:
    """Each point's run once: points with equal settings (top_p=1.0 and temperature=1.0 on the same base)
    are decoded once and share their samples."""
    return list({run_key(p.run): p.run for s in sweeps for p in s.points}.values())


def plan_batches(runs: list[DecodeSettings]) -> list[list[int]]:
    """The runs in as few batches as the row limit allows, in order: a batch is closed when the next run's
    rows would take it past MAX_REPORT_ROWS (or it holds MAX_SWEEP_POINTS runs)."""
    batches: list[list[int]] = []
    rows = 0
    for i, s in enumerate(runs):
        if not batches or rows + s.rows > limits.MAX_REPORT_ROWS or len(batches[-1]) >= limits.MAX_SWEEP_POINTS:
            batches.append([])
            rows = 0
        batches[-1].append(i)
        rows += s.rows
    return batches


def check_budget(prompts: list[Passage], sweeps: list[Sweep], *, parameters: int | None = None,
                 device_type: str = "cpu") -> None:
    """A sweep is one request: its rows (all points) x new tokens x prompts within the report's row-token
    budget and, once the model is known, x parameters within the request budget. Past either, one
    sentence says how many points fit."""
    runs = distinct_runs(sweeps)
    rows = sum(s.rows for s in runs)
    tokens = max(s.max_new_tokens for s in runs)
    row_tokens = rows * tokens * len(prompts)
    per_point = row_tokens / len(runs)
    fits = ROW_TOKEN_BUDGET // per_point
    over = row_tokens > ROW_TOKEN_BUDGET
    limit = f"a report may use at most {ROW_TOKEN_BUDGET:,} row-tokens"
    if parameters:
        allowed = limits.budget(device_type)
        fits = min(fits, allowed // (per_point * parameters))
        if row_tokens * parameters > allowed:
            over = True
            limit = (f"a request may use at most {allowed:.2g} row-token-parameters on this "
                     f"{parameters / 1e6:.0f}M-parameter model")
    if over:
        fit = (f"{int(fits)} of its {len(runs)} points fit" if fits >= 1
               else "not even one point fits")
        raise InvalidSetting(
            f"This sweep needs {rows} rows ({len(runs)} points) x {tokens} new tokens x {len(prompts)} prompt(s) = "
            f"{row_tokens:,} row-tokens, but {limit}: {fit}, so sweep fewer values or lower the samples, the new "
            "tokens or the prompts.")


# the result ---------------------------------------------------------------------------------------------
@dataclass
class SweepReport:
    model: str
    device: str
    prompts: list[str]
    base: str  # the base runs in line-up syntax, as written (without the report's N)
    samples_per_point: int
    max_new_tokens: int
    seed: int
    sweeps: list[Sweep]
    human: StrategyReport | None
    batches: int  # batches decoded per prompt
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def points(self) -> list[SweepPoint]:
        return [p for s in self.sweeps for p in s.points]

    @property
    def decoded(self) -> int:
        """Runs decoded: points with equal settings share one run's samples."""
        return len({id(p.report) for p in self.points})

    def table(self) -> list[dict]:
        """One flat row per point and one for human text (means, intervals, a kind marker)."""
        rows = [("point", p.knob, p.method, p.value, p.report) for p in self.points]
        if self.human is not None:
            rows.append(("human", "", self.human.name, None, self.human))
        out = []
        for kind, knob, method, value, r in rows:
            row = {"knob": knob, "method": method, "value": value, "kind": kind, "samples": len(r.samples)}
            for key in METRICS:
                s = r.metrics[key]
                row[key], row[f"{key}_low"], row[f"{key}_high"] = clean(s.mean), clean(s.low), clean(s.high)
            row["finish_reasons"] = ", ".join(f"{k} {v}" for k, v in sorted(r.finish_reasons.items()))
            out.append(row)
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "device": self.device, "prompts": self.prompts, "base": self.base,
                "samples_per_point": self.samples_per_point, "max_new_tokens": self.max_new_tokens,
                "seed": self.seed, "batches_per_prompt": self.batches, "rules": {**RULES, **SWEEP_RULES},
                "notices": self.notices, "seconds": self.seconds, "sweeps": [s.to_dict() for s in self.sweeps],
                "human": self.human.to_dict() if self.human is not None else None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def to_csv(self) -> str:
        rows = self.table()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def base_runs(spec: str | None, *, samples: int, max_new_tokens: int, seed: int) -> list[DecodeSettings]:
    """The base line-up (default: pure sampling), each sampling run with N samples, run i seeded seed + i."""
    return report_lineup(spec if spec is not None and spec.strip() else DEFAULT_BASE, samples=samples,
                         max_new_tokens=max_new_tokens, seed=seed)


def check_sweep(pg, prompts: list[Passage], base: list[DecodeSettings], specs: list[SweepSpec],
                human_count: int | None = None) -> list[Sweep]:
    """Everything a sweep's request is checked for, before any decoding: the prompts, every point's run
    against the model (naming the sweep and value of the first that fails), and the budget."""
    check_prompts(prompts, human_count)
    sweeps = sweep_points(base, specs)
    facts = {"vocab_size": pg.facts.vocab_size, "context_length": pg.facts.context_length}
    for s in sweeps:
        for p in s.points:
            try:
                check_value(p.knob, p.value, facts)
                pg.check(p.run)
            except InvalidSetting as exc:
                raise InvalidSetting(f"The sweep of {p.knob} at {value_label(p.value)} on "
                                     f"{p.method}: {exc}") from None
    # every row also steps any model the base run names besides this one (contrastive decoding's amateur)
    others = max((sum(o.parameters for o in used.values()) for used in pg.run_models(base)), default=0)
    check_budget(prompts, sweeps, parameters=pg.parameters + others, device_type=pg.device_type)
    return sweeps


def decode_points(pg, prompts: list[Passage], runs: list[DecodeSettings], base_count: int,
                  on_step=None) -> tuple[list[list[Sample]], list[str], int]:
    """Every run on every prompt, in as few batches per prompt as MAX_REPORT_ROWS allows: each run's
    samples over all prompts, the notices, and the batches per prompt. Run i keeps its seed on prompt 0
    and draws from seed + p x `base_count` on prompt p, as base run i of the report's line-up would."""
    batches = plan_batches(runs)
    longest = max(s.max_new_tokens for s in runs)
    per_run: list[list[Sample]] = [[] for _ in runs]
    notices: list[str] = []
    total = len(prompts) * len(batches) * longest
    for pi, p in enumerate(prompts):
        seeded = [s.replace(seed=offset_seed(s.seed, pi * base_count)) for s in runs]
        for bi, batch in enumerate(batches):
            done = (pi * len(batches) + bi) * longest
            step_cb = None if on_step is None else (
                lambda step, ids, done=done: on_step(done + step + 1, total, [pg.text(i) for i in ids]))
            traces, cut = decode_prompt(pg, p.prompt, [seeded[k] for k in batch], step_cb,
                                        max_runs=limits.MAX_SWEEP_POINTS)
            notices += [f"Prompt {pi + 1}: {note}" for note in cut if f"Prompt {pi + 1}: {note}" not in notices]
            for k, trace in zip(batch, traces):
                per_run[k] += [Sample(pi, q.ids, q.text, q.token_logprobs, q.finish_reason) for q in trace.sequences]
    return per_run, notices, len(batches)


def make_sweep(pg, prompts: list[Passage], base: list[DecodeSettings], specs: list[SweepSpec], *,
               human: list[Passage] | None = None, human_count: int | None = None, on_step=None) -> SweepReport:
    """Decode every point on every prompt (all points in as few batches as MAX_REPORT_ROWS allows, one
    prefill each), score the human passages, and compute every point's figures.

    `on_step(done, total, texts)` reports progress over all prompts and batches."""
    sweeps = check_sweep(pg, prompts, base, specs, human_count)
    n = max((s.num_return_sequences for s in base if s.do_sample), default=1)
    if human_count is None:
        human_count = min(MAX_HUMAN, n * len(prompts))
    started = time.perf_counter()
    runs = distinct_runs(sweeps)
    per_run, notices, batches = decode_points(pg, prompts, runs, len(base), on_step)
    figures = {run_key(run): strategy_report(run_name(run), lineup_syntax.run_spec(as_written(run)), per_run[k])
               for k, run in enumerate(runs)}
    for s in sweeps:
        for point in s.points:
            point.report = figures[run_key(point.run)]
    human_row, _ = human_report(pg, prompts, human, human_count, max(s.max_new_tokens for s in runs))
    return SweepReport(pg.label, pg.device, [p.prompt for p in prompts],
                       lineup_syntax.lineup_spec([as_written(s) for s in base]), n,
                       max(s.max_new_tokens for s in runs), base[0].seed, sweeps,
                       human_row, batches, notices, time.perf_counter() - started)
