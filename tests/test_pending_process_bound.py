"""``max_pending`` and ``max_pending_bytes`` bound the calls waiting for the drain in all,
across every model version of a registry, not once per monitor: with a stalled drain, the
memory held stays the same however many models are served. Calls past the bound are
dropped and counted per model; the ones kept are counted exactly once the drain resumes,
and a model that flooded the bound leaves room to the others after a drain."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.monitor import Monitor
from inferwatch.core.registry import Registry

MODELS = 4
BOUND = 4000


@contextlib.contextmanager
def stalled(monitors: list[Monitor]) -> Iterator[None]:
    """A drain stuck on every monitor: it cannot take their lock (nor can a scrape)."""
    for monitor in monitors:
        monitor._lock.acquire()
    try:
        yield
    finally:
        for monitor in monitors:
            monitor._lock.release()


def _models(registry: Registry, count: int = MODELS, **options):
    predicts = [inferwatch.instrument(lambda x: 0.5, name=f"m{j}", version="1",
                                      registry=registry, **options) for j in range(count)]
    registry.close()  # no background drain: the test drains when it means to
    return predicts, registry.monitors()


def _total_pending(monitors: list[Monitor]) -> int:
    return sum(monitor.pending() for monitor in monitors)


def test_calls_waiting_for_a_stalled_drain_are_bounded_across_models(scraper):
    predicts, monitors = _models(scraper.registry, max_pending=BOUND)
    calls = 3 * BOUND
    with stalled(monitors):
        for predict in predicts:  # one model after the other, each flooding on its own
            for i in range(calls):
                predict(i)
                if i % 97 == 0:
                    assert _total_pending(monitors) <= BOUND
        kept = {monitor.name: monitor.pending() for monitor in monitors}
        assert sum(kept.values()) <= BOUND
        assert sum(kept.values()) >= BOUND - BOUND // 8  # the bound is used, not wasted
    for name, held in kept.items():
        ok = scraper.value("inferwatch_requests_total", model=name, outcome="ok")
        dropped = scraper.value("inferwatch_calls_dropped_total", model=name)
        assert ok == held and ok + dropped == calls
    assert _total_pending(monitors) == 0


def test_calls_of_models_served_at_once_are_bounded_in_all(scraper):
    predicts, monitors = _models(scraper.registry, max_pending=BOUND)
    with stalled(monitors):
        for i in range(3 * BOUND):
            for predict in predicts:  # interleaved, as a server of several models calls them
                predict(i)
            assert _total_pending(monitors) <= BOUND
        kept = _total_pending(monitors)
    recorded = scraper.value("inferwatch_requests_total", outcome="ok", model="m0")
    for j in range(1, MODELS):
        recorded += scraper.value("inferwatch_requests_total", outcome="ok", model=f"m{j}")
    dropped = sum(scraper.value("inferwatch_calls_dropped_total", model=f"m{j}")
                  for j in range(MODELS))
    assert recorded == kept and recorded + dropped == 3 * BOUND * MODELS


def test_threads_calling_many_models_stay_within_the_bound(scraper):
    predicts, monitors = _models(scraper.registry, count=8, max_pending=BOUND)
    with stalled(monitors):
        threads = [threading.Thread(target=lambda p=predict: [p(i) for i in range(2 * BOUND)])
                   for predict in predicts for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kept = _total_pending(monitors)
        assert kept <= BOUND
    scraper.registry.drain()
    recorded = sum(monitor.state.counters["inferwatch_requests_total"][("ok",)]
                   for monitor in monitors)
    dropped = sum(monitor.state.counters["inferwatch_calls_dropped_total"][()]
                  for monitor in monitors)
    assert recorded == kept and recorded + dropped == 2 * BOUND * 16
    assert all(monitor.in_flight() == 0 for monitor in monitors)


def test_calls_holding_arrays_are_bounded_in_bytes_across_models(scraper):
    """Results past the copy limit are kept by reference: 80,000 bytes a call, so 2 MiB
    holds 26 of them, for all the models together."""
    bound = 2 * 1024 * 1024
    each = 80_000
    predicts = [inferwatch.instrument(lambda x: np.zeros(each // 8), name=f"m{j}",
                                      version="1", registry=scraper.registry,
                                      max_pending_bytes=bound) for j in range(MODELS)]
    scraper.registry.close()
    monitors = scraper.registry.monitors()
    for predict in predicts:
        for _ in range(10):
            predict(0)
        scraper.registry.drain()  # learns what a call holds
    with stalled(monitors):
        for predict in predicts:
            for _ in range(200):
                predict(0)
        kept = _total_pending(monitors)
        assert kept * each <= bound
    dropped = sum(scraper.value("inferwatch_calls_dropped_total", model=f"m{j}")
                  for j in range(MODELS))
    recorded = sum(scraper.value("inferwatch_requests_total", model=f"m{j}", outcome="ok")
                   for j in range(MODELS))
    assert recorded == 10 * MODELS + kept and recorded + dropped == 210 * MODELS


def test_a_flooding_model_leaves_room_to_the_others_after_a_drain(scraper):
    (flood, quiet), monitors = _models(scraper.registry, count=2, max_pending=BOUND)
    quiet_monitor = next(monitor for monitor in monitors if monitor.name == "m1")
    with stalled(monitors):
        for i in range(3 * BOUND):
            flood(i)
        for i in range(1000):
            quiet(i)
        assert _total_pending(monitors) <= BOUND
    dropped_while_flooded = scraper.value("inferwatch_calls_dropped_total", model="m1")
    assert dropped_while_flooded > 0  # the bound was spent by the flood
    # After the drain, the quiet model hands its lists off again: nothing of it is dropped.
    with stalled(monitors):
        for i in range(BOUND // 2):
            quiet(i)
        assert quiet_monitor.pending() == BOUND // 2
    assert scraper.value("inferwatch_calls_dropped_total", model="m1") == dropped_while_flooded
    assert scraper.value("inferwatch_requests_total", model="m1", outcome="ok") == \
        1000 - dropped_while_flooded + BOUND // 2


def test_each_registry_has_its_own_bound():
    registries = [Registry(drain_interval=3600) for _ in range(2)]
    try:
        for registry in registries:
            predicts, monitors = _models(registry, count=1, max_pending=BOUND)
            with stalled(monitors):
                for i in range(2 * BOUND):
                    predicts[0](i)
                assert _total_pending(monitors) == BOUND
    finally:
        for registry in registries:
            registry.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400), st.booleans()),
                      min_size=1, max_size=12),
       bound=st.integers(8, 600))
def test_any_calls_and_drains_stay_within_the_bound_and_count_every_call(steps, bound):
    registry = Registry(drain_interval=3600)
    try:
        predicts, monitors = _models(registry, count=3, max_pending=bound)
        made = [0, 0, 0]
        for model, calls, drain_after in steps:
            with stalled(monitors):
                for i in range(calls):
                    predicts[model](i)
                made[model] += calls
                assert _total_pending(monitors) <= bound
            if drain_after:
                registry.drain()
        registry.drain()
        for model, monitor in enumerate(monitors):
            counters = monitor.state.counters
            assert counters["inferwatch_requests_total"][("ok",)] + \
                counters["inferwatch_calls_dropped_total"][()] == made[model]
        # Everything drained: only the lists' lengths stay charged, nothing leaks.
        budget = registry.pending_budget
        assert budget.calls == sum(monitor._chunk for monitor in monitors)
        assert budget.sharers == 3
    finally:
        registry.close()
