"""A function returning one row of named outputs as a dict (``{"label": "fraud", "score":
0.93}``, each value alone or in a list of one) or a pipeline's list of one such dict,
called with ``request_id=`` (the delayed-ground-truth flow): a drain of such records reads
their results as one dict of columns (``PredictionBatch.add_dict_records``), with the
series, the rows kept for each id and the outcomes judged that the general path, reading
each dict alone, makes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from fold_checks import watched
from inferwatch.core.prediction_batch import PredictionBatch
from test_outcomes_array_rows import (
    _assert_same_samples,
    _entries,
    _recorded,
    judge_calls,
    make_calls,
)
from test_scalar_dict_fold import _LABELS, _whole, map_chunk, rows_chunk

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# A NaN or an infinity in about one value of four.
_any_number = st.one_of(_finite, _finite, _finite,
                        st.sampled_from([float("nan"), float("inf"), float("-inf")]))


def _score(kind: str, value: float) -> object:
    with np.errstate(over="ignore"):  # a float64 past float32's range: an infinity
        return {"float": float, "np.float64": np.float64, "np.float32": np.float32}[kind](value)


def _label(kind: str, draw: st.DrawFn) -> object:
    if kind == "text":
        return draw(st.sampled_from(_LABELS))
    if kind == "bool":
        return draw(st.booleans())
    return {"int": int, "np.int64": np.int64}[kind](draw(_whole))


@st.composite
def _drain(draw: st.DrawFn) -> list[tuple[object, str | None]]:
    """The calls of one drain, (result, request id or None) each: dicts of one set of
    outputs; in some drains with a NaN or an infinity among the scores, in some with one
    call of another shape, in some every result (or some) in a list of one, in some with
    an id given twice."""
    names = draw(st.sampled_from([("label", "score"), ("score", "label"), ("label",),
                                  ("label", "reason", "score"), ("score", "margin"),
                                  ("score",)]))
    scores = draw(st.sampled_from(["float", "np.float64", "np.float32"]))
    labels = draw(st.sampled_from(["text", "int", "np.int64", "bool"]))
    number = _any_number if draw(st.integers(0, 2)) == 0 else _finite
    results = []
    for _ in range(draw(st.integers(2, 30))):
        results.append({name: _score(scores, draw(number)) if name in ("score", "margin")
                        else _label(labels, draw) for name in names})
    listed = draw(st.sampled_from(["none", "none", "all", "some"]))
    if listed != "none":  # a serving API's answer: each output a list of one value
        results = [{name: [value] if listed == "all" or draw(st.booleans()) else value
                    for name, value in result.items()} for result in results]
    odd = draw(st.sampled_from(["none", "none", "none", "none", "missing key", "another label"]))
    if odd != "none":
        result = dict(results[0])
        if odd == "missing key":
            result.pop(names[0])
        else:
            result[names[0]] = 1 if labels == "text" else "cat"
        results[draw(st.integers(0, len(results) - 1))] = result
    wrapped = draw(st.sampled_from(["none", "none", "all", "some"]))
    if wrapped != "none":  # a Hugging Face pipeline's answer to one text
        results = [[result] if wrapped == "all" or draw(st.booleans()) else result
                   for result in results]
    kind = draw(st.integers(0, 7))
    if kind == 0:  # a label beside its map of class probabilities
        results = [result for _, result in draw(map_chunk())]
    elif kind == 1:  # a serving API's answer to one instance: {"predictions": [[...]]}
        results = [result for _, result in draw(rows_chunk())]
    ids = [f"r-{draw(st.integers(0, 40))}" if draw(st.booleans()) else
           f"u-{number}" for number in range(len(results))]
    return [(result, None if draw(st.integers(0, 5)) == 0 else request_id)
            for result, request_id in zip(results, ids)]


def _truth(result: object) -> object:
    """An outcome for `result`: its label (the first value of the first output) as text,
    or a value near its score (an empty dict's: a label)."""
    row = result[0] if isinstance(result, list) else result
    value = next(iter(row.values()), "cat")
    value = value[0] if isinstance(value, list) else value
    return value + 0.25 if isinstance(value, (float, np.floating)) else str(value)


def _judged(drains: list, options: dict, max_classes: int, cache_bytes: int,
            truth=_truth) -> tuple[dict, list]:
    """(The series after every call under an id was judged, the outcome cache's entries
    after each drain.)"""
    scraper = Scraper(drain_interval=3600)
    try:
        call = inferwatch.instrument(lambda x: x, name="m", version="1",
                                     registry=scraper.registry, **options)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor.configure(outcome_cache_bytes=cache_bytes, max_classes=max_classes)
        entries = []
        for calls in drains:
            make_calls(call, calls)
            monitor.drain()
            entries.append(_entries(monitor))
        for calls in drains:
            judge_calls(monitor, calls, truth)
        return _recorded(scraper), entries
    finally:
        scraper.registry.close()


_options = st.fixed_dictionaries(
    {}, optional={"task": st.sampled_from(["classification", "regression"]),
                  "classes": st.sampled_from([["cat", "dog"], [0, 1, 2], [True, False]])})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drains=st.lists(_drain(), min_size=1, max_size=3), options=_options,
       max_classes=st.sampled_from([2, 50]), cache_bytes=st.sampled_from([2048, 2**20]))
