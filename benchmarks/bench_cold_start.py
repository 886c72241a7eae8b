"""Cold start: from `streamlit run` to the Compare line-up on screen, with the shipped default model.

    .venv/bin/python benchmarks/bench_cold_start.py [--max-new-tokens 40] [--reps 2]

Times, per fresh server: until the server answers its health check, until the page's first paint
(title), and until all eight runs and the chart are shown; then a widget change that needs no new
decoding (the raw/processed toggle) until the page has settled again; and a second visitor's first
result on the running server (imports done, model cached, a new prompt decoded).
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

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(browser, max_new_tokens: int) -> dict:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        health = time.perf_counter() - started
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/compare?max_new_tokens={max_new_tokens}")
        page.locator("h1").first.wait_for(timeout=120_000)
        title = time.perf_counter() - started
        page.get_by_role("heading", name="top-p 0.9").wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        result = time.perf_counter() - started
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)
        toggled = time.perf_counter()
        page.get_by_text("processed", exact=True).click()
        page.wait_for_timeout(100)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=120_000)
        rerender = time.perf_counter() - toggled
        page.close()
        # a second visitor on the running server: imports done, model cached, a new prompt to decode
        visitor = time.perf_counter()
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/compare?max_new_tokens={max_new_tokens}&prompt=Hamlet.%0A")
        page.get_by_role("heading", name="top-p 0.9").wait_for(timeout=120_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        warm = time.perf_counter() - visitor
        page.close()
        return {"health": health, "title": title, "first_result": result, "toggle_rerender": rerender,
                "new_visitor_result": warm}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=FLAGS)
        runs = [one(browser, args.max_new_tokens) for _ in range(args.reps)]
        browser.close()
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:<16} median {statistics.median(values):6.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
