"""Where a line-up's time goes, part by part: the forward passes, the cache reorder, the sampling draws, the
logits processors, the trace's figures, and the rest (each run's selection and bookkeeping in Python).

    .venv/bin/python benchmarks/engine_time.py [--model default|gpt2-small] [--new-tokens N] [--reps 3]
                                               [--forward auto|lean|transformers]

The default line-up (Compare's: greedy, two beam searches, five sampling runs; 16 rows) in one batch, the
unicorn prompt. Every part is timed by wrapping the function that does it, so the parts never overlap and
"the rest" is the wall time less all of them. The parts generate() also does for the same tokens (its draws
from the run's generator, its processors, top-p's sort of the vocabulary among them) and the ones a faithful
trace cannot skip (the raw figures once per step, the reorder of beams) make the **floor**: the engine's own
share if every other line of per-run Python cost nothing. It is printed beside the measured share, with the
machine's load. Not a timed assertion: a profile to steer the work (issue 23's).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_decode import UNICORN, gpt2_small_playground  # noqa: E402
from core.decoding import engine  # noqa: E402
from core.decoding.strategies import base, beam, single  # noqa: E402
from core.models import registry  # noqa: E402
from core.playground import Playground, default_lineup  # noqa: E402

# part -> what it is, and whether the floor counts it (generate() does it too, or the trace needs it)
PARTS = {
    "forward": ("the model's forward passes (prefill and steps)", True),
    "reorder": ("the KV cache's reorder of beams (select_rows)", True),
    "draws": ("sampling draws: torch.multinomial from each run's generator", True),
    "processors": ("logits processors: transformers' classes (top-p's sort, temperature, no-repeat)", True),
    "raw figures": ("the trace's raw figures, once per step for every row", True),
    "run figures": ("the trace's per-run figures (processed entropy, chosen ranks and log-probs)", False),
    "results": ("results and traces assembled after the last step", False),
}


class PartClock:
    """Seconds per part, from wrappers around the functions that do each part (nested calls count once)."""

    def __init__(self):
        self.seconds = collections.Counter()
        self._depth = 0

    def wrap(self, owner, name: str, part: str) -> None:
        call = getattr(owner, name)

        def timed(*args, **kwargs):
            if self._depth:
                return call(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - started
                self._depth -= 1

        setattr(owner, name, timed)


def instrument(pg: Playground) -> PartClock:
    clock = PartClock()
    clock.wrap(pg.lm, "prefill", "forward")
    clock.wrap(pg.lm, "step", "forward")
    clock.wrap(pg.lm, "select_rows", "reorder")
    clock.wrap(single.Sampling, "choose", "draws")
    for module in (single, beam):  # each strategy module calls the names it imported
        clock.wrap(module, "apply_processors", "processors")
        clock.wrap(module, "chosen_figures", "run figures")
        clock.wrap(module, "RowStats", "run figures")
    clock.wrap(engine, "raw_figures", "raw figures")
    for cls in (single._OneRowPerSequence, beam.BeamSearch):
        clock.wrap(cls, "result", "results")
    clock.wrap(Playground, "_trace", "results")
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", choices=("default", "gpt2-small"))
    parser.add_argument("--new-tokens", type=int, default=None, help="default: 200 (default model), 64 (GPT-2 small)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--forward", default="auto", choices=("auto", "lean", "transformers"))
    args = parser.parse_args()
    if args.model == "default":
        pg = Playground.load(registry.default_model(), allow_paths=True, forward=args.forward)
    else:
        pg = gpt2_small_playground(None, args.forward)
    tokens = args.new_tokens or (200 if args.model == "default" else 64)
    lineup = default_lineup(tokens, seed=0)
    clock = instrument(pg)
    pg.compare(UNICORN, lineup)  # warm up
    clock.seconds.clear()
    walls = []
    for _ in range(args.reps):
        started = time.perf_counter()
        pg.compare(UNICORN, lineup)
        walls.append(time.perf_counter() - started)
    wall = sum(walls) / args.reps
    parts = {part: clock.seconds[part] / args.reps for part in PARTS}
    rest = wall - sum(parts.values())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{pg.label} ({pg.engine} forward), the default line-up ({sum(s.rows for s in lineup)} rows), "
          f"{tokens} new tokens: {wall:.3f}s a line-up (mean of {args.reps}, spread "
          f"{min(walls):.3f}-{max(walls):.3f}s); load {load}")
    for part, (what, _) in PARTS.items():
        print(f"  {parts[part]:7.3f}s {parts[part] / wall:5.0%}  {part:<12} {what}")
    print(f"  {rest:7.3f}s {rest / wall:5.0%}  {'the rest':<12} each run's selection and bookkeeping in Python, "
          "the step loop")
    own = 1 - parts["forward"] / wall
    floor_own = sum(s for p, s in parts.items() if PARTS[p][1] and p != "forward")
    floor = floor_own / (parts["forward"] + floor_own)
    print(f"the engine's own share {own:.0%}; its floor {floor:.0%} (the parts marked for the floor: what "
          f"generate() also does, and what a faithful trace needs, with nothing else); "
          f"median wall {statistics.median(walls):.3f}s")


if __name__ == "__main__":
    main()
