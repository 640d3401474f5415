"""Data quality and drift, fourth pass: the quality counts of predictions, drift counts given
by a misspelled name, crafted window snapshots, and merges of buckets from a clock far
ahead."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.drift import DriftScorer, drift_scores
from inferwatch.quality.drift_window import DriftWindow
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import DriftState
from inferwatch.report.model import from_data

# 60 s in 6 buckets of 10 s: bucket 100 is [1000, 1010), in slot 100 % 6 == 4.
T0 = 1000.0

SCORE_REF = Reference.from_data({"x": np.arange(100.0)}, predictions=np.linspace(0, 1, 101)[:100])
PROBA = np.random.default_rng(4).dirichlet([1, 1], size=200)
PROBA_REF = Reference.from_data({"x": np.arange(200.0)}, predictions=PROBA,
                                prediction_names=["0", "1"])


def _drift_faults() -> int:
    return faults.internal_error_counts().get("drift", 0)


# --- 1. quality counts of predictions -------------------------------------------------------

_prediction = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.none(),
    st.text(max_size=3),
    st.integers(min_value=-10, max_value=10),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_prediction, min_size=1, max_size=40))
def test_every_prediction_is_binned_missing_or_a_wrong_type(values):
    result = BatchChecker(SCORE_REF).check_prediction_quality({"value": values})
    binned = int(result.bin_counts["value"].sum())
    assert result.rows == len(values)
    assert binned + result.missing["value"] + result.wrong_type["value"] == len(values)
    assert result.missing["value"] == sum(
        v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
    assert result.wrong_type["value"] == sum(isinstance(v, str) for v in values)
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not
               (isinstance(v, float) and math.isnan(v))]
    assert result.out_of_range["value"] == sum(not 0.0 <= v <= 0.99 for v in numbers)
    # The bins are what check_predictions returns, whatever else was counted.
    assert result.bin_counts["value"].tolist() == \
        BatchChecker(SCORE_REF).check_predictions({"value": values})["value"].tolist()


def test_prediction_quality_never_raises_on_hostile_input():
    checker = BatchChecker(SCORE_REF)
    for hostile in ({"nope": [1.0]}, np.zeros((2, 3, 4)), {0: [0.5], "0": [0.5]}):
        result = checker.check_prediction_quality(hostile)
        assert result.bin_counts["value"].sum() == 0 and result.rows == 0
        assert result.missing == {} and result.wrong_type == {}
    # Predictions that are no numbers are rows of a wrong type, in no bin.
    for hostile, rows in ((object(), 1), ({"value": object()}, 1), ("text", 1),
                          ({"value": [[1.0], [2.0, 3.0]]}, 2)):
        result = checker.check_prediction_quality(hostile)
        assert result.bin_counts["value"].sum() == 0
        assert result.rows == rows and result.wrong_type == {"value": rows}


def test_a_report_counts_the_quality_of_outputs_named_by_integer_classes():
    # predict_proba columns keyed by the model's classes_ (0, 1): their bins were in the
    # report, but their missing and out-of-range counts were dropped from its quality table.
    proba = PROBA[:10].copy()
    proba[0, 0] = np.nan
    proba[1, 1] = 7.0
    report = from_data(PROBA_REF, {"x": np.arange(10.0)},
                       predictions={0: proba[:, 0], 1: proba[:, 1]})
    assert report.quality["0"]["missing"] == 1.0
    assert report.quality["1"]["out_of_range"] == 1.0
    assert sum(o.rows for o in report.outputs) == 19.0


def test_a_report_counts_predictions_as_check_prediction_quality_does():
    values = [0.1, None, 0.5, float("nan"), 3.0]
    report = from_data(SCORE_REF, {"x": np.arange(5.0)}, predictions=values)
    result = BatchChecker(SCORE_REF).check_prediction_quality(values)
    assert report.quality["value"] == {"missing": 2.0, "out_of_range": 1.0,
                                       "unseen_category": 0.0}
    assert result.missing == {"value": 2} and result.out_of_range == {"value": 1}
    assert report.rows == 5


# --- 2. counts by a name no profile has -----------------------------------------------------

def test_counts_by_a_misspelled_name_are_refused_naming_it():
    ref = Reference.from_data({"age": np.arange(100.0), "income": np.arange(100.0)}, bins=4)
    scorer = DriftScorer(ref)
    with pytest.raises(ValueError, match="'agee'"):
        scorer.scores({"agee": np.array([0, 0, 0, 10]), "income": np.array([1, 1, 1, 1])})
    with pytest.raises(ValueError, match="'incme'"):
        drift_scores(ref, {"incme": [5, 5, 5, 5]})
    # Names it knows, some left out, still work: the absent one has no data.
    scores = scorer.scores({"age": np.array([25, 25, 25, 25])})
    assert scores[("age", "psi")] == pytest.approx(0.0)
    assert math.isnan(scores[("income", "psi")])


# --- 3. crafted window snapshots -------------------------------------------------------------

@pytest.mark.parametrize(("bins", "age_buckets"), [([2], 10**6), ([10**9], 6),
                                                   ([2], 10**8)])
def test_a_snapshot_of_a_huge_window_is_a_value_error(bins, age_buckets):
    snapshot = DriftWindow([2], max_age_seconds=3600, age_buckets=6).to_dict()
    snapshot.update(bins=bins, age_buckets=age_buckets)
    with pytest.raises(ValueError, match="drift window: age_buckets"):
        DriftWindow.from_dict(json.loads(json.dumps(snapshot)))


def test_the_window_cap_is_named_when_a_window_is_made():
    with pytest.raises(ValueError, match="age_buckets must be at most 1000"):
        DriftWindow([2], max_age_seconds=3600, age_buckets=1001)
    window = DriftWindow([2], max_age_seconds=3600, age_buckets=1000)
    assert DriftWindow.from_dict(window.to_dict()).age_buckets == 1000


# --- 4. merging buckets from a clock far ahead ------------------------------------------------

def test_a_merged_bucket_a_window_ahead_does_not_replace_local_rows():
    local = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    assert local.add([np.array([4, 0])], rows=4, now=T0)
    ahead = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    # Six buckets (one window) ahead: the same slot as the local current bucket.
    assert ahead.add([np.array([0, 9])], rows=9, now=T0 + 60.0)
    before = _drift_faults()
    local.merge(ahead, now=T0 + 5.0)
    counts, rows = local.counts(now=T0 + 5.0)
    assert rows == 4 and counts[0].tolist() == [4, 0]
    assert local.future_buckets_dropped == 1
    assert _drift_faults() == before + 1


def test_a_drift_state_merge_keeps_its_own_rows():
    state = DriftState(SCORE_REF, window_seconds=60, age_buckets=6)
    other = DriftState(SCORE_REF, window_seconds=60, age_buckets=6)
    assert state.features.add([np.full(10, 1)], rows=10, now=T0)
    assert other.features.add([np.full(10, 5)], rows=50, now=T0 + 120.0)
    state.merge(other, now=T0)
    assert state.rows(T0) == 10


def test_a_merge_after_a_quiet_spell_still_takes_the_newer_bucket():
    local = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    assert local.add([np.array([4, 0])], rows=4, now=T0)
    other = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    assert other.add([np.array([0, 9])], rows=9, now=T0 + 60.0)
    # A window quiet for a minute: its bucket has left the window, the merged one is now.
    local.merge(other, now=T0 + 60.0)
    assert local.counts(now=T0 + 60.0)[1] == 9
    assert local.future_buckets_dropped == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=8),
       st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=30))
def test_a_merge_at_now_never_loses_rows_in_the_window_at_now(local_at, foreign_at, at):
    local = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    for b in local_at:
        local.add([np.array([1])], rows=1, now=T0 + 10.0 * b)
    foreign = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    for b in foreign_at:
        foreign.add([np.array([1])], rows=1, now=T0 + 10.0 * b)
    now = T0 + 10.0 * max(at, *local_at)
    # The window's oldest bucket may give way to a bucket one ahead (a clock a little
    # fast): the next one will not read it anyway. Every other local row stays.
    kept = local.counts(now=now + 10.0)[1]
    local.merge(foreign, now=now)
    assert local.counts(now=now)[1] >= kept


def test_too_many_drift_age_buckets_are_refused_naming_the_option() -> None:
    from inferwatch.core.options import Settings
    from inferwatch.quality import drift_window

    with pytest.raises(ValueError, match="drift_age_buckets"):
        Settings(drift_age_buckets=drift_window.MAX_AGE_BUCKETS + 1)
    assert Settings(drift_age_buckets=drift_window.MAX_AGE_BUCKETS).drift_age_buckets == \
        drift_window.MAX_AGE_BUCKETS
