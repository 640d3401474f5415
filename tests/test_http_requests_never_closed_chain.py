"""A WSGI server that never closes response bodies leaves each HTTP request of its thread
open inside the last: the older ones are still ended as cancelled once past their age, a
few per new request, so in-flight requests stay about those opened within the age."""

from __future__ import annotations

import contextvars
import time

from inferwatch.core import request as request_module
from inferwatch.core import web_requests
from inferwatch.core.registry import Registry
from inferwatch.core.web_requests import HTTPRequest

AGE = 1.0
STEP = 0.01
WITHIN_AGE = round(AGE / STEP)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


def test_http_requests_whose_bodies_are_never_closed_are_ended_past_their_age(monkeypatch):
    clock = FakeClock()
    for module in (request_module, web_requests):
        monkeypatch.setattr(module, "time", clock)
        monkeypatch.setattr(module, "ABANDONED_AFTER_SECONDS", AGE)
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("fraud", "1")

        def server_thread() -> int:
            most_in_flight = 0
            for item in range(2_000):
                clock.now += STEP
                request = HTTPRequest.open(monitor, f"r-{item}")
                request.held()
                request.released()  # the app returned; the server never closes the body
                most_in_flight = max(most_in_flight, monitor.in_flight())
            return most_in_flight

        # The server thread's own context: the requests it leaves open stay in it, not in
        # the context the tests after this one run in.
        most_in_flight = contextvars.Context().run(server_thread)
        assert most_in_flight <= WITHIN_AGE + 10, most_in_flight
        registry.drain()
        cancelled = monitor.state.counters["inferwatch_requests_total"][("cancelled",)]
        assert cancelled >= 2_000 - WITHIN_AGE - 10
    finally:
        registry.close()
