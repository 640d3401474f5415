"""A scrape under a backlog that outpaces the fold answers within a budget: the drain folds
in chunks, lets its lock go between them, stops at its budget and leaves the rest pending,
whole, for the next drain; no call is lost or counted twice. And the fold of request records
whose predictions are float arrays (an event log, request ids) is one vectorised pass, with
the same series and the same outcome joins as the record-by-record one."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from inferwatch import faults
from inferwatch.core import drain_folds, monitor_drain
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.registry import Registry
from inferwatch.events import EventLog
from inferwatch.serving.bridge import InferwatchCollector


def _scrape(registry: Registry) -> dict[tuple[str, tuple], float]:
    """What /metrics answers, by (sample name, sorted labels without the model's)."""
    page = CollectorRegistry()
    page.register(InferwatchCollector(registry))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(page).decode()):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("model", "model_version")))
            samples[(s.name, labels)] = s.value
    return samples


def _ok(samples: dict) -> float:
    return samples.get(("inferwatch_requests_total", (("outcome", "ok"),)), 0.0)


class _StepClock:
    """A monotonic clock that moves `step` seconds at each read, and runs `on_read` (a
    producer adding calls while the drain folds) first."""

    def __init__(self, step: float, on_read=None) -> None:
        self.now, self.step, self.on_read, self.reads = 0.0, step, on_read, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.on_read is not None:
            self.on_read()
        self.now += self.step
        return self.now


def test_scrape_stops_at_budget_while_calls_outpace_the_fold(monkeypatch):
    chunk = 64
    registry = Registry(drain_interval=3600)  # no background pass: the scrape drains
    mon = registry.monitor("m", "1")
    for _ in range(10 * chunk):
        mon.record_call(0.01, 0.5)
    # Each read of the drain's clock, one second has passed and three chunks' worth of calls
    # came: without a budget the scrape would fold what waited, ten chunks.
    clock = _StepClock(1.0, lambda: [mon.record_call(0.01, 0.5) for _ in range(3 * chunk)])
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk, raising=False)
    monkeypatch.setattr(monitor_drain, "_clock", clock, raising=False)
    samples = _scrape(registry)
    budget = getattr(monitor_drain, "DRAIN_BUDGET_SECONDS", 2.0)  # (before: no budget)
    # The deadline is read once and checked after each chunk: int(budget) chunks fit.
    folded = _ok(samples)
    assert folded == int(budget) * chunk
    assert mon.pending() == 10 * chunk + 3 * chunk * clock.reads - folded
    # Nothing lost or counted twice once the load stops: the next drains fold the rest.
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(0.0))
    total = mon.pending() + folded
    assert _ok(_scrape(registry)) == total
    assert mon.pending() == 0
    registry.close()


def test_one_budget_for_every_model_version_of_a_scrape(monkeypatch):
    # Each monitor with a budget of its own, a scrape of k overloaded model versions took
    # k budgets: four versions, past Prometheus' 10 s scrape timeout.
    chunk = 64
    registry = Registry(drain_interval=3600)
    monitors = [registry.monitor("m", str(v)) for v in range(4)]
    for mon in monitors:
        for _ in range(10 * chunk):
            mon.record_call(0.01, 0.5)

    def more() -> None:
        for mon in monitors:
            for _ in range(3 * chunk):
                mon.record_call(0.01, 0.5)

    clock = _StepClock(1.0, more)
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk)
    monkeypatch.setattr(monitor_drain, "_clock", clock)
    started = clock.now
    registry.drain()
    # The budget's seconds and one chunk's check past it, not one budget per version.
    assert clock.now - started <= monitor_drain.DRAIN_BUDGET_SECONDS + len(monitors) + 1
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(0.0))
    waiting = sum(mon.pending() for mon in monitors)
    folded = sum(mon.state.counters["inferwatch_requests_total"].get(("ok",), 0.0)
                 for mon in monitors)
    registry.drain()
    assert sum(mon.pending() for mon in monitors) == 0
    assert sum(mon.state.counters["inferwatch_requests_total"][("ok",)]
               for mon in monitors) == folded + waiting
    registry.close()


