"""Shadow models and their inputs, their exit and their memory: a challenger that edits its
input in place (whatever its kind) edits only its own copy; a champion that edits its input
in place hands the challenger the input as the call was made; a call under way as the
shadow closes (or its server exits) ends compared or dropped, never neither; and the queue
holds a bounded number of bytes, not only a bounded number of calls.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import inferwatch
from event_log_helpers import THREADS_AT_EXIT
from inferwatch.core import shadow_lifetime, shadow_runtime

WAIT = 30.0  # generous: a condition that holds is met at once


def _counter(handle, metric):
    return {k: v for k, v in handle.monitor.state.counters.get(metric, {}).items() if v}


def _dropped(handle):
    return {k[1]: v for k, v in _counter(handle, "inferwatch_shadow_dropped_total").items()}


def _accounts(handle):
    """(sampled, compared, dropped) as the challenger's series say."""
    sampled = sum(_counter(handle, "inferwatch_shadow_sampled_total").values())
    compared = sum(_counter(handle, "inferwatch_shadow_compared_total").values())
    return sampled, compared, sum(_dropped(handle).values())


def _dense(value):
    return value.toarray() if sp.issparse(value) else np.asarray(value)


# --- a challenger that edits its input in place ---------------------------------------------

class Summing:
    def predict(self, X):
        if isinstance(X, dict):
            X = X["x"]
        return np.asarray(X.sum(axis=1)).ravel()


class ShiftsInPlace(Summing):
    """A challenger that standardises its input in place, as a scaler with copy=False."""

    def predict(self, X):
        if isinstance(X, dict):
            X["x"] -= 1000.0
        elif sp.issparse(X):
            X.data -= 1000.0
        else:
            X -= 1000.0
        return super().predict(X)


INPUTS = {
    "matrix": lambda: np.matrix(np.ones((4, 3))),
    "masked": lambda: np.ma.masked_array(np.ones((4, 3)), mask=np.zeros((4, 3), bool)),
    "csr": lambda: sp.csr_matrix(np.ones((4, 3))),
    "csr_past_copy_bound": lambda: sp.csr_matrix(np.ones((400, 100))),
    "matrix_past_copy_bound": lambda: np.matrix(np.ones((400, 100))),
    "ordered_dict": lambda: collections.OrderedDict(x=np.ones((4, 3))),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("make", INPUTS.values(), ids=INPUTS.keys())
def test_a_challenger_editing_its_input_in_place_leaves_the_callers_input_alone(registry,
                                                                                 make):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, ShiftsInPlace(), version="2", timeout=60.0,
                               registry=registry)
    X = make()
    original = _dense(X["x"] if isinstance(X, dict) else X).copy()
    first = champion.predict(X)
    assert handle.flush(WAIT)
    second = champion.predict(X)
    assert handle.flush(WAIT)
    np.testing.assert_array_equal(_dense(X["x"] if isinstance(X, dict) else X), original)
    # The champion answers the same input the same way after the challenger ran on it.
    np.testing.assert_array_equal(first, second)
    registry.drain()
    assert _accounts(handle) == (2, 2, 0)
    handle.close()


