"""An ONNX classifier exported without its ZipMap returns ``[labels, probabilities]``: its
integer labels past 65,536 (merchant ids, zip codes) are its classes when a call holds no
more distinct ones than the matrix has columns, as its text labels are, and no call adds
more than that; the class cap bounds the series as it bounds any."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

import inferwatch
from conftest import Scraper
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.predictions import normalize

CLASSES = np.array([70_000, 100_001, 250_000])


@pytest.fixture(scope="module")
def session_and_rows():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(600, 3)).astype(np.float32)
    labels = CLASSES[(rows[:, 0] > 0).astype(int) + (rows[:, 1] > 0.5)]
    classifier = LogisticRegression(max_iter=500).fit(rows, labels)
    onx = to_onnx(classifier, rows[:1], options={id(classifier): {"zipmap": False}})
    session = ort.InferenceSession(onx.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session, rows, classifier


def test_large_integer_labels_beside_a_matrix_are_classes(session_and_rows):
    """They counted invalid_predictions_total{reason="unsupported_type"}, every row."""
    session, rows, classifier = session_and_rows
    scraper = Scraper(drain_interval=3600)
    try:
        run = inferwatch.instrument(session.run, name="onnx", version="1",
                                    registry=scraper.registry)
        expected: dict[str, int] = {}
        for start in range(0, 60, 10):
            labels, probabilities = run(None, {"X": rows[start:start + 10]})
            assert probabilities.shape == (10, 3)
            for label in labels.tolist():
                expected[str(label)] = expected.get(str(label), 0) + 1
        assert set(expected) <= {str(c) for c in classifier.classes_}
        counted = {s["class"]: scraper.value("inferwatch_predicted_class_total",
                                             model="onnx", **{"class": s["class"]})
                   for s in scraper.series("inferwatch_predicted_class_total")}
        assert counted == expected
        assert scraper.total("inferwatch_invalid_predictions_total", model="onnx",
                             reason="unsupported_type") == 0
        assert scraper.value("inferwatch_prediction_confidence_count", model="onnx") == 60
    finally:
        scraper.registry.close()


def test_more_distinct_large_labels_than_columns_are_refused():
    """Four distinct ids beside two columns cannot all be classes of a two-class model."""
    prediction = normalize([np.array([100_001, 100_002, 100_003, 100_004]),
                            np.array([[0.5, 0.5]] * 4)])
    assert prediction.classes is None or prediction.classes.size == 0
    assert prediction.invalid == {"unsupported_type": 4}
    assert prediction.rows == 4


def test_the_class_cap_bounds_calls_of_new_large_labels():
    """Each call names k new ids, within its own bound: the cap still holds the series."""
    scraper = Scraper(drain_interval=3600)
    try:
        run = inferwatch.instrument(lambda feed: feed, name="ids", version="1",
                                    registry=scraper.registry, max_classes=5)
        for call in range(20):
            ids = np.array([100_000 + 2 * call, 100_001 + 2 * call])
            run([ids, np.array([[0.9, 0.1], [0.2, 0.8]])])
        series = {s["class"] for s in scraper.series("inferwatch_predicted_class_total")
                  if s["model"] == "ids"}
        assert len(series) <= 5 + 1  # the cap, and the one series the rest fold into
        assert scraper.total("inferwatch_predicted_class_total", model="ids") == 40
    finally:
        scraper.registry.close()


_LABELS = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=200)
@given(columns=st.integers(2, 5), labels=st.lists(_LABELS, min_size=1, max_size=12),
       unsigned=st.booleans())
def test_integer_labels_beside_a_matrix_are_classes_up_to_its_columns(columns, labels,
                                                                      unsigned):
    """Any integer labels: all are classes when no more distinct than the columns; else
    only those plausible on their own (|v| < 65,536), the rest unsupported_type."""
    dtype = np.uint64 if unsigned else np.int64
    array = np.array([abs(v) if unsigned else v for v in labels], dtype=dtype)
    matrix = np.full((len(array), columns), 1.0 / columns)
    prediction = normalize([array, matrix])
    admitted = class_labels(prediction.classes) if prediction.classes is not None else []
    if len(set(array.tolist())) <= columns:
        expected = [str(v) for v in array.tolist() if v <= np.iinfo(np.int64).max]
    else:
        expected = [str(v) for v in array.tolist() if abs(v) < 65_536]
    assert admitted == expected
    assert prediction.invalid.get("unsupported_type", 0) == len(array) - len(expected)
    assert prediction.rows == len(array)
