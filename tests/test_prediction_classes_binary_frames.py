"""Classifier outputs at scale: a binary classifier's positive-class column alone, class
labels of multi-output classifiers and text labels judged once per distinct class, and
frames that repeat a column name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.prediction_classes import admit_classes, class_labels
from inferwatch.core.predictions import Prediction, normalize


class _Binary:
    """A scikit-learn style binary classifier whose predict_proba returns the positive
    class's column alone (``[:, 1:]``), as old Keras wrappers and some SDKs do."""

    def __init__(self, classes: list) -> None:
        self.classes_ = np.array(classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.asarray(x, dtype=np.float64)[:, :1]
        return np.hstack([1.0 - p, p])[:, 1:]


# --- predict_proba of shape (n, 1) from a binary classifier --------------------------------

def test_a_positive_class_column_counts_both_classes_and_the_top_confidence(scraper):
    model = inferwatch.instrument(_Binary([0, 1]), name="churn", version="1",
                                  registry=scraper.registry)
    positive = np.array([0.9, 0.8, 0.3, 0.1, 0.95, 0.05, 0.6, 0.2, 0.99, 0.4])
    out = model.predict_proba(positive.reshape(-1, 1))
    assert out.shape == (10, 1)
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 5
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "0"}) == 5
    top = np.maximum(positive, 1.0 - positive)
    assert scraper.value("inferwatch_prediction_confidence_sum") == pytest.approx(top.sum())
    # Every row's top-class probability is at least 0.6: so is each quantile.
    for q in ("0.5", "0.9", "0.99"):
        value = scraper.value("inferwatch_prediction_confidence", quantile=q)
        assert value is not None and value >= 0.6 - 0.002
    assert scraper.value("inferwatch_prediction_confidence", quantile="0.5") == \
        pytest.approx(float(np.quantile(top, 0.5, method="lower")), abs=0.002)
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


def test_a_positive_class_column_is_named_by_the_models_classes(scraper):
    model = inferwatch.instrument(_Binary(["ham", "spam"]), name="mail", version="1",
                                  registry=scraper.registry)
    model.predict_proba(np.array([[0.9], [0.2], [0.7]]))
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "spam"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "ham"}) == 1
    assert scraper.value("inferwatch_prediction_sum", output="spam") == pytest.approx(1.8)
    assert scraper.value("inferwatch_prediction_sum", output="ham") == pytest.approx(1.2)
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40))
def test_a_positive_class_column_reads_as_the_two_column_matrix(positive):
    p = np.array(positive).reshape(-1, 1)
    one = normalize(p, probabilities=True, class_names=np.array([0, 1]))
    two = normalize(np.hstack([1.0 - p, p]), probabilities=True, class_names=np.array([0, 1]))
    assert one.rows == two.rows == len(positive)
    assert class_labels(one.classes) == class_labels(two.classes)
    assert one.confidence.tolist() == two.confidence.tolist()
    assert one.invalid == two.invalid == {}


def test_a_single_column_without_two_known_classes_keeps_its_reading():
    p = np.array([[0.9], [0.2]])
    for names in (None, np.array([0, 1, 2]), np.array([7])):
        prediction = normalize(p, probabilities=True, class_names=names)
        assert class_labels(prediction.classes) == (["7", "7"] if names is not None and
                                                    len(names) == 1 else ["0", "0"])
        assert prediction.confidence.tolist() == [0.9, 0.2]


def test_an_out_of_range_positive_column_is_counted_once_per_row():
    p = np.array([[1.5], [0.5], [np.nan]])
    prediction = normalize(p, probabilities=True, class_names=np.array([0, 1]))
    assert prediction.rows == 3
    assert prediction.invalid == {"probability_out_of_range": 1, "nan": 1}


# --- labels judged once per distinct class, not once per row -----------------------------

def _reference_admit(labels: np.ndarray, known: frozenset[str]) -> tuple[list[str], int]:
    """The per-row reading: each label's text, kept when it is a known class."""
    text = labels.tolist()
    if labels.dtype.kind == "S":
        text = [raw.decode("utf-8", "replace") for raw in text]
    kept = [label for label in text if label in known]
    return kept, len(text) - len(kept)


_TEXT = st.text(alphabet=st.sampled_from("abc\x00é"), max_size=3)


@settings(max_examples=120, deadline=None)
@given(st.lists(_TEXT, max_size=60), st.frozensets(_TEXT, max_size=5), st.booleans())
def test_text_labels_are_admitted_as_row_by_row(labels, known, as_bytes):
    array = np.array(labels, dtype=str) if labels else np.array([], dtype="U1")
    if as_bytes:
        array = np.char.encode(array, "utf-8") if array.size else np.array([], dtype="S1")
    prediction = Prediction()
    admitted = admit_classes(prediction, array, known)
    kept, dropped = _reference_admit(array, known)
    assert admitted.dtype == object
    assert admitted.tolist() == kept
    assert all(type(label) is str for label in admitted.tolist())
    assert prediction.invalid == ({"unsupported_type": dropped} if dropped else {})


def _reference_multi_output(array: np.ndarray, known: frozenset[str]) -> tuple[list, dict]:
    """Classes of a multi-output classifier's predict, column by column, row by row."""
    classes, invalid = [], 0
    for j in range(array.shape[1]):
        for value in array[:, j].tolist():
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            large = isinstance(value, int) and not isinstance(value, bool) and \
                abs(value) >= 65_536
            if large or (isinstance(value, str) and value not in known):
                invalid += 1
            else:
                classes.append(f"{j}:{value}")
    return classes, ({"unsupported_type": invalid} if invalid else {})