def _requests_ok(mon) -> float:
    return mon.state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0.0)


def test_a_version_idle_when_the_scrape_began_folds_only_while_budget_is_left(monkeypatch):
    # A scrape remembers little of a version with nothing waiting as it begins (most of a
    # deployment of many): whatever that version holds by its turn came since. Past the
    # budget it folds none of it, as a version whose calls came since does; a version
    # that waited and got nothing new folds everything; with budget left, all fold.
    chunk = 64
    registry = Registry(drain_interval=3600)
    busy, idle, waited = (registry.monitor("m", str(v)) for v in range(3))
    for _ in range(10 * chunk):
        busy.record_call(0.01, 0.5)
    for _ in range(5):
        waited.record_call(0.01, 0.5)

    def more() -> None:
        for _ in range(3 * chunk):
            busy.record_call(0.01, 0.5)
        if not idle.pending():  # one call: the least that came since
            idle.record_call(0.01, 0.5)

    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk)
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(1.0, more))
    budget_faults = faults.internal_error_counts().get("drain_budget", 0)
    registry.drain()
    assert _requests_ok(busy) == int(monitor_drain.DRAIN_BUDGET_SECONDS) * chunk
    assert _requests_ok(idle) == 0 and idle.pending() == 1
    assert _requests_ok(waited) == 5 and waited.pending() == 0
    assert faults.internal_error_counts().get("drain_budget", 0) > budget_faults
    # With the budget never spent, what comes to a version idle when the scrape began, before
    # its turn (at the scrape's first look at the clock), is folded.
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(0.0))
    registry.drain()
    assert idle.pending() == 0 and waited.pending() == 0
    came = []
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(0.0, lambda: None if came else (
        came.append(1), waited.record_call(0.01, 0.5))))
    registry.drain()
    assert came and waited.pending() == 0 and _requests_ok(waited) == 6
    registry.close()


def test_an_outcome_joins_its_prediction_made_before_while_calls_outpace_the_fold(
        monkeypatch):
    # The join's drain stopped at the scrape's budget: the prediction, made before the
    # outcome came, was still waiting, and the outcome counted as an unknown id.
    chunk = 64
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    for i in range(10 * chunk):
        with mon.request(request_id=f"r{i}") as r:
            r.prediction(0.5)
    late = iter(range(10**9))

    def more() -> None:
        for _ in range(3 * chunk):
            mon.record_call(0.01, 0.5, request_id=f"late{next(late)}")

    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk)
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(1.0, more))
    mon.record_outcome(f"r{10 * chunk - 1}", 0.5)
    counters = mon.state.counters
    assert counters.get("inferwatch_outcomes_unmatched_total", {}) == {}
    assert mon.state.histograms["inferwatch_outcome_error"][()].count == 1
    registry.close()


def test_every_kind_moves_on_in_each_chunk(monkeypatch):
    # Chunks filled kind by kind took no error while plain calls waited: during an
    # overload the error counter stood still and error-rate alerts were blind.
    chunk = 100
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    for i in range(2000):
        if i % 20 == 19:
            mon.record_error(0.01, RuntimeError("boom"))
        else:
            mon.record_call(0.01, 0.5)
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk)
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(
        1.0, lambda: [mon.record_call(0.01, 0.5) for _ in range(3 * chunk)]))
    samples = _scrape(registry)  # stops at its budget, a few chunks in
    ok = _ok(samples)
    errors = samples.get(("inferwatch_requests_total", (("outcome", "error"),)), 0.0)
    assert 0 < ok < 1900
    assert errors == pytest.approx(ok / 19, abs=2)  # in the proportion they waited in
    registry.close()


