"""A ``predict`` that returns a float matrix per call (a Keras classifier's softmax rows):
each call's rows are class probabilities when they all lie in [0, 1] and sum to 1 (task
auto, with classes that name each column, or a matrix handed over by ``r.prediction()``),
judged call by call. A drain reads such calls as one stacked matrix, which was judged
once: one call's NaN row made every call of its drain values, and its class counts were
lost. Calls that are read otherwise than the rest are now read apart. What a drain
records, and what each id's outcome joins, must be what reading each call alone gives."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import watched
from inferwatch.core.prediction_batch import PredictionBatch
from test_outcomes_array_rows import _assert_same_samples
from test_pandas_calls import _figures
from test_probability_row_lists import _row, in_requests


@contextlib.contextmanager
def _each_call_alone():
    """The general path: every call normalised and recorded on its own."""
    def stacked_alone(self, stacked, shape, calls, probabilities):
        for result in stacked.reshape((calls, *shape)):
            self._add_call(result, probabilities)

    def records_alone(self, results, probabilities, split=True):
        rows = [self._add_call(result, probabilities) for result in results]
        return rows if split else []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PredictionBatch, "add_stacked", stacked_alone)
        patch.setattr(PredictionBatch, "_add_uniform_arrays", lambda self, r, p: False)
        patch.setattr(PredictionBatch, "add_records", records_alone)
        yield


@st.composite
def _drains(draw) -> tuple[list[np.ndarray], list | None]:
    """Calls of one shape (rows of one width, as many rows each), most of them rows of one
    kind (probabilities, say), now and then another; and the model's classes. Two columns
    or more: a column of floats is no probability row (its whole-number classes are a
    rule of their own, see the closing note of test_each_calls_rows_...)."""
    width = draw(st.integers(2, 3))
    rows = draw(st.integers(1, 2))
    first = draw(_row(width))
    outputs = [np.array([first if draw(st.integers(0, 3)) else draw(_row(width))
                         for _ in range(rows)]) for _ in range(draw(st.integers(1, 5)))]
    classes = draw(st.sampled_from([None, [f"c{i}" for i in range(width)],
                                    list(range(width))]))
    return outputs, classes


def _assert_same_figures(together: dict, alone: dict) -> None:
    """The same figures; a histogram's sum to its last few bits (values summed stacked
    or call by call are added in another order)."""
    assert {**together, "values": None} == {**alone, "values": None}
    assert together["values"].keys() == alone["values"].keys()
    for key, (count, total, buckets) in together["values"].items():
        other_count, other_total, other_buckets = alone["values"][key]
        assert (count, buckets) == (other_count, other_buckets), key
        assert math.isclose(total, other_total, rel_tol=1e-12, abs_tol=1e-12), key


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 4), min_size=2, max_size=20),
       st.sampled_from(["auto", "classification", "regression"]))
@example(([np.array([[0.2, 0.8]]), np.array([[np.nan, 0.5]])], ["legit", "fraud"]),
         [0, 0, 1], "auto")  # a Keras classifier's NaN row among its probabilities
@example(([np.array([[0.2, 0.8]]), np.array([[3.0, 7.0]])], ["legit", "fraud"]),
         [0, 1], "auto")
@example(([np.array([[0.402, 0.4, 0.2]]), np.array([[1 / 3, 1 / 3, 1 / 3]])], [0, 1, 2]),
         [0, 0, 0, 1], "auto")  # values summed in another order than call by call
def test_each_calls_rows_are_judged_as_when_read_alone(drain, order, task):
    outputs, classes = drain
    order = [i % len(outputs) for i in order]
    together = _figures(outputs, order, classes, task=task)
    requested = in_requests(outputs, order, classes, task)
    with _each_call_alone():
        alone = _figures(outputs, order, classes, task=task)
        requested_alone = in_requests(outputs, order, classes, task)
    _assert_same_figures(together, alone)
    _assert_same_samples(requested[0], requested_alone[0])
    assert requested[1] == requested_alone[1]


def test_a_nan_row_among_probabilities_is_read_apart(monkeypatch):
    """The check above is the one such a drain takes (a test of a path never taken would
    prove nothing): a drain of probability rows with one NaN row goes apart, its other
    calls still counted as classes; one of probability rows only is stacked."""
    apart = watched(monkeypatch, PredictionBatch, "_probability_calls",
                    lambda found: found is not None)
    figures = _figures([np.array([[0.2, 0.8]]), np.array([[np.nan, 0.5]])], [0, 0, 1],
                       ["legit", "fraud"])
    assert dict(figures["classes"]) == {"fraud": 2.0} and apart[0] is True
    apart.clear()
    figures = _figures([np.array([[0.2, 0.8]]), np.array([[0.4, 0.6]])], [0, 0, 1],
                       ["legit", "fraud"])
    assert dict(figures["classes"]) == {"fraud": 3.0} and apart and not any(apart)
