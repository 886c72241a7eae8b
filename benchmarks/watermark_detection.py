"""Detection figures of the green-list watermark on a model (not a speed benchmark; it lives beside them).

For each held-out prompt, one batch decodes the line-up's runs unmarked and marked with each bias; the
detector (core.watermark, held to transformers' WatermarkDetector in tests/test_watermark.py) reads the
first 40 and 100 generated tokens of each. True-positive rate: marked texts called marked (z > threshold);
false-positive rate: the human passages (prompt and continuation, never marked) and the unmarked runs'
texts called marked. A green list depends on the key, ratio, scheme and width, not on the bias, so the
human passages' rate is one figure for every bias.

    .venv/bin/python benchmarks/watermark_detection.py [--prompts 100] [--biases 1 2 4] [--lengths 40 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import report, watermark  # noqa: E402
from core.decoding import lineup as lineup_syntax  # noqa: E402
from core.decoding.settings import DecodeSettings  # noqa: E402
from core.models import registry  # noqa: E402
from core.playground import Playground  # noqa: E402


def rate(zs: list[float | None], threshold: float) -> tuple[float | None, int]:
    judged = [z for z in zs if z is not None]
    return (sum(z > threshold for z in judged) / len(judged) if judged else None), len(judged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=registry.default_model())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=100, help="held-out prompts (each gives one text per run)")
    parser.add_argument("--biases", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--threshold", type=float, default=watermark.DEFAULT_THRESHOLD)
    parser.add_argument("--lineup", default="sample(top_k=0);greedy", help="the runs marked (app syntax)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pg = Playground.load(args.model, device=args.device)
    passages = report.load_passages()
    prompts = [p.prompt for p in passages[:args.prompts]]
    longest = max(args.lengths)
    plain_runs = lineup_syntax.parse_lineup(args.lineup, max_new_tokens=longest, seed=args.seed)
    key = DecodeSettings(watermark=True)  # transformers' defaults: ratio 0.25, lefthash, width 1, its key
    runs = list(plain_runs)
    for bias in args.biases:
        runs += watermark.marked(plain_runs, key.replace(watermark_bias=bias))
    load_before = os.getloadavg()
    started = time.perf_counter()
    texts: list[list[list[int]]] = [[] for _ in runs]  # per run, the generated ids of each prompt
    for i, prompt in enumerate(prompts):
        seeded = [s.replace(seed=s.seed + i * len(runs)) for s in runs]
        result = pg.compare(prompt, seeded)
        for k, trace in enumerate(result.runs):
            texts[k].append(trace.best.ids)
        print(f"prompt {i + 1}/{len(prompts)}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    decoded = time.perf_counter() - started

    lists = watermark.GreenLists(key, pg.facts.vocab_size, pg.device)

    def z_of(ids: list[int], length: int) -> float | None:
        if len(ids) < length:
            return None  # ended early: not a text of this length
        d = watermark.detect_for(pg, ids[:length], key, args.threshold, lists=lists)
        return d.z_score if d.prediction is not None else None

    human = {n: watermark.false_positives(pg, passages, key, tokens=n, threshold=args.threshold)
             for n in args.lengths}
    print(f"model {pg.label} on {pg.device}; {len(prompts)} held-out prompts; runs {args.lineup}; threshold "
          f"z > {args.threshold:g}; green share {key.greenlist_ratio}, {key.seeding_scheme}, width "
          f"{key.context_width}; decoding {decoded:.0f} s; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"{'run':<30}{'bias':>6}{'tokens':>8}{'TPR':>8}{'mean z':>9}{'n':>5}  "
          f"{'FPR unmarked run':>17}{'FPR human':>11}{'n human':>9}")
    for k, s in enumerate(runs[len(plain_runs):]):
        plain = k % len(plain_runs)
        for n in args.lengths:
            zs = [z_of(ids, n) for ids in texts[len(plain_runs) + k]]
            tpr, judged = rate(zs, args.threshold)
            fpr_plain, _ = rate([z_of(ids, n) for ids in texts[plain]], args.threshold)
            mean_z = sum(z for z in zs if z is not None) / max(1, judged)
            fp = human[n]
            print(f"{plain_runs[plain].name():<30}{s.watermark_bias:>6g}{n:>8}{_pct(tpr):>8}{mean_z:>9.2f}"
                  f"{judged:>5}  {_pct(fpr_plain):>17}{_pct(fp.rate):>11}{fp.judged:>9}")
    print(f"total {time.perf_counter() - started:.0f} s")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
