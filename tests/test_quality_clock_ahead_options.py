"""Data quality and drift, third pass: drift windows merged from a clock running ahead,
training values named like the overflow bin, prediction names as text, and options and
window settings that are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.catalogue import OTHER
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.drift_window import DriftWindow
from inferwatch.quality.reference import Reference, ReferenceError
from inferwatch.quality.tracker import DriftState

# 60 s in 6 buckets of 10 s: bucket 100 is [1000, 1010), in slot 100 % 6 == 4.
T0 = 1000.0


def _drift_faults() -> int:
    return faults.internal_error_counts().get("drift", 0)


# --- 1. a bucket merged from a clock running ahead -------------------------------------------

def test_a_bucket_merged_from_a_clock_far_ahead_does_not_refuse_local_rows():
    ahead = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    # A worker whose clock is 10 minutes ahead: its bucket 161 sits in slot 5.
    assert ahead.add([np.array([0, 9])], rows=9, now=T0 + 610.0)
    local = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    assert local.add([np.array([1, 0])], rows=1, now=T0)
    local.merge(ahead)
    before = _drift_faults()
    # Local rows of bucket 101 need slot 5: they are added, not refused for 10 minutes.
    assert local.add([np.array([2, 0])], rows=2, now=T0 + 10.0) is True
    counts, rows = local.counts(now=T0 + 10.0)
    assert rows == 3 and counts[0].tolist() == [3, 0]
    assert local.future_buckets_dropped == 1
    assert _drift_faults() == before + 1


def test_a_bucket_one_ahead_of_the_local_clock_is_kept_and_added_to():
    ahead = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    assert ahead.add([np.array([0, 4])], rows=4, now=T0 + 10.0)  # bucket 101
    local = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    assert local.add([np.array([1, 0])], rows=1, now=T0)  # bucket 100
    local.merge(ahead)
    assert local.counts(now=T0)[1] == 1  # 101 is not read before its time
    assert local.add([np.array([1, 0])], rows=1, now=T0 + 10.0)
    assert local.counts(now=T0 + 10.0)[1] == 6
    assert local.future_buckets_dropped == 0


def test_rows_behind_the_windows_own_buckets_are_still_refused():
    window = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    assert window.add([np.array([5])], rows=5, now=T0 + 60.0)
    # Late rows (a drain a whole window behind) for a slot its own rows have recycled.
    assert window.add([np.array([9])], rows=9, now=T0) is False
    assert window.counts(now=T0 + 60.0)[1] == 5
    assert window.future_buckets_dropped == 0


def test_a_drift_state_merged_from_a_clock_far_ahead_keeps_scoring_local_rows():
    ref = Reference.from_data({"a": np.arange(100.0)}, predictions=np.arange(100.0), bins=4)
    local = DriftState(ref, window_seconds=60, age_buckets=6)
    ahead = DriftState(ref, window_seconds=60, age_buckets=6)
    for offset in (600.0, 610.0, 620.0):  # a whole window of buckets, ten minutes ahead
        assert ahead.features.add([np.array([0, 0, 0, 7])], rows=7, now=T0 + offset)
        assert ahead.outputs.add([np.array([0, 0, 0, 7])], rows=7, now=T0 + offset)
    assert local.features.add([np.array([25, 25, 25, 25])], rows=100, now=T0 - 10.0)
    # A restored snapshot of it, as a worker's file is read back.
    local.merge(DriftState.from_dict(ahead.to_dict()))
    for offset in (0.0, 10.0):
        assert local.features.add([np.array([25, 25, 25, 25])], rows=100, now=T0 + offset)
        assert local.outputs.add([np.array([25, 25, 25, 25])], rows=100, now=T0 + offset)
    features, outputs, rows = local.scores(T0 + 10.0)
    assert rows == 300
    assert features[("a", "psi")] == pytest.approx(0.0, abs=1e-12)
    assert outputs[("value", "psi")] == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 5), st.integers(2, 40), st.lists(st.integers(0, 30), min_size=1,
                                                       max_size=8))
def test_local_rows_are_never_refused_for_buckets_merged_from_ahead(ahead_by, skew, steps):
    """Whatever a merged window holds ahead of the local clock by more than one bucket,
    local rows at a clock that only moves forward are all kept."""
    ahead = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    for k in range(6):
        ahead.add([np.array([1])], rows=1, now=T0 + 10.0 * (skew + ahead_by + k))
    local = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    local.merge(ahead)
    now = T0
    for step in steps:
        now += step
        assert local.add([np.array([1])], rows=1, now=now)


# --- 2. a training value named like the overflow bin -----------------------------------------

@pytest.mark.parametrize("max_categories", [1, 50])
def test_a_training_category_named_like_the_overflow_bin_is_refused_by_name(max_categories):
    data = {"plan": ["gold", OTHER, "silver", OTHER]}
    with pytest.raises(ReferenceError, match=r"feature 'plan'.*'__other__'.*rename"):
        Reference.from_data(data, max_categories=max_categories)
    with pytest.raises(ReferenceError, match=r"'value'.*'__other__'"):
        Reference.from_data({"x": [1.0, 2.0]}, predictions=np.array(["yes", OTHER]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", OTHER]) | st.text(max_size=4), min_size=1,
                max_size=20))
@example(["a", OTHER])
def test_every_training_category_is_seen_live_or_the_profile_is_refused(values):
    try:
        ref = Reference.from_data({"c": np.array(values, dtype=object)},
                                  categorical=["c"], max_categories=50)
    except ReferenceError as exc:
        assert OTHER in values and OTHER in str(exc)
        return
    assert OTHER not in values
    result = BatchChecker(ref).check({"c": np.array(values, dtype=object)})
    # Training held every one of these values: none is unseen, all are binned.
    assert result.unseen_category.tolist() == [0]
    assert int(result.flat_bin_counts[-1]) == 0
    assert int(result.flat_bin_counts.sum()) == len(values)


# --- 3. prediction outputs named by a model's integer classes --------------------------------

PROBA = np.random.default_rng(3).random((200, 2))
PROBA_REF = Reference.from_data(np.zeros((200, 1)), predictions=PROBA, bins=4)


@pytest.mark.parametrize("key", [int, np.int64, str])
def test_prediction_columns_keyed_by_integer_classes_are_binned(key):
    expected = BatchChecker(PROBA_REF).check_predictions({"0": PROBA[:, 0], "1": PROBA[:, 1]})
    assert sum(int(c.sum()) for c in expected.values()) == 400
    got = BatchChecker(PROBA_REF).check_predictions({key(0): PROBA[:, 0], key(1): PROBA[:, 1]})
    assert set(got) == {"0", "1"}
    assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in expected.items()}
    one = BatchChecker(PROBA_REF).check_predictions({key(0): 0.2, key(1): 0.8})
    assert sum(int(c.sum()) for c in one.values()) == 2


def test_a_prediction_output_given_under_two_keys_of_one_text_is_not_read():
    got = BatchChecker(PROBA_REF).check_predictions({0: [0.1], "0": [0.9], 1: [0.5]})
    assert got["0"].sum() == 0 and got["1"].sum() == 1


# --- 4. options and window settings refused by name ------------------------------------------

@pytest.mark.parametrize(("option", "value"), [
    ("range_tolerance", "0.1"), ("range_tolerance", None), ("range_tolerance", float("nan")),
    ("range_tolerance", True), ("max_pending_rows", "100"), ("max_pending_rows", None),
    ("max_pending_rows", 2.5), ("max_pending_rows", 0),
])
def test_a_bad_checker_option_is_a_value_error_naming_it(option, value):
    with pytest.raises(ValueError, match=option):
        BatchChecker(PROBA_REF, **{option: value})


def test_good_checker_options_are_accepted():
    checker = BatchChecker(PROBA_REF, range_tolerance=np.float32(0.5),
                           max_pending_rows=np.int64(3))
    assert checker.max_pending_rows == 3 and checker.range_tolerance == 0.5
    assert checker.check(np.zeros((7, 1))).rows == 7


@pytest.mark.parametrize(("max_age", "buckets"), [(10**400, 6), (1e-9, 6), (1.0, 2**40)])
def test_a_window_whose_bucket_ids_cannot_be_stored_is_refused_by_name(max_age, buckets):
    with pytest.raises(ValueError, match="max_age_seconds"):
        DriftWindow([2], max_age_seconds=max_age, age_buckets=buckets)
    snapshot = DriftWindow([2], max_age_seconds=60, age_buckets=6).to_dict()
    snapshot.update(max_age_seconds=max_age, age_buckets=buckets)
    with pytest.raises(ValueError, match="drift window: max_age_seconds"):
        DriftWindow.from_dict(snapshot)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.0, allow_infinity=False))
def test_any_finite_time_adds_or_is_a_value_error(now):
    window = DriftWindow([2], max_age_seconds=1e-3, age_buckets=6)
    try:
        added = window.add([np.array([1, 0])], rows=1, now=now)
    except ValueError as exc:
        assert "now" in str(exc)
        return
    assert added is True
    assert window.counts(now=now)[1] == 1
