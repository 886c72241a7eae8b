"""The decoding report's one-batch decode against drawing the same samples with model.generate().

    .venv/bin/python benchmarks/bench_report.py [--quick] [--reps 3] [--models default,gpt2-shape]
    .venv/bin/python benchmarks/bench_report.py --sweep top_p=0.5:1.0:6 [--sweep min_p=0.0:0.3:6]

The report's default line-up (the paper's 9 strategies: greedy, beam 5, beam 5 + no-repeat 2, pure
sampling, temperature 0.7, top-k 40, top-k 640, top-p 0.95, typical-p 0.95) with N samples per sampling
strategy and T new tokens on one held-out prompt, three ways:

- engine: the report's decode, every strategy in one batch after one prefill (trace on);
- generate() once per sample: 1 call for greedy, 1 per beam run, N calls per sampling strategy;
- generate(num_return_sequences=N) once per strategy: 9 calls.

With `--sweep KNOB=...` (repeatable), the report's sweeps instead: every point (pure sampling with the
knob at its value, N samples) on the same prompt, three ways:

- engine: the sweep's decode, all points in as few batches as the report's row limit allows;
- generate() once per sample: N calls per point;
- generate(num_return_sequences=N) once per point.

On the shipped default model and on a GPT-2-small-shaped model with random weights (speed does not
depend on them). Each repeat times the three back to back; a ratio is the median over repeats of that
repeat's generate time / engine time (> 1: the engine is faster), so machine noise hits all alike. The
machine's load average is printed before and after: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core import report  # noqa: E402
from core.report import sweep  # noqa: E402
from bench_decode import gpt2_small_playground  # noqa: E402
from core.playground import Playground  # noqa: E402


def timed(fn):
    """(wall seconds, fn's result), the device synchronised on both sides."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def load(name: str, device: str | None) -> Playground:
    if name == "default":
        return Playground.load("shakespeare-gpt2", device=device)
    return gpt2_small_playground(device)


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def bench_model(name: str, args) -> dict:
    pg = load(name, args.device)
    prompt = report.load_passages()[0].prompt
    runs = report.report_lineup(report.DEFAULT_LINEUP, samples=args.samples, max_new_tokens=args.new_tokens, seed=0)
    ids = pg.encode_prompt(prompt, args.new_tokens)[0]
    input_ids = torch.tensor([ids], device=pg.lm.device)
    pad = pg.facts.pad_token_id if pg.facts.pad_token_id is not None else pg.facts.eos_token_ids[0]

    def generate(settings, n: int):
        kwargs = settings.generate_kwargs()
        if settings.do_sample:
            kwargs["num_return_sequences"] = n
        torch.manual_seed(settings.seed)
        return pg.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=pad, **kwargs)

    def per_sample():  # one generate() call per sample
        return [generate(s, 1) for s in runs for _ in range(s.num_return_sequences if s.do_sample else 1)]

    def per_strategy():  # one generate(num_return_sequences=N) call per strategy
        return [generate(s, s.num_return_sequences) for s in runs]

    def engine():
        return report.decode_prompt(pg, prompt, runs)[0]

    engine(), per_strategy()  # warm-up
    times = {"engine": [], "per_sample": [], "per_strategy": []}
    for _ in range(args.reps):
        for key, fn in (("engine", engine), ("per_sample", per_sample), ("per_strategy", per_strategy)):
            seconds, out = timed(fn)
            times[key].append(seconds)
            if key == "engine":
                traces = out
            elif key == "per_strategy":
                outputs = out
    same = all(traces[k].best.ids == outputs[k][0, len(ids):].tolist() for k, s in enumerate(runs)
               if not s.do_sample)
    metric_seconds, _ = timed(lambda: [report.measure([report.Sample(0, q.ids, q.text, q.token_logprobs, "")
                                                        for q in t.sequences]) for t in traces])
    ratio = {key: statistics.median(g / e for g, e in zip(times[key], times["engine"]))
             for key in ("per_sample", "per_strategy")}
    rows = sum(s.rows for s in runs)
    print(f"\n{pg.name}: {sum(p.numel() for p in pg.model.parameters()) / 1e6:.1f}M parameters on {pg.device}; "
          f"prompt {len(ids)} tokens; {len(runs)} strategies, N={args.samples}, {args.new_tokens} new tokens, "
          f"{rows} batch rows; median of {args.reps}")
    print(f"  engine, one batch          {statistics.median(times['engine']):8.2f} s")
    print(f"  generate() per sample      {statistics.median(times['per_sample']):8.2f} s  -> engine "
          f"{ratio['per_sample']:.2f}x faster")
    print(f"  generate(nrs=N) per run    {statistics.median(times['per_strategy']):8.2f} s  -> engine "
          f"{ratio['per_strategy']:.2f}x faster")
    print(f"  greedy/beam tokens equal generate()'s: {'yes' if same else 'NO'}; the report's figures took "
          f"{metric_seconds:.2f} s more")
    return {"model": pg.name, "device": pg.device, "samples": args.samples, "new_tokens": args.new_tokens,
            "rows": rows, "reps": args.reps, "seconds": times, "ratio_median": ratio,
            "deterministic_runs_match_generate": same, "metrics_seconds": metric_seconds}


