"""Prediction shapes read wrongly until now: a binary classifier's positive-class
probabilities as a 1-D array, classes of a classifier fit on float labels, pandas
categorical labels with many categories, and text labels in an array of Python objects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import inferwatch
from inferwatch.core import prediction_classes
from inferwatch.core.prediction_classes import admit_classes, class_labels
from inferwatch.core.predictions import Prediction, normalize


def _fitted(labels: np.ndarray) -> tuple[LogisticRegression, np.ndarray]:
    """A real logistic regression fit on `labels`, and some rows to predict."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(labels.size, 3))
    x[:, 0] += np.where(labels == np.unique(labels)[-1], 2.0, -2.0)
    return LogisticRegression().fit(x, labels), x


def _labels(prediction: Prediction) -> list[str]:
    return [] if prediction.classes is None else class_labels(prediction.classes)


def _class_counts(scraper) -> dict[str, float]:
    return {s.labels["class"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_predicted_class_total"}


# --- predict_proba of shape (n,): the positive class's probability alone ----------------------

class _PositiveOnly:
    """A real scikit-learn classifier behind a predict_proba that returns the positive
    class's probabilities alone, as a 1-D array (``proba[:, 1]``): what hand-written binary
    classifiers and some SDKs return."""

    def __init__(self, model: LogisticRegression) -> None:
        self.model = model
        self.classes_ = model.classes_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)[:, 1]


@pytest.mark.parametrize("labels", [np.array([0, 1] * 20), np.array(["ham", "spam"] * 20)])
def test_a_1d_positive_class_array_counts_each_rows_class(scraper, labels):
    clf, x = _fitted(labels)
    model = inferwatch.instrument(_PositiveOnly(clf), name="m", version="1",
                                  registry=scraper.registry)
    positive = model.predict_proba(x[:9])
    assert positive.shape == (9,)
    predicted = clf.predict(x[:9]).tolist()
    expected = {str(c): float(predicted.count(c)) for c in set(predicted)}
    # Read as one row of nine columns, it counted one class named "8" and probability_sum.
    assert _class_counts(scraper) == expected
    assert scraper.value("inferwatch_batch_size_sum") == 9
    top = np.maximum(positive, 1.0 - positive)
    assert scraper.value("inferwatch_prediction_confidence_sum") == pytest.approx(top.sum())
    assert scraper.value("inferwatch_prediction_sum", output=str(clf.classes_[1])) == \
        pytest.approx(positive.sum())
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
       st.sampled_from([np.array([0, 1]), np.array(["no", "yes"]), [False, True]]))
def test_a_1d_positive_class_array_reads_as_the_two_column_matrix(positive, names):
    # Two numbers summing to 1 are one request's row [p0, p1] (tested below).
    assume(not (len(positive) == 2 and abs(sum(positive) - 1.0) <= 1e-3))
    p = np.array(positive)
    one = normalize(p, probabilities=True, class_names=names)
    two = normalize(np.column_stack([1.0 - p, p]), probabilities=True, class_names=names)
    assert one.rows == two.rows == len(positive)
    assert class_labels(one.classes) == class_labels(two.classes)
    assert one.confidence.tolist() == two.confidence.tolist()
    assert {k: v.tolist() for k, v in one.values.items()} == \
        {k: v.tolist() for k, v in two.values.items()}
    assert one.invalid == two.invalid == {}


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.0), st.sampled_from([np.array([0, 1]), np.array(["no", "yes"])]))
def test_one_requests_binary_row_stays_one_row(p1, names):
    """A handler's ``r.prediction(model.predict_proba([x])[0], probabilities=True)``: the
    one row [p0, p1] of a binary classifier, not two positive-class probabilities."""
    row = np.array([1.0 - p1, p1])
    prediction = normalize(row, probabilities=True, class_names=names)
    as_row = normalize(row.reshape(1, -1), probabilities=True, class_names=names)
    assert prediction.rows == as_row.rows == 1
    assert class_labels(prediction.classes) == class_labels(as_row.classes)
    assert prediction.confidence.tolist() == as_row.confidence.tolist()
    assert prediction.invalid == as_row.invalid == {}


def test_one_requests_binary_row_handed_to_the_request_counts_one_row(scraper):
    clf, x = _fitted(np.array(["ham", "spam"] * 20))
    model = inferwatch.instrument(clf, name="m", version="1", registry=scraper.registry)
    mon = scraper.registry.monitor("m", "1")
    row = model.predict_proba(x[:1])[0]  # one call of one row, counted as such
    with mon.request() as r:
        r.prediction(row, probabilities=True)
    assert scraper.value("inferwatch_batch_size_sum") == 2
    assert _class_counts(scraper) == {str(clf.classes_[int(np.argmax(row))]): 2.0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12),
       st.sampled_from([None, np.array([0, 1, 2]), np.array(["only"])]))
