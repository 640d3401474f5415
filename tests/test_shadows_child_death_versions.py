"""Shadow challengers against more of production: a child stuck in native code when its
serving process is killed, a large challenger, a process out of file descriptors, versions
read from files.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import pickle
import signal
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import shadow_process
from inferwatch.core.registry import Registry
from server_scripts import kill_server_and_await_its_child
from waiting import wait_until

LINUX = sys.platform.startswith("linux")


class Doubler:
    def predict(self, rows):
        return [2.0 * r for r in rows]


class DeathSignal:
    """Answers with the signal its process gets when its parent dies (0: none)."""

    def predict(self, rows):
        value = ctypes.c_int(-1)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(2, ctypes.byref(value), 0, 0, 0) != 0:  # PR_GET_PDEATHSIG
            return -ctypes.get_errno()
        return value.value


class CountedPickle(Doubler):
    """Counts how often it is pickled in this process."""

    pickled = 0

    def __getstate__(self):
        type(self).pickled += 1
        return dict(self.__dict__)


def _counter(monitor, metric):
    return {k: v for k, v in monitor.state.counters.get(metric, {}).items() if v}


# --- the serving process killed while its child is stuck in native code -------------------

@pytest.mark.skipif(not LINUX, reason="the parent-death signal is Linux's")
def test_a_process_challengers_child_gets_killed_by_the_kernel_when_its_parent_dies():
    runner = shadow_process.ProcessRunner(pickle.dumps(DeathSignal()))
    try:
        status, value, _ = runner.call("predict", ([1.0],), {}, timeout=120.0)
    finally:
        runner.close()
    assert status == "ok"
    assert value == signal.SIGKILL


_HOLDS_THE_GIL = textwrap.dedent("""
    class HoldsTheGil:
        '''A native call that never returns the GIL (a C extension's tight loop).'''

        def __init__(self, marker):
            self.marker = marker

        def predict(self, rows):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            ctypes.PyDLL(None).sleep(3600)  # PyDLL: the GIL stays held for the call
