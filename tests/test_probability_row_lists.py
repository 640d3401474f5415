"""A ``predict`` that returns its probability rows as lists (``proba.tolist()``, a JSON
answer): each call's rows are judged probabilities, classes or values by what that call
holds, so a drain read them one call at a time (about 12 us a call, 17 us under
``request_id=``). A drain whose rows are all probabilities (so is each call's), or a
regressor's, is now read as one stacked matrix; any other is still read call by call. What
is recorded, and what each id's outcome joins, must be what reading each call alone gives,
on the plain path and the request path alike."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from fold_checks import as_the_general_path, watched
from inferwatch.core import stacked_results
from test_outcomes_array_rows import _entries, _recorded, judged_after_drain
from test_pandas_calls import _figures, drained_every_way


def _none(self, results, probabilities):
    return None


def _call_by_call(outputs, order, model_classes=None, **options):
    """The same drain with every call read alone (the general path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stacked_results.StackedResults, "float_row_arrays", _none)
        return _figures(outputs, order, model_classes, **options)


@st.composite
def _row(draw, width: int) -> list[float]:
    """One row: probabilities (summing to 1, or just off it), or other numbers."""
    kind = draw(st.sampled_from(["probabilities", "near", "values", "whole", "nan"]))
    if kind == "values":
        return [draw(st.floats(-5, 5)) for _ in range(width)]
    if kind == "whole":  # a model of whole-number classes reads these as its classes
        return [float(draw(st.integers(0, 2))) for _ in range(width)]
    weights = [draw(st.floats(0.01, 1)) for _ in range(width)]
    row = [weight / sum(weights) for weight in weights]
    if kind == "near":  # past the sum's tolerance
        row[0] += draw(st.sampled_from([0.0005, 0.002, -0.002]))
    elif kind == "nan":
        row[-1] = float("nan")
    return row


@st.composite
def _outputs(draw) -> list[list[list[float]]]:
    """Calls of one shape (rows of one width, as many rows each), mostly of one kind of row
    (all probabilities, say), now and then of mixed kinds."""
    width = draw(st.integers(1, 3))
    rows = draw(st.integers(1, 2))
    uniform = draw(st.booleans())
    first = draw(_row(width))
    return [[first if uniform and draw(st.integers(0, 5)) != 0 else draw(_row(width))
             for _ in range(rows)] for _ in range(draw(st.integers(1, 5)))]


@settings(max_examples=120, deadline=None)
@given(_outputs(), st.lists(st.integers(0, 4), min_size=2, max_size=30),
       st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, ["legit", "fraud"], ["a", "b", "c"], [0, 1], [0, 1, 2]]))
@example([[[0.2, 0.8]], [[0.3, 0.7]]], [0, 1, 0], "auto", ["legit", "fraud"])
@example([[[0.2, 0.8]], [[3.0, 7.0]]], [0, 1], "auto", ["legit", "fraud"])  # mixed
@example([[[0.2, 0.8]], [[0.3, 0.7]]], [0, 1], "auto", None)  # values: no classes
def test_probability_rows_as_lists_record_what_each_call_read_alone_records(
        outputs, order, task, classes):
    order = [i % len(outputs) for i in order]
    together = drained_every_way(outputs, order, _call_by_call, classes, task=task)
    assert together["sizes"][:2] == (len(order), sum(len(outputs[i]) for i in order))


def test_a_drain_of_probabilities_is_stacked_and_a_mixed_one_is_not(monkeypatch):
    """The read above is the one a drain of such lists takes (a test of a path never
    taken would prove nothing): stacked when all its rows are probabilities, not when some
    are not, nor for a classifier's one column of floats (each call's whole numbers are
    its classes)."""
    stacked = watched(monkeypatch, stacked_results.StackedResults, "float_row_arrays",
                      lambda found: found is not None)
    for outputs, task in (([[[0.2, 0.8]], [[0.3, 0.7]]], "auto"),
                          ([[[0.2, 0.8]], [[3.0, 7.0]]], "auto"),
                          ([[[1.0]], [[1.5]]], "classification")):
        figures = _figures(outputs, [0, 1], ["legit", "fraud"], task=task)
        assert figures["sizes"][:2] == (2, 2)
    assert stacked == [True, False, False]


def _outcome(result) -> object:
    return "fraud" if result[0][-1] > 0.5 else result[0][0] + 0.25


def in_requests(outputs, order, classes, task: str, outcome=_outcome) -> tuple[dict, dict]:
    """The same calls' results handed over inside ``mon.request()`` by ``r.prediction()``
    (no method to judge them by: their rows alone decide), each under an id, judged by
    ``outcome(result)``: the series and each id's entry."""
    scraper = Scraper(drain_interval=3600)
    try:
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry).configure(
            **({} if task == "auto" else {"task": task}),
            **({} if classes is None else {"classes": classes}))
        for call, index in enumerate(order):
            with monitor.request(request_id=f"r-{call}") as r:
                r.prediction(outputs[index])
        monitor.drain()
        entries = _entries(monitor)
        for call, index in enumerate(order):
            monitor.record_outcome(f"r-{call}", outcome(outputs[index]))
        return _recorded(scraper), entries
    finally:
        scraper.registry.close()


@settings(max_examples=80, deadline=None)
@given(_outputs(), st.lists(st.integers(0, 4), min_size=2, max_size=20),
       st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, ["legit", "fraud"], ["a", "b", "c"]]),
       st.sampled_from(["model", "request"]))
@example([[[0.2, 0.8]], [[3.0, 7.0]]], [0, 1], "auto", None, "request")  # rows decide
@example([[[1.0]], [[1.5]]], [0, 1], "classification", None, "model")  # whole-number class
def test_probability_rows_as_lists_join_their_outcomes_as_each_call_read_alone(
        outputs, order, task, classes, how):
    """The rows kept for each id and the outcomes judged, from a model's predict (its
    classes decide whether rows may be probabilities) or handed over by r.prediction()."""
    order = [i % len(outputs) for i in order]
    calls = [(outputs[index], f"r-{call}") for call, index in enumerate(order)]
    options = {} if classes is None else {"classes": classes}
    with pytest.MonkeyPatch.context() as patch:
        as_the_general_path(
            patch, stacked_results.StackedResults, "float_row_arrays",
            (lambda: judged_after_drain(calls, None, task, 2**20, _outcome, options))
            if how == "model" else (lambda: in_requests(outputs, order, classes, task)),
            replacement=_none)