def test_a_large_cpu_tensor_is_the_challengers_own_copy(registry):
    torch = pytest.importorskip("torch")

    class TensorShifts:
        def predict(self, X):
            X -= 1000.0
            return X.sum(dim=1).numpy()

    class TensorSums:
        def predict(self, X):
            return X.sum(dim=1).numpy()

    champion = inferwatch.instrument(TensorSums(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, TensorShifts(), version="2", timeout=60.0,
                               registry=registry)
    X = torch.ones((400, 100))  # 160 KB: past the 64 KiB copied at call time
    champion.predict(X)
    assert handle.flush(WAIT)
    assert bool((X == 1.0).all())
    handle.close()


# --- a champion that edits its input in place ----------------------------------------------

class Standardises:
    """Edits its input in place before it scores, as some user models do."""

    def predict(self, X):
        X -= 10.0
        return X.sum(axis=1)


class Seeing(Summing):
    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict(self, X):
        self.seen.append(np.array(X, copy=True))
        return np.asarray(X, dtype=float).sum(axis=1) - 10.0 * X.shape[1]


class AsyncStandardises:
    async def predict(self, X):
        X -= 10.0
        return X.sum(axis=1)


@pytest.mark.parametrize("call", ["positional", "keyword", "async"])
def test_the_challenger_sees_the_input_the_champion_was_called_with(registry, call):
    model = AsyncStandardises() if call == "async" else Standardises()
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    challenger = Seeing()
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=60.0,
                               registry=registry)
    X = np.ones((2, 3))
    if call == "positional":
        champion.predict(X)
    elif call == "keyword":
        champion.predict(X=X)
    else:
        asyncio.run(champion.predict(X))
    assert handle.flush(WAIT)
    registry.drain()
    assert [seen.tolist() for seen in challenger.seen] == [[[1.0] * 3] * 2]
    # The same answer on both sides: every difference is 0.
    hist = handle.monitor.state.histograms["inferwatch_shadow_difference"][("1", "value")]
    assert (int(hist.counts.sum()), float(hist.sum)) == (2, 0.0)
    handle.close()


def test_a_champion_editing_a_list_input_in_place_hands_on_the_rows_it_was_given(registry):
    class Clips:
        def predict(self, rows):
            for row in rows:
                row[0] = 0.0
            return [sum(row) for row in rows]

    class Sums:
        def __init__(self) -> None:
            self.seen: list = []

        def predict(self, rows):
            self.seen.append([list(row) for row in rows])
            return [sum(row) for row in rows]

    champion = inferwatch.instrument(Clips(), name="m", version="1", registry=registry)
    challenger = Sums()
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=60.0,
                               registry=registry)
    champion.predict([[5.0, 1.0]])
    assert handle.flush(WAIT)
    assert challenger.seen == [[[5.0, 1.0]]]
    handle.close()


# --- a call under way as the shadow closes --------------------------------------------------

class Gated(Summing):
    """Answers once `gate` is set; `started` is set as each call begins."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def predict(self, X):
        self.started.set()
        self.gate.wait(WAIT)
        return super().predict(X)


def _in_flight(handle):
    return handle.monitor.state.gauges.get("inferwatch_requests_in_flight", {}).get((), 0)


def _requests(handle):
    return {k[0]: v for k, v in _counter(handle, "inferwatch_requests_total").items()}


def test_a_call_still_under_way_past_the_close_wait_is_dropped_once_as_shutdown(
        registry, monkeypatch):
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", 0.05, raising=False)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = Gated()
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=60.0,
                               registry=registry)
    for _ in range(3):
        champion.predict(np.ones((1, 2)))
    assert challenger.started.wait(WAIT)  # one call under way, two queued
    handle.close()
    registry.drain()
    # Accounted for as close() returns: a final push right after it adds up.
    assert _accounts(handle) == (3, 0, 3)
    assert _dropped(handle) == {"shutdown": 3.0}
    assert _requests(handle) == {"cancelled": 1.0}
    assert _in_flight(handle) == 0
    # Its late answer changes nothing: it is not counted a second time.
    challenger.gate.set()
    for thread in handle._threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in handle._threads)
    registry.drain()
    assert _accounts(handle) == (3, 0, 3)
    assert _requests(handle) == {"cancelled": 1.0}
    assert _in_flight(handle) == 0


def test_a_call_that_ends_while_close_waits_is_compared(registry, monkeypatch):
    monkeypatch.setattr(shadow_lifetime, "CLOSE_WAIT_SECONDS", WAIT, raising=False)
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = Gated()
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=60.0,
                               registry=registry)
    champion.predict(np.ones((1, 2)))
    assert challenger.started.wait(WAIT)
    closer = threading.Thread(target=handle.close)
    closer.start()
    # close() waits up to CLOSE_WAIT_SECONDS: whether the answer comes before it starts
    # to wait or while it waits, the call is its worker's to count.
    challenger.gate.set()
    closer.join(WAIT)
    registry.drain()
    assert _accounts(handle) == (1, 1, 0)
    assert _requests(handle) == {"ok": 1.0}


_EXITING_SERVER = textwrap.dedent("""
    import atexit, os, sys, threading, time

    # Registered first, so run last: a final push at exit, which reads the counts once.
    def final_push():
        REGISTRY[0].drain()
        counters = HANDLE[0].monitor.state.counters
        sampled = sum(counters["inferwatch_shadow_sampled_total"].values())
        compared = sum(counters["inferwatch_shadow_compared_total"].values())
        dropped = {k[1]: int(v) for k, v in
                   counters["inferwatch_shadow_dropped_total"].items() if v}
        requests = {k[0]: int(v) for k, v in
                    counters["inferwatch_requests_total"].items() if v}
        print("SAMPLED", int(sampled), flush=True)
        print("COMPARED", int(compared), flush=True)
        print("DROPPED", sorted(dropped.items()), flush=True)
        print("REQUESTS", sorted(requests.items()), flush=True)

    HANDLE, REGISTRY = [], []
    atexit.register(final_push)

    import inferwatch
    from inferwatch.core import shadow_lifetime
    from inferwatch.core.registry import Registry

    shadow_lifetime.CLOSE_WAIT_SECONDS = 0.05
    STARTED = threading.Event()

    class Hangs:
        def predict(self, rows):
            STARTED.set()
            threading.Event().wait()  # never answers: the exit stops this thread
            return list(rows)

    class Model:
        def predict(self, rows):
            return list(rows)

    if __name__ == "__main__":
        registry = Registry()
        champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
        HANDLE.append(inferwatch.shadow(champion, Hangs(), version="2", timeout=3600.0,
                                        registry=registry))
        REGISTRY.append(registry)
        for i in range(10):
            champion.predict([float(i)])
        STARTED.wait(60)
        # The server exits here: one call under way in the worker thread, nine queued.
