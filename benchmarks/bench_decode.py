"""Engine vs model.generate(): tokens/s per strategy, and the default line-up in one batch.

    .venv/bin/python benchmarks/bench_decode.py [--reps 3] [--new-tokens 64] [--device cpu]

A GPT-2-small-shaped model (124M parameters, random weights: speed does not depend on them), the
unicorn prompt of seed 004 (45 tokens). The engine and generate() run interleaved, every strategy
warmed up first; a ratio is the median over repeats of each repeat's own generate()/engine pair, so
that a machine drifting between repeats cannot make it up (a median over a median gave 5x at load 6),
and the machine's load is printed beside the figures. Ratios > 1 mean the engine is faster.
The engine's trace is on (it always is). Deterministic strategies are checked to give generate()'s
tokens; sampling runs draw different tokens (generate() uses the global RNG) but the same count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.models.lm import HFCausalLM  # noqa: E402
from core.models.registry import load_tokenizer, pick_device  # noqa: E402
from core.playground import Playground, default_lineup  # noqa: E402

UNICORN = ("In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously "
           "unexplored valley, in the Andes Mountains. Even more surprising to the researchers was the fact "
           "that the unicorns spoke perfect English.")


def gpt2_small_playground(device: str | None = None) -> Playground:
    """A GPT-2-small-shaped model with random weights (speed does not depend on them)."""
    torch_device, dtype = pick_device(device)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).to(device=torch_device, dtype=dtype).eval()
    return Playground("gpt2-shaped (random weights)", HFCausalLM(model), load_tokenizer(None), model)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_decode.json"))
    args = parser.parse_args()

    pg = gpt2_small_playground(args.device)
    model, device, dtype = pg.model, pg.lm.device, pg.model.dtype
    lineup = default_lineup(args.new_tokens, seed=0)
    ids = pg.tokenizer.encode(UNICORN)
    prompt = torch.tensor([ids], device=device)

    def generate(settings):
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=50256,
                              **settings.generate_kwargs())

    def engine(runs):
        return pg.compare(UNICORN, runs)

    print(f"model: GPT-2 small shape ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params) on "
          f"{device} {dtype}, {torch.get_num_threads()} threads; prompt {len(ids)} tokens, "
          f"{args.new_tokens} new tokens, median of {args.reps}; load {os.getloadavg()}")
    for settings in lineup:  # warm every strategy up, both ways
        generate(settings), engine([settings])

    rows, totals = [], {"generate": [], "engine": []}
    print(f"{'strategy':<24}{'generate tok/s':>15}{'engine tok/s':>14}{'ratio':>8}  same tokens")
    for settings in lineup:
        g_times, e_times = [], []
        for _ in range(args.reps):
            g, out = timed(lambda: generate(settings))
            e, res = timed(lambda: engine([settings]))
            g_times.append(g)
            e_times.append(e)
        expected = out[0, len(ids):].tolist()
        got = res.runs[0].best.ids
        same = got == expected if not settings.do_sample else len(got) == len(expected)
        tokens = len(got)
        g_med, e_med = statistics.median(g_times), statistics.median(e_times)
        ratio = statistics.median(g / e for g, e in zip(g_times, e_times))
        rows.append({"strategy": settings.name(), "generate_s": g_times, "engine_s": e_times,
                     "generate_tok_s": tokens / g_med, "engine_tok_s": tokens / e_med,
                     "ratio": ratio, "same_tokens" if not settings.do_sample else "same_length": same})
        print(f"{settings.name():<24}{tokens / g_med:>15.1f}{tokens / e_med:>14.1f}{ratio:>7.2f}x  "
              f"{'yes' if same else 'NO'}{'' if not settings.do_sample else ' (length)'}")

    for _ in range(args.reps):
        sequential, _ = timed(lambda: [generate(s) for s in lineup])
        batched, _ = timed(lambda: engine(lineup))
        totals["generate"].append(sequential)
        totals["engine"].append(batched)
    seq_med, batch_med = statistics.median(totals["generate"]), statistics.median(totals["engine"])
    ratio = statistics.median(g / e for g, e in zip(totals["generate"], totals["engine"]))
    print(f"\nline-up of {len(lineup)} runs: generate() one call per strategy {seq_med:.2f}s, "
          f"engine one batch {batch_med:.2f}s -> {ratio:.2f}x; load {os.getloadavg()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": str(device), "dtype": str(dtype), "strategies": rows,
                                          "load": os.getloadavg(),
                                          "lineup": {"generate_s": totals["generate"], "engine_s": totals["engine"],
                                                     "ratio": ratio}}, indent=2))


if __name__ == "__main__":
    main()
