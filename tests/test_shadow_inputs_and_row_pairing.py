"""Shadow models at their edges: inputs that cannot travel to a child process, challengers
that change their input in place, and results whose rows one side cannot hold (nan, inf,
labels no class may be), each checked against what a hand count of the rows gives.
"""

from __future__ import annotations

import operator
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression

import inferwatch
from inferwatch.core.shadow_compare import Comparison
from inferwatch.core.state import ModelState
from inferwatch.quality.reference import Reference


def _counter(monitor, metric):
    return {k: v for k, v in monitor.state.counters.get(metric, {}).items() if v}


class WithOptions:
    """A model server's model that takes per-call options next to its rows."""

    def __init__(self, model) -> None:
        self.model = model

    def predict(self, rows, options=None):
        return self.model.predict(rows)


class CannotPickle:
    """A per-call option holding something no pickle can carry (a lock, a socket...)."""

    def __reduce__(self):
        raise ValueError("this option holds a live handle")


class CannotRebuild:
    """Pickles fine, but fails to load on the other side (a class the child cannot build)."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


@pytest.fixture(scope="module")
def regressor():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3))
    return X, LinearRegression().fit(X, X @ np.array([1.0, -2.0, 0.5]))


@pytest.mark.parametrize("option", [CannotPickle(), CannotRebuild()],
                         ids=["fails_to_pickle", "fails_to_load_in_the_child"])
def test_a_process_shadow_counts_an_input_that_cannot_travel_as_its_error(registry, regressor,
                                                                          option):
    X, model = regressor
    champion = inferwatch.instrument(WithOptions(model), name="m", version="1",
                                     registry=registry)
    handle = inferwatch.shadow(champion, model, version="2", mode="process", timeout=60.0,
                               registry=registry)
    expected = model.predict(X[:2])
    np.testing.assert_array_equal(champion.predict(X[:2], options=option), expected)
    assert handle.flush(120)
    child = handle._runners[0]._process
    np.testing.assert_array_equal(champion.predict(X[2:4]), model.predict(X[2:4]))
    assert handle.flush(120)
    registry.drain()
    shadow = handle.monitor

    # The call that could not travel is the challenger's error; the next one is compared,
    # by the same child, and nothing is left "in flight" for ever.
    assert _counter(shadow, "inferwatch_shadow_dropped_total") == {("1", "error"): 1.0}
    assert _counter(shadow, "inferwatch_shadow_compared_total") == {("1",): 1.0}
    assert _counter(shadow, "inferwatch_requests_total") == {("ok",): 1.0, ("error",): 1.0}
    assert shadow.in_flight() == 0
    assert handle._runners[0]._process is child
    champion_monitor = registry.monitor("m")
    assert _counter(champion_monitor, "inferwatch_requests_total") == {("ok",): 2.0}
    handle.close()


class ScalesInPlace:
    """A challenger whose preprocessing works on its input in place (``X -= mean``)."""

    def __init__(self, model) -> None:
        self.model = model

    def predict(self, rows):
        rows -= 1000.0
        return self.model.predict(rows + 1000.0)


@pytest.mark.parametrize("rows", [4, 5000], ids=["copied_at_call_time", "past_copy_bound"])
def test_a_challenger_changing_its_input_in_place_changes_neither_the_caller_nor_its_record(
        registry, regressor, rows):
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry,
                                     reference=Reference.from_data(X))
    handle = inferwatch.shadow(champion, ScalesInPlace(model), version="2", timeout=60.0,
                               registry=registry)
    batch = np.resize(X, (rows, 3)).copy()
    original = batch.copy()
    champion.predict(batch)
    assert handle.flush(60)
    registry.drain()

    # The caller's buffer is the caller's: a shadow never writes into it.
    np.testing.assert_array_equal(batch, original)
    compared = handle.monitor.state.counters["inferwatch_shadow_compared_total"]
    assert compared == {("1",): 1.0}
    hist = handle.monitor.state.histograms["inferwatch_shadow_difference"][("1", "value")]
    assert int(hist.counts.sum()) == rows
    assert abs(hist.sum) < 1e-6 * rows
    # The challenger's own drift reads the rows the champion's call saw, not the shifted ones.
    now = time.time()
    champion_scores = registry.monitor("m", "1").features.drift.scores(now)[0]
    shadow_scores = handle.monitor.features.drift.scores(now)[0]
    assert champion_scores and shadow_scores == pytest.approx(champion_scores)
    handle.close()


def _fold(pairs, **kwargs):
    state = ModelState("m", "2")
    comparison = Comparison("1", **kwargs)
    for method, champion, shadow in pairs:
        comparison.add(method, champion, shadow, None, 0.0)
    comparison.fold_into(state, now=0.0)
    return state


def _agreement(state):
    counts = state.counters.get("inferwatch_shadow_agreement_total", {})
    return int(counts.get(("1", "agree"), 0)), int(counts.get(("1", "disagree"), 0))


def _difference(state, output="value"):
    hist = state.histograms.get("inferwatch_shadow_difference", {}).get(("1", output))
    return (0, 0.0) if hist is None else (int(hist.counts.sum()), float(hist.sum))


values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False),
                   st.sampled_from([float("nan"), float("inf"), float("-inf")]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(values, values), min_size=1, max_size=30))
def test_differences_pair_each_row_with_its_own_row_when_either_side_has_nan_or_inf(rows):
    champion = np.array([c for c, _ in rows], dtype=np.float64)
    shadow = np.array([s for _, s in rows], dtype=np.float64)
    state = _fold([("predict", champion, shadow)])

    # By hand: only rows both sides answered with a number are compared, each with its own.
    both = np.isfinite(champion) & np.isfinite(shadow)
    expected = shadow[both] - champion[both]
    count, total = _difference(state)
    assert count == int(both.sum())
    assert total == pytest.approx(float(expected.sum()), rel=1e-9, abs=1e-6)
    compared = state.counters.get("inferwatch_shadow_compared_total", {}).get(("1",), 0)
    dropped = state.counters.get("inferwatch_shadow_dropped_total", {}).get(
        ("1", "incomparable"), 0)
    assert (compared, dropped) == ((1, 0) if both.any() else (0, 1))


labels = st.one_of(st.integers(0, 3), st.just(10**12))  # 10**12: no plausible class


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(labels, labels), min_size=1, max_size=30))
def test_agreement_pairs_each_row_with_its_own_row_when_a_label_is_not_a_class(rows):
    champion = np.array([c for c, _ in rows], dtype=np.int64)
    shadow = np.array([s for _, s in rows], dtype=np.int64)
    state = _fold([("predict", champion, shadow)])

    both = (champion < 10**12) & (shadow < 10**12)
    agree = int((champion[both] == shadow[both]).sum())
    assert _agreement(state) == (agree, int(both.sum()) - agree)
    confusion = {k[1:]: v for k, v in
                 state.counters.get("inferwatch_shadow_confusion_total", {}).items()}
    expected: dict = {}
    for c, s in zip(champion[both].tolist(), shadow[both].tolist()):
        expected[(str(c), str(s))] = expected.get((str(c), str(s)), 0) + 1
    assert confusion == expected


def test_one_call_with_a_lost_label_never_costs_the_fold_its_other_calls():
    # Three calls folded together: the middle one's champion answered a label that is no
    # class; the other two must be counted as ever, and the fold's sampled count too.
    state = ModelState("m", "2")
    comparison = Comparison("1")
    comparison.sampled(3)
    comparison.add("predict", [1, 2], [1, 3], None, 0.0)
    comparison.add("predict", np.array([10**12, 1]), np.array([1, 1]), None, 0.0)
    comparison.add("predict", np.array([0.5, 1.5]), np.array([1.0, 1.5]), None, 0.0)
    comparison.dropped("timeout")
    comparison.fold_into(state, now=0.0)

    assert state.counters["inferwatch_shadow_sampled_total"] == {("1",): 3.0}
    assert state.counters["inferwatch_shadow_compared_total"] == {("1",): 3.0}
    assert state.counters["inferwatch_shadow_dropped_total"] == {("1", "timeout"): 1.0}
    assert _agreement(state) == (2, 1)  # 1=1, 2 vs 3, and the middle call's 1=1
    assert _difference(state) == (2, 0.5)


@pytest.mark.parametrize("options, problem", [
    ({"sample": "0.5"}, "sample must be in"),
    ({"sample": None}, "sample must be in"),
    ({"timeout": "5"}, "timeout must be a positive number"),
    ({"timeout": None}, "timeout must be a positive number"),
    ({"queue_size": True}, "queue_size must be an int"),
    ({"difference_buckets": [1.0, 0.0]}, "difference_buckets must be"),
    ({"difference_buckets": ["small", "large"]}, "difference_buckets must be"),
    ({"difference_buckets": [-1.0, float("nan")]}, "difference_buckets must be"),
    ({"difference_buckets": []}, "difference_buckets must be"),
])
def test_options_of_the_wrong_type_or_shape_get_an_error_naming_them(registry, regressor,
                                                                     options, problem):
    # What a config file hands over: text where a number belongs, None for "unset", a
    # bucket list typed by hand.
    _, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    with pytest.raises(ValueError, match=problem) as caught:
        inferwatch.shadow(champion, model, version="2", registry=registry, **options)
    assert str(caught.value).startswith("inferwatch.shadow:")
    assert champion.predict.__name__ == "predict" and not hasattr(
        champion.predict, "__inferwatch_link__")  # nothing was put on the champion


@pytest.mark.parametrize("timeout", [float("inf"), 1e9], ids=["inf", "decades"])
def test_a_process_shadow_with_an_unbounded_timeout_still_compares(registry, regressor,
                                                                   timeout):
    # "No timeout" spelled as inf, or as a number of seconds no poll accepts at once.
    X, model = regressor
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, model, version="2", mode="process", timeout=timeout,
                               registry=registry)
    for i in range(3):
        champion.predict(X[i:i + 2])
    assert handle.flush(120)
    registry.drain()
    assert _counter(handle.monitor, "inferwatch_shadow_compared_total") == {("1",): 3.0}
    assert _counter(handle.monitor, "inferwatch_shadow_dropped_total") == {}
    handle.close()


def test_one_label_for_a_batch_past_the_byte_bound_counts_the_rows_it_could_not_keep():
    # As the champion's own join does: one label judges every row kept, and the rows past
    # the bound are counted, not lost because the outcome was one label.
    from inferwatch.core.shadow_compare import Comparison
    from inferwatch.core.state import ModelState

    comparison = Comparison("1", declared_classes=["a", "b"], max_bytes=64 * 1024)
    rows = 20_000
    comparison.add("predict", np.array(["a"] * rows), np.array(["b"] * rows), "r", at=0.0)
    state = ModelState("m", "2")
    comparison.fold_into(state, now=0.0)
    scored, _ = comparison.score("r", "a", at=1.0)
    comparison.fold_into(state, now=1.0)
    assert 0 < scored < rows
    assert sum(state.counters["inferwatch_shadow_outcomes_total"].values()) == scored
    assert state.counters["inferwatch_outcomes_unmatched_total"] == {
        ("rows_over_bound",): rows - scored}
