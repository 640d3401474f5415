"""A function returning a column of text that Arrow holds per call (pandas 3's
``Series.values``, a pyarrow array, a polars ``String`` Series), called with
``request_id=``: a drain of such columns of one class is read as arrays of their text by
the one-array fold (``record_arrays._arrow_text_as_arrays``), with the series, the rows
kept for each id and the outcomes judged that the general path, reading each column alone,
makes."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fold_checks import as_the_general_path, watched
from inferwatch.core import drain_folds, record_arrays
from test_outcomes_array_rows import judged_after_drain

_LABELS = st.sampled_from(["cat", "dog", "owl", "é", "", "a\x00"])

_KINDS = {
    "pandas text array": lambda labels: pd.Series(labels, dtype="str").array,
    "pandas Arrow string array": lambda labels: pd.Series(
        labels, dtype=pd.ArrowDtype(pa.large_string())).array,
    "pyarrow string array": lambda labels: pa.array(labels, type=pa.string()),
    "pyarrow large_string array": lambda labels: pa.array(labels, type=pa.large_string()),
    "pyarrow chunked array": lambda labels: pa.chunked_array([pa.array(labels)]),
    "polars String Series": lambda labels: pl.Series(labels, dtype=pl.String),
}


_ODD = ["none", "missing", "another kind", "empty"]


@st.composite
def _calls(draw, odd: str) -> list[tuple[object, str | None]]:
    """Calls of a drain, most under a request id, each a column of one to three labels of
    one kind; with `odd`, one of them with a missing row, of another kind, or empty."""
    kind = draw(st.sampled_from(sorted(_KINDS)))
    results = [_KINDS[kind](draw(st.lists(_LABELS, min_size=1, max_size=3)))
               for _ in range(draw(st.integers(1, 15)))]
    at = draw(st.integers(0, len(results) - 1))
    if odd == "missing":
        results[at] = _KINDS[kind](["cat", None])
    elif odd == "another kind":
        results[at] = _KINDS[draw(st.sampled_from(sorted(_KINDS)))](["dog"])
    elif odd == "empty":
        results[at] = _KINDS[kind]([])
    return [(result, f"r-{number}" if draw(st.integers(0, 4)) else None)
            for number, result in enumerate(results)]


def _first(result) -> str:
    rows = result.to_pylist() if hasattr(result, "to_pylist") else list(result)
    return str(rows[0]) if rows else "cat"


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), odd=st.sampled_from(_ODD),
       task=st.sampled_from(["auto", "classification", "regression"]),
       classes=st.sampled_from([None, ["cat", "dog"], ["cat", "dog", "owl", "é", "", "a\x00"]]),
       cache_bytes=st.sampled_from([2048, 2**20]))
def test_arrow_text_records_join_as_each_column_read_alone(monkeypatch, data, odd, task,
                                                           classes, cache_bytes):
    calls = data.draw(_calls(odd))
    as_the_general_path(monkeypatch, record_arrays, "_arrow_text_as_arrays", lambda:
                        judged_after_drain(calls, None, task, cache_bytes, _first,
                                           {} if classes is None else {"classes": classes}))


@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_arrow_text_columns_take_the_one_array_fold(monkeypatch, kind):
    """The fold above is the one such a drain takes (a test of a fold that never ran would
    prove nothing); a column with a missing row sends the drain to the general path."""
    taken = watched(monkeypatch, drain_folds, "_fold_plain_arrays")
    make = _KINDS[kind]
    for second in (["dog", "cat"], [None]):
        calls = [(make(["cat"]), "r-0"), (make(second), "r-1")]
        series, entries = judged_after_drain(calls, None, "auto", 2**20, _first,
                                             {"classes": ["cat", "dog"]})
        assert entries["r-0"][:2] == ("('cat',)", None)
    assert taken == [True, False]
    assert sum(value for key, value in series.items()
               if key[0] == "inferwatch_predicted_class_total") == 1
