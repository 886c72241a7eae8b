"""Fair sharing through a real server and Chromium: K heavy tabs from one visitor, then one light visitor.

    .venv/bin/python benchmarks/bench_fairness.py [--tabs 1 3 6] [--app-dir PATH]

The heavy visitor (127.0.0.1) opens K Compare tabs at once, each a distinct link within the request
budget (16 runs of beam(num_beams=4), 200 new tokens, default model). Once the first heavy decode is
running, a second visitor opens a light link (greedy, 20 tokens, a prompt nobody asked for) from
127.0.0.2, through benchmarks/loopback_proxy.py, so the server sees another client address. It prints
the light visitor's time against the same kind of light link opened alone, and how many heavy tabs were
refused. `--app-dir` runs another checkout's app (e.g. a worktree of an earlier commit: the before figure).
The result cache is off (every tab decodes); between values of K the heavy tabs are closed, which
stops their work.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback_proxy import LoopbackProxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
STATE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    const idle = !!app && app.getAttribute('data-test-script-state') === 'notRunning';
    if (document.body.innerText.includes('will not be computed') || document.body.innerText.includes('server is busy'))
        return 'refused';
    return idle && document.querySelectorAll('table.dp-table').length > 0 ? 'done' : 'waiting';
}"""
HEAVY = "\n".join(["beam(num_beams=4)"] * 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app_dir: Path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PLAYGROUND_RESULT_CACHE_MB": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=app_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/script-health-check", timeout=300)
            return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start in 180 s")


def link(base: str, prompt: str, lineup: str, tokens: int) -> str:
    return f"{base}/compare?max_new_tokens={tokens}&prompt={quote(prompt)}&lineup={quote(lineup)}"


def wait_for(page, timeout: float = 900) -> tuple[str, float]:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate(STATE)
        if state != "waiting":
            return state, time.perf_counter() - started
        time.sleep(0.05)
    return "timeout", time.perf_counter() - started


def light_alone(browser, base: str, tag: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(link(base, f"Light alone {tag}: Romeo.", "greedy", 20), wait_until="commit")
    state, seconds = wait_for(page)
    context.close()
    assert state == "done", state
    return seconds


def one_round(browser, base: str, light_base: str, k: int, tag: str, settle: float) -> tuple[float, int]:
    heavy = browser.new_context(viewport={"width": 1400, "height": 1000})
    tabs = [heavy.new_page() for _ in range(k)]
    for i, tab in enumerate(tabs):
        tab.goto(link(base, f"Heavy {tag} tab {i}: To be, or not to be", HEAVY, 200), wait_until="commit")
    time.sleep(settle)  # the first heavy decode is running, the others are queued or refused
    light = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = light.new_page()
    page.goto(link(light_base, f"Light {tag}: Romeo.", "greedy", 20), wait_until="commit")
    state, seconds = wait_for(page)
    refused = sum(tab.evaluate(STATE) == "refused" for tab in tabs)
    light.close()
    heavy.close()  # closing the tabs drops their queued work and stops the running one
    return (seconds if state == "done" else float("nan")), refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tabs", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--app-dir", type=Path, default=ROOT)
    parser.add_argument("--settle", type=float, default=4.0,
                        help="seconds between opening the heavy tabs and the light visitor (this machine's browser "
                             "loads the heavy tabs' pages on the server's cores meanwhile)")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds between rounds, for closed tabs' work to stop")
    args = parser.parse_args()
    proc, port = start_server(args.app_dir.resolve())
    base = f"http://127.0.0.1:{port}"
    proxy = LoopbackProxy(port, "127.0.0.2")
    print(f"app: {args.app_dir}; cores {len(os.sched_getaffinity(0))}; load before {os.getloadavg()}")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=FLAGS)
            alone = [light_alone(browser, proxy.url, f"warm-up {i}") for i in range(3)]
            solo = sorted(alone)[1]
            print(f"light link alone (from 127.0.0.2): median {solo:.2f} s of {[round(a, 2) for a in alone]}; "
                  f"load {os.getloadavg()[0]:.2f}")
            for k in args.tabs:
                seconds, refused = one_round(browser, base, proxy.url, k, f"K{k}", args.settle)
                print(f"K={k} heavy tabs from 127.0.0.1: light visitor {seconds:.2f} s = {seconds / solo:.1f}x alone; "
                      f"heavy tabs refused {refused}/{k}; load {os.getloadavg()[0]:.2f}", flush=True)
                time.sleep(args.drain)
            browser.close()
    finally:
        proxy.close()
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
