"""A function returning a pandas Series per call (``pd.Series(model.predict(x))``), called
with ``request_id=``: a drain of Series of one plain numpy dtype is read as their arrays
by the one-array fold (``record_arrays._series_as_arrays``), with the series, the rows kept
for each id and the outcomes judged that the general path, reading each Series alone,
makes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import drain_folds, record_arrays
from test_outcomes_array_rows import judged_after_drain


class _IntClassifier:
    """A classifier of three whole-number classes whose predict gives its input back."""

    classes_ = np.array([0, 1, 2])

    def predict(self, x):
        return x


_VALUES = {
    "float64": st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, 2.0, np.nan])),
    "float32": st.floats(-1e3, 1e3, width=32),
    "int64": st.integers(0, 3),
    "bool": st.booleans(),
    "object": st.sampled_from(["cat", "dog", None]),
    "object text": st.sampled_from(["cat", "dog", "é"]),
    # pandas' text (Arrow-backed in pandas 3); a label ending in NUL is read call by call.
    "str": st.sampled_from(["cat", "dog", "é", "a\x00"]),
    # Its other storages and Arrow's own text dtypes, a row missing in some.
    "string": st.sampled_from(["cat", "dog", None]),
    "string[python]": st.sampled_from(["cat", "dog", "é"]),
    "large_string[pyarrow]": st.sampled_from(["cat", "dog", "a\x00", None]),
    "string[pyarrow] (Arrow)": st.sampled_from(["cat", "dog", "é"]),
    # pandas' own dtypes, read call by call: their missing values and categories have
    # rules of their own.
    "Int64": st.sampled_from([0, 1, 2, None]),
    "boolean": st.sampled_from([True, False, None]),
    "category": st.sampled_from(["0", "1"]),
}


_DTYPES = {"object text": "object", "large_string[pyarrow]": pd.ArrowDtype(pa.large_string()),
           "string[pyarrow] (Arrow)": pd.ArrowDtype(pa.string())}


@st.composite
def _calls(draw) -> list[tuple[object, str | None]]:
    """Calls of a drain, most under a request id, each a Series of one to three rows of one
    dtype (in some drains another dtype among them), named or not."""
    dtype = draw(st.sampled_from(sorted(_VALUES)))
    calls = []
    for number in range(draw(st.integers(1, 15))):
        kind = dtype if draw(st.integers(0, 9)) else draw(st.sampled_from(sorted(_VALUES)))
        values = draw(st.lists(_VALUES[kind], min_size=1, max_size=3))
        series = pd.Series(values, dtype=_DTYPES.get(kind, kind),
                           name=draw(st.sampled_from([None, "price"])))
        calls.append((series, f"r-{number}" if draw(st.integers(0, 4)) else None))
    return calls


def _first(result) -> object:
    value = result.iloc[0]
    return value + 0.25 if isinstance(value, (float, np.floating)) else str(value)


def _judged(calls, task: str, classifier: str | None, cache_bytes: int) -> tuple[dict, dict]:
    """`classifier`: "integers" (a model whose ``classes_`` are 0, 1, 2), "text" (declared
    ``classes=["cat", "dog"]``) or None."""
    return judged_after_drain(calls, _IntClassifier() if classifier == "integers" else None,
                              task, cache_bytes, _first,
                              {"classes": ["cat", "dog"]} if classifier == "text" else {})


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.sampled_from([None, "integers", "text"]),
       cache_bytes=st.sampled_from([2048, 2**20]))
def test_series_records_join_as_each_series_read_alone(monkeypatch, calls, task, classifier,
                                                        cache_bytes):
    as_the_general_path(monkeypatch, record_arrays, "_series_as_arrays",
                        lambda: _judged(calls, task, classifier, cache_bytes))


def test_series_take_the_one_array_fold(monkeypatch):
    """The fold above is the one a drain of Series of one plain dtype takes (a test of a
    fold that never ran would prove nothing); Series of two dtypes do not."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    for calls in ([(pd.Series([0.5]), "r-0"), (pd.Series([1.5, 2.5], name="p"), "r-1")],
                  [(pd.Series([1]), "r-0"), (pd.Series([0.5]), "r-1")]):
        _, entries = _judged(calls, "auto", None, 2**20)
        assert sorted(entries) == ["r-0", "r-1"]
    assert taken == [True, False]
    assert entries["r-1"][:2] == (None, "(0.5,)")


@pytest.mark.parametrize("dtype", ["str", "object", "string", "string[python]",
                                   pd.ArrowDtype(pa.large_string())])
def test_text_series_take_the_one_array_fold(monkeypatch, dtype):
    """Series of text (pandas' own, or objects) without a missing row take it too; one
    with a missing row does not."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    for labels in (["dog"], [None]):
        calls = [(pd.Series(["cat"], dtype=dtype), "r-0"), (pd.Series(labels, dtype=dtype),
                                                             "r-1")]
        series, entries = _judged(calls, "auto", "text", 2**20)
        assert entries["r-0"][:2] == ("('cat',)", None)
    assert taken == [True, False]
    assert sum(value for key, value in series.items()
               if key[0] == "inferwatch_predicted_class_total") == 1
