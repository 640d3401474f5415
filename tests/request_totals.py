"""Helpers of the request tests: a monitor's request counts, and work run in another thread."""

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
