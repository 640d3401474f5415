"""The registry, per-model state and the ring of recent totals at their edges: forks,
many model versions, close() racing with a fork, and extensions that fail in a child."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.core.history import MAX_KEYS, History
from inferwatch.core.registry import Registry
from inferwatch.core.state import EXTRA_TYPES, ModelState, register_extra

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _in_forked_child(check: Callable[[], None], limit: float = 60.0) -> None:
    """Run `check` in a forked child; fail here with the child's traceback if it raises,
    and with a clear message if the child hangs (a lock left held at fork)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        signal.alarm(int(limit))
        code = 0
        try:
            check()
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            code = 1
        os.close(write_end)
        os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + limit + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, report or "the child was killed"


# --- a forked child's history -------------------------------------------------------------

@needs_fork
def test_a_forked_child_reads_its_windows_against_its_own_samples_only():
    registry = Registry(drain_interval=3600)
    try:
        history = registry.enable_history()
        mon = registry.monitor("fraud", "1")
        for _ in range(50):  # the master's warm-up traffic
            mon.record_call(0.01, 0.5)
        registry.sample_history(time.time())
        assert history.samples(("fraud", "1"))[-1].totals["requests"] == 50

        def child() -> None:
            now = time.time()
            # Nothing of the parent's: a window read now is "since the child started".
            assert history.samples(("fraud", "1")) == []
            assert history.before(("fraud", "1"), now + 3600) is None
            assert history.due(now)  # the child samples at its first drain pass
            for _ in range(3):
                mon.record_call(0.01, 0.5)
            registry.sample_history(now)
            samples = history.samples(("fraud", "1"))
            assert [s.totals["requests"] for s in samples] == [3.0]

        _in_forked_child(child)
        # The parent keeps its own ring.
        assert history.samples(("fraud", "1"))[-1].totals["requests"] == 50
    finally:
        registry.close()


# --- more model versions than the ring follows ----------------------------------------------

def test_past_max_keys_versions_the_followed_rings_keep_their_samples():
    registry = Registry(drain_interval=3600, max_models=MAX_KEYS + 50)
    try:
        history = registry.enable_history()
        for i in range(MAX_KEYS + 1):
            registry.monitor(f"m{i}", "1")
        for round_ in range(5):
            registry.sample_history(1_000.0 + 10 * round_)
        keys = history.keys()
        assert len(keys) == MAX_KEYS
        # Every followed version has a sample per round: a 30 s window reads 30 s.
        assert {len(history.samples(key)) for key in keys} == {5}
        assert history.before(keys[0], 1_040.0 - 30).at == 1_010.0
    finally:
        registry.close()


def test_a_version_no_longer_sampled_makes_room_for_a_new_one():
    history = History(interval_seconds=10, span_seconds=60)
    old = [ModelState(f"m{i}", "1") for i in range(MAX_KEYS)]
    history.record(old, now=100.0)
    history.record(old, now=110.0)
    # m0 stopped serving (its state is not sampled any more); a new version arrives. It is
    # followed from the round after m0 first went unsampled.
    newcomer = ModelState("new", "1")
    for now in (120.0, 130.0, 140.0):
        history.record([*old[1:], newcomer], now=now)
    keys = set(history.keys())
    assert len(keys) == MAX_KEYS
    assert ("new", "1") in keys and ("m0", "1") not in keys
    assert [s.at for s in history.samples(("new", "1"))] == [130.0, 140.0]
    assert len(history.samples(("m1", "1"))) == 5


@settings(max_examples=25, deadline=None)
@given(versions=st.integers(min_value=1, max_value=MAX_KEYS + 60),
       rounds=st.integers(min_value=1, max_value=6))
def test_the_ring_is_bounded_and_followed_versions_never_lose_samples(versions, rounds):
    history = History(interval_seconds=10, span_seconds=600)
    states = [ModelState(f"m{i}", str(i % 3)) for i in range(versions)]
    for round_ in range(rounds):
        for state in states:
            state.inc("inferwatch_requests_total", ("ok",), 1)
        history.record(states, now=10.0 * round_)
    keys = history.keys()
    assert len(keys) == min(versions, MAX_KEYS)
    for key in keys:
        samples = history.samples(key)
        assert len(samples) == rounds
        assert [s.totals["requests"] for s in samples] == [float(r + 1) for r in range(rounds)]


