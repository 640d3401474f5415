"""Cancellation of instrumented model calls and streams: under trio (anyio on trio) as under
asyncio, at odd points, by timeouts, and the interrupts that must pass through untouched;
and the monitor's public window time."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.monitor import Monitor
from inferwatch.core.registry import Registry

BACKENDS = ["trio", "asyncio"]


def outcomes(scraper, model: str = "m") -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_requests_total" and s.labels["model"] == model}


def errors(scraper, model: str = "m") -> dict[str, float]:
    return {s.labels["error_type"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_errors_total" and s.labels["model"] == model
            and s.value}


def cancel_when_started(run: Callable[[anyio.Event], Awaitable[Any]], backend: str) -> None:
    """Run `run(started)` in a task on `backend` and cancel it through its task group's
    cancel scope once it has set `started` (and is waiting inside the model)."""
    pytest.importorskip(backend)

    async def main() -> None:
        started = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(run, started)
            with anyio.fail_after(10):
                await started.wait()
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend)


# --- trio cancellation of an async model call --------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["fast", "keywords", "request_id", "in_request"])
def test_an_async_call_cancelled_under_trio_is_cancelled_not_an_error(scraper, backend, how):
    started_box: list[anyio.Event] = []

    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    async def predict(x: list[float], request_id: str | None = None, scale: float = 1.0):
        started_box[0].set()
        await anyio.sleep_forever()
        return x

    mon = inferwatch.monitor("m", "1", registry=scraper.registry)

    async def run(started: anyio.Event) -> None:
        started_box.append(started)
        if how == "fast":
            await predict([1.0])
        elif how == "keywords":
            await predict([1.0], scale=2.0)
        elif how == "request_id":
            await predict([1.0], request_id="r-1")
        else:
            async with mon.request(request_id="r-2"):
                await predict([1.0])

    cancel_when_started(run, backend)
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert errors(scraper) == {}
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0


# --- trio cancellation of an async model stream ------------------------------------------------
class TokenStream:
    """An SDK's async stream object (not an async generator): one token, then it waits."""

    def __init__(self, started: Callable[[], None]) -> None:
        self.sent = False
        self.started = started

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> str:
        if not self.sent:
            self.sent = True
            return "hello"
        self.started()
        await anyio.sleep_forever()
        raise StopAsyncIteration


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["async_generator_function", "returns_async_generator",
                                  "returns_stream_object"])
def test_an_async_stream_cancelled_under_trio_is_cancelled_not_an_error(scraper, backend,
                                                                         kind):
    started_box: list[anyio.Event] = []

    async def tokens() -> AsyncIterator[str]:
        yield "hello"
        started_box[0].set()
        await anyio.sleep_forever()
        yield "never"

    if kind == "async_generator_function":
        generate = inferwatch.instrument(tokens, name="m", version="1",
                                         registry=scraper.registry)
    elif kind == "returns_async_generator":
        async def generate() -> AsyncIterator[str]:
            return tokens()
        generate = inferwatch.instrument(generate, name="m", version="1",
                                         registry=scraper.registry)
    else:
        async def generate() -> TokenStream:
            return TokenStream(lambda: started_box[0].set())
        generate = inferwatch.instrument(generate, name="m", version="1",
                                         registry=scraper.registry)

    received: list[str] = []

    async def run(started: anyio.Event) -> None:
        started_box.append(started)
        stream = generate()
        if not hasattr(stream, "__anext__"):
            stream = await stream
        async for item in stream:
            received.append(item)

    cancel_when_started(run, backend)
    gc.collect()  # a stream object's figures come when it is dropped, its call at once
    assert received == ["hello"]
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert errors(scraper) == {}
    assert scraper.value("inferwatch_stream_items_count", model="m") == 1
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0


def test_a_cancelled_stream_and_a_cancelled_call_count_alike(scraper):
    """A model that gives up on a cancelled future (a worker pool's job cancelled under
    it) is cancelled whether it answers at once or streams."""

    def cancelled_future() -> None:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.cancel()
        future.result()

    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    def predict(x: list[float]) -> list[float]:
        cancelled_future()
        return x

    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    def stream(n: int):
        yield "a"
        cancelled_future()
        yield "b"

    with pytest.raises(concurrent.futures.CancelledError):
        predict([1.0])
    with pytest.raises(concurrent.futures.CancelledError):
        list(stream(2))
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 2.0}
    assert errors(scraper) == {}


# --- asyncio: odd points, timeouts ------------------------------------------------------------
def test_asyncio_timeout_around_an_instrumented_call_is_cancelled(scraper):
    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    async def predict(x: list[float]) -> list[float]:
        await asyncio.sleep(3600)
        return x

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await predict([1.0])
        # The caller's task is not left cancelled: a later call runs and counts as ok.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(predict([2.0]), timeout=0.01)

    asyncio.run(scenario())
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 2.0}
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0


