"""The vLLM backend against the local engine, same model, same machine, one run.

    .venv/bin/python benchmarks/bench_vllm.py [--reps 3] [--max-new-tokens 40] [--sessions 8]
        [--server URL]   # an already running server (default: start one with scripts/vllm_server.sh)

Two figures, each a ratio (local time / vLLM time, > 1 means vLLM is faster), the median over repeats
of each repeat's own pair, with the machine's load printed beside them:
- the Compare line-up: the default line-up less the run vLLM cannot do (beam + no-repeat-n-gram),
  local as one batch, vLLM as concurrent requests;
- N sessions at once, each its own prompt: the local app decodes one request at a time (its decoding
  slots), so its N sessions are N line-ups one after another; vLLM gets all N line-ups at once.
Greedy and beam runs are checked to give the same tokens on both backends.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.backends.vllm import connect  # noqa: E402
from core.playground import Playground, default_lineup  # noqa: E402

MODEL = "shakespeare-gpt2"
PROMPTS = ["ROMEO.\n", "To be, or not to be", "Enter the King, with his train.", "O, what a noble mind is here",
           "HAMLET. Speak the speech, I pray you,", "JULIET. Wilt thou be gone?", "KING LEAR. Blow, winds,",
           "MACBETH. Is this a dagger which I see"]


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--server", default=None)
    args = parser.parse_args()

    port = None
    url = args.server
    if url is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        started = time.perf_counter()
        url = subprocess.run(["bash", str(ROOT / "scripts/vllm_server.sh"), "start", str(ROOT / "assets/models" / MODEL),
                              str(port)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(f"vLLM server ready in {time.perf_counter() - started:.0f} s at {url}")
    try:
        local = Playground.load(MODEL, device="cpu")
        remote = connect(url, MODEL)
        lineup = [s for s in default_lineup(args.max_new_tokens, seed=0) if remote.unsupported(s) is None]
        print(f"{len(lineup)} runs: {', '.join(s.name() for s in lineup)}; {args.max_new_tokens} new tokens; {load()}")
        # warm both (first requests compile / fill caches)
        local.compare(PROMPTS[0], lineup)
        remote.compare(PROMPTS[0], lineup)

        same = []
        for prompt in PROMPTS[:3]:
            a, b = local.compare(prompt, lineup), remote.compare(prompt, lineup)
            same += [x.best.ids == y.best.ids for x, y, s in zip(a.runs, b.runs, lineup) if not s.do_sample]
        print(f"greedy and beam runs with the same tokens on both backends: {sum(same)}/{len(same)}")

        rows = {"lineup": [], "sessions": []}
        prompts = (PROMPTS * ((args.sessions + len(PROMPTS) - 1) // len(PROMPTS)))[:args.sessions]
        for rep in range(args.reps):
            t_local, _ = timed(lambda: local.compare(PROMPTS[rep % len(PROMPTS)], lineup))
            t_remote, _ = timed(lambda: remote.compare(PROMPTS[rep % len(PROMPTS)], lineup))
            rows["lineup"].append((t_local, t_remote, load()))
            t_local_n, _ = timed(lambda: [local.compare(p, lineup) for p in prompts])
            with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
                t_remote_n, _ = timed(lambda: list(pool.map(lambda p: remote.compare(p, lineup), prompts)))
            rows["sessions"].append((t_local_n, t_remote_n, load()))
            print(f"rep {rep}: line-up local {t_local:.2f} s, vLLM {t_remote:.2f} s; {args.sessions} sessions "
                  f"local {t_local_n:.2f} s (one after another), vLLM {t_remote_n:.2f} s (at once); {load()}")
        for name, pairs in rows.items():
            ratio = statistics.median(a / b for a, b, _ in pairs)
            print(f"{name:<9} local/vLLM = {ratio:.2f}x  (median of {len(pairs)} pair ratios)")
        out = ROOT / "benchmarks" / "results"
        out.mkdir(exist_ok=True)
        (out / "vllm.json").write_text(json.dumps({"args": vars(args), "same_tokens": [sum(same), len(same)],
                                                   **rows}, indent=1))
    finally:
        if port is not None:
            subprocess.run(["bash", str(ROOT / "scripts/vllm_server.sh"), "stop", str(port)], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