def test_background_drain_folds_everything_in_chunks(monkeypatch):
    chunk = 32
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    holds = []
    original = monitor_drain.MonitorDrain._drain_locked

    def counted(self, *args):
        n = original(self, *args)
        holds.append(n)
        return n

    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk)
    monkeypatch.setattr(monitor_drain.MonitorDrain, "_drain_locked", counted)
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(100.0))  # any budget is spent
    for _ in range(5 * chunk + 3):
        mon.record_call(0.01, 0.5)
    registry.drain_due(clock=0.0)  # found waiting: due once they waited long enough
    assert registry.drain_due(clock=1e9) == 1  # the background pass: no budget
    assert mon.pending() == 0
    assert holds == [chunk] * 5 + [3]  # one chunk per lock hold
    assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 5 * chunk + 3
    registry.close()


_OPS = st.lists(st.one_of(
    st.tuples(st.just("ok"), st.integers(1, 40)),
    st.tuples(st.just("proba"), st.integers(1, 40)),
    st.tuples(st.just("error"), st.integers(1, 40)),
    st.tuples(st.just("request"), st.integers(1, 10)),
    # A drain's clock moves this much at each read, and a call comes with each read or not.
    st.tuples(st.just("drain"), st.tuples(st.floats(0.0, 3.0), st.booleans())),
), max_size=25)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, chunk=st.integers(1, 50))
def test_budgeted_drains_lose_and_repeat_no_call(monkeypatch, ops, chunk):
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", chunk)
    registry = Registry(drain_interval=3600)
    # Short lists: calls are handed off (and past max_pending dropped) between drains.
    mon = registry.monitor("m", "1").configure(max_pending=64)
    made = {"ok": 0, "error": 0}
    for op, arg in ops:
        if op == "drain":
            step, calls_come = arg

            def come() -> None:
                mon.record_call(0.01, 0.5)
                made["ok"] += 1

            monkeypatch.setattr(monitor_drain, "_clock",
                                _StepClock(step, come if calls_come else None))
            mon.drain()
        elif op == "request":
            for _ in range(arg):
                with mon.request() as r:
                    r.prediction(np.array([0.25]))
            made["ok"] += arg
        elif op == "error":
            for _ in range(arg):
                mon.record_error(0.01, ValueError)
            made["error"] += arg
        else:
            for _ in range(arg):
                mon.record_call(0.01, np.array([[0.2, 0.8]]) if op == "proba" else 0.5,
                                probabilities=op == "proba")
            made["ok"] += arg
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(0.0))
    mon.drain(budget=None)
    counters = mon.state.counters
    requests = counters.get("inferwatch_requests_total", {})
    dropped = counters.get("inferwatch_calls_dropped_total", {}).get((), 0)
    assert mon.pending() == 0 and mon.in_flight() == 0
    assert requests.get(("ok",), 0) + requests.get(("error",), 0) + dropped == \
        made["ok"] + made["error"]
    if not dropped:
        assert requests.get(("ok",), 0) == made["ok"]
        assert requests.get(("error",), 0) == made["error"]
    registry.close()


def test_concurrent_producer_and_budgeted_scrapes_count_every_call_once(monkeypatch):
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", 50)
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(1.0))  # each scrape: 2 chunks
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    made = 20_000
    started = threading.Event()

    def produce() -> None:
        for i in range(made):
            if i == 100:
                started.set()
            if i % 3:
                mon.record_call(0.01, 0.5)
            else:
                with mon.request(request_id=f"r{i}") as r:
                    r.prediction(np.array([0.5]))

    producer = threading.Thread(target=produce)
    producer.start()
    started.wait()
    while producer.is_alive():
        _scrape(registry)
    producer.join()
    mon.drain(budget=None)
    requests = mon.state.counters["inferwatch_requests_total"]
    assert (requests[("ok",)], requests.get(("error",), 0)) == (made, 0)
    assert mon.pending() == 0 and mon.in_flight() == 0
    registry.close()