def test_a_clock_stepped_back_does_not_let_a_newcomer_evict_a_sampled_version():
    history = History(interval_seconds=10, span_seconds=600)
    states = [ModelState(f"m{i}", "1") for i in range(MAX_KEYS)]
    history.record(states, now=1_000.0)
    newcomer = ModelState("new", "1")
    history.record([*states, newcomer], now=500.0)  # NTP stepped the clock back
    keys = set(history.keys())
    assert len(keys) == MAX_KEYS and ("new", "1") not in keys
    assert all(len(history.samples(s.key)) == 1 for s in states)


# --- a fork while another thread is closing the registry --------------------------------------

@needs_fork
def test_a_fork_while_another_thread_closes_the_registry_leaves_a_child_that_can_close():
    registry = Registry(drain_interval=3600)
    registry.monitor("m", "1")
    inside_set = threading.Event()
    release = threading.Event()

    def closing_thread() -> None:
        # As if fork() came while this thread was inside close(), in the stop event's
        # set(): its flag raised, its own lock not yet released.
        with registry._stop._cond:
            registry._stop._flag = True
            inside_set.set()
            release.wait(30)

    thread = threading.Thread(target=closing_thread)
    thread.start()
    try:
        assert inside_set.wait(10)

        def child() -> None:
            registry.close()  # at exit, as an embedder's shutdown hook does
            registry.monitor("m", "1").record_call(0.01, 0.5)
            registry.drain()

        _in_forked_child(child, limit=5)
    finally:
        release.set()
        thread.join(10)
        registry.close()


@needs_fork
def test_a_registry_closed_before_fork_stays_closed_in_the_child():
    registry = Registry(drain_interval=3600)
    registry.monitor("m", "1")
    registry.close()

    def child() -> None:
        registry.monitor("m", "2")
        # This registry's own drain thread: registries other tests of this process left
        # running restart theirs in the child, as they should.
        drainer = registry._drainer
        assert drainer is None or not drainer.is_alive() or registry._drainer_pid != os.getpid()
        registry.close()  # twice: harmless

    _in_forked_child(child)


# --- an extension whose reset fails in a forked child ----------------------------------------

class _FailingReset:
    """A registered extra whose reset() fails (a third-party extension's bug)."""

    def merge(self, other: object) -> None:
        pass

    def to_dict(self) -> dict:
        return {}

    def reset(self) -> None:
        raise RuntimeError("cannot reset")


@needs_fork
def test_one_extension_failing_at_fork_does_not_leave_the_parents_counts_in_the_child():
    register_extra("failing_reset_extra", lambda data: _FailingReset())
    registry = Registry(drain_interval=3600)
    try:
        broken = registry.monitor("broken", "1")
        broken.update_state(lambda state: state.extras.__setitem__("failing_reset_extra",
                                                                 _FailingReset()))
        healthy = registry.monitor("healthy", "1")
        for _ in range(7):
            broken.record_call(0.01, 0.5)
            healthy.record_call(0.01, 0.5)
        registry.drain()
        faults_before = faults.internal_error_counts().get("fork", 0)

        def child() -> None:
            healthy.record_call(0.01, 0.5)
            registry.drain()
            # Only the child's own call: the parent's 7 are the parent's to export.
            requests = {s.key: sum(s.counters.get("inferwatch_requests_total", {}).values())
                        for s in registry.states()}
            assert requests == {("broken", "1"): 0.0, ("healthy", "1"): 1.0}, requests
            assert faults.internal_error_counts().get("fork", 0) == faults_before + 1

        _in_forked_child(child)
    finally:
        EXTRA_TYPES.pop("failing_reset_extra", None)
        registry.close()


class _CountingExtra:
    """A registered extra that remembers being reset."""

    def __init__(self) -> None:
        self.value = 5

    def merge(self, other: object) -> None:
        pass

    def to_dict(self) -> dict:
        return {"value": self.value}

    def reset(self) -> None:
        self.value = 0


def test_an_extra_failing_at_fork_leaves_the_extras_after_it_reset():
    register_extra("failing_reset_first", lambda data: _FailingReset())
    register_extra("counting_extra_after", lambda data: _CountingExtra())
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("two-extras", "1")

        def add(state: ModelState) -> None:
            state.extras["failing_reset_first"] = _FailingReset()
            state.extras["counting_extra_after"] = _CountingExtra()

        monitor.update_state(add)

        def child() -> None:
            extras = monitor.state.extras
            # The one that cannot reset is dropped (its parent's data must not be exported
            # again); the one after it is reset, not skipped.
            assert "failing_reset_first" not in extras
            assert extras["counting_extra_after"].value == 0

        _in_forked_child(child)
    finally:
        EXTRA_TYPES.pop("failing_reset_first", None)
        EXTRA_TYPES.pop("counting_extra_after", None)
        registry.close()
