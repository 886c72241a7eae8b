"""Cold start and shared results, through a real server and a real browser, on the shipped default model.

    .venv/bin/python benchmarks/bench_cold_start.py [--reps 2] [--no-warm-up]

Per fresh server, started as `scripts/run_app.sh` starts it (OMP_WAIT_POLICY=PASSIVE, then
scripts/warm_up.py), it times:
- health: `streamlit run` until the server answers;
- ready: until the warm-up has run the default page (the moment `run_app.sh` says it is warm);
- first visitor: opening `/` after that, until the Compare results (every run and the chart) show;
- same link, second visitor: a new browser (empty cache) on the same address, until its results show;
- same link, returning browser: a new session in a browser that has loaded the app before (its HTTP
  cache holds Streamlit's code), until its results show;
- new link: a prompt nobody asked for yet (a real decode, imports and model already warm);
- toggle: raw -> processed, until the page has settled (no decoding).
With --no-warm-up the first visitor does the warming itself (the old behaviour), for comparison.
Once per run it also times the framework's floor: a fresh server whose whole page is a title and one
line, opened in a new browser, until that line shows. No page of ours can load faster than that.
The machine's load is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelectorAll('[data-testid="stImage"] img').length > 0;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


VIEWPORT = {"width": 1400, "height": 1000}
FLOOR_PAGE = 'import streamlit as st\nst.title("Floor")\nst.write("one line")\n'
FLOOR_SHOWN = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelectorAll('[data-testid="stMarkdownContainer"]').length > 0;
}"""


def results_shown(browser, url: str, shown: str = SETTLED, context=None) -> float:
    """Seconds from opening `url` until `shown` holds; a new browser context (empty cache) unless one is given."""
    started = time.perf_counter()
    page = context.new_page() if context else browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.wait_for_function(shown, timeout=300_000, polling=50)
    seconds = time.perf_counter() - started
    page.close()
    return seconds


def start_server(script: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"streamlit exited with {proc.returncode} before answering")
            time.sleep(0.05)


def floor(browser, reps: int) -> dict[str, list[float]]:
    """A one-line page on a fresh server: the framework's own load time, in new browsers and in a returning one."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "floor.py").write_text(FLOOR_PAGE)
        proc, url = start_server("floor.py", Path(folder))
        try:
            results_shown(browser, url, FLOOR_SHOWN)  # the server's first run
            fresh = [results_shown(browser, url, FLOOR_SHOWN) for _ in range(reps)]
            returning = browser.new_context(viewport=VIEWPORT)
            results_shown(browser, url, FLOOR_SHOWN, context=returning)
            again = [results_shown(browser, url, FLOOR_SHOWN, context=returning) for _ in range(reps)]
            returning.close()
            return {"floor: one-line page, new browser": fresh, "floor: one-line page, returning": again}
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def one(browser, warm_up: bool) -> dict:
    started = time.perf_counter()
    proc, url = start_server("streamlit_app.py", ROOT)
    try:
        figures = {"health": time.perf_counter() - started}
        if warm_up:
            subprocess.run([sys.executable, "scripts/warm_up.py", url.rsplit(":", 1)[1]], cwd=ROOT, check=True,
                           stderr=subprocess.DEVNULL, timeout=300)
        figures["ready"] = time.perf_counter() - started
        figures["first visitor"] = results_shown(browser, f"{url}/")
        figures["same link, 2nd visitor"] = results_shown(browser, f"{url}/")
        returning = browser.new_context(viewport=VIEWPORT)
        results_shown(browser, f"{url}/", context=returning)  # this browser's first visit fills its cache
        figures["same link, returning browser"] = results_shown(browser, f"{url}/", context=returning)
        returning.close()
        figures["new link"] = results_shown(browser, f"{url}/compare?prompt=Hamlet.%0A")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/")
        page.wait_for_function(SETTLED, timeout=300_000, polling=50)
        toggled = time.perf_counter()
        page.get_by_text("processed", exact=True).click()
        page.wait_for_timeout(100)
        page.wait_for_function(SETTLED, timeout=300_000, polling=50)
        figures["toggle re-render"] = time.perf_counter() - toggled
        page.close()
        return figures
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--no-warm-up", action="store_true")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}; warm-up {'off' if args.no_warm_up else 'on'}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=FLAGS)
        runs = [one(browser, not args.no_warm_up) for _ in range(args.reps)]
        floors = floor(browser, 3)
        browser.close()
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:<36} median {statistics.median(values):6.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")
    for key, values in floors.items():
        print(f"{key:<36} median {statistics.median(values):6.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
