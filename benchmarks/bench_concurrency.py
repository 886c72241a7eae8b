"""Concurrent visitors through a real server: N sessions open Compare at once, each with its own prompt.

    .venv/bin/python benchmarks/bench_concurrency.py [--sessions 1 4 8] [--max-new-tokens 24]
        [--slots N]   # PLAYGROUND_DECODE_SLOTS for the server (default: the app's own plan)

The server runs with its result cache turned off (PLAYGROUND_RESULT_CACHE_MB below one result), so
every session decodes: what is measured is how decoding sessions share the cores, not the cache.
For each N it prints each session's time from opening the page to its results being on screen, and
checks that every session's rendered runs equal that prompt's result when it was decoded alone.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
DONE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelectorAll('table.dp-table').length > 0;
}"""
RUNS = """() => Array.from(document.querySelectorAll('[data-testid="stHtml"]')).map(e => e.innerText)"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(slots: int | None):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PLAYGROUND_RESULT_CACHE_MB": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if slots:
        env["PLAYGROUND_DECODE_SLOTS"] = str(slots)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            urllib.request.urlopen(f"{url}/_stcore/script-health-check", timeout=300)  # imports + model
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start in 120 s")


def visit_together(browser, urls: list[str]) -> tuple[list[float], list[list[str]]]:
    """Open every URL at once; return each page's seconds to results and its rendered runs."""
    pages = [browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in urls]
    started = time.perf_counter()
    for page, url in zip(pages, urls):
        page.goto(url, wait_until="commit")
    finished: dict[int, float] = {}
    deadline = time.monotonic() + 600
    while len(finished) < len(pages) and time.monotonic() < deadline:
        for i, page in enumerate(pages):
            if i not in finished and page.evaluate(DONE):
                finished[i] = time.perf_counter() - started
        time.sleep(0.05)
    rendered = [page.evaluate(RUNS) for page in pages]
    for page in pages:
        page.close()
    return [finished.get(i, float("nan")) for i in range(len(pages))], rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--slots", type=int, default=None)
    args = parser.parse_args()
    proc, base = start_server(args.slots)
    most = max(args.sessions)
    urls = [f"{base}/compare?max_new_tokens={args.max_new_tokens}&prompt={quote(f'Visitor {i}: Romeo.')}"
            for i in range(most)]
    print(f"server slots: {args.slots or 'default plan'}; cores {len(os.sched_getaffinity(0))}; "
          f"load before: {os.getloadavg()}")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=FLAGS)
            alone = []
            solo_times = []
            for url in urls:  # each prompt alone first: the reference output and the solo time
                seconds, rendered = visit_together(browser, [url])
                solo_times.append(seconds[0])
                alone.append(rendered[0])
            print(f"alone, one after another: median {statistics.median(solo_times):.2f} s per session")
            for n in args.sessions:
                seconds, rendered = visit_together(browser, urls[:n])
                same = sum(r == a for r, a in zip(rendered, alone[:n]))
                print(f"N={n}: time to result per session median {statistics.median(seconds):.2f} s, "
                      f"max {max(seconds):.2f} s; identical to alone: {same}/{n}; load {os.getloadavg()[0]:.2f}")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
