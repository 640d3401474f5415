"""A drain reads many pandas Series of a plain numpy dtype by their own arrays, and many
tuples (or dicts) of numpy arrays by one pass per output over all calls. Both must give the
figures of the same calls read one at a time, take exactly the tuples and dicts that the rule
written call by call takes, and leave the user's Series as they were."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.options import Settings
from inferwatch.core.prediction_batch import PredictionBatch
from inferwatch.core.registry import Registry
from test_drain_stacked_equivalence import same_figures

_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
_OBJECTS = st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.just(math.nan), st.none(),
                     st.sampled_from(["cat", "dog", "x", ""]))
_SERIES_DTYPES = ["float64", "float32", "int64", "int8", "uint8", "bool", "object"]


@st.composite
def _series(draw) -> pd.Series:
    dtype = draw(st.sampled_from(_SERIES_DTYPES))
    size = draw(st.integers(0, 3))
    if dtype.startswith("float"):
        values: list = draw(st.lists(_FLOATS, min_size=size, max_size=size))
    elif dtype == "uint8":
        values = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    elif dtype == "bool":
        values = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    elif dtype == "object":
        values = draw(st.lists(_OBJECTS, min_size=size, max_size=size))
    else:
        values = draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size))
    name = draw(st.sampled_from([None, "score"]))
    with np.errstate(over="ignore"):  # float32: past its range, a value is inf
        return pd.Series(values, dtype=dtype, name=name)


class _Tagged(np.ndarray):
    """An ndarray subclass: read call by call, as each call's tuple is."""


def _float32(values: list[float]) -> np.ndarray:
    with np.errstate(over="ignore"):  # past float32's range, a value is inf
        return np.array(values, dtype=np.float32)


def _tagged(values: np.ndarray) -> np.ndarray:
    return values.view(_Tagged)


# What one output of a call may be: 1-D float arrays (the stacked case), and every array
# that must send the calls one at a time (other dtypes, other dimension counts, subclasses).
_ARRAY_MAKERS = {
    "float64": lambda v: np.array(v, dtype=np.float64),
    "float32": lambda v: _float32(v),
    "int64": lambda v: np.array([0 if math.isnan(x) or math.isinf(x) else int(x) for x in v]),
    "2-D": lambda v: np.array(v, dtype=np.float64).reshape(-1, 1),
    "0-D": lambda v: np.array(v[0] if v else 0.5),
    "masked": lambda v: np.ma.masked_array(np.array(v, dtype=np.float64)),
    "subclass": lambda v: _tagged(np.array(v, dtype=np.float64)),
    # Labels: numpy text, and text as Python objects (a number among them at times, which
    # a call of numbers only reads as values).
    "text": lambda v: np.array(["cat" if x > 0 else "owl" for x in v]),
    "objects": lambda v: np.array(["cat" if x > 0 else 2.5 if x < -1 else "dog" for x in v],
                                  dtype=object),
}
_STACKED = ["float64", "float64", "float64", "float32"]
_LABEL_KINDS = ["int64", "text", "objects"]


@st.composite
def _call_outputs(draw, width: int, dtypes: list[str], makers: dict, min_width: int = 1,
                  odd_kind: int = 5) -> list:
    """A call's outputs: mostly the outputs' usual dtypes and one length, at times another
    width, kind (one in `odd_kind + 1`, from `makers`) or length."""
    if draw(st.integers(0, 5)) == 0:
        width = draw(st.integers(min_width, 3))
    length = draw(st.integers(0, 3))
    outputs = []
    for position in range(width):
        kind = dtypes[position % len(dtypes)]
        if draw(st.integers(0, odd_kind)) == 0:
            kind = draw(st.sampled_from(sorted(makers)))
        size = length if draw(st.integers(0, 5)) else draw(st.integers(0, 3))
        values = draw(st.lists(st.floats(-2, 2) | _FLOATS, min_size=size, max_size=size))
        outputs.append(makers[kind](values))
    return outputs


def _array_tuple(width: int, dtypes: list[str]) -> st.SearchStrategy[tuple]:
    """A call's tuple of arrays."""
    return _call_outputs(width, dtypes, _ARRAY_MAKERS).map(tuple)


def _order(data, outputs: list) -> list[int]:
    return data.draw(st.lists(st.integers(0, len(outputs) - 1), min_size=2, max_size=10))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_series(), min_size=1, max_size=4), st.data(),
       st.sampled_from(["auto", "classification", "regression"]), st.booleans())
def test_series_read_together_give_the_figures_of_each_series_read_alone(
        outputs, data, task, classes):
    copies = [series.copy() for series in outputs]
    same_figures(outputs, _order(data, outputs), task, classes)
    for series, copy in zip(outputs, copies):
        pd.testing.assert_series_equal(series, copy)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.lists(st.sampled_from(_STACKED + _LABEL_KINDS), min_size=1,
                                   max_size=3),
       st.data(), st.sampled_from(["auto", "classification", "regression"]), st.booleans())