def test_event_log_flush_folds_past_a_drains_budget(monkeypatch, tmp_path):
    monkeypatch.setattr(monitor_drain, "DRAIN_CHUNK_CALLS", 80)  # 10 records a chunk
    registry = Registry(drain_interval=3600)
    # Each drain's budget is spent after one chunk while calls (with no event) keep coming.
    monkeypatch.setattr(monitor_drain, "_clock", _StepClock(
        100.0, lambda: registry.monitor("m", "1").record_call(0.01, 0.5)))
    log = EventLog(str(tmp_path / "ev.jsonl"))

    class Model:
        def predict(self, x):
            return np.array([1.0])

    model = inferwatch.instrument(Model(), name="m", version="1", registry=registry,
                                  events=log)
    for _ in range(95):
        model.predict(np.zeros((1, 2)))
    assert log.flush(timeout=60)
    lines = [p for p in tmp_path.iterdir() if p.name.startswith("ev")]
    # The path is a link to the file written now: each file once.
    written = sum(len(p.read_text().splitlines()) for p in lines if not p.is_symlink())
    assert written == 95
    log.close()
    registry.close()


_ROWS = {
    "float64": st.floats(-1e6, 1e6, allow_nan=False, width=64),
    "float32": st.floats(-1e6, 1e6, allow_nan=False, width=32),
    "int64": st.integers(-70_000, 70_000),  # past 65,536: no plausible class
    "uint8": st.integers(0, 255),
}


@st.composite
def _batches(draw):
    dtype = draw(st.sampled_from(sorted(_ROWS)))
    rows = st.lists(_ROWS[dtype], min_size=1, max_size=4)
    return [np.array(r, dtype=dtype) for r in draw(st.lists(rows, min_size=1, max_size=12))]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_batches(), task=st.sampled_from(["auto", "regression", "classification"]),
       classes=st.sampled_from([None, ["a", "b"], [0, 1]]))
def test_array_records_fold_as_the_record_by_record_path(monkeypatch, batches, task,
                                                         classes):
    def run(vectorised: bool) -> tuple[dict, dict, dict]:
        with monkeypatch.context() as patch:
            if not vectorised:
                patch.setattr(drain_folds, "_fold_plain_arrays", lambda *a: False)
            registry = Registry(drain_interval=3600)
            mon = registry.monitor("m", "1").configure(task=task)
            if classes is not None:
                mon._class_names = lambda: classes
            for i, rows in enumerate(batches):
                with mon.request(request_id=f"r{i}" if i % 4 else None) as r:
                    r.prediction(rows)
            for record in list(mon._requests):
                record.probabilities = False  # as an instrumented predict() hands it
            mon.drain(budget=None)
            state = mon.state
            joins = {rid: entry[:2] for rid, entry in mon.outcomes._pending.items()}
            out = ({name: {k: v for k, v in series.items() if v}
                    for name, series in state.counters.items()},
                   {k: (v.count, v.sum) for k, v in state.histograms.get(
                       "inferwatch_prediction_value", {}).items()},
                   joins, state.info.get("task"))
            registry.close()
            return out

    assert run(True) == run(False)


def test_non_finite_records_fold_as_one_array_with_their_rows_in_place(monkeypatch):
    """A NaN in a request's array once sent its drain record by record; the one-array fold
    reads it as the record path does (test_outcomes_array_rows.py proves it for every
    shape), the NaN's row kept in its place for the join."""
    taken = []
    original = PredictionBatch.add_records

    def spy(self, results, probabilities, split=True):
        taken.append(len(results))
        return original(self, results, probabilities, split)

    monkeypatch.setattr(PredictionBatch, "add_records", spy)
    registry = Registry(drain_interval=3600)
    mon = registry.monitor("m", "1")
    for value in (1.0, float("nan")):
        with mon.request(request_id=f"r{value}") as r:
            r.prediction(np.array([value, 2.0]))
    for record in mon._requests:
        record.probabilities = False
    mon.drain()
    assert taken == []
    assert mon.state.counters["inferwatch_invalid_predictions_total"][("nan",)] == 1.0
    assert repr(mon.outcomes._pending["rnan"][1]) == "(nan, 2.0)"
    registry.close()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
