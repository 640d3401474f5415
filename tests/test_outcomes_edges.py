"""Delayed ground truth at its edges: multi-output classifiers, named class outputs, and the
rows past the byte bound that a shadow's two caches both see."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier

import inferwatch
from inferwatch.core.registry import Registry

RNG = np.random.default_rng(11)
X = RNG.normal(size=(80, 3))
Y = np.column_stack([(X[:, 0] > 0).astype(int), np.where(X[:, 1] > 0, 2, 5)])


@pytest.fixture
def registry():
    registry = Registry()
    yield registry
    registry.close()


def _counts(monitor, metric: str) -> dict:
    return {labels[-1]: value for labels, value in monitor.state.counters.get(metric, {}).items()
            if value}


@pytest.mark.parametrize("rows", [1, 16])
def test_a_multi_output_classifier_is_scored_on_every_output(registry, rows):
    """Its (n, k) labels were remembered as nothing: every outcome counted
    unsupported_prediction and no accuracy was ever measured."""
    model = MultiOutputClassifier(LogisticRegression()).fit(X, Y)
    wrapped = inferwatch.instrument(model, name="m", version="1", registry=registry)
    predicted = wrapped.predict(X[:rows], request_id="r-1")
    truth = Y[:rows]
    mon = registry.monitor("m", "1")
    mon.record_outcome("r-1", truth)
    registry.drain()
    right = int((predicted == truth).sum())
    assert _counts(mon, "inferwatch_outcomes_total") == {
        key: value for key, value in (("correct", right), ("incorrect", truth.size - right))
        if value}
    assert _counts(mon, "inferwatch_outcomes_unmatched_total") == {}


_LABELS = st.sampled_from([0, 1, 2])


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), shape=st.tuples(st.integers(1, 6), st.integers(2, 4)),
       as_text=st.booleans(), container=st.sampled_from(["array", "list", "frame"]))
def test_each_label_of_a_multi_output_classifier_is_judged_against_its_own_output(
        registry, data, shape, as_text, container):
    predicted = data.draw(arrays(np.int64, shape, elements=_LABELS))
    truth = data.draw(arrays(np.int64, shape, elements=_LABELS))
    if as_text:  # string labels (an (n, k) array of str), as MultiOutputClassifier returns
        predicted = predicted.astype(str)
    given_truth = {"array": truth, "list": truth.tolist(),
                   "frame": pd.DataFrame(truth)}[container]
    name = f"m{next(_NAMES)}"
    wrapped = inferwatch.instrument(lambda x: predicted, name=name, version="1",
                                    registry=registry)
    wrapped(0, request_id="r")
    mon = registry.monitor(name, "1")
    mon.record_outcome("r", given_truth)
    right = int((predicted.astype(str) == truth.astype(str)).sum())
    assert sum(_counts(mon, "inferwatch_outcomes_total").values()) == truth.size
    assert _counts(mon, "inferwatch_outcomes_total").get("correct", 0) == right
    assert _counts(mon, "inferwatch_outcomes_unmatched_total") == {}


_NAMES = itertools.count()


def test_a_missing_label_of_one_output_skips_only_that_label(registry):
    predicted = np.array([[1, 0, 2], [0, 0, 1]])
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=registry)
    wrapped(0, request_id="r")
    mon = registry.monitor("m", "1")
    mon.record_outcome("r", pd.DataFrame({"a": [1, None], "b": [1, 0], "c": [2, pd.NA]},
                                         dtype=object))
    assert _counts(mon, "inferwatch_outcomes_total") == {"correct": 3, "incorrect": 1}
    assert _counts(mon, "inferwatch_outcomes_unmatched_total") == {"missing_label": 2}


def test_named_class_outputs_are_joined_in_the_order_the_model_returns_them(registry):
    """A dict of label columns was remembered as nothing (unsupported_prediction)."""
    wrapped = inferwatch.instrument(
        lambda x: {"fraud": np.array([1, 0]), "tier": np.array([2, 3])},
        name="m", version="1", registry=registry)
    wrapped(0, request_id="r")
    mon = registry.monitor("m", "1")
    mon.record_outcome("r", [[1, 2], [1, 3]])
    assert _counts(mon, "inferwatch_outcomes_total") == {"correct": 3, "incorrect": 1}
    assert _counts(mon, "inferwatch_outcomes_unmatched_total") == {}


def test_one_row_of_labels_of_the_wrong_width_is_a_shape_mismatch(registry):
    wrapped = inferwatch.instrument(lambda x: np.array([[1, 0], [0, 1]]), name="m",
                                    version="1", registry=registry)
    wrapped(0, request_id="r")
    mon = registry.monitor("m", "1")
    mon.record_outcome("r", [1, 0, 1])
    assert _counts(mon, "inferwatch_outcomes_unmatched_total") == {"shape_mismatch": 1}
    assert _counts(mon, "inferwatch_outcomes_total") == {}


class _Summing:
    def predict(self, rows):
        return np.asarray(rows, dtype=float).sum(1)


def test_rows_over_the_bound_count_once_for_a_shadow(registry):
    """The challenger's own join and the comparison's cache both counted the rows they
    could not keep: a 400-row batch counted 438 rows over the bound."""
    rows = 400
    champion = inferwatch.instrument(_Summing(), name="m", version="1", registry=registry,
                                     outcome_cache_bytes=8192)
    handle = inferwatch.shadow(champion, _Summing(), version="2", registry=registry,
                               timeout=60.0)
    champion.predict(np.ones((rows, 2)), request_id="big")
    assert handle.flush(60)
    registry.drain()
    registry.monitor("m", "1").record_outcome("big", np.full(rows, 2.5))
    registry.drain()
    challenger = handle.monitor
    over = _counts(challenger, "inferwatch_outcomes_unmatched_total")["rows_over_bound"]
    own = challenger.state.histograms["inferwatch_outcome_error"][()].count
    compared = challenger.state.histograms["inferwatch_shadow_outcome_error"][
        ("1", "shadow")].count
    assert 0 < compared <= own < rows
    assert over == rows - compared  # every row that some series did not judge, once
    handle.close()


def test_a_shadow_of_a_multi_output_classifier_scores_both_on_every_label(registry):
    """The comparison kept the labels output after output and split them by row: stacked
    calls were matched with other rows' labels and no shadow outcome was ever counted."""
    model = MultiOutputClassifier(LogisticRegression()).fit(X, Y)
    weaker = MultiOutputClassifier(LogisticRegression(C=1e-4)).fit(X, Y)
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, weaker, version="2", registry=registry, timeout=60.0)
    predicted = [champion.predict(X[4 * i:4 * i + 4], request_id=f"r-{i}") for i in range(3)]
    assert handle.flush(60)
    registry.drain()
    for i in range(3):
        registry.monitor("m", "1").record_outcome(f"r-{i}", Y[4 * i:4 * i + 4])
    registry.drain()
    theirs = weaker.predict(X[:12])
    ours = np.concatenate(predicted)
    expected: dict[tuple[str, str], int] = {}
    for c, s in zip((ours == Y[:12]).ravel().tolist(), (theirs == Y[:12]).ravel().tolist()):
        key = ("correct" if c else "incorrect", "correct" if s else "incorrect")
        expected[key] = expected.get(key, 0) + 1
    table = {labels[1:]: value for labels, value in
             handle.monitor.state.counters["inferwatch_shadow_outcomes_total"].items()}
    assert table == expected
    handle.close()


