"""Columns of text that Arrow holds (pandas 3's own text dtype, ``string[pyarrow]``, an
ArrowDtype string, a polars ``String`` Series, a pyarrow array) are counted per distinct
label by pyarrow, never made a Python string a row: the same series as reading each row as
the Python string it holds, for one call's column or many, on the fast path and in a huge
batch's slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core import pending_calls, prediction_batch
from inferwatch.core.object_labels import arrow_text_counts
from test_outcomes_array_rows import _assert_same_samples, _recorded

_TEXTS = ["cat", "dog", "é", "", "bird", "x" * 300, "猫", "c:1"]
_CONTAINERS = ["pandas text", "string[pyarrow]", "ArrowDtype", "polars", "pyarrow",
               "pyarrow chunked", "pandas text values"]


def _column(cells: list, container: str):
    if container == "pandas text":  # pandas 3's own dtype for a column of text
        return pd.Series(cells, dtype="str")
    if container == "pandas text values":  # such a Series' values: pandas' Arrow array
        return pd.Series(cells, dtype="str").array
    if container == "string[pyarrow]":
        return pd.Series(cells, dtype="string[pyarrow]")
    if container == "ArrowDtype":
        return pd.Series(cells, dtype=pd.ArrowDtype(pa.string()))
    if container == "polars":
        return pl.Series(cells, dtype=pl.String)
    array = pa.array(cells, type=pa.string())
    if container == "pyarrow chunked":
        return pa.chunked_array([array[:len(cells) // 2], array[len(cells) // 2:]])
    return array


@st.composite
def _calls(draw):
    """Each call's column of text and missing rows, in one container for all calls, or
    (`mixed`) one drawn for each call: the batched look at pandas' columns meets the
    others."""
    containers = draw(st.lists(st.sampled_from(_CONTAINERS), min_size=1, max_size=3))
    mixed = draw(st.booleans())
    pool = draw(st.lists(st.sampled_from(_TEXTS) | st.text(max_size=3), min_size=1,
                         max_size=5))
    pool += [None] * draw(st.integers(0, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    sizes = draw(st.lists(st.integers(1, 260), min_size=1, max_size=6))
    return [_column([pool[index] for index in rng.integers(0, len(pool), rows)],
                    containers[call % len(containers)] if mixed else containers[0])
            for call, rows in enumerate(sizes)]


def _run(calls: list, classes: list | None, max_classes: int | None) -> dict:
    scraper = Scraper(drain_interval=3600)
    try:
        options = {} if classes is None else {"classes": classes}
        model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                      registry=scraper.registry, **options)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        if max_classes is not None:
            monitor.configure(max_classes=max_classes)
        for column in calls:
            assert model(column) is column
        monitor.drain()
        return _recorded(scraper)
    finally:
        scraper.registry.close()


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_calls(), classes=st.sampled_from([None, ["cat", "dog", "é"], _TEXTS]),
       max_classes=st.sampled_from([None, 2]), sliced=st.booleans())
def test_arrow_text_counts_as_each_rows_python_string(monkeypatch, calls, classes,
                                                      max_classes, sliced):
    """Counted by pyarrow, against the same calls read with that count switched off (each
    row a Python string, counted by value): the same series, classes past max_classes
    folded alike; with `sliced`, a column past 100 rows is cut into slices of 100."""
    # Patched per example: the fixture's own patches would outlive it into the next one.
    with monkeypatch.context() as patch:
        if sliced:
            patch.setattr(pending_calls, "SLICE_ROWS", 100)
        counted = _run(calls, classes, max_classes)
        patch.setattr(prediction_batch.PredictionBatch, "_add_arrow_text",
                      lambda self, columns: False)
        read = _run(calls, classes, max_classes)
    _assert_same_samples(counted, read)


def test_the_count_is_the_one_the_drain_takes(monkeypatch):
    """A drain of such columns is counted there (a test of a count that never ran would
    prove nothing); a column of Python objects is looked at and left to the other paths."""
    taken = []
    count = prediction_batch.arrow_text_counts

    def watched(columns):
        found = count(columns)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(prediction_batch, "arrow_text_counts", watched)
    _run([pd.Series(["cat", None, "dog"], dtype="str")] * 3, None, None)
    _run([pd.Series(["cat", None, "dog"], dtype=object)] * 3, None, None)
    assert taken == [True, False]


@pytest.mark.parametrize("columns", [
    [pd.Series(["a"], dtype=object)],  # Python objects: read as they are
    [pd.Series([1.5], dtype="float64[pyarrow]")],  # not text
    [pa.array(["a"], type=pa.string()), pa.array(["b"], type=pa.large_string())],
    [pd.Series(["a"], dtype="str"), pd.Series(["a"], dtype=object)],
], ids=["objects", "floats", "two text types", "mixed"])
def test_what_is_not_one_kind_of_arrow_text_is_not_counted_here(columns):
    assert arrow_text_counts(columns) is None


def test_counts_follow_the_order_rows_first_name_them():
    """In the order a count row by row meets them: past max_classes, the classes seen first
    keep series of their own."""
    columns = [pd.Series(["b", None, "a"], dtype="str"), pl.Series(["c", "a"]).cast(pl.String)]
    assert arrow_text_counts(columns[:1]) == ({"b": 1, None: 1, "a": 1}, [3])
    assert list(arrow_text_counts([columns[0], pd.Series(["c", "b"], dtype="str")])[0]) == \
        ["b", None, "a", "c"]
