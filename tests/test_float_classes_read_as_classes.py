"""A classifier fit on a float target (``classes_ == [0.0, 1.0]``) under ``task="auto"``: its
``predict`` returns floats, which were recorded as regression values while its
``predict_proba`` counted classes, so one model showed as both and the class mix of
``predict`` was lost. Its float labels are now read as classes in every path of the drain
(the fast paths for float scalars and arrays, and ``normalize``), named as ``predict_proba``
names them; a float output that is not among the classes stays values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import inferwatch
from inferwatch.core.options import Settings
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.prediction_state import count_classes
from inferwatch.core.predictions import normalize

_RNG = np.random.default_rng(13)
_X = _RNG.normal(size=(60, 3))
_BINARY = np.where(_X[:, 0] > 0, 1.0, 0.0)
_THREE = np.digitize(_X[:, 1], [-0.5, 0.5]).astype(np.float64)  # 0.0, 1.0, 2.0

_CLASSIFIERS = {
    "logistic": lambda: LogisticRegression().fit(_X, _BINARY),
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(_X, _BINARY),
    "tree, three classes": lambda: DecisionTreeClassifier(max_depth=3, random_state=0).fit(
        _X, _THREE),
}


def _class_counts(scraper) -> dict[str, float]:
    return {s.labels["class"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_predicted_class_total"}


def _expected_counts(predicted: np.ndarray) -> dict[str, float]:
    labels, counts = np.unique(predicted, return_counts=True)
    return {str(int(label)): float(n) for label, n in zip(labels.tolist(), counts.tolist())}


def _value_series(scraper) -> list[dict[str, str]]:
    return [s.labels for s in scraper.samples()
            if s.name.startswith("inferwatch_prediction") and s.labels.get("output") == "value"]


class _OneLabel:
    """A real classifier behind a predict that returns one row's label as a numpy float
    scalar (a handler's ``clf.predict(x)[0]``): the drain's float-scalar path."""

    def __init__(self, model) -> None:
        self.model = model
        self.classes_ = model.classes_

    def predict(self, x: np.ndarray) -> np.float64:
        return self.model.predict(x)[0]


# Calls of one drain: the shapes that take each of the drain's paths.
_CALLS = {
    "single rows": [slice(i, i + 1) for i in range(12)],  # arrays of one shape: stacked
    "batches": [slice(i, i + 5) for i in range(0, 30, 5)],  # stacked as well
    "varied batches": [slice(0, 1), slice(1, 8), slice(8, 10), slice(10, 25)],  # joined
    "one call": [slice(0, 20)],  # normalize
}


@pytest.mark.parametrize("calls", list(_CALLS))
@pytest.mark.parametrize("make", list(_CLASSIFIERS))
def test_predict_of_a_classifier_fit_on_floats_counts_its_classes(scraper, make, calls):
    clf = _CLASSIFIERS[make]()
    assert clf.classes_.dtype.kind == "f"
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    predicted = np.concatenate([model.predict(_X[rows]) for rows in _CALLS[calls]])
    assert predicted.dtype.kind == "f"
    assert _class_counts(scraper) == _expected_counts(predicted)
    assert scraper.value("inferwatch_batch_size_sum") == predicted.size
    assert scraper.value("inferwatch_batch_size_count") == len(_CALLS[calls])
    assert _value_series(scraper) == []
    assert scraper.total("inferwatch_invalid_predictions_total") == 0
    assert [s["task"] for s in scraper.series("inferwatch_model_info")] == ["classification"]


@pytest.mark.parametrize("make", list(_CLASSIFIERS))
def test_float_labels_returned_as_scalars_count_their_classes(scraper, make):
    clf = _CLASSIFIERS[make]()
    model = inferwatch.instrument(_OneLabel(clf), name="m", version="1",
                                  registry=scraper.registry)
    predicted = np.array([model.predict(_X[i:i + 1]) for i in range(15)])
    assert _class_counts(scraper) == _expected_counts(predicted)
    assert scraper.value("inferwatch_batch_size_count") == 15
    assert _value_series(scraper) == []


def test_predict_and_predict_proba_count_one_class_under_one_name(scraper):
    clf = _CLASSIFIERS["logistic"]()
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    for i in range(5):
        model.predict_proba(_X[i:i + 2])
        model.predict(_X[i:i + 2])
    predicted = np.concatenate([clf.predict(_X[i:i + 2]) for i in range(5)])
    assert _class_counts(scraper) == {k: 2 * v for k, v in _expected_counts(predicted).items()}
    assert {s["output"] for s in scraper.series("inferwatch_prediction_count")} == {"0", "1"}


def test_an_outcome_joins_float_labels_by_class(scraper):
    clf = _CLASSIFIERS["logistic"]()
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    predicted = model.predict(_X[:6], request_id="r")
    mon.record_outcome("r", [int(p) for p in predicted])
    assert scraper.total("inferwatch_outcomes_total", result="correct") == 6


class _Scores:
    """A wrapper that names classes but whose predict returns scores: not class labels."""

    classes_ = np.array([0.0, 1.0])

    def __init__(self, outputs: list[np.ndarray]) -> None:
        self.outputs = iter(outputs)

    def predict(self, x: object) -> np.ndarray:
        return next(self.outputs)


def test_a_call_of_values_that_are_no_classes_stays_values_and_only_that_call(scraper):
    outputs = [np.array([1.0, 0.0]), np.array([0.73, 1.0]), np.array([0.0, 0.0])]
    model = inferwatch.instrument(_Scores(outputs), name="m", version="1",
                                  registry=scraper.registry)
    for _ in outputs:
        model.predict(None)
    assert _class_counts(scraper) == {"0": 3.0, "1": 1.0}
    assert scraper.value("inferwatch_prediction_count", output="value") == 2
    assert scraper.value("inferwatch_prediction_sum", output="value") == pytest.approx(1.73)
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


def test_a_regressor_on_the_same_target_keeps_its_values(scraper):
    reg = DecisionTreeRegressor(max_depth=2, random_state=0).fit(_X, _BINARY)
    model = inferwatch.instrument(reg, name="m", version="1", registry=scraper.registry)
    predicted = np.concatenate([model.predict(_X[i:i + 3]) for i in range(0, 12, 3)])
    assert _class_counts(scraper) == {}
    assert scraper.value("inferwatch_prediction_count", output="value") == predicted.size
    assert scraper.value("inferwatch_prediction_sum", output="value") == \
        pytest.approx(predicted.sum())
    assert [s["task"] for s in scraper.series("inferwatch_model_info")] == ["regression"]


def test_a_declared_regression_task_keeps_a_classifiers_float_labels_as_values(scraper):
    clf = _CLASSIFIERS["logistic"]()
    model = inferwatch.instrument(clf, name="m", version="1", task="regression",
                                  registry=scraper.registry)
    predicted = np.concatenate([model.predict(_X[i:i + 3]) for i in range(0, 12, 3)])
    assert _class_counts(scraper) == {}
    assert scraper.value("inferwatch_prediction_count", output="value") == predicted.size


# --- every path of the drain reads a call as normalize reads it alone -------------------------

_OUTPUT_VALUES = st.sampled_from([0.0, 1.0, 2.0, -0.0, 0.5, 7.0, -3.0, float("nan"),
                                  float("inf")])
_CLASS_NAMES = st.sampled_from([
    None, np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0]), [np.float64(-3.0), np.float64(7.0)],
    np.array([0, 1]), np.array([0.5, 1.0]), np.array(["0", "1"]), [True, False]])


def _drain_of(batch: PredictionBatch) -> tuple:
    values = {name: np.concatenate(chunks).tolist() for name, chunks in batch.values.items()}
    return (count_classes(batch.classes) if batch.classes else {}, values,
            batch.invalid, batch.class_like, batch.rows())


def _batch(class_names, task: str) -> PredictionBatch:
    return PredictionBatch(Settings(task=task), {}, None, lambda: class_names)


@settings(max_examples=150, suppress_health_check=list(HealthCheck))
@given(_CLASS_NAMES, st.sampled_from(["auto", "classification", "regression"]),
       st.lists(st.lists(_OUTPUT_VALUES, min_size=0, max_size=6), min_size=2, max_size=8),
       st.booleans())
def test_a_drain_of_many_calls_reads_each_as_normalize_reads_it(class_names, task, calls,
                                                               same_size):
    if same_size:
        width = max(1, len(calls[0]))
        calls = [(call * width)[:width] or [1.0] * width for call in calls]
    arrays = [np.array(call, dtype=np.float64) for call in calls]
    fast = _batch(class_names, task)
    fast.add_results(arrays, probabilities=False)
    one_by_one = _batch(class_names, task)
    for array in arrays:
        one_by_one.add_one(array, False)
    assert _drain_of(fast)[:4] == _drain_of(one_by_one)[:4]
    assert fast.rows() == one_by_one.rows() == sum(map(len, calls))
    if same_size:  # the drain's own stacking of arrays of one shape
        stacked = _batch(class_names, task)
        stacked.add_stacked(np.concatenate(arrays), arrays[0].shape, len(arrays), False)
        assert _drain_of(stacked) == _drain_of(fast)
    scalars = [float(call[0]) for call in calls if call] or [0.5]
    fast = _batch(class_names, task)
    fast.add_results(scalars, probabilities=False)
    one_by_one = _batch(class_names, task)
    for scalar in scalars:
        one_by_one.add_one(scalar, False)
    assert _drain_of(fast) == _drain_of(one_by_one)


@settings(max_examples=60, suppress_health_check=list(HealthCheck))
@given(st.lists(st.integers(-100, 100), min_size=1, max_size=5, unique=True), st.data())
def test_whole_float_classes_are_named_as_integers(classes, data):
    names = np.array(sorted(classes), dtype=np.float64)
    rows = data.draw(st.lists(st.sampled_from(names.tolist()), min_size=1, max_size=20))
    prediction = normalize(np.array(rows), class_names=names)
    assert class_labels(prediction.classes) == [str(int(r)) for r in rows]
    assert prediction.values == {}
    # A model that names no classes: the same floats are a regressor's values.
    assert normalize(np.array(rows)).values["value"].tolist() == rows
