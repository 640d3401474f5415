"""A multi-output or multi-label classifier's ``predict`` returns a matrix of labels per
call: integers (``MultiOutputClassifier``), a 0/1 indicator per label (one-vs-rest), bools
or text. Read one call at a time such calls cost 35 to 60 us of drain each, against
0.3 us for a float matrix. Each value is judged a class on its own, so a drain reads them
as one stacked matrix; what it records must be what reading each call alone records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.prediction_classes import SMALL_INTEGER_LIMIT
from inferwatch.core.predictions import MAX_LABEL_COLUMNS
from test_outcomes_array_rows import judged_after_drain
from test_probability_rows_judged_per_call import _assert_same_figures
from test_whole_class_columns_judged_per_call import _figures

_LABELS = {
    "int64": st.sampled_from([0, 1, 2, -1, SMALL_INTEGER_LIMIT + 7, 75001]),
    "uint8": st.integers(0, 3),
    "bool": st.booleans(),
    "<U6": st.sampled_from(["cat", "dog", "x@y.z", "", "chat"]),
    "|S5": st.sampled_from([b"cat", b"dog", b"r-\xff", b""]),
    # Text as Python objects, now and then a number or None among it (call by call then).
    "object": st.sampled_from(["cat", "dog", "chat", "x@y.z", "cat", 1, 0.5, 2.0, None, True]),
}


def _alone(self, results, *args, **kwargs):
    for result in results:
        self.add_one(result, False)


def _stack_alone(self, stacked, shape, calls, probabilities):
    rows = stacked.reshape((calls, *shape))
    _alone(self, [rows[i, ...] for i in range(calls)])  # arrays, 0-d ones too


@st.composite
def _drains(draw) -> tuple[list[np.ndarray], object]:
    """Calls of one width, of one label dtype (now and then one of another), zero to three
    rows each (one row count for all, or each its own); and the model's classes."""
    width = draw(st.sampled_from([1, 2, 3, MAX_LABEL_COLUMNS + 1]))
    dtype = draw(st.sampled_from(sorted(_LABELS)))
    same_rows = draw(st.booleans())
    rows = draw(st.integers(1, 3))
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        own = dtype if draw(st.integers(0, 6)) else draw(st.sampled_from(sorted(_LABELS)))
        count = rows if same_rows else draw(st.integers(0, 3))
        cells = [[draw(_LABELS[own]) for _ in range(width)] for _ in range(count)]
        outputs.append(np.array(cells, dtype=own).reshape(count, width))
    classes = draw(st.sampled_from([None, [0, 1, 2, 75001], ["cat", "dog", "chat"]]))
    return outputs, classes


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]), st.booleans(),
       st.sampled_from([None, 2, 5]))
@example(([np.array([[0, 1, 1]]), np.array([[1, 0, 75001]])], None), [0, 1, 1], "auto", False,
         None)
@example(([np.array([["cat", "x@y.z"]]), np.array([["dog", "dog"], ["cat", "chat"]])],
          ["cat", "dog", "chat"]), [0, 1], "auto", False, None)
@example(([np.array([[0, 1]]), np.array([[2, 2]])], None), [0, 1], "auto", False, 2)
@example(([np.array([[2.0], [0.5]], dtype=object), np.array([[None], [1]], dtype=object)],
          None), [0, 1], "auto", False, None)
def test_label_matrices_record_what_each_call_read_alone_records(drain, order, task,
                                                                  request_ids, max_classes):
    """With a class cap of a few classes too: which classes keep series of their own is
    which came first, call after call."""
    outputs, classes = drain
    order = [i % len(outputs) for i in order]
    options = {} if max_classes is None else {"max_classes": max_classes}
    together = _figures(outputs, order, classes, request_ids, task, **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PredictionBatch, "_add_uniform_arrays", lambda self, r, p: False)
        patch.setattr(PredictionBatch, "_add_arrays", _alone)
        patch.setattr(PredictionBatch, "add_stacked", _stack_alone)
        alone = _figures(outputs, order, classes, request_ids, task, **options)
    _assert_same_figures(together, alone)


