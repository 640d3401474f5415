"""Shadow models under load and at the edges of their bounds: outcomes scored faster than a
stalled drain folds them, batches with a row one side cannot hold, differences past the
float range, and many callers filling the queue at once. Each count is checked against a
hand count of the rows.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState

WAIT = 30.0  # generous: a condition that holds is met at once


def _counter(state, metric):
    return {k: v for k, v in state.counters.get(metric, {}).items() if v}


def _histogram_count(state, metric, labels):
    histogram = state.histograms.get(metric, {}).get(labels)
    return 0 if histogram is None else int(np.sum(histogram.counts))


# --- outcomes scored while the drain is stalled -------------------------------------------

@settings(max_examples=25, deadline=None)
@given(batches=st.lists(st.integers(1, 8), min_size=1, max_size=40),
       bound=st.integers(1, 60))
def test_outcomes_waiting_for_a_stalled_drain_are_bounded_and_every_row_counted(batches,
                                                                                bound):
    comparison = Comparison("1", declared_classes=["a", "b"])
    comparison.max_pending_scored = bound
    for i, rows in enumerate(batches):
        comparison.add("predict", ["a"] * rows, ["b"] * rows, f"r-{i}", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    # The drain stalls: outcomes keep coming.
    for i, rows in enumerate(batches):
        comparison.score(f"r-{i}", ["a"] * rows, at=1.0)
    assert sum(len(entry[0] or ()) for entry in comparison._scored) <= bound
    comparison.fold_into(state, now=1.0)
    scored = _counter(state, "inferwatch_shadow_outcomes_total")
    over = _counter(state, "inferwatch_outcomes_unmatched_total")
    kept = int(scored.get(("1", "correct", "incorrect"), 0))
    lost = int(over.get(("rows_over_bound",), 0))
    assert kept <= bound
    assert kept + lost == sum(batches)  # every row: scored, or counted as not kept
    # Folded: room again.
    assert comparison._scored == []


def test_regression_outcomes_past_the_bound_count_as_rows_over_bound():
    comparison = Comparison("1")
    comparison.max_pending_scored = 5
    for i in range(4):
        comparison.add("predict", np.array([1.0, 2.0]), np.array([1.5, 2.0]), f"r-{i}", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    for i in range(4):
        assert comparison.score(f"r-{i}", [1.0, 2.0], at=1.0) == (2, 0)
    comparison.fold_into(state, now=1.0)
    assert _histogram_count(state, "inferwatch_shadow_outcome_error", ("1", "shadow")) == 4
    assert _counter(state, "inferwatch_outcomes_unmatched_total") == {
        ("rows_over_bound",): 4.0}


# --- a row one side cannot hold loses only that row's outcome ----------------------------

class Doubler:
    def predict(self, rows):
        return np.asarray(rows, dtype=np.float64)[:, 0] * 2.0


class NanOnNegative:
    """A challenger that answers nan for a row it cannot score (a negative first feature)."""

    def predict(self, rows):
        rows = np.asarray(rows, dtype=np.float64)
        return np.where(rows[:, 0] < 0, np.nan, rows[:, 0] * 2.0 + 1.0)


def test_a_batch_with_one_nan_row_still_scores_its_other_rows_on_outcomes(registry):
    champion = inferwatch.instrument(Doubler(), name="m", version="1", task="regression",
                                     registry=registry)
    handle = inferwatch.shadow(champion, NanOnNegative(), version="2", registry=registry)
    rows = np.array([[1.0], [-1.0], [2.0], [3.0]])
    champion.predict(rows, request_id="batch")
    assert handle.flush(WAIT)
    handle.monitor.drain()
    registry.monitor("m", "1").record_outcome("batch", [2.0, -2.0, 4.0, 6.0])
    handle.monitor.drain()
    state = handle.monitor.state
    # Three rows both sides hold: each side's error observed once per row.
    assert _histogram_count(state, "inferwatch_shadow_outcome_error", ("1", "champion")) == 3
    assert _histogram_count(state, "inferwatch_shadow_outcome_error", ("1", "shadow")) == 3
    shadow_errors = state.histograms["inferwatch_shadow_outcome_error"][("1", "shadow")]
    assert shadow_errors.sum == pytest.approx(3.0)  # off by one on each row it answered
    handle.close()


@settings(max_examples=30, deadline=None)
@given(calls=st.lists(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.booleans(),
                                         st.sampled_from(["a", "b"])),
                               min_size=1, max_size=6), min_size=1, max_size=6))
def test_rows_lost_in_stacked_calls_leave_every_other_rows_outcome(calls):
    # Each row: (champion class as a probability side, whether the challenger lost it,
    # the label); calls of one shape are compared as one stacked batch.
    comparison = Comparison("1", declared_classes=["a", "b"])
    for i, call in enumerate(calls):
        champion = np.array([[1.0, 0.0] if c == "a" else [0.0, 1.0] for c, _, _ in call])
        shadow = np.array([[np.nan, np.nan] if lost else [0.0, 1.0] for _, lost, _ in call])
        comparison.add("predict_proba", champion, shadow, f"r-{i}", at=0.0)
    state = ModelState("m", "2")
    comparison._champion_classes = comparison._shadow_classes = lambda: ["a", "b"]
    comparison.fold_into(state, now=0.0)
    expected: dict = {}
    for i, call in enumerate(calls):
        kept = [(c, label) for c, lost, label in call if not lost]
        result = comparison.score(f"r-{i}", [label for _, _, label in call], at=1.0)
        if not kept:
            assert result is None
            continue
        assert result == (len(kept), sum(c == label for c, label in kept))
        for c, label in kept:
            key = ("1", "correct" if c == label else "incorrect",
                   "correct" if label == "b" else "incorrect")
            expected[key] = expected.get(key, 0) + 1
    comparison.fold_into(state, now=1.0)
    assert _counter(state, "inferwatch_shadow_outcomes_total") == expected


def test_a_lost_row_of_a_multi_output_regressor_leaves_the_other_rows():
    comparison = Comparison("1")
    champion = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    shadow = np.array([[1.5, 2.0], [np.inf, 4.0], [5.0, 6.5]])
    comparison.add("predict", champion, shadow, "r", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    assert comparison.knows("r")
    assert comparison.score("r", [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], at=1.0) == (3, 0)
    comparison.fold_into(state, now=1.0)
    shadow_errors = state.histograms["inferwatch_shadow_outcome_error"][("1", "shadow")]
    assert int(np.sum(shadow_errors.counts)) == 4  # two rows of two targets
    assert shadow_errors.sum == pytest.approx(1.0)


# --- differences past the float range ----------------------------------------------------

# Finite outputs, with the largest ones a model may answer drawn often: two of them of
# opposite signs differ by more than a float can hold.
_LARGE = st.one_of(st.floats(-1e308, 1e308),
                   st.sampled_from([1e308, -1e308, 1.7976931348623157e308, -9e307]))

@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(st.tuples(_LARGE, _LARGE), min_size=1, max_size=20))
def test_every_compared_row_is_observed_even_when_the_difference_overflows(pairs):
    comparison = Comparison("1", task="regression")
    champion = np.array([c for c, _ in pairs])
    shadow = np.array([s for _, s in pairs])
    comparison.add("predict", champion, shadow, None, at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    assert _counter(state, "inferwatch_shadow_compared_total") == {("1",): 1.0}
    histogram = state.histograms["inferwatch_shadow_difference"][("1", "value")]
    assert int(np.sum(histogram.counts)) == len(pairs)
    summary = state.summaries["inferwatch_shadow_absolute_difference"][("1", "value")]
    assert summary.count == len(pairs)


def test_an_overflowing_difference_lands_in_the_outermost_buckets():
    comparison = Comparison("1", task="regression")
    comparison.add("predict", np.array([-1e308, 1e308, 0.0]), np.array([1e308, -1e308, 0.5]),
                   None, at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    counts = state.histograms["inferwatch_shadow_difference"][("1", "value")].counts.tolist()
    assert counts[0] == 1 and counts[-1] == 1 and sum(counts) == 3


# --- many callers filling the queue at once ----------------------------------------------

class Held:
    """A challenger that waits until the test lets it answer."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, rows):
        self.entered.set()
        self.release.wait(WAIT)
        return [0.0 for _ in rows]

    def __getstate__(self):
        return {}