""")


@pytest.mark.skipif(not LINUX or not os.path.isdir("/proc"), reason="Linux, reads /proc")
def test_a_child_holding_the_gil_in_native_code_dies_with_its_killed_server(tmp_path):
    kill_server_and_await_its_child(tmp_path, _HOLDS_THE_GIL, "HoldsTheGil",
                                    timeout=20.0)


# --- the challenger pickled once --------------------------------------------------------------

def test_a_process_challenger_is_pickled_once_and_its_child_runs_those_bytes(registry):
    champion = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry)
    CountedPickle.pickled = 0
    handle = inferwatch.shadow(champion, CountedPickle(), version="2", mode="process",
                               timeout=120.0, registry=registry)
    try:
        assert CountedPickle.pickled == 1
        assert champion.predict([1.0, 2.0]) == [2.0, 4.0]
        assert handle.flush(120)
        registry.drain()
        assert _counter(handle.monitor, "inferwatch_shadow_compared_total") == {("1",): 1.0}
        assert CountedPickle.pickled == 1
    finally:
        handle.close()


# --- no file descriptors, no processes left ------------------------------------------------

def _emfile(*args, **kwargs):
    raise OSError(errno.EMFILE, "Too many open files")


def test_a_child_that_cannot_be_started_backs_off_and_is_counted(registry, monkeypatch, caplog):
    monkeypatch.setattr(shadow_process, "START_RETRY_SECONDS", 60.0)
    tries = []

    def no_pipe():
        tries.append(1)
        return _emfile()

    # Process.start() makes its pipe to the new child with os.pipe: out of descriptors.
    monkeypatch.setattr(os, "pipe", no_pipe)
    champion = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Doubler(), version="2", mode="process",
                               timeout=120.0, registry=registry)
    try:
        with caplog.at_level(logging.WARNING, logger="inferwatch"):
            for i in range(5):
                assert champion.predict([float(i)]) == [2.0 * i]
                assert handle.flush(60)
        registry.drain()
        assert len(tries) == 1  # one try, then the back-off: not one per sampled call
        assert _counter(handle.monitor, "inferwatch_shadow_sampled_total") == {("1",): 5.0}
        assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == {
            ("1", "error"): 5.0}
        assert _counter(handle.monitor, "inferwatch_errors_total") == {("OSError",): 5.0}
        logged = [r.getMessage() for r in caplog.records
                  if "cannot start" in r.getMessage()]
        assert len(logged) == 1 and "Too many open files" in logged[0]
    finally:
        handle.close()


class FailingPipes:
    """The real spawn context, its Pipe() failing while `failing` is set."""

    def __init__(self, real) -> None:
        self.real = real
        self.failing = True
        self.pipes = 0

    def Pipe(self, *args, **kwargs):
        self.pipes += 1
        if self.failing:
            _emfile()
        return self.real.Pipe(*args, **kwargs)

    def Process(self, *args, **kwargs):
        return self.real.Process(*args, **kwargs)


def test_several_workers_back_off_a_failing_pipe_and_recover_once_it_works(
        registry, monkeypatch):
    monkeypatch.setattr(shadow_process, "START_RETRY_SECONDS", 0.2)
    context = FailingPipes(shadow_process._CONTEXT)
    monkeypatch.setattr(shadow_process, "_CONTEXT", context)
    champion = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Doubler(), version="2", mode="process",
                               timeout=120.0, workers=3, registry=registry)
    try:
        champion.predict([1.0])
        assert handle.flush(60)
        for i in range(9):
            champion.predict([float(i)])
        assert handle.flush(60)
        assert context.pipes == 1  # the three workers share the back-off
        context.failing = False

        def compared() -> bool:
            champion.predict([3.0])
            assert handle.flush(120)
            registry.drain()
            return bool(_counter(handle.monitor, "inferwatch_shadow_compared_total"))

        wait_until(compared, timeout=120.0)  # the back-off passes; a child starts and answers
        registry.drain()
        dropped = _counter(handle.monitor, "inferwatch_shadow_dropped_total")
        assert set(dropped) == {("1", "error")} and dropped[("1", "error")] >= 10
    finally:
        handle.close()


# --- versions as read from files ----------------------------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.text(alphabet="0123456789.abc-", min_size=1, max_size=8),
       pad=st.sampled_from([" ", "\n", "\t", " \r\n"]))
def test_challenger_versions_that_differ_only_in_whitespace_are_refused(version, pad):
    registry = Registry()
    try:
        champion = inferwatch.instrument(Doubler(), name="m", version="champion",
                                         registry=registry)
        with pytest.raises(ValueError, match="distinct versions"):
            inferwatch.shadow(champion, [Doubler(), Doubler()], version=[version, version + pad],
                              registry=registry)
        # Nothing of the refused list stays on the champion.
        assert "__inferwatch_link__" not in dir(champion.predict)
        assert champion.predict([1.0]) == [2.0]
    finally:
        registry.close()


def test_a_second_live_challenger_under_the_same_version_is_refused(registry):
    champion = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry)
    first = inferwatch.shadow(champion, Doubler(), version="2", registry=registry)
    try:
        with pytest.raises(ValueError, match="already shadows"):
            inferwatch.shadow(champion, Doubler(), version="2\n", registry=registry)
        champion.predict([1.0, 2.0])
        assert first.flush(60)
        registry.drain()
        # One call, one comparison: not one per challenger counted in one series.
        assert _counter(first.monitor, "inferwatch_shadow_sampled_total") == {("1",): 1.0}
        assert _counter(first.monitor, "inferwatch_shadow_compared_total") == {("1",): 1.0}
    finally:
        first.close()
    # Closed, its version is free again.
    again = inferwatch.shadow(champion, Doubler(), version="2", registry=registry)
    again.close()


@pytest.mark.parametrize("version", [None, 2, 2.5])
def test_a_challenger_list_with_a_version_that_is_no_list_gets_a_clear_error(registry, version):
    champion = inferwatch.instrument(Doubler(), name="m", version="1", registry=registry)
    with pytest.raises(ValueError, match="version must be a string or a list"):
        inferwatch.shadow(champion, [Doubler(), Doubler()], version=version, registry=registry)
    assert champion.predict([1.0]) == [2.0]
