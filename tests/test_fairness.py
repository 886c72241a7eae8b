"""Fair sharing of the decode slots between visitors (core/serving.DecodeSlots), with fake work.

The clock is a fake one the tests advance, so service order does not depend on how fast this machine is;
nothing here asserts a duration."""

import ipaddress
import random
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from core import serving
from core.serving import Cancelled, DecodeSlots, Refused


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def start(slots, visitor, work, **kwargs):
    """Run `work` through the slots on a thread of its own; the thread's outcome lands in `box`."""
    box = {}

    def target():
        try:
            box["value"] = slots.run(work, visitor=visitor, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test inspects what the caller would see
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def holder(clock, log, name, release: threading.Event, seconds=1.0):
    """Work that holds its slot until released, and has used `seconds` of the fake clock by then."""
    def work():
        log.append(name)
        release.wait(10)
        clock.now += seconds
        return name
    return work


def test_a_newcomer_is_served_before_another_visitors_queue():
    clock, log = Clock(), []
    slots = DecodeSlots(1, clock=clock)
    gate = threading.Event()
    threads = [start(slots, "heavy", holder(clock, log, "heavy-1", gate))]
    wait_until(lambda: log == ["heavy-1"])
    threads += [start(slots, "heavy", holder(clock, log, f"heavy-{i}", gate)) for i in (2, 3)]
    wait_until(lambda: slots.waiting == 2)
    threads.append(start(slots, "light", holder(clock, log, "light", gate)))
    wait_until(lambda: slots.waiting == 3)
    gate.set()
    for thread, box in threads:
        thread.join(10)
        assert "error" not in box
    assert log == ["heavy-1", "light", "heavy-2", "heavy-3"]


def test_two_busy_visitors_take_turns():
    clock, log = Clock(), []
    slots = DecodeSlots(1, clock=clock)
    gate = threading.Event()
    threads = [start(slots, "a", holder(clock, log, "a1", gate))]
    wait_until(lambda: log == ["a1"])
    for name in ("a2", "b1", "b2"):  # a's second request arrives before b's first
        threads.append(start(slots, name[0], holder(clock, log, name, gate)))
        wait_until(lambda n=len(threads): slots.waiting == n - 1)
    gate.set()
    for thread, _ in threads:
        thread.join(10)
    assert log == ["a1", "b1", "a2", "b2"]


def stepper(slots, clock, log, name, steps, at_step=None):
    """A decode of `steps` steps, each 0.1 s of fake time, with a step boundary after each; `at_step`
    (step, callback) runs a callback inside one step (to let another visitor arrive mid-run)."""
    def work():
        for k in range(steps):
            log.append(f"{name}{k}")
            clock.now += 0.1
            if at_step and at_step[0] == k:
                at_step[1]()
            slots.checkpoint()
        return name
    return work


def test_a_long_decode_yields_at_a_step_boundary_and_resumes():
    clock, log = Clock(), []
    slots = DecodeSlots(1, quantum=0.25, clock=clock)
    arrived = threading.Event()
    light = {}

    def let_the_light_visitor_in():
        light["run"] = start(slots, "light", stepper(slots, clock, log, "L", 3))
        wait_until(lambda: slots.waiting == 1)
        arrived.set()

    heavy = start(slots, "heavy", stepper(slots, clock, log, "H", 6, at_step=(0, let_the_light_visitor_in)))
    heavy[0].join(10)
    light["run"][0].join(10)
    assert heavy[1] == {"value": "H"} and light["run"][1] == {"value": "L"}
    # the heavy decode had its quantum (0.3 s > 0.25 s), then the light one ran whole, then the heavy resumed
    assert log == ["H0", "H1", "H2", "L0", "L1", "L2", "H3", "H4", "H5"]


def test_a_visitor_alone_never_yields_to_its_own_requests():
    clock, log = Clock(), []
    slots = DecodeSlots(1, quantum=0.0, clock=clock)
    second = {}

    def queue_own():
        second["run"] = start(slots, "v", stepper(slots, clock, log, "B", 2))
        wait_until(lambda: slots.waiting == 1)

    first = start(slots, "v", stepper(slots, clock, log, "A", 4, at_step=(0, queue_own)))
    first[0].join(10)
    second["run"][0].join(10)
    assert log == ["A0", "A1", "A2", "A3", "B0", "B1"]


def test_bounds_refuse_at_once_and_compute_nothing():
    clock, log = Clock(), []
    slots = DecodeSlots(1, per_visitor=2, max_waiting=4, clock=clock)
    gate = threading.Event()
    threads = [start(slots, "a", holder(clock, log, "a1", gate))]
    wait_until(lambda: log == ["a1"])
    threads += [start(slots, "a", holder(clock, log, n, gate)) for n in ("a2", "a3")]
    wait_until(lambda: slots.waiting == 2)
    with pytest.raises(Refused, match="You already have 2 requests waiting.*will not be computed"):
        slots.run(lambda: log.append("a4"), visitor="a")
    threads += [start(slots, v, holder(clock, log, v, gate)) for v in ("b", "c")]
    wait_until(lambda: slots.waiting == 4)
    with pytest.raises(Refused, match="busy: 4 requests are waiting; try again in a moment"):
        slots.run(lambda: log.append("d"), visitor="d")
    gate.set()
    for thread, _ in threads:
        thread.join(10)
    assert "a4" not in log and "d" not in log and sorted(log) == ["a1", "a2", "a3", "b", "c"]
    assert slots.waiting == 0 and slots.waiting_for("a") == 0


def test_the_bounds_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_WAITING_PER_VISITOR", "5")
    monkeypatch.setenv("PLAYGROUND_MAX_WAITING", "nonsense")
    assert serving.queue_bounds() == {"per_visitor": 5, "max_waiting": serving.DEFAULT_MAX_WAITING}
    monkeypatch.setenv("PLAYGROUND_WAITING_PER_VISITOR", "-3")
    assert serving.queue_bounds()["per_visitor"] == 1


def test_a_gone_visitor_is_dropped_before_it_starts_and_stopped_while_running():
    clock, log = Clock(), []
    slots = DecodeSlots(1, clock=clock)
    alive = {"running": True, "queued": True}

    def long_decode():  # the fake clock stands still: it never reaches its quantum, so it never yields
        for k in range(2000):
            log.append(k)
            time.sleep(0.002)
            slots.checkpoint()

    running = start(slots, "a", long_decode, alive=lambda: alive["running"])
    wait_until(lambda: len(log) > 3)
    queued = start(slots, "b", lambda: log.append("never"), alive=lambda: alive["queued"])
    wait_until(lambda: slots.waiting == 1)
    alive["queued"] = False  # its tab was closed before its turn
    wait_until(lambda: not queued[0].is_alive())
    assert isinstance(queued[1]["error"], Cancelled) and "never" not in log
    alive["running"] = False  # the running decode's tab was closed: it stops at its next step
    running[0].join(10)
    assert isinstance(running[1]["error"], Cancelled) and len(log) < 2000
    assert slots.run(lambda: "the slot is free again", visitor="c") == "the slot is free again"


def test_a_waiting_script_that_is_stopped_gives_its_place_up():
    clock, log = Clock(), []
    slots = DecodeSlots(1, clock=clock)
    gate = threading.Event()
    first = start(slots, "a", holder(clock, log, "a", gate))
    wait_until(lambda: log == ["a"])

    def rerun(ahead):  # Streamlit stops a script this way when its visitor changes a widget
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        slots.run(lambda: log.append("never"), rerun, visitor="b")
    assert slots.waiting == 0
    gate.set()
    first[0].join(10)
    assert log == ["a"]


def test_many_threads_enqueueing_and_cancelling_at_random_never_deadlock():
    slots = DecodeSlots(2, per_visitor=2, max_waiting=20, quantum=0.001)
    busy, most, lock = [0], [0], threading.Lock()
    outcomes = {"done": 0, "refused": 0, "cancelled": 0}
    stop_at = time.monotonic() + 3.0

    def visitor_loop(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            dead_at = time.monotonic() + rng.uniform(0, 0.05) if rng.random() < 0.3 else float("inf")

            def work():
                for _ in range(rng.randint(1, 5)):
                    with lock:  # computing: between two step boundaries, holding a slot
                        busy[0] += 1
                        most[0] = max(most[0], busy[0])
                    time.sleep(rng.uniform(0, 0.003))
                    with lock:
                        busy[0] -= 1
                    slots.checkpoint()

            try:
                slots.run(work, visitor=f"v{seed % 7}", alive=lambda d=dead_at: time.monotonic() < d)
                kind = "done"
            except Refused:
                kind = "refused"
            except Cancelled:
                kind = "cancelled"
            with lock:
                outcomes[kind] += 1

    threads = [threading.Thread(target=visitor_loop, args=(i,), daemon=True) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a thread is stuck: a deadlock or a lost wake-up"
    assert most[0] <= 2 and busy[0] == 0
    assert slots.waiting == 0 and not slots._running and not slots._used
    assert all(outcomes.values()), outcomes


def test_results_do_not_depend_on_how_runs_were_interleaved():
    """Two real decodes on the default model, forced to hand the slot back and forth at every step,
    give exactly what each gives alone."""
    from core.decoding.settings import DecodeSettings
    from core.playground import Playground

    pg = Playground.load("shakespeare-gpt2", device="cpu")
    lineups = {"a": [DecodeSettings(strategy="beam", num_beams=3, max_new_tokens=24),
                     DecodeSettings(strategy="sample", temperature=0.9, seed=5, max_new_tokens=24)],
               "b": [DecodeSettings(strategy="sample", top_p=0.8, seed=11, max_new_tokens=24),
                     DecodeSettings(strategy="greedy", max_new_tokens=24)]}
    prompts = {"a": "Romeo.\n", "b": "To be, or not to be"}

    def ids_of(result):
        return [[q.ids for q in r.sequences] for r in result.runs]

    alone = {v: ids_of(pg.compare(prompts[v], lineups[v])) for v in lineups}
    slots = DecodeSlots(1, quantum=0.0)
    switches = []

    def decode(v):
        def on_step(step, ids):
            switches.append(v)
            slots.checkpoint()
        return lambda: ids_of(pg.compare(prompts[v], lineups[v], on_step=on_step))

    threads = {v: start(slots, v, decode(v)) for v in lineups}
    for thread, _ in threads.values():
        thread.join(120)
    assert {v: box["value"] for v, (_, box) in threads.items()} == alone
    changes = sum(x != y for x, y in zip(switches, switches[1:]))
    assert changes >= 4, f"the decodes were not interleaved: {switches}"


# ---- who a visitor is ---------------------------------------------------------------------------

def test_visitor_address_groups_and_trusts_forwarded_for_only_when_configured():
    assert serving.visitor_address(None) == "localhost"
    assert serving.visitor_address("10.1.2.3") == "10.1.2.3"
    assert serving.visitor_address("10.1.2.3", "6.6.6.6") == "10.1.2.3"  # no trusted proxy: header ignored
    assert serving.visitor_address("10.0.0.9", "6.6.6.6, 7.7.7.7", hops=1) == "7.7.7.7"
    assert serving.visitor_address("10.0.0.9", "6.6.6.6, 7.7.7.7", hops=2) == "6.6.6.6"
    assert serving.visitor_address("10.0.0.9", "7.7.7.7", hops=2) == "10.0.0.9"  # shorter than the chain
    assert serving.visitor_address("10.0.0.9", "<script>", hops=1) == "10.0.0.9"
    assert serving.visitor_address("2001:db8::1") == serving.visitor_address("2001:db8::ffff") == "2001:db8::/64"
    assert serving.visitor_address("::ffff:127.0.0.2") == "127.0.0.2"


def test_trusted_proxies_default_to_none(monkeypatch):
    monkeypatch.delenv("PLAYGROUND_TRUSTED_PROXIES", raising=False)
    assert serving.trusted_proxy_hops() == 0
    monkeypatch.setenv("PLAYGROUND_TRUSTED_PROXIES", "1")
    assert serving.trusted_proxy_hops() == 1


@settings(max_examples=300, deadline=None)
@given(peer=st.one_of(st.none(), st.text(max_size=60), st.ip_addresses().map(str)),
       header=st.one_of(st.none(), st.text(max_size=300)), hops=st.integers(0, 5))
def test_visitor_address_of_hostile_values_is_an_address_or_localhost(peer, header, hops):
    got = serving.visitor_address(peer, header, hops)
    assert got == "localhost" or ipaddress.ip_network(got, strict=False)
    if hops == 0:
        assert got == serving.visitor_address(peer)
