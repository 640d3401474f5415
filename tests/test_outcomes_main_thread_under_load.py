"""``record_outcome`` on the main thread while other threads serve the model: a lock a worker
holds (a drain, a scrape, another outcome) is let go as usual, so the join waits for it. Only
a lock the main thread holds itself (a signal handler interrupting it) defers the outcome;
deferring on any held lock sent a main-thread label loop's outcomes past the deferred bound
and lost them."""

from __future__ import annotations

import threading

import inferwatch
from inferwatch.core import monitor as monitor_module
from inferwatch.core.outcome_joins import would_wait_on_own_thread
from inferwatch.core.registry import Registry


def _classifier() -> tuple:
    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(lambda x, request_id=None: "yes", name="m", version="1",
                                  registry=registry, classes=["yes", "no"])
    return registry, model, inferwatch.monitor("m", "1", registry=registry)


def _outcomes(mon) -> float:
    return sum(mon.state.counters.get("inferwatch_outcomes_total", {}).values())


def _held_by_a_worker(lock) -> tuple[threading.Thread, threading.Event]:
    """A worker thread holding `lock` until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(30)

    worker = threading.Thread(target=hold, daemon=True)
    worker.start()
    assert held.wait(30)
    return worker, release


def test_a_lock_a_worker_holds_is_not_the_main_threads_own() -> None:
    registry, _, mon = _classifier()
    try:
        for lock in (mon._lock, mon.outcomes._lock, mon._take_lock):
            worker, release = _held_by_a_worker(lock)
            try:
                assert not would_wait_on_own_thread(mon)
            finally:
                release.set()
                worker.join(30)
            with lock:  # still yes when the main thread holds it itself
                assert would_wait_on_own_thread(mon)
    finally:
        registry.close()


def test_outcome_on_the_main_thread_waits_for_a_workers_lock_and_joins() -> None:
    registry, model, mon = _classifier()
    try:
        model(1, request_id="r-1")
        mon.drain()
        worker, release = _held_by_a_worker(mon._lock)
        # The worker lets go after a while on its own, or at once once the outcome is in:
        # either way the outcome joins, never deferred.
        threading.Timer(0.05, release.set).start()
        mon.record_outcome("r-1", "yes")
        release.set()
        worker.join(30)
        assert not mon._deferred_outcomes
        assert _outcomes(mon) == 1.0  # joined by the call itself, no drain needed
    finally:
        registry.close()


def test_main_thread_label_loop_while_workers_serve_loses_no_outcome(monkeypatch) -> None:
    # A small deferred bound: an outcome deferred for a worker's lock would soon be dropped.
    monkeypatch.setattr(monitor_module, "MAX_DEFERRED_OUTCOMES", 16)
    registry, model, mon = _classifier()
    n = 3000
    try:
        for i in range(n):
            model(1, request_id=f"r-{i}")
        stop = threading.Event()
        started = threading.Barrier(4)

        def serve(k: int) -> None:
            started.wait(30)
            j = 0
            while not stop.is_set():
                # A few ids over and over: the join cache stays far below its bound, so
                # no prediction of the label loop is evicted however long the workers run.
                model(1, request_id=f"w{k}-{j % 100}")
                j += 1
                if j % 50 == 0:
                    mon.drain()  # the workers take the monitor's locks over and over

        workers = [threading.Thread(target=serve, args=(k,), daemon=True) for k in range(3)]
        for worker in workers:
            worker.start()
        started.wait(30)
        try:
            for i in range(n):
                mon.record_outcome(f"r-{i}", "yes")
                # The main thread never holds a lock of the monitor here: nothing waits.
                assert not mon._deferred_outcomes
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        mon.drain()
        assert _outcomes(mon) == n
    finally:
        registry.close()
