"""``predict_proba`` answering a dict of a probability per class reads as its DataFrame.

A hand-written classifier that serves JSON often answers ``predict_proba`` with
``[dict(zip(self.classes_, p)) for p in proba]``, or the dict of those columns. Each class
was read as an output of values of its own (the model's task turned ``regression``, no
class counted, every outcome a ``shape_mismatch``), where the same columns as a DataFrame
were the class probabilities. Whatever the rows, every series a scrape shows must now be the
same for the matrix, the DataFrame, the dict of columns, the rows of dicts and, for one row,
the one dict, on every path and with outcomes joined.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import inferwatch

_FORMS = ["matrix", "frame", "columns", "records", "row"]


class _Classifier:
    def __init__(self, results: list, classes: list[str]) -> None:
        self._results = iter(results)
        self.classes_ = np.array(classes)

    def predict_proba(self, x: object) -> object:
        return next(self._results)


def _form(matrix: np.ndarray, classes: list[str], form: str, reversed_keys: bool) -> object:
    """`matrix` in `form`; a dict's keys in the classes' order or (`reversed_keys`) the
    other way round, which names the same columns."""
    if form == "matrix":
        return matrix
    if form == "frame":
        return pd.DataFrame(matrix, columns=classes)
    order = list(range(len(classes)))[::-1] if reversed_keys else range(len(classes))
    if form == "columns":
        return {classes[j]: matrix[:, j].tolist() for j in order}
    rows = [{classes[j]: row[j] for j in order} for row in matrix.tolist()]
    return rows[0] if form == "row" and len(rows) == 1 else rows


@st.composite
def _calls(draw) -> tuple[list[str], list[np.ndarray], list[str]]:
    classes = draw(st.lists(st.sampled_from(["no", "yes", "maybe"]), min_size=2, max_size=3,
                            unique=True))
    calls = []
    for _ in range(draw(st.integers(1, 6))):
        rows = draw(st.integers(1, 3))
        cells = draw(st.lists(st.lists(st.one_of(st.floats(0.0, 1.0), st.just(1.5)),
                                       min_size=len(classes), max_size=len(classes)),
                              min_size=rows, max_size=rows))
        matrix = np.array(cells, dtype=float)
        if draw(st.booleans()):  # rows that sum to 1, as a classifier's do
            totals = matrix.sum(axis=1, keepdims=True)
            matrix = np.where(totals > 0, matrix / np.where(totals > 0, totals, 1.0), matrix)
        calls.append(matrix)
    paths = draw(st.lists(st.sampled_from(["plain", "request_id", "request"]),
                          min_size=len(calls), max_size=len(calls)))
    # Keys the other way round name the same columns; only a tie for the top class tells
    # the orders apart (the first column wins it, as argmax picks), so tied rows keep theirs.
    reversed_keys = [draw(st.booleans()) and not _tied(matrix) for matrix in calls]
    return classes, calls, paths, reversed_keys


def _tied(matrix: np.ndarray) -> bool:
    return bool(((matrix == matrix.max(axis=1, keepdims=True)).sum(axis=1) > 1).any())


def _scrape(classes, calls, paths, reversed_keys, form) -> list[tuple]:
    from conftest import Scraper

    scraper = Scraper()
    try:
        results = [_form(matrix, classes, form, flip)
                   for matrix, flip in zip(calls, reversed_keys)]
        model = inferwatch.instrument(_Classifier(results, classes), name="m", version="1",
                                      registry=scraper.registry)
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        for i, path in enumerate(paths):
            if path == "plain":
                returned = model.predict_proba(i)
            elif path == "request_id":
                returned = model.predict_proba(i, request_id=f"r-{i}")
                mon.record_outcome(f"r-{i}", [classes[i % len(classes)]] * len(calls[i]))
            else:
                with mon.request():
                    returned = model.predict_proba(i)
            assert returned is results[i]
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for s in scraper.samples()
                      if not s.name.endswith(("_created", "_timestamp_seconds"))
                      and "duration" not in s.name and "delay" not in s.name
                      and "held" not in s.name)
    finally:
        scraper.registry.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=_calls(), form=st.sampled_from(_FORMS[1:]))
@example(drawn=(["no", "yes"], [np.array([[0.2, 0.8]]), np.array([[0.6, 0.4]])],
                ["request_id", "request_id"], [False, False]), form="records")
@example(drawn=(["no", "yes"], [np.array([[0.2, 0.8]]), np.array([[0.6, 0.4]])],
                ["plain", "plain"], [False, True]), form="columns")
def test_a_probability_per_class_reads_as_the_matrix_of_them(drawn, form):
    assert _scrape(*drawn, form) == _scrape(*drawn, "matrix")


def test_rows_of_class_probabilities_count_classes_and_join_outcomes(scraper):
    class Service:
        classes_ = np.array(["legit", "fraud"])

        def predict_proba(self, x):
            return [{"legit": 0.9, "fraud": 0.1}, {"legit": 0.3, "fraud": 0.7}]

    model = inferwatch.instrument(Service(), name="svc", version="1", registry=scraper.registry)
    model.predict_proba(None)
    model.predict_proba(None, request_id="r-1")
    inferwatch.monitor("svc", "1", registry=scraper.registry).record_outcome(
        "r-1", ["legit", "legit"])
    assert scraper.value("inferwatch_model_info", model="svc")  # present
    assert scraper.series("inferwatch_model_info")[0]["task"] == "classification"
    for name in ("legit", "fraud"):
        assert scraper.value("inferwatch_predicted_class_total", model="svc",
                             **{"class": name}) == 2
    assert scraper.value("inferwatch_outcomes_total", model="svc", result="correct") == 1
    assert scraper.value("inferwatch_outcomes_total", model="svc", result="incorrect") == 1
    assert scraper.total("inferwatch_invalid_predictions_total", model="svc") == 0


def test_a_dict_of_labels_or_of_a_map_per_row_is_still_read_as_named_outputs(scraper):
    class Tagger:
        classes_ = np.array(["a", "b"])

        def predict_proba(self, x):  # not numbers alone: no matrix of class probabilities
            return {"label": ["a"], "score": [0.9]}

    model = inferwatch.instrument(Tagger(), name="tag", version="1", registry=scraper.registry)
    model.predict_proba(None)
    model.predict_proba(None)
    assert scraper.value("inferwatch_prediction_count", model="tag", output="score") == 2
    assert scraper.value("inferwatch_predicted_class_total", model="tag", **{"class": "a"}) == 2


def test_an_integer_past_the_float_range_is_counted_never_a_fault(scraper):
    from inferwatch import faults

    class Service:
        classes_ = np.array(["no", "yes"])

        def predict_proba(self, x):
            return {"no": 10**400, "yes": 0.5} if x else [{"no": 10**400, "yes": 1}]

    model = inferwatch.instrument(Service(), name="big", version="1", registry=scraper.registry)
    before = faults.internal_error_counts()
    for i in range(4):
        model.predict_proba(i % 2)
    model.predict_proba(1, request_id="r-1")
    model.predict_proba(0, request_id="r-2")
    assert scraper.value("inferwatch_requests_total", model="big", outcome="ok") == 6
    assert scraper.total("inferwatch_invalid_predictions_total", model="big") > 0
    assert faults.internal_error_counts() == before
