"""One real browser: `streamlit run` on a free localhost port, Debian's headless chromium via Playwright.

Set SCREENSHOT_DIR to keep a screenshot of every page (that is how the pages were looked at).
"""

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from conftest import machine_names_in

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
PAGES = ["compare", "step_through", "sampling_lab", "beam_search", "models_and_tokens", "score_a_text", "report",
         "pipeline", "speculative_decoding", "watermark_lab"]
# what each page shows last, and how many: the page has finished when they are all there
READY = {"step_through": ('[data-testid="stDataFrame"]', 1), "sampling_lab": (".js-plotly-plot", 4),
         "beam_search": (".js-plotly-plot", 1), "models_and_tokens": (".js-plotly-plot", 1),
         "score_a_text": ('[data-testid="stDataFrame"]', 1), "report": (".js-plotly-plot", 2),
         "pipeline": (".js-plotly-plot", 2), "watermark_lab": (".js-plotly-plot", 3),
         "speculative_decoding": (".js-plotly-plot", 1)}
# the download buttons of the other pages, and the expander each sits in (None: on the page itself)
DOWNLOADS = {"step_through": (None, ["Download as one HTML page"]),
             "beam_search": (None, ["Download this page as one HTML file"]),
             "report": ("Export", ["CSV (the table)", "JSON (figures and samples)"]),
             "pipeline": (None, ["JSON"])}
LINEUP = ["greedy", "beam 5", "beam 5 + no-repeat 2", "temperature 0.5", "temperature 1.0", "temperature 2.0",
          "top-k 50", "top-p 0.9"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log, env=None):
    """`streamlit run` on a free localhost port until the block ends; yields (url, port)."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
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
        yield url, port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("streamlit") / "server.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `bash scripts/test.sh` installs Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def settled(page, timeout=180_000):
    """Wait until Streamlit's script run is over: the app root says so in data-test-script-state
    ("running" while a script runs, "notRunning" once it is done), and it stays over for half a second."""
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            const done = app && app.getAttribute('data-test-script-state') === 'notRunning';
            if (!done) { window.__settledSince = null; return false; }
            window.__settledSince = window.__settledSince || Date.now();
            return Date.now() - window.__settledSince > 500;
        }""", timeout=timeout, polling=100)


def assert_clean(page):
    """No exception box, no dialog (Streamlit's "page not found" is one), no traceback text."""
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[role="dialog"]').count() == 0, page.locator('[role="dialog"]').first.inner_text()
    assert page.get_by_text("Traceback").count() == 0


