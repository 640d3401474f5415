"""The drain's edges: calls it holds, drops and folds under hostile data, heavy calls
and concurrency, counted exactly."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

import inferwatch
from inferwatch.core.registry import Registry


@pytest.fixture
def registry():
    registry = Registry(drain_interval=3600)  # no background pass unless a test asks
    yield registry
    registry.close()


def _counter(monitor, metric: str, labels: tuple) -> float:
    return monitor.state.counters.get(metric, {}).get(labels, 0.0)


class _Unreadable:
    """A prediction object that fails when read as an array (a lazy tensor whose device
    went away, a proxy over a closed connection)."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("device lost")

    def __len__(self):
        raise RuntimeError("device lost")

    def __iter__(self):
        raise RuntimeError("device lost")


@pytest.mark.parametrize("prediction", [_Unreadable(), [_Unreadable()],
                                        {"a": _Unreadable(), "b": _Unreadable()}])
def test_an_unreadable_request_prediction_never_loses_the_drains_other_calls(
        registry, prediction):
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    monitor = inferwatch.monitor("m", "1", registry=registry)
    for _ in range(3):
        predict(1.0)
    with monitor.request(request_id="r-1") as r:
        r.prediction(prediction)
    with monitor.request(request_id="r-2") as r:
        r.prediction(1)
    monitor.drain()
    assert _counter(monitor, "inferwatch_requests_total", ("ok",)) == 5
    latency = monitor.state.histograms["inferwatch_request_duration_seconds"][()]
    assert latency.count == 5
    assert monitor.in_flight() == 0
    # the readable request still joins its outcome
    monitor.record_outcome("r-2", 1)
    assert _counter(monitor, "inferwatch_outcomes_total", ("correct",)) == 1


def test_max_pending_bytes_bounds_a_drain_stalled_from_the_start(registry):
    bound = 4 << 20
    size = 1 << 20  # each call keeps a 1 MiB result by reference until the drain

    predict = inferwatch.instrument(lambda x: np.full(size // 8, 0.5), name="m", version="1",
                                    registry=registry, max_pending_bytes=bound)
    monitor = inferwatch.monitor("m", "1", registry=registry)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            predict(1.0)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    # Without any drain yet, the calls waiting hold a few times the bound at most, not
    # 300 MiB.
    assert held < 16 * bound, held
    monitor.drain()
    ok = _counter(monitor, "inferwatch_requests_total", ("ok",))
    dropped = _counter(monitor, "inferwatch_calls_dropped_total", ())
    assert dropped > 0
    assert ok + dropped == 300
    assert monitor.in_flight() == 0


@pytest.mark.parametrize("max_pending", [16, 1_000_000])
def test_threads_scrapes_and_the_background_drain_count_every_call_once(max_pending):
    registry = Registry(drain_interval=0.001)
    try:
        predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                        registry=registry, max_pending=max_pending,
                                        drain_min_calls=1)
        monitor = inferwatch.monitor("m", "1", registry=registry)
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                registry.drain()

        def work():
            for _ in range(5000):
                predict(1.0)

        workers = [threading.Thread(target=work) for _ in range(4)]
        scrapers = [threading.Thread(target=scrape) for _ in range(2)]
        for thread in workers + scrapers:
            thread.start()
        for thread in workers:
            thread.join(timeout=60)
        stop.set()
        for thread in scrapers:
            thread.join(timeout=60)
        registry.drain()
        ok = _counter(monitor, "inferwatch_requests_total", ("ok",))
        dropped = _counter(monitor, "inferwatch_calls_dropped_total", ())
        assert ok + dropped == 20000
        assert monitor.state.histograms["inferwatch_request_duration_seconds"][()].count == ok
        assert monitor.in_flight() == 0 and monitor.pending() == 0
    finally:
        registry.close()


def test_a_server_of_requests_only_hands_its_list_off_whole_not_every_few_requests():
    # The short lists a monitor starts with (until a call is sized) ended only with a
    # fast-path call's drain: a web server whose every call is a request (the middleware)
    # handed its list to the drain, and woke it, every eight requests for good.
    registry = Registry(drain_interval=3600.0)
    try:
        mon = registry.monitor("m", "1")
        wakes = []
        mon.wake_drain = lambda: wakes.append(1)
        for _ in range(200):
            with mon.request():
                pass
        assert len(wakes) <= 1
        assert mon._handed_off_calls <= 8
        mon.drain()
        assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 200
    finally:
        registry.close()
