"""ModelState: histogram bucketing, merging and serialisation (the multi-worker contract)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.core.state import HistogramState, ModelState, float_array

BOUNDS = (-1.0, 0.0, 0.1, 0.5, 1.0, 10.0)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 1500), elements=finite | st.sampled_from(BOUNDS)))
def test_histogram_buckets_follow_le_semantics(values):
    hist = HistogramState(BOUNDS)
    hist.observe(values)
    edges = np.asarray(BOUNDS)
    expected = [int((values <= edges[0]).sum())]
    expected += [int(((values > lo) & (values <= hi)).sum()) for lo, hi in zip(edges, edges[1:])]
    expected.append(int((values > edges[-1]).sum()))
    assert hist.counts.tolist() == expected
    for value in values[:50]:
        one = HistogramState(BOUNDS)
        one.observe_one(float(value))
        assert one.counts[np.searchsorted(edges, value, side="left")] == 1


def _state(seed: int, now: float) -> ModelState:
    rng = np.random.default_rng(seed)
    state = ModelState("fraud", "1.4.2", info={"framework": "sklearn"}, loaded_at=100.0 + seed)
    state.inc("inferwatch_requests_total", ("ok",), 10 + seed)
    state.inc("inferwatch_errors_total", ("KeyError",), seed)
    state.histogram("inferwatch_request_duration_seconds", (), BOUNDS).observe(rng.random(100))
    state.summary("inferwatch_prediction", ("value",)).observe(rng.random(1000), now)
    state.set_gauge("inferwatch_requests_in_flight", (), 2)
    return state


def test_merge_sums_counters_histograms_sketches_and_declared_gauges():
    now = 1_000_000.0
    a, b = _state(1, now), _state(2, now)
    expected_hist = (a.histograms["inferwatch_request_duration_seconds"][()].counts
                     + b.histograms["inferwatch_request_duration_seconds"][()].counts)
    a.merge(b)
    assert a.counters["inferwatch_requests_total"][("ok",)] == 23
    assert a.counters["inferwatch_errors_total"][("KeyError",)] == 3
    assert a.histograms["inferwatch_request_duration_seconds"][()].counts.tolist() == \
        expected_hist.tolist()
    summary = a.summaries["inferwatch_prediction"][("value",)]
    assert summary.count == 2000
    assert a.gauges["inferwatch_requests_in_flight"][()] == 4  # in-flight adds up
    assert a.loaded_at == 101.0  # the version started serving with its first worker


def test_round_trip_through_json_preserves_everything():
    now = 1_000_000.0
    state = _state(3, now)
    restored = ModelState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.counters == state.counters
    assert restored.gauges == state.gauges
    assert restored.info == state.info and restored.loaded_at == state.loaded_at
    q = (0.5, 0.9, 0.99)
    assert restored.summaries["inferwatch_prediction"][("value",)].sketch.quantiles(q, now) == \
        state.summaries["inferwatch_prediction"][("value",)].sketch.quantiles(q, now)
    hist = restored.histograms["inferwatch_request_duration_seconds"][()]
    assert hist.counts.tolist() == \
        state.histograms["inferwatch_request_duration_seconds"][()].counts.tolist()


def test_drift_windows_travel_in_snapshots_and_merge():
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker

    rng = np.random.default_rng(0)
    ref = Reference.from_data({"x": rng.normal(size=1000)}, predictions=rng.random(1000))
    now = 1_000_000.0
    states = []
    for shift in (0.0, 3.0):
        tracker = FeatureTracker(ref)
        tracker.check_inputs([{"x": v} for v in rng.normal(shift, 1, 200)], now)
        state = ModelState("m", "1")
        state.extras["drift"] = tracker.drift
        states.append(ModelState.from_dict(json.loads(json.dumps(state.to_dict()))))
    merged = ModelState("m", "1")
    for state in states:
        merged.merge(state)
    feature_scores, _, rows = merged.extras["drift"].scores(now)
    assert rows == 400
    combined = list(states[0].extras["drift"].features.flat_counts(now)[0] +
                    states[1].extras["drift"].features.flat_counts(now)[0])
    assert merged.extras["drift"].features.flat_counts(now)[0].tolist() == combined
    assert states[0].extras["drift"].rows(now) == 200  # merging copied, never aliased
    assert feature_scores[("x", "psi")] > 0.2


_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
    st.booleans(), st.floats(width=32).map(np.float32), st.integers(-100, 100).map(np.int64))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_NUMBERS, max_size=40) | st.lists(_NUMBERS, min_size=64, max_size=90),
       as_tuple=st.booleans())
def test_float_array_is_numpys_own_conversion(values, as_tuple):
    """The fast packing gives numpy's float64 array bit for bit, writable, for any numbers."""
    seq = tuple(values) if as_tuple else values
    fast, numpy = float_array(seq), np.asarray(seq, dtype=np.float64)
    assert fast.dtype == np.float64 and fast.shape == numpy.shape
    assert fast.tobytes() == numpy.tobytes() or np.array_equal(fast, numpy, equal_nan=True)
    fast[:] = 0.0  # writable, as numpy's is


