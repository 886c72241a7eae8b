"""Serving many visitors from one process: results computed once per link, and decoding slots.

- `SharedResults`: a process-wide, size-bounded LRU cache of results keyed by everything that
  determines them (the model's fingerprint, the inputs, the settings with their seeds). The second
  visitor of a link gets the first one's result; if both arrive together the second waits for the
  first computation instead of starting its own. Cached objects are shared between sessions, so no
  caller may change them (a test holds pages to that).
- `DecodeSlots`: at most `slots` decodes run at once, each with `threads` torch threads, so that
  sessions never oversubscribe the cores (2 sessions with 2 threads each on 2 cores ran 15x slower
  than one after the other). The others wait their visitor's turn (least attained service first, a
  running decode yielding at step boundaries) and can show their place; each visitor may keep only a
  few waiting.
- `visitor_address`: who a visitor is (a client address; a forwarded-for header only when trusted).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from core.errors import PlaygroundError

DEFAULT_CACHE_MB = 256
STEP_BYTES = 10_000  # a traced step in memory: 7.0 KB measured (tracemalloc, default line-up, 64 tokens)
NODE_BYTES = 300  # a beam-tree node


def estimate_bytes(value: Any) -> int:
    """A cheap upper estimate of what a cached value holds: traces by their steps, tensors by nbytes."""
    runs = getattr(value, "runs", None)
    if runs is not None and all(hasattr(r, "sequences") for r in runs):
        steps = sum(len(q.steps) for r in runs for q in r.sequences)
        nodes = sum(len(r.beam_tree or []) for r in runs)
        return 4096 + steps * STEP_BYTES + nodes * NODE_BYTES
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, dict):
        return 256 + sum(estimate_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return 64 + sum(estimate_bytes(v) for v in value)
    tokens = getattr(value, "tokens", None)
    if isinstance(tokens, list):
        return 1024 + 300 * len(tokens)
    return max(64, sys.getsizeof(value))


class SharedResults:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._pending: dict[Any, threading.Event] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = 0

    def get_or_compute(self, key, compute: Callable[[], Any]):
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key][0]
                waiting = self._pending.get(key)
                if waiting is None:
                    self._pending[key] = threading.Event()
                    self.misses += 1
                    break
            waiting.wait(timeout=1.0)  # then look again: the computation may have failed or been stopped
        try:
            value = compute()
            self._store(key, value)
            return value
        finally:
            with self._lock:
                self._pending.pop(key).set()

    def _store(self, key, value) -> None:
        size = estimate_bytes(value)
        if size > self.max_bytes:
            return  # larger than the whole cache: served once, not kept
        with self._lock:
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def values(self) -> list:
        with self._lock:
            return [v for v, _ in self._items.values()]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


class Refused(PlaygroundError):
    """A request that will not be computed (its visitor has enough waiting, or the server is full)."""


class Cancelled(Exception):
    """The visitor of a waiting or running request is gone: its work stops and frees its slot."""


@dataclass(eq=False)
class _Ticket:
    visitor: str
    order: int  # arrival; a visitor's requests are served in this order, a paused one before its later ones
    alive: Callable[[], bool]
    started: float | None = None  # while it holds a slot


class DecodeSlots:
    """At most `slots` decodes at once, shared fairly between visitors.

    Policy: least attained service first. Each visitor (a client address) has an account of the decode
    seconds its requests have used while it had any in the system; a free slot goes to the waiting
    request whose visitor has used least (ties: the earlier request), and a running decode, at each
    step boundary (`checkpoint`), hands its slot over once it has run `quantum` seconds and a waiting
    visitor has used less. A newcomer's account starts at zero, so a light request from a stranger runs
    almost at once, even behind another visitor's queue of heavy ones; two heavy visitors take turns
    a quantum at a time. An account is forgotten when its visitor has nothing left in the system.

    Bounds: a visitor may have `per_visitor` requests waiting (queued or paused) and the server
    `max_waiting` in all; past that `Refused` is raised at once, before any work. Pausing only blocks
    the decoding thread between two steps, so results never depend on how runs were interleaved."""

    def __init__(self, slots: int, *, per_visitor: int = 2, max_waiting: int = 32, quantum: float = 0.2,
                 clock: Callable[[], float] = time.monotonic):
        self.slots = max(1, slots)
        self.per_visitor = max(1, per_visitor)
        self.max_waiting = max(1, max_waiting)
        self.quantum = quantum
        self._clock = clock
        self._waiting: list[_Ticket] = []
        self._running: list[_Ticket] = []
        self._used: dict[str, float] = {}  # decode seconds per visitor with requests in the system
        self._arrivals = itertools.count()
        self._cond = threading.Condition()
        self._local = threading.local()  # the ticket this thread's work runs under

    def run(self, work: Callable[[], Any], on_wait: Callable[[int], None] | None = None, *,
            visitor: str = "anonymous", alive: Callable[[], bool] | None = None):
        """Run `work` in a slot when it is this visitor's turn; while waiting, call on_wait(requests
        ahead) about twice a second. on_wait may raise (Streamlit stops a script that way when its
        visitor changes a widget): the place is given up and nothing is left held. Inside `work`, call
        `checkpoint()` at each step boundary to yield the slot when it is another visitor's turn."""
        with self._cond:
            self._admit(visitor)
            ticket = _Ticket(visitor, next(self._arrivals), alive or (lambda: True))
            self._used.setdefault(visitor, 0.0)
            self._waiting.append(ticket)
        outer = getattr(self._local, "ticket", None)
        try:
            self._acquire(ticket, on_wait)
            self._local.ticket = ticket
            return work()
        finally:
            self._local.ticket = outer
            with self._cond:
                self._leave(ticket)

    def checkpoint(self, on_wait: Callable[[int], None] | None = None) -> None:
        """At a step boundary of the running work: stop if its visitor is gone; hand the slot over if a
        waiting visitor has used less and this one has had its quantum."""
        ticket = getattr(self._local, "ticket", None)
        if ticket is None:
            return
        if not ticket.alive():
            raise Cancelled(ticket.visitor)
        with self._cond:
            now = self._clock()
            if now - ticket.started < self.quantum or not self._should_yield(ticket, now):
                return
            self._stop_clock(ticket, now)
            self._running.remove(ticket)
            self._waiting.append(ticket)
            self._cond.notify_all()
        self._acquire(ticket, on_wait)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def waiting_for(self, visitor: str) -> int:
        with self._cond:
            return sum(t.visitor == visitor for t in self._waiting)

    # ---- under the lock ----

    def _admit(self, visitor: str) -> None:
        mine = sum(t.visitor == visitor for t in self._waiting)
        if mine >= self.per_visitor:
            raise Refused(f"You already have {mine} requests waiting on this server, so this one will not be "
                          "computed; wait for them to finish (or close their tabs), then reload this page.")
        if len(self._waiting) >= self.max_waiting:
            raise Refused(f"The server is busy: {len(self._waiting)} requests are waiting; try again in a moment.")

    def _acquire(self, ticket: _Ticket, on_wait) -> None:
        try:
            while True:
                with self._cond:
                    if not ticket.alive():
                        raise Cancelled(ticket.visitor)
                    if len(self._running) < self.slots and self._next() is ticket:
                        self._waiting.remove(ticket)
                        self._running.append(ticket)
                        ticket.started = self._clock()
                        return
                    ahead = self._ahead(ticket)
                    self._cond.wait(timeout=0.5)
                if on_wait is not None:
                    on_wait(ahead)
        except BaseException:
            with self._cond:
                self._cond.notify_all()
            raise

    def _leave(self, ticket: _Ticket) -> None:
        if ticket in self._running:
            self._stop_clock(ticket, self._clock())
            self._running.remove(ticket)
        elif ticket in self._waiting:
            self._waiting.remove(ticket)
        if not any(t.visitor == ticket.visitor for t in (*self._waiting, *self._running)):
            self._used.pop(ticket.visitor, None)
        self._cond.notify_all()

    def _stop_clock(self, ticket: _Ticket, now: float) -> None:
        self._used[ticket.visitor] = self._used.get(ticket.visitor, 0.0) + (now - ticket.started)
        ticket.started = None

    def _used_now(self, visitor: str, now: float) -> float:
        running = sum(now - t.started for t in self._running if t.visitor == visitor)
        return self._used.get(visitor, 0.0) + running

    def _rank(self, ticket: _Ticket, now: float) -> tuple[float, int]:
        return self._used_now(ticket.visitor, now), ticket.order

    def _next(self) -> _Ticket | None:
        now = self._clock()
        live = [t for t in self._waiting if t.alive()]  # a gone visitor's request never blocks the others
        return min(live, key=lambda t: self._rank(t, now), default=None)

    def _ahead(self, ticket: _Ticket) -> int:
        now = self._clock()
        mine = self._rank(ticket, now)
        before = sum(self._rank(t, now) < mine for t in self._waiting if t is not ticket)
        return max(1, before + len(self._running) - self.slots + 1)

    def _should_yield(self, ticket: _Ticket, now: float) -> bool:
        if len(self._running) < self.slots:
            return False  # a waiting request that can run takes the free slot itself
        mine = self._used_now(ticket.visitor, now)
        return any(t.visitor != ticket.visitor and self._used_now(t.visitor, now) < mine and t.alive()
                   for t in self._waiting)


