"""Drift scoring and the tracker feeding it: odd but legal inputs, hostile snapshots, and
predictions recorded without their inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from inferwatch.core.registry import Registry
from inferwatch.quality.drift import DriftScorer, js_distance, ks_distance, psi
from inferwatch.quality.drift_window import DriftWindow
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker

# --- predictions recorded without inputs ------------------------------------------------------

def test_prediction_drift_rows_count_predictions_recorded_without_inputs():
    # A serving stack that records its calls itself (record_call) gives the monitor the
    # predictions but not the inputs: prediction drift is scored, and the rows gauge that
    # gates InferwatchPredictionDrift must count those predictions, or it never fires.
    rng = np.random.default_rng(1)
    reference = Reference.from_data({"amount": rng.normal(size=2000)},
                                    predictions=rng.uniform(size=2000))
    monitor = Registry().monitor("fraud", "1").configure(reference=reference)
    shifted = rng.uniform(0.0, 0.2, size=1500)
    for score in shifted:
        monitor.record_call(0.01, float(score))
    monitor.drain(now=1_000_000.0)
    features, outputs, rows = monitor.features.drift.scores(1_000_000.0)
    assert features == {}  # no input seen: no feature scored
    assert rows == 1500
    counts = np.bincount([reference.outputs["value"].bin_index(v) for v in shifted],
                         minlength=reference.outputs["value"].n_bins)
    assert outputs[("value", "psi")] == pytest.approx(
        psi(reference.outputs["value"].fractions, counts), rel=1e-12)
    assert outputs[("value", "psi")] > 0.2


def test_rows_gauge_still_counts_inputs_when_the_inputs_are_recorded():
    rng = np.random.default_rng(2)
    reference = Reference.from_data({"x": rng.normal(size=500)},
                                    predictions=rng.uniform(size=500))
    tracker = FeatureTracker(reference)
    tracker.check_inputs([rng.normal(size=(30, 1))], now=1000.0)
    tracker.check_predictions({"value": rng.uniform(size=700)}, rows=700, now=1000.0)
    assert tracker.drift.scores(1000.0)[2] == 30


# --- one call's values do not depend on what else its drain held ------------------------------

def test_large_integer_codes_stay_exact_when_drained_beside_float_inputs():
    # Hashed ids past 2**53 as int64, in a categorical feature: stacked with another call's
    # float array they were rounded to a different (unseen) code.
    code = 2**53 + 1
    reference = Reference.from_data(
        {"merchant": np.array([code, 7] * 50, dtype=np.int64), "x": np.arange(100.0)},
        categorical=["merchant"])
    assert str(code) in reference.features["merchant"].categories
    alone = FeatureTracker(reference).check_inputs(
        [np.array([[code, 1.0]], dtype=np.int64)], now=1000.0)
    together = FeatureTracker(reference).check_inputs(
        [np.array([[code, 1]], dtype=np.int64), np.array([[7.0, 2.0]])], now=1000.0)
    assert int(alone.unseen_category[0]) == 0
    assert int(together.unseen_category[0]) == 0
    merchant = reference.features["merchant"]
    seen_bin = merchant.categories.index(str(code))
    counts = together.flat_bin_counts[:merchant.n_bins]
    assert counts[seen_bin] == 1 and counts.sum() == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["bool", "int", "float"]), min_size=2, max_size=6))
def test_each_calls_categories_are_read_the_same_whatever_it_is_drained_with(kinds):
    # True is the category "True"; stacked with floats it became 1.0, the seen category "1".
    reference = Reference.from_data({"c": np.array(["1", "0", "True", "2"] * 10)})
    arrays = {"bool": np.array([[True], [False]]), "int": np.array([[1], [2]]),
              "float": np.array([[1.0], [0.5]])}
    inputs = [arrays[k] for k in kinds]
    expected = np.zeros(reference.features["c"].n_bins, dtype=np.int64)
    unseen = 0
    for one in inputs:
        result = FeatureTracker(reference).check_inputs([one], now=1000.0)
        expected += result.flat_bin_counts
        unseen += int(result.unseen_category[0])
    together = FeatureTracker(reference).check_inputs(inputs, now=1000.0)
    assert together.flat_bin_counts.tolist() == expected.tolist()
    assert int(together.unseen_category[0]) == unseen


# --- the statistics refuse what is not a distribution -----------------------------------------

@pytest.mark.parametrize("counts", [[math.nan, 10], [math.inf, 10], [-1, 10], [None, 1]])
def test_counts_that_are_not_counts_are_a_clear_error_not_a_drift_value(counts):
    for method in (psi, js_distance, ks_distance):
        with pytest.raises(ValueError, match="counts"):
            method([0.5, 0.5], counts)
    reference = Reference.from_data({"x": np.arange(100.0)}, bins=2)
    with pytest.raises(ValueError, match="counts"):
        DriftScorer(reference).scores([np.array(counts, dtype=object)])


@pytest.mark.parametrize("fractions", [[math.nan, 1.0], [-0.5, 1.5], [math.inf, 1.0]])
def test_reference_fractions_that_are_not_shares_are_a_clear_error(fractions):
    for method in (psi, js_distance, ks_distance):
        with pytest.raises(ValueError, match="reference fractions"):
            method(fractions, [1, 1])


@pytest.mark.parametrize("epsilon", [0.0, -1e-4, math.nan, math.inf, 1.0, 2.0, True, "1e-4"])
def test_psi_epsilon_outside_zero_to_one_is_refused(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        psi([0.5, 0.5, 0.0], [10, 0, 0], epsilon=epsilon)
    with pytest.raises(ValueError, match="epsilon"):
        DriftScorer(Reference.from_data({"x": np.arange(10.0)}), epsilon=epsilon)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=10), st.data(),
       st.floats(1e-9, 0.5))
def test_valid_inputs_still_score_like_numpy_and_scipy(weights, data, epsilon):
    p = np.array(weights)
    q = np.array(data.draw(st.lists(st.integers(0, 10**6), min_size=len(p), max_size=len(p))))
    if p.sum() == 0 or q.sum() == 0:
        assert math.isnan(psi(p, q, epsilon=epsilon))
        return
    ps, qs = p / p.sum(), q / q.sum()
    pe, qe = np.maximum(ps, epsilon), np.maximum(qs, epsilon)
    assert psi(p, q, epsilon=epsilon) == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)),
                                                       rel=1e-9, abs=1e-12)
    with np.errstate(invalid="ignore"):
        expected_js = float(np.nan_to_num(jensenshannon(ps, qs, base=2)))
    assert js_distance(p, q) == pytest.approx(expected_js, abs=1e-7)
    assert ks_distance(p.astype(np.float32), q.astype(np.float32)) == pytest.approx(
        np.max(np.abs(np.cumsum(ps) - np.cumsum(qs))), abs=1e-6)


# --- snapshots ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [("id", 2**63), ("id", 2**70), ("rows", 2**64)])
def test_window_snapshot_with_a_number_past_int64_is_a_value_error(key, value):
    window = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    window.add(np.array([1, 1]), rows=2, now=1000.0)
    data = window.to_dict()
    data["buckets"][0][key] = value
    with pytest.raises(ValueError, match=rf"buckets\[0\]: key '{key}'"):
        DriftWindow.from_dict(data)


def test_window_snapshot_with_a_boolean_age_is_a_value_error():
    data = DriftWindow([2], max_age_seconds=60, age_buckets=6).to_dict()
    data["max_age_seconds"] = True
    with pytest.raises(ValueError, match="max_age_seconds"):
        DriftWindow.from_dict(data)


# --- the window takes counts, not any numbers ------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, 2.5, -1.0])
def test_window_refuses_counts_that_are_not_whole_numbers(bad):
    # np.histogram-style float counts are fine when whole; a NaN became -2**63 in the
    # window, whose scores were then nonsense and whose snapshot no longer loaded.
    window = DriftWindow([3], max_age_seconds=60, age_buckets=6)
    assert window.add(np.array([1.0, 2.0, 0.0]), rows=3, now=1000.0)
    with pytest.raises(ValueError, match="counts"):
        window.add(np.array([bad, 1.0, 0.0]), rows=1, now=1000.0)
    counts, rows = window.counts(now=1000.0)
    assert counts[0].tolist() == [1, 2, 0] and rows == 3
    assert DriftWindow.from_dict(window.to_dict()).to_dict() == window.to_dict()


@pytest.mark.parametrize("rows", [math.nan, 1.5, math.inf, "3", None])
def test_window_refuses_rows_that_are_not_a_whole_number(rows):
    window = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    with pytest.raises(ValueError, match="rows"):
        window.add(np.array([1, 0]), rows=rows, now=1000.0)
    assert window.counts(now=1000.0)[1] == 0


def test_sparse_inputs_of_large_integer_codes_stay_exact_beside_float_ones():
    sparse = pytest.importorskip("scipy.sparse")
    code = 2**53 + 1
    reference = Reference.from_data(
        {"merchant": np.array([code, 7] * 50, dtype=np.int64), "x": np.arange(100.0)},
        categorical=["merchant"])
    ids = sparse.csr_matrix(np.array([[code, 1]], dtype=np.int64))
    floats = sparse.csr_matrix(np.array([[7.0, 2.5]]))
    together = FeatureTracker(reference).check_inputs([ids, floats], now=1000.0)
    assert together.rows == 2
    assert int(together.unseen_category[0]) == 0
    merchant = reference.features["merchant"]
    counts = together.flat_bin_counts[:merchant.n_bins]
    assert counts[merchant.categories.index(str(code))] == 1
    assert counts[merchant.categories.index("7")] == 1


def test_one_method_may_be_named_by_a_string():
    from inferwatch.quality.drift import drift_scores

    reference = Reference.from_data({"x": np.arange(100.0)}, bins=4)
    counts = [np.array([0, 0, 10, 10])]
    assert DriftScorer(reference, methods="ks").scores(counts) == {("x", "ks"): 0.5}
    assert list(drift_scores(reference, counts, methods="psi")) == [("x", "psi")]
    with pytest.raises(ValueError, match="unknown drift method 'kl'"):
        DriftScorer(reference, methods="kl")


def test_rows_of_a_state_agree_with_its_scores():
    rng = np.random.default_rng(3)
    reference = Reference.from_data({"x": rng.normal(size=200)},
                                    predictions=rng.uniform(size=200))
    tracker = FeatureTracker(reference)
    tracker.check_predictions({"value": rng.uniform(size=40)}, rows=40, now=1000.0)
    assert tracker.drift.rows(1000.0) == tracker.drift.scores(1000.0)[2] == 40
