"""A ``predict_proba`` that returns a 1-D float array per call: a binary classifier's
positive-class probabilities, one a row (``torch.sigmoid(logits).squeeze()``, hand-written
classifiers, some SDKs), or one sample's row of class probabilities (``softmax`` of one
sample's logits). Read one call at a time such calls cost about 25 us of drain each; a
drain now reads them as one matrix, each call's rows as the call alone reads its array. A
binary classifier's ``[p0, p1]`` that sums to 1 is one row, two that do not are two rows:
a drain that holds both is read call by call. What is recorded, and what each id's outcome
joins, must be what reading each call alone gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from fold_checks import watched
from inferwatch.core import record_joins
from inferwatch.core.prediction_batch import PredictionBatch
from test_outcomes_array_rows import _assert_same_samples, _entries, _recorded


class _Classifier:
    def __init__(self, outputs, classes):
        self.outputs = outputs
        if classes is not None:
            self.classes_ = classes if isinstance(classes[0], np.ndarray) else \
                np.array(classes)

    def predict_proba(self, index, request_id=None):
        return self.outputs[index]


def _first_class(result) -> int:
    """An outcome for a call: its first probability's class, as a 0/1 label."""
    cells = np.ravel(result[0] if isinstance(result, (list, tuple)) else
                     np.asarray(result, dtype=np.float64))
    first = cells[0] if cells.size else 1.0  # a call of no rows: any label
    return int(first > 0.5) if first == first else 0


def _judged(outputs, order, classes, request_ids: bool) -> tuple[dict, dict]:
    """The series and each id's entry after one drain of these calls, each id then
    judged by :func:`_first_class`."""
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(_Classifier(outputs, classes), name="m", version="1",
                                      registry=scraper.registry)
        for call, index in enumerate(order):
            kwargs = {"request_id": f"r-{call}"} if request_ids else {}
            assert model.predict_proba(index, **kwargs) is outputs[index]
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor.drain()
        entries = _entries(monitor)
        if request_ids:
            for call, index in enumerate(order):
                monitor.record_outcome(f"r-{call}", _first_class(outputs[index]))
        return _recorded(scraper), entries
    finally:
        scraper.registry.close()


def _alone(outputs, order, classes, request_ids):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PredictionBatch, "_add_probability_vectors", lambda self, s, w, c: False)
        patch.setattr(PredictionBatch, "_probability_vector_records", lambda self, r: None)
        patch.setattr(PredictionBatch, "_add_output_matrices",
                      lambda self, results, split=False: None)
        patch.setattr(PredictionBatch, "_add_probability_frames",
                      lambda self, results, split=False: None)
        patch.setattr(record_joins, "_joined_top_classes", lambda records, read: None)
        return _judged(outputs, order, classes, request_ids)


_VALUE = st.sampled_from([0.1, 0.3, 0.7, 0.5, 0.9, 0.0, 1.0, 1.5, -0.2, float("nan")])


@st.composite
def _calls(draw) -> tuple[list[np.ndarray], object]:
    """1-D float arrays of one length (1 to 3), values mostly in [0, 1]; pairs summing to
    1 (one binary row) or not; and the model's classes."""
    width = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        if width == 2 and draw(st.booleans()):
            p = draw(st.sampled_from([0.3, 0.5, 0.9]))
            values = [1.0 - p, p]  # [p0, p1]: one row of a binary classifier
        else:
            values = [draw(_VALUE) for _ in range(width)]
        outputs.append(np.array(values, dtype=dtype))
    classes = draw(st.sampled_from([None, [0, 1], ["legit", "fraud"], [0, 1, 2],
                                    [np.array([0, 1]), np.array([0, 1])]]))
    return outputs, classes


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_calls(), st.lists(st.integers(0, 4), min_size=2, max_size=12), st.booleans())
@example(([np.array([0.3, 0.7]), np.array([0.3, 0.9])], [0, 1]), [0, 1, 1], True)
@example(([np.array([0.2]), np.array([0.8])], ["legit", "fraud"]), [0, 1, 1], True)
@example(([np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.3, 0.1])], [0, 1, 2]), [0, 1], False)
@example(([np.array([0.2]), np.array([np.nan])], [0, 1]), [0, 1, 0], True)
def test_probability_vectors_record_what_each_call_read_alone_records(calls, order,
                                                                      request_ids):
    _assert_read_as_alone(*calls, order, request_ids)


def _assert_read_as_alone(outputs, classes, order, request_ids) -> None:
    """The series and each id's entry of a drain of these calls, read together where it
    may be, are those of the same calls read one by one."""
    order = [i % len(outputs) for i in order]
    together = _judged(outputs, order, classes, request_ids)
    alone = _alone(outputs, order, classes, request_ids)
    _assert_same_samples(together[0], alone[0])
    assert together[1] == alone[1]


def test_probability_vectors_are_read_as_one_matrix(monkeypatch):
    """The matrix read is the one such drains take (a test of a path never taken would
    prove nothing), on both paths; a binary row beside pairs that are two rows is not."""
    taken = watched(monkeypatch, PredictionBatch, "_add_probability_vectors")
    records = watched(monkeypatch, PredictionBatch, "_probability_vector_records",
                      lambda found: found is not None)
    positives = [np.array([0.2]), np.array([0.8])]
    series, _ = _judged(positives, [0, 1, 1], [0, 1], False)
    assert taken == [True]
    assert series[("inferwatch_predicted_class_total",
                   (("class", "1"), ("model", "m"), ("model_version", "1")))] == 2
    _judged(positives, [0, 1, 1], [0, 1], True)
    assert records == [True]
    taken.clear()
    _judged([np.array([0.3, 0.7]), np.array([0.3, 0.9])], [0, 1], [0, 1], False)
    assert taken == [False]


