"""Requests opened with ``Request.open()`` and never closed, one after another, in a thread
that lives on (a pool's worker): each new one opens inside the last, and the older ones must
still be ended as cancelled once past their age, a few per open, however long the chain."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import inferwatch
from inferwatch.core import request as request_module
from inferwatch.core import request_chain
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request
from request_totals import request_totals

AGE = 1.0  # seconds of the fake clock past which an open request is abandoned
STEP = 0.01  # seconds of the fake clock per request opened: AGE / STEP open within the age
WITHIN_AGE = round(AGE / STEP)


class FakeClock:
    """The request module's clock: ``perf_counter`` moves only when told, so that the
    requests' ages do not depend on how fast the test runs; wall-clock time is real."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _counting_submits(monitor: object, monkeypatch: object) -> list[int]:
    """A one-item list counting the records the monitor is handed: one per request ended."""
    handed = [0]
    submit = monitor.submit

    def counted(record: object) -> None:
        handed[0] += 1
        submit(record)

    monkeypatch.setattr(monitor, "submit", counted)
    return handed


def _forgetful_handler(registry: Registry, monkeypatch, opens: int, *, idle_at: int = -1
                       ) -> dict[str, object]:
    """One thread opening a request per item, with an id, and never closing it; the model
    called once per request. Returns the most records ended by one open and call (past the
    first few), that after an idle pause of the clock, the most requests in flight, and the
    memory the requests hold as the run goes on."""
    clock = FakeClock()
    monkeypatch.setattr(request_module, "time", clock)
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", AGE)
    model = inferwatch.instrument(lambda x: x * 2, name="fraud", version="1",
                                  registry=registry)
    monitor = registry.monitor("fraud", "1")
    # The predictions kept for their outcomes, by id, have a bound of their own.
    monkeypatch.setattr(monitor.outcomes, "max_entries", 10)
    handed = _counting_submits(monitor, monkeypatch)
    most_in_steady_step = most_after_idle = most_in_flight = most_alive = 0
    memory: list[int] = []

    def handle(item: int) -> None:
        nonlocal most_in_steady_step, most_after_idle
        clock.advance(AGE * 5 if item == idle_at else STEP)
        before = handed[0]
        Request.open(monitor, f"item-{item}")
        model(float(item))
        ended = handed[0] - before
        if item == idle_at:
            most_after_idle = ended
        else:
            most_in_steady_step = max(most_in_steady_step, ended)

    tracemalloc.start()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            for item in range(opens):
                pool.submit(handle, item).result()
                if item % 200 == 199:
                    most_in_flight = max(most_in_flight, request_totals(monitor)["in_flight"])
                    gc.collect()
                    # This monitor's only: another test in this process may keep its own.
                    most_alive = max(most_alive, sum(
                        isinstance(thing, Request) and thing.monitor is monitor
                        for thing in gc.get_objects()))
                    memory.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    return {"steady": most_in_steady_step, "after_idle": most_after_idle,
            "in_flight": most_in_flight, "alive": most_alive, "memory": memory,
            "totals": request_totals(monitor)}


def test_requests_never_closed_are_ended_a_few_per_open_once_past_their_age(
        registry, monkeypatch):
    run = _forgetful_handler(registry, monkeypatch, 3000)
    # In flight: those opened within the age, not every request ever opened.
    assert run["in_flight"] <= WITHIN_AGE + 10
    totals = run["totals"]
    assert totals["ok"] == 0.0 and totals["error"] == 0.0
    assert totals["cancelled"] >= 3000 - WITHIN_AGE - 10
    assert totals["in_flight"] <= WITHIN_AGE + 10
    # Each open ends the few that came of age meanwhile: no open sweeps a pile.
    assert run["steady"] <= 4
    # The requests ended are let go: those alive are those in flight.
    assert run["alive"] <= WITHIN_AGE + 10
    # What the requests hold stays as it was once the first ones came of age.
    memory = run["memory"]
    assert max(memory[2:]) - memory[2] < 256 * 1024, memory


def test_after_an_idle_pause_one_call_ends_at_most_those_open_within_the_age(
        registry, monkeypatch):
    run = _forgetful_handler(registry, monkeypatch, 2000, idle_at=1500)
    # The call after the pause finds all of them past their age: those opened within the
    # age before it, not the 1,500 opened so far.
    assert run["after_idle"] <= WITHIN_AGE + 10
    assert run["steady"] <= 4
    assert run["totals"]["cancelled"] >= 2000 - WITHIN_AGE - 10


def test_a_chain_longer_than_its_bound_ends_its_oldest_requests(registry, monkeypatch):
    monkeypatch.setattr(request_chain, "MAX_OPENED_UNCLOSED", 50)
    monitor = registry.monitor("fraud", "1")

    def leak(count: int) -> list[Request]:
        return [Request.open(monitor, f"item-{item}") for item in range(count)]

    with ThreadPoolExecutor(max_workers=1) as pool:
        opened = pool.submit(leak, 400).result()
    # None of them is past its age: the bound alone ended the oldest.
    assert sum(request.is_open for request in opened) <= 50
    assert all(request.is_open for request in opened[-50:])
    totals = request_totals(monitor)
    assert totals["cancelled"] >= 350 and totals["in_flight"] <= 50


def test_requests_closed_in_order_inside_a_forgotten_one_are_not_ended(registry, monkeypatch):
    monkeypatch.setattr(request_chain, "MAX_OPENED_UNCLOSED", 8)
    monitor = registry.monitor("fraud", "1")

    def handle() -> bool:
        forgotten = Request.open(monitor, "forgotten")
        for item in range(200):
            nested = [Request.open(monitor, f"item-{item}-{depth}") for depth in range(5)]
            for request in reversed(nested):
                request.close(None)
        return forgotten.is_open

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(handle).result()
    # The forgotten one went with its thread's context.
    assert request_totals(monitor) == {"ok": 1000.0, "error": 0.0, "cancelled": 1.0,
                                       "in_flight": 0}


def test_tasks_opening_inside_one_open_request_are_bounded_each_on_its_own(
        registry, monkeypatch):
    """Many tasks started inside one request, each with a request of its own open at once:
    the bound is on one task's chain, and none of them is ended for the others."""
    monkeypatch.setattr(request_chain, "MAX_OPENED_UNCLOSED", 4)
    monitor = registry.monitor("fraud", "1")

    async def main() -> None:
        outer = Request.open(monitor, "batch")
        everyone_open = asyncio.Event()
        opened: list[Request] = []

        async def item(index: int) -> None:
            request = Request.open(monitor, f"item-{index}")
            opened.append(request)
            if len(opened) == 40:
                everyone_open.set()
            await everyone_open.wait()
            assert request.is_open
            request.close(None)

        await asyncio.gather(*(item(index) for index in range(40)))
        outer.close(None)

    asyncio.run(main())
    assert request_totals(monitor) == {"ok": 41.0, "error": 0.0, "cancelled": 0.0,
                                       "in_flight": 0}