def plan_threads(cores: int | None = None) -> tuple[int, int]:
    """(slots, threads per slot): PLAYGROUND_DECODE_SLOTS if set, else one slot per 2 cores (at least
    one), and the cores shared out so that slots x threads never exceeds them."""
    cores = cores or len(os.sched_getaffinity(0)) or 1
    try:
        slots = int(os.environ.get("PLAYGROUND_DECODE_SLOTS", "0"))
    except ValueError:
        slots = 0
    if slots <= 0:
        slots = max(1, cores // 2)
    slots = min(slots, cores)
    return slots, max(1, cores // slots)


def cache_bytes() -> int:
    try:
        mb = float(os.environ.get("PLAYGROUND_RESULT_CACHE_MB", DEFAULT_CACHE_MB))
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return int(max(1.0, mb) * 2**20)


REMOTE_SLOTS = 8  # line-ups sent to vLLM servers at once (each is one request per run)
DEFAULT_WAITING_PER_VISITOR = 2
DEFAULT_MAX_WAITING = 32


def _env_int(name: str, default: int, low: int = 1) -> int:
    try:
        return max(low, int(os.environ.get(name, default)))
    except ValueError:
        return default


def queue_bounds() -> dict:
    """Per-visitor and whole-queue bounds: PLAYGROUND_WAITING_PER_VISITOR, PLAYGROUND_MAX_WAITING."""
    return {"per_visitor": _env_int("PLAYGROUND_WAITING_PER_VISITOR", DEFAULT_WAITING_PER_VISITOR),
            "max_waiting": _env_int("PLAYGROUND_MAX_WAITING", DEFAULT_MAX_WAITING)}


def trusted_proxy_hops() -> int:
    """How many reverse proxies in front of the app the operator vouches for (PLAYGROUND_TRUSTED_PROXIES);
    0, the default, means a forwarded-for header is never believed."""
    return _env_int("PLAYGROUND_TRUSTED_PROXIES", 0, low=0)


def visitor_address(peer: str | None, forwarded_for: str | None = None, hops: int = 0) -> str:
    """The visitor a request counts against: its client address, IPv6 grouped by /64 (one host often
    holds a whole /64). With `hops` trusted proxies, the address the outermost of them saw is the
    hops-th entry from the right of X-Forwarded-For (entries further left are the client's own claims);
    a header that is absent, short or not addresses falls back to the peer. No peer (Streamlit gives
    none for loopback connections) is "localhost"."""
    if hops > 0 and forwarded_for:
        entries = [e.strip() for e in forwarded_for[:4096].split(",")]
        claimed = _address(entries[-hops]) if len(entries) >= hops else None
        if claimed is not None:
            return claimed
    return _address(peer) or "localhost"


def _address(text: str | None) -> str | None:
    try:
        ip = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
