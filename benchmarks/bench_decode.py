"""Engine vs model.generate(): tokens/s per strategy, the default line-up in one batch, and the engine's
own share of a line-up's time, on the GPT-2-small shape and on the shipped default model.

    .venv/bin/python benchmarks/bench_decode.py [--reps 3] [--new-tokens 64] [--device cpu]
                                                [--forward both|auto|lean|transformers]

A GPT-2-small-shaped model (124M parameters, random weights: speed does not depend on them), the
unicorn prompt of seed 004 (45 tokens). The engine decodes through each forward pass asked for (`both`:
the lean GPT-2 forward of core/models/lean_gpt2.py and transformers' own), each beside generate(), one
row per strategy. The contenders run interleaved, every strategy warmed up first; a ratio is the median
over repeats of each repeat's own generate()/engine pair, so that a machine drifting between repeats
cannot make it up (a median over a median gave 5x at load 6), and the machine's load is printed beside
the figures. Ratios > 1 mean the engine is faster.
"fwd" is the share of a call's time inside the model's forward passes (hooks on the model for generate(),
the adapter's prefill and step for the engine). "ceiling" is generate()'s whole time over the engine's
forward passes alone: the ratio an engine running the same forward passes would reach with nothing else
to do (no selection, no trace, no cache reordering). "own" is the engine's own share of its time: 1 - fwd,
the selection, the trace, the cache reorder and the Python around them.
The engine's trace is on (it always is). Deterministic strategies are checked to give generate()'s
tokens; sampling runs draw different tokens (generate() uses the global RNG) but the same count.
The script also runs on a tree from before the lean forward (for before/after ratios in one sitting):
there only transformers' forward is measured.
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
from core.models import registry  # noqa: E402
from core.models.forwards import adapter_for  # noqa: E402
from core.models.lm import HFCausalLM  # noqa: E402
from core.models.registry import load_tokenizer, pick_device  # noqa: E402
from core.playground import Playground, default_lineup  # noqa: E402

UNICORN = ("In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously "
           "unexplored valley, in the Andes Mountains. Even more surprising to the researchers was the fact "
           "that the unicorns spoke perfect English.")
FORWARDS = {"both": ("lean", "transformers"), "auto": ("auto",), "lean": ("lean",), "transformers": ("transformers",)}
DEFAULT_MODEL_TOKENS = (40, 200)  # the shipped default model's line-up, at the app's default and its longest


def adapter(model, forward: str):
    """The engine's adapter for `forward`, or None where this tree has no such forward."""
    try:
        return adapter_for(model, forward)
    except TypeError:  # a tree from before the lean forward: transformers' is the only one
        return HFCausalLM(model) if forward in ("transformers", "auto") else None


def engine_name(lm) -> str:
    return getattr(lm, "engine", "transformers")


class ForwardClock:
    """Seconds spent inside forward passes, summed: hooks on the model (generate(), and transformers'
    forward under the engine) and wrappers around an engine adapter's prefill and step. Nested timings
    count once."""

    def __init__(self, model: torch.nn.Module):
        self.seconds, self._depth, self._started = 0.0, 0, 0.0
        model.register_forward_pre_hook(lambda *_: self._enter())
        model.register_forward_hook(lambda *_: self._leave())

    def wrap(self, lm):
        """Time `lm`'s prefill and step calls (the lean forward never calls the model's forward)."""
        for name in ("prefill", "step"):
            call = getattr(lm, name)

            def timed_call(*args, _call=call, **kwargs):
                self._enter()
                try:
                    return _call(*args, **kwargs)
                finally:
                    self._leave()
            setattr(lm, name, timed_call)
        return lm

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def _enter(self):
        if self._depth == 0:
            self._sync()
            self._started = time.perf_counter()
        self._depth += 1

    def _leave(self):
        self._depth -= 1
        if self._depth == 0:
            self._sync()
            self.seconds += time.perf_counter() - self._started