@st.composite
def _output_matrices(draw) -> tuple[list, object]:
    """A multi-output classifier's ``predict_proba``: a list (or tuple) of one to three
    probability matrices per call, one or two rows each, now and then a row that is no
    probability row or NaN; and the model's classes (a pair per output, or none)."""
    outputs = draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 3)) for _ in range(outputs)]
    container = draw(st.sampled_from([list, tuple]))
    calls = []
    for _ in range(draw(st.integers(1, 4))):
        rows = draw(st.integers(0, 2))
        own = widths if draw(st.integers(0, 7)) else [w % 3 + 1 for w in widths]
        calls.append(container([np.array([[draw(_VALUE) for _ in range(width)]
                                           for _ in range(rows)]).reshape(rows, width)
                                for width in own]))
    classes = draw(st.sampled_from([None, [np.array([0, 1])] * outputs, [0, 1]]))
    return calls, classes


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_output_matrices(), st.lists(st.integers(0, 3), min_size=2, max_size=10),
       st.booleans())
@example(([[np.array([[0.3, 0.7]]), np.array([[0.6, 0.4]])],
           [np.array([[np.nan, 0.5]]), np.array([[0.2, 0.8]])]],
          [np.array([0, 1]), np.array([0, 1])]), [0, 1, 0], True)
@example(([[np.array([[0.3, 0.7]])], [np.array([[np.nan, 0.5]])]], None), [0, 1, 0], True)
@example(([[np.array([[0.3, 0.7]]), np.array([[0.6, 0.4], [0.5, 0.5]])],
           [np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]])]], None), [0, 1], False)
@example(([[np.array([[0.3, 0.7]]), np.array([[0.6, 0.4], [0.5, 0.5]])],
           [np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]])]], None), [0, 1], True)
@example(([[np.array([[0.3, 0.7]]), np.array([[0.6, 0.4], [0.5, 0.5]])],
           [np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([[0.2, 0.8]])]], None), [0, 1],
         True)  # outputs of other rows in each call, the same rows in all together
@example(([[np.array([[0.3, 0.7]]), np.array([[0, 1]])],
           [np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]])]], None), [0, 1], True)
def test_output_matrices_record_what_each_call_read_alone_records(calls, order, request_ids):
    """``MultiOutputClassifier.predict_proba`` (about 39 us of drain a call read alone)."""
    _assert_read_as_alone(*calls, order, request_ids)


def test_output_matrices_are_read_as_one_per_output(monkeypatch):
    """On both paths; under ``request_id=`` each call's top classes per output, which its
    outcome joins by, are read off the joined matrices too."""
    taken = watched(monkeypatch, PredictionBatch, "_add_output_matrices",
                    lambda found: found is not None)
    tops = watched(monkeypatch, record_joins, "_joined_top_classes",
                   lambda found: found is not None)
    calls = [[np.array([[0.3, 0.7]]), np.array([[0.6, 0.4]])],
             [np.array([[0.1, 0.9]]), np.array([[0.2, 0.8]])]]
    for request_ids in (False, True):
        series, _ = _judged(calls, [0, 1, 1], [np.array([0, 1])] * 2, request_ids)
        assert series[("inferwatch_predicted_class_total",
                       (("class", "0:1"), ("model", "m"), ("model_version", "1")))] == 3
    assert taken == [True, True]
    assert tops == [True]


@st.composite
def _probability_frames(draw) -> tuple[list, object]:
    """``predict_proba`` answers as DataFrames of a float column per class (AutoGluon, H2O),
    one or two rows each, now and then a row that is no probability row or NaN, a frame of
    its columns in another order, a float32 column or a column of integers; and the
    model's classes."""
    import pandas as pd

    names = draw(st.sampled_from([["cat", "dog"], [0, 1], ["a", "b", "c"]]))
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        rows = draw(st.integers(1, 2))
        own = names if draw(st.integers(0, 9)) else names[::-1]
        frame = pd.DataFrame({name: [draw(_VALUE) for _ in range(rows)] for name in own})
        kind = draw(st.sampled_from(["float64"] * 8 + ["float32", "int64"]))
        if kind == "float32":
            frame = frame.astype({own[0]: "float32"})
        elif kind == "int64":  # a column of 0 and 1
            frame[own[0]] = [draw(st.integers(0, 1)) for _ in range(rows)]
        frames.append(frame)
    classes = draw(st.sampled_from([None, names]))
    return frames, classes


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_probability_frames(), st.lists(st.integers(0, 3), min_size=2, max_size=10),
       st.booleans())
def test_probability_frames_record_what_each_call_read_alone_records(calls, order,
                                                                     request_ids):
    """A ``predict_proba`` answering a DataFrame (about 26 us of drain a call read
    alone)."""
    _assert_read_as_alone(*calls, order, request_ids)


def test_probability_frames_are_read_as_one(monkeypatch):
    import pandas as pd

    taken = watched(monkeypatch, PredictionBatch, "_add_probability_frames",
                    lambda found: found is not None)
    frames = [pd.DataFrame({"cat": [0.3], "dog": [0.7]}),
              pd.DataFrame({"cat": [0.9], "dog": [0.1]})]
    for request_ids in (False, True):
        series, _ = _judged(frames, [0, 1, 1], ["cat", "dog"], request_ids)
        assert series[("inferwatch_predicted_class_total",
                       (("class", "cat"), ("model", "m"), ("model_version", "1")))] == 2
    assert taken == [True, True]
