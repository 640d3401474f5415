"""A pandas Series (or 1-D object array) of a list per row reads as the list of those lists.

``df.apply(lambda row: ..., axis=1)`` and ``pd.Series(list(model.predict_proba(x)))`` give a
Series whose every cell is a row: a list, a tuple or a 1-D array. Each such row counted
``invalid_predictions_total{reason="unsupported_type"}``, where the same rows as a list of
lists were class probabilities, values or labels. Whatever the rows hold, every series a
scrape shows must be the same for both, on every path and with outcomes joined.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import inferwatch

_CLASSES = ["a", "b", "c"]


class _Model:
    """Answers every call with the next result it was given."""

    def __init__(self, results: list, classes: list | None) -> None:
        self._results = iter(results)
        if classes is not None:
            self.classes_ = np.array(classes)

    def predict(self, x: object) -> object:
        return next(self._results)

    def predict_proba(self, x: object) -> object:
        return next(self._results)


def _cells(rows: list[list], container: str) -> object:
    cells = np.empty(len(rows), dtype=object)
    if container == "array":
        cells[:] = [np.array(row) for row in rows]
    else:
        cells[:] = [tuple(row) if container == "tuple" else list(row) for row in rows]
    return cells


_ROW_VALUES = st.one_of(
    st.floats(0.0, 1.0), st.floats(-1e6, 1e6), st.sampled_from(_CLASSES),
    st.integers(0, 3))


@st.composite
def _calls(draw) -> tuple[list[list[list]], list[str], list[str]]:
    """Calls, each the rows it answers (of one width, or ragged now and then), and for
    each call its method and how it is made (plain, request_id=, inside mon.request())."""
    count = draw(st.integers(1, 6))
    width = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["probabilities", "values", "labels", "mixed"]))
    calls = []
    for _ in range(count):
        rows = draw(st.integers(1, 3))
        if kind == "probabilities":
            cells = []
            for _ in range(rows):
                row = draw(st.lists(st.floats(0.0, 1.0), min_size=width, max_size=width))
                total = sum(row) or 1.0
                cells.append([value / total for value in row])
        else:
            element = {"values": st.floats(-1e6, 1e6), "labels": st.sampled_from(_CLASSES),
                       "mixed": _ROW_VALUES}[kind]
            cells = [draw(st.lists(element, min_size=width, max_size=width))
                     for _ in range(rows)]
            if draw(st.integers(0, 5)) == 0:  # a ragged row
                cells[0] = cells[0] + [cells[0][0]]
        calls.append(cells)
    methods = draw(st.lists(st.sampled_from(["predict", "predict_proba"]),
                            min_size=count, max_size=count))
    paths = draw(st.lists(st.sampled_from(["plain", "request_id", "request"]),
                          min_size=count, max_size=count))
    return calls, methods, paths


def _scrape(calls, methods, paths, wrap, classes) -> list[tuple]:
    from conftest import Scraper

    scraper = Scraper()
    try:
        results = [wrap(rows) for rows in calls]
        model = inferwatch.instrument(_Model(results, classes), name="m", version="1",
                                      registry=scraper.registry)
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        for i, (method, path) in enumerate(zip(methods, paths)):
            call = getattr(model, method)
            if path == "plain":
                returned = call(i)
            elif path == "request_id":
                returned = call(i, request_id=f"r-{i}")
                mon.record_outcome(f"r-{i}", [_CLASSES[0]] * len(calls[i]))
            else:
                with mon.request():
                    returned = call(i)
            assert returned is results[i]
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for s in scraper.samples()
                      if not s.name.endswith(("_created", "_timestamp_seconds"))
                      and "duration" not in s.name and "delay" not in s.name)
    finally:
        scraper.registry.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=_calls(),
       container=st.sampled_from(["series", "list", "tuple", "array", "mixed"]),
       named=st.booleans(), classes=st.sampled_from([None, _CLASSES[:2], _CLASSES]))
# Arrays in the cells of several calls: a list of them would be outputs side by side.
@example(drawn=([[[0.0]], [[0.0]]], ["predict", "predict"], ["plain", "plain"]),
         container="array", named=False, classes=None)
@example(drawn=([[[0.2, 0.8]], [[0.6, 0.4]]], ["predict_proba"] * 2, ["request_id"] * 2),
         container="array", named=False, classes=_CLASSES[:2])
def test_a_series_of_rows_is_read_as_the_list_of_its_rows(drawn, container, named, classes):
    """A Series of rows or an object array of them, alone or as a dict's output (`named`),
    against the same rows as a list of lists, alone or under the same key."""
    calls, methods, paths = drawn
    if container == "series":
        def column(rows):
            return pd.Series([list(row) for row in rows])
    elif container == "mixed":  # a drain of Series and lists alike
        as_series = iter([True, False] * len(calls))

        def column(rows):
            lists = [list(row) for row in rows]
            return pd.Series(lists) if next(as_series) else lists
    else:
        def column(rows):
            return _cells(rows, container)
    if container == "array":  # the rows as the arrays hold them: one dtype each
        calls = [[np.array(row).tolist() for row in rows] for rows in calls]

    def wrap(rows):
        return {"out": column(rows)} if named else column(rows)

    def as_lists(rows):
        lists = [list(row) for row in rows]
        return {"out": lists} if named else lists

    expected = _scrape(calls, methods, paths, as_lists, classes)
    assert _scrape(calls, methods, paths, wrap, classes) == expected


def test_a_series_of_probability_rows_counts_its_classes_and_joins_its_outcomes(scraper):
    class Classifier:
        classes_ = np.array(["no", "yes"])

        def predict(self, x):  # a service's rows of class probabilities, one list a row
            return pd.Series([[0.9, 0.1], [0.2, 0.8]])

    model = inferwatch.instrument(Classifier(), name="clf", version="1",
                                  registry=scraper.registry)
    model.predict(None)
    model.predict(None, request_id="r-1")
    inferwatch.monitor("clf", "1", registry=scraper.registry).record_outcome(
        "r-1", ["no", "no"])
    assert scraper.value("inferwatch_predicted_class_total", model="clf", **{"class": "no"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", model="clf", **{"class": "yes"}) == 2
    assert scraper.total("inferwatch_invalid_predictions_total", model="clf") == 0
    assert scraper.value("inferwatch_outcomes_total", model="clf", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", model="clf", result="incorrect") == 1


def test_a_dataframe_column_of_rows_reads_as_the_dict_of_its_rows(scraper):
    rows = [[0.5, 1.5], [2.5, 3.5]]
    for name, result in (("frame", pd.DataFrame({"out": rows, "score": [0.1, 0.2]})),
                         ("dict", {"out": rows, "score": [0.1, 0.2]})):
        model = inferwatch.instrument(lambda x, result=result: result, name=name,
                                      version="1", registry=scraper.registry)
        model(None)
    for name in ("frame", "dict"):
        assert scraper.value("inferwatch_prediction_count", model=name, output="out") == 4
        assert scraper.value("inferwatch_prediction_sum", model=name, output="out") == 8.0
        assert scraper.value("inferwatch_prediction_count", model=name, output="score") == 2
        assert scraper.total("inferwatch_invalid_predictions_total", model=name) == 0