def timed(fn, clock: ForwardClock | None = None):
    """(wall seconds, seconds of it inside the model's forward passes, fn's result); without a clock
    (wall seconds, fn's result)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if clock is not None:
        clock.seconds = 0.0
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return (wall, clock.seconds, out) if clock is not None else (wall, out)


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def gpt2_small(device: str | None):
    """A GPT-2-small-shaped model with random weights (speed does not depend on them)."""
    torch_device, dtype = pick_device(device)
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config()).to(device=torch_device, dtype=dtype).eval()


def gpt2_small_playground(device: str | None = None, forward: str = "auto") -> Playground:
    """The GPT-2-small shape as a Playground decoding through `forward` (the other benchmarks use it)."""
    model = gpt2_small(device)
    return Playground("gpt2-shaped (random weights)", adapter(model, forward), load_tokenizer(None), model)


def per_strategy(model, engines: dict, lineup, ids, clock, reps: int) -> list[dict]:
    """Each strategy alone: generate() against the engine through each forward, at one row (greedy,
    sampling) or num_beams rows (beam search)."""
    device = next(model.parameters()).device
    prompt = torch.tensor([ids], device=device)

    def generate(settings):
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=50256,
                              **settings.generate_kwargs())

    for settings in lineup:  # warm every strategy up, every way
        generate(settings)
        for pg in engines.values():
            pg.compare(UNICORN, [settings])
    header = f"{'strategy':<24}{'generate tok/s':>15}{'fwd':>5}"
    for name in engines:
        header += f"{name + ' tok/s':>20}{'fwd':>5}{'ratio':>8}"
    print(header + "  same tokens")
    rows = []
    for settings in lineup:
        g_times, g_fwd = [], []
        e_times = {name: [] for name in engines}
        e_fwd = {name: [] for name in engines}
        results = {}
        for _ in range(reps):
            g, gf, out = timed(lambda: generate(settings), clock)
            g_times.append(g)
            g_fwd.append(gf)
            for name, pg in engines.items():
                e, ef, results[name] = timed(lambda: pg.compare(UNICORN, [settings]), clock)
                e_times[name].append(e)
                e_fwd[name].append(ef)
        expected = out[0, len(ids):].tolist()
        tokens = len(expected) if settings.do_sample else None
        row = {"strategy": settings.name(), "generate_s": g_times, "generate_forward_s": g_fwd, "engines": {}}
        line = ""
        same_all = True
        for name in engines:
            got = results[name].runs[0].best.ids
            tokens = len(got)
            same = got == expected if not settings.do_sample else len(got) == len(expected)
            same_all &= same
            ratio = statistics.median(g / e for g, e in zip(g_times, e_times[name]))
            share = statistics.median(f / t for f, t in zip(e_fwd[name], e_times[name]))
            row["engines"][name] = {"engine_s": e_times[name], "engine_forward_s": e_fwd[name], "ratio": ratio,
                                    "ceiling": statistics.median(g / f for g, f in zip(g_times, e_fwd[name])),
                                    "same_tokens" if not settings.do_sample else "same_length": same,
                                    "engine_tok_s": tokens / statistics.median(e_times[name])}
            line += f"{tokens / statistics.median(e_times[name]):>20.1f}{share:>5.0%}{ratio:>7.2f}x"
        g_share = statistics.median(f / t for f, t in zip(g_fwd, g_times))
        row["generate_tok_s"] = tokens / statistics.median(g_times)
        rows.append(row)
        print(f"{settings.name():<24}{tokens / statistics.median(g_times):>15.1f}{g_share:>5.0%}{line}  "
              f"{'yes' if same_all else 'NO'}{'' if not settings.do_sample else ' (length)'}")
    return rows


def lineup_in_one_batch(model, engines: dict, lineup, ids, clock, reps: int) -> dict:
    """The line-up: one generate() call per strategy against the engine's one batch, per forward."""
    device = next(model.parameters()).device
    prompt = torch.tensor([ids], device=device)

    def generate_all():
        return [model.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=50256,
                               **s.generate_kwargs()) for s in lineup]

    totals = {"generate_s": [], "generate_forward_s": [], "engines": {n: {"engine_s": [], "engine_forward_s": []}
                                                                      for n in engines}}
    for _ in range(reps):
        g, gf, _ = timed(generate_all, clock)
        totals["generate_s"].append(g)
        totals["generate_forward_s"].append(gf)
        for name, pg in engines.items():
            e, ef, _ = timed(lambda: pg.compare(UNICORN, lineup), clock)
            totals["engines"][name]["engine_s"].append(e)
            totals["engines"][name]["engine_forward_s"].append(ef)
    g_med = statistics.median(totals["generate_s"])
    print(f"\nline-up of {len(lineup)} runs: generate() one call per strategy {g_med:.2f}s (forward passes "
          f"{statistics.median(totals['generate_forward_s']):.2f}s); {load()}")
    for name, t in totals["engines"].items():
        t["ratio"] = statistics.median(g / e for g, e in zip(totals["generate_s"], t["engine_s"]))
        t["ceiling"] = statistics.median(g / f for g, f in zip(totals["generate_s"], t["engine_forward_s"]))
        t["own_share"] = statistics.median(1 - f / e for f, e in zip(t["engine_forward_s"], t["engine_s"]))
        print(f"  engine, {name} forward, one batch {statistics.median(t['engine_s']):.2f}s (forward passes "
              f"{statistics.median(t['engine_forward_s']):.2f}s) -> {t['ratio']:.2f}x, ceiling {t['ceiling']:.2f}x; "
              f"the engine's own share {t['own_share']:.0%}")
    return totals