_COLUMNS = st.integers(2, 4)


def _labels(prediction: Prediction) -> list[str]:
    return [] if prediction.classes is None else class_labels(prediction.classes)


@settings(max_examples=100, deadline=None)
@given(_COLUMNS.flatmap(lambda k: st.tuples(
    st.lists(st.lists(st.sampled_from(["yes", "no", "x@y.z", "maybe"]), min_size=k,
                      max_size=k), min_size=1, max_size=30),
    st.just(k))), st.booleans())
def test_multi_output_text_labels_are_prefixed_as_row_by_row(rows_k, as_bytes):
    rows, _ = rows_k
    array = np.array(rows)
    if as_bytes:
        array = np.char.encode(array, "utf-8")
    known = frozenset({"yes", "no", "maybe"})
    prediction = normalize(array, known_classes=known)
    classes, invalid = _reference_multi_output(array, known)
    assert prediction.rows == len(rows)
    assert _labels(prediction) == classes
    assert prediction.invalid == invalid


@settings(max_examples=100, deadline=None)
@given(_COLUMNS.flatmap(lambda k: st.lists(st.lists(
    st.one_of(st.integers(-70_000, 70_000), st.integers(0, 3)), min_size=k, max_size=k),
    min_size=1, max_size=30)), st.booleans())
def test_multi_output_integer_and_bool_labels_are_prefixed_as_row_by_row(rows, as_bool):
    array = np.array(rows, dtype=np.int64)
    if as_bool:
        array = array % 2 == 1
    prediction = normalize(array)
    classes, invalid = _reference_multi_output(array, frozenset())
    assert prediction.rows == len(rows)
    assert _labels(prediction) == classes
    assert prediction.invalid == invalid


def test_a_multi_output_classifiers_labels_reach_the_metrics(scraper):
    class MultiOutput:
        classes_ = [np.array(["no", "yes"]), np.array(["cat", "dog"])]

        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.array([["yes", "cat"], ["no", "dog"], ["yes", "dog"]])

    model = inferwatch.instrument(MultiOutput(), name="multi", version="1",
                                  registry=scraper.registry)
    model.predict(np.zeros((3, 2)))
    counts = {labels["class"]: scraper.value("inferwatch_predicted_class_total", **labels)
              for labels in scraper.series("inferwatch_predicted_class_total")}
    assert counts == {"0:yes": 2, "0:no": 1, "1:cat": 1, "1:dog": 2}


# --- frames that repeat a column name ----------------------------------------------------

def test_a_dataframes_repeated_column_names_stay_apart(scraper):
    frame = pd.DataFrame([[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]], columns=["a", "a", "b"])

    class Model:
        def predict(self, x: object) -> pd.DataFrame:
            return frame

    model = inferwatch.instrument(Model(), name="dup", version="1",
                                  registry=scraper.registry)
    model.predict(np.zeros((2, 1)))
    assert scraper.value("inferwatch_prediction_count", output="a") == 2
    assert scraper.value("inferwatch_prediction_sum", output="a") == pytest.approx(3.0)
    assert scraper.value("inferwatch_prediction_sum", output="a.1") == pytest.approx(30.0)
    assert scraper.value("inferwatch_prediction_sum", output="b") == pytest.approx(300.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "a.1", "1"]), min_size=1, max_size=6),
       st.integers(1, 5))
def test_every_column_of_a_frame_is_its_own_output(names, rows):
    data = np.arange(rows * len(names), dtype=np.float64).reshape(rows, len(names))
    prediction = normalize(pd.DataFrame(data, columns=names))
    assert prediction.rows == rows
    assert len(prediction.values) == len(names)
    assert sorted(v for column in prediction.values.values() for v in column.tolist()) == \
        sorted(data.reshape(-1).tolist())
    first = {}
    for j, name in enumerate(names):
        first.setdefault(name, j)
    for name, j in first.items():  # a name's first column keeps the name
        assert prediction.values[name].tolist() == data[:, j].tolist()


def test_keys_that_write_the_same_stay_apart():
    prediction = normalize({1: [0.5, 0.25], "1": [3.0, 4.0]})
    assert prediction.values["1"].tolist() == [0.5, 0.25]
    assert prediction.values["1.1"].tolist() == [3.0, 4.0]


def test_a_probability_frame_repeating_a_class_name_keeps_both_columns():
    frame = pd.DataFrame([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], columns=["x", "x", "y"])
    prediction = normalize(frame, probabilities=True)
    assert prediction.values["x"].tolist() == [0.2, 0.6]
    assert prediction.values["x.1"].tolist() == [0.3, 0.3]
    assert class_labels(prediction.classes) == ["y", "x"]
    assert prediction.invalid == {}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-65_535, 65_535), max_size=300),
       st.lists(st.booleans(), max_size=300))
def test_integer_and_bool_labels_read_as_text_as_row_by_row(ints, bools):
    prediction = Prediction()
    prediction.add_classes(np.array(ints, dtype=np.int64))
    prediction.add_classes(np.array(bools, dtype=bool))
    assert class_labels(prediction.classes) == [str(v) for v in ints] + [str(v) for v in bools]
    assert class_labels(np.array(ints, dtype=np.int64)) == [str(v) for v in ints]


def test_rows_near_the_float_maximum_are_values_without_an_overflow_warning():
    import warnings
    huge = np.array([[9.4e307, 5.1e307, 9.7e307]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prediction = normalize(huge, probabilities=None)
    assert prediction.confidence is None and not prediction.probability_outputs
    assert not prediction.invalid