def test_array_tuples_read_together_give_the_figures_of_each_tuple_read_alone(
        width, dtypes, data, task, classes):
    outputs = data.draw(st.lists(_array_tuple(width, dtypes), min_size=1, max_size=4))
    same_figures(outputs, _order(data, outputs), task, classes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.lists(st.sampled_from(_STACKED + _LABEL_KINDS), min_size=1,
                                   max_size=3),
       st.data(), st.sampled_from(["auto", "classification", "regression"]), st.booleans())
def test_array_lists_read_together_give_the_figures_of_each_list_read_alone(
        width, dtypes, data, task, classes):
    """A runtime's list of output arrays per call (ONNX Runtime's ``session.run``)."""
    outputs = data.draw(st.lists(_call_outputs(width, dtypes, _ARRAY_MAKERS), min_size=1,
                                 max_size=4))
    same_figures(outputs, _order(data, outputs), task, classes)


def test_lists_of_float_arrays_are_read_in_one_pass_per_output(monkeypatch):
    """Read as the tuples of the same arrays, not call by call (12.6 us a call, 0.8 us
    read together)."""
    calls = [[np.array([1.0, 2.0], dtype=np.float32), np.array([10.0, 20.0])],
             [np.array([3.0], dtype=np.float32), np.array([30.0])]]
    batch = PredictionBatch(Settings(task="regression"), {}, None, lambda: None)

    def one_by_one(*args):
        raise AssertionError("read call by call")

    monkeypatch.setattr(batch, "add_one", one_by_one)
    batch.add_results(calls, probabilities=False)
    assert batch.batch_sizes == [2, 1]
    assert {name: np.concatenate(chunks).tolist() for name, chunks in batch.values.items()} \
        == {"0": [1.0, 2.0, 3.0], "1": [10.0, 20.0, 30.0]}


class _Posing:
    """Passes for a numpy array by its ``__class__``, as a proxy does."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    @property  # type: ignore[misc]
    def __class__(self):
        return np.ndarray

    @property
    def ndim(self) -> int:
        return self._array.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    def __len__(self) -> int:
        return len(self._array)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self._array


def _rows_one_by_one(results: list[dict]) -> list[int] | None:
    """Each call's rows when every call's dict holds exactly numpy arrays, 1-D, of one float
    dtype per output, or of labels of one kind (text as Python objects only when every
    one is text), and one length within the call, under the first call's names in its
    order; None otherwise. The rule, written call by call."""
    names = tuple(results[0])
    if not names:
        return None
    dtypes = {}
    for name in names:
        first = results[0][name]
        if first.__class__ is not np.ndarray or first.ndim != 1 or \
                first.dtype.kind not in "fiubUSO":
            return None
        dtypes[name] = first.dtype
    rows = []
    for result in results:
        if tuple(result) != names:
            return None
        lengths = set()
        for name, dtype in dtypes.items():
            value = result[name]
            if value.__class__ is not np.ndarray or value.ndim != 1 or (
                    value.dtype != dtype if dtype.kind == "f" else
                    value.dtype.kind != dtype.kind):
                return None
            if dtype.kind == "O" and not all(type(cell) is str for cell in value.tolist()):
                return None
            lengths.add(len(value))
        if len(lengths) != 1:
            return None
        rows.append(lengths.pop())
    return rows


def _batch_figures(batch: PredictionBatch) -> tuple:
    values = {name: np.concatenate(chunks).tolist() for name, chunks in batch.values.items()}
    return batch.batch_sizes, values, batch.invalid, batch.rows()


def _decisions(results: list, as_dicts: list[dict], task: str) -> None:
    batch = PredictionBatch(Settings(task=task), {}, None, lambda: None)
    taken = batch._add_array_tuples(results) if isinstance(results[0], tuple) else \
        batch._add_array_dicts(results)
    rows = _rows_one_by_one(as_dicts)
    assert taken == (rows is not None)
    if not taken:
        assert _batch_figures(batch) == ([], {}, {}, 0)
        return
    expected = PredictionBatch(Settings(task=task), {}, None, lambda: None)
    names = tuple(as_dicts[0])
    columns = {name: np.concatenate([np.asarray(result[name]) for result in as_dicts])
               for name in names}
    prediction = expected._normalized(columns, False)
    if prediction is not None:
        expected._add(prediction, rows)
    assert _batch_figures(batch) == _batch_figures(expected)


_DECISION_MAKERS = {**_ARRAY_MAKERS, "posing": lambda v: _Posing(np.array(v, dtype=float))}


def _decision_call(width: int, dtypes: list[str]) -> st.SearchStrategy[list]:
    """A call's outputs, a stand-in that passes for an ndarray among them at times."""
    return _call_outputs(width, dtypes, _DECISION_MAKERS, min_width=0, odd_kind=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.lists(st.sampled_from([*_STACKED, "posing", "int64", "text",
                                                    "objects"]), min_size=1, max_size=3),
       st.data(), st.sampled_from(["auto", "regression"]))