""")


def test_a_thread_call_under_way_when_the_server_exits_is_dropped_as_shutdown(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(_EXITING_SERVER)
    # The package this test imported, also where it is not the installed one.
    package = str(Path(inferwatch.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=package)
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["SAMPLED"] == "10", done.stdout
    assert lines["COMPARED"] == "0", done.stdout
    assert lines["DROPPED"] == "[('shutdown', 10)]", done.stdout
    assert lines["REQUESTS"] == "[('cancelled', 1)]", done.stdout


# --- the bytes the queue holds --------------------------------------------------------------

MiB = 1024 * 1024


def test_the_queue_holds_a_bounded_number_of_bytes(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = Gated()
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=60.0,
                               registry=registry)
    default = getattr(handle, "max_queued_bytes", None)
    handle.max_queued_bytes = 4 * MiB  # the default's behaviour, at a test's size
    champion.predict(np.ones((1, 2)))
    assert challenger.started.wait(WAIT)  # the worker holds one call; the queue is empty
    for _ in range(20):
        champion.predict(np.random.rand(1024, 128))  # 1 MiB each, a fresh batch a call
    # 4 MiB of inputs fit, not 4 of input and result: the fourth call's result tips it.
    assert handle.queued() == 3
    challenger.gate.set()
    assert handle.flush(WAIT)
    registry.drain()
    assert _accounts(handle) == (21, 4, 17)
    assert _dropped(handle) == {"queue_full": 17.0}
    assert handle._bytes_in - handle._bytes_out == 0  # nothing held once answered
    handle.close()
    assert default == getattr(shadow_runtime, "MAX_QUEUED_BYTES", None) == 128 * MiB


def test_one_call_past_the_byte_bound_is_taken_when_the_queue_is_empty(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, Summing(), version="2", timeout=60.0,
                               registry=registry)
    handle.max_queued_bytes = 1024
    champion.predict(np.ones((1024, 16)))  # 128 KiB
    assert handle.flush(WAIT)
    registry.drain()
    assert _accounts(handle) == (1, 1, 0)
    handle.close()


def test_closing_with_large_calls_queued_lets_their_bytes_go(registry):
    champion = inferwatch.instrument(Summing(), name="m", version="1", registry=registry)
    challenger = Gated()
    handle = inferwatch.shadow(champion, challenger, version="2", timeout=60.0,
                               registry=registry)
    champion.predict(np.ones((1, 2)))
    assert challenger.started.wait(WAIT)
    for _ in range(5):
        champion.predict(np.random.rand(1024, 128))
    assert handle._bytes_in - handle._bytes_out > 5 * MiB
    challenger.gate.set()
    handle.close()
    assert handle._bytes_in - handle._bytes_out == 0
    assert handle.queued() == 0


_SHADOW_IN_AN_EXIT_HOOK = textwrap.dedent("""
    import atexit, threading, time
    import inferwatch
    from inferwatch.core.registry import Registry

    class Model:
        def predict(self, rows):
            return [float(r) * 2 for r in rows]

    def exit_hook():
        try:  # Python 3.12 refuses a new thread at exit; 3.11 and 3.13 start one
            probe = threading.Thread(target=lambda: None)
            probe.start()
            probe.join()
            print("threads", flush=True)
        except RuntimeError:
            print("no threads", flush=True)
        registry = Registry(drain_interval=3600)
        champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
        handle = inferwatch.shadow(champion, Model(), version="2", registry=registry)
        for i in range(3):
            champion.predict([float(i)])
        deadline = time.monotonic() + 60
        while True:  # the workers (when there are any) compare the calls in their own time
            registry.drain()
            counters = handle.monitor.state.counters
            sampled = sum(counters["inferwatch_shadow_sampled_total"].values())
            compared = sum(counters["inferwatch_shadow_compared_total"].values())
            dropped = {k[1]: int(v) for k, v in
                       counters["inferwatch_shadow_dropped_total"].items() if v}
            if compared + sum(dropped.values()) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        print(int(sampled), int(compared), sorted(dropped.items()), flush=True)

    atexit.register(exit_hook)
