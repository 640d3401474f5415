"""The hot path under hostile user objects, cancellation and forks (reliability 2 and 16)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import types

import numpy as np
import pytest

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry


class HostileText:
    """A value whose ``__str__`` raises: a request id, stage or action from user code."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class Pipeline:
    def predict(self, x, request_id=None):
        return [0.5 for _ in x]


@pytest.fixture
def registry():
    registry = Registry()
    yield registry
    registry.close()


def faults_of(component: str) -> int:
    return faults.internal_error_counts().get(component, 0)


def test_a_request_id_whose_str_raises_never_stops_the_call(registry):
    model = inferwatch.instrument(Pipeline(), name="m", registry=registry)
    before = faults_of("request_id")
    assert model.predict([1.0, 2.0], request_id=HostileText()) == [0.5, 0.5]
    assert faults_of("request_id") == before + 1

    by_function = inferwatch.instrument(lambda x: 0.25, name="f", registry=registry,
                                        request_id=lambda x: HostileText())
    assert by_function(1.0) == 0.25

    mon = inferwatch.monitor("m", registry=registry)
    with mon.request(request_id=HostileText()) as r:
        with r.stage(HostileText()):
            pass
        r.action(HostileText())
        r.stage_output(HostileText(), [1])
        r.prediction(0.5)
    mon.drain()
    counters = mon.state.counters
    assert counters["inferwatch_requests_total"][("ok",)] == 2
    assert counters["inferwatch_actions_total"] == {("__other__",): 1.0}
    assert sum(inferwatch.monitor("f", registry=registry).state.counters[
        "inferwatch_requests_total"].values()) == 0  # drained later: the call itself went through


def test_a_failing_record_step_leaves_the_result_and_the_exception_untouched(registry,
                                                                            monkeypatch):
    predict = inferwatch.instrument(lambda x: x * 2, name="m", registry=registry,
                                    request_id=lambda x: "r")
    mon = inferwatch.monitor("m", registry=registry)

    def broken(record):
        raise RuntimeError("drain queue broke")

    monkeypatch.setattr(mon, "submit", broken)
    before = faults_of("request")
    assert predict(21) == 42
    error = ValueError("the model's own")

    def failing(x):
        raise error

    failing_predict = inferwatch.instrument(failing, name="m", registry=registry)
    with pytest.raises(ValueError) as raised:
        failing_predict(1)
    assert raised.value is error
    assert faults_of("request") == before + 2


def test_client_cancellation_is_its_own_outcome_never_an_error(registry):
    @inferwatch.instrument(name="slow", registry=registry)
    async def slow(x):
        await asyncio.sleep(10)
        return x

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(1.0), 0.01)
        with inferwatch.monitor("slow", registry=registry).request() as r:
            r.prediction(0.5)
        try:
            async with inferwatch.monitor("slow", registry=registry).request():
                raise asyncio.CancelledError
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    mon = inferwatch.monitor("slow", registry=registry)
    mon.drain()
    requests = mon.state.counters["inferwatch_requests_total"]
    assert requests == {("ok",): 1.0, ("error",): 0.0, ("cancelled",): 2.0}
    assert "inferwatch_errors_total" not in mon.state.counters
    latency = mon.state.histograms["inferwatch_request_duration_seconds"][()]
    assert int(latency.counts.sum()) == 3  # a cancelled call still took its time


# --- every lock inferwatch owns is renewed after fork ------------------------------------------

def _locks_in(namespace: dict, owner: object) -> list[tuple[object, str]]:
    lock_types = (type(threading.Lock()), type(threading.RLock()))
    return [(owner, name) for name, value in namespace.items() if isinstance(value, lock_types)]


def _in_a_model_server(module: str) -> bool:
    """inferwatch code that runs inside a forking model server; the standalone exporter and
    the demo's own processes (its page receiver, its stack) are processes of their own that
    never fork (an earlier test's exporter collectors or page receivers may still be alive
    in this process when the walk runs)."""
    return module.startswith("inferwatch") and not module.startswith(
        ("inferwatch.standalone", "inferwatch.demo"))


