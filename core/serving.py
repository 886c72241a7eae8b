"""Serving many visitors from one process: results computed once per link, and decoding slots.

- `SharedResults`: a process-wide, size-bounded LRU cache of results keyed by everything that
  determines them (the model's fingerprint, the inputs, the settings with their seeds). The second
  visitor of a link gets the first one's result; if both arrive together the second waits for the
  first computation instead of starting its own. Cached objects are shared between sessions, so no
  caller may change them (a test holds pages to that).
- `DecodeSlots`: at most `slots` decodes run at once, each with `threads` torch threads, so that
  sessions never oversubscribe the cores (2 sessions with 2 threads each on 2 cores ran 15x slower
  than one after the other). The others wait in a first-come queue and can show their place in it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable

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


class DecodeSlots:
    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self._busy = 0
        self._queue: list[object] = []
        self._cond = threading.Condition()

    def run(self, work: Callable[[], Any], on_wait: Callable[[int], None] | None = None):
        """Run `work` in a free slot; while waiting, call on_wait(requests ahead) about twice a second.

        on_wait may raise (Streamlit stops a script that way when its visitor changes a widget):
        the place in the queue is given up, and nothing is left held."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._busy < self.slots and self._queue[0] is ticket:
                        self._queue.pop(0)
                        self._busy += 1
                        break
                    ahead = self._queue.index(ticket) + self._busy - self.slots + 1
                    self._cond.wait(timeout=0.5)
                if on_wait is not None:
                    on_wait(max(1, ahead))
        except BaseException:
            with self._cond:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                self._cond.notify_all()
            raise
        try:
            return work()
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)


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
