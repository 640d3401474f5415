"""The background drain folds a monitor's calls once enough wait or they have waited long
enough; every reader (a scrape, a history sample) sees every call at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import inferwatch
from inferwatch.core.monitor_drain import NOTHING_WAITED
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector


@pytest.fixture
def registry():
    registry = Registry(drain_interval=3600)  # no background pass unless a test asks
    yield registry
    registry.close()


def ok_in(state) -> float:
    return state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0.0)


def requests_ok(monitor) -> float:
    return ok_in(monitor.state)


def scraped_ok(registry) -> float:
    return sum(s.value for family in InferwatchCollector(registry).collect()
               for s in family.samples
               if s.name == "inferwatch_requests_total" and s.labels.get("outcome") == "ok")


def test_a_few_calls_wait_for_drain_max_wait_seconds_then_fold(registry):
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(
        drain_max_wait_seconds=5.0)
    for _ in range(3):
        predict(1.0)
    assert registry.drain_due(clock=100.0) == 0  # the first pass only notes they wait
    assert registry.drain_due(clock=104.9) == 0
    assert requests_ok(monitor) == 0
    assert registry.drain_due(clock=105.0) == 1
    assert requests_ok(monitor) == 3
    predict(1.0)
    assert registry.drain_due(clock=106.0) == 0  # a new wait starts from this pass
    assert registry.drain_due(clock=110.9) == 0
    assert registry.drain_due(clock=111.0) == 1
    assert requests_ok(monitor) == 4


def test_a_scrape_sees_every_call_however_few(registry):
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    predict(1.0)
    assert registry.drain_due(clock=0.0) == 0
    predict(1.0)
    assert scraped_ok(registry) == 2  # the scrape drained both, waiting or not
    assert registry.drain_due(clock=60.0) == 0  # nothing left to fold


def test_drain_min_calls_waiting_fold_at_the_next_pass(registry):
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(drain_min_calls=10)
    for _ in range(9):
        predict(1.0)
    assert registry.drain_due(clock=0.0) == 0
    predict(1.0)
    assert registry.drain_due(clock=0.0) == 1
    assert requests_ok(monitor) == 10


def test_every_kind_of_pending_call_counts_toward_drain_min_calls(registry):
    def model(x):
        if x < 0:
            raise ValueError("negative")
        return (f"t{i}" for i in range(2)) if x > 1 else 0.5

    predict = inferwatch.instrument(model, name="m", version="1", registry=registry)
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(drain_min_calls=3)
    predict(1.0)
    with pytest.raises(ValueError):
        predict(-1.0)
    assert registry.drain_due(clock=0.0) == 0
    assert list(predict(2.0)) == ["t0", "t1"]  # a finished stream is the third
    assert registry.drain_due(clock=0.0) == 1
    counters = monitor.state.counters["inferwatch_requests_total"]
    assert (counters[("ok",)], counters[("error",)]) == (2, 1)


def test_a_handed_off_list_folds_at_the_next_pass(registry):
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(max_pending=16)
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    for _ in range(3):  # the pending list holds 2: the third call hands it to the drain
        predict(1.0)
    assert monitor.pending() == 3 < monitor.settings.drain_min_calls
    assert registry.drain_due(clock=0.0) == 1
    assert requests_ok(monitor) == 3


def test_drain_min_calls_of_one_folds_at_every_pass(registry):
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(drain_min_calls=1)
    for expected in (1, 2, 3):
        predict(1.0)
        assert registry.drain_due(clock=0.0) == 1
        assert requests_ok(monitor) == expected


def test_a_monitor_with_nothing_pending_is_not_drained(registry):
    inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    assert [registry.drain_due(clock=t) for t in (0.0, 10.0, 20.0)] == [0, 0, 0]


def test_the_drain_threads_pass_reaches_monitors_made_since_and_waits_for_no_lock(registry):
    first = registry.monitor("a", "1").configure(drain_min_calls=1)
    first.record_call(0.01, 0.5)
    assert registry.due_pass(clock=0.0) == 1
    later = registry.monitor("b", "1").configure(drain_min_calls=1)
    later.record_call(0.01, 0.5)
    first.record_call(0.01, 0.5)
    passes: list[int] = []
    # A monitor being made in another thread holds the registry's lock: the pass, once a
    # second in the drain thread, goes on without it.
    with registry._lock:
        worker = threading.Thread(target=lambda: passes.append(registry.due_pass(clock=1.0)))
        worker.start()
        worker.join(timeout=60)
    worker.join()
    assert passes == [2]
    assert (requests_ok(first), requests_ok(later)) == (2, 1)


class _Classifier:
    def predict_proba(self, x):
        return np.array([[0.25, 0.75]])


def _one_plain_call(registry, monitor):
    inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)(1.0)


def _one_probability_call(registry, monitor):
    inferwatch.instrument(_Classifier(), name="m", version="1",
                          registry=registry).predict_proba([[1.0]])


def _one_error(registry, monitor):
    def fails(x):
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        inferwatch.instrument(fails, name="m", version="1", registry=registry)(1.0)


def _one_request(registry, monitor):
    with monitor.request(request_id="r-1") as request:
        request.prediction(0.5)


def _one_stream(registry, monitor):
    model = inferwatch.instrument(lambda x: (t for t in ("a", "b")), name="m", version="1",
                                  registry=registry)
    assert list(model(1.0)) == ["a", "b"]


def _one_deferred_outcome(registry, monitor):
    monitor.defer_outcome("r-1", 1, time.time(), True)


@pytest.mark.parametrize("leave", [_one_plain_call, _one_probability_call, _one_error,
                                   _one_request, _one_stream, _one_deferred_outcome])
def test_a_pass_finds_every_kind_of_waiting_work(registry, leave):
    # A pass tells an idle monitor by looking at each list it keeps: work of any kind
    # left in one is seen, waits, and is folded once it has waited long enough.
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(
        drain_max_wait_seconds=5.0)
    assert registry.drain_due(clock=0.0) == 0
    leave(registry, monitor)
    deferred = leave is _one_deferred_outcome
    assert monitor.pending() == (0 if deferred else 1)
    # A scrape's budget tells the same kinds apart by its own truth tests: a call waiting
    # is counted, and only a monitor with none is marked as having had none.
    assert monitor.budget_mark() == (NOTHING_WAITED if deferred else monitor.calls_finished())
    if not deferred:  # outcomes deferred are joined at the next pass, without waiting
        assert registry.drain_due(clock=100.0) == 0
    assert registry.drain_due(clock=105.0) == 1
    assert monitor.pending() == 0 and not monitor._deferred_outcomes
    assert registry.drain_due(clock=200.0) == 0


def test_a_drain_between_passes_starts_the_next_wait_afresh(registry):
    # Calls a scrape took leave nothing waiting: the next call's wait starts at the pass
    # that first finds it, not at the pass that found the calls before.
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    monitor = inferwatch.monitor("m", "1", registry=registry).configure(
        drain_max_wait_seconds=5.0)
    predict(1.0)
    assert registry.drain_due(clock=100.0) == 0
    registry.drain()
    assert registry.drain_due(clock=101.0) == 0  # nothing waits: the wait is forgotten
    predict(1.0)
    assert registry.drain_due(clock=106.0) == 0
    assert registry.drain_due(clock=110.9) == 0 and requests_ok(monitor) == 1
    assert registry.drain_due(clock=111.0) == 1 and requests_ok(monitor) == 2


def test_a_history_sample_counts_the_calls_still_waiting(registry):
    history = registry.enable_history()
    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    for _ in range(4):
        predict(1.0)
    assert registry.drain_due(clock=0.0) == 0
    registry.sample_history(time.time())
    (sample,) = history.samples(("m", "1"))
    assert sample.totals["requests"] == 4 and sample.totals["rows"] == 4


def test_the_background_thread_folds_waiting_calls_after_the_wait():
    registry = Registry(drain_interval=0.01)
    try:
        predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                        registry=registry)
        monitor = inferwatch.monitor("m", "1", registry=registry).configure(
            drain_max_wait_seconds=0.2)
        called = time.monotonic()
        for _ in range(3):
            predict(1.0)
        deadline = called + 60  # a safety net for a loaded machine; it takes about 0.2 s
        while monitor.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        folded = time.monotonic()
        assert monitor.pending() == 0
        # No pass folds them before they waited 0.2 s from the first pass that saw them,
        # which came after the calls.
        assert folded - called >= 0.2
        assert monitor.read_state(ok_in) == 3
    finally:
        registry.close()


@pytest.mark.parametrize("options, named", [
    ({"drain_min_calls": 0}, "drain_min_calls"),
    ({"drain_min_calls": 2.5}, "drain_min_calls"),
    ({"drain_min_calls": True}, "drain_min_calls"),
    ({"drain_max_wait_seconds": -1}, "drain_max_wait_seconds"),
    ({"drain_max_wait_seconds": float("inf")}, "drain_max_wait_seconds"),
    ({"drain_max_wait_seconds": "5"}, "drain_max_wait_seconds"),
])
def test_bad_drain_options_are_clear_errors(options, named):
    with pytest.raises(ValueError, match=named):
        Settings(**options)


def test_a_drain_that_finds_nothing_waits_for_a_drain_still_folding(registry, monkeypatch):
    """Another drain may have taken every call and still be folding them: a drain that
    finds nothing pending returns only once that fold is done, so the calls are counted
    when it returns (a reader of the state needs no lock of its own)."""
    from inferwatch.core import monitor_drain

    predict = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    for _ in range(1000):
        predict(1)
    monitor = inferwatch.monitor("m", "1", registry=registry)
    taken, release = threading.Event(), threading.Event()
    take = monitor_drain.MonitorDrain._take_pending

    def held_take(self, left):  # the calls taken, the lock held, nothing folded yet
        chunk = take(self, left)
        if any(chunk):
            taken.set()
            release.wait(10)
        return chunk

    monkeypatch.setattr(monitor_drain.MonitorDrain, "_take_pending", held_take)
    folding = threading.Thread(target=monitor.drain)
    folding.start()
    assert taken.wait(10)
    seen = []

    def drain_and_read():
        monitor.drain()
        seen.append(monitor.state.counters.get("inferwatch_requests_total", {}).get(("ok",)))

    second = threading.Thread(target=drain_and_read)
    second.start()
    second.join(0.5)  # without the wait it has returned by now, having read nothing
    release.set()
    second.join(10)
    folding.join(10)
    assert seen == [1000]


@pytest.mark.parametrize("width", [2, 3, 4, 5])
def test_splitting_a_drains_calls_into_columns_sets_off_no_garbage_collection(width):
    """A drain's thousand calls are split into columns without a tracked object per call
    (zip(*calls) made an iterator each, and so a collection in every drain)."""
    import gc

    import numpy as np

    from inferwatch.core.pending_calls import call_columns

    array = np.array([[0.3, 0.7]])
    call = {2: (0.001, 0.5), 3: (0.001, 0.5, array), 4: (0.001, array, None, array.tobytes()),
            5: (0.001, 0.5, array, array.tobytes(), None)}[width]
    pending = [tuple(call) for _ in range(1000)]
    collections = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        durations, results, _, _ = call_columns(pending)
    finally:
        gc.callbacks.remove(count)
    assert collections == []
    assert len(durations) == 1000 and (width == 4 or len(results) == 1000)
