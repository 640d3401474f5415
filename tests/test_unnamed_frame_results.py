"""A model's result in a frame that names nothing reads as the array it holds.

A wrapper (an MLflow pyfunc, a service's adapter) often answers ``predict_proba`` with
``pd.DataFrame(proba)``, or ``pl.from_numpy(proba)``: columns named 0 and 1, or
``column_0`` and ``column_1``. Those names were taken for the classes: a model whose
``classes_`` are "fraud" and "legit" counted classes "0" and "1", and every outcome naming
"fraud" was judged incorrect (so the accuracy alert fired on a perfect model); polars
counted a class ``column_1`` even for classes 0 and 1. Such a frame of plain numbers now
reads as the array it holds, on every path, its columns named by the model's classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import inferwatch

_FORMS = {"array": lambda a, names: a,
          "pandas": lambda a, names: pd.DataFrame(a),
          "polars": lambda a, names: pl.from_numpy(a),
          # Named by the classes: polars frames of one schema are joined per drain, as
          # pandas frames of the same columns are.
          "polars named": lambda a, names: pl.DataFrame(dict(zip(names, a.T))),
          "pandas named": lambda a, names: pd.DataFrame(dict(zip(names, a.T)))}


class _Model:
    def __init__(self, results: list, classes: list | None) -> None:
        self._results = iter(results)
        if classes is not None:
            self.classes_ = np.array(classes)

    def predict(self, x: object) -> object:
        return next(self._results)

    predict_proba = predict


def _scrape(method, classes, calls, paths, truths, form) -> list[tuple]:
    from conftest import Scraper

    scraper = Scraper()
    try:
        names = None if classes is None else [str(c) for c in classes]
        results = [_FORMS[form](matrix, names) for matrix in calls]
        model = inferwatch.instrument(_Model(results, classes), name="m", version="1",
                                      registry=scraper.registry)
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        for i, path in enumerate(paths):
            if path == "plain":
                returned = getattr(model, method)(i)
            elif path == "request_id":
                returned = getattr(model, method)(i, request_id=f"r-{i}")
                mon.record_outcome(f"r-{i}", truths[i])
            else:
                with mon.request():
                    returned = getattr(model, method)(i)
            assert returned is results[i]
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for s in scraper.samples()
                      if not s.name.endswith(("_created", "_timestamp_seconds"))
                      and "duration" not in s.name and "delay" not in s.name
                      and "held" not in s.name)
    finally:
        scraper.registry.close()


@st.composite
def _probabilities(draw):
    classes = draw(st.one_of(st.none(), st.just(["fraud", "legit"]), st.just([0, 1]),
                             st.just([1, 2, 3])))
    width = 2 if classes is None or len(classes) == 2 else 3
    calls = []
    for _ in range(draw(st.integers(1, 5))):
        rows = draw(st.integers(1, 3))
        cells = draw(st.lists(st.lists(st.floats(0.01, 1.0), min_size=width, max_size=width),
                              min_size=rows, max_size=rows))
        matrix = np.array(cells)
        calls.append(matrix / matrix.sum(axis=1, keepdims=True))
    names = classes if classes is not None else list(range(width))
    truths = [[names[draw(st.integers(0, width - 1))] for _ in matrix] for matrix in calls]
    paths = draw(st.lists(st.sampled_from(["plain", "request_id", "request"]),
                          min_size=len(calls), max_size=len(calls)))
    return classes, calls, paths, truths


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=_probabilities(),
       form=st.sampled_from(["pandas", "polars", "polars named", "pandas named"]))
def test_probabilities_in_a_frame_that_names_nothing_read_as_their_matrix(drawn, form):
    classes, calls, paths, truths = drawn
    assume(classes is not None or "named" not in form)
    assert _scrape("predict_proba", classes, calls, paths, truths, form) == \
        _scrape("predict_proba", classes, calls, paths, truths, "array")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(st.lists(st.tuples(st.floats(-5, 5), st.floats(0, 9)), min_size=1,
                               max_size=3), min_size=1, max_size=4),
       form=st.sampled_from(["pandas", "polars"]), paths=st.data())
def test_values_in_a_frame_that_names_nothing_read_as_their_matrix(calls, form, paths):
    matrices = [np.array(rows) for rows in calls]
    drawn = paths.draw(st.lists(st.sampled_from(["plain", "request_id", "request"]),
                                min_size=len(calls), max_size=len(calls)))
    truths = [matrix + 0.5 for matrix in matrices]
    assert _scrape("predict", None, matrices, drawn, truths, form) == \
        _scrape("predict", None, matrices, drawn, truths, "array")


def test_a_perfect_classifier_in_a_frame_is_judged_correct(scraper):
    class Wrapper:  # an adapter answering as a pyfunc does
        classes_ = np.array(["fraud", "legit"])

        def predict_proba(self, x):
            return pd.DataFrame(np.array([[0.9, 0.1], [0.2, 0.8]]))

    model = inferwatch.instrument(Wrapper(), name="w", version="1", registry=scraper.registry)
    model.predict_proba(None, request_id="r-1")
    inferwatch.monitor("w", "1", registry=scraper.registry).record_outcome(
        "r-1", ["fraud", "legit"])
    assert scraper.value("inferwatch_outcomes_total", model="w", result="correct") == 2
    assert scraper.value("inferwatch_predicted_class_total", model="w",
                         **{"class": "fraud"}) == 1
    assert scraper.value("inferwatch_predicted_class_total", model="w", **{"class": "0"}) is None


def test_a_frame_with_names_of_its_own_still_names_its_outputs(scraper):
    model = inferwatch.instrument(lambda x: pd.DataFrame({"price": [1.5], "eta": [3.0]}),
                                  name="f", version="1", registry=scraper.registry)
    model(None)
    # Labelled columns, or text beside numbers: read by their columns, as before.
    model(pd.DataFrame([["a", 0.5]]))
    outputs = {s.labels["output"] for s in scraper.samples()
               if s.name == "inferwatch_prediction" and s.labels["model"] == "f"}
    assert {"price", "eta"} <= outputs and "value" not in outputs
