"""Many calls read by the drain together must give the figures of the same calls read
one at a time (a drain after each call takes the one-call path). The drain stacks calls of
one shape and kind (numpy arrays of numbers, bools or text, Python text objects, lists and
tuples of plain floats or of text, tuples and lists of float arrays, dicts of floats, of
float arrays or of a label and a score, pandas Series of plain dtypes and text): this
checks every kind against that oracle on random calls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry

CLASSES = ["cat", "dog"]
_LABELS = st.sampled_from([*CLASSES, "x", ""])
# Floats whose sums are exact in any order (multiples of 1/1024 below 2**30: a hundred of
# them sum within 53 bits), and the special values. Any float would do for where each value
# goes, but past the float range one order of adding overflows where another does not
# (1.8e308 - 1.8e308 + 1.8e308), and near it cancellation keeps or loses the small ones.
_FLOATS = st.one_of(st.integers(-2**40, 2**40).map(lambda i: i / 1024),
                    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 0.5, 1.0]))
_NUMBERS = st.one_of(st.integers(-3, 3), st.floats(-2, 2, allow_nan=False))


def _outputs(kind: str, rows: list) -> object:
    makers = {
        "float array": lambda r: np.array([float(v) for v in r]),
        "int array": lambda r: np.array([int(v) for v in r]),
        "bool array": lambda r: np.array([bool(v) for v in r]),
        "str array": lambda r: np.array([str(v) for v in r]),
        "object text": lambda r: np.array([str(v) if i % 3 else None for i, v in enumerate(r)],
                                          dtype=object),
        "float list": lambda r: [float(v) for v in r],
        "str list": lambda r: [str(v) for v in r],
        "float tuple": lambda r: tuple(float(v) for v in r),
        "str tuple": lambda r: tuple(str(v) for v in r),
        "array tuple": lambda r: (np.array([float(v) for v in r]),
                                  np.array([float(v) / 2 for v in r])),
        "mixed array tuple": lambda r: (np.array([float(v) for v in r]),
                                        np.array([int(v) for v in r])),
        "float Series": lambda r: pd.Series([float(v) for v in r]),
        "int Series": lambda r: pd.Series([int(v) for v in r]),
        "str Series": lambda r: pd.Series([str(v) for v in r], dtype="str"),
        "string Series": lambda r: pd.Series([str(v) if i % 2 else None
                                              for i, v in enumerate(r)], dtype="string"),
        "object Series": lambda r: pd.Series(list(r), dtype=object),
        "Int64 Series": lambda r: pd.Series([int(v) if i % 2 else None
                                             for i, v in enumerate(r)], dtype="Int64"),
        "float frame": lambda r: pd.DataFrame({"a": [float(v) for v in r],
                                               "b": [float(v) / 2 for v in r]}),
        "int frame": lambda r: pd.DataFrame({"a": [int(v) for v in r]}),
        "mixed frame": lambda r: pd.DataFrame({"a": [int(v) for v in r],
                                               "b": [float(v) for v in r]}),
        "text frame": lambda r: pd.DataFrame({"label": [str(v) for v in r]}, dtype=object),
        "float dict": lambda r: {"price": np.array([float(v) for v in r]),
                                 "eta": np.array([float(v) / 2 for v in r])},
        "scalar dict": lambda r: {"price": float(r[0]), "eta": float(r[-1]) / 2},
        "label dict": lambda r: {"label": str(r[0]), "score": float(len(r))},
        "int dict": lambda r: {"a": int(r[0])},
        "array list": lambda r: [np.array([float(v) for v in r]),
                                 np.array([float(v) / 2 for v in r])],
        "label score tuple": lambda r: (str(r[0]), float(len(r))),
        "float polars": lambda r: pl.Series([float(v) for v in r]),
        "int polars": lambda r: pl.Series([int(v) for v in r]),
        "str polars": lambda r: pl.Series([str(v) for v in r]),
        "nullable polars": lambda r: pl.Series([int(v) if i % 2 else None
                                                for i, v in enumerate(r)], dtype=pl.Int64),
        "label array dict": lambda r: {"label": np.array([str(v) for v in r]),
                                       "score": np.array([len(str(v)) / 4 for v in r])},
        "object label tuple": lambda r: (np.array([str(v) for v in r], dtype=object),
                                         np.array([len(str(v)) / 4 for v in r])),
        "int matrix": lambda r: np.array([[int(v), int(v) + 1] for v in r]),
        "object matrix": lambda r: np.array([[str(v), "x"] for v in r], dtype=object),
        "0-d float": lambda r: np.array(float(r[0])),
        "int list": lambda r: [int(v) for v in r],
        "onnx matrix": lambda r: [np.array([int(v) for v in r]),
                                  np.array([[0.25, 0.75]] * len(r), dtype=np.float32)],
        "onnx zipmap": lambda r: [np.array([str(v) for v in r]),
                                  [{"a": 0.5, "b": 0.5}] * len(r)],
    }
    return makers[kind](rows)


def _figures(outputs: list, order: list[int], task: str, classes: bool, each: bool):
    registry = Registry(drain_interval=3600)
    try:
        class Model:
            def predict(self, index):
                return outputs[index]

        model = Model()
        if classes:
            model.classes_ = np.array(CLASSES)
        wrapped = inferwatch.instrument(model, name="m", version="1", registry=registry,
                                        task=task)
        mon = registry.monitor("m", "1")
        for index in order:
            assert wrapped.predict(index) is outputs[index]
            if each:
                mon.drain()
        mon.drain()
        counters = {name: {k: v for k, v in series.items() if v}
                    for name, series in mon.state.counters.items()}
        # Sums to 9 significant digits: adding the same values in another order rounds apart.
        histograms = {name: {k: (h.count, float(f"{h.sum:.9g}")) for k, h in series.items()}
                      for name, series in mon.state.histograms.items()
                      if name != "inferwatch_request_duration_seconds"}
        # Each series' count and sum: which output (or class column) each value went to.
        summaries = {name: {k: (s.count, float(f"{s.sum:.9g}")) for k, s in series.items()}
                     for name, series in mon.state.summaries.items()}
        return counters, histograms, summaries, mon.state.info.get("task")
    finally:
        registry.close()


_KINDS = ["float array", "int array", "bool array", "str array", "object text", "float list",
          "str list", "float Series", "int Series", "str Series", "string Series",
          "object Series", "Int64 Series", "float frame", "int frame", "mixed frame",
          "text frame", "float dict", "float polars", "int polars", "str polars",
          "nullable polars",
          "float tuple", "str tuple", "array tuple", "mixed array tuple", "scalar dict",
          "label dict", "int dict", "array list", "label score tuple", "label array dict",
          "object label tuple", "int matrix", "object matrix", "0-d float", "int list",
          "onnx matrix", "onnx zipmap"]


def same_figures(outputs: list, order: list[int], task: str, classes: bool) -> None:
    """The calls `outputs` (in `order`) drained together record what they record drained one
    at a time."""
    together = _figures(outputs, order, task, classes, each=False)
    alone = _figures(outputs, order, task, classes, each=True)
    if task == "auto":
        # The task a model is taken for is fixed by its first drain's calls: drained one at
        # a time, the first call alone decides it. Every figure must still agree.
        together, alone = together[:3], alone[:3]
    assert together == alone


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=2),
       st.integers(1, 3), st.data(), st.sampled_from(["auto", "classification", "regression"]),
       st.booleans())
def test_many_calls_read_together_give_the_figures_of_each_call_read_alone(
        kinds, width, data, task, classes):
    outputs = []
    for kind in kinds:
        for _ in range(data.draw(st.integers(1, 3))):
            integers = ("int array", "int Series", "Int64 Series", "int frame", "mixed frame",
                        "int polars", "nullable polars", "int matrix", "int list",
                        "onnx matrix")
            values = _FLOATS if kind.startswith("float") or kind in (
                "array tuple", "array list", "scalar dict", "0-d float") else (
                _NUMBERS if kind in (*integers, "bool array", "object Series",
                                     "mixed array tuple", "int dict") else _LABELS)
            rows = data.draw(st.lists(values, min_size=width, max_size=width))
            if kind in (*integers, "int dict"):
                rows = [int(v) for v in rows]
            outputs.append(_outputs(kind, rows))
    order = data.draw(st.lists(st.integers(0, len(outputs) - 1), min_size=2, max_size=12))
    same_figures(outputs, order, task, classes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=2), min_size=1, max_size=4),
       st.lists(st.integers(0, 3), min_size=2, max_size=12), st.booleans(),
       st.sampled_from([list, tuple]))
def test_predict_proba_lists_read_together_give_the_figures_of_each_call_read_alone(
        positives, order, classes, sequence):
    """A predict_proba returning ``[[1 - p, p], ...]`` as lists (or tuples of rows), one per
    call."""
    outputs = [sequence(sequence((1.0 - p, p)) for p in rows) for rows in positives]
    order = [i % len(outputs) for i in order]

    def figures(each: bool):
        registry = Registry(drain_interval=3600)
        try:
            class Model:
                def predict_proba(self, index):
                    return outputs[index]

            model = Model()
            if classes:
                model.classes_ = np.array(CLASSES)
            wrapped = inferwatch.instrument(model, name="m", version="1", registry=registry)
            mon = registry.monitor("m", "1")
            for index in order:
                wrapped.predict_proba(index)
                if each:
                    mon.drain()
            mon.drain()
            return ({name: {k: v for k, v in series.items() if v}
                     for name, series in mon.state.counters.items()},
                    {name: {k: (h.count, float(f"{h.sum:.9g}")) for k, h in series.items()}
                     for name, series in mon.state.histograms.items()
                     if name != "inferwatch_request_duration_seconds"},
                    {name: sorted(series) for name, series in mon.state.summaries.items()})
        finally:
            registry.close()

    assert figures(each=False) == figures(each=True)