""")


@pytest.mark.parametrize("at_exit", THREADS_AT_EXIT)
def test_a_shadow_first_used_in_an_exit_hook_accounts_for_every_call(at_exit):
    """On Python 3.12+ no worker thread can be started at exit: the calls of a shadow first
    used in an exit hook were sampled, then neither compared nor dropped, and each logged
    a fault with its traceback. They are now dropped as "shutdown"; the challenger is not
    called in the exiting thread, where a hung one would hang the exit."""
    script = _SHADOW_IN_AN_EXIT_HOOK + THREADS_AT_EXIT[at_exit]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    threads, counts = done.stdout.splitlines()
    if at_exit != "threads":
        assert threads == "no threads"
    assert counts == ("3 3 []" if threads == "threads" else "3 0 [('shutdown', 3)]")


_SHADOW_MADE_IN_AN_EXIT_HOOK = textwrap.dedent("""
    import atexit, time
    import inferwatch
    from inferwatch.core.registry import Registry

    class Model:
        def predict(self, rows):
            return [float(r) * 2 for r in rows]

    class Hangs:
        def predict(self, rows):
            time.sleep(3600)  # never answers: the exit stops this thread

    registry = Registry(drain_interval=3600)

    def final_push():  # registered before the shadow: runs after inferwatch closed it
        registry.drain()
        counters = HANDLE[0].monitor.state.counters
        print(sorted((k[1], int(v)) for k, v in
                     counters["inferwatch_shadow_dropped_total"].items() if v), flush=True)

    def late_shadow():
        other = inferwatch.instrument(Model(), name="other", version="1", registry=registry)
        inferwatch.shadow(other, Model(), version="2", registry=registry)

    atexit.register(final_push)
    champion = inferwatch.instrument(Model(), name="m", version="1", registry=registry)
    HANDLE = [inferwatch.shadow(champion, Hangs(), version="2", registry=registry)]
    for i in range(3):
        champion.predict([float(i)])
    atexit.register(late_shadow)
""")


def test_a_shadow_made_in_an_exit_hook_leaves_the_others_closed_at_exit():
    """Each shadow moves the exit hook that closes them all first in line. One made in an
    exit hook moved it out of the hooks the exit still runs: no shadow was closed, and a
    final push saw three calls sampled, neither compared nor dropped."""
    done = subprocess.run([sys.executable, "-c", _SHADOW_MADE_IN_AN_EXIT_HOOK],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip() == "[('shutdown', 3)]"
