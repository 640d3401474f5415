"""A scrape answers within its drain budget however slowly a model's calls fold (HF pipeline
rows, classification score arrays: tens of microseconds a call), the rest left pending and
counted exactly once by later drains; and no odd output a model returns takes the request
counts and latencies of the calls folded with it down."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core import monitor_drain
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.registry import Registry

# What folding one call costs on the fake clock: an HF pipeline row's measured fold cost.
_FOLD_SECONDS_PER_CALL = 60e-6


class _FoldClock:
    """A clock that moves only while calls fold: `_FOLD_SECONDS_PER_CALL` per call folded,
    whatever the machine's speed. Each chunk folded, one more call comes (a load that keeps
    going while the scrape drains)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _slow_folds(monkeypatch: pytest.MonkeyPatch, clock: _FoldClock,
                arriving: list) -> list[int]:
    """Make folding slow on `clock`; returns a one-item list: the calls that came since."""
    came = [0]
    original = monitor_drain.MonitorDrain._drain_locked

    def folded_slowly(self, *args):
        n = original(self, *args)
        clock.now += n * _FOLD_SECONDS_PER_CALL
        for mon in arriving:
            mon.record_call(0.01, 0.5)
            came[0] += 1
        return n

    monkeypatch.setattr(monitor_drain.MonitorDrain, "_drain_locked", folded_slowly)
    monkeypatch.setattr(monitor_drain, "_clock", clock)
    monkeypatch.setattr(monitor_drain, "_fold_clock", clock, raising=False)
    return came


def _ok(mon) -> float:
    return mon.state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0.0)


@pytest.mark.parametrize("versions", [1, 3])
def test_scrape_of_a_slow_folding_backlog_answers_within_its_budget(monkeypatch, versions):
    registry = Registry(drain_interval=3600)  # no background pass: the scrape drains
    monitors = [registry.monitor("sentiment", str(v)) for v in range(versions)]
    backlog = 40_000  # past one chunk of DRAIN_CHUNK_CALLS: 2.4 s to fold on the fake clock
    for mon in monitors:
        for _ in range(backlog):
            mon.record_call(0.01, 0.5)
    clock = _FoldClock()
    came = _slow_folds(monkeypatch, clock, monitors)
    registry.drain()  # what a scrape does first
    one_slice = getattr(monitor_drain, "DRAIN_CHUNK_SECONDS", 0.05)  # (before: none)
    assert clock.now <= monitor_drain.DRAIN_BUDGET_SECONDS + one_slice
    assert sum(mon.pending() for mon in monitors) > 0  # the rest waits for the next drain
    # The load stops: further drains fold the rest, every call once.
    monkeypatch.undo()
    made = backlog * versions + came[0]
    for mon in monitors:
        mon.drain(budget=None)
        assert mon.pending() == 0
    assert sum(_ok(mon) for mon in monitors) == made
    registry.close()


def test_a_quiet_scrape_folds_everything_past_its_budget(monkeypatch):
    # With no call coming meanwhile (a notebook, a test, a flush after the load), a scrape
    # counts every call made before it, however long that takes.
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("sentiment", "1")
    for _ in range(60_000):
        mon.record_call(0.01, 0.5)
    clock = _FoldClock()
    _slow_folds(monkeypatch, clock, [])
    registry.drain()
    assert clock.now > monitor_drain.DRAIN_BUDGET_SECONDS
    assert mon.pending() == 0 and _ok(mon) == 60_000
    registry.close()


def test_background_drain_folds_slow_calls_in_short_lock_holds(monkeypatch):
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("sentiment", "1")
    for _ in range(50_000):
        mon.record_call(0.01, 0.5)
    clock = _FoldClock()
    holds: list[float] = []
    original = monitor_drain.MonitorDrain._drain_locked

    def timed(self, *args):
        n = original(self, *args)
        clock.now += n * _FOLD_SECONDS_PER_CALL
        # The hold's own length, not the clock's move meanwhile: a drain on another thread
        # (one a flush or a fork wakes) may fold a chunk of its own at the same time.
        holds.append(n * _FOLD_SECONDS_PER_CALL)
        return n

    monkeypatch.setattr(monitor_drain.MonitorDrain, "_drain_locked", timed)
    monkeypatch.setattr(monitor_drain, "_clock", clock)
    monkeypatch.setattr(monitor_drain, "_fold_clock", clock, raising=False)
    mon.drain(budget=None)
    assert mon.pending() == 0 and _ok(mon) == 50_000
    # A reader waits for one short hold, not for a chunk of DRAIN_CHUNK_CALLS slow calls.
    assert max(holds) <= getattr(monitor_drain, "DRAIN_CHUNK_SECONDS", 0.05)
    registry.close()


class _HashRaises:
    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


def _hostile_output(kind: str) -> object:
    if kind == "huge int":
        return 10**5000
    if kind == "huge negative int":
        return -(10**4400)
    if kind == "object array of unhashables":
        array = np.empty(2, dtype=object)
        array[0], array[1] = _HashRaises(), _HashRaises()
        return array
    if kind == "list of unhashables":
        return [_HashRaises(), "a"]
    return {"odd": _HashRaises()}


_ORDINARY = {"int class": 1, "float": 0.5, "text class": "yes", "none": None,
             "scores": np.array([0.2, 0.8]),
             "pipeline rows": [{"label": "POSITIVE", "score": 0.9}]}
_HOSTILE = ["huge int", "huge negative int", "object array of unhashables",
            "list of unhashables", "dict of unhashables"]


def _output(kind: str) -> object:
    return _ORDINARY[kind] if kind in _ORDINARY else _hostile_output(kind)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(sorted(_ORDINARY) + _HOSTILE), min_size=1, max_size=30),
       task=st.sampled_from(["auto", "classification"]))
def test_hostile_outputs_never_lose_request_counts(kinds, task):
    registry = Registry(drain_interval=3600)
    outputs = [_output(kind) for kind in kinds]
    queue = list(outputs)
    model = inferwatch.instrument(lambda x: queue.pop(0), name="m", version="1",
                                  registry=registry, task=task, classes=["yes", "no"])
    for _ in outputs:
        model(1)
    mon = inferwatch.monitor("m", "1", registry=registry)
    mon.drain(budget=None)
    assert _ok(mon) == len(outputs)
    latency = mon.state.histograms["inferwatch_request_duration_seconds"][()]
    assert latency.count == len(outputs)
    registry.close()


def test_a_prediction_fold_that_raises_keeps_request_counts_and_latencies(monkeypatch):
    def raises(self, *args, **kwargs):
        raise RuntimeError("an output no fold reads")

    monkeypatch.setattr(PredictionBatch, "add_results", raises)
    before = faults.internal_error_counts().get("prediction", 0)
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    for _ in range(10):
        mon.record_call(0.01, object())
    mon.drain(budget=None)
    assert _ok(mon) == 10
    assert mon.state.histograms["inferwatch_request_duration_seconds"][()].count == 10
    assert faults.internal_error_counts().get("prediction", 0) > before
    registry.close()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