def default_model_lineups(forwards, device, reps: int) -> dict:
    """The shipped default model's default line-up, at the app's default length and its longest: the
    engine's own share of the time (what a GPU would leave, since the forward passes shrink there)."""
    name = registry.default_model()
    base = Playground.load(name, device=device, allow_paths=True)
    clock = ForwardClock(base.model)
    engines = {}
    for forward in forwards:
        lm = adapter(base.model, forward)
        if lm is not None:
            engines[engine_name(lm)] = Playground(name, clock.wrap(lm), base.tokenizer, base.model)
    print(f"\ndefault model {name} ({base.parameters / 1e6:.1f}M parameters) on {device or 'auto'}: the default "
          f"line-up in one batch; {load()}")
    out = {"model": name, "lineups": {}}
    for tokens in DEFAULT_MODEL_TOKENS:
        lineup = default_lineup(tokens, seed=0)
        for pg in engines.values():
            pg.compare(UNICORN, lineup)  # warm up
        for engine, pg in engines.items():
            walls, fwds = [], []
            for _ in range(reps):
                w, f, _ = timed(lambda: pg.compare(UNICORN, lineup), clock)
                walls.append(w)
                fwds.append(f)
            own = statistics.median(1 - f / w for f, w in zip(fwds, walls))
            out["lineups"][f"{tokens}/{engine}"] = {"engine_s": walls, "engine_forward_s": fwds, "own_share": own}
            print(f"  {tokens:>4} new tokens, {engine} forward: {statistics.median(walls):.3f}s, forward passes "
                  f"{statistics.median(fwds):.3f}s, the engine's own share {own:.0%}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--forward", default="both", choices=FORWARDS,
                        help="the engine's forward passes to measure (both: lean and transformers')")
    parser.add_argument("--skip-strategies", action="store_true", help="only the line-ups")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_decode.json"))
    args = parser.parse_args()

    model = gpt2_small(args.device)
    clock = ForwardClock(model)
    tokenizer = load_tokenizer(None)
    engines = {}
    for forward in FORWARDS[args.forward]:
        lm = adapter(model, forward)
        if lm is None:
            print(f"(this tree has no {forward} forward: skipped)")
            continue
        engines[engine_name(lm)] = Playground("gpt2-shaped (random weights)", clock.wrap(lm), tokenizer, model)
    lineup = default_lineup(args.new_tokens, seed=0)
    ids = tokenizer.encode(UNICORN)
    print(f"model: GPT-2 small shape ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params) on "
          f"{next(model.parameters()).device} {model.dtype}, {torch.get_num_threads()} threads; prompt {len(ids)} "
          f"tokens, {args.new_tokens} new tokens, median of {args.reps}; {load()}")
    results = {"device": str(next(model.parameters()).device), "dtype": str(model.dtype), "load_start": os.getloadavg()}
    if not args.skip_strategies:
        results["strategies"] = per_strategy(model, engines, lineup, ids, clock, args.reps)
    results["lineup"] = lineup_in_one_batch(model, engines, lineup, ids, clock, args.reps)
    results["default_model"] = default_model_lineups(FORWARDS[args.forward], args.device, args.reps)
    results["load_end"] = os.getloadavg()
    print(f"\n{load()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
