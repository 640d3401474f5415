"""Drift statistics against independent scipy / numpy computations, and the rolling window."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from inferwatch.quality.bin_layout import BinLayout
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.drift import (
    EPSILON,
    DriftScorer,
    drift_scores,
    js_distance,
    ks_distance,
    psi,
)
from inferwatch.quality.drift_window import DriftWindow
from inferwatch.quality.reference import Reference


def independent_psi(p: np.ndarray, counts: np.ndarray, eps: float = EPSILON) -> float:
    total = 0.0
    q_all = counts / counts.sum()
    for expected, actual in zip(p / p.sum(), q_all):
        expected, actual = max(expected, eps), max(actual, eps)
        total += (actual - expected) * math.log(actual / expected)
    return total


def distributions(n_bins: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p = rng.dirichlet(np.ones(n_bins))
    p[rng.random(n_bins) < 0.2] = 0.0  # some empty reference bins
    if p.sum() == 0:
        p[0] = 1.0
    p /= p.sum()
    counts = rng.integers(0, 50, size=n_bins)
    counts[rng.random(n_bins) < 0.2] = 0
    if counts.sum() == 0:
        counts[-1] = 3
    return p, counts


@pytest.mark.parametrize("seed", range(20))
def test_single_feature_statistics_equal_independent_computations(seed):
    rng = np.random.default_rng(seed)
    p, counts = distributions(int(rng.integers(1, 15)), rng)
    q = counts / counts.sum()
    assert psi(p, counts) == pytest.approx(independent_psi(p, counts), rel=1e-12, abs=1e-12)
    assert js_distance(p, counts) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert ks_distance(p, counts) == pytest.approx(
        np.max(np.abs(np.cumsum(p) - np.cumsum(q))), abs=1e-12)
    assert ks_distance(p, counts, ordered=False) == pytest.approx(
        0.5 * np.abs(p - q).sum(), abs=1e-12)


def test_vectorised_over_features_equals_one_feature_at_a_time():
    rng = np.random.default_rng(7)
    pairs = [distributions(int(rng.integers(1, 12)), rng) for _ in range(40)]
    refs = [p for p, _ in pairs]
    counts = [c for _, c in pairs]
    ordered = rng.random(40) < 0.5
    np.testing.assert_allclose(psi(refs, counts), [psi(p, c) for p, c in pairs], atol=1e-12)
    np.testing.assert_allclose(js_distance(refs, counts),
                               [js_distance(p, c) for p, c in pairs], atol=1e-12)
    np.testing.assert_allclose(
        ks_distance(refs, counts, ordered=ordered),
        [ks_distance(p, c, ordered=bool(o)) for (p, c), o in zip(pairs, ordered)], atol=1e-12)


def test_ks_on_bins_equals_scipy_two_sample_ks_on_bin_indices():
    rng = np.random.default_rng(3)
    ref_idx = rng.integers(0, 8, size=5000)
    win_idx = np.minimum(rng.integers(0, 8, size=3000) + rng.integers(0, 2, size=3000), 7)
    ref_fractions = np.bincount(ref_idx, minlength=8) / len(ref_idx)
    counts = np.bincount(win_idx, minlength=8)
    expected = ks_2samp(ref_idx, win_idx).statistic
    assert ks_distance(ref_fractions, counts) == pytest.approx(expected, abs=1e-12)


def test_js_distance_is_bounded_and_symmetric_extremes():
    assert js_distance([1.0, 0.0], [0, 5]) == pytest.approx(1.0)
    assert js_distance([0.3, 0.7], [30, 70]) == pytest.approx(0.0, abs=1e-7)


def test_shifted_distribution_drifts_and_identical_distribution_does_not():
    rng = np.random.default_rng(11)
    train = rng.normal(size=(20_000, 3))
    ref = Reference.from_data(train)
    checker = BatchChecker(ref)
    same = checker.check(rng.normal(size=(10_000, 3)))
    shifted = checker.check(rng.normal(loc=[0.0, 0.5, 1.0], size=(10_000, 3)))
    same_psi = DriftScorer(ref).arrays(same.flat_bin_counts)["psi"]
    shifted_psi = DriftScorer(ref).arrays(shifted.flat_bin_counts)["psi"]
    assert np.all(same_psi < 0.01)
    assert shifted_psi[0] < 0.01  # that column did not move
    assert shifted_psi[1] > 0.2 and shifted_psi[2] > shifted_psi[1]


def test_drift_scores_for_fifty_features_equal_scipy_per_feature():
    rng = np.random.default_rng(5)
    train = rng.gamma(2.0, size=(20_000, 50))
    ref = Reference.from_data(train)
    window = rng.gamma(2.2, size=(10_000, 50))
    counts = BatchChecker(ref).check(window).bin_counts
    scores = drift_scores(ref, counts)
    assert len(scores) == 150
    for j, name in enumerate(ref.feature_names):
        edges = np.asarray(ref.features[name].edges)
        binned = np.bincount(np.digitize(window[:, j], edges), minlength=len(edges) + 1)
        p = np.asarray(ref.features[name].fractions)
        q = binned / binned.sum()
        assert scores[(name, "psi")] == pytest.approx(independent_psi(p, binned), abs=1e-12)
        assert scores[(name, "js")] == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
        assert scores[(name, "ks")] == pytest.approx(
            np.max(np.abs(np.cumsum(p) - np.cumsum(q))), abs=1e-12)


def test_categorical_ks_is_total_variation_and_outputs_score_separately():
    ref = Reference.from_data({"colour": ["red"] * 60 + ["blue"] * 40},
                              predictions={"label": ["yes"] * 50 + ["no"] * 50, "score":
                                           np.linspace(0, 1, 100)})
    checker = BatchChecker(ref)
    counts = checker.check({"colour": ["red"] * 20 + ["green"] * 80}).bin_counts
    scores = drift_scores(ref, counts)
    # reference blue .4, red .6, other 0; window red .2, other .8 -> TV = (0.4 + 0.4 + 0.8) / 2
    assert scores[("colour", "ks")] == pytest.approx(0.8)
    outputs = checker.check_predictions({"label": ["yes"] * 10, "score": np.full(10, 0.99)})
    out_scores = drift_scores(ref.outputs, outputs)
    assert out_scores[("label", "ks")] == pytest.approx(0.5)
    assert out_scores[("score", "ks")] == pytest.approx(0.9, abs=0.02)
    assert {name for name, _ in out_scores} == {"label", "score"}


def test_empty_window_gives_nan_not_an_error():
    ref = Reference.from_data({"a": np.arange(10.0)})
    scores = drift_scores(ref, {"a": np.zeros(ref.features["a"].n_bins)})
    assert all(math.isnan(v) for v in scores.values())
    assert math.isnan(psi([0.5, 0.5], [0, 0]))


def test_scorer_rejects_unknown_method_and_wrong_counts():
    ref = Reference.from_data({"a": np.arange(10.0)}, bins=4)
    with pytest.raises(ValueError, match="unknown drift method 'chi2'"):
        DriftScorer(ref, methods=("psi", "chi2"))
    with pytest.raises(ValueError, match="expected 4 bin counts"):
        DriftScorer(ref).scores([np.ones(3)])


def test_scorer_methods_subset_and_epsilon():
    ref = Reference.from_data({"a": np.arange(100.0)}, bins=4)
    counts = [np.array([0, 0, 0, 8])]
    only_psi = DriftScorer(ref, methods=("psi",), epsilon=1e-3).scores(counts)
    assert set(only_psi) == {("a", "psi")}
    p = np.array(ref.features["a"].fractions)
    assert only_psi[("a", "psi")] == pytest.approx(independent_psi(p, counts[0], eps=1e-3))


# --- layout ----------------------------------------------------------------------------------

def test_layout_join_and_split_round_trip_and_errors():
    layout = BinLayout([2, 1, 3])
    parts = [np.array([1, 2]), np.array([3]), np.array([4, 5, 6])]
    flat = layout.join(parts)
    assert flat.tolist() == [1, 2, 3, 4, 5, 6]
    assert [p.tolist() for p in layout.split(flat)] == [[1, 2], [3], [4, 5, 6]]
    with pytest.raises(ValueError, match="feature 1: expected 1 bin counts, got 2"):
        layout.join([np.array([1, 2]), np.array([3, 3]), np.array([4, 5, 6])])
    with pytest.raises(ValueError, match="at least one bin"):
        BinLayout([2, 0])


def test_the_documented_window_import_is_the_window():
    # docs/drift.md imports DriftScorer and DriftWindow together from quality.drift.
    from inferwatch.quality import drift

    assert drift.DriftWindow is DriftWindow


# --- the window ------------------------------------------------------------------------------

def test_window_buckets_expire_with_age():
    window = DriftWindow([2], max_age_seconds=60, age_buckets=6)  # 10 s buckets
    window.add([np.array([1, 0])], rows=1, now=100.0)   # bucket 10
    window.add([np.array([0, 1])], rows=1, now=125.0)   # bucket 12
    assert window.counts(now=155.0)[1] == 2             # buckets 10..15 live
    counts, rows = window.counts(now=160.0)             # bucket 10 left the window
    assert rows == 1 and counts[0].tolist() == [0, 1]
    assert window.counts(now=500.0)[1] == 0


def test_window_reuses_a_slot_and_refuses_data_older_than_its_bucket():
    window = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    assert window.add([np.array([5])], rows=5, now=0.0)
    assert window.add([np.array([7])], rows=7, now=60.0)   # same slot, newer bucket
    assert not window.add([np.array([9])], rows=9, now=1.0)  # that bucket was recycled
    assert window.counts(now=60.0)[1] == 7


def test_windows_in_different_processes_align_on_the_epoch():
    # 600 s buckets start on multiples of 600 s since the epoch, wherever a window started.
    a = DriftWindow([1], max_age_seconds=3600, age_buckets=6)
    b = DriftWindow([1], max_age_seconds=3600, age_buckets=6)
    a.add([np.array([1])], rows=1, now=1_700_000_100.0)
    b.add([np.array([2])], rows=2, now=1_700_000_399.0)
    b.add([np.array([4])], rows=4, now=1_700_000_400.0)  # the next bucket
    buckets = a.merge(b).to_dict()["buckets"]
    assert [(x["id"], x["rows"]) for x in buckets] == [(2_833_333, 3), (2_833_334, 4)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 500), st.lists(st.integers(0, 20),
                                                                      min_size=5, max_size=5),
                          st.integers(0, 30)), max_size=40),
       st.floats(0, 600))
def test_merged_windows_equal_one_window_fed_with_all_rows(events, read_at):
    layout = BinLayout([3, 2])
    one = DriftWindow(layout, max_age_seconds=120, age_buckets=4)
    a = DriftWindow(layout, max_age_seconds=120, age_buckets=4)
    b = DriftWindow(layout, max_age_seconds=120, age_buckets=4)
    for to_a, now, counts, rows in sorted(events, key=lambda e: e[1]):
        one.add(np.array(counts), rows, now=now)
        (a if to_a else b).add(np.array(counts), rows, now=now)
    merged = a.merge(b)
    flat_one, rows_one = one.flat_counts(now=read_at)
    flat_merged, rows_merged = merged.flat_counts(now=read_at)
    assert rows_one == rows_merged
    assert flat_one.tolist() == flat_merged.tolist()


def test_window_round_trips_through_json():
    window = DriftWindow([2, 3], max_age_seconds=600, age_buckets=3)
    window.add([np.array([1, 2]), np.array([3, 4, 5])], rows=4, now=1000.0)
    window.add(np.array([0, 1, 0, 0, 1]), rows=1, now=1250.0)
    copy = DriftWindow.from_dict(json.loads(json.dumps(window.to_dict())))
    assert copy.to_dict() == window.to_dict()
    assert copy.flat_counts(now=1250.0)[0].tolist() == window.flat_counts(now=1250.0)[0].tolist()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(version=2), "'format'/'version'"),
    (lambda d: d.update(bins=[2, 0]), "key 'bins'"),
    (lambda d: d.update(age_buckets=0), "age_buckets must be a positive integer"),
    (lambda d: d["buckets"][0].update(counts=[1, 2]), r"buckets\[0\]: key 'counts'"),
    (lambda d: d["buckets"][0].update(rows=-1), r"buckets\[0\]: key 'rows'"),
    (lambda d: d["buckets"][0].update(id="x"), r"buckets\[0\]: key 'id'"),
    (lambda d: d["buckets"].append(dict(d["buckets"][0])), "shares a slot"),
])
def test_window_from_dict_names_the_bad_key(mutate, message):
    window = DriftWindow([2, 3], max_age_seconds=600, age_buckets=3)
    window.add(np.arange(5), rows=4, now=1000.0)
    data = window.to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        DriftWindow.from_dict(data)


def test_merge_refuses_different_layouts_or_ages():
    with pytest.raises(ValueError, match="different bins"):
        DriftWindow([2]).merge(DriftWindow([3]))
    with pytest.raises(ValueError, match="max_age_seconds"):
        DriftWindow([2], max_age_seconds=60).merge(DriftWindow([2], max_age_seconds=120))


def test_window_rejects_bad_configuration_and_counts():
    with pytest.raises(ValueError, match="max_age_seconds"):
        DriftWindow([2], max_age_seconds=0)
    with pytest.raises(ValueError, match="non-negative"):
        DriftWindow([2]).add(np.array([1, -1]), rows=1, now=0.0)
    with pytest.raises(ValueError, match="expected 2 bin counts in all"):
        DriftWindow([2]).add(np.array([1, 1, 1]), rows=1, now=0.0)


def test_window_memory_does_not_grow_with_traffic():
    window = DriftWindow([10] * 50, max_age_seconds=60, age_buckets=6)
    before = window._counts.nbytes
    for t in range(0, 10_000, 7):
        window.add(np.ones(500, dtype=np.int64), rows=1, now=float(t))
    assert window._counts.nbytes == before == 6 * 500 * 8
    assert len(window.to_dict()["buckets"]) <= 6


def test_drift_is_scored_once_per_window_content():
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import DriftState

    rng = np.random.default_rng(5)
    reference = Reference.from_data({"x": rng.normal(size=1000)})
    state = DriftState(reference, window_seconds=600, age_buckets=6)
    profile = reference.features["x"]
    now = 1_000_000.0

    def add(values):
        counts = np.bincount([profile.bin_index(v) for v in values], minlength=profile.n_bins)
        state.features.add([counts], rows=len(values), now=now)

    add(rng.normal(size=500))
    first = state.scores(now)
    assert state.scores(now + 1) is first  # nothing new: the same result, not scored again

    add(rng.normal(loc=3.0, size=500))  # shifted rows arrive: the score must move
    second = state.scores(now + 1)
    assert second is not first
    assert second[0][("x", "psi")] > first[0][("x", "psi")]
    assert second[2] == 1000

    later = state.scores(now + 600)  # the window moved past every row
    assert later[2] == 0

    merged = DriftState.from_dict(state.to_dict())
    merged.merge(DriftState.from_dict(state.to_dict()))
    assert merged.scores(now + 1)[2] == 2000


LABELLED_REF = Reference.from_data(
    {"amount": np.arange(200.0), "age": np.arange(200.0) % 90,
     "country": np.array(["de", "fr", "it", "es"] * 50), "tenure": np.arange(200.0) % 7},
    predictions=np.linspace(0.0, 1.0, 200))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({
           "amount": st.one_of(st.none(), st.floats(-50, 300)),
           "age": st.one_of(st.none(), st.floats(0, 120)),
           "country": st.one_of(st.none(), st.sampled_from(["de", "fr", "xx"])),
           "tenure": st.one_of(st.none(), st.integers(0, 9).map(float))}), max_size=30),
       predictions=st.lists(st.floats(-0.5, 1.5), max_size=30),
       max_labels=st.integers(0, 5))
def test_scrape_scores_are_the_scorers_by_label_with_nan_and_folded_names_left_out(
        rows, predictions, max_labels):
    """What a scrape writes (DriftState.scores) is each profile's score from DriftScorer
    under its label, in the scorer's order: features past max_labels (label None) and
    features or outputs without rows in the window (NaN) have none."""
    from inferwatch.quality.tracker import FeatureTracker

    tracker = FeatureTracker(LABELLED_REF, max_labels=max_labels)
    if rows:
        tracker.check_inputs(rows, now=100.0)
    if predictions:
        tracker.check_predictions({"value": np.array(predictions)}, rows=len(predictions),
                                  now=100.0)
    features, outputs, _ = tracker.drift.scores(100.0)
    feature_labels, output_labels = tracker.drift.labels()
    for found, profiles, labels, window in (
            (features, LABELLED_REF.features, feature_labels, tracker.drift.features),
            (outputs, LABELLED_REF.outputs, output_labels, tracker.drift.outputs)):
        expected = {(labels[name], method): value for (name, method), value
                    in DriftScorer(profiles).scores(window.flat_counts(100.0)[0]).items()
                    if labels[name] is not None and not math.isnan(value)}
        assert list(found.items()) == list(expected.items())
