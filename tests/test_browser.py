"""One real browser: `streamlit run` on a free localhost port, Debian's headless chromium via Playwright.

Set SCREENSHOT_DIR to keep a screenshot of every page (that is how the pages were looked at).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
PAGES = ["compare", "step_through", "sampling_lab", "beam_search", "models_and_tokens", "score_a_text"]
# what each page shows last, and how many: the page has finished when they are all there
READY = {"step_through": ('[data-testid="stDataFrame"]', 1), "sampling_lab": (".js-plotly-plot", 4),
         "beam_search": (".js-plotly-plot", 1), "models_and_tokens": (".js-plotly-plot", 1),
         "score_a_text": ('[data-testid="stDataFrame"]', 1)}
LINEUP = ["greedy", "beam 5", "beam 5 + no-repeat 2", "temperature 0.5", "temperature 1.0", "temperature 2.0",
          "top-k 50", "top-p 0.9"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "streamlit did not come up in 90 s:\n" + log.read_text()
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `bash scripts/test.sh` installs Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def settled(page):
    """Wait until the script run is over: Streamlit shows its status widget while a script runs."""
    page.wait_for_timeout(1000)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=180_000)
    page.wait_for_timeout(500)


def shoot(page, name):
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_compare_runs_the_lineup_in_a_real_browser(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/compare?max_new_tokens=24&prompt=Romeo.%0A")
    page.get_by_role("heading", name="top-p 0.9").wait_for(timeout=120_000)
    settled(page)
    for name in LINEUP:
        assert page.get_by_role("heading", name=name, exact=True).count() == 1, name
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() >= 1
    assert page.get_by_text("sequence log-prob").count() == len(LINEUP)
    assert page.get_by_text("Traceback").count() == 0
    shoot(page, "1_compare")
    # the exports are built on click: download the JSON for real and read it
    page.get_by_text("Export and reproduce").click()
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="JSON").click()
    data = json.loads(Path(download.value.path()).read_text())
    assert [r["name"] for r in data["runs"]] == LINEUP and data["recipe"]["model"] == "shakespeare-gpt2"
    page.close()


@pytest.mark.parametrize("path", PAGES[1:])
def test_other_pages_render_in_a_real_browser(server, browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/{path}?max_new_tokens=16")
    selector, count = READY[path]
    page.locator(selector).nth(count - 1).wait_for(timeout=180_000)
    settled(page)
    shoot(page, f"{PAGES.index(path) + 1}_{path}")
    assert page.locator('[data-testid="stException"]').count() == 0
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text("Model", exact=True).count() == 1
    assert sidebar.get_by_text("Score a text").count() == 1  # the page links are drawn on every page
    page.close()