@pytest.mark.parametrize("rows", [[1, 1, 1], [1, 2, 3]])
def test_label_matrices_are_read_as_one_stack(monkeypatch, rows):
    """The stacked read is the one such a drain takes (a test of a path never taken would
    prove nothing): one normalisation for the drain, not one a call, for integers and
    for text as Python objects."""
    normalized = watched(monkeypatch, PredictionBatch, "_normalized")
    outputs = [np.array([[0, 1, 1]] * count) for count in rows]
    figures = _figures(outputs, [0, 1, 2], None, False, "auto")
    assert len(normalized) == 1
    assert dict(figures["classes"]) == {("0:0",): sum(rows), ("1:1",): sum(rows),
                                        ("2:1",): sum(rows)}
    assert figures["sizes"][:2] == (3, sum(rows))
    normalized.clear()
    outputs = [np.array([["cat", "red"]] * count, dtype=object) for count in rows]
    figures = _figures(outputs, [0, 1, 2], ["cat", "red"], False, "auto")
    assert len(normalized) == 1
    assert dict(figures["classes"]) == {("0:cat",): sum(rows), ("1:red",): sum(rows)}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]))
def test_label_matrices_under_request_ids_join_as_each_call_read_alone(monkeypatch, drain,
                                                                       order, task):
    """Under ``request_id=`` too: the series, each id's entry and the outcomes judged (a
    call's labels lie in several outputs: it is joined by its own result)."""
    outputs, classes = drain
    calls = [(outputs[i % len(outputs)], f"r-{n}") for n, i in enumerate(order)]
    model = _Classifier(classes)
    as_the_general_path(
        monkeypatch, PredictionBatch, "_label_matrix_records",
        lambda: judged_after_drain(calls, model, task, 2**20, _first_label),
        lambda self, results: None)


class _Classifier:
    def __init__(self, classes):
        if classes is not None:
            self.classes_ = np.array(classes)

    def predict(self, x, request_id=None):
        return x


def _first_label(result) -> object:
    first = result.reshape(-1)[0] if result.size else "cat"
    return first.item() if isinstance(first, np.generic) else first


def test_label_matrices_under_request_ids_take_the_stack(monkeypatch):
    taken = watched(monkeypatch, PredictionBatch, "_label_matrix_records",
                    lambda found: found is not None)
    calls = [(np.array([[0, 1, 1]] * (n % 3 + 1)), f"r-{n}") for n in range(6)]
    _, entries = judged_after_drain(calls, _Classifier(None), "auto", 2**20, _first_label)
    assert taken == [True] and sorted(entries) == [f"r-{n}" for n in range(6)]


_SCALARS = {
    "float64": st.sampled_from([0.5, 1.0, 0.0, 2.0, float("nan"), float("inf"), -3.25]),
    "float32": st.sampled_from([0.5, 1.0, float("nan")]),
    "int64": st.sampled_from([0, 1, 2, -1, SMALL_INTEGER_LIMIT + 7, 75001]),
    "bool": st.booleans(),
    "<U3": st.sampled_from(["cat", "dog", "owl"]),
}


@st.composite
def _zero_dim_calls(draw) -> tuple[list[np.ndarray], object]:
    """0-d arrays of one dtype (now and then one of another); and the model's classes."""
    dtype = draw(st.sampled_from(sorted(_SCALARS)))
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        own = dtype if draw(st.integers(0, 6)) else draw(st.sampled_from(sorted(_SCALARS)))
        outputs.append(np.array(draw(_SCALARS[own]), dtype=own))
    classes = draw(st.sampled_from([None, [0, 1, 2, 75001], [0.0, 1.0], ["cat", "dog"]]))
    return outputs, classes


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_zero_dim_calls(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]))
@example(([np.array(1.0), np.array(0.5)], [0.0, 1.0]), [0, 1, 0], "auto")
def test_zero_dim_arrays_record_what_each_call_read_alone_records(drain, order, task):
    """A 0-d array (``x.squeeze()`` of one row) is one row: a drain of them reads as one
    1-D array of their values, each call its row; what is recorded is what each read alone
    records (a model of whole-number classes still judges each call's value alone)."""
    outputs, classes = drain
    order = [i % len(outputs) for i in order]
    together = _figures(outputs, order, classes, False, task)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PredictionBatch, "_add_uniform_arrays", lambda self, r, p: False)
        patch.setattr(PredictionBatch, "_add_arrays", _alone)
        patch.setattr(PredictionBatch, "add_stacked", _stack_alone)
        alone = _figures(outputs, order, classes, False, task)
    _assert_same_figures(together, alone)


def test_zero_dim_arrays_are_read_as_one_array(monkeypatch):
    normalized = watched(monkeypatch, PredictionBatch, "_normalized")
    figures = _figures([np.array(0.5), np.array(1.5)], [0, 1, 1], None, False, "auto")
    assert normalized == [] and figures["values"][("value",)][:2] == (3, 3.5)
