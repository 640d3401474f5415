"""Data quality and drift, second pass: float32 columns of every frame library, row dicts
whose keys share one text, and drift windows at their limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference

# Decimal values as a user types them or a JSON request carries them.
decimals = st.integers(-10**6, 10**6).map(lambda i: i / 1000)


def _float32_columns(values: list[float]) -> dict[str, object]:
    """One float32 column with a missing value, as each frame library holds it."""
    import polars as pl

    with_null = [*values, None]
    return {
        "numpy": np.array([*values, np.nan], dtype=np.float32),
        "pandas Float32": pd.Series(pd.array(with_null, dtype="Float32")),
        "pandas float32[pyarrow]": pd.Series(pd.array(with_null, dtype="float32[pyarrow]")),
        "polars": pl.Series(with_null, dtype=pl.Float32),
        "pyarrow": pa.array(with_null, type=pa.float32()),
    }


# --- 1. float32 columns of pandas nullable and Arrow-backed dtypes -----------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(decimals, min_size=2, max_size=30))
def test_float32_columns_of_every_library_are_checked_alike(values):
    """The training values, served as float32 by any frame library, are in range and land in
    the bins a numpy float32 column lands in."""
    ref = Reference.from_data({"x": values, "tag": ["a"] * len(values)})
    checker = BatchChecker(ref)
    results = {}
    for name, column in _float32_columns(values).items():
        as_dict = checker.check({"x": column, "tag": ["a"] * (len(values) + 1)})
        results[name] = as_dict
        assert as_dict.out_of_range.tolist() == [0, 0], name
        assert as_dict.missing.tolist() == [1, 0], name
        assert as_dict.input_errors == {}, name
    expected = results["numpy"].flat_bin_counts.tolist()
    for name, result in results.items():
        assert result.flat_bin_counts.tolist() == expected, name


@pytest.mark.parametrize("dtype", ["Float32", "float32[pyarrow]"])
def test_pandas_nullable_float32_at_the_maximum_is_in_range(dtype):
    ref = Reference.from_data({"p": [0.0, 0.7, 0.1]})
    frame = pd.DataFrame({"p": pd.array([0.1, 0.7, None], dtype=dtype)})
    result = BatchChecker(ref).check(frame)
    assert result.out_of_range.tolist() == [0]
    assert result.missing.tolist() == [1]
    numpy_result = BatchChecker(ref).check(np.array([[0.1], [0.7]], dtype=np.float32))
    assert result.flat_bin_counts.tolist() == numpy_result.flat_bin_counts.tolist()


# --- 2. row dicts whose keys share one text (0 and "0") ----------------------------------------

@pytest.mark.parametrize("max_pending_rows", [65_536, 1])
def test_row_dicts_with_0_and_text_0_follow_the_dict_of_columns_rule(max_pending_rows):
    ref = Reference.from_data({"0": [1.0, 2.0], "b": [1.0, 2.0]})
    checker = BatchChecker(ref, max_pending_rows=max_pending_rows)
    rows = [{0: 1.0, "0": 50.0, "b": 1.5}]
    as_rows = checker.check(rows)
    as_columns = checker.check({0: [1.0], "0": [50.0], "b": [1.5]})
    as_frame = checker.check(pd.DataFrame([[1.0, 50.0, 1.5]], columns=[0, "0", "b"]))
    for result in (as_rows, as_columns, as_frame):
        assert result.input_errors == {"wrong_shape": 1}
        assert result.rows == 1
        # Neither key wins: 50.0 would be out of range, 1.0 binned.
        assert result.out_of_range.tolist() == [0, 0]
        assert result.bin_counts[0].sum() == 0 and result.bin_counts[1].sum() == 1
    one_row = checker.check(rows[0])
    assert one_row.input_errors == {"wrong_shape": 1}
    assert one_row.bin_counts[0].sum() == 0


def test_row_dicts_with_colliding_unknown_keys_count_both_as_extra():
    checker = BatchChecker(Reference.from_data({"a": [1.0, 2.0], "t": ["x", "y"]}))
    result = checker.check([{"a": 1.0, "t": "x", 5: 0, "5": 1}, {"a": 2.0, "t": "y"}])
    assert result.input_errors == {"extra_column": 2}
    columns = checker.check({"a": [1.0], "t": ["x"], 5: [0], "5": [1]})
    assert columns.input_errors == {"extra_column": 2}
    assert result.bin_counts[0].sum() == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={
    0: decimals, "0": decimals, "b": decimals, 7: decimals, "7": decimals}), min_size=1,
    max_size=6))
def test_row_dicts_account_for_every_key(rows):
    """Every key of every row is read, extra, or (named twice) the batch's wrong_shape;
    every feature of every row is read, missing, or unreadable: nothing silently wins."""
    checker = BatchChecker(Reference.from_data({"0": [0.0, 1.0], "b": [0.0, 1.0]}))
    result = checker.check(rows)
    if not any(rows):
        return
    errors = result.input_errors
    twice = [r for r in rows if 0 in r and "0" in r]
    assert ("wrong_shape" in errors) == bool(twice)
    read_0 = sum(1 for r in rows if (0 in r) != ("0" in r))
    assert result.bin_counts[0].sum() + result.missing[0] == read_0
    extra = sum(1 for r in rows for k in r if str(k) == "7")
    assert errors.get("extra_column", 0) == extra
    missing = sum(1 for r in rows if 0 not in r and "0" not in r) + \
        sum(1 for r in rows if "b" not in r)
    assert errors.get("missing_column", 0) == missing


# --- 3. huge counts: overflowing sums and casts -------------------------------------------------

def test_shares_of_counts_whose_sum_overflows_a_float():
    from inferwatch.quality.drift import js_distance, ks_distance, psi

    big = [1e308, 1e308]
    assert ks_distance([0.5, 0.5], big) == pytest.approx(0.0)
    assert js_distance([0.5, 0.5], big) == pytest.approx(0.0)
    assert psi([0.5, 0.5], big) == pytest.approx(0.0)
    assert js_distance(big, [1, 1]) == pytest.approx(0.0)
    assert ks_distance([1.0, 0.0], [1e308, 1e308]) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=6),
       st.lists(st.integers(0, 50), min_size=1, max_size=6), st.sampled_from([1e300, 1e306]))
@example(ref=[50] * 6, counts=[50, 50, 50, 50, 50, 0], scale=1e306)
def test_drift_does_not_change_when_counts_are_scaled(ref, counts, scale):
    from inferwatch.quality.drift import js_distance, ks_distance

    n = min(len(ref), len(counts))
    ref, counts = np.array(ref[:n], dtype=float), np.array(counts[:n], dtype=float)
    plain = (js_distance(ref, counts), ks_distance(ref, counts))
    scaled = (js_distance(ref * scale, counts * scale), ks_distance(ref * scale, counts * scale))
    np.testing.assert_allclose(scaled, plain, atol=1e-9, equal_nan=True)


def test_window_refuses_a_count_past_int64_rather_than_storing_it_negative():
    from inferwatch.quality.drift_window import DriftWindow

    window = DriftWindow([2])
    with pytest.raises(ValueError, match="at most"):
        window.add(np.array([1e19, 0.0]), rows=1, now=100.0)
    with pytest.raises(ValueError, match="at most"):
        window.add(np.array([2**63, 0], dtype=np.uint64), rows=1, now=100.0)
    assert window.flat_counts(now=100.0)[0].tolist() == [0, 0]


def test_window_counts_saturate_instead_of_wrapping_negative():
    """A window whose counts reach the int64 limit (summed across buckets, merged from
    workers) still scores: a wrapped, negative count made every scrape raise."""
    from inferwatch.quality.drift import DriftScorer
    from inferwatch.quality.drift_window import DriftWindow

    ref = Reference.from_data({"a": [0.0, 1.0, 2.0, 3.0]}, bins=2)
    scorer = DriftScorer(ref)
    window = DriftWindow(BatchChecker(ref).feature_layout, max_age_seconds=60, age_buckets=6)
    huge = np.full(window.layout.total, 2**62, dtype=np.int64)
    for now in (0.0, 10.0, 20.0):  # three buckets of 2**62
        assert window.add(huge, rows=2**62, now=now)
        assert window.add(huge, rows=2**62, now=now)  # the same bucket again
    other = DriftWindow(window.layout, max_age_seconds=60, age_buckets=6)
    other.add(huge, rows=1, now=20.0)
    window.merge(other)
    counts, rows = window.flat_counts(now=20.0)
    assert (counts > 0).all() and rows > 0
    scores = scorer.scores(counts)
    assert scores[("a", "ks")] == pytest.approx(0.0)
    assert window.to_dict()["buckets"][-1]["counts"] == [2**63 - 1] * window.layout.total