class _Scores:
    """Answers a score per row where the champion answers labels: nothing in common."""

    def predict(self, rows):
        return {"score": np.asarray(rows, dtype=float).sum(1)}


def test_a_challenger_with_no_output_in_common_is_still_joined_on_its_own(registry):
    """An incomparable call was never remembered by the comparison, and the challenger's
    own join was skipped with it: its outcome series stayed empty."""
    model = LogisticRegression().fit(X, Y[:, 0])
    champion = inferwatch.instrument(model, name="m", version="1", registry=registry)
    handle = inferwatch.shadow(champion, _Scores(), version="2", registry=registry,
                               timeout=60.0)
    champion.predict(X[:3], request_id="r")
    assert handle.flush(60)
    registry.drain()
    registry.monitor("m", "1").record_outcome("r", Y[:3, 0])
    registry.drain()
    challenger = handle.monitor
    assert _counts(challenger, "inferwatch_shadow_dropped_total") == {"incomparable": 1}
    errors = challenger.state.histograms["inferwatch_outcome_error"][()]
    assert errors.count == 3
    assert errors.sum == pytest.approx(float(np.abs(X[:3].sum(1) - Y[:3, 0]).sum()))
    # An outcome for a request the challenger never saw is not its unknown id.
    champion.predict(X[:1], request_id="unsampled")
    handle.close()
    registry.monitor("m", "1").record_outcome("unsampled", Y[:1, 0])
    assert _counts(challenger, "inferwatch_outcomes_unmatched_total") == {}


def test_named_class_outputs_with_labels_no_series_may_hold_join_every_output(registry):
    """Labels of one output that are not classes (text not in `classes=`) are dropped from
    the class counts; the other output's labels alone then number as many as the rows, and
    were joined as if they were the prediction (an outcome of both outputs counted
    shape_mismatch)."""

    def predict(x):
        return {"fraud": np.array([1, 0]), "channel": np.array(["web", "app"], dtype=object)}

    wrapped = inferwatch.instrument(predict, name="m", version="1", registry=registry)
    wrapped(X[:2], request_id="r-1")
    mon = registry.monitor("m", "1")
    registry.drain()
    mon.record_outcome("r-1", [[1, "web"], [1, "app"]])
    registry.drain()
    assert _counts(mon, "inferwatch_outcomes_total") == {"correct": 3, "incorrect": 1}
    assert _counts(mon, "inferwatch_outcomes_unmatched_total") == {}


@pytest.mark.parametrize("drained", [True, False])
def test_an_outcome_after_a_rollout_joins_the_version_that_predicted(registry, drained):
    """Labels arrive days late: by then ``inferwatch.monitor("fraud")`` is the version
    rolled out since, which never saw the request; the outcome counted unknown_id there and
    the version that made the prediction was never scored."""
    model = MultiOutputClassifier(LogisticRegression()).fit(X, Y[:, 0:1].repeat(2, axis=1))
    old = inferwatch.instrument(model, name="fraud", version="1.4.2", registry=registry)
    predicted = old.predict(X[:3], request_id="r-17")
    if drained:
        registry.drain()
    new = inferwatch.instrument(model, name="fraud", version="1.5.0", registry=registry)
    new.predict(X[:1], request_id="r-18")
    latest = inferwatch.monitor("fraud", registry=registry)
    assert latest.version == "1.5.0"
    latest.record_outcome("r-17", predicted)
    latest.record_outcome("r-99", predicted[:1])  # no version predicted it
    registry.drain()
    before = registry.monitor("fraud", "1.4.2")
    assert _counts(before, "inferwatch_outcomes_total") == {"correct": predicted.size}
    assert _counts(before, "inferwatch_outcomes_unmatched_total") == {}
    assert _counts(latest, "inferwatch_outcomes_total") == {}
    assert _counts(latest, "inferwatch_outcomes_unmatched_total") == {"unknown_id": 1}


@pytest.mark.parametrize("late_days", [0, 8], ids=["in time", "expired"])
def test_a_repeated_outcome_after_a_rollout_stays_with_the_version_that_predicted(
        registry, late_days):
    """An at-least-once label queue delivers an outcome twice: after a rollout the repeat
    counted unknown_id on the new version, not duplicate (or expired again) on the version
    that made the prediction."""
    model = MultiOutputClassifier(LogisticRegression()).fit(X, Y[:, 0:1].repeat(2, axis=1))
    old = inferwatch.instrument(model, name="fraud", version="1", registry=registry)
    predicted = old.predict(X[:1], request_id="r-1")
    inferwatch.instrument(model, name="fraud", version="2", registry=registry)
    latest = inferwatch.monitor("fraud", registry=registry)
    at = time.time() + late_days * 86400
    for _ in range(3):
        latest.record_outcome("r-1", predicted, at=at)
    registry.drain()
    before = registry.monitor("fraud", "1")
    if late_days:
        assert _counts(before, "inferwatch_outcomes_unmatched_total") == {"expired": 3}
        assert _counts(before, "inferwatch_outcomes_total") == {}
    else:
        assert _counts(before, "inferwatch_outcomes_total") == {"correct": predicted.size}
        assert _counts(before, "inferwatch_outcomes_unmatched_total") == {"duplicate": 2}
    assert _counts(latest, "inferwatch_outcomes_unmatched_total") == {}
