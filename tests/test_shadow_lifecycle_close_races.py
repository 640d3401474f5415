"""Shadow models around close(): counts folded by two threads at once, calls taken or
sampled while close() runs, a process challenger killed by close(), and the options and
arguments a user gets wrong. In every interleaving, sampled = compared + dropped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import shadow_lifetime
from inferwatch.core.registry import Registry
from shadow_models import Hanging, Summing
from waiting import wait_until

WAIT = 30.0  # generous: a condition that holds is met at once


class Unpicklable(Summing):
    def __reduce__(self):
        raise TypeError("holds a live handle")


def _counter(handle, metric):
    return {k: v for k, v in handle.monitor.state.counters.get(metric, {}).items() if v}


def _accounts(handle):
    """(sampled, compared + dropped) as the challenger's series say."""
    sampled = sum(_counter(handle, "inferwatch_shadow_sampled_total").values())
    compared = sum(_counter(handle, "inferwatch_shadow_compared_total").values())
    dropped = sum(_counter(handle, "inferwatch_shadow_dropped_total").values())
    return sampled, compared + dropped


def _join_workers(handle):
    for thread in handle._threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in handle._threads)


def _read(path):
    with open(path) as f:
        return f.read()


# --- two threads folding the request path's counts at once --------------------------------

def test_the_drain_and_a_worker_folding_at_once_report_each_sampled_call_once(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Summing(), version="2", registry=registry)
    for _ in range(3):
        champion.predict(np.ones((1, 2)))
    assert handle.flush(WAIT)
    # The first folder pauses right after reading what was reported so far (where the
    # interpreter may switch threads); the second one reads it then, if it can.
    first_inside, second_inside = threading.Event(), threading.Event()
    readers: list[int] = []

    class Paused(type(handle)):
        @property
        def _sampled_reported(self):
            value = self.__dict__["_sampled_reported"]
            me = threading.get_ident()
            if not readers:
                readers.append(me)
                first_inside.set()
                second_inside.wait(0.5)  # a second folder kept out: waits this long only
            elif me != readers[0]:
                second_inside.set()
            return value

        @_sampled_reported.setter
        def _sampled_reported(self, value):
            self.__dict__["_sampled_reported"] = value

    handle.__class__ = Paused
    try:
        first = threading.Thread(target=handle.before_drain)
        first.start()
        assert first_inside.wait(WAIT)
        second = threading.Thread(target=handle.before_drain)
        second.start()
        first.join(WAIT)
        second.join(WAIT)
    finally:
        handle.__class__ = Paused.__mro__[1]
    registry.drain()
    assert _counter(handle, "inferwatch_shadow_sampled_total") == {("1",): 3.0}
    assert _accounts(handle) == (3, 3)
    handle.close()


# --- calls taken or sampled while close() runs --------------------------------------------

class _WorkerTakesAsCloseCounts(deque):
    """A worker about to take a call waits until close() has started counting the queue,
    then takes it: the moment a busy server closes a shadow."""

    def __init__(self, handle) -> None:
        super().__init__()
        self.handle = handle
        self.armed = False
        self.waiting = threading.Event()
        self.closing = threading.Event()
        self.taken = threading.Event()

    def popleft(self):
        worker = threading.current_thread().name.startswith("inferwatch-shadow")
        if not worker:
            self.closing.set()  # close() taking the queue
            return super().popleft()
        if self.armed and super().__len__():
            self.waiting.set()
            self.closing.wait(WAIT)
            self.armed = False
            try:
                return super().popleft()
            finally:
                self.taken.set()
        return super().popleft()

    def __len__(self):
        n = super().__len__()
        if self.handle.closed and not self.closing.is_set():
            self.closing.set()  # close() counting the queue
            self.taken.wait(WAIT)
        return n


def test_a_call_a_worker_takes_as_close_counts_the_queue_is_counted_once(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Summing(), version="2", registry=registry)
    queue = handle._queue = _WorkerTakesAsCloseCounts(handle)
    queue.armed = True
    for _ in range(3):
        champion.predict(np.ones((1, 2)))
    assert queue.waiting.wait(WAIT)  # the worker is about to take the first call
    handle.close()
    _join_workers(handle)
    sampled, accounted = _accounts(handle)
    assert sampled == 3
    assert accounted == 3  # each call answered or dropped as shutdown, never both
    assert handle.flush(1) is True


class _ClosesOnFirstLook(deque):
    """offer()'s first look at the queue, as it counts the call, is the moment another
    thread closes (capture() looks earlier, before the champion runs)."""

    def __init__(self, handle) -> None:
        super().__init__()
        self.handle = handle
        self.fired = False

    def __len__(self):
        if not self.fired and sys._getframe(1).f_code.co_name == "offer":
            self.fired = True
            closer = threading.Thread(target=self.handle.close)
            closer.start()
            closer.join(WAIT)
        return super().__len__()


