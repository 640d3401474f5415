"""A multi-label classifier fit on sparse targets (scikit-learn's ``OneVsRestClassifier``
on a sparse indicator matrix) answers ``predict`` with a scipy.sparse row per call. Read one
call at a time such calls cost about 50 us of drain each; a drain now reads the dense
arrays they stand for together, as it reads the same calls' numpy arrays. What it records,
and under ``request_id=`` what each call's outcome joins by, must be what reading each
call alone gives."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import watched
from inferwatch.core import outcome_rows, prediction_batch, record_arrays, result_arrays
from test_label_matrices_drain_stacked import _Classifier
from test_outcomes_array_rows import _assert_same_samples, judged_after_drain
from test_probability_rows_judged_per_call import _assert_same_figures
from test_whole_class_columns_judged_per_call import _figures

sp = pytest.importorskip("scipy.sparse")

_CELLS = {
    "int64": st.sampled_from([0, 1, 1, 2, 75001]),
    "bool": st.booleans(),
    "float64": st.sampled_from([0.0, 1.0, 0.5, 0.9, 2.0, float("nan"), float("inf")]),
}
_FORMATS = {"csr_matrix": sp.csr_matrix, "csr_array": sp.csr_array,
            "csc_matrix": sp.csc_matrix, "coo_matrix": sp.coo_matrix}


def _with_duplicates(dense: np.ndarray) -> object:
    """A CSR matrix of `dense` whose first stored cell is split into two entries at one
    place (non-canonical, as a hand-built matrix may be): densified, they are summed."""
    rows, columns = np.nonzero(dense)
    if not rows.size or dense.dtype.kind != "i":
        return sp.csr_matrix(dense)
    data = np.concatenate([[dense[rows[0], columns[0]] - 1, 1],
                           dense[rows[1:], columns[1:]]]).astype(dense.dtype)
    return sp.csr_matrix((data, (np.concatenate([[rows[0]], rows]),
                                 np.concatenate([[columns[0]], columns]))), shape=dense.shape)


@st.composite
def _drains(draw) -> tuple[list[object], object]:
    """Calls of one sparse class and width, of one dtype (now and then another, or a
    call past the dense bounds), zero to three rows each; and the model's classes."""
    width = draw(st.sampled_from([1, 2, 3, 5]))
    dtype = draw(st.sampled_from(sorted(_CELLS)))
    kind = draw(st.sampled_from(sorted(_FORMATS)))
    same_rows = draw(st.booleans())
    rows = draw(st.integers(1, 3))
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        own = dtype if draw(st.integers(0, 6)) else draw(st.sampled_from(sorted(_CELLS)))
        count = rows if same_rows else draw(st.integers(0, 3))
        cells = [[draw(_CELLS[own]) for _ in range(width)] for _ in range(count)]
        dense = np.array(cells, dtype=own).reshape(count, width)
        odd = draw(st.integers(0, 12))
        if odd == 0:  # past the columns a call may densify: refused as bad_shape
            outputs.append(sp.csr_matrix((count or 1, result_arrays.MAX_SPARSE_RESULT_COLUMNS
                                          + 1), dtype=own))
        elif odd == 1:
            outputs.append(_with_duplicates(dense))
        elif odd == 2:
            outputs.append(sp.csr_matrix(dense) if kind != "csr_matrix" else
                           sp.csc_matrix(dense))  # a class of its own among the drain's
        else:
            outputs.append(_FORMATS[kind](dense))
    classes = draw(st.sampled_from([None, [0, 1, 2], [False, True]]))
    return outputs, classes


def _none(results, finite=False):
    return None


@contextlib.contextmanager
def each_call_alone():
    """Every reader of a drain's sparse rows and ndarray subclasses together off: each
    call read alone, as before they were read together."""
    with pytest.MonkeyPatch.context() as patch:
        for module in (prediction_batch, outcome_rows, record_arrays):
            patch.setattr(module, "plain_result_arrays", _none)
        yield


def assert_recorded_as_alone(outputs, classes, order, task, request_ids, max_classes) -> None:
    """The series of one drain of these calls, read together where it may be, are those
    of the same calls read one by one."""
    order = [i % len(outputs) for i in order]
    options = {} if max_classes is None else {"max_classes": max_classes}
    together = _figures(outputs, order, classes, request_ids, task, **options)
    with each_call_alone():
        alone = _figures(outputs, order, classes, request_ids, task, **options)
    _assert_same_figures(together, alone)


