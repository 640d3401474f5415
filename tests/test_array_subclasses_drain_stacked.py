"""Models that answer ndarray subclasses: a masked array (a model that masks the rows it
will not score, a netCDF or astropy pipeline) or ``np.matrix`` (what ``.todense()`` and a
sparse matrix's ``.mean(axis=1)`` give). Read one call at a time they cost about 10 us of
drain each; a drain now reads the plain arrays they stand for together (a masked entry
NaN), as it reads the same numpy arrays. What it records, and under ``request_id=`` what
each call's outcome joins by, must be what reading each call alone gives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import watched
from inferwatch.core import outcome_rows, prediction_batch, record_arrays
from test_label_matrices_drain_stacked import _Classifier
from test_outcomes_array_rows import _assert_same_samples, judged_after_drain
from test_sparse_results_drain_stacked import assert_joined_as_alone, assert_recorded_as_alone
from test_whole_class_columns_judged_per_call import _figures

# np.matrix is what users' libraries still return: its deprecation notice is theirs to see.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def _matrix(rows) -> np.ndarray:
    """``np.asmatrix(rows)``, made without its deprecation notice (examples are made when
    the module is collected, where the mark above does not reach)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(rows)

_CELLS = {
    "int64": st.sampled_from([0, 1, 1, 2, 75001]),
    "bool": st.booleans(),
    "float64": st.sampled_from([0.0, 1.0, 0.5, 0.9, 0.1, 2.0, float("nan"), float("inf")]),
    "<U3": st.sampled_from(["cat", "dog"]),
    # Python objects (a label, a number, None), a masked entry None among them.
    "object": st.sampled_from(["cat", "dog", 1, 0.5, None]),
}


@st.composite
def _drains(draw) -> tuple[list[np.ndarray], object]:
    """Calls of one class (masked arrays, now and then with entries masked, or matrices),
    one width, one dtype (now and then another), zero to three rows each, 1-D or 2-D;
    and the model's classes."""
    masked = draw(st.booleans())
    two_dimensional = draw(st.booleans()) or not masked  # a matrix is always 2-D
    width = draw(st.sampled_from([1, 2, 3]))
    dtype = draw(st.sampled_from(sorted(_CELLS)))
    same_rows = draw(st.booleans())
    rows = draw(st.integers(1, 3))
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        own = dtype if draw(st.integers(0, 6)) else draw(st.sampled_from(sorted(_CELLS)))
        count = rows if same_rows else draw(st.integers(0 if masked else 1, 3))
        shape = (count, width) if two_dimensional else (count,)
        cells = np.array([draw(_CELLS[own]) for _ in range(int(np.prod(shape)))],
                         dtype=own).reshape(shape)
        if masked:
            mask = [draw(st.integers(0, 5)) == 0 for _ in range(cells.size)]
            outputs.append(np.ma.masked_array(cells, mask=np.array(mask).reshape(shape)))
        else:
            outputs.append(_matrix(cells))
        if draw(st.integers(0, 8)) == 0:
            outputs[-1] = np.asarray(outputs[-1])  # a plain array among them
    classes = draw(st.sampled_from([None, [0, 1, 2], [False, True], ["cat", "dog"]]))
    return outputs, classes


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]), st.booleans(),
       st.sampled_from([None, 2]))
@example(([np.ma.masked_array([1, 2], mask=[False, True]), np.ma.masked_array([0, 1])],
          None), [0, 1, 1], "auto", False, None)
@example(([_matrix([[0.2, 0.8]]), _matrix([[0.5, 0.5]])], [0, 1]), [0, 1], "auto",
         True, None)
def test_array_subclasses_record_what_each_call_read_alone_records(drain, order, task,
                                                                   request_ids, max_classes):
    """The series of one drain, plain or each call under a request id, with a class cap
    of a few classes too."""
    assert_recorded_as_alone(*drain, order, task, request_ids, max_classes)


def _first_cell(result) -> object:
    cells = np.asarray(result).reshape(-1)
    first = cells[0] if cells.size else 1
    return first.item() if isinstance(first, np.generic) else first


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]))
@example(([np.ma.masked_array([0.5, 0.25], mask=[False, True]),
           np.ma.masked_array([0.75, 1.5])], None), [0, 1], "regression")
@example(([np.ma.masked_array(np.array([0.5, "x", "y"], dtype=object), mask=[0, 1, 1])], None),
         [0, 0], "auto")
def test_array_subclasses_under_request_ids_join_as_each_call_read_alone(drain, order, task):
    """Under ``request_id=``: the series, each id's entry and the outcomes judged. A masked
    entry (NaN, a row the read drops) is put back in its place, as the call's own plain
    array puts it back."""
    assert_joined_as_alone(*drain, order, task, _first_cell)


@pytest.mark.parametrize("request_ids", [False, True])
@pytest.mark.parametrize("make", [
    pytest.param(lambda row: np.ma.masked_array(row, mask=[False] * len(row)), id="masked"),
    pytest.param(lambda row: _matrix([row]), id="matrix"),
])
def test_array_subclasses_are_read_as_their_plain_arrays(monkeypatch, request_ids, make):
    """The plain read is the one such a drain takes (a test of a path never taken would
    prove nothing): the drain reads them at once (floats need no normalising), not once a
    call."""
    # The request path reads 1-D ones as the one-array fold's arrays (record_arrays),
    # others as the general path's (outcome_rows).
    readers = (record_arrays, outcome_rows) if request_ids else (prediction_batch,)
    offers = [watched(monkeypatch, module, "plain_result_arrays",
                      lambda found: found is not None) for module in readers]
    normalized = watched(monkeypatch, prediction_batch.PredictionBatch, "_normalized")
    outputs = [make([0.25]), make([0.5])]
    figures = _figures(outputs, [0, 1, 0, 1], None, request_ids, "regression")
    assert [took for offered in offers for took in offered] == [True]
    assert len(normalized) <= 1
    ((count, total, _),) = figures["values"].values()
    assert (count, total) == (4, 1.5)


@pytest.mark.parametrize(("result", "plain", "outcome"), [
    pytest.param(np.ma.masked_array(np.array([0.5, "x", "y"], dtype=object), mask=[0, 1, 1]),
                 np.array([0.5, None, None], dtype=object), [0.5, 1.0, 1.0],
                 id="masked objects, two rows masked"),
    pytest.param(np.ma.masked_array([2.5, 1.0], mask=[False, True]), np.array([2.5, np.nan]),
                 [2.0, 1.0], id="masked floats"),
    pytest.param(_matrix([[75001]]), np.array([[75001]]), 75001, id="matrix of an id"),
])
def test_a_subclass_result_joins_its_outcome_as_its_plain_array_does(result, plain, outcome):
    """A call read alone: it is read, and its outcome joined, as the plain array the drain
    makes of it (a masked array was looked at as a subclass first: the data under its
    mask counted as rows, and the rows its read dropped were not told back)."""
    as_plain = judged_after_drain([(plain, "r-0")], _Classifier(None), "auto", 2**20,
                                  lambda r: outcome)
    as_subclass = judged_after_drain([(result, "r-0")], _Classifier(None), "auto", 2**20,
                                     lambda r: outcome)
    assert as_subclass[1] == as_plain[1]
    _assert_same_samples(as_subclass[0], as_plain[0])
