"""Engine vs model.generate(): tokens/s per strategy, and the default line-up in one batch.

    .venv/bin/python benchmarks/bench_decode.py [--reps 3] [--new-tokens 64] [--device cpu]

A GPT-2-small-shaped model (124M parameters, random weights: speed does not depend on them), the
unicorn prompt of seed 004 (45 tokens). The engine and generate() run interleaved, every strategy
warmed up first; a ratio is the median over repeats of each repeat's own generate()/engine pair, so
that a machine drifting between repeats cannot make it up (a median over a median gave 5x at load 6),
and the machine's load is printed beside the figures. Ratios > 1 mean the engine is faster.
Hooks on the model time its forward passes inside each call ("fwd"), for both contenders. "ceiling" is
generate()'s whole time over the engine's forward passes alone: the ratio an engine running the same
forward passes would reach with nothing else to do (no selection, no trace, no cache reordering), the
most that work outside the model can buy without changing the model's numbers.
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


class ForwardClock:
    """Seconds spent inside the model's forward passes, summed, from hooks on the top-level module."""

    def __init__(self, model: torch.nn.Module):
        self.seconds, self._started = 0.0, 0.0
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def _pre(self, *_):
        self._sync()
        self._started = time.perf_counter()

    def _post(self, *_):
        self._sync()
        self.seconds += time.perf_counter() - self._started


def timed(fn, clock: ForwardClock):
    """(wall seconds, seconds of it inside the model's forward passes, fn's result)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    clock.seconds = 0.0
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, clock.seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_decode.json"))
    args = parser.parse_args()

    pg = gpt2_small_playground(args.device)
    model, device, dtype = pg.model, pg.lm.device, pg.model.dtype
    clock = ForwardClock(model)
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

    rows, totals = [], {"generate": [], "engine": [], "generate_forward": [], "engine_forward": []}
    print(f"{'strategy':<24}{'generate tok/s':>15}{'fwd':>5}{'engine tok/s':>14}{'fwd':>5}{'ratio':>8}"
          f"{'ceiling':>9}  same tokens")
    for settings in lineup:
        g_times, e_times, g_fwd, e_fwd = [], [], [], []
        for _ in range(args.reps):
            g, gf, out = timed(lambda: generate(settings), clock)
            e, ef, res = timed(lambda: engine([settings]), clock)
            g_times.append(g)
            e_times.append(e)
            g_fwd.append(gf)
            e_fwd.append(ef)
        expected = out[0, len(ids):].tolist()
        got = res.runs[0].best.ids
        same = got == expected if not settings.do_sample else len(got) == len(expected)
        tokens = len(got)
        g_med, e_med = statistics.median(g_times), statistics.median(e_times)
        ratio = statistics.median(g / e for g, e in zip(g_times, e_times))
        ceiling = statistics.median(g / ef for g, ef in zip(g_times, e_fwd))
        g_share = statistics.median(f / t for f, t in zip(g_fwd, g_times))
        e_share = statistics.median(f / t for f, t in zip(e_fwd, e_times))
        rows.append({"strategy": settings.name(), "generate_s": g_times, "engine_s": e_times,
                     "generate_forward_s": g_fwd, "engine_forward_s": e_fwd,
                     "generate_tok_s": tokens / g_med, "engine_tok_s": tokens / e_med,
                     "ratio": ratio, "ceiling": ceiling,
                     "same_tokens" if not settings.do_sample else "same_length": same})
        print(f"{settings.name():<24}{tokens / g_med:>15.1f}{g_share:>5.0%}{tokens / e_med:>14.1f}{e_share:>5.0%}"
              f"{ratio:>7.2f}x{ceiling:>8.2f}x  {'yes' if same else 'NO'}{'' if not settings.do_sample else ' (length)'}")

    for _ in range(args.reps):
        sequential, sequential_fwd, _ = timed(lambda: [generate(s) for s in lineup], clock)
        batched, batched_fwd, _ = timed(lambda: engine(lineup), clock)
        totals["generate"].append(sequential)
        totals["engine"].append(batched)
        totals["generate_forward"].append(sequential_fwd)
        totals["engine_forward"].append(batched_fwd)
    seq_med, batch_med = statistics.median(totals["generate"]), statistics.median(totals["engine"])
    ratio = statistics.median(g / e for g, e in zip(totals["generate"], totals["engine"]))
    ceiling = statistics.median(g / ef for g, ef in zip(totals["generate"], totals["engine_forward"]))
    print(f"\nline-up of {len(lineup)} runs: generate() one call per strategy {seq_med:.2f}s "
          f"(forward passes {statistics.median(totals['generate_forward']):.2f}s), engine one batch {batch_med:.2f}s "
          f"(forward passes {statistics.median(totals['engine_forward']):.2f}s) -> {ratio:.2f}x, "
          f"ceiling {ceiling:.2f}x; load {os.getloadavg()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": str(device), "dtype": str(dtype), "strategies": rows,
                                          "load": os.getloadavg(),
                                          "lineup": {"generate_s": totals["generate"], "engine_s": totals["engine"],
                                                     "generate_forward_s": totals["generate_forward"],
                                                     "engine_forward_s": totals["engine_forward"],
                                                     "ratio": ratio, "ceiling": ceiling}}, indent=2))


if __name__ == "__main__":
    main()
