"""Streams ended by two threads at once, and streams ended before they ever started: each
call is counted once, under one outcome, and the in-flight gauge stays exact."""

from __future__ import annotations

import asyncio
import collections.abc
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from request_totals import BothPastTheCheck, requests_by_outcome


@pytest.fixture
def registry():
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


class Chunks:
    """An SDK's stream: an iterator object with a close(), followed by a proxy."""

    def __init__(self, items: list, error: BaseException | None = None) -> None:
        self._items = iter(items)
        self._error = error
        self.closed = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._error is not None:
            raise self._error
        return next(self._items)

    def close(self) -> None:
        self.closed += 1


def run_together(*steps) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(step) -> None:
        try:
            step()
        except StopIteration:
            pass
        except ValueError:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_a_proxy_exhausted_in_one_thread_and_closed_in_another_counts_once(registry):
    """A server thread reads the stream's end while a client disconnect closes it: both
    endings passed the tracker's done check, the call was counted twice and the in-flight
    gauge hid a call that was still open."""
    chat = inferwatch.instrument(lambda items: Chunks(items), name="chat", registry=registry)
    monitor = registry.monitor("chat", "unversioned")
    still_open = chat(["x"])  # another call, in flight throughout
    stream = chat([])
    # Read first by the proxy, then by the tracker's ending: both threads get past the
    # tracker's own check before either sets it.
    stream._inferwatch_tracker.done = BothPastTheCheck(2, value=False, reading=2)
    errors = run_together(lambda: next(stream), stream.close)
    assert not errors
    counts = requests_by_outcome(monitor)
    assert sum(counts.values()) == 1.0
    assert set(counts) <= {"ok", "cancelled"}
    assert monitor.in_flight() == 1
    assert still_open is not None


def test_a_proxy_that_raised_in_one_thread_and_closed_in_another_counts_once(registry):
    """The first exception counts the call (fail()) while another thread closes the stream
    (end()): both read `counted` as unset, and the call was counted twice, once as the
    error and once as cancelled."""
    chat = inferwatch.instrument(lambda: Chunks([], ValueError("upstream gone")), name="chat",
                                 registry=registry)
    monitor = registry.monitor("chat", "unversioned")
    stream = chat()
    stream._inferwatch_tracker.counted = BothPastTheCheck(2, value=False)
    errors = run_together(lambda: next(stream), stream.close)
    assert not errors
    counts = requests_by_outcome(monitor)
    assert sum(counts.values()) == 1.0, counts
    assert monitor.in_flight() == 0


def test_many_threads_ending_the_same_proxies_count_each_once(registry):
    """Threads released together close and exhaust the same streams: each is counted once,
    whichever thread won."""
    chat = inferwatch.instrument(lambda: Chunks([]), name="chat", registry=registry)
    monitor = registry.monitor("chat", "unversioned")
    streams = [chat() for _ in range(200)]
    barrier = threading.Barrier(4, timeout=10)

    def end_all(close: bool) -> None:
        barrier.wait()
        for stream in streams:
            if close:
                stream.close()
            else:
                next(stream, None)

    errors = run_together(*(lambda close=i % 2 == 0: end_all(close) for i in range(4)))
    assert not errors
    assert sum(requests_by_outcome(monitor).values()) == 200.0
    assert monitor.in_flight() == 0