def _owned_locks() -> list[tuple[object, str]]:
    """Every lock held in an attribute of an inferwatch object or module, found by walking
    the live objects: a lock added tomorrow is found without editing this test."""
    # Garbage of earlier tests (a merged view in a reference cycle) still in the heap is no
    # one's: nothing will take its locks again, in the parent or in a child. What the suite
    # froze after collection (conftest.py) is out of gc.get_objects()' sight: thawed for the
    # walk, then frozen again.
    gc.unfreeze()
    gc.collect()
    try:
        live = gc.get_objects()
    finally:
        gc.freeze()
    found: list[tuple[object, str]] = []
    for name, module in list(sys.modules.items()):
        if _in_a_model_server(name) and isinstance(module, types.ModuleType):
            found += _locks_in(vars(module), module)
    for obj in live:
        module = type(obj).__dict__.get("__module__") if not isinstance(obj, type) else None
        if not isinstance(module, str) or not _in_a_model_server(module):
            continue
        namespace = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                namespace[slot] = getattr(obj, slot)
        found += _locks_in(namespace, obj)
    return found


def _wait_or_kill(pid: int, limit: float = 120.0) -> int:
    """The child's wait status; a child deadlocked in its at-fork hooks (before its own alarm
    is set) is killed after `limit` seconds, so the suite fails instead of hanging."""
    import time

    deadline = time.monotonic() + limit
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child deadlocked (in an at-fork hook?)")
        time.sleep(0.05)


def _hold(locks: list[tuple[object, str]]) -> list:
    """Every lock of `locks` that is free, acquired, as if other threads held them at fork
    time. A function of its own: a loop's variables outlive the loop in its frame, and in
    the child the last owner they kept alive was one the fork hooks replace whole (a
    shadow's held outcomes), whose lock the parent holds: the child's walk found it, and
    the test failed or passed by the order of the heap."""
    held = []
    for owner, name in locks:
        lock = getattr(owner, name)
        if lock.acquire(blocking=False):
            held.append(lock)
    return held


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_every_lock_inferwatch_owns_is_renewed_in_a_forked_child(tmp_path):
    import inferwatch.multiproc
    import inferwatch.serving.bridge
    import inferwatch.serving.exposition
    from inferwatch.events import EventLog

    # What earlier tests in this process left reachable (a closed shadow in a kept
    # traceback, say) is theirs, and no child of this test uses it: only the modules and
    # what this test makes are checked. Held here, so that no id of theirs is reused.
    earlier = [owner for owner, _ in _owned_locks() if not isinstance(owner, types.ModuleType)]
    earlier_ids = {id(owner) for owner in earlier}
    registry = Registry()
    (tmp_path / "workers").mkdir()
    inferwatch.multiproc.attach(registry, str(tmp_path / "workers"))
    reference = inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(50, 3)))
    events = EventLog(tmp_path / "events.jsonl")
    closed = EventLog(tmp_path / "closed.jsonl")  # a closed log still counts what it is sent
    closed.close()
    model = inferwatch.instrument(lambda x: 0.5, name="m", registry=registry, events=events,
                                  reference=reference, request_id=lambda x: "r-1")
    challenger = inferwatch.shadow(model, lambda x: 0.4, version="2", registry=registry)
    model(np.ones((1, 3)))
    challenger.flush()
    registry.drain()
    inferwatch.monitor("m", registry=registry).record_outcome("r-1", 0.5)
    locks = [(owner, name) for owner, name in _owned_locks()
             if isinstance(owner, types.ModuleType) or id(owner) not in earlier_ids]
    kinds = {type(owner).__name__ for owner, _ in locks}
    assert {"Monitor", "Registry", "LabelCap", "OutcomeJoiner", "DriftWindow", "EventLog",
            "Publisher", "Shadow", "Comparison", "module"} <= kinds, kinds
    held = _hold(locks)
    try:
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)  # a deadlocked child must end, and fail the test
            try:
                # Every lock the child can reach: an owner the fork hooks replaced whole (a
                # shadow's held outcomes) is the parent's, kept alive by these lists only.
                locks.clear()
                held.clear()
                stuck = []
                for owner, name in [(owner, name) for owner, name in _owned_locks()
                                    if isinstance(owner, types.ModuleType)
                                    or id(owner) not in earlier_ids]:
                    lock = getattr(owner, name)
                    # The child's own drain thread (started again by the fork hooks) may
                    # hold one for a moment; a lock the parent's threads held stays held.
                    if lock.acquire(timeout=10):
                        lock.release()
                    else:
                        stuck.append(f"{type(owner).__name__}.{name}")
                # The child also really works: records, drains and joins an outcome.
                model(np.ones((1, 3)))
                closed.emit({"model": "m"})
                inferwatch.monitor("m", registry=registry).record_outcome("r-1", 0.5)
                registry.drain()
            except BaseException:
                os._exit(3)
            os.write(2, ("stuck: " + ", ".join(stuck) + "\n").encode() if stuck else b"")
            os._exit(1 if stuck else 0)
        status = _wait_or_kill(pid)
    finally:
        for lock in held:
            lock.release()
        challenger.close()
        registry.close()
        events.close()
    assert os.waitstatus_to_exitcode(status) == 0


