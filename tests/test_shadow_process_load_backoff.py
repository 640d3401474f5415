"""Process-mode shadows against what a child process meets in production: a challenger that
cannot load in its child, Ctrl-C reaching the whole process group, a serving process forked
after shadow() whose workers exit the ordinary way.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import textwrap
import time

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

import inferwatch
from inferwatch.core import shadow_process
from server_scripts import kill_server_and_await_its_child, run_server


@pytest.fixture(scope="module")
def regressor():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(100, 3))
    return X, LinearRegression().fit(X, X @ np.array([1.0, -2.0, 0.5]))


def _counter(monitor, metric):
    return {k: v for k, v in monitor.state.counters.get(metric, {}).items() if v}


class NotInChildPath:
    """A challenger whose module the child cannot import (a path only the parent has, a
    class from an interactive ``__main__``): it pickles here and fails to load there."""

    def predict(self, rows):
        return np.zeros(len(rows))

    def __reduce__(self):
        return importlib.import_module, ("inferwatch_test_module_missing_in_the_child",)


class CountingContext:
    """The real spawn context, counting the child processes started through it."""

    def __init__(self, real) -> None:
        self.real = real
        self.started = 0

    def Pipe(self, *args, **kwargs):
        return self.real.Pipe(*args, **kwargs)

    def Process(self, *args, **kwargs):
        self.started += 1
        return self.real.Process(*args, **kwargs)


@pytest.fixture
def spawns(monkeypatch):
    counting = CountingContext(shadow_process._CONTEXT)
    monkeypatch.setattr(shadow_process, "_CONTEXT", counting)
    return counting


# --- a challenger that cannot load in its child --------------------------------------------

def test_a_challenger_that_cannot_load_in_its_child_is_not_respawned_on_every_call(
        registry, regressor, spawns, caplog, capfd, monkeypatch):
    monkeypatch.setattr(shadow_process, "START_RETRY_SECONDS", 60.0)
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, NotInChildPath(), version="2", mode="process",
                               timeout=60.0, registry=registry)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        for i in range(6):
            np.testing.assert_array_equal(champion.predict(X[i:i + 2]),
                                          model.predict(X[i:i + 2]))
            assert handle.flush(120)
    registry.drain()
    shadow = handle.monitor

    # One child tried, one log line naming why; every sampled call counted once, as the
    # challenger's error (its real exception type), none as a crash.
    assert spawns.started == 1
    assert time.monotonic() - started < 60.0
    assert _counter(shadow, "inferwatch_shadow_sampled_total") == {("1",): 6.0}
    assert _counter(shadow, "inferwatch_shadow_dropped_total") == {("1", "error"): 6.0}
    assert _counter(shadow, "inferwatch_requests_total") == {("error",): 6.0}
    assert _counter(shadow, "inferwatch_errors_total") == {("ModuleNotFoundError",): 6.0}
    logged = [r for r in caplog.records if "cannot start in its child" in r.getMessage()]
    assert len(logged) == 1
    assert "inferwatch_test_module_missing_in_the_child" in logged[0].getMessage()
    handle.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_challenger_that_cannot_load_is_tried_again_after_a_growing_back_off(
        registry, regressor, spawns, monkeypatch):
    monkeypatch.setattr(shadow_process, "START_RETRY_SECONDS", 0.5)
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, NotInChildPath(), version="2", mode="process",
                               timeout=60.0, registry=registry)
    champion.predict(X[:2])
    assert handle.flush(120)
    failed_at = time.monotonic()
    champion.predict(X[2:4])  # within the back-off: no child
    assert handle.flush(120)
    assert spawns.started == 1
    time.sleep(max(0.0, failed_at + 0.6 - time.monotonic()))  # the back-off itself
    champion.predict(X[4:6])  # past it: tried once more, fails again, waits twice as long
    assert handle.flush(120)
    assert spawns.started == 2
    champion.predict(X[6:8])
    assert handle.flush(120)
    assert spawns.started == 2
    registry.drain()
    assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == {("1", "error"): 4.0}
    handle.close()


def test_several_workers_share_the_back_off_of_a_challenger_that_cannot_load(
        registry, regressor, spawns, monkeypatch):
    monkeypatch.setattr(shadow_process, "START_RETRY_SECONDS", 60.0)
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, NotInChildPath(), version="2", mode="process",
                               timeout=60.0, workers=3, registry=registry)
    champion.predict(X[:2])
    assert handle.flush(120)
    for i in range(9):
        champion.predict(X[i:i + 2])
    assert handle.flush(120)
    registry.drain()
    assert spawns.started == 1  # a worker of its own does not make the model loadable
    assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == {("1", "error"): 10.0}
    handle.close()


# --- Ctrl-C in the terminal reaches the shadow's child too ---------------------------------

def test_ctrl_c_reaching_the_child_neither_kills_it_nor_prints_a_traceback(
        registry, regressor, capfd):
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, model, version="2", mode="process", timeout=60.0,
                               registry=registry)
    champion.predict(X[:2])
    assert handle.flush(120)
    child = handle._runners[0]._process
    os.kill(child.pid, signal.SIGINT)  # what the terminal sends the foreground group
    champion.predict(X[2:4])
    assert handle.flush(120)
    registry.drain()
    assert handle._runners[0]._process is child and child.is_alive()
    assert _counter(handle.monitor, "inferwatch_shadow_compared_total") == {("1",): 2.0}
    assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == {}
    handle.close()
    assert "KeyboardInterrupt" not in capfd.readouterr().err


# --- a serving process forked after shadow() -----------------------------------------------

_FORKING_SERVER = textwrap.dedent("""
    import os, sys
    import inferwatch
    from inferwatch.core.registry import Registry

    class Model:
        def predict(self, rows):
            return [2.0 * r for r in rows]

    if __name__ == "__main__":
        registry = Registry()
        champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
        handle = inferwatch.shadow(champion, Model(), version="2", mode="process",
                                   timeout=60.0, registry=registry)
        champion.predict([1.0])
        assert handle.flush(120)
        child = handle._runners[0]._process
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a pre-fork worker ending the ordinary way: exit handlers run
        os.waitpid(pid, 0)
        champion.predict([2.0])
        assert handle.flush(120)
        registry.drain()
        print("SAME_CHILD", handle._runners[0]._process is child, child.is_alive())
        counts = handle.monitor.state.counters["inferwatch_shadow_compared_total"]
        print("COMPARED", counts[("1",)])
        handle.close()
