"""A ``predict`` that returns a float column or matrix per call, of a model whose classes
are whole numbers (scikit-learn fit on a float target, a multi-output classifier): each
call's column is its class labels when every value is one of the classes, else values,
judged call by call. A drain stacks such calls into one matrix, which was judged once:
one call's stray value made every call of its drain values. What a drain records, on
the plain path and under request ids, must be what reading each call alone gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import watched
from inferwatch.core.prediction_batch import PredictionBatch
from test_pandas_calls import _figures as _figures_in_order
from test_probability_rows_judged_per_call import _assert_same_figures, _each_call_alone

VALUES = [0.0, 1.0, 2.0, 0.5, -1.0, float("nan")]


def _figures(outputs, order, classes, request_ids: bool, task: str, **options) -> dict:
    """What one drain of these calls records, plain or each under a request id
    (``test_pandas_calls._figures`` under `task`), the class counts sorted: a class cap
    aside, the same calls count the same classes in whichever order they came."""
    if task != "auto":
        options["task"] = task
    figures = _figures_in_order(outputs, order, classes, request_ids, **options)
    figures["classes"] = sorted(((label,), count) for label, count in figures["classes"])
    return figures


@st.composite
def _drains(draw) -> tuple[list[np.ndarray], object]:
    """Calls of one width (1 or 2 columns), one or two rows each, their values mostly the
    classes, now and then another number or NaN; and the model's classes."""
    width = draw(st.integers(1, 2))
    common = [draw(st.sampled_from(VALUES[:3])) for _ in range(width)]

    def row():
        return [value if draw(st.integers(0, 3)) else draw(st.sampled_from(VALUES))
                for value in common]

    outputs = [np.array([row() for _ in range(draw(st.integers(1, 2)))])
               for _ in range(draw(st.integers(1, 4)))]
    if width == 1:
        classes = draw(st.sampled_from([None, [0], [0, 1], [0, 1, 2], ["a", "b"]]))
    else:
        classes = draw(st.sampled_from([None, [np.array([0.0, 1.0]), np.array([0, 1, 2])],
                                        [np.array([0, 1]), np.array(["a", "b"])]]))
    return outputs, classes


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_drains(), st.lists(st.integers(0, 3), min_size=2, max_size=12),
       st.sampled_from(["auto", "classification", "regression"]), st.booleans())
@example(([np.array([[1.0]]), np.array([[0.0]])], [0]), [0, 1], "auto", False)
@example(([np.array([[1.0]]), np.array([[0.0]])], [0]), [0, 1], "auto", True)
@example(([np.array([[0.0], [1.0]]), np.array([[0.0]])], [0]), [0, 1, 0], "auto", True)
@example(([np.array([[1.0, 0.0]]), np.array([[0.5, 0.0]])],
          [np.array([0.0, 1.0]), np.array([0, 1, 2])]), [0, 1], "auto", False)
@example(([np.array([[1.0, 0.0]]), np.array([[0.5, 0.0]])],
          [np.array([0.0, 1.0]), np.array([0, 1, 2])]), [0, 1], "classification", True)
def test_each_calls_column_is_judged_as_when_read_alone(drain, order, task, request_ids):
    outputs, classes = drain
    order = [i % len(outputs) for i in order]
    together = _figures(outputs, order, classes, request_ids, task)
    with _each_call_alone():
        alone = _figures(outputs, order, classes, request_ids, task)
    _assert_same_figures(together, alone)


@pytest.mark.parametrize("request_ids", [False, True])
def test_a_stray_value_leaves_the_other_calls_classes(monkeypatch, request_ids):
    """The check above is the one such a drain takes: a drain of columns with one stray
    value counts the other calls' classes; the mixed drains are read apart, the others
    stacked."""
    apart = watched(monkeypatch, PredictionBatch, "_calls_read_apart",
                    lambda found: found is not None)
    wide = [np.array([[1.0, 0.0]]), np.array([[0.5, 0.0]])]
    per_output = [np.array([0.0, 1.0]), np.array([0, 1, 2])]
    figures = _figures(wide, [0, 0, 1], per_output, request_ids, "auto")
    assert dict(figures["classes"]) == {("0:1",): 2.0, ("1:0",): 3.0} and any(apart)
    apart.clear()
    figures = _figures(wide, [0, 0], per_output, request_ids, "auto")
    assert dict(figures["classes"]) == {("0:1",): 2.0, ("1:0",): 2.0} and not any(apart)
    column = [np.array([[1.0]]), np.array([[0.0]])]
    figures = _figures(column, [0, 1, 1], [0], request_ids, "auto")
    assert dict(figures["classes"]) == {("0",): 2.0}
    assert figures["values"][("value",)][0] == 1