def test_the_first_call_racing_close_starts_no_workers_and_is_counted(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Summing(), version="2", registry=registry)
    handle._queue = _ClosesOnFirstLook(handle)
    # Bound before close() takes the layer off: a caller already in the wrapper.
    predict = champion.predict
    assert predict(np.ones((1, 2))).tolist() == [2.0]
    assert handle.closed
    _join_workers(handle)  # none started, or none left running on a closed shadow
    assert _accounts(handle) == (1, 1)
    assert _counter(handle, "inferwatch_shadow_dropped_total") == {("1", "shutdown"): 1.0}


def test_closing_from_many_threads_at_once_closes_once(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    original = champion.__dict__["predict"]
    for _ in range(20):
        handle = inferwatch.shadow(champion, Summing(), version="2", registry=registry)
        barrier = threading.Barrier(4)

        def close(handle=handle, barrier=barrier):
            barrier.wait(WAIT)
            handle.close()

        threads = [threading.Thread(target=close) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert handle.closed
    assert champion.__dict__["predict"] is original
    assert champion.predict(np.ones((1, 2))).tolist() == [2.0]


# --- a process challenger killed by close() ------------------------------------------------

def test_closing_a_process_shadow_mid_call_drops_it_as_shutdown_and_leaves_no_child(
        registry, tmp_path):
    marker = str(tmp_path / "started")
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Hanging(marker), version="2", mode="process",
                               timeout=600.0, registry=registry)
    champion.predict(np.ones((1, 2)))
    wait_until(lambda: os.path.exists(marker) and _read(marker), WAIT, "the child's call")
    pid = int(_read(marker))
    handle.close()
    _join_workers(handle)
    assert all(runner._process is None for runner in handle._runners)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    dropped = _counter(handle, "inferwatch_shadow_dropped_total")
    assert dropped == {("1", "shutdown"): 1.0}  # the user closed it: not a crash
    assert _accounts(handle) == (1, 1)
    # A call for the runner now (a worker that took one as close ran) starts no child.
    runner = handle._runners[0]
    assert runner.call("predict", (np.ones((1, 2)),), {}, 60.0)[0] == "shutdown"
    assert runner._process is None


# --- options and arguments a user gets wrong -----------------------------------------------

@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint64]),
       queue_size=st.integers(1, 100), workers=st.integers(1, 4),
       max_classes=st.integers(1, 100))
def test_numpy_integers_are_accepted_where_an_int_is(kind, queue_size, workers, max_classes):
    registry = Registry()
    try:
        champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
        handle = inferwatch.shadow(champion, Summing(), version="2", registry=registry,
                                   queue_size=kind(queue_size), workers=kind(workers),
                                   max_classes=kind(max_classes))
        assert (handle.queue_size, handle.workers) == (queue_size, workers)
        assert champion.predict(np.ones((1, 2))).tolist() == [2.0]
        assert handle.flush(WAIT)
        handle.close()
    finally:
        registry.close()


@pytest.mark.parametrize("options, problem", [
    ({"workers": 65}, "workers must be at most 64"),
    ({"workers": 10**9}, "workers must be at most 64"),
    ({"workers": np.bool_(True)}, "workers must be an int"),
    ({"queue_size": True}, "queue_size must be an int"),
    ({"queue_size": np.float64(3.0)}, "queue_size must be an int"),
])
def test_worker_counts_past_the_cap_and_non_integers_get_a_clear_error(registry, options,
                                                                       problem):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    with pytest.raises(ValueError, match=problem):
        inferwatch.shadow(champion, Summing(), version="2", registry=registry, **options)
    assert not hasattr(champion.predict, "__inferwatch_link__")


@pytest.mark.parametrize("challengers, versions", [([], []), ((), "2")])
def test_an_empty_list_of_challengers_is_an_error(registry, challengers, versions):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    with pytest.raises(ValueError, match="empty list"):
        inferwatch.shadow(champion, challengers, version=versions, registry=registry)


def test_a_refused_challenger_in_a_list_leaves_none_of_them_on_the_champion(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    original = champion.__dict__["predict"]
    first = Summing()
    with pytest.raises(TypeError, match="picklable"):
        inferwatch.shadow(champion, [first, Unpicklable()], version=["2", "3"],
                          mode="process", registry=registry)
    assert champion.__dict__["predict"] is original
    assert not any(s.challenger is first for s in list(shadow_lifetime.live_shadows))


class Gated(Summing):
    def __init__(self) -> None:
        self.gate = threading.Event()

    def predict(self, X=None):
        self.gate.wait(WAIT)
        return super().predict(X)


@pytest.mark.parametrize("timeout", [float("nan"), "5", [1.0]])
def test_flush_with_a_timeout_that_is_no_number_is_a_clear_error_not_a_hang(registry,
                                                                           timeout):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = Gated()
    handle = inferwatch.shadow(champion, challenger, version="2", registry=registry)
    champion.predict(np.ones((1, 2)))  # a call still unanswered: flush would have to wait
    try:
        started = time.monotonic()
        with pytest.raises(ValueError, match="flush timeout"):
            handle.flush(timeout)
        assert time.monotonic() - started < WAIT / 2
    finally:
        challenger.gate.set()
        assert handle.flush(WAIT)
        handle.close()
