"""Helpers of the request tests: a monitor's request counts, work run in another thread, and a
flag that makes two threads meet at a check."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def request_totals(monitor: Any) -> dict[str, float]:
    """`inferwatch_requests_total` by outcome, and the in-flight count, once drained."""
    monitor.drain()
    counts = monitor.state.counters.get("inferwatch_requests_total", {})
    totals = {outcome: counts.get((outcome,), 0.0) for outcome in ("ok", "error", "cancelled")}
    totals["in_flight"] = monitor.in_flight()
    return totals


def requests_by_outcome(monitor: Any) -> dict[str, float]:
    """The non-zero `inferwatch_requests_total` by outcome, once drained."""
    monitor.drain()
    return {key[0]: value for key, value in
            monitor.state.counters.get("inferwatch_requests_total", {}).items() if value}


class BothPastTheCheck:
    """A flag that always reads `value`, and whose `reading`-th reading in each thread waits
    until `parties` threads reach it: put where a request or stream keeps its open (or
    ended) flag, the threads interleave exactly where a thread switch between the check and
    the change would put them."""

    def __init__(self, parties: int, value: bool, reading: int = 1) -> None:
        self._barrier = threading.Barrier(parties, timeout=10)
        self._value = value
        self._reading = reading
        self._read = threading.local()

    def __bool__(self) -> bool:
        read = getattr(self._read, "count", 0) + 1
        self._read.count = read
        if read == self._reading:
            self._barrier.wait()
        return self._value


def run_in_thread(work: Callable[[], object]) -> None:
    """Run `work` in a thread of its own (the middleware's, a pool's worker) to its end, and
    wait for it: an interleaving forced at one point, with no timing involved."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors
