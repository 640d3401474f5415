"""Delayed ground truth at two more edges, counted as /metrics shows them (parsed with
prometheus_client's own parser): a ``predict_proba`` batch with a row of no probabilities,
whose other rows used to go unjoined with it, and two calls made under one request id,
the second of which used to replace the first call's prediction in the join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inferwatch
from inferwatch.core.outcomes import OutcomeJoiner


class _Classifier:
    """A classifier of two classes whose answers are set by the test."""

    classes_ = np.array([0, 1])

    def __init__(self, labels: object = None, proba: object = None) -> None:
        self.labels, self.proba = labels, proba

    def predict(self, x: object) -> object:
        return self.labels

    def predict_proba(self, x: object) -> object:
        return self.proba


def _counts(scraper) -> tuple[dict[str, float], dict[str, float]]:
    """(outcomes by result, unmatched outcomes by reason), each as /metrics reads."""
    results, unmatched = {}, {}
    for sample in scraper.samples():
        if sample.name == "inferwatch_outcomes_total" and sample.value:
            results[sample.labels["result"]] = sample.value
        elif sample.name == "inferwatch_outcomes_unmatched_total" and sample.value:
            unmatched[sample.labels["reason"]] = sample.value
    return results, unmatched


def _model(scraper, model: _Classifier):
    wrapped = inferwatch.instrument(model, name="m", version="1", registry=scraper.registry)
    return wrapped, inferwatch.monitor("m", "1", registry=scraper.registry)


# Each: the matrix predict_proba returns (rows 1 and 3 hold no probabilities), the rows the
# outcome judges right.
_PROBA = np.array([[0.9, 0.1], [np.nan, np.nan], [0.2, 0.8], [np.inf, 0.0], [0.3, 0.7]])
_SHAPES = {
    "ndarray": lambda: _PROBA.copy(),
    "DataFrame": lambda: pd.DataFrame(_PROBA, columns=["0", "1"]),
    "nullable Float64 DataFrame with NA": lambda: pd.DataFrame(
        {"0": pd.array([0.9, None, 0.2, 0.4, 0.3], dtype="Float64"),
         "1": pd.array([0.1, None, 0.8, None, 0.7], dtype="Float64")}),
    "list of rows": lambda: _PROBA.tolist(),
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_a_probability_row_without_numbers_leaves_the_other_rows_joined(scraper, shape):
    """Top classes 0, -, 1, -, 1: the outcome 0, 1, 0, 0, 0 is right on row 0, wrong on
    rows 2 and 4, and rows 1 and 3 count one ``unsupported_prediction`` each."""
    wrapped, mon = _model(scraper, _Classifier(proba=_SHAPES[shape]()))
    wrapped.predict_proba(np.zeros((5, 2)), request_id="r-1")
    mon.record_outcome("r-1", [0, 1, 0, 0, 0])
    assert _counts(scraper) == ({"correct": 1, "incorrect": 2}, {"unsupported_prediction": 2})


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_a_probability_batch_without_numbers_in_any_row_counts_each_row(scraper, shape):
    """As a batch of labels with no class in any row: each row once, never one for all."""
    proba = _SHAPES[shape]()
    empty = proba.iloc[[1]] if isinstance(proba, pd.DataFrame) else (
        proba[[1, 1, 1]] if isinstance(proba, np.ndarray) else [proba[1]] * 3)
    if isinstance(empty, pd.DataFrame):
        empty = pd.concat([empty] * 3, ignore_index=True)
    wrapped, mon = _model(scraper, _Classifier(proba=empty))
    wrapped.predict_proba(np.zeros((3, 2)), request_id="r-1")
    mon.record_outcome("r-1", [0, 1, 0])
    assert _counts(scraper) == ({}, {"unsupported_prediction": 3})
    # Not taken for a regressor (no call has shown its task yet, so it stays "auto").
    info = {s.labels["task"] for s in scraper.samples() if s.name == "inferwatch_model_info"}
    assert info <= {"auto", "classification"}
    assert not [s for s in scraper.samples()
                if s.name == "inferwatch_prediction_count" and s.value]


def test_a_binary_classifiers_positive_column_with_a_nan_row(scraper):
    wrapped, mon = _model(scraper, _Classifier(proba=np.array([0.8, np.nan, 0.1])))
    wrapped.predict_proba(np.zeros((3, 2)), request_id="r-1")
    mon.record_outcome("r-1", [1, 1, 1])
    assert _counts(scraper) == ({"correct": 1, "incorrect": 1}, {"unsupported_prediction": 1})


def test_calls_of_one_drain_each_join_their_own_rows(scraper):
    """A call with a NaN row among clean calls of the same width: the clean calls are
    stacked, the other read alone; each joins its own rows."""
    model = _Classifier()
    wrapped, mon = _model(scraper, model)
    for request_id, proba in (("clean-1", [[0.9, 0.1]]), ("nan", [[0.1, 0.9], [np.nan, 0.5]]),
                              ("clean-2", [[0.4, 0.6], [0.7, 0.3]])):
        model.proba = np.array(proba)
        wrapped.predict_proba(np.zeros((len(proba), 2)), request_id=request_id)
    mon.record_outcome("clean-1", [0])
    mon.record_outcome("nan", [1, 1])
    mon.record_outcome("clean-2", [1, 1])
    assert _counts(scraper) == ({"correct": 3, "incorrect": 1}, {"unsupported_prediction": 1})


@pytest.mark.parametrize("drained_between", [False, True])
def test_a_second_call_under_one_id_does_not_replace_the_first(scraper, drained_between):
    """predict says 1, 0; predict_proba then says 1, 1 for the same request id. As a
    request's first call is its prediction, the outcome 1, 0 joins predict's answer."""
    wrapped, mon = _model(scraper, _Classifier(labels=np.array([1, 0]),
                                               proba=np.array([[0.2, 0.8], [0.4, 0.6]])))
    wrapped.predict(np.zeros((2, 2)), request_id="r-1")
    if drained_between:
        mon.drain()
    wrapped.predict_proba(np.zeros((2, 2)), request_id="r-1")
    mon.drain()  # both calls are remembered before the outcome comes
    mon.record_outcome("r-1", [1, 0])
    mon.record_outcome("r-1", [1, 0])  # the second call left nothing of its own to join
    assert _counts(scraper) == ({"correct": 2}, {"duplicate": 1})


def test_the_first_call_wins_whichever_method_it_was(scraper):
    wrapped, mon = _model(scraper, _Classifier(labels=np.array([1, 0]),
                                               proba=np.array([[0.2, 0.8], [0.4, 0.6]])))
    wrapped.predict_proba(np.zeros((2, 2)), request_id="r-1")
    wrapped.predict(np.zeros((2, 2)), request_id="r-1")
    mon.record_outcome("r-1", [1, 0])
    assert _counts(scraper) == ({"correct": 1, "incorrect": 1}, {})


def test_an_id_used_again_after_its_outcome_is_a_new_prediction(scraper):
    model = _Classifier(labels=np.array([1]))
    wrapped, mon = _model(scraper, model)
    wrapped.predict(np.zeros((1, 2)), request_id="r-1")
    mon.record_outcome("r-1", [1])
    model.labels = np.array([0])
    wrapped.predict(np.zeros((1, 2)), request_id="r-1")
    mon.record_outcome("r-1", [1])
    assert _counts(scraper) == ({"correct": 1, "incorrect": 1}, {})


@pytest.mark.parametrize("many", [False, True])
def test_a_prediction_past_its_ttl_gives_way_to_a_new_one(many):
    joiner = OutcomeJoiner(ttl_seconds=60.0)

    def remember(classes: tuple, at: float) -> None:
        if many:
            joiner.remember_many([("r-1", classes, None, at)])
        else:
            joiner.remember("r-1", classes, None, at=at)

    remember(("a",), 0.0)
    remember(("b",), 30.0)  # within the ttl: the first stays
    remember(("c",), 61.0)  # the first expired: this one is the prediction now
    assert joiner.join("r-1", "c", at=62.0).correct == 1
    assert len(joiner) == 0


def test_one_batch_of_entries_keeps_the_first_of_an_id():
    joiner = OutcomeJoiner()
    joiner.remember_many([("r-1", ("a",), None, 1.0), ("r-2", ("x",), None, 1.0),
                          ("r-1", ("b",), None, 2.0)])
    assert list(joiner._pending) == ["r-1", "r-2"]  # the first keeps its place, too
    alone = OutcomeJoiner()
    alone.remember_many([("r-1", ("a",), None, 1.0), ("r-2", ("x",), None, 1.0)])
    assert joiner.estimated_bytes == alone.estimated_bytes  # the second was never counted
    assert joiner.join("r-1", "a", at=3.0).correct == 1
