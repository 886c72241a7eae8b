"""Command-line start-up: `python -m core models` and a short `decode` on the default model, end to end.

    .venv/bin/python benchmarks/bench_cli_start.py [--reps 5]

Each command runs as a fresh process (what a user waits for), interleaved, after one warm-up run of
each (the page cache then holds the libraries, as on a machine in use). Prints the median, min and max
wall time of each, the import time of the libraries alone as the floors no lazy import can go under
(torch alone; torch and transformers' generation code, which the strategies' processors come from; and
transformers' model base class, which loading any transformers model imports), and the machine's load
beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "models": [sys.executable, "-m", "core", "models"],
    "decode (5 tokens)": [sys.executable, "-m", "core", "decode", "--prompt", "To be", "--max-new-tokens", "5"],
    "floor: import torch": [sys.executable, "-c", "import torch"],
    "floor: import torch, transformers": [sys.executable, "-c", "import torch, transformers.generation"],
    # what from_pretrained needs before it reads a weight: every transformers model class is a PreTrainedModel
    "floor: + transformers' model classes": [sys.executable, "-c",
                                             "import torch, transformers.generation, transformers.modeling_utils"],
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, command in COMMANDS.items():
        timed(command)  # warm-up
    for _ in range(args.reps):
        for name, command in COMMANDS.items():
            times[name].append(timed(command))
    for name, values in times.items():
        print(f"{name:<40} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