def test_two_configures_racing_a_call_leave_the_newest_plan_in_force(registry, monkeypatch):
    """A call working out the plan of settings that a second configure() has already
    replaced stored that stale plan last, under the newest settings: every later stream
    was followed without the token counting the model was configured for, silently."""
    from inferwatch.core import follower

    chat = inferwatch.instrument(lambda text: iter(text.split()), name="chat",
                                 registry=registry)
    monitor = registry.monitor("chat", "unversioned")
    list(chat("warm up"))
    planned = threading.Event()
    release = threading.Event()
    real_plan = follower._plan

    def slow_plan(settings):
        plan = real_plan(settings)
        if threading.current_thread().name == "stale":
            planned.set()
            assert release.wait(10)
        return plan

    monkeypatch.setattr(follower, "_plan", slow_plan)
    monitor.configure(stream_interval_buckets=(0.5, 1.0))
    stale = threading.Thread(target=lambda: list(chat("one two")), name="stale")
    stale.start()
    assert planned.wait(10)
    monitor.configure(count_tokens=lambda text: len(text.split()))
    list(chat("three four five"))
    release.set()
    stale.join(10)
    assert not stale.is_alive()
    monitor.drain()
    before = monitor.state.counters.get("inferwatch_tokens_total", {}).get(("output",), 0.0)
    list(chat("six seven"))
    monitor.drain()
    after = monitor.state.counters["inferwatch_tokens_total"][("output",)]
    assert after - before == 2.0


class Relay(collections.abc.Generator):
    """A generator-like stream object (a ``collections.abc.Generator``, not a generator):
    not started, a throw() comes straight back, as from a bare generator."""

    def __init__(self, items: list) -> None:
        self._items = iter(items)

    def send(self, value):
        return next(self._items)

    def throw(self, typ, val=None, tb=None):
        raise typ if val is None else val


class AsyncRelay(collections.abc.AsyncGenerator):
    def __init__(self, items: list) -> None:
        self._items = iter(items)

    async def asend(self, value):
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def athrow(self, typ, val=None, tb=None):
        raise typ if val is None else val


@pytest.mark.parametrize("error_class", [ValueError, KeyboardInterrupt])
def test_a_throw_into_a_stream_object_before_its_first_item_is_the_consumer_cancelling(
        registry, error_class):
    """As for a generator's wrapper: a throw() before the first item is the consumer
    aborting the stream. A generator-like object's proxy counted it as the model's error."""
    relay = inferwatch.instrument(lambda: Relay(["a", "b"]), name="relay", registry=registry)
    monitor = registry.monitor("relay", "unversioned")
    stream = relay()
    with pytest.raises(error_class):
        stream.throw(error_class("stop"))
    assert requests_by_outcome(monitor) == {"cancelled": 1.0}
    assert not monitor.state.counters.get("inferwatch_errors_total")
    assert monitor.in_flight() == 0
    # Once it has items, what a throw() brings back is the stream's, as before.
    stream = relay()
    assert next(stream) == "a"
    with pytest.raises(error_class):
        stream.throw(error_class("stop"))
    # An interrupt is the process stopping, whenever it comes: cancelled, not an error.
    expected = {"cancelled": 2.0} if error_class is KeyboardInterrupt else \
        {"cancelled": 1.0, "error": 1.0}
    assert requests_by_outcome(monitor) == expected


def test_an_athrow_into_an_async_stream_object_before_its_first_item_is_cancelling(registry):
    relay = inferwatch.instrument(lambda: AsyncRelay(["a"]), name="relay", registry=registry)
    monitor = registry.monitor("relay", "unversioned")

    async def consume() -> None:
        stream = relay()
        with pytest.raises(ValueError):
            await stream.athrow(ValueError("stop"))

    asyncio.run(consume())
    assert requests_by_outcome(monitor) == {"cancelled": 1.0}
    assert monitor.in_flight() == 0


@given(items=st.lists(st.text(max_size=5), max_size=5), thrown=st.integers(0, 6))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_stream_object_is_counted_once_however_a_throw_ends_it(registry, items, thrown):
    """Items then a throw() at any point: one call, cancelled before any item, the
    stream's own outcome after; never a second count, never left in flight."""
    relay = inferwatch.instrument(lambda: Relay(items), name="prop", registry=registry)
    monitor = registry.monitor("prop", "unversioned")
    before = sum(requests_by_outcome(monitor).values())
    stream = relay()
    taken = 0
    try:
        while taken < thrown:
            next(stream)
            taken += 1
        stream.throw(ValueError("stop"))
    except (StopIteration, ValueError):
        pass
    stream.close()
    counts = requests_by_outcome(monitor)
    assert sum(counts.values()) == before + 1
    assert monitor.in_flight() == 0
