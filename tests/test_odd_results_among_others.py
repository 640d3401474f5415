"""An odd result among ordinary ones never costs the drain the ordinary ones.

A model may return anything once (an empty array, a 0-d array, ``None``, a set, text): the
drain reads the calls of a drain together, so one such result must be recorded as it is
when read alone, and must not take the other calls' predictions down with it, in every
mode a call can take (plain, ``request_id=``, a reference profile, an event log, inside
``mon.request()``) and under every task. A 0-d array under request ids once raised in the
request path's check for plain arrays, and every prediction of that drain was lost.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import warnings

import numpy as np
import pandas as pd
import pytest

import inferwatch
from inferwatch import Reference, faults
from inferwatch.core.registry import Registry
from inferwatch.events import EventLog


class _Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class _Answer:
    label: str
    score: float


_Pair = collections.namedtuple("_Pair", "label score")


def _odd_results() -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix
        matrix = np.matrix([[0.3, 0.7]])
    return {
        "None": None, "text": "cat", "bytes": b"cat", "bool": True, "huge int": 10**30,
        "Decimal": decimal.Decimal("0.5"), "Fraction": fractions.Fraction(1, 3),
        "complex": 1 + 2j, "datetime": datetime.datetime(2026, 1, 1),
        "datetime64 array": np.array(["2026-01-01"], dtype="datetime64[D]"),
        "timedelta64 array": np.array([1, 2], dtype="timedelta64[s]"),
        "complex array": np.array([1 + 1j]), "empty array": np.array([]),
        "empty (0, 3) array": np.zeros((0, 3)), "3-D array": np.ones((2, 2, 2)),
        "0-d array": np.array(0.5), "0-d int array": np.array(3), "0-d text array": np.array("a"),
        "structured array": np.array([(1, 0.5)], dtype=[("a", "i4"), ("b", "f8")]),
        "float16 array": np.array([0.5], dtype=np.float16),
        "uint64 max": np.array([2**64 - 1], dtype=np.uint64),
        "object array of mixed": np.array([1, "a", None], dtype=object),
        "ragged list": [[1, 2], [3]], "nested dict": {"a": {"b": 1}}, "dict of None": {"a": None},
        "dict of int keys": {1: 0.5, 2: 0.5}, "enum": _Colour.RED, "dataclass": _Answer("a", 0.9),
        "namedtuple": _Pair("a", 0.9), "set": {1, 2}, "range": range(3),
        "mixed dicts": [{"label": "a", "score": 0.5}, {"x": 1}], "inf": float("inf"),
        "NaN row": np.array([np.nan, 1.0]), "overflowing sum": np.array([1e308, 1e308]),
        "Series of mixed": pd.Series([1, "a"]), "empty DataFrame": pd.DataFrame(),
        "datetime Series": pd.Series(pd.to_datetime(["2026-01-01"])),
        "interval Series": pd.Series(pd.interval_range(0, 2)),
        "masked array": np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "np.matrix": matrix,
        "bytearray": bytearray(b"ab"), "empty tuple": (), "empty list": [], "empty dict": {},
        "emoji text array": np.array(["é", "😀"]), "bytes array": np.array([b"a", b"b"]),
    }


# The ordinary calls around the odd one: an array of one float, a row of two outputs (a
# function's, not predict_proba's: two outputs' values), an array of one text label, a float;
# each with the task under which its predictions are checked and where they are counted. A
# function's text is a class label only when its classes are declared.
_ORDINARY = {
    "float array": (np.array([0.25]), "auto", "inferwatch_prediction", ("value",)),
    "a row of two outputs": (np.array([[0.3, 0.7]]), "auto", "inferwatch_prediction", ("1",)),
    "label array": (np.array(["a"]), "classification", None, ("a",)),
    "float": (0.5, "auto", "inferwatch_prediction", ("value",)),
}
_MODES = ["plain", "request_id", "reference", "events", "mon.request()",
          "reference and request_id"]
_REFERENCE = Reference.from_data(np.random.default_rng(0).normal(size=(100, 2)),
                                 predictions=np.linspace(0, 1, 100))


def _drained(results: list, mode: str, task: str, tmp_path,
             each_alone: bool = False) -> tuple[object, list]:
    """The state after `results` are returned by calls in `mode` and drained together
    (or, `each_alone`, each drained as it returns), and what the calls returned."""
    registry = Registry(drain_interval=3600)
    returned = iter(results)
    options: dict = {"task": task, "classes": ["a", "b"]}
    if mode.startswith("reference"):
        options["reference"] = _REFERENCE
    if mode == "events":
        options["events"] = EventLog(str(tmp_path / "events.jsonl"))
    try:
        model = inferwatch.instrument(lambda x: next(returned), name="m", version="1",
                                      registry=registry, **options)
        monitor = registry.monitor("m", "1")
        given = []
        for i in range(len(results)):
            x = np.array([[0.1, 0.2]])
            if mode in ("request_id", "reference and request_id"):
                given.append(model(x, request_id=f"r{i}"))
            elif mode == "mon.request()":
                with monitor.request(request_id=f"q{i}"):
                    given.append(model(x))
            else:
                given.append(model(x))
            if each_alone:
                monitor.drain()
        monitor.drain()
        return monitor.state, given
    finally:
        registry.close()


def _figures(state) -> dict:
    """What a state counts: counters, and each histogram's and summary's count and sum
    (a duration's count only: the calls took what they took)."""
    figures: dict = {"counters": {metric: dict(series) for metric, series in
                                  state.counters.items()}}
    for kind in ("histograms", "summaries"):
        figures[kind] = {metric: {labels: (one.count, None if metric.endswith("_seconds")
                                           else pytest.approx(one.sum, nan_ok=True))
                                  for labels, one in series.items()}
                         for metric, series in getattr(state, kind).items()}
    return figures


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("odd", sorted(_odd_results()))
def test_an_odd_result_leaves_the_other_calls_of_its_drain_recorded(odd, mode, tmp_path):
    odd_result = _odd_results()[odd]
    for ordinary, (result, checked_task, metric, labels) in _ORDINARY.items():
        for task in ("auto", "classification", "regression"):
            results = [result, odd_result, result, result]
            before = faults.internal_error_counts()
            state, given = _drained(results, mode, task, tmp_path)
            where = f"{ordinary}, task={task}"
            assert all(a is b for a, b in zip(given, results)), where
            assert faults.internal_error_counts() == before, where
            assert state.counters["inferwatch_requests_total"][("ok",)] == 4, where
            alone, _ = _drained(results, mode, task, tmp_path, each_alone=True)
            assert _figures(state) == _figures(alone), where
            if task != checked_task:
                continue
            if metric is None:
                recorded = state.counters["inferwatch_predicted_class_total"][labels]
            else:
                recorded = state.summaries[metric][labels].count
            assert recorded >= 3, where  # the odd result may add its own
