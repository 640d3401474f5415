"""instrument() and the Monitor's API edges: trained_at and outcome times read by one rule,
epoch milliseconds, events=False / request_id=False, and what a pickle carries."""

from __future__ import annotations

import datetime
import pickle
import time
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.call_paths import FAST, SLOW
from inferwatch.core.registry import Registry, default_registry
from inferwatch.core.timestamps import seconds_of

UTC = datetime.timezone.utc


class PlainModel:
    def predict(self, rows):
        return np.asarray(rows, dtype=float).sum(axis=1)


@pytest.fixture
def registry():
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


def _predicted(registry: Registry, request_id: str = "r-1"):
    monitor = registry.monitor("fraud", "1")
    with monitor.request(request_id=request_id) as request:
        request.prediction("fraud")
    monitor.drain()
    return monitor


def _delay(monitor) -> tuple[int, float] | None:
    series = monitor.state.histograms.get("inferwatch_outcome_delay_seconds", {}).get(())
    return None if series is None else (int(series.count), float(series.sum))


def _trained(registry: Registry, trained_at: object) -> float:
    name = f"m{uuid.uuid4().hex[:8]}"
    inferwatch.instrument(PlainModel(), name=name, trained_at=trained_at, registry=registry)
    return registry.monitor(name, "unversioned").state.trained_at


# --- 1. one rule for text times ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00", "2026-01-01 10:00",
                                  "2026-01-01T08:30:00.250"])
def test_trained_at_text_with_a_time_but_no_offset_is_refused_as_an_outcome_time_is(
        registry: Registry, text: str) -> None:
    with pytest.raises(ValueError, match=r"trained_at.*offset"):
        inferwatch.instrument(PlainModel(), name="m", trained_at=text, registry=registry)
    monitor = _predicted(registry)
    before = faults.internal_error_counts().get("outcome", 0)
    monitor.record_outcome("r-1", "fraud", at=text)
    assert _delay(monitor) is None
    assert faults.internal_error_counts().get("outcome", 0) == before + 1


@pytest.mark.parametrize("text", ["2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00Z",
                                  "2025-12-31T19:00:00-05:00", "1767225600"])
def test_trained_at_and_an_outcome_time_read_the_same_text_as_the_same_instant(
        registry: Registry, text: str) -> None:
    assert _trained(registry, text) == 1767225600.0
    assert seconds_of(text) == 1767225600.0


def test_trained_at_a_date_alone_is_its_midnight_utc(registry: Registry) -> None:
    assert _trained(registry, "2026-10-01") == _trained(registry, datetime.date(2026, 10, 1)) \
        == datetime.datetime(2026, 10, 1, tzinfo=UTC).timestamp()


# --- 4. epoch milliseconds, microseconds, nanoseconds; bools ------------------------------------


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
@pytest.mark.parametrize("as_text", [False, True])
def test_an_outcome_time_in_epoch_ms_us_or_ns_gives_the_real_delay(
        registry: Registry, scale: int, as_text: bool) -> None:
    monitor = _predicted(registry)
    label_ms = int((time.time() + 60) * 1000)  # a Kafka record timestamp, a minute on
    at = label_ms * scale // 1000
    monitor.record_outcome("r-1", "fraud", at=str(at) if as_text else at)
    assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == 1
    count, total = _delay(monitor)
    assert count == 1 and 50.0 < total < 70.0


@settings(max_examples=80, deadline=None)
@given(st.floats(min_value=1e9, max_value=9e10))  # 2001 .. 4821: seconds
def test_every_epoch_unit_reads_as_the_same_seconds(seconds: float) -> None:
    assert seconds_of(seconds) == seconds
    for scale in (1e3, 1e6, 1e9):
        assert seconds_of(seconds * scale) == pytest.approx(seconds, rel=1e-12)
        assert seconds_of(int(seconds * scale)) == pytest.approx(seconds, rel=1e-9, abs=1e-3)


@pytest.mark.parametrize("at", [True, False, np.bool_(True)])
def test_a_bool_outcome_time_is_refused_and_counted_not_read_as_1970(registry: Registry,
                                                                      at: object) -> None:
    monitor = _predicted(registry)
    before = faults.internal_error_counts().get("outcome", 0)
    monitor.record_outcome("r-1", "fraud", at=at)
    # read as 1 s past 1970 the label was "expired"; refused, it is joined with no delay
    assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == 1
    assert _delay(monitor) is None
    assert faults.internal_error_counts().get("outcome", 0) == before + 1