# --- feature and output names follow the label rules -----------------------------------------

def test_feature_names_are_capped_truncated_and_cleaned(scraper):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from inferwatch.serving.bridge import InferwatchCollector

    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(1_000)] + ["x" * 3_000, "bad\udcff"]
    data = rng.normal(size=(40, len(names)))
    reference = inferwatch.Reference.from_data(data, feature_names=names)
    predict = inferwatch.instrument(lambda x: 0.5, name="wide", registry=scraper.registry,
                                    reference=reference, max_features=50)
    rows = data[:3].copy()
    rows[:, :] = np.nan  # every feature missing in every row
    predict(rows)
    scraper.registry.drain()
    samples = scraper.samples()
    missing = [s for s in samples if s.name == "inferwatch_feature_missing_total"]
    assert len(missing) == 51  # the first 50 names, and __other__
    assert sum(s.value for s in missing) == 3 * len(names)  # no count lost by the fold
    drift = {s.labels["feature"] for s in samples if s.name == "inferwatch_feature_drift"}
    assert len(drift) <= 50 and "__other__" not in drift
    overflow = {s.labels["metric"]: s.value for s in samples
                if s.name == "inferwatch_series_overflow_total"}
    assert overflow["inferwatch_feature_drift"] == len(names) - 50

    wide = inferwatch.instrument(lambda x: 0.5, name="long", registry=scraper.registry,
                                 reference=reference, max_features=2_000)
    wide(rows)
    scraper.registry.drain()
    labels = {s.labels["feature"] for s in scraper.samples()
              if s.name == "inferwatch_feature_missing_total" and s.labels["model"] == "long"}
    assert max(len(label) for label in labels) <= 128
    assert "bad\udcff" not in labels and "bad?" in labels
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(scraper.registry))
    text = generate_latest(prometheus).decode()  # a lone surrogate must not break the scrape
    assert list(text_string_to_metric_families(text))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_from_zero_without_multi_worker_mode():
    registry = Registry()
    try:
        predict = inferwatch.instrument(lambda x: x, name="m", registry=registry)
        for _ in range(5):
            predict(0.5)
        mon = inferwatch.monitor("m", registry=registry)
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)
            predict(0.5)
            mon.drain()
            ok = mon.state.counters["inferwatch_requests_total"][("ok",)] == 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child re-exported the parent's calls"
        mon.drain()
        assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 5
    finally:
        registry.close()
