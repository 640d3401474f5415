"""A request that ends between the check that finds it open and the write that joins it:
a model call's inference, a model's stream, a web response's body figures. What joins it
must land on the request before it goes to the drain, or be counted on its own; never
count or vanish by when the drain happens to run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import inferwatch
from inferwatch.core import call_recorder
from inferwatch.core import request as request_module
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request
from inferwatch.core.stream_objects import ItemClock
from inferwatch.serving.middleware import InstrumentMiddleware
from request_totals import run_in_thread


def _end_elsewhere(request: Request, monitor: Any, drain: bool) -> None:
    """End `request` as the abandoned-request check does, in another thread, and let the
    drain run at once (or not): the outcome must not depend on which."""
    run_in_thread(lambda: request.close(None, cancelled=True))
    if drain:
        monitor.drain()


def _requests(monitor: Any) -> dict[str, float]:
    monitor.drain()
    counts = monitor.state.counters.get("inferwatch_requests_total", {})
    return {outcome: counts.get((outcome,), 0.0) for outcome in ("ok", "error", "cancelled")}


def _streams(monitor: Any) -> int:
    monitor.drain()
    series = monitor.state.histograms.get("inferwatch_stream_items", {})
    return int(sum(histogram.count for histogram in series.values()))


@pytest.mark.parametrize("drain", [False, True])
def test_a_model_call_whose_request_ends_as_it_joins_is_counted_once(registry, monkeypatch,
                                                                     drain):
    """The request ended (found abandoned in another thread) just after the call found it
    open: the call's inference was written to a record already handed to the drain, so it
    counted, or vanished, by when the drain ran. It is now its own request, either way."""
    predict = inferwatch.instrument(lambda x: x * 2, name="fraud", version="1",
                                    registry=registry)
    mon = registry.monitor("fraud", "1")
    request = Request.open(mon, "r-1")
    original = call_recorder.snapshot
    fired: list[bool] = []

    def snapshot(value: Any) -> Any:  # the copy of the call's result, made as it joins
        if not fired and request._open:
            fired.append(True)
            _end_elsewhere(request, mon, drain)
        return original(value)

    monkeypatch.setattr(call_recorder, "snapshot", snapshot)
    assert predict(21) == 42
    assert fired
    request.close(None)
    assert _requests(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 1.0}
    assert request.record.stages == []  # nothing written after it went to the drain


def _close_after_the_check(monkeypatch: pytest.MonkeyPatch, request: Request, mon: Any,
                           drain: bool) -> list[bool]:
    """Make the request end in another thread right after a check finds it open, unless
    that check holds the lock a close needs (then no close can come between it and what
    it guards, and none is forced)."""
    fired: list[bool] = []
    is_open = Request.is_open

    def checked(self: Request) -> bool:
        found = is_open.fget(self)  # type: ignore[attr-defined]
        if found and self is request and not fired and \
                not request_module._CLOSING.locked():
            fired.append(True)
            _end_elsewhere(request, mon, drain)
        return found

    monkeypatch.setattr(Request, "is_open", property(checked))
    return fired


@pytest.mark.parametrize("drain", [False, True])
def test_a_stream_whose_request_ends_as_it_joins_counts_the_same_whenever_the_drain_runs(
        registry, monkeypatch, drain):
    """A model's stream inside ``mon.request()``: the request ended between the stream's
    check that it was open and its writes, which then went to a record the drain may have
    read already: its figures counted or vanished by the drain's timing."""
    tokens = inferwatch.instrument(lambda n: (str(i) for i in range(n)), name="gen",
                                   version="1", registry=registry)
    mon = registry.monitor("gen", "1")
    with mon.request(request_id="r-1") as request:
        stream = tokens(3)
        _close_after_the_check(monkeypatch, request, mon, drain)
        assert "".join(stream) == "012"
    assert _streams(mon) == 1
    assert sum(_requests(mon).values()) == 1.0


def _asgi(app: Any, registry: Registry) -> Any:
    wrapped = InstrumentMiddleware(app, routes={"/generate": "llm"}, registry=registry)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/generate", "headers": []}
    asyncio.run(wrapped(scope, receive, send))


@pytest.mark.parametrize("drain", [False, True])
def test_a_web_stream_found_abandoned_as_it_ends_keeps_the_outcome_of_the_close_that_won(
        registry, monkeypatch, drain):
    """A streamed response whose request was ended (as abandoned, from a handler's
    thread) while the middleware made its body's figures: they were written onto the
    record the drain already had, counted or lost by when the drain ran."""
    inferwatch.instrument(lambda x: x, name="llm", version="1", registry=registry)
    mon = registry.monitor("llm", "1")
    seen: list[Request] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_request())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    original = ItemClock.record

    def record(self: ItemClock, outcome: str, error_type: type | None) -> Any:
        request = seen[0]
        if request._open:
            _end_elsewhere(request, mon, drain)
        return original(self, outcome, error_type)

    monkeypatch.setattr(ItemClock, "record", record)
    _asgi(app, registry)
    assert _requests(mon) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert _streams(mon) == 0
    assert seen[0].record.stream is None
