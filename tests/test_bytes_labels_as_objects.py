"""Text labels held as Python bytes: a TensorFlow string tensor's ``numpy()`` (a Keras
``StringLookup(invert=True)`` head, a SavedModel's class names) is an array of bytes
objects, and a scalar string tensor's is one bytes value. A numpy bytes array's labels were
read as their text, but bytes among Python objects were each counted
``unsupported_type``. They are now read as their text too, and a drain of bytes labels,
plain or under ``request_id=``, records what the same labels as text record."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inferwatch.core import prediction_batch
from inferwatch.core.prediction_classes import bytes_text
from test_label_matrices_drain_stacked import _Classifier
from test_outcomes_array_rows import _assert_same_samples, judged_after_drain
from test_probability_rows_judged_per_call import _assert_same_figures
from test_whole_class_columns_judged_per_call import _figures

_BYTES = st.sampled_from([b"cat", b"dog", b"r-\xff", b"x@y.z", b""])
_CLASSES = st.sampled_from([None, ["cat", "dog"], ["cat", "r-\\xff", "x@y.z"]])


def _as_text(value):
    """The same labels as text: a bytes scalar as a one-row array of its text (a str
    scalar is generated text, not a label), an array's bytes each as its text."""
    if isinstance(value, bytes):
        return np.array([bytes_text(value)], dtype=object)
    text = np.empty(value.shape, dtype=object)
    text.reshape(-1)[:] = [bytes_text(v) if isinstance(v, bytes) else v
                           for v in value.reshape(-1).tolist()]
    return text


@st.composite
def _results(draw) -> list:
    """Calls of bytes scalars, or of 1-D object arrays of bytes (None now and then
    among them, or a number), zero to three rows each."""
    if draw(st.booleans()):
        return [draw(_BYTES) for _ in range(draw(st.integers(1, 5)))]
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        cells = [draw(st.one_of(_BYTES, _BYTES, _BYTES, st.none(), st.just(1)))
                 for _ in range(draw(st.integers(0, 3)))]
        array = np.empty(len(cells), dtype=object)
        array[:] = cells
        outputs.append(array)
    return outputs


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_results(), st.lists(st.integers(0, 4), min_size=1, max_size=12), _CLASSES,
       st.sampled_from(["auto", "classification"]), st.booleans(), st.sampled_from([None, 2]))
@example([np.array([b"cat", None], dtype=object)], [0, 0], ["cat", "dog"], "auto", False,
         None)
@example([b"cat", b"dog", b"r-\xff"], [0, 1, 2, 0], ["cat", "r-\\xff"], "auto", False, 2)
def test_bytes_labels_record_what_the_same_labels_as_text_record(outputs, order, classes, task,
                                                                 request_ids, max_classes):
    order = [i % len(outputs) for i in order]
    options = {} if max_classes is None else {"max_classes": max_classes}
    as_bytes = _figures(outputs, order, classes, request_ids, task, **options)
    as_text = _figures([_as_text(o) for o in outputs], order, classes, request_ids, task,
                       **options)
    _assert_same_figures(as_bytes, as_text)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_results(), st.lists(st.integers(0, 4), min_size=1, max_size=12), _CLASSES)
def test_bytes_labels_join_their_outcomes_as_the_same_text_does(outputs, order, classes):
    """Under ``request_id=``: each id's entry and the outcomes judged (an outcome given as
    the label's text)."""
    def truth(result):
        first = result if isinstance(result, (bytes, str)) else \
            (result.tolist() or ["cat"])[0]
        return bytes_text(first) if isinstance(first, bytes) else first

    calls = [(outputs[i % len(outputs)], f"r-{n}") for n, i in enumerate(order)]
    as_text = [(_as_text(result), request_id) for result, request_id in calls]
    model = _Classifier(classes)
    by_bytes = judged_after_drain(calls, model, "auto", 2**20, truth)
    by_text = judged_after_drain(as_text, model, "auto", 2**20, truth)
    _assert_same_samples(by_bytes[0], by_text[0])
    assert by_bytes[1] == by_text[1]


def test_bytes_scalars_are_read_as_one_batch(monkeypatch):
    """A drain of bytes scalars is counted at once, as one of text scalars is (a test of a
    path never taken would prove nothing): no call read alone."""
    read_alone = []
    add_one = prediction_batch.PredictionBatch.add_one

    def watching(self, result, probabilities):
        read_alone.append(result)
        return add_one(self, result, probabilities)

    monkeypatch.setattr(prediction_batch.PredictionBatch, "add_one", watching)
    figures = _figures([b"cat", b"dog"], [0, 1, 0], ["cat", "dog"], False, "auto")
    assert read_alone == []
    assert dict(figures["classes"]) == {("cat",): 2, ("dog",): 1}


@pytest.mark.parametrize("labels", [[b"cat", b"dog", b"cat"], [b"cat", None, b"nope"]])
def test_an_object_array_of_bytes_counts_its_classes_by_their_text(labels):
    """One call: its rows' classes by their text, a missing row ``nan``, an undeclared
    label ``unsupported_type``, as a numpy bytes array's would be."""
    result = np.empty(len(labels), dtype=object)
    result[:] = labels
    figures = _figures([result], [0], ["cat", "dog"], False, "auto")
    expected = {}
    for label in labels:
        if label in (b"cat", b"dog"):
            expected[(label.decode(),)] = expected.get((label.decode(),), 0) + 1
    assert dict(figures["classes"]) == expected
    invalid = {("nan",): labels.count(None)} if None in labels else {}
    if b"nope" in labels:
        invalid[("unsupported_type",)] = 1
    assert figures["invalid"] == invalid


def test_an_object_array_of_bytes_is_judged_per_distinct_label(monkeypatch):
    """A batch of bytes labels is judged once per distinct label, as one of text is (a
    TensorFlow batch of a million rows): never one Python call a row."""
    from inferwatch.core import prediction_classes

    def per_row(value, known_classes):
        raise AssertionError("a bytes label was judged row by row")

    monkeypatch.setattr(prediction_classes, "_object_class", per_row)
    result = np.empty(1000, dtype=object)
    result[:] = [b"cat", b"dog", None, b"nope"] * 250
    figures = _figures([result], [0], ["cat", "dog"], False, "auto")
    assert dict(figures["classes"]) == {("cat",): 250, ("dog",): 250}
    assert figures["invalid"] == {("nan",): 250, ("unsupported_type",): 250}
