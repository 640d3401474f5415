"""configure() on a running model, outcome times and expiry, and rows the drift window
refuses: as users reach them."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.options import Settings
from inferwatch.core.outcomes import OutcomeJoiner
from inferwatch.core.registry import Registry
from inferwatch.quality.tracker import FeatureTracker

START = 1_800_000_000.0


def _reference(features: int = 2) -> inferwatch.Reference:
    rng = np.random.default_rng(11)
    return inferwatch.Reference.from_data(
        {f"f{i}": rng.uniform(0.0, 10.0, size=400) for i in range(features)},
        predictions=rng.random(400))


def _family(monitor, name: str, now: float) -> list:
    return [sample for family in monitor.families(now) if family.name == name
            for sample in family.samples]


def _drift_rows(monitor, now: float) -> float:
    return sum(s.value for s in _family(monitor, "inferwatch_drift_window_observations", now))


def _record_rows(monitor, rows: np.ndarray, now: float) -> None:
    with monitor.request() as request:
        request.features(rows)
        request.prediction(np.full(len(rows), 0.5))
    monitor.drain(now=now)


# --- drift, range and label options given after the reference ------------------------------

def test_a_drift_window_configured_after_the_reference_takes_effect() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.configure(reference=_reference())
    monitor.configure(drift_window_seconds=60, drift_age_buckets=3)
    _record_rows(monitor, np.full((4, 2), 5.0), START)
    assert _drift_rows(monitor, START + 1.0) == 4
    # Two minutes on, a one-minute window has let those rows go; an hour's would not.
    assert _drift_rows(monitor, START + 120.0) == 0


def _out_of_range(monitor) -> float:
    out = _family(monitor, "inferwatch_feature_out_of_range", START)
    return sum(s.value for s in out if s.name.endswith("_total"))


@pytest.mark.parametrize("tolerance, counted", [(0.0, 6), (1.0, 0)])
def test_a_range_tolerance_configured_after_the_reference_takes_effect(
        tolerance: float, counted: int) -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.configure(reference=_reference())
    # 1.0: the range widened by its span on each side.
    monitor.configure(range_tolerance=tolerance)
    _record_rows(monitor, np.full((3, 2), 12.0), START)  # past the training max of ~10
    assert _drift_rows(monitor, START) == 3
    assert _out_of_range(monitor) == counted


def test_a_feature_label_cap_configured_after_the_reference_takes_effect() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.configure(reference=_reference(features=3))
    monitor.configure(max_features=1)
    _record_rows(monitor, np.full((5, 3), 5.0), START)
    features = {s.labels["feature"] for s in _family(monitor, "inferwatch_feature_drift", START)}
    assert len(features) == 1
    assert monitor.overflow_counts().get("inferwatch_feature_drift", 0) >= 2


def test_instrument_settings_after_a_reference_build_the_tracker_anew() -> None:
    registry = Registry(drain_interval=3600)
    # A reference given by name first, then the model instrumented with its own window.
    registry.monitor("fraud", "1").configure(reference=_reference())
    monitor = registry.monitor("fraud", "1", Settings(drift_window_seconds=60))
    assert monitor.settings.drift_window_seconds == 60
    _record_rows(monitor, np.full((4, 2), 5.0), START)
    assert _drift_rows(monitor, START + 1.0) == 4
    assert _drift_rows(monitor, START + 120.0) == 0


def test_other_options_keep_the_drift_window_and_its_rows() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.configure(reference=_reference())
    _record_rows(monitor, np.full((4, 2), 5.0), START)
    tracker = monitor.features
    monitor.configure(max_pending=800)
    assert monitor.features is tracker
    assert _drift_rows(monitor, START + 1.0) == 4


# --- unknown options --------------------------------------------------------------------------

def test_a_misspelt_option_names_configure_and_the_option_meant() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    with pytest.raises(TypeError) as raised:
        monitor.configure(drift_window_secs=60)
    message = str(raised.value)
    assert "configure()" in message and "'drift_window_secs'" in message
    assert "'drift_window_seconds'" in message
    assert "Settings.__init__" not in message


_FIELDS = {field.name for field in dataclasses.fields(Settings)} | {
    "reference", "request_id", "events", "traces"}


@settings(max_examples=50)
@given(st.from_regex(r"[a-z_][a-z0-9_]{0,30}", fullmatch=True).filter(
    lambda name: name not in _FIELDS))
def test_any_unknown_option_is_named_and_changes_nothing(name: str) -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    before = monitor.settings
    with pytest.raises(TypeError, match=r"configure\(\) got an unknown option") as raised:
        monitor.configure(max_pending=800, **{name: 1})
    assert repr(name) in str(raised.value)
    assert monitor.settings is before


# --- a configure() that fails changes nothing --------------------------------------------------

def test_a_refused_request_id_leaves_the_options_given_with_it_unapplied() -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    with pytest.raises(TypeError, match="request_id"):
        monitor.configure(outcome_ttl_seconds=60.0, request_id="payload.id")
    assert monitor.settings.outcome_ttl_seconds == Settings().outcome_ttl_seconds
    assert monitor.outcomes.ttl_seconds == Settings().outcome_ttl_seconds


def test_a_missing_reference_file_leaves_the_options_given_with_it_unapplied(
        tmp_path: Path) -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    with pytest.raises(ValueError, match="not found"):
        monitor.configure(drift_window_seconds=60, max_pending=800,
                          reference=tmp_path / "missing.json")
    assert monitor.settings == Settings()
    assert monitor.features is None and monitor.path == "fast"


# --- outcome times ------------------------------------------------------------------------------

def _predicted(request_id: str = "r-1", ttl: float | None = None):
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    if ttl is not None:
        monitor.configure(outcome_ttl_seconds=ttl)
    with monitor.request(request_id=request_id) as request:
        request.prediction("fraud")
    monitor.drain()
    return monitor


@pytest.mark.parametrize("at", ["not a time", "", object(), [1, 2], float("inf"),
                                float("-inf"), 10**400])
def test_an_outcome_with_an_unreadable_time_is_still_joined(at: object) -> None:
    monitor = _predicted()
    before = faults.internal_error_counts().get("outcome", 0)
    monitor.record_outcome("r-1", "fraud", at=at)
    counters = monitor.state.counters
    assert counters["inferwatch_outcomes_total"][("correct",)] == 1
    assert ("expired",) not in counters.get("inferwatch_outcomes_unmatched_total", {})
    # No delay is known, so none is observed (an infinite one would poison the _sum).
    assert "inferwatch_outcome_delay_seconds" not in monitor.state.histograms
    assert faults.internal_error_counts().get("outcome", 0) == before + 1


def test_an_outcome_time_given_as_text_of_seconds_is_read() -> None:
    monitor = _predicted()
    monitor.record_outcome("r-1", "fraud", at=str(time.time() + 30.0))
    delay = monitor.state.histograms["inferwatch_outcome_delay_seconds"][()]
    assert delay.count == 1 and 20.0 < delay.sum < 40.0 and math.isfinite(delay.sum)


# --- expired outcomes ----------------------------------------------------------------------------

def test_a_second_outcome_for_an_expired_prediction_is_expired_again() -> None:
    monitor = _predicted(ttl=60.0)
    late = time.time() + 3600.0
    monitor.record_outcome("r-1", "fraud", at=late)
    monitor.record_outcome("r-1", "fraud", at=late + 1.0)
    unmatched = monitor.state.counters["inferwatch_outcomes_unmatched_total"]
    assert unmatched[("expired",)] == 2
    assert unmatched.get(("duplicate",), 0) == 0


def test_a_second_outcome_for_a_joined_prediction_is_still_a_duplicate() -> None:
    monitor = _predicted(ttl=60.0)
    monitor.record_outcome("r-1", "fraud")
    monitor.record_outcome("r-1", "fraud")
    unmatched = monitor.state.counters["inferwatch_outcomes_unmatched_total"]
    assert unmatched[("duplicate",)] == 1
    assert unmatched.get(("expired",), 0) == 0


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), max_size=30))
def test_repeated_outcomes_are_reported_as_the_first_one_was(
        steps: list[tuple[int, bool, bool]]) -> None:
    """(request, outcome late?, predict it again first?): an id's repeated outcomes say
    expired after an expired one, duplicate after a joined one, and bytes stay exact."""
    joiner = OutcomeJoiner(max_entries=4, ttl_seconds=60.0)
    first: dict[str, str] = {}
    for request, late, again in steps:
        rid = f"r-{request}"
        if again or rid not in first:
            joiner.remember(rid, ("a",), None, at=0.0)
            first.pop(rid, None)
        joined = joiner.join(rid, "a", at=120.0 if late else 1.0)
        result = joined.unmatched or "joined"
        if rid in first and result in ("expired", "duplicate"):
            assert result == ("expired" if first[rid] == "expired" else "duplicate")
        elif result in ("joined", "expired"):
            first[rid] = result
        assert joiner.estimated_bytes >= 0
        assert joiner._expired <= set(joiner._joined)
        assert len(joiner._joined) <= 4


# --- rows the drift window refuses ----------------------------------------------------------------

def test_rows_for_a_recycled_drift_bucket_are_counted_not_silently_lost() -> None:
    tracker = FeatureTracker(_reference(), window_seconds=60, age_buckets=6)
    tracker.check_inputs([np.full((3, 2), 5.0)], now=START)
    tracker.check_predictions({"value": np.full(3, 0.5)}, 3, now=START)
    before = faults.internal_error_counts().get("drift", 0)
    behind = START - 3600.0  # a bucket the window recycled long ago
    tracker.check_inputs([np.full((2, 2), 5.0)], now=behind)
    tracker.check_predictions({"value": np.full(2, 0.5)}, 2, now=behind)
    assert faults.internal_error_counts().get("drift", 0) == before + 2
    assert tracker.drift.rows(START) == 3


def test_rows_the_drift_window_takes_count_no_fault() -> None:
    tracker = FeatureTracker(_reference(), window_seconds=60, age_buckets=6)
    before = faults.internal_error_counts().get("drift", 0)
    tracker.check_inputs([np.full((3, 2), 5.0)], now=START)
    tracker.check_predictions({"value": np.full(3, 0.5)}, 3, now=START + 1.0)
    assert faults.internal_error_counts().get("drift", 0) == before


# --- times no clock reads -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("inf"), float("nan"), float("-inf")])
def test_a_drain_at_a_time_no_clock_reads_leaves_later_scrapes_working(bad: float) -> None:
    monitor = Registry(drain_interval=3600).monitor("fraud", "1")
    monitor.configure(reference=_reference())
    before = faults.internal_error_counts().get("drain", 0)
    _record_rows(monitor, np.full((3, 2), 5.0), bad)
    now = time.time()
    _record_rows(monitor, np.full((4, 2), 5.0), now)
    # Every row counted, at the clock's time, and the scrape renders.
    assert _drift_rows(monitor, now) == 7
    assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 2
    assert faults.internal_error_counts().get("drain", 0) == before + 1


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), float("-inf")])
def test_a_drift_window_names_a_time_no_clock_reads(bad: float) -> None:
    from inferwatch.quality.drift_window import DriftWindow

    window = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    with pytest.raises(ValueError, match="now must be a finite number"):
        window.add([np.array([1, 0])], rows=1, now=bad)
    with pytest.raises(ValueError, match="now must be a finite number"):
        window.counts(now=bad)
    assert window.add([np.array([1, 0])], rows=1, now=START)
