"""Arrow tables (what ``pyarrow.parquet.read_table`` returns) as training data and as live
batches: columns are read by name, as pandas and polars frames are, never by position.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference

pa = pytest.importorskip("pyarrow")


def _table() -> pa.Table:
    rng = np.random.default_rng(3)
    return pa.table({
        "amount": rng.lognormal(3, 1, 400),
        "count": pa.array([int(v) if v % 7 else None for v in range(400)], pa.int64()),
        "channel": pa.array([["web", "app", None, "shop"][i % 4] for i in range(400)]),
        "flag": pa.array([[True, False, None][i % 3] for i in range(400)]),
    })


@pytest.mark.parametrize("batch", [False, True])
def test_an_arrow_table_is_profiled_by_column_name(batch):
    table = _table()
    data = table.to_batches()[0] if batch else table
    ref = Reference.from_data(data)
    assert ref.feature_names == ["amount", "count", "channel", "flag"]
    assert ref == Reference.from_data(table.to_pandas())


def test_an_arrow_table_with_two_columns_of_one_name_is_refused():
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["a", "a"])
    with pytest.raises(ValueError, match="duplicate column name 'a'"):
        Reference.from_data(table)


def _counts(result) -> tuple:
    return (result.rows, result.missing.tolist(), result.out_of_range.tolist(),
            result.unseen_category.tolist(), result.flat_bin_counts.tolist(),
            dict(sorted(result.input_errors.items())))


def test_an_arrow_batch_in_another_column_order_is_checked_by_name():
    table = _table()
    checker = BatchChecker(Reference.from_data(table.to_pandas()))
    shuffled = table.select(["flag", "channel", "amount", "count"])
    expected = checker.check(table.to_pandas())
    assert expected.input_errors == {}
    assert _counts(checker.check(shuffled)) == _counts(expected)
    assert _counts(checker.check(shuffled.to_batches()[0])) == _counts(expected)


def test_an_arrow_batch_with_missing_and_extra_columns_counts_them():
    table = _table()
    checker = BatchChecker(Reference.from_data(table.to_pandas()))
    partial = table.select(["amount", "channel"]).append_column("zip", pa.array(["1"] * 400))
    result = checker.check(partial)
    assert result.input_errors == {"missing_column": 800, "extra_column": 400}
    assert _counts(result) == _counts(checker.check(partial.to_pandas()))


def test_an_empty_arrow_table_is_an_empty_batch():
    table = _table()
    checker = BatchChecker(Reference.from_data(table.to_pandas()))
    assert checker.check(table.slice(0, 0)).input_errors == {"empty_batch": 1}


def test_a_report_of_an_arrow_table_equals_the_report_of_its_pandas_frame():
    table = _table()
    ref = Reference.from_data(table.to_pandas())
    shuffled = table.select(["channel", "flag", "count", "amount"])
    from_arrow = ref.compare(shuffled)
    from_pandas = ref.compare(table.to_pandas())
    assert from_arrow.features == from_pandas.features
    assert from_arrow.quality == from_pandas.quality


def test_long_arrow_batches_are_checked_in_slices():
    table = _table()
    ref = Reference.from_data(table.to_pandas())
    sliced = BatchChecker(ref, max_pending_rows=37).check(table)
    assert _counts(sliced) == _counts(BatchChecker(ref).check(table))


@settings(max_examples=30, deadline=None)
@given(
    numbers=st.lists(st.none() | st.floats(-1e9, 1e9, allow_nan=False), min_size=1,
                     max_size=30),
    seed=st.integers(0, 2**16),
)
def test_arrow_and_pandas_give_the_same_counts(numbers, seed):
    rng = np.random.default_rng(seed)
    n = len(numbers)
    words = [["a", "b", None, "c\u00e9"][i] for i in rng.integers(0, 4, n)]
    ints = [None if v % 5 == 0 else int(v) for v in rng.integers(-10, 10, n)]
    table = pa.table({"x": pa.array(numbers, pa.float64()), "w": pa.array(words, pa.string()),
                      "i": pa.array(ints, pa.int64())})
    ref = Reference.from_data(table)
    assert ref == Reference.from_data(table.to_pandas())
    order = list(rng.permutation(["x", "w", "i"]))
    live = table.select(order)
    checker = BatchChecker(ref)
    assert _counts(checker.check(live)) == _counts(checker.check(pd.DataFrame(
        {name: table.column(name).to_pandas() for name in order})))


@pytest.mark.parametrize("make", [
    lambda: pd.DataFrame(index=range(3)),
    lambda: pd.DataFrame({"other": [1, 2, 3]})[[]],
])
def test_a_frame_of_rows_without_columns_counts_every_feature_missing(make):
    frame = make()
    assert len(frame) == 3
    checker = BatchChecker(Reference.from_data({"a": [1.0, 2.0], "c": ["x", "y"]}))
    before = faults.internal_error_counts().get("quality", 0)
    result = checker.check(frame)
    assert result.rows == 3
    assert result.input_errors == {"missing_column": 6}
    assert faults.internal_error_counts().get("quality", 0) == before


def _scored_reference() -> Reference:
    return Reference.from_data({"a": np.arange(100.0)},
                               predictions={"p": np.linspace(0.0, 1.0, 100),
                                            "k": np.array(["x", "y"] * 50)})


def _single_output_reference() -> Reference:
    return Reference.from_data({"a": np.arange(100.0)}, predictions=np.linspace(0.0, 1.0, 100))


def test_an_arrow_array_with_nulls_is_a_column_of_a_batch():
    checker = BatchChecker(_scored_reference())
    before = faults.internal_error_counts().get("quality", 0)
    result = checker.check({"a": pa.array([1.0, None, 500.0])})
    assert (result.rows, result.missing.tolist(), result.out_of_range.tolist()) == (3, [1], [1])
    counts = checker.check_predictions({"p": pa.array([0.1, None, 0.9]),
                                        "k": pa.array(["x", None, "y"])})
    assert (counts["p"].sum(), counts["k"].tolist()) == (2, [1, 1, 0])
    assert faults.internal_error_counts().get("quality", 0) == before


@pytest.mark.parametrize("make", [
    pytest.param(pd.Series, id="pandas-series"),
    pytest.param(lambda v: pd.Series(v, name="score"), id="pandas-series-named"),
    pytest.param(lambda v: pd.DataFrame({"value": v}), id="pandas-frame"),
    pytest.param(lambda v: pd.DataFrame({"score": v}), id="pandas-frame-by-position"),
    pytest.param(lambda v: pd.Series(v).astype("Float64"), id="pandas-nullable"),
    pytest.param(lambda v: pa.array(v), id="arrow-array"),
    pytest.param(lambda v: pa.table({"value": v}), id="arrow-table"),
    pytest.param(lambda v: __import__("polars").Series("score", v), id="polars-series"),
])
def test_predictions_of_a_report_in_a_series_or_frame_are_compared(make):
    ref = _single_output_reference()
    values = np.linspace(0.0, 1.0, 50)
    expected = ref.compare({"a": np.arange(50.0)}, predictions=values).outputs
    report = ref.compare({"a": np.arange(50.0)}, predictions=make(values))
    assert report.outputs[0].rows == 50
    assert report.outputs == expected


def test_a_frame_of_predictions_is_read_by_output_name():
    ref = _scored_reference()
    p = np.linspace(0.0, 1.0, 40)
    k = np.array(["x", "y", "y", "y"] * 10)
    expected = BatchChecker(ref).check_predictions({"p": p, "k": k})
    for frame in (pd.DataFrame({"k": k, "p": p}), pa.table({"k": k, "p": p})):
        got = BatchChecker(ref).check_predictions(frame)
        assert {n: c.tolist() for n, c in got.items()} == \
            {n: c.tolist() for n, c in expected.items()}


def test_an_arrow_table_given_to_a_monitor_is_checked_by_name():
    from inferwatch.core.registry import Registry

    table = pa.table({"a": np.arange(100.0), "b": ["x", "y"] * 50})
    registry = Registry()
    try:
        monitor = registry.monitor("m", "1").configure(
            reference=Reference.from_data(table.to_pandas()))
        with monitor.request() as r:
            r.features(table.select(["b", "a"]))
            r.prediction(0.5)
        registry.drain()
        state = registry.states()[0]
        assert not state.counters.get("inferwatch_input_errors_total")
        counts, rows = state.extras["drift"].features.counts()
        assert rows == 100
        assert [c.tolist() for c in counts] == [[10] * 10, [50, 50, 0]]
    finally:
        registry.close()
