"""Outcomes of predictions whose rows are partly without a class, or that have none to
compare: a classifier fit on float labels whose ``predict`` returns NaN for a row
(``task="auto"``), a model answering with text (one ``str`` or a stream of tokens) under a
request id, and a ``MultiOutputClassifier`` whose ``predict_proba`` has no numbers in one
output's row. Counts are read from the exposition through prometheus_client's parser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper

_EXAMPLES = settings(max_examples=40, deadline=None)


class FloatLabelClassifier:
    """A classifier fit on a float target: scikit-learn keeps ``classes_ == [0.0, 1.0]``
    and ``predict`` answers in floats; this one answers NaN where it had no answer."""

    classes_ = np.array([0.0, 1.0])

    def __init__(self, answer: np.ndarray) -> None:
        self.answer = answer

    def predict(self, x):
        return self.answer


def _counts(scraper, name: str, label: str) -> dict[str, float]:
    """Non-zero samples of `name` by the value of `label`."""
    return {s.labels[label]: s.value for s in scraper.samples()
            if s.name == name and s.value}


def _outcomes(scraper) -> dict[str, float]:
    return _counts(scraper, "inferwatch_outcomes_total", "result")


def _unmatched(scraper) -> dict[str, float]:
    return _counts(scraper, "inferwatch_outcomes_unmatched_total", "reason")


def _invalid(scraper) -> dict[str, float]:
    return _counts(scraper, "inferwatch_invalid_predictions_total", "reason")


def _classes(scraper) -> dict[str, float]:
    return _counts(scraper, "inferwatch_predicted_class_total", "class")


def _task(scraper) -> str:
    (task,) = [s.labels["task"] for s in scraper.samples() if s.name == "inferwatch_model_info"]
    return task


# --- 1. float classes with NaN, task="auto" -----------------------------------------------------

def test_a_nan_row_of_float_classes_is_unsupported_and_the_others_are_judged(scraper):
    model = inferwatch.instrument(FloatLabelClassifier(np.array([1.0, np.nan, 0.0])),
                                  name="m", version="1", registry=scraper.registry)
    model.predict(np.zeros((3, 2)), request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", [1, 1, 1])
    assert _outcomes(scraper) == {"correct": 1.0, "incorrect": 1.0}
    assert _unmatched(scraper) == {"unsupported_prediction": 1.0}
    assert _invalid(scraper) == {"nan": 1.0}
    assert _classes(scraper) == {"1": 1.0, "0": 1.0}
    assert scraper.total("inferwatch_outcome_error_count") == 0  # classes, not values
    assert _task(scraper) == "classification"


def test_float_classes_with_nan_drained_together_are_classes(scraper):
    """Calls without request ids, stacked by the drain: the same reading as one call's."""
    classifier = FloatLabelClassifier(None)
    wrapped = inferwatch.instrument(classifier, name="c", version="1",
                                    registry=scraper.registry)
    for answer in ([1.0, np.nan], [0.0, 1.0], [np.nan, np.nan]):
        classifier.answer = np.array(answer)
        wrapped.predict(np.zeros((2, 2)))
    assert _classes(scraper) == {"1": 2.0, "0": 1.0}
    assert _invalid(scraper) == {"nan": 3.0}
    assert scraper.total("inferwatch_prediction_count") == 0  # no call read as values
    assert _task(scraper) == "classification"


def test_scores_of_a_float_class_model_stay_values_with_nan_among_them(scraper):
    """A value that is no class (a score) keeps its call values: NaN does not change that."""
    model = inferwatch.instrument(FloatLabelClassifier(np.array([0.25, np.nan, 1.0])),
                                  name="m", version="1", registry=scraper.registry)
    model.predict(np.zeros((3, 2)), request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
        "r-1", [0.0, 0.0, 1.0])
    assert _classes(scraper) == {}
    assert _invalid(scraper) == {"nan": 1.0}
    assert scraper.total("inferwatch_outcome_error_count") == 2
    assert _unmatched(scraper) == {"missing_label": 1.0}  # a regressor's row without value


@_EXAMPLES
@given(st.lists(st.sampled_from([0.0, 1.0, math.nan]), min_size=1, max_size=40),
       st.lists(st.sampled_from([0, 1]), min_size=40, max_size=40))
def test_any_nan_rows_of_float_classes_are_counted_once_each(answer, truth):
    scraper = Scraper()
    try:
        _judge_float_classes(scraper, answer, truth)
    finally:
        scraper.registry.close()


def _judge_float_classes(scraper, answer: list[float], truth: list[int]) -> None:
    model = inferwatch.instrument(FloatLabelClassifier(np.array(answer)), name="m",
                                  version="1", registry=scraper.registry)
    model.predict(np.zeros((len(answer), 2)), request_id="r-1")
    labels = truth[:len(answer)]
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", labels)
    nan = sum(1 for a in answer if a != a)
    outcomes, unmatched = _outcomes(scraper), _unmatched(scraper)
    judged = [(a, t) for a, t in zip(answer, labels) if a == a]
    assert outcomes.get("correct", 0) == sum(1 for a, t in judged if a == t)
    assert outcomes.get("incorrect", 0) == sum(1 for a, t in judged if a != t)
    assert unmatched == ({"unsupported_prediction": float(nan)} if nan else {})
    assert sum(outcomes.values()) + unmatched.get("unsupported_prediction", 0) == len(answer)
    assert _invalid(scraper) == ({"nan": float(nan)} if nan else {})
    assert sum(_classes(scraper).values()) == len(answer) - nan
    assert scraper.total("inferwatch_outcome_error_count") == 0


