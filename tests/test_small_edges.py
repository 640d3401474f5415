"""Edges of the validation score, the status page's history ring and the label caps."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, mean_absolute_error

import inferwatch
from inferwatch.core.history import History
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.state import ModelState
from inferwatch.quality.reference import ReferenceError as ProfileError
from inferwatch.quality.validation import ValidationError, score

# --- validation score ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40),
       st.booleans())
def test_class_labels_match_sklearn_accuracy(pairs, as_text):
    predicted = np.array([p for p, _ in pairs])
    labels = [y for _, y in pairs]
    if as_text:
        predicted = predicted.astype(str)
        labels = [str(y) for y in labels]
    if {str(p) for p in predicted.tolist()}.isdisjoint(map(str, labels)):
        with pytest.raises(ValidationError, match="no prediction is one of the labels"):
            score(predicted, labels)
        return
    assert score(predicted, labels).value == pytest.approx(accuracy_score(labels, predicted))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1,
                max_size=40))
def test_regressor_matches_sklearn_mae(pairs):
    predicted = np.array([p for p, _ in pairs]) + 0.25  # never all whole numbers
    truth = np.array([y for _, y in pairs])
    result = score(predicted, truth)
    assert result.metric == "mean_absolute_error"
    assert result.value == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-9)


def test_probability_row_of_nan_predicts_no_class():
    # Both rows' probabilities are NaN: neither names a class, so neither is a hit.
    probabilities = {"no": np.array([np.nan, np.nan]), "yes": np.array([np.nan, np.nan])}
    assert score(probabilities, ["no", "yes"]).value == 0.0
    partly = {"no": np.array([0.9, 0.1]), "yes": np.array([np.nan, 0.9])}
    assert score(partly, ["yes", "yes"]).value == 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.booleans(),
                          st.sampled_from(["a", "b"])), min_size=1, max_size=30))
def test_probabilities_with_nan_rows_never_beat_the_valid_rows(rows):
    a = np.array([np.nan if bad else pa for pa, _, bad, _ in rows])
    b = np.array([pb for _, pb, _, _ in rows])
    labels = [y for *_, y in rows]
    hits = sum(not bad and ("a" if pa >= pb else "b") == y for pa, pb, bad, y in rows)
    assert score({"a": a, "b": b}, labels).value == pytest.approx(hits / len(rows))


def test_text_probability_columns_are_a_clear_error():
    with pytest.raises(ValidationError, match=r"'no'.*probabilities"):
        score({"no": np.array(["a", "b"]), "yes": np.array(["c", "d"])}, ["no", "yes"])
    with pytest.raises(ProfileError, match="y_true"):
        inferwatch.Reference.from_data(
            {"x": [1.0, 2.0]},
            predictions={"no": np.array(["a", "b"]), "yes": np.array(["c", "d"])},
            y_true=["no", "yes"])


def test_output_of_wrong_length_is_named():
    with pytest.raises(ValidationError, match=r"'yes'\) have 1"):
        score({"no": np.array([0.1, 0.2]), "yes": np.array([0.9])}, ["no", "yes"])


def test_no_outputs_is_a_validation_error():
    with pytest.raises(ValidationError, match="no output"):
        score({}, [1, 2])


# --- history ---------------------------------------------------------------------------


def _state(requests: float, errors: float = 0.0) -> ModelState:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests - errors)
    state.inc("inferwatch_requests_total", ("error",), errors)
    return state


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=2, max_size=30))
def test_window_never_negative_across_counter_resets(steps):
    history = History(interval_seconds=10, span_seconds=300)
    total = 0
    for i, (more, restart) in enumerate(steps):
        total = more if restart else total + more
        state = _state(total)
        history.record([state], now=1000.0 + 10 * i)
        now = 1000.0 + 10 * i + 5
        for window in (5.0, 20.0, 60.0, 500.0):
            base = history.before(state.key, now - window)
            if base is not None:
                assert total - base.totals["requests"] >= 0


def test_fork_reset_restarts_the_ring():
    history = History(interval_seconds=10, span_seconds=300)
    history.record([_state(500, 50)], now=100.0)
    history.record([_state(3, 1)], now=110.0)  # the worker's own counts, from zero
    assert [s.totals["requests"] for s in history.samples(("fraud", "1"))] == [3.0]


@pytest.mark.parametrize("interval, span", [(10, float("inf")), (float("inf"), float("inf")),
                                            (float("nan"), 60), (0, 60), (20, 10)])
def test_history_bad_sizes_are_a_clear_error(interval, span):
    with pytest.raises(ValueError, match="History: interval_seconds"):
        History(interval_seconds=interval, span_seconds=span)


def test_history_memory_is_bounded_over_a_long_run():
    history = History(interval_seconds=1, span_seconds=30)
    for i in range(2000):
        history.record([_state(i)], now=float(i))
    samples = history.samples(("fraud", "1"))
    assert len(samples) <= 31
    assert samples[-1].at == 1999.0


# --- label caps ------------------------------------------------------------------------


def test_label_cap_keeps_exactly_limit_under_threads():
    cap = LabelCap(50)
    values = [f"v{i}" for i in range(200)]
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(out: list[str]) -> None:
        start.wait(timeout=30)
        out.extend(cap.fold(v) for v in values)

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    kept = {v for out in results for v in out} - {"__other__"}
    assert len(kept) == 50
    # Each distinct value folded counts once, however many threads folded it.
    assert cap.overflowed == len(set(values) - kept)
    # Every thread sees the same fold for the same value.
    assert all(out == results[0] for out in results)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=300), st.integers(0, 10**6), max_size=40),
       st.integers(1, 10))
def test_fold_counts_conserves_total_and_bounds_series(counts, limit):
    cap = LabelCap(limit)
    folded = cap.fold_counts(counts)
    assert sum(folded.values()) == sum(counts.values())
    assert len(set(folded) - {"__other__"}) <= limit
    assert all(len(k) <= 128 for k in folded)


def test_bool_predictions_score_against_zero_one_labels_as_live_outcomes_do():
    # A classifier whose predict() returns bools, validated on 0/1 labels: scored 0.0
    # before, so InferwatchAccuracyDrop was judged against an accuracy of nothing.
    from sklearn.metrics import accuracy_score

    from inferwatch.quality.validation import score

    predicted = np.array([True, False, True, True])
    labels = np.array([1, 0, 0, 1])
    assert score(predicted, labels).value == accuracy_score(labels, predicted) == 0.75
