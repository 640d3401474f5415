"""``record_outcome`` called from a signal handler: the handler runs on the main thread
between two bytecodes of whatever it interrupted, which may hold one of the monitor's locks
(a drain, a scrape). The outcome must neither hang the process nor change the structures
the interrupted code is half-way through: it waits for the next drain, which joins it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import inferwatch
from inferwatch import faults
from inferwatch.core import monitor as monitor_module
from inferwatch.core.registry import Registry

HANDLER_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import inferwatch
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(lambda x, request_id=None: "yes", name="m", version="1",
                                  registry=registry, classes=["yes", "no"])
    mon = inferwatch.monitor("m", "1", registry=registry)
    model(1, request_id="r-1")
    mon.drain()

    def on_signal(signum, frame):
        mon.record_outcome("r-1", "yes")

    signal.signal(signal.SIGUSR1, on_signal)
    held = {"monitor": lambda: mon._lock, "outcomes": lambda: mon.outcomes._lock,
            "take": lambda: mon._take_lock}[sys.argv[1]]()
    with held:
        os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs here, the lock held
        for _ in range(1000):  # bytecodes for the handler to run between
            pass
    mon.drain()
    print(mon.state.counters.get("inferwatch_outcomes_total", {}).get(("correct",), 0.0))
""")


def _run_handler_script(lock: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.run([sys.executable, "-c", HANDLER_SCRIPT, lock], capture_output=True,
                          text=True, timeout=20, env=env)


def _joined_once(lock: str) -> None:
    try:
        done = _run_handler_script(lock)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"record_outcome in a signal handler hung ({lock} lock held)") \
            from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0", done.stdout + done.stderr


def test_outcome_from_a_handler_that_interrupted_a_monitor_lock_holder() -> None:
    _joined_once("monitor")


def test_outcome_from_a_handler_that_interrupted_an_outcome_cache_lock_holder() -> None:
    _joined_once("outcomes")


def test_outcome_from_a_handler_that_interrupted_a_hand_off() -> None:
    _joined_once("take")


def _classifier() -> tuple:
    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(lambda x, request_id=None: "yes", name="m", version="1",
                                  registry=registry, classes=["yes", "no"])
    return model, inferwatch.monitor("m", "1", registry=registry)


def _correct(mon) -> float:
    return mon.state.counters.get("inferwatch_outcomes_total", {}).get(("correct",), 0.0)


def test_outcome_from_another_thread_waits_for_the_lock_and_joins_at_once() -> None:
    model, mon = _classifier()
    model(1, request_id="r-1")
    mon.drain()
    finished = threading.Event()

    def record() -> None:
        mon.record_outcome("r-1", "yes")
        finished.set()

    with mon._lock:
        worker = threading.Thread(target=record)
        worker.start()
        assert not finished.wait(0.2)  # it waits for the lock, as any caller would
    worker.join(timeout=30)
    assert finished.is_set()
    assert not mon._deferred_outcomes
    assert _correct(mon) == 1.0  # joined by the call itself, no drain needed


def test_outcome_on_the_main_thread_with_the_locks_free_joins_at_once() -> None:
    model, mon = _classifier()
    model(1, request_id="r-1")
    mon.record_outcome("r-1", "yes")
    assert not mon._deferred_outcomes
    assert _correct(mon) == 1.0


def test_deferred_outcomes_are_bounded_and_the_dropped_counted(monkeypatch) -> None:
    model, mon = _classifier()
    monkeypatch.setattr(monitor_module, "MAX_DEFERRED_OUTCOMES", 3)
    for i in range(5):
        model(1, request_id=f"r-{i}")
    before = faults.internal_error_counts().get("outcome", 0)
    with mon._lock:  # as a handler finds it
        for i in range(5):
            mon.record_outcome(f"r-{i}", "yes")
        assert len(mon._deferred_outcomes) == 3
    mon.drain()
    assert _correct(mon) == 3.0
    assert faults.internal_error_counts().get("outcome", 0) == before + 2
    assert not mon._deferred_outcomes


def test_an_outcome_dropped_while_a_join_empties_the_deque_is_counted(monkeypatch) -> None:
    # A drain joins deferred outcomes only when some wait, so a drop must never be left for
    # it to find alone: here one is dropped just after the join counted the drops, while the
    # deque is still full, and the join then empties the deque.
    model, mon = _classifier()
    monkeypatch.setattr(monitor_module, "MAX_DEFERRED_OUTCOMES", 3)
    for i in range(3):
        model(1, request_id=f"r-{i}")
    with mon._lock:
        for i in range(3):
            mon.record_outcome(f"r-{i}", "yes")
    count_drops, looked = mon._count_dropped_outcomes, []

    def count_then_drop() -> None:
        count_drops()
        if not looked:
            looked.append(True)
            mon.defer_outcome("late", "yes", 0.0, True)  # the deque is full: dropped

    monkeypatch.setattr(mon, "_count_dropped_outcomes", count_then_drop)
    before = faults.internal_error_counts().get("outcome", 0)
    mon.drain()
    assert looked and not mon._deferred_outcomes and _correct(mon) == 3.0
    assert faults.internal_error_counts().get("outcome", 0) == before + 1
    mon.drain()  # nothing more to count
    assert faults.internal_error_counts().get("outcome", 0) == before + 1