# --- 2. text answers under a request id ---------------------------------------------------------

class TextModel:
    def predict(self, x):
        return "a reply"


class StreamingModel:
    def predict(self, x):
        yield "a "
        yield "reply"


def _answer_text(model, request_id: str) -> None:
    answer = model.predict("a prompt", request_id=request_id)
    if not isinstance(answer, str):
        assert "".join(answer) == "a reply"


@pytest.mark.parametrize("kind", [TextModel, StreamingModel])
def test_a_text_answer_under_a_request_id_is_known_with_nothing_to_compare(scraper, kind):
    model = inferwatch.instrument(kind(), name="m", version="1", registry=scraper.registry)
    _answer_text(model, "r-1")
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.record_outcome("r-1", "a reply")
    mon.record_outcome("r-1", "a reply")  # known: a repeat is a duplicate
    mon.record_outcome("r-2", "a reply")  # never predicted
    assert _unmatched(scraper) == {"unsupported_prediction": 1.0, "duplicate": 1.0,
                                   "unknown_id": 1.0}
    assert _outcomes(scraper) == {}
    assert _task(scraper) == "generation"


@pytest.mark.parametrize("kind", [TextModel, StreamingModel])
def test_a_text_answer_inside_a_request_block_is_known(scraper, kind):
    model = inferwatch.instrument(kind(), name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    with mon.request(request_id="r-1"):
        answer = model.predict("a prompt")
        if not isinstance(answer, str):
            assert "".join(answer) == "a reply"
    mon.record_outcome("r-1", "a reply")
    assert _unmatched(scraper) == {"unsupported_prediction": 1.0}


def test_a_failed_stream_under_a_request_id_stays_unknown(scraper):
    """A stream that raised answered nothing: no prediction waits for its outcome."""
    def broken(x):
        yield "a "
        raise RuntimeError("backend went away")

    model = inferwatch.instrument(broken, name="m", version="1", registry=scraper.registry)
    with pytest.raises(RuntimeError):
        list(model("a prompt", request_id="r-1"))
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", "a reply")
    assert _unmatched(scraper) == {"unknown_id": 1.0}


def test_a_list_of_texts_is_still_judged_as_labels(scraper):
    model = inferwatch.instrument(lambda x: ["spam", "ham"], name="m", version="1",
                                  registry=scraper.registry)
    model(np.zeros((2, 2)), request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
        "r-1", ["spam", "spam"])
    assert _outcomes(scraper) == {"correct": 1.0, "incorrect": 1.0}
    assert _unmatched(scraper) == {}


# --- 3. MultiOutputClassifier.predict_proba with a row without numbers ---------------------------

def _diverged_multi_output():
    """A real MultiOutputClassifier of two outputs whose first output's weight diverged
    to infinity: a row whose feature is 0 gets NaN probabilities (0 x inf) for that output
    alone, the other rows 0 or 1; the second output is untouched."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multioutput import MultiOutputClassifier

    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, size=(60, 2))
    y = np.c_[(x[:, 0] > 0).astype(int), (x[:, 1] > 0).astype(int)]
    model = MultiOutputClassifier(LogisticRegression()).fit(x, y)
    model.estimators_[0].coef_[0, 0] = np.inf
    model.estimators_[0].coef_[0, 1] = 0.0
    model.estimators_[0].intercept_[:] = 0.0
    return model


# 0 x inf in the diverged output's matmul is the NaN these tests are about.
_DIVERGED = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@_DIVERGED
def test_a_multi_output_row_without_probabilities_leaves_the_rest_judged(scraper):
    clf = _diverged_multi_output()
    x = np.array([[1.0, 0.5], [0.0, -0.5], [-1.0, 0.25]])
    proba = clf.predict_proba(x)
    assert np.isnan(proba[0][1]).all() and np.isfinite(proba[0][[0, 2]]).all()
    assert np.isfinite(proba[1]).all()
    second = clf.estimators_[1].predict(x).tolist()
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    model.predict_proba(x, request_id="r-1")
    # Output 0 predicts 1, (none), 0; the label 1 for each: correct, unjudged, incorrect.
    # Output 1's labels are its own predictions: all correct.
    truth = [[1, second[0]], [1, second[1]], [1, second[2]]]
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome("r-1", truth)
    assert _outcomes(scraper) == {"correct": 4.0, "incorrect": 1.0}
    assert _unmatched(scraper) == {"unsupported_prediction": 1.0}
    assert _invalid(scraper) == {"nan": 1.0}
    classes = _classes(scraper)
    assert {k: v for k, v in classes.items() if k.startswith("0:")} == {"0:1": 1.0, "0:0": 1.0}
    assert sum(v for k, v in classes.items() if k.startswith("1:")) == 3


@_DIVERGED
def test_a_multi_output_batch_without_any_probabilities_counts_each_cell(scraper):
    clf = _diverged_multi_output()
    clf.estimators_[1].coef_[0, 0] = np.inf
    clf.estimators_[1].coef_[0, 1] = 0.0
    x = np.array([[0.0, 0.5], [0.0, -0.5]])
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    model.predict_proba(x, request_id="r-1")
    inferwatch.monitor("m", "1", registry=scraper.registry).record_outcome(
        "r-1", [[1, 1], [0, 0]])
    assert _outcomes(scraper) == {}
    assert _unmatched(scraper) == {"unsupported_prediction": 4.0}