def test_trained_at_in_epoch_milliseconds_is_read_by_its_size(registry: Registry) -> None:
    assert _trained(registry, 1_767_225_600_000) == 1767225600.0
    assert _trained(registry, np.datetime64("2026-01-01T00:00:00")) == 1767225600.0


@pytest.mark.parametrize("trained_at", [True, float("nan"), float("inf"), "1e400"])
def test_trained_at_no_time_is_a_clear_error(registry: Registry, trained_at: object) -> None:
    with pytest.raises(ValueError, match="trained_at"):
        inferwatch.instrument(PlainModel(), name="m", trained_at=trained_at, registry=registry)


# --- 2. instrument(events=False), 5. request_id=False -------------------------------------------


def test_instrument_takes_events_false_as_no_event_log(registry: Registry) -> None:
    model = inferwatch.instrument(PlainModel(), name="m", events=False, registry=registry)
    monitor = registry.monitor("m", "unversioned")
    assert monitor.events is None and monitor.path is FAST
    assert model.predict([[1.0, 2.0]]).tolist() == [3.0]

    @inferwatch.instrument(name="f", events=False, request_id=False, registry=registry)
    def score(x):
        return 0.5

    assert score(1) == 0.5
    assert registry.monitor("f", "unversioned").events is None
    with pytest.raises(TypeError, match="events"):
        inferwatch.instrument(PlainModel(), name="m", events=True, registry=registry)


def test_instrument_events_false_switches_off_a_log_as_configure_does(registry: Registry,
                                                                       tmp_path) -> None:
    inferwatch.instrument(PlainModel(), name="m", events=str(tmp_path / "e.jsonl"),
                          registry=registry)
    assert registry.monitor("m", "unversioned").events is not None
    inferwatch.instrument(PlainModel(), name="m", events=False, registry=registry)
    assert registry.monitor("m", "unversioned").events is None


def _rid(payload):
    return payload[0]["id"]


def test_configure_request_id_false_switches_the_function_off(registry: Registry) -> None:
    model = inferwatch.instrument(PlainModel(), name="m", request_id=_rid, registry=registry)
    monitor = registry.monitor("m", "unversioned")
    assert monitor.request_id_fn is _rid and monitor.path is SLOW
    monitor.configure(request_id=None)  # unchanged
    assert monitor.request_id_fn is _rid
    monitor.configure(request_id=False)
    assert monitor.request_id_fn is None and monitor.path is FAST
    assert model.predict([[1.0]]).tolist() == [1.0]
    with pytest.raises(TypeError, match="False to switch it off"):
        monitor.configure(request_id=True)
    assert monitor.request_id_fn is None


def test_request_id_false_at_instrument_and_a_call_keyword_still_joins(
        registry: Registry) -> None:
    model = inferwatch.instrument(PlainModel(), name="m", request_id=False, registry=registry)
    monitor = registry.monitor("m", "unversioned")
    assert monitor.request_id_fn is None
    model.predict([[1.0]], request_id="r-9")
    monitor.drain()
    monitor.record_outcome("r-9", 1.0)
    assert monitor.state.histograms["inferwatch_outcome_error"][()].count == 1


# --- 3. a pickle carries the current event-log setting ------------------------------------------


def test_a_pickled_model_keeps_its_event_log_switched_off(tmp_path) -> None:
    name = f"pickled-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "events.jsonl"
    model = inferwatch.instrument(PlainModel(), name=name, version="1", events=str(path),
                                  request_id=_rid)
    monitor = default_registry().monitor(name, "1")
    try:
        assert monitor.events is not None
        monitor.configure(events=False, request_id=False)
        restored = pickle.loads(pickle.dumps(model))
        assert monitor.events is None and monitor.request_id_fn is None
        assert restored.predict([[1.0, 1.0]]).tolist() == [2.0]
        assert monitor.path is FAST
    finally:
        monitor.configure(events=False)


def test_a_pickled_model_follows_a_swapped_event_log(tmp_path) -> None:
    name = f"pickled-{uuid.uuid4().hex[:8]}"
    model = inferwatch.instrument(PlainModel(), name=name, version="1",
                                  events=str(tmp_path / "old.jsonl"))
    monitor = default_registry().monitor(name, "1")
    try:
        monitor.configure(events=str(tmp_path / "new.jsonl"))
        spec = pickle.loads(pickle.dumps(model)).__dict__["_inferwatch_spec"]
        assert str(spec.events).endswith("new.jsonl")
    finally:
        monitor.configure(events=False)