class Zero:
    def predict(self, rows):
        return [0.0 for _ in rows]


def test_concurrent_callers_never_push_the_queue_past_its_size(registry):
    callers, queue_size = 8, 2
    barrier = threading.Barrier(callers, timeout=WAIT)
    armed = threading.Event()

    def request_id(rows):
        # Every caller reaches here after the queue's first check and before its append
        # (and once before, for the champion's own record): all of them at once.
        if armed.is_set():
            barrier.wait()
        return None

    champion = inferwatch.instrument(Zero(), name="m", version="1", request_id=request_id,
                                     registry=registry)
    challenger = Held()
    handle = inferwatch.shadow(champion, challenger, version="2", queue_size=queue_size,
                               registry=registry)
    champion.predict([[1.0]])
    assert challenger.entered.wait(WAIT)  # the worker holds that call: the queue is empty
    assert handle.queued() == 0
    armed.set()
    errors: list = []

    def call() -> None:
        try:
            champion.predict([[2.0]])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert handle.queued() == queue_size
    armed.clear()
    challenger.release.set()
    assert handle.flush(WAIT)
    handle.monitor.drain()
    state = handle.monitor.state
    assert _counter(state, "inferwatch_shadow_sampled_total") == {("1",): callers + 1.0}
    assert _counter(state, "inferwatch_shadow_compared_total") == {("1",): queue_size + 1.0}
    assert _counter(state, "inferwatch_shadow_dropped_total") == {
        ("1", "queue_full"): float(callers - queue_size)}
    handle.close()


# --- an outcome no float can hold --------------------------------------------------------

def test_an_outcome_past_the_float_range_is_not_an_internal_error(registry):
    from inferwatch import faults

    champion = inferwatch.instrument(Doubler(), name="m", version="1", task="regression",
                                     registry=registry)
    handle = inferwatch.shadow(champion, Doubler(), version="2", registry=registry)
    champion.predict(np.array([[1.0]]), request_id="huge")
    assert handle.flush(WAIT)
    handle.monitor.drain()
    before = faults.internal_error_counts().get("shadow", 0)
    registry.monitor("m", "1").record_outcome("huge", 10 ** 400)  # a label no float holds
    handle.monitor.drain()
    assert faults.internal_error_counts().get("shadow", 0) == before
    assert not handle.comparison.knows("huge")  # judged (not scoreable), not kept
    assert "inferwatch_shadow_outcome_error" not in handle.monitor.state.histograms
    handle.close()