def bench_sweep(name: str, args) -> dict:
    """The sweeps' points on one prompt: the engine's batches against generate() per sample and per point."""
    pg = load(name, args.device)
    passage = report.load_passages()[0]
    base = report.base_runs(None, samples=args.samples, max_new_tokens=args.new_tokens, seed=0)
    points = sweep.sweep_points(base, report.parse_sweeps(args.sweep))
    runs = sweep.distinct_runs(points)
    ids = pg.encode_prompt(passage.prompt, args.new_tokens)[0]
    input_ids = torch.tensor([ids], device=pg.lm.device)
    pad = pg.facts.pad_token_id if pg.facts.pad_token_id is not None else pg.facts.eos_token_ids[0]

    def generate(settings, n: int, seed: int):
        kwargs = {**settings.generate_kwargs(), "num_return_sequences": n}
        torch.manual_seed(seed)
        return pg.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=pad, **kwargs)

    def per_sample():  # one generate() call per sample
        return [generate(s, 1, s.seed + j) for s in runs for j in range(s.num_return_sequences)]

    def per_point():  # one generate(num_return_sequences=N) call per point
        return [generate(s, s.num_return_sequences, s.seed) for s in runs]

    def engine():
        return sweep.decode_points(pg, [passage], runs, len(base))

    engine(), per_point()  # warm-up
    times = {"engine": [], "per_sample": [], "per_point": []}
    for _ in range(args.reps):
        for key, fn in (("engine", engine), ("per_sample", per_sample), ("per_point", per_point)):
            seconds, out = timed(fn)
            times[key].append(seconds)
            if key == "engine":
                samples, _, batches = out
    same_count = all(len(s) == r.num_return_sequences for s, r in zip(samples, runs))
    ratio = {key: statistics.median(g / e for g, e in zip(times[key], times["engine"]))
             for key in ("per_sample", "per_point")}
    rows = sum(s.rows for s in runs)
    print(f"\n{pg.name}: {sum(p.numel() for p in pg.model.parameters()) / 1e6:.1f}M parameters on {pg.device}; "
          f"prompt {len(ids)} tokens; sweeps {' '.join(args.sweep)} on pure sampling: {len(runs)} points, "
          f"N={args.samples}, {args.new_tokens} new tokens, {rows} rows in {batches} batch(es); median of {args.reps}")
    print(f"  engine, the sweep's batches    {statistics.median(times['engine']):8.2f} s")
    print(f"  generate() per sample          {statistics.median(times['per_sample']):8.2f} s  -> engine "
          f"{ratio['per_sample']:.2f}x faster")
    print(f"  generate(nrs=N) per point      {statistics.median(times['per_point']):8.2f} s  -> engine "
          f"{ratio['per_point']:.2f}x faster")
    print(f"  every point has its N samples: {'yes' if same_count else 'NO'}; load now {load_text()}")
    return {"model": pg.name, "device": pg.device, "sweeps": args.sweep, "points": len(runs), "samples": args.samples,
            "new_tokens": args.new_tokens, "rows": rows, "batches": batches, "reps": args.reps, "seconds": times,
            "ratio_median": ratio, "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=4 samples, 16 new tokens, 1 repeat")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", default="default,gpt2-shape", help="comma-separated: default, gpt2-shape")
    parser.add_argument("--device", default=None)
    parser.add_argument("--sweep", action="append", default=None, metavar="KNOB=START:STOP:COUNT",
                        help="time the report's sweeps (repeatable) instead of its line-up")
    parser.add_argument("--out", default=None, help="JSON results (default: results/bench_report.json, or "
                                                    "results/bench_report_sweep.json with --sweep)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.new_tokens, args.reps = 4, 16, 1
    if args.out is None:
        args.out = str(Path(__file__).parent / "results" / f"bench_report{'_sweep' if args.sweep else ''}.json")
    print(f"before: {load_text()}; torch threads {torch.get_num_threads()}")
    bench = bench_sweep if args.sweep else bench_model
    results = [bench(name.strip(), args) for name in args.models.split(",") if name.strip()]
    print(f"\nafter: {load_text()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"load_after": os.getloadavg(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
