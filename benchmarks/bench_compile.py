"""torch.compile of the model's forward pass against the eager one, on the engine's own greedy decode.

    .venv/bin/python benchmarks/bench_compile.py [--reps 3] [--new-tokens 64]

The issue's candidate "torch.compile of the step", measured: the same GPT-2-small-shaped model (random
weights), prompt and engine, once eager and once with `model.forward` compiled by inductor (dynamic
shapes, since the KV cache grows every step). Prints the compile time (the first decode), the median
per-repeat ratio eager / compiled, whether the greedy tokens are the same, and the largest difference in
the raw log-probs, with the machine's load beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import UNICORN, gpt2_small_playground  # noqa: E402
from core.decoding.settings import DecodeSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    pg = gpt2_small_playground("cpu", forward="transformers")  # what is compiled is transformers' forward
    run = [DecodeSettings(max_new_tokens=args.new_tokens)]
    print(f"load before: {os.getloadavg()}; {torch.get_num_threads()} threads, {args.new_tokens} new tokens")

    def decode():
        started = time.perf_counter()
        result = pg.compare(UNICORN, run)
        return time.perf_counter() - started, result.runs[0].best

    decode()  # warm-up
    eager_forward = pg.model.forward
    compiled_forward = torch.compile(eager_forward, dynamic=True)
    pg.model.forward = compiled_forward
    compile_s, _ = decode()
    print(f"compile (first compiled decode): {compile_s:.1f} s")
    eager, compiled, best = [], [], {}
    for _ in range(args.reps):
        pg.model.forward = eager_forward
        seconds, best["eager"] = decode()
        eager.append(seconds)
        pg.model.forward = compiled_forward
        seconds, best["compiled"] = decode()
        compiled.append(seconds)
    same = best["eager"].ids == best["compiled"].ids
    diff = max(abs(a.logprob - b.logprob) for a, b in zip(best["eager"].steps, best["compiled"].steps))
    print(f"eager {statistics.median(eager):.2f} s, compiled {statistics.median(compiled):.2f} s -> "
          f"{statistics.median(e / c for e, c in zip(eager, compiled)):.2f}x; same greedy tokens: "
          f"{'yes' if same else 'NO'}; largest raw log-prob difference {diff:.1e}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
