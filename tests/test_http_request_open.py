"""The web middleware's request opens without ``__enter__``'s checks and locks.

``HTTPRequest.open`` (and ``ASGIRequest.open``) skip what cannot happen to an object no
other thread or block can reach yet. What they leave behind must be what
``HTTPRequest(...).__enter__()`` leaves: the same parent, the same current request, one
request counted in flight, the id as text, and the same request once closed. A close given
the middleware's own end time keeps it; any other end time is still checked.
"""

from __future__ import annotations

import math
import time

import pytest

from inferwatch import faults
from inferwatch.core.request import current_request
from inferwatch.core.web_requests import ASGIRequest, HTTPRequest


@pytest.fixture
def monitor(registry):
    return registry.monitor("fraud", "1")


def _entered(cls: type, monitor, request_id):
    return cls(monitor, request_id).__enter__()


def _state(request, block) -> tuple:
    record = request.record
    return (request._open, request._entered, request._depth, request._parent is block,
            record.request_id, record.trace_id, record.stages, record.has_prediction,
            current_request() is request)


@pytest.mark.parametrize("cls", [HTTPRequest, ASGIRequest])
@pytest.mark.parametrize("outer", ["none", "same model", "other model", "closed"])
@pytest.mark.parametrize("request_id", [None, "r-17", 17])
def test_open_leaves_what_enter_leaves(registry, monitor, cls, outer, request_id):
    other = registry.monitor("other", "1")
    results = []
    for opener in (_entered, lambda c, m, i: c.open(m, i)):
        block = None
        if outer == "same model":
            block = monitor.request(request_id="outer").__enter__()
        elif outer == "other model":
            block = other.request().__enter__()
        elif outer == "closed":
            closed = monitor.request().__enter__()
            closed.close(None)
        request = opener(cls, monitor, request_id)
        state = _state(request, block)
        # An HTTP request never joins an open block of its model: it is one of its own.
        assert request is not block
        assert state[3]
        request.close(None)
        assert current_request() is block
        if block is not None:
            block.__exit__(None, None, None)
        results.append(state)
    assert results[0] == results[1]
    assert results[1][4] == (None if request_id is None else str(request_id))


def test_open_counts_one_request_in_flight_until_closed(monitor):
    request = HTTPRequest.open(monitor, "r-1")
    monitor.drain()
    assert monitor.in_flight_locked() == 1
    request.close(None)
    monitor.drain()
    assert monitor.in_flight_locked() == 0
    assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 1.0


def test_open_stamps_the_wall_clock_start(monitor):
    before = time.time()
    request = ASGIRequest.open(monitor, None)
    after = time.time()
    assert before <= request.record.started_at <= after
    request.close(None)


@pytest.mark.parametrize("ended_at", [True, math.nan, -1.0, "soon"])
def test_close_still_checks_an_end_time_that_is_not_a_reading(monitor, ended_at):
    before = faults.internal_error_counts().get("request", 0)
    request = ASGIRequest.open(monitor, None)
    start = request._start
    request.close(None, ended_at)
    assert 0.0 <= request.record.duration < 60.0
    assert request.record.duration == request.record.duration  # not NaN
    assert faults.internal_error_counts().get("request", 0) == before + 1
    assert request._start == start


def test_close_keeps_an_integer_reading_within_the_request(monitor):
    request = ASGIRequest.open(monitor, None)
    while time.perf_counter() < math.ceil(request._start):
        time.sleep(min(0.05, math.ceil(request._start) - time.perf_counter() + 1e-3))
    ended = math.ceil(request._start)  # an int: checked, and kept
    request.close(None, ended)
    assert request.record.duration == ended - request._start


def test_close_keeps_the_middlewares_own_reading(monitor):
    request = ASGIRequest.open(monitor, None)
    ended = time.perf_counter()
    request.close(None, ended)
    assert request.record.duration == ended - request._start