def test_a_1d_probability_array_without_two_known_classes_keeps_its_reading(row, names):
    """Without exactly two known classes a 1-D array stays one row of class probabilities
    (a model without ``classes_`` returning one sample's row)."""
    p = np.array(row)
    prediction = normalize(p, probabilities=True, class_names=names)
    as_row = normalize(p.reshape(1, -1), probabilities=True, class_names=names)
    assert prediction.rows == as_row.rows == 1
    assert class_labels(prediction.classes) == class_labels(as_row.classes)
    assert prediction.invalid == as_row.invalid


def test_a_1d_positive_class_array_with_missing_values_counts_each_row():
    p = np.array([0.9, None, 0.2, math.nan], dtype=object)
    prediction = normalize(p, probabilities=True, class_names=np.array([0, 1]))
    assert prediction.rows == 4
    assert class_labels(prediction.classes) == ["1", "0"]
    assert prediction.invalid == {"nan": 2}


def test_1d_text_where_a_positive_class_belongs_counts_each_row():
    prediction = normalize(np.array(["0.9", "0.1", "0.4"]), probabilities=True,
                           class_names=np.array([0, 1]))
    assert prediction.rows == 3
    assert prediction.invalid == {"unsupported_type": 3}


# --- a classifier fit on float labels: classes_ == [0.0, 1.0] -------------------------------

def test_float_classes_name_each_class_once_across_predict_and_predict_proba(scraper):
    clf, x = _fitted(np.array([0.0, 1.0] * 20))
    assert clf.classes_.dtype.kind == "f"
    model = inferwatch.instrument(clf, name="m", version="1", task="classification",
                                  registry=scraper.registry)
    model.predict_proba(x[:10])
    model.predict(x[:10])
    predicted = clf.predict(x[:10])
    ones = float((predicted == 1.0).sum())
    # predict_proba's columns read "0.0" / "1.0" while predict's labels read "0" / "1": one
    # class was counted under two names, each holding half its count.
    assert _class_counts(scraper) == {"0": 2 * (10 - ones), "1": 2 * ones}
    outputs = {s.labels["output"] for s in scraper.samples()
               if s.name == "inferwatch_prediction_count"}
    assert outputs == {"0", "1"}