""")


def test_a_forked_worker_exiting_leaves_the_parents_shadow_child_alone(tmp_path):
    done = run_server(tmp_path, _FORKING_SERVER)
    assert "SAME_CHILD True True" in done.stdout, done.stdout + done.stderr
    assert "COMPARED 2.0" in done.stdout
    # The forked worker's exit handler does not trip over the parent's children either.
    assert "Traceback" not in done.stderr, done.stderr


class DiesOnLoad:
    """A challenger whose loading takes its child down (a native library that aborts on
    import): no reply, only an exit code."""

    def predict(self, rows):
        return np.zeros(len(rows))

    def __reduce__(self):
        return os._exit, (3,)


def test_a_challenger_whose_child_dies_while_loading_backs_off_as_crashed(
        registry, regressor, spawns, caplog, monkeypatch):
    monkeypatch.setattr(shadow_process, "START_RETRY_SECONDS", 60.0)
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, DiesOnLoad(), version="2", mode="process",
                               timeout=60.0, registry=registry)
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        for i in range(4):
            champion.predict(X[i:i + 2])
            assert handle.flush(120)
    registry.drain()
    assert spawns.started == 1
    assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == {("1", "crashed"): 4.0}
    logged = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert len(logged) == 1 and "code 3" in logged[0]
    handle.close()


# --- the serving process killed outright -----------------------------------------------------

_HANGING = textwrap.dedent("""
    class Hanging:
        def __init__(self, marker):
            self.marker = marker

        def predict(self, rows):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(0.05)
""")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_hanging_child_does_not_outlive_a_serving_process_killed_outright(tmp_path):
    kill_server_and_await_its_child(tmp_path, _HANGING, "Hanging", timeout=30.0)
