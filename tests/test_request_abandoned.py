"""Requests left open where a thread lives on (a pool's worker), and iterator objects
that go on after raising (a streamer's timeout, retried by its caller)."""

from __future__ import annotations

import asyncio
import gc
import queue
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import request as request_module
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request
from request_totals import request_totals


def _items(monitor: object) -> tuple[float, float]:
    """The stream_items histogram's (count, sum)."""
    histogram = monitor.state.histograms.get("inferwatch_stream_items", {}).get(())
    return (0.0, 0.0) if histogram is None else (float(histogram.count), float(histogram.sum))


def _leak_then_call(registry: Registry, calls: int) -> tuple[Request, object]:
    """A pool of one worker: one task opens a request and never closes it, the next tasks
    call the model on the same thread."""
    model = inferwatch.instrument(lambda x: x * 2, name="fraud", version="1",
                                  registry=registry)
    monitor = registry.monitor("fraud", "1")
    with ThreadPoolExecutor(max_workers=1) as pool:
        leaked = pool.submit(Request.open, monitor, "leaked").result()
        for i in range(calls):
            assert pool.submit(model, float(i)).result() == 2.0 * i
    return leaked, monitor


def test_a_request_left_open_past_its_age_in_a_pool_worker_is_ended(registry, monkeypatch):
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.0)
    leaked, monitor = _leak_then_call(registry, 3)
    assert not leaked.is_open
    assert leaked.record.stages == []  # no later call joined it
    # The three calls count as their own; the abandoned request as cancelled.
    assert request_totals(monitor) == {"ok": 3.0, "error": 0.0, "cancelled": 1.0, "in_flight": 0}


def test_a_request_left_open_stops_growing_at_its_stage_bound(registry, monkeypatch):
    monkeypatch.setattr(request_module, "MAX_STAGES", 5)
    leaked, monitor = _leak_then_call(registry, 12)
    assert leaked.is_open  # only its age or its close ends it
    assert len(leaked.record.stages) == 5  # joined until the bound, never past it
    leaked.close(None)
    assert request_totals(monitor) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


def test_a_block_opened_in_a_pool_worker_after_an_abandoned_one_is_no_child_of_it(
        registry, monkeypatch):
    monkeypatch.setattr(request_module, "ABANDONED_AFTER_SECONDS", 0.0)
    monitor = registry.monitor("fraud", "1")

    def handle() -> bool:
        with monitor.request(request_id="r-2") as r:
            parent = r._parent
        return parent is None

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(Request.open, monitor, "leaked").result()
        assert pool.submit(handle).result()
        assert pool.submit(request_module.current_request).result() is None
    assert request_totals(monitor) == {"ok": 1.0, "error": 0.0, "cancelled": 1.0, "in_flight": 0}


def test_a_live_request_within_its_bounds_keeps_its_calls(registry):
    model = inferwatch.instrument(lambda x: x + 1, name="fraud", version="1",
                                  registry=registry)
    monitor = registry.monitor("fraud", "1")
    with monitor.request(request_id="r-1") as r:
        for i in range(20):
            model(i)
    assert [name for name, _ in r.record.stages] == ["inference"] * 20
    assert request_totals(monitor) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


class Streamer:
    """The interface of a Hugging Face ``TextIteratorStreamer(timeout=...)``: ``next()``
    raises ``queue.Empty`` while the generating thread is slow, and goes on after."""

    def __init__(self, script: list) -> None:
        self.script = list(script)

    def __iter__(self):
        return self

    def __next__(self):
        if not self.script:
            raise StopIteration
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def _consume_retrying(stream: object) -> tuple[list, list]:
    received, raised = [], []
    while True:
        try:
            received.append(next(stream))
        except queue.Empty as exc:
            raised.append(exc)
        except StopIteration:
            return received, raised


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=4), st.none()), max_size=12))
def test_a_streamer_that_times_out_and_goes_on_keeps_all_its_items(steps):
    registry = Registry()
    try:
        timeouts = [queue.Empty() for step in steps if step is None]
        pending = iter(timeouts)
        script = [next(pending) if step is None else step for step in steps]
        chat = inferwatch.instrument(lambda: Streamer(script), name="chat", registry=registry)
        received, raised = _consume_retrying(chat())
        words = [step for step in steps if step is not None]
        assert received == words
        assert [id(e) for e in raised] == [id(e) for e in timeouts]  # the very exceptions
        gc.collect()
        monitor = registry.monitor("chat", "unversioned")
        totals = request_totals(monitor)
        # One call, counted once: under the first exception it raised, if any.
        assert totals == {"ok": 0.0 if timeouts else 1.0, "error": 1.0 if timeouts else 0.0,
                          "cancelled": 0.0, "in_flight": 0}
        # One stream, with every item, those after a timeout too.
        assert _items(monitor) == (1.0, float(len(words)))
        if timeouts:
            errors = monitor.state.counters["inferwatch_errors_total"]
            assert errors == {("Empty",): 1.0}
    finally:
        registry.close()


def test_a_stream_given_up_on_after_an_error_keeps_its_items_and_counts_once(registry):
    chat = inferwatch.instrument(lambda: Streamer(["a", "b", KeyError("mid-stream"), "c"]),
                                 name="chat", registry=registry)
    stream = chat()
    assert next(stream) == "a" and next(stream) == "b"
    with pytest.raises(KeyError) as caught:
        next(stream)
    assert caught.value.args == ("mid-stream",)
    del stream, caught  # the exception's traceback holds the stream
    gc.collect()
    monitor = registry.monitor("chat", "unversioned")
    assert request_totals(monitor) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0, "in_flight": 0}
    assert _items(monitor) == (1.0, 2.0)


def test_an_async_stream_retried_after_a_timeout_keeps_its_items(registry):
    class Tokens:
        def __init__(self) -> None:
            self.script = ["a", TimeoutError(), "b", "c"]

        def __aiter__(self):
            return self

        async def __anext__(self):
            if not self.script:
                raise StopAsyncIteration
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
            return step

    async def create():
        return Tokens()

    chat = inferwatch.instrument(create, name="chat", registry=registry)

    async def consume() -> list:
        stream, received = await chat(), []
        while True:
            try:
                received.append(await stream.__anext__())
            except TimeoutError:
                continue
            except StopAsyncIteration:
                return received

    assert asyncio.run(consume()) == ["a", "b", "c"]
    gc.collect()
    monitor = registry.monitor("chat", "unversioned")
    assert request_totals(monitor) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0, "in_flight": 0}
    assert _items(monitor) == (1.0, 3.0)


def test_an_sdk_stream_dropped_in_a_reference_cycle_keeps_its_items(registry):
    chat = inferwatch.instrument(lambda: Streamer(["a", "b", "c"]), name="chat",
                                 registry=registry)
    for _ in range(20):  # the collector's order within a cycle is its own: try it often
        holder: dict = {"stream": chat()}
        holder["self"] = holder
        assert next(holder["stream"]) == "a" and next(holder["stream"]) == "b"
        del holder
    gc.collect()
    monitor = registry.monitor("chat", "unversioned")
    assert request_totals(monitor) == {"ok": 0.0, "error": 0.0, "cancelled": 20.0, "in_flight": 0}
    assert _items(monitor) == (20.0, 40.0)
