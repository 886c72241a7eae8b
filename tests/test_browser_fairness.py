"""Fair sharing in a real browser: a second visitor is served between the first visitor's queued heavy
requests, and the first visitor's request past the bound is refused in one sentence.

The second visitor reaches the server from 127.0.0.2 through benchmarks/loopback_proxy.py (Chromium
always connects from 127.0.0.1), so the app sees two client addresses. Nothing here is timed: the test
checks the order in which pages finished."""

import sys
import time
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from test_browser import CHROMIUM, FLAGS, ROOT, shoot, streamlit_server

sys.path.insert(0, str(ROOT / "benchmarks"))
from loopback_proxy import LoopbackProxy  # noqa: E402

HEAVY = quote("\n".join(["beam(num_beams=4)"] * 16))
STATE = """() => {
    const text = document.body.innerText;
    if (text.includes('will not be computed')) return 'refused';
    const app = document.querySelector('[data-testid="stApp"]');
    const idle = !!app && app.getAttribute('data-test-script-state') === 'notRunning';
    return idle && document.querySelectorAll('table.dp-table').length > 0 ? 'done' : 'waiting';
}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A server of its own, its result cache off so that every tab decodes, and a second address to it."""
    log = tmp_path_factory.mktemp("streamlit-fair") / "server.log"
    env = {"PLAYGROUND_RESULT_CACHE_MB": "1", "PLAYGROUND_WAITING_PER_VISITOR": "2"}
    with streamlit_server(log, env) as (url, port):
        proxy = LoopbackProxy(port, "127.0.0.2")
        try:
            yield url, proxy.url
        finally:
            proxy.close()


def states(pages):
    return [p.evaluate(STATE) for p in pages]


def test_a_second_visitor_is_served_between_the_first_visitors_heavy_requests(app):
    direct, via_second_address = app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        first = browser.new_context(viewport={"width": 1400, "height": 1000})
        heavy = []
        for i in range(4):  # one runs, two wait, the fourth is past the bound of 2 waiting
            page = first.new_page()
            page.goto(f"{direct}/compare?max_new_tokens=200&prompt={quote(f'Heavy {i}: To be')}&lineup={HEAVY}",
                      wait_until="commit")
            page.wait_for_timeout(1500)  # in order: the first is decoding before the next arrives
            heavy.append(page)
        second = browser.new_context(viewport={"width": 1400, "height": 1000})
        light = second.new_page()
        light.goto(f"{via_second_address}/compare?max_new_tokens=20&prompt=A%20light%20one.&lineup=greedy",
                   wait_until="commit")
        deadline = time.monotonic() + 300
        while light.evaluate(STATE) == "waiting":
            assert time.monotonic() < deadline, "the light visitor was never served"
            light.wait_for_timeout(100)
        assert light.evaluate(STATE) == "done"
        seen = states(heavy)
        # served before the first visitor's queue: its two queued requests had not finished (first come,
        # first served would have run all three heavy ones first)
        assert seen.count("refused") == 1 and seen.count("waiting") >= 2, seen
        refused = heavy[seen.index("refused")]
        alert = refused.locator('[data-testid="stAlert"]')
        assert "You already have 2 requests waiting" in alert.inner_text()
        shoot(refused, "refused_visitor")
        shoot(light, "light_visitor_served")
        first.close()  # the first visitor leaves: its running and queued work stops
        second.close()
        browser.close()
