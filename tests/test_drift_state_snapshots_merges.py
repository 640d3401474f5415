"""Drift state snapshots and merges: malformed snapshots, in-process merges at a known
clock, and merges refused whole rather than half done."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.core.state import HistogramState, ModelState, SummarySettings
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import DriftState, FeatureTracker

T0 = 1_000_020.0  # the start of a 10 s bucket of a 60 s window
REF = Reference.from_data({"amount": np.arange(100.0), "country": np.array(["de", "fr"] * 50)},
                          predictions=np.linspace(0.0, 1.0, 100))


def _tracker() -> FeatureTracker:
    return FeatureTracker(REF, window_seconds=60, age_buckets=6)


def _drift_dict() -> dict:
    tracker = _tracker()
    tracker.check_inputs([{"amount": 5.0, "country": "de"}] * 3, now=T0)
    tracker.check_predictions({"value": np.array([0.2, 0.4, 0.9])}, rows=3, now=T0)
    return json.loads(json.dumps(tracker.drift.to_dict()))


def _model_state() -> ModelState:
    state = ModelState("fraud", "1", info={"task": "classification"}, loaded_at=T0 - 5)
    state.inc("inferwatch_requests_total", ("ok",), 3)
    hist = state.histogram("inferwatch_request_duration_seconds", (), (0.1, 1.0))
    hist.observe(np.array([0.05, 0.5, 2.0]))
    hist.exemplar(0.5, "abc", T0)
    state.summary("inferwatch_prediction_value", ("value",),
                  probabilities=True).observe(np.array([0.2, 0.9]), now=T0)
    state.set_gauge("inferwatch_requests_in_flight", (), 1.0)
    tracker = _tracker()
    tracker.check_inputs([{"amount": 5.0, "country": "de"}], now=T0)
    state.extras["drift"] = tracker.drift
    return state


# --- malformed snapshots --------------------------------------------------------------------

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                 st.text(max_size=3), st.lists(st.integers(-2, 2), max_size=3),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*path, index))
    return found


def _mutated(data: dict, path: tuple, junk: object, delete: bool) -> object:
    data = copy.deepcopy(data)
    if not path:
        return junk
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk
    return data


DRIFT = _drift_dict()
DRIFT_PATHS = [p for p in _paths(DRIFT) if not (p and p[0] == "reference" and len(p) > 2)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DRIFT_PATHS), JUNK, st.booleans())
def test_a_malformed_drift_state_snapshot_is_a_value_error_naming_the_key(path, junk, delete):
    data = _mutated(DRIFT, path, junk, delete)
    try:
        DriftState.from_dict(data)  # type: ignore[arg-type]
    except ValueError as exc:
        assert str(exc).startswith("drift state:"), exc
    # Anything else (a KeyError, a TypeError) fails the test as raised.


@pytest.mark.parametrize("max_labels", [None, "200", 2.5, True, -1, [200]])
def test_a_drift_state_snapshot_with_a_bad_max_labels_is_refused(max_labels):
    with pytest.raises(ValueError, match="max_labels"):
        DriftState.from_dict({**DRIFT, "max_labels": max_labels})


def test_a_drift_state_without_a_reference_names_the_key():
    data = {key: value for key, value in DRIFT.items() if key != "reference"}
    with pytest.raises(ValueError, match="'reference' is missing"):
        DriftState.from_dict(data)


def test_a_drift_window_of_other_bins_than_its_reference_is_refused_when_loaded():
    # The outputs window holding the features' bins loaded, and every scrape's scoring of
    # it failed afterwards; the snapshot is refused, naming the window.
    with pytest.raises(ValueError, match=r"'outputs'.*do not match the reference"):
        DriftState.from_dict({**DRIFT, "outputs": DRIFT["features"]})
    with pytest.raises(ValueError, match=r"'features'.*do not match the reference"):
        DriftState.from_dict({**DRIFT, "features": DRIFT["outputs"]})
    # The snapshot as written still loads and scores.
    state = DriftState.from_dict(DRIFT)
    assert state.scores(T0)[2] == 3


STATE = json.loads(json.dumps(_model_state().to_dict()))
STATE_PATHS = [p for p in _paths(STATE) if not (p and p[0] == "extras")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(STATE_PATHS), JUNK, st.booleans())
def test_a_malformed_model_state_snapshot_is_a_value_error(path, junk, delete):
    data = _mutated(STATE, path, junk, delete)
    try:
        state = ModelState.from_dict(data)  # type: ignore[arg-type]
    except ValueError:
        return
    # What loads is usable: it renders back, merges and reads its quantiles.
    ModelState.from_dict(json.loads(json.dumps(state.to_dict())))
    target = ModelState.from_dict(STATE)
    try:
        target.merge(state)
    except ValueError:
        pass
    for series in state.summaries.values():
        for summary in series.values():
            summary.quantiles([0.5], T0)


@pytest.mark.parametrize("bad", [
    {"info": ["task"]},
    {"summary_settings": [[0.5], -1.0, 5, 0.01]},
    {"summary_settings": [[1.5], 600.0, 5, 0.01]},
    {"counters": {"inferwatch_requests_total": [["ok", 3.0]]}},
    {"model": None},
])
def test_model_state_snapshot_errors_name_the_key(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=f"model state: key '{key}'"):
        ModelState.from_dict({**STATE, **bad})


@pytest.mark.parametrize("hist", [
    {"bounds": [1.0, 0.1], "counts": [1, 1, 1], "sum": 1.0},
    {"bounds": [0.1, float("nan")], "counts": [1, 1, 1], "sum": 1.0},
    {"bounds": [0.1, 1.0], "counts": [1, -5, 1], "sum": 1.0},
])
def test_a_histogram_snapshot_out_of_order_or_negative_is_refused(hist):
    with pytest.raises(ValueError, match="histogram"):
        HistogramState.from_dict(hist)


# --- in-process merges ----------------------------------------------------------------------

def _drift_state_with(amount: float, rows: int, at: float) -> ModelState:
    state = ModelState("fraud", "1")
    tracker = _tracker()
    tracker.check_inputs([{"amount": amount, "country": "de"}] * rows, now=at)
    state.extras["drift"] = tracker.drift
    return state


def test_a_model_state_merge_at_a_known_time_keeps_local_drift_rows():
    local = _drift_state_with(5.0, rows=4, at=T0)
    ahead = _drift_state_with(90.0, rows=7, at=T0 + 60.0)  # a clock a whole window ahead
    local.merge(ahead, now=T0)
    drift = local.extras["drift"]
    assert drift.rows(T0) == 4
    assert drift.features.future_buckets_dropped == 1
    # Without a time (the merged view after a clock step back) the newer bucket wins.
    plain = _drift_state_with(5.0, rows=4, at=T0)
    plain.merge(_drift_state_with(90.0, rows=7, at=T0 + 60.0))
    assert plain.extras["drift"].rows(T0 + 60.0) == 7


def test_a_model_state_merge_passes_now_only_to_extras_that_take_it():
    class Plain:
        merged = 0

        def merge(self, other: object) -> None:
            Plain.merged += 1

        def to_dict(self) -> dict:
            return {}

    a, b = ModelState("m", "1"), ModelState("m", "1")
    a.extras["plain"], b.extras["plain"] = Plain(), Plain()
    a.merge(b, now=T0)
    assert Plain.merged == 1


def test_a_drift_state_merge_refused_for_its_outputs_adds_nothing():
    mine = DriftState.from_dict(DRIFT)
    other_ref = Reference.from_data(
        {"amount": np.arange(100.0), "country": np.array(["de", "fr"] * 50)},
        predictions=np.array(["a", "b"] * 50))
    other = DriftState(other_ref, window_seconds=60, age_buckets=6)
    assert mine.features.layout == other.features.layout
    assert mine.outputs.layout != other.outputs.layout
    assert other.features.add(np.ones(mine.features.layout.total, dtype=np.int64), rows=50,
                              now=T0)
    with pytest.raises(ValueError, match="different bins"):
        mine.merge(other, now=T0)
    assert mine.features.flat_counts(T0)[1] == 3


def test_a_model_state_merge_refused_for_a_histogram_adds_nothing():
    mine, other = ModelState("m", "1"), ModelState("m", "1")
    mine.histogram("h", (), (1.0,)).observe(np.array([0.5]))
    other.inc("c", (), 5)
    other.histogram("h", (), (2.0,)).observe(np.array([0.5]))
    with pytest.raises(ValueError, match="histogram h"):
        mine.merge(other)
    assert mine.counters == {}
    # Told apart and merged again without the odd series, the counts are counted once.
    other.histograms.clear()
    mine.merge(other)
    assert mine.counters["c"][()] == 5.0


def test_a_model_state_merge_refused_for_a_summary_adds_nothing():
    mine = ModelState("m", "1")
    other = ModelState("m", "1", summary_settings=SummarySettings(max_age_seconds=60.0))
    other.inc("c", (), 2)
    other.summary("s", ()).observe(np.array([1.0]), now=T0)
    with pytest.raises(ValueError, match="summary s"):
        mine.merge(other)
    assert mine.counters == {} and mine.summaries.get("s", {}) == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=4),
       st.lists(st.integers(0, 5), min_size=1, max_size=4))
def test_merged_model_states_count_every_call_once(mine_calls, other_calls):
    mine, other = ModelState("m", "1"), ModelState("m", "1")
    for state, calls in ((mine, mine_calls), (other, other_calls)):
        for n in calls:
            state.inc("c", ("ok",), n)
            state.histogram("h", (), (1.0,)).observe(np.full(n, 0.5))
    copied = ModelState.from_dict(json.loads(json.dumps(other.to_dict())))
    mine.merge(copied)
    assert mine.counters["c"][("ok",)] == sum(mine_calls) + sum(other_calls)
    assert mine.histograms["h"][()].count == sum(mine_calls) + sum(other_calls)