def test_dict_records_join_as_each_dict_read_alone(monkeypatch, drains, options, max_classes,
                                                   cache_bytes):
    rows = _judged(drains, options, max_classes, cache_bytes)
    with monkeypatch.context() as patched:
        patched.setattr(PredictionBatch, "add_dict_records", lambda self, results: None)
        alone = _judged(drains, options, max_classes, cache_bytes)
    _assert_same_samples(rows[0], alone[0])
    assert rows[1] == alone[1]


def test_dict_records_take_the_dict_fold(monkeypatch):
    """The fold above is the one such a drain takes (a test of a fold that never ran would
    prove nothing): label-and-score dicts and a pipeline's lists of one are read as
    columns; a NaN score, or a dict of another shape among them, sends the drain to the
    general path, whose series and joins are the same."""
    taken: list[bool] = []
    fold = PredictionBatch.add_dict_records

    def watched(self, results):
        rows = fold(self, results)
        taken.append(rows is not None)
        return rows

    monkeypatch.setattr(PredictionBatch, "add_dict_records", watched)
    fraud, legit = {"label": "fraud", "score": 0.9}, {"label": "legit", "score": 0.7}
    series, entries = _judged([[(fraud, "r-0"), (legit, "r-1"), (fraud, None)],
                               [([fraud], "r-2"), ([legit], "r-3")],
                               [(fraud, "r-4"), ({"label": "fraud", "score": np.nan}, "r-5")],
                               [(fraud, "r-6"), ({"label": "fraud"}, "r-7")]],
                              {"classes": ["legit", "fraud"]}, 50, 2**20)
    assert taken == [True, True, False, False]
    assert entries[1]["r-2"][:2] == ("('fraud',)", None)
    assert entries[-1]["r-5"][:2] == ("('fraud',)", None)
    correct = sum(value for key, value in series.items()
                  if key[0] == "inferwatch_outcomes_total" and ("result", "correct") in key[1])
    assert correct == 8


def test_lists_of_one_labelled_map_take_the_dict_fold(monkeypatch):
    """A pipeline-like answer, ``[{"label", "probability": {...}}]``, under request ids:
    read as columns, each call's label joined."""
    taken = watched(monkeypatch, PredictionBatch, "add_dict_records",
                    lambda rows: rows is not None)
    fraud = {"label": "fraud", "probability": {"legit": 0.1, "fraud": 0.9}}
    legit = {"label": "legit", "probability": {"legit": 0.8, "fraud": 0.2}}
    series, entries = _judged([[([fraud], "r-0"), ([legit], "r-1"), ([fraud], "r-2")]],
                              {}, 50, 2**20)
    assert taken == [True]
    assert entries[0]["r-1"][:2] == ("('legit',)", None)
    correct = sum(value for key, value in series.items()
                  if key[0] == "inferwatch_outcomes_total" and ("result", "correct") in key[1])
    assert correct == 3


@pytest.mark.parametrize(("drain", "options"), [
    # A map with a NaN, which task="classification" reads as a row and drops: whose row
    # it was is known only call by call.
    ([({"probability": {"cat": float("nan"), "dog": 0.5}}, "u-0"),
      ({"probability": {"cat": 0.5, "dog": 0.5}}, "u-1")], {"task": "classification"}),
    # Labels no class was declared for, beside a row of scores: refused, so the column of
    # labels is shorter than the calls.
    ([({"label": "cat", "predictions": [[0.1, 0.2]]}, "u-0"),
      ({"label": "owl", "predictions": [[0.3, 0.4]]}, "u-1"),
      ({"label": "dog", "predictions": [[0.5, 0.6]]}, "u-2")],
     {"task": "regression", "classes": ["cat", "dog"]}),
])
def test_drains_whose_rows_the_column_loses_join_as_read_alone(monkeypatch, drain, options):
    rows = _judged([drain], options, 50, 2**20, truth=lambda result: "cat")
    with monkeypatch.context() as patched:
        patched.setattr(PredictionBatch, "add_dict_records", lambda self, results: None)
        alone = _judged([drain], options, 50, 2**20, truth=lambda result: "cat")
    _assert_same_samples(rows[0], alone[0])
    assert rows[1] == alone[1]
    assert sum(value for (name, labels), value in rows[0].items()
               if name == "inferwatch_outcomes_total") >= 1  # some call's row was joined