def assert_joined_as_alone(outputs, classes, order, task, outcome) -> None:
    """Under ``request_id=``: the series, each id's entry and the outcomes judged (by
    ``outcome(result)``) of a drain of these calls are those of the calls read alone."""
    calls = [(outputs[i % len(outputs)], f"r-{n}") for n, i in enumerate(order)]
    model = _Classifier(classes)
    together = judged_after_drain(calls, model, task, 2**20, outcome)
    with each_call_alone():
        alone = judged_after_drain(calls, model, task, 2**20, outcome)
    _assert_same_samples(together[0], alone[0])
    assert together[1] == alone[1]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]), st.booleans(),
       st.sampled_from([None, 2]))
@example(([sp.csr_matrix(np.array([[0, 1, 1]])), sp.csr_matrix(np.array([[1, 0, 2]]))],
          None), [0, 1, 1], "auto", False, 2)
@example(([sp.csr_matrix(np.array([[0.5, np.nan]])), sp.csr_matrix(np.array([[0.25, 1.0]]))],
          None), [0, 1], "auto", True, None)
@example(([sp.csr_matrix((1, result_arrays.MAX_SPARSE_RESULT_COLUMNS + 1)),
           sp.csr_matrix(np.array([[1.0, 0.0]]))], None), [0, 1], "auto", False, None)
def test_sparse_rows_record_what_each_call_read_alone_records(drain, order, task,
                                                              request_ids, max_classes):
    """The series of one drain, plain or each call under a request id, with a class cap
    of a few classes too (which classes keep a series is which came first)."""
    assert_recorded_as_alone(*drain, order, task, request_ids, max_classes)


def _first_cell(result) -> object:
    dense = result.toarray().reshape(-1)
    first = dense[0] if dense.size else 1
    return first.item() if isinstance(first, np.generic) else first


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]))
@example(([sp.csr_matrix(np.array([[0.5], [np.nan]])), sp.csr_matrix(np.array([[0.25]]))],
          None), [0, 1], "regression")
def test_sparse_rows_under_request_ids_join_as_each_call_read_alone(drain, order, task):
    """Under ``request_id=``: the series, each id's entry (the rows its outcome joins by)
    and the outcomes judged. A row the read drops (a NaN) is put back in its place, as
    the call's own dense array puts it back."""
    assert_joined_as_alone(*drain, order, task, _first_cell)


@pytest.mark.parametrize("request_ids", [False, True])
def test_sparse_rows_are_read_as_their_dense_arrays(monkeypatch, request_ids):
    """The dense read is the one such a drain takes (a test of a path never taken would
    prove nothing): each call's sparse row is densified once, and the drain normalises
    them once, not once a call."""
    # The request path reads 1-D ones as the one-array fold's arrays (record_arrays),
    # others as the general path's (outcome_rows).
    readers = (record_arrays, outcome_rows) if request_ids else (prediction_batch,)
    offers = [watched(monkeypatch, module, "plain_result_arrays",
                      lambda found: found is not None) for module in readers]
    normalized = watched(monkeypatch, prediction_batch.PredictionBatch, "_normalized")
    rows = [sp.csr_matrix(np.array([[0, 1, 1]])), sp.csr_matrix(np.array([[1, 0, 1]]))]
    figures = _figures(rows, [0, 1, 0, 1], None, request_ids, "auto")
    assert [took for offered in offers for took in offered] == [True]
    assert len(normalized) == 1
    assert dict(figures["classes"]) == {("0:0",): 2, ("0:1",): 2, ("1:1",): 2, ("1:0",): 2,
                                        ("2:1",): 4}


def test_a_drain_past_the_dense_bound_together_is_read_call_by_call(monkeypatch):
    """Each call within the bound, all of them together past it: the drain's dense copy
    would be larger than one call's may be, so each call is read alone."""
    monkeypatch.setattr(result_arrays, "MAX_SPARSE_RESULT_CELLS", 8)
    rows = [sp.csr_matrix(np.array([[0, 1, 1]]))] * 3
    assert result_arrays.plain_result_arrays(rows) is None
    assert [a.tolist() for a in result_arrays.plain_result_arrays(rows[:2])] == \
        [[[0, 1, 1]], [[0, 1, 1]]]


@pytest.mark.parametrize("label", [1, 75001])
def test_a_sparse_result_joins_its_outcome_as_its_dense_array_does(label):
    """A call read alone: where the drain keeps no class of its row (an id past the
    small-integer bound), its outcome is joined by the labels read off its result, which
    for a sparse row are its dense array's (it was counted ``unsupported_prediction``)."""
    dense = np.array([[label]])
    as_dense = judged_after_drain([(dense, "r-0")], _Classifier(None), "auto", 2**20,
                                  lambda result: label)
    as_sparse = judged_after_drain([(sp.csr_matrix(dense), "r-0")], _Classifier(None), "auto",
                                   2**20, lambda result: label)
    assert as_sparse[1] == as_dense[1]
    assert as_sparse[1]["r-0"][:2] == (f"('{label}',)", None)
    _assert_same_samples(as_sparse[0], as_dense[0])
