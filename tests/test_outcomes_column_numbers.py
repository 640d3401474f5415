"""A model returning a pyarrow array or a polars Series of numbers per call: a drain reads
many such calls as their numpy arrays at once, on the plain path
(``library_columns.plain_arrow_arrays``) and under ``request_id=``
(``record_arrays._column_numbers_as_arrays``). Read one call at a time they cost 8 to
16 us of drain each. What is recorded, the rows kept for each id and the outcomes judged
must be what reading each call alone makes: compared with the general path on random
drains, nulls, empty answers and other types among them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import drain_folds, prediction_batch, record_arrays
from test_outcomes_array_rows import judged_after_drain
from test_pandas_calls import _figures, drained_every_way

pl = pytest.importorskip("polars")

_VALUES = {
    "float64": (st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, 2.0])),
                pa.float64(), pl.Float64),
    "float32": (st.floats(-1e3, 1e3, width=32), pa.float32(), pl.Float32),
    "int64": (st.integers(0, 3), pa.int64(), pl.Int64),
    "uint8": (st.integers(0, 3), pa.uint8(), pl.UInt8),
    "bool": (st.booleans(), pa.bool_(), pl.Boolean),
}


class _IntClassifier:
    """A classifier of three whole-number classes whose predict gives its input back."""

    classes_ = np.array([0, 1, 2])

    def predict(self, x):
        return x


def _column(values: list, kind: str, library: str) -> object:
    _, arrow_type, polars_type = _VALUES[kind]
    if library == "pyarrow":
        return pa.array(values, type=arrow_type)
    return pl.Series(values, dtype=polars_type)


@st.composite
def _calls(draw) -> list[tuple[object, str | None]]:
    """Calls of a drain, most under a request id, each a column of zero to three rows of
    one type (in some drains another type among them, a null now and then)."""
    library = draw(st.sampled_from(["pyarrow", "polars"]))
    kind = draw(st.sampled_from(sorted(_VALUES)))
    nulls = draw(st.booleans())
    calls = []
    for number in range(draw(st.integers(1, 12))):
        own = kind if draw(st.integers(0, 9)) else draw(st.sampled_from(sorted(_VALUES)))
        values = draw(st.lists(_VALUES[own][0] | (st.none() if nulls else st.nothing()),
                               min_size=0 if draw(st.integers(0, 9)) == 0 else 1,
                               max_size=3))
        calls.append((_column(values, own, library),
                      f"r-{number}" if draw(st.integers(0, 4)) else None))
    return calls


def _first(result) -> object:
    value = result[0]
    value = value.as_py() if hasattr(value, "as_py") else value
    return value + 0.25 if isinstance(value, float) else str(value)


def _judged(calls, task: str, classifier: bool, cache_bytes: int) -> tuple[dict, dict]:
    # An empty answer has no row for an outcome to judge: it is called, never judged.
    judged_calls = [(result, request_id) if len(result) else (result, None)
                    for result, request_id in calls]
    return judged_after_drain(judged_calls, _IntClassifier() if classifier else None, task,
                              cache_bytes, _first)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 2**20]))
def test_columns_of_numbers_join_as_each_read_alone(monkeypatch, calls, task, classifier,
                                                    cache_bytes):
    as_the_general_path(monkeypatch, record_arrays, "_column_numbers_as_arrays",
                        lambda: _judged(calls, task, classifier, cache_bytes))


def _call_by_call(outputs, order, model_classes=None, **options):
    """The same drain with every call read alone (the general path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prediction_batch, "plain_arrow_arrays", lambda results: None)
        return _figures(outputs, order, model_classes, **options)


@st.composite
def _arrow_outputs(draw) -> list:
    kind = draw(st.sampled_from(sorted(_VALUES)))
    nulls = draw(st.booleans())
    outputs = []
    for _ in range(draw(st.integers(1, 5))):
        own = kind if draw(st.integers(0, 5)) else draw(st.sampled_from(sorted(_VALUES)))
        outputs.append(_column(draw(st.lists(
            _VALUES[own][0] | (st.none() if nulls else st.nothing()), max_size=3)), own,
            "pyarrow"))
    return outputs


@settings(max_examples=80, deadline=None)
@given(_arrow_outputs(), st.lists(st.integers(0, 5), min_size=2, max_size=30),
       st.sampled_from(["auto", "classification", "regression"]),
       st.sampled_from([None, [0, 1], [0.0, 1.0]]))
@example([pa.array([1.0, 0.0]), pa.array([0.5])], [0, 1], "auto", [0.0, 1.0])
@example([pa.array([True]), pa.array([False, True])], [0, 1, 1], "auto", None)
def test_pyarrow_arrays_of_many_calls_record_what_each_call_read_alone_records(
        outputs, order, task, classes):
    order = [i % len(outputs) for i in order]
    together = drained_every_way(outputs, order, _call_by_call, classes, task=task)
    rows = [value for i in order for value in outputs[i].to_pylist()]
    assert together["sizes"][:2] == (len(order), len(rows))


def test_columns_of_numbers_take_the_batched_readers(monkeypatch):
    """The readers above are the ones a drain of such columns takes (a test of a reader
    that never ran would prove nothing); a null among them, or text, sends them on."""
    read = watched(monkeypatch, record_arrays, "_column_numbers_as_arrays",
                   lambda found: found and isinstance(found[0], np.ndarray))
    folded = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    stacked = watched(monkeypatch, prediction_batch, "plain_arrow_arrays",
                      lambda found: found is not None)
    for make in (pa.array, pl.Series):
        for values in ([0.5], [None], ["cat"]):
            calls = [(make([1.5]), "r-0"), (make(values), "r-1")] if values != ["cat"] \
                else [(make(["dog"]), "r-0"), (make(values), "r-1")]
            _, entries = _judged(calls, "auto", False, 2**20)
            assert sorted(entries) == ["r-0", "r-1"]
    assert read == [True, False, False, True, False, False]
    assert folded[0] is True and folded[3] is True
    plain = _figures([pa.array([0.5]), pa.array([1.5, 2.5])], [0, 1, 1])
    assert stacked[-1] is True
    assert plain["sizes"][:2] == (3, 5)