def shoot(page, name):
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_compare_runs_the_lineup_in_a_real_browser(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/compare?max_new_tokens=24&prompt=Romeo.%0A")
    settled(page)
    assert_clean(page)
    for name in LINEUP:
        assert page.get_by_role("heading", name=name, exact=True).count() == 1, name
    chart = page.locator('[data-testid="stImage"] img')  # coherence vs diversity: an SVG drawn on the server
    chart.wait_for(timeout=60_000)
    svg = base64.b64decode(chart.get_attribute("src").split(",", 1)[1]).decode()
    assert svg.count('class="dp-point"') == len(LINEUP) and chart.bounding_box()["height"] > 200
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")  # the browser decoded and drew it
    table = page.locator("table.dp-table")  # the figures table
    assert table.count() == 1 and table.locator("tbody tr").count() == len(LINEUP)
    assert table.locator("th").first.inner_text() == "run"
    last, main = table.locator("th").last.bounding_box(), page.locator('[data-testid="stMain"]').bounding_box()
    assert last["x"] + last["width"] <= main["x"] + main["width"], "the table's last column is cut off"
    # hovering a token shows its card of alternatives
    token = page.locator(".dp-tok").first
    token.hover()
    card = token.locator(".dp-card")
    assert card.is_visible() and "alternatives" in card.inner_text().lower()
    shoot(page, "1_compare")
    # the exports are built on click: download the JSON and the HTML page for real and read them
    # the recipe's code view is drawn once the expander opens (its highlighter is not loaded before)
    assert page.locator('[data-testid="stCode"]').count() == 0
    page.get_by_text("Export and reproduce").click()
    page.wait_for_timeout(100)
    settled(page)
    code = page.locator('[data-testid="stCode"]')
    code.wait_for(timeout=60_000)
    assert ".generate(" in code.inner_text() and "shakespeare-gpt2" in code.inner_text()
    files = download(page, ["JSON", "CSV", "Markdown", "HTML page", "Recipe"], tmp_path)
    data = json.loads(files["JSON"].read_text())
    assert [r["name"] for r in data["runs"]] == LINEUP and data["recipe"]["model"] == "shakespeare-gpt2"
    assert "--model PATH" in files["Recipe"].read_text()
    page.close()
    check_exported_page_offline(browser, files["HTML page"], data)


def download(page, buttons, folder) -> dict[str, Path]:
    """Click each download button, save what the browser gets, and search it for this machine's folders
    and names: no export may name the machine that made it (issue 24)."""
    files = {}
    for name in buttons:
        got = None
        for _ in range(3):  # a safety net: before Compare's downloads stopped rerunning the page, a click could be lost
            settled(page)  # a download click reruns the page: click the next button once it is drawn again
            try:
                with page.expect_download(timeout=20_000) as download:
                    page.get_by_role("button", name=name, exact=True).click()
                got = download.value
                break
            except PlaywrightTimeout:
                continue
        assert got is not None, f"the {name} button gave no download in three clicks"
        files[name] = folder / got.suggested_filename
        got.save_as(files[name])
        assert files[name].stat().st_size > 0, name
    leaks = {name: found for name, path in files.items() if (found := machine_names_in(path.read_bytes()))}
    assert not leaks, leaks
    return files


def check_exported_page_offline(browser, path, data):
    """The exported file opens from disk with the network off: tokens, hover cards and charts work."""
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.goto(path.as_uri())
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot .main-svg").count() >= 1  # plotly drew, from the inlined bundle
    tokens = page.locator(".dp-tok")
    assert tokens.count() == sum(len(r["steps"]) for r in data["runs"])
    tokens.nth(3).hover()
    assert tokens.nth(3).locator(".dp-card").is_visible()
    assert not requests, requests
    shoot(page, "exported")
    context.close()


@pytest.mark.parametrize("path", ["", "compare"])
def test_the_first_page_loads_at_both_addresses(server, browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/{path}?max_new_tokens=4&lineup=greedy")
    settled(page)
    assert_clean(page)
    assert page.get_by_role("heading", name="Compare decoding strategies").count() == 1
    assert page.get_by_role("heading", name="greedy", exact=True).count() == 1
    page.close()


def test_a_link_cannot_inject_markdown_or_crash_a_page(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    evil = "![pwned](http://127.0.0.1:9/x.png) **bold** :material/home: <b>tag</b>"
    page.goto(f"{server}/step_through?max_new_tokens=6&model={quote(evil)}&branches=abc,0:99999999,1:2:3&seed=-4")
    settled(page)
    assert_clean(page)
    alerts = page.locator('[data-testid="stAlert"]')
    shown = " ".join(alerts.all_inner_texts())
    assert "![pwned](http://127.0.0.1:9/x.png) **bold** :material/home:" in shown  # echoed as text ...
    assert alerts.locator("img").count() == 0 and alerts.locator("strong, b").count() == 0  # ... not rendered
    assert "not step:token_id" in shown and "outside" in shown
    page.close()


@pytest.mark.parametrize("path", PAGES[1:])
def test_other_pages_render_in_a_real_browser(server, browser, path, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/{path}?max_new_tokens=16")
    settled(page)
    assert_clean(page)
    selector, count = READY[path]
    page.locator(selector).nth(count - 1).wait_for(timeout=60_000)  # charts draw after the script ends
    shoot(page, f"{PAGES.index(path) + 1}_{path}")
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text("Model", exact=True).count() == 1
    assert sidebar.get_by_text("Score a text").count() == 1  # the page links are drawn on every page
    if path in DOWNLOADS:
        expander, buttons = DOWNLOADS[path]
        if expander:
            page.get_by_text(expander, exact=True).click()
        download(page, buttons, tmp_path)
    page.close()


def test_a_compare_row_opens_its_pipeline_in_the_same_session(server, browser):
    """Compare's links carry the run's whole state into the pipeline page, also when this session has shown that
    page before with other values (a link then replaces them); and Compare, visited again, still has its own."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    lineup = quote("greedy\nsample(repetition_penalty=1.3,top_k=20,top_p=0.9)")
    page.goto(f"{server}/compare?max_new_tokens=12&prompt=Romeo.%0A&seed=4&lineup={lineup}")
    settled(page)
    links = page.get_by_text("Its pipeline, step by step")
    assert links.count() == 2
    links.nth(1).click()
    # the new page's run may start after `settled` saw the old one end: wait for what it shows
    page.get_by_role("heading", name=re.compile(r"^Run 1: top-k 20, top-p 0\.9 \+ repetition penalty 1\.3 · step 0 of \d+$")
                     ).wait_for(timeout=60_000)
    settled(page)
    assert_clean(page)
    cells = page.locator("table.dp-table tbody tr td:nth-child(3)").all_inner_texts()
    assert cells == ["raw", "repetition_penalty", "top_k", "top_p"]
    assert "run=1" in page.url and "seed=4" in page.url
    page.locator('[data-testid="stSidebar"]').get_by_text("Compare", exact=True).click()
    page.get_by_text("Its pipeline, step by step").first.wait_for(timeout=60_000)  # Compare with its line-up again
    settled(page)
    assert_clean(page)
    page.get_by_text("Its pipeline, step by step").first.click()  # the greedy row, into the page seen before
    page.get_by_role("heading", name=re.compile(r"^Run 0: greedy · step 0 of \d+$")).wait_for(timeout=60_000)
    settled(page)
    assert page.locator("table.dp-table tbody tr td:nth-child(3)").all_inner_texts() == ["raw"]
    page.close()
