"""The drain's cost per call for every kind of result a model may return.

``bench_shapes`` times the common shapes against the naive wrapper, hot path and total.
This table is wider and cheaper: one row per kind of one-row result (Python and numpy
scalars, numpy arrays, containers, pandas, polars and pyarrow columns and frames, sparse
rows), each the median drain of 1,000 calls of that kind, beside the drain of 1,000 float
calls, without and with ``request_id=`` (the request path, where each call keeps its own
rows for an outcome to join). A kind that every call reads alone through its library shows
at once as a drain tens of times the float's; the rows are decompositions, not targets.
"""

from __future__ import annotations

import importlib
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np

from benchmarks.common import Row, fmt_seconds

CALLS = 1000
CLASSES = ["legit", "fraud"]



def _matrix_row() -> np.ndarray:
    """A one-row np.matrix, as a sparse matrix's ``.todense()`` gives: its deprecation
    notice is numpy's to its users, not this benchmark's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix([[0.5, 0.25]])

def _kinds() -> dict[str, tuple[Callable[[], object], dict]]:
    """name -> (make(): one call's result, instrument options). Each call returns the
    same object, as a model answering from a cache would; the drain reads it each time."""
    import pandas as pd

    labels = {"classes": CLASSES}
    kinds: dict[str, tuple[Callable[[], object], dict]] = {
        "float": (lambda: 0.5, {}),
        "numpy float32 scalar": (lambda: np.float32(0.5), {}),
        "numpy int64 label": (lambda: np.int64(1), {}),
        "bool": (lambda: True, {}),
        "text label": (lambda: "fraud", labels),
        "text label of a model's own classes_ (no classes=)": (
            lambda: "fraud", {"model_classes": CLASSES}),
        "numpy float array": (lambda: np.array([0.5]), {}),
        "numpy text array": (lambda: np.array(["fraud"]), labels),
        "numpy object array of text": (lambda: np.array(["fraud"], dtype=object), labels),
        "bytes label (a scalar string tensor's numpy)": (lambda: b"fraud", labels),
        "numpy object array of bytes (a string tensor's numpy)": (
            lambda: np.array([b"fraud"], dtype=object), labels),
        "numpy masked array": (lambda: np.ma.masked_array([0.5], mask=[False]), {}),
        "np.matrix row (a sparse matrix's .todense())": (_matrix_row, {}),
        "numpy label matrix (multi-output classifier)": (lambda: np.array([[0, 1, 1]]), {}),
        "ONNX classifier [labels, probabilities]": (
            lambda: [np.array([1]), np.array([[0.3, 0.7]], dtype=np.float32)], {}),
        "ONNX classifier [labels, ZipMap]": (
            lambda: [np.array([1]), [{0: 0.3, 1: 0.7}]], {}),
        "0-d float array (x.squeeze())": (lambda: np.array(0.5), {}),
        "list of one int label": (lambda: [1], {}),
        "dict of a label array and a score array": (
            lambda: {"label": np.array(["fraud"]), "score": np.array([0.9])}, labels),
        "predict_proba: 1-D positive-class column": (
            lambda: np.array([0.7]), {"method": "predict_proba", "classes": [0, 1]}),
        "predict_proba: DataFrame of a column per class": (
            lambda: pd.DataFrame({"legit": [0.3], "fraud": [0.7]}),
            {"method": "predict_proba", "classes": CLASSES}),
        "predict_proba: pd.DataFrame(proba), columns 0 and 1 (a pyfunc's)": (
            lambda: pd.DataFrame(np.array([[0.3, 0.7]])),
            {"method": "predict_proba", "model_classes": CLASSES}),
        "predict_proba: a dict of a probability per class": (
            lambda: {"legit": 0.3, "fraud": 0.7},
            {"method": "predict_proba", "model_classes": CLASSES}),
        "predict_proba: rows of such dicts": (
            lambda: [{"legit": 0.3, "fraud": 0.7}],
            {"method": "predict_proba", "model_classes": CLASSES}),
        "predict_proba: list of matrices (multi-output)": (
            lambda: [np.array([[0.3, 0.7]]), np.array([[0.6, 0.4]])],
            {"method": "predict_proba"}),
        "predict_proba row as a list": (lambda: [[0.2, 0.8]], {}),
        "list of two floats": (lambda: [0.1, 0.9], {}),
        "tuple of a label and a score": (lambda: ("fraud", 0.9), labels),
        "dict of a label and a score": (lambda: {"label": "fraud", "score": 0.9}, labels),
        "dict of two float arrays": (
            lambda: {"a": np.array([0.5]), "b": np.array([1.0])}, {}),
        "pandas float Series": (lambda: pd.Series([0.5]), {}),
        "pandas Series of a probability row as a list (df.apply(..., axis=1))": (
            lambda: pd.Series([[0.3, 0.7]]), {"model_classes": CLASSES}),
        "pandas text Series": (lambda: pd.Series(["fraud"]), labels),
        "pandas text array (Series.values)": (lambda: pd.Series(["fraud"]).array, labels),
        "pandas category Series": (
            lambda: pd.Series(["fraud"], dtype=pd.CategoricalDtype(CLASSES)), {}),
        "pandas category Series of integers": (lambda: pd.Series([1], dtype="category"), {}),
        "pandas Int64 Series": (lambda: pd.Series([1], dtype="Int64"), {}),
        "pandas Int64 Series, missing": (lambda: pd.Series([None], dtype="Int64"), {}),
        "pandas Float64 Series": (lambda: pd.Series([0.5], dtype="Float64"), {}),
        "pandas boolean Series": (lambda: pd.Series([True], dtype="boolean"), {}),
        "pandas DataFrame of two floats": (
            lambda: pd.DataFrame({"a": [0.5], "b": [0.2]}), {}),
        "pandas DataFrame of a label and a score": (
            lambda: pd.DataFrame({"label": pd.Series(["fraud"], dtype="str"),
                                  "score": [0.9]}), labels),
    }
    pa, pl, sparse = map(_optional, ("pyarrow", "polars", "scipy.sparse"))
    if pa is not None:
        kinds.update({
            "pyarrow float array": (lambda: pa.array([0.5]), {}),
            "pyarrow text array": (lambda: pa.array(["fraud"]), labels),
        })
    if pl is not None:
        kinds.update({
            "polars float Series": (lambda: pl.Series([0.5]), {}),
            "polars text Series": (lambda: pl.Series(["fraud"]), labels),
            "polars Enum Series": (lambda: pl.Series(["fraud"], dtype=pl.Enum(CLASSES)), {}),
            "polars float Series, null": (lambda: pl.Series([None], dtype=pl.Float64), {}),
            "polars DataFrame of a float": (lambda: pl.DataFrame({"a": [0.5]}), {}),
            "predict_proba: polars DataFrame of a column per class": (
                lambda: pl.DataFrame({"legit": [0.3], "fraud": [0.7]}),
                {"method": "predict_proba", "model_classes": CLASSES}),
            "predict_proba: pl.from_numpy(proba), columns column_0 and column_1": (
                lambda: pl.from_numpy(np.array([[0.3, 0.7]])),
                {"method": "predict_proba", "model_classes": CLASSES}),
        })
    if sparse is not None:
        kinds["scipy.sparse row (multi-label)"] = (
            lambda: sparse.csr_matrix(np.array([[0, 1, 1]])), {})
    return kinds


def _optional(name: str) -> object:
    """An optional library's module, or None where it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class _Model:
    def __init__(self, result: object) -> None:
        self.result = result

    def predict(self, x: object, request_id: str | None = None) -> object:
        return self.result

    def predict_proba(self, x: object, request_id: str | None = None) -> object:
        return self.result


def model_of(result: object, options: dict) -> tuple[_Model, str, dict]:
    """(the model answering `result`, the method to call, instrument()'s options) of a
    kind's options: ``method`` names the method, ``model_classes`` the model's own
    ``classes_``, the rest are instrument()'s."""
    options = dict(options)
    method = options.pop("method", "predict")
    model = _Model(result)
    if "model_classes" in options:  # as a fitted classifier names its classes
        model.classes_ = np.array(options.pop("model_classes"))
    return model, method, options


def _drain_per_call(result: object, options: dict, request_ids: bool, rounds: int) -> float:
    """The median drain of CALLS calls returning `result`, per call."""
    from inferwatch.core.instrument import instrument
    from inferwatch.core.registry import Registry

    registry = Registry(drain_interval=3600)
    target, method, options = model_of(result, options)
    try:
        model = getattr(instrument(target, name="kind", version="1",
                                   registry=registry, **options), method)
        monitor = registry.monitor("kind", "1")
        ids = [f"r{i}" for i in range(CALLS)] if request_ids else None
        spent = []
        for _ in range(rounds + 1):  # the first drain settles the series: not timed
            if ids is None:
                for i in range(CALLS):
                    model(i)
            else:
                for request_id in ids:
                    model(0, request_id=request_id)
            start = time.perf_counter()
            monitor.drain()
            spent.append(time.perf_counter() - start)
        return statistics.median(spent[1:]) / CALLS
    finally:
        registry.close()


def run(quick: bool = False) -> list[Row]:
    rounds = 3 if quick else 7
    rows = []
    _drain_per_call(0.5, {}, False, rounds)  # the first registry's imports and caches
    floor = {ids: _drain_per_call(0.5, {}, ids, rounds) for ids in (False, True)}
    for name, (make, options) in _kinds().items():
        for ids in (False, True):
            spent = _drain_per_call(make(), options, ids, rounds)
            where = "with request_id=" if ids else "plain call"
            rows.append(Row(f"drain per call, {where}: {name}", fmt_seconds(spent),
                            f"float {fmt_seconds(floor[ids])}", spent / floor[ids],
                            "(decomposition)", True))
    return rows