def test_float_classes_join_outcomes_of_either_method(scraper):
    clf, x = _fitted(np.array([0.0, 1.0] * 20))
    model = inferwatch.instrument(clf, name="m", version="1", task="classification",
                                  registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    truth = clf.predict(x[:6])
    model.predict_proba(x[:6], request_id="proba")
    model.predict(x[:6], request_id="labels")
    mon.record_outcome("proba", truth)
    mon.record_outcome("labels", [int(t) for t in truth])
    assert scraper.total("inferwatch_outcomes_total", result="correct") == 12
    assert scraper.total("inferwatch_outcomes_total", result="incorrect") == 0


_WHOLE_FLOAT_CLASSES = st.lists(st.integers(-5, 70_000), min_size=2, max_size=5,
                                unique=True).map(lambda c: np.array(sorted(c), dtype=float))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(_WHOLE_FLOAT_CLASSES, st.data())
def test_float_classes_read_the_same_from_probabilities_and_labels(classes, data):
    rows = data.draw(st.lists(st.integers(0, classes.size - 1), min_size=1, max_size=20))
    proba = np.full((len(rows), classes.size), 0.1 / (classes.size - 1))
    proba[np.arange(len(rows)), rows] = 0.9
    from_proba = normalize(proba, probabilities=True, class_names=classes)
    from_labels = normalize(classes[rows], task="classification", class_names=classes)
    # A label past the small-integer bound is no class of predict's: compare the others.
    small = [classes[k] for k in rows if abs(classes[k]) < prediction_classes.SMALL_INTEGER_LIMIT]
    labelled = [] if from_labels.classes is None else class_labels(from_labels.classes)
    assert labelled == [str(int(c)) for c in small]
    assert class_labels(from_proba.classes) == [str(int(classes[k])) for k in rows]


def test_non_whole_float_classes_keep_their_text():
    prediction = normalize(np.array([[0.2, 0.8], [0.7, 0.3]]), probabilities=True,
                           class_names=np.array([0.5, 2.0]))
    assert class_labels(prediction.classes) == ["2", "0.5"]
    assert sorted(prediction.values) == ["0.5", "2"]


# --- pandas categorical labels --------------------------------------------------------------

def test_a_categorical_column_of_many_categories_reads_at_most_what_may_be_classes():
    """Only the first 1,001 categories are read (one past the cap tells ids from classes):
    ``list()`` of every category cost a Python object per category on every drain."""

    class Categories:
        def __init__(self, n: int) -> None:
            self.n, self.read = n, 0

        def __iter__(self):
            for i in range(self.n):
                self.read += 1
                yield f"c{i}"

    categories = Categories(1_000_000)
    column = type("Column", (), {"dtype": type("Dtype", (), {"categories": categories})()})()
    known = prediction_classes.with_categories(column, frozenset({"x"}))
    assert known == frozenset({"x"})  # past the cap: ids, not classes
    assert categories.read <= prediction_classes.MAX_DECLARED_CATEGORIES + 1


def test_a_large_categorical_makes_one_object_per_category_not_per_row():
    """pandas turns a column of text categories into a new string per row (a million
    Python objects for a million rows); a numpy str array's labels make one per distinct
    label, and so do a categorical's."""
    rng = np.random.default_rng(3)
    names = np.array(["bird", "cat", "dog", "fish"])
    labels = names[rng.integers(0, 4, 200_000)]
    for column in (pd.Series(labels, dtype="category"), pd.Categorical(labels)):
        prediction = normalize(column)
        assert prediction.rows == labels.size
        assert prediction.invalid == {}
        assert class_labels(prediction.classes) == labels.tolist()
        assert len({id(label) for label in prediction.classes.tolist()}) <= names.size


_LABEL = st.one_of(st.sampled_from(["a", "b", "c\x00", "é", ""]), st.none())


@settings(max_examples=120, deadline=None)
@given(st.lists(_LABEL, max_size=40), st.lists(st.sampled_from(["z", "y"]), max_size=2,
                                               unique=True), st.booleans())
def test_categorical_labels_read_as_the_same_labels_in_a_column_of_objects(labels, unused,
                                                                          as_series):
    categories = sorted({label for label in labels if label is not None} | set(unused))
    categorical = pd.Categorical(labels, categories=categories)
    column = pd.Series(categorical) if as_series else categorical
    prediction = normalize(column)
    plain = normalize(np.array(labels, dtype=object).reshape(-1), known_classes=categories)
    assert prediction.rows == len(labels)
    assert _labels(prediction) == [label for label in labels if label is not None]
    assert _labels(prediction) == _labels(plain)
    assert prediction.invalid == plain.invalid


def test_integer_categories_stay_integer_labels():
    column = pd.Series([3, 1, None, 3], dtype="category")
    prediction = normalize(column)
    assert prediction.classes.dtype.kind == "i"
    assert class_labels(prediction.classes) == ["3", "1", "3"]
    assert prediction.rows == 4 and prediction.invalid == {"nan": 1}


def test_a_categorical_in_a_dict_of_outputs_is_read_by_its_categories(scraper):
    labels = pd.Categorical(["spam", "ham", None, "spam"])
    model = inferwatch.instrument(lambda x: {"label": labels, "score": [0.9, 0.1, 0.5, 0.8]},
                                  name="m", version="1", registry=scraper.registry)
    model(0)
    assert _class_counts(scraper) == {"spam": 2, "ham": 1}
    assert scraper.value("inferwatch_invalid_predictions_total", reason="nan") == 1


# --- text labels in an array of Python objects -------------------------------------------------

def _reference_admit(values: list, known: frozenset[str], prefix: str) -> tuple[list, dict]:
    """The row-by-row reading of an object column's labels: a missing value counted as
    nan, a declared class (even one named "nan", as a numpy str array's is) kept."""
    kept, invalid = [], {}
    for value in values:
        missing = value is None or value is pd.NA or value is pd.NaT or (
            isinstance(value, float) and value != value)
        label = None if missing else prediction_classes._object_class(value, known)
        reason = "nan" if missing else "unsupported_type" if label is None else None
        if reason:
            invalid[reason] = invalid.get(reason, 0) + 1
        else:
            kept.append(prefix + label)
    return kept, invalid


_OBJECT_LABEL = st.one_of(
    st.sampled_from(["a", "b", "x@y.z", "nan", ""]), st.none(), st.just(math.nan),
    st.just(pd.NA), st.just(pd.NaT), st.just(np.str_("a")), st.integers(-3, 70_000),
    st.booleans(), st.floats(allow_nan=False), st.just(b"a"), st.just(["a"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_OBJECT_LABEL, max_size=40), st.sampled_from(["", "1:"]))
def test_object_labels_are_admitted_as_row_by_row(values, prefix):
    known = frozenset({"a", "b", "nan"})
    array = np.empty(len(values), dtype=object)
    array[:] = values
    prediction = Prediction()
    admitted = admit_classes(prediction, array, known, prefix)
    kept, invalid = _reference_admit(values, known, prefix)
    assert class_labels(admitted) == kept
    assert prediction.invalid == invalid


def test_text_labels_in_an_object_array_are_judged_once_per_distinct_label(monkeypatch):
    """A million text labels in an object array (a pandas ``str`` column, JSON labels) were
    judged by one Python call per row, 3-4x the cost of the same labels as a numpy str
    array; a str array's labels are judged once per distinct label."""
    calls = []
    judge = prediction_classes._object_class
    monkeypatch.setattr(prediction_classes, "_object_class",
                        lambda value, known: calls.append(value) or judge(value, known))
    rng = np.random.default_rng(5)
    names = np.array(["bird", "cat", "dog"], dtype=object)
    labels = names[rng.integers(0, 3, 100_000)]
    labels[::1000] = None
    prediction = normalize(labels, known_classes=frozenset({"cat", "dog"}))
    assert len(calls) <= 4
    kept = [label for label in labels.tolist() if label in ("cat", "dog")]
    assert class_labels(prediction.classes) == kept
    birds = int((labels == "bird").sum())
    assert prediction.invalid == {"nan": 100, "unsupported_type": birds}
    assert prediction.rows == labels.size
