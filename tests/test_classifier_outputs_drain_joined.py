"""An ONNX classifier exported by skl2onnx answers each ``session.run`` with ``[labels,
probabilities]``: a probability matrix, or by default a ``ZipMap`` (a dict of class
probabilities per row). Read one call at a time each cost 30 to 45 us of drain; a drain
now joins such calls and reads them once. What it records, and what each id's outcome
joins, must be what reading each call alone gives: one call's odd row (not probabilities),
a label no class may be, other classes or another key order among the calls each send
the drain back to reading call by call."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core.prediction_batch import PredictionBatch
from test_label_matrices_drain_stacked import _Classifier
from test_outcomes_array_rows import judged_after_drain
from test_probability_rows_judged_per_call import _assert_same_figures
from test_whole_class_columns_judged_per_call import _figures

_LABELS = {
    "int64": st.sampled_from([0, 1, 2, 75001]),
    "<U3": st.sampled_from(["cat", "dog", "owl"]),
    "object": st.sampled_from(["cat", "dog", "cat", 1, 2.0, None]),
    "bool": st.booleans(),
}


def _not_joined(self, results, split=False):
    return None


@st.composite
def _row(draw, width: int) -> list[float]:
    """Mostly probabilities; now and then a row of other numbers or with a NaN."""
    kind = draw(st.sampled_from(["probabilities"] * 6 + ["values", "nan"]))
    if kind == "values":
        return [draw(st.floats(0, 3)) for _ in range(width)]
    weights = [draw(st.floats(0.01, 1)) for _ in range(width)]
    row = [weight / sum(weights) for weight in weights]
    if kind == "nan":
        row[0] = float("nan")
    return row


@st.composite
def _calls(draw) -> tuple[list, object]:
    """Calls of ``[labels, matrix or ZipMap]`` of one width, one or two rows each; and the
    model's classes."""
    kind = draw(st.sampled_from(sorted(_LABELS)))
    width = draw(st.integers(2, 3))
    zipmap = draw(st.booleans())
    keys = draw(st.sampled_from([list(range(width)), ["cat", "dog", "owl"][:width]]))
    container = draw(st.sampled_from([list, tuple]))
    outputs = []
    for _ in range(draw(st.integers(1, 4))):
        rows = draw(st.integers(1, 2))
        labels = np.array([draw(_LABELS[kind]) for _ in range(rows)], dtype=kind)
        matrix = [draw(_row(width)) for _ in range(rows)]
        if zipmap:
            order = keys if draw(st.integers(0, 9)) else keys[::-1]  # another key order
            part = [{key: row[keys.index(key)] for key in order} for row in matrix]
        else:
            part = np.array(matrix, dtype=draw(st.sampled_from([np.float32, np.float64])))
        outputs.append(container([labels, part]))
    classes = draw(st.sampled_from([None, ["cat", "dog"], [0, 1], [0, 1, 2]]))
    return outputs, classes


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_calls(), st.lists(st.integers(0, 3), min_size=2, max_size=10),
       st.sampled_from(["auto", "classification", "regression"]), st.booleans())
@example(([[np.array([1]), np.array([[0.3, 0.7]])], [np.array([0]), np.array([[0.9, 0.1]])]],
          None), [0, 1, 1], "auto", False)
@example(([[np.array(["cat"]), np.array([[0.3, 0.7]])],
           [np.array(["owl"]), np.array([[0.9, 0.1]])],
           [np.array(["dog"]), np.array([[0.5, 0.5]])]], None), [0, 1, 2], "auto", True)
@example(([[np.array(["dog"]), [{"cat": 0.3, "dog": 0.7}]],
           [np.array(["dog"]), [{"dog": 0.5, "cat": 0.5}]]], None), [0, 1], "auto", False)
@example(([[np.array(["cat"], dtype=object), [{"cat": 0.3, "dog": 0.7}]],
           [np.array([0.5, 1], dtype=object), [{"cat": 0.6, "dog": 0.4}] * 2]], None),
         [0, 1], "auto", False)  # a call of numbers only: values, as read alone
@example(([[np.array([2.0], dtype=object), np.array([[0.3, 0.7]])],
           [np.array([None], dtype=object), np.array([[0.9, 0.1]])]], None), [0, 1], "auto",
         False)
def test_classifier_outputs_record_what_each_call_read_alone_records(calls, order, task,
                                                                     request_ids):
    outputs, classes = calls
    order = [i % len(outputs) for i in order]
    together = _figures(outputs, order, classes, request_ids, task)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PredictionBatch, "_add_classifier_outputs", _not_joined)
        alone = _figures(outputs, order, classes, request_ids, task)
    _assert_same_figures(together, alone)


def _first_label(result) -> object:
    first = result[0][0]
    return first.item() if isinstance(first, np.generic) else first


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_calls(), st.lists(st.integers(0, 3), min_size=2, max_size=10),
       st.sampled_from(["auto", "classification"]))
def test_classifier_outputs_under_request_ids_join_as_each_call_read_alone(
        monkeypatch, calls, order, task):
    outputs, classes = calls
    made = [(outputs[i % len(outputs)], f"r-{n}") for n, i in enumerate(order)]
    as_the_general_path(
        monkeypatch, PredictionBatch, "_add_classifier_outputs",
        lambda: judged_after_drain(made, _Classifier(classes), task, 2**20, _first_label),
        _not_joined)


def test_classifier_outputs_are_joined_on_both_paths(monkeypatch):
    """The joined read is the one such drains take (a test of a path never taken would
    prove nothing), on the plain path and under request ids; one call's row that is no
    probability row sends its drain back to reading call by call."""
    joined = watched(monkeypatch, PredictionBatch, "_add_classifier_outputs",
                     lambda found: found is not None)
    matrix = [[np.array([1]), np.array([[0.3, 0.7]])], [np.array([0]), np.array([[0.9, 0.1]])]]
    zipmap = [[np.array(["dog"]), [{"cat": 0.3, "dog": 0.7}]],
              [np.array(["cat"]), [{"cat": 0.6, "dog": 0.4}]]]
    for outputs in (matrix, zipmap):
        for request_ids in (False, True):
            figures = _figures(outputs, [0, 1, 1], None, request_ids, "auto")
            assert len(figures["classes"]) == 2
    assert joined == [True] * 4
    joined.clear()
    odd = [*matrix, [np.array([1]), np.array([[0.5, 0.7]])]]
    _figures(odd, [0, 1, 2], None, False, "auto")
    assert joined == [False]