def test_a_call_cancelled_before_it_ran_counts_nothing_and_leaves_none_in_flight(scraper):
    ran: list[int] = []

    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    async def predict(x: list[float]) -> list[float]:
        ran.append(1)
        return x

    async def scenario() -> None:
        task = asyncio.create_task(predict([1.0]))
        task.cancel()  # before its first step: the model never starts
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await predict([1.0]) == [1.0]

    asyncio.run(scenario())
    assert ran == [1]
    assert outcomes(scraper) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0


def test_calls_cancelled_while_the_background_drain_runs_are_all_counted():
    registry = Registry(drain_interval=0.001)
    try:
        @inferwatch.instrument(name="m", version="1", registry=registry)
        async def predict(x: list[float]) -> list[float]:
            await asyncio.sleep(0 if x[0] % 2 else 3600)
            return x

        async def scenario() -> None:
            tasks = [asyncio.create_task(predict([float(i)])) for i in range(400)]
            await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(scenario())
        mon = registry.monitor("m", "1")
        mon.drain()
        counts = mon.state.counters["inferwatch_requests_total"]
        assert counts[("ok",)] == 200
        assert counts[("cancelled",)] == 200
        assert counts[("error",)] == 0
        assert mon.in_flight() == 0
    finally:
        registry.close()


# --- interrupts pass through untouched, as cancelled calls ---------------------------------
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(3)])
@pytest.mark.parametrize("how", ["sync", "sync_keywords", "async", "stream"])
def test_interrupts_pass_through_untouched_and_count_as_cancelled(scraper, interrupt, how):
    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    def predict(x: list[float], scale: float = 1.0) -> list[float]:
        raise interrupt

    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    async def apredict(x: list[float]) -> list[float]:
        raise interrupt

    @inferwatch.instrument(name="m", version="1", registry=scraper.registry)
    def stream(n: int):
        yield "a"
        raise interrupt

    with pytest.raises(BaseException) as raised:
        if how == "sync":
            predict([1.0])
        elif how == "sync_keywords":
            predict([1.0], scale=2.0)
        elif how == "async":
            asyncio.run(apredict([1.0]))
        else:
            list(stream(1))
    assert raised.value is interrupt
    # The process was stopping (Ctrl-C, a server's quick shutdown): no error of the model's.
    assert outcomes(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}
    assert errors(scraper) == {}
    assert scraper.value("inferwatch_requests_in_flight", model="m") == 0


# --- the monitor's window time ----------------------------------------------------------------
def test_window_time_is_public_and_goes_on_after_a_step_back():
    mon = Monitor("m", "1")
    start = mon.window_time(2_000_000.0)
    assert start == 2_000_000.0
    stepped = mon.window_time(2_000_000.0 - 3600)  # NTP stepped the clock back an hour
    assert 2_000_000.0 <= stepped < 2_000_000.0 + 60
    assert mon.window_time(2_000_100.0) == 2_000_100.0  # caught up: the wall clock again
    now = time.time()
    assert mon.window_time() >= min(now, 2_000_100.0)


@pytest.mark.parametrize("odd", [math.nan, math.inf, -math.inf, "soon", None, 2_000_000])
def test_window_time_takes_any_now_without_raising(odd):
    mon = Monitor("m", "1")
    got = mon.window_time(odd)
    assert isinstance(got, float) and math.isfinite(got)
    if odd == 2_000_000:
        assert got == 2_000_000.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(min_value=-10**12, max_value=10**12)),
                min_size=1, max_size=20))
def test_window_time_never_raises_and_never_steps_back_more_than_jitter(walls):
    mon = Monitor("m", "1")
    previous = -math.inf
    for wall in walls:
        got = mon.window_time(wall)
        assert math.isfinite(got)
        assert got >= previous - 1.0
        previous = got


def test_states_at_reads_the_monitors_public_window_time():
    registry = Registry(drain_interval=3600)
    try:
        mon = registry.monitor("m", "1")
        ahead = time.time() + 7200  # a scrape's window time, before the clock stepped back
        mon.window_time(ahead)
        calls: list[float | None] = []
        public = mon.window_time

        def spy(now: float | None = None) -> float:
            calls.append(now)
            return public(now)

        mon.window_time = spy  # type: ignore[method-assign]
        states, at = registry.states_at()
        assert calls, "states_at never asked the monitor for its window time"
        assert at >= ahead
        assert [state.model for state in states] == ["m"]
    finally:
        registry.close()