@pytest.mark.parametrize("bad", [["x", 1.0], [object()], [1.0, [2.0]], ["x"] + [1.0] * 70,
                                 [1.0] * 70 + [object()]])
def test_float_array_raises_as_numpy_does_on_what_is_not_a_number(bad):
    with pytest.raises((TypeError, ValueError)) as expected:
        np.asarray(bad, dtype=np.float64)
    with pytest.raises(expected.type):
        float_array(bad)


def test_float_array_takes_numpys_conversion_for_what_numpy_converts():
    assert np.isnan(float_array([None, 1.0])[0])  # numpy reads None as NaN
    assert float_array(["2.5", 1]).tolist() == [2.5, 1.0]  # and numeric text as its number


def test_observe_repeated_is_that_many_observations():
    once, repeated = HistogramState((0.5, 1.0, 2.0)), HistogramState((0.5, 1.0, 2.0))
    once.observe(np.ones(7))
    repeated.observe_repeated(1.0, 7)
    assert once.counts.tolist() == repeated.counts.tolist() and once.sum == repeated.sum


@pytest.mark.parametrize("path", ["in Python", "per value", "per bound"])
@settings(max_examples=60, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 400), elements=finite | st.sampled_from(
    [*BOUNDS, float("nan"), float("inf"), float("-inf"), -0.0])))
def test_every_way_of_bucketing_a_batch_counts_the_same(path, values):
    """A batch is bucketed one value at a time in Python, per value by numpy, or by one
    pass per bound, by its size; each counts every value (nan and +inf in +Inf,
    -inf in the first bucket) and sums them alike, and so do the single-value methods."""
    from inferwatch.core import state as state_module
    from inferwatch.core.ddsketch import quiet_sum

    thresholds = {"in Python": (10**9, 10**9), "per value": (0, 10**9), "per bound": (0, 0)}
    hist = HistogramState(BOUNDS)
    with pytest.MonkeyPatch.context() as patch:
        few, per_bound = thresholds[path]
        patch.setattr(state_module, "_FEW_VALUES", few)
        patch.setattr(state_module, "_COMPARE_PER_BOUND", per_bound)
        hist.observe(values)
    index = [int(np.searchsorted(np.asarray(BOUNDS), v, side="left")) if v == v else
             len(BOUNDS) for v in values.tolist()]
    expected = np.bincount(index, minlength=len(BOUNDS) + 1).tolist()
    assert hist.counts.tolist() == expected
    if values.size <= 64:  # beyond, numpy's pairwise sum and Python's may round apart
        total = quiet_sum(values) if values.size else 0.0
        assert hist.sum == total or (math.isnan(hist.sum) and math.isnan(total))
    one_by_one = HistogramState(BOUNDS)
    for value in values.tolist()[:20]:
        one_by_one.observe_one(value)
        one_by_one.observe_repeated(value, 2)
    assert one_by_one.counts.tolist() == (3 * np.bincount(
        index[:20], minlength=len(BOUNDS) + 1)).tolist()
