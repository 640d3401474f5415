"""An ONNX classifier's answer read whatever its export: text labels beside a probability
matrix (skl2onnx with ``zipmap=False``) are classes, as they are beside a ZipMap, within
the matrix's k classes; and an answer of 0 rows (``[labels (0,), []]``) is a batch of 0."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.predictions import normalize


def _classes(scraper) -> dict[str, float]:
    return {s.labels["class"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_predicted_class_total"}


def _invalid(scraper) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_invalid_predictions_total" and s.value}


def _counts(labels) -> dict[str, float]:
    values, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    return dict(zip(values.tolist(), map(float, counts.tolist())))


def _session(zipmap: bool, text_labels: bool):
    """A scikit-learn classifier exported by skl2onnx, and rows to ask it about."""
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    import onnxruntime
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    if text_labels:
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500).fit(x, y)
    onx = skl2onnx.convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 4]))],
                                   options={id(model): {"zipmap": zipmap}})
    session = onnxruntime.InferenceSession(onx.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session, x[::30][:5]


# --- text labels beside a probability matrix -------------------------------------------------


def test_an_onnx_classifier_of_text_labels_without_zipmap_counts_its_classes(scraper):
    """``[labels (n,) str, probabilities (n, k)]``: each label a class, nothing invalid, as
    the same model exported with its ZipMap records."""
    session, batch = _session(zipmap=False, text_labels=True)
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry)
    answers = [run(None, {"X": batch}) for _ in range(3)]
    labels = np.concatenate([answer[0] for answer in answers])
    assert answers[0][1].shape == (5, 3)
    assert _classes(scraper) == _counts(labels)
    assert _invalid(scraper) == {}
    assert scraper.value("inferwatch_batch_size_sum") == 15
    assert scraper.value("inferwatch_prediction_confidence_count") == 15


@st.composite
def _labels_beside_a_matrix(draw):
    """Text labels of n rows (numpy str, bytes or Python objects, as ONNX Runtime gives)
    beside an (n, k) probability matrix, the labels drawn from `distinct` texts."""
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, 14))
    distinct = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=9,
                             unique=True))
    texts = [distinct[j] for j in draw(st.lists(st.integers(0, len(distinct) - 1),
                                                min_size=n, max_size=n))]
    weights = np.array(draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k),
                                     min_size=n, max_size=n)))
    matrix = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    kind = draw(st.sampled_from(["object", "str", "bytes"]))
    if kind == "bytes":
        labels = np.array([text.encode() for text in texts], dtype=bytes)
        texts = [raw.decode() for raw in labels.tolist()]  # numpy drops trailing NULs
    else:
        labels = np.empty(n, dtype=object)
        labels[:] = texts
        if kind == "str":
            labels = labels.astype(str)
            texts = labels.tolist()  # numpy drops trailing NULs
    return texts, labels, matrix


@given(_labels_beside_a_matrix())
def test_text_labels_beside_a_matrix_are_classes_up_to_its_k_columns(answer):
    """At most k distinct labels beside k probability columns are the model's classes, as
    a ZipMap's keys would name them; more than k cannot all be classes of a k-class model,
    so none becomes a label (each row counted ``unsupported_type``)."""
    texts, labels, matrix = answer
    prediction = normalize([labels, matrix], task="auto")
    assert prediction.rows == len(texts)
    assert prediction.confidence == pytest.approx(matrix.max(axis=1), abs=1e-6)
    assert sorted(prediction.values) == [str(j) for j in range(matrix.shape[1])]
    if len(set(texts)) <= matrix.shape[1]:
        assert class_labels(prediction.classes) == texts
        assert prediction.invalid == {}
    else:
        assert prediction.classes is None or prediction.classes.size == 0
        assert prediction.invalid == {"unsupported_type": len(texts)}


def test_text_labels_beside_a_matrix_stay_within_the_class_cap(scraper):
    """Each call names at most k classes, but calls may name new ones: past
    ``max_classes`` they fold into the overflow series as any classes do."""
    words = [f"class-{j}" for j in range(12)]
    matrix = np.full((2, 2), 0.5, dtype=np.float32)

    def run(index: int) -> list:
        labels = np.empty(2, dtype=object)
        labels[:] = [words[index], words[index + 1]]
        return [labels, matrix]

    wrapped = inferwatch.instrument(run, name="words", version="1", max_classes=4,
                                    registry=scraper.registry)
    for index in range(0, len(words), 2):
        wrapped(index)
    classes = _classes(scraper)
    assert classes == {**{word: 1.0 for word in words[:4]}, "__other__": 8.0}
    assert _invalid(scraper) == {}


def test_labels_beside_scores_that_are_no_probabilities_stay_outputs():
    """Text beside scores of another scale is no classifier's answer: judged as before."""
    labels = np.array(["a", "b"], dtype=object)
    prediction = normalize([labels, np.array([[2.0, -1.0], [0.5, 3.0]])])
    assert prediction.invalid == {"unsupported_type": 2}
    assert prediction.confidence is None


# --- an answer of no rows ----------------------------------------------------------------------


@pytest.mark.parametrize("zipmap", [True, False])
@pytest.mark.parametrize("text_labels", [True, False])
def test_an_onnx_classifier_asked_about_no_rows_records_a_batch_of_none(scraper, zipmap,
                                                                       text_labels):
    session, batch = _session(zipmap=zipmap, text_labels=text_labels)
    run = inferwatch.instrument(session.run, name="iris", version="1",
                                registry=scraper.registry)
    labels, _ = run(None, {"X": batch[:0]})
    assert len(labels) == 0
    assert scraper.value("inferwatch_batch_size_count") == 1
    assert scraper.value("inferwatch_batch_size_sum") == 0
    assert _invalid(scraper) == {}
    assert _classes(scraper) == {}


@pytest.mark.parametrize("answer", [
    [np.empty(0), []],
    [np.empty(0, dtype=np.int64), []],
    (np.empty(0, dtype=object), []),
    [np.empty((0, 3)), [], []],
])
def test_outputs_of_no_rows_beside_empty_lists_are_no_rows(answer):
    prediction = normalize(answer)
    assert prediction.rows == 0
    assert prediction.invalid == {}


@pytest.mark.parametrize(("answer", "rows"), [([[]], 1), ([[], []], 2)])
def test_empty_lists_alone_stay_a_row_each(answer, rows):
    """A pipeline's answer of a list per input (a text with no entities) is a row per
    list, empty or not."""
    assert normalize(answer).rows == rows