def test_tuples_and_dicts_of_arrays_are_taken_as_the_rule_call_by_call_takes_them(
        width, dtypes, data, task):
    calls = data.draw(st.lists(_decision_call(width, dtypes), min_size=2, max_size=6))
    tuples = [tuple(call) for call in calls]
    _decisions(tuples, [dict(zip(map(str, range(len(call))), call)) for call in calls], task)
    names = ["price", "eta", "margin"]
    dicts = [dict(zip(names, call)) for call in calls]
    if data.draw(st.booleans()):  # one call's keys in another order
        victim = data.draw(st.integers(0, len(dicts) - 1))
        dicts[victim] = dict(reversed(list(dicts[victim].items())))
    _decisions(dicts, dicts, task)


def test_tuples_of_several_float_dtypes_and_lengths_are_read_as_one_column_each():
    """``(prices, etas)`` per call, prices float32, etas float64, rows varying by call."""
    calls = [(np.array([1.0, 2.0], dtype=np.float32), np.array([10.0, 20.0])),
             (np.array([3.0], dtype=np.float32), np.array([30.0])),
             (np.array([], dtype=np.float32), np.array([]))]
    batch = PredictionBatch(Settings(task="regression"), {}, None, lambda: None)
    assert batch._add_array_tuples(calls)
    assert batch.batch_sizes == [2, 1, 0]
    assert {name: np.concatenate(chunks).tolist() for name, chunks in batch.values.items()} \
        == {"0": [1.0, 2.0, 3.0], "1": [10.0, 20.0, 30.0]}


def _series_of_every_plain_dtype() -> list[pd.Series]:
    return [pd.Series([0.5, math.nan, -1.0]), pd.Series([0.25, 0.75, 1.0]),
            pd.Series([1.5, 2.5, 3.5], dtype="float32"), pd.Series([1, 0, 1]),
            pd.Series([True, False, True]), pd.Series(["cat", None, math.nan], dtype=object),
            pd.Series(["cat", "dog", "cat"], dtype=object)]


def _drained_figures(outputs: list[pd.Series], task: str) -> tuple:
    registry = Registry(drain_interval=3600)
    try:
        wrapped = inferwatch.instrument(lambda index: outputs[index], name="m", version="1",
                                        registry=registry, task=task)
        monitor = registry.monitor("m", "1")
        for index in range(len(outputs)):
            wrapped(index)
        monitor.drain()
        return ({name: dict(series) for name, series in monitor.state.counters.items()},
                {name: {k: (h.count, h.sum) for k, h in series.items()}
                 for name, series in monitor.state.histograms.items()
                 if name != "inferwatch_request_duration_seconds"})
    finally:
        registry.close()


def test_a_drain_leaves_the_users_series_as_they_were():
    for task in ("regression", "classification", "auto"):
        for series in _series_of_every_plain_dtype():
            calls = [series] + [series.copy() for _ in range(3)]
            copies = [call.copy() for call in calls]
            _drained_figures(calls, task)
            for call, copy in zip(calls, copies):
                pd.testing.assert_series_equal(call, copy)


def test_a_drain_only_reads_the_memory_of_the_users_series():
    """The Series' arrays locked against writing: the drain records the same figures as for
    writable ones, with no internal error (a write would raise, and be counted)."""
    for task in ("regression", "classification", "auto"):
        for series in _series_of_every_plain_dtype():
            writable = [series.copy() for _ in range(4)]
            locked = [series.copy() for _ in range(4)]
            for call in locked:
                call._values.flags.writeable = False
            errors = faults.internal_error_counts()
            assert _drained_figures(locked, task) == _drained_figures(writable, task)
            assert faults.internal_error_counts() == errors


@pytest.mark.parametrize("task", ["auto", "classification", "regression"])
@pytest.mark.parametrize("container", ["tuple", "dict"])
def test_a_call_of_numbers_held_as_objects_reads_as_it_does_alone(task, container):
    """Labels held as Python objects are read together only when all are text: a call
    whose objects are all numbers reads them as values, which among text they are not."""
    calls = [(np.array(["cat"], dtype=object), np.array([1.0])),
             (np.array([2.5], dtype=object), np.array([0.5]))]
    outputs = calls if container == "tuple" else \
        [{"label": label, "score": score} for label, score in calls]
    same_figures(outputs, [0, 1, 1], task, True)
