"""Data-quality checks: counts against an independent computation, every container, bad input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch import faults
from inferwatch.catalogue import OTHER
from inferwatch.quality.checks import REASONS, BatchChecker, BatchResult
from inferwatch.quality.reference import Reference

RNG = np.random.default_rng(42)
NUMERIC_REF = Reference.from_data(RNG.normal(size=(5000, 4)), feature_names=["a", "b", "c", "d"])
MIXED_REF = Reference.from_data({
    "age": RNG.integers(18, 90, 1000).astype(float),
    "city": RNG.choice(["Berlin", "Paris", "Rome"], 1000),
    "score": RNG.random(1000),
}, predictions={"proba": RNG.random(1000), "label": RNG.choice(["yes", "no"], 1000)})


def expected_numeric(ref: Reference, X: np.ndarray, tolerance: float = 0.0) -> dict:
    """The same counts, one feature and one value at a time."""
    missing, out_of_range, bins, non_finite = [], [], [], 0
    for j, name in enumerate(ref.feature_names):
        profile = ref.features[name]
        col = X[:, j]
        present = col[~np.isnan(col)]
        slack = tolerance * (profile.max - profile.min)
        missing.append(int(np.isnan(col).sum()))
        out_of_range.append(sum(1 for v in present
                                if v < profile.min - slack or v > profile.max + slack))
        non_finite += int(np.isinf(present).sum())
        bins.append(np.bincount(np.digitize(present, profile.edges), minlength=profile.n_bins))
    return {"missing": missing, "out_of_range": out_of_range, "bins": bins,
            "non_finite": non_finite}


def numeric_batch(n: int = 5000) -> np.ndarray:
    X = RNG.normal(0.2, 1.3, size=(n, 4))
    X[RNG.random((n, 4)) < 0.05] = np.nan
    X[3, 1], X[4, 2] = np.inf, -np.inf
    return X


def assert_same(result: BatchResult, other: BatchResult) -> None:
    assert result.rows == other.rows
    assert result.missing.tolist() == other.missing.tolist()
    assert result.out_of_range.tolist() == other.out_of_range.tolist()
    assert result.unseen_category.tolist() == other.unseen_category.tolist()
    assert result.flat_bin_counts.tolist() == other.flat_bin_counts.tolist()
    assert result.input_errors == other.input_errors


@pytest.mark.parametrize("tolerance", [0.0, 0.25])
def test_numeric_matrix_counts_equal_a_value_by_value_computation(tolerance):
    X = numeric_batch()
    result = BatchChecker(NUMERIC_REF, range_tolerance=tolerance).check(X)
    expected = expected_numeric(NUMERIC_REF, X, tolerance)
    assert result.rows == len(X)
    assert result.missing.tolist() == expected["missing"]
    assert result.out_of_range.tolist() == expected["out_of_range"]
    assert [b.tolist() for b in result.bin_counts] == [b.tolist() for b in expected["bins"]]
    assert result.input_errors == {"non_finite": expected["non_finite"]}
    assert result.unseen_category.tolist() == [0, 0, 0, 0]


def test_every_container_gives_the_same_counts():
    X = numeric_batch(300)
    names = NUMERIC_REF.feature_names
    checker = BatchChecker(NUMERIC_REF)
    reference_result = checker.check(X)
    frame = pd.DataFrame(X, columns=names)
    rows = [dict(zip(names, row)) for row in X.tolist()]
    assert_same(checker.check(frame), reference_result)
    assert_same(checker.check({n: X[:, j] for j, n in enumerate(names)}), reference_result)
    assert_same(checker.check({n: X[:, j].tolist() for j, n in enumerate(names)}), reference_result)
    assert_same(checker.check(rows), reference_result)
    # None instead of NaN takes the value-by-value path: the counts must not change.
    with_none = [{k: None if v != v else v for k, v in row.items()} for row in rows]
    assert_same(checker.check(with_none), reference_result)
    assert_same(checker.check(X.tolist()), reference_result)
    one_at_a_time = checker.empty_result()
    for row, array_row in zip(rows, X):
        one_at_a_time.add(checker.check(row))
        one_at_a_time.add(checker.check(array_row))
    doubled = checker.check(np.vstack([X, X]))
    assert_same(one_at_a_time, doubled)


def test_mixed_reference_counts_unseen_categories_into_other():
    checker = BatchChecker(MIXED_REF)
    frame = pd.DataFrame({"age": [30.0, None, 200.0, 40.0],
                          "city": ["Paris", "Tokyo", None, "Tokyo"],
                          "score": [0.5, 0.5, 0.5, 0.5]})
    result = checker.check(frame)
    assert result.missing.tolist() == [1, 1, 0]
    assert result.out_of_range.tolist() == [1, 0, 0]
    assert result.unseen_category.tolist() == [0, 2, 0]
    city = MIXED_REF.features["city"]
    city_bins = result.bin_counts[1]
    assert city_bins[city.categories.index("Paris")] == 1
    assert city_bins[city.categories.index(OTHER)] == 2
    assert result.input_errors == {}


def test_a_mixed_list_row_is_parsed_column_by_column():
    checker = BatchChecker(MIXED_REF)
    result = checker.check([[30.0, "Paris", 0.2], [31.0, "Rome", "high"]])
    assert result.rows == 2
    assert result.input_errors == {"wrong_type": 1}
    assert result.unseen_category.tolist() == [0, 0, 0]
    assert int(result.bin_counts[2].sum()) == 1


@pytest.mark.parametrize(("batch", "errors", "rows"), [
    ({"a": 1.0, "b": 2.0, "c": 3.0}, {"missing_column": 1}, 1),
    ({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0, "f": 6.0}, {"extra_column": 2}, 1),
    ({"a": "x", "b": object(), "c": 1 + 2j, "d": b"4"}, {"wrong_type": 4}, 1),
    ([{"a": [1, 2], "b": {"k": 1}, "c": "3", "d": 4}], {"wrong_type": 3}, 1),
    ([{"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, 7, "row"], {"wrong_type": 2}, 1),
    (np.ones((5, 3)), {"wrong_width": 1}, 0),
    (np.ones((2, 4, 1)), {"wrong_shape": 1}, 0),
    ([[1.0, 2.0, 3.0, 4.0], [1.0]], {"wrong_shape": 1}, 0),
    ({"a": [1.0, 2.0], "b": [1.0], "c": [1.0], "d": [1.0]}, {"wrong_shape": 1}, 0),
    ({"a": [1.0, 2.0], "b": 3.0, "c": [1.0, 2.0], "d": [1.0, 2.0]}, {"wrong_shape": 1}, 0),
    (np.empty((0, 4)), {"empty_batch": 1}, 0),
    ([], {"empty_batch": 1}, 0),
    ({}, {"empty_batch": 1}, 0),
    (pd.DataFrame(columns=["a", "b", "c", "d"]), {"empty_batch": 1}, 0),
    (None, {"wrong_type": 1}, 0),
    ("a,b,c,d", {"wrong_type": 1}, 0),
    # One value for four features, as np.int64(42) is.
    (42, {"wrong_width": 1}, 0),
    (np.int64(42), {"wrong_width": 1}, 0),
    (np.array([[np.inf, 1.0, 1.0, -np.inf]]), {"non_finite": 2}, 1),
    (pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "z": [0, 0]}), {"missing_column": 4,
                                                                    "extra_column": 2}, 2),
])
def test_bad_input_is_counted_under_a_bounded_reason(batch, errors, rows):
    before = faults.internal_error_counts().get("quality", 0)
    result = BatchChecker(NUMERIC_REF).check(batch)
    assert result.input_errors == errors
    assert set(result.input_errors) <= set(REASONS)
    assert result.rows == rows
    assert faults.internal_error_counts().get("quality", 0) == before


def test_a_single_feature_reference_reads_a_1d_array_as_a_column():
    checker = BatchChecker(Reference.from_data(np.arange(100.0)))
    result = checker.check(np.array([1.0, 2.0, 500.0]))
    assert result.rows == 3 and result.out_of_range.tolist() == [1]


def test_long_batches_are_checked_in_slices_with_the_same_counts():
    X = numeric_batch(1000)
    whole = BatchChecker(NUMERIC_REF).check(X)
    sliced = BatchChecker(NUMERIC_REF, max_pending_rows=64)
    assert_same(sliced.check(X), whole)
    frame = pd.DataFrame(X, columns=NUMERIC_REF.feature_names)
    assert_same(sliced.check(frame), whole)
    rows = frame.to_dict("records")
    assert_same(sliced.check(rows), whole)


def test_ten_thousand_distinct_categories_do_not_grow_memory():
    checker = BatchChecker(MIXED_REF)
    lookup_size = len(checker._columns[1].lookup)

    def batch(start: int) -> dict:
        cities = [f"city-{i}" for i in range(start, start + 10_000)]
        return {"age": np.full(10_000, 40.0), "city": cities, "score": np.full(10_000, 0.5)}

    checker.check(batch(0))  # warm up caches
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for start in range(10_000, 60_000, 10_000):
            result = checker.check(batch(start))
            assert result.unseen_category.tolist() == [0, 10_000, 0]
        del result
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert len(checker._columns[1].lookup) == lookup_size
    assert grown < 64 * 1024


def test_check_predictions_bins_each_output():
    checker = BatchChecker(MIXED_REF)
    proba = np.array([0.05, 0.5, 0.95, np.nan])
    counts = checker.check_predictions({"proba": proba, "label": ["yes", "maybe"], "extra": [1]})
    assert set(counts) == {"proba", "label"}
    profile = MIXED_REF.outputs["proba"]
    expected = np.bincount(np.digitize(proba[:3], profile.edges), minlength=profile.n_bins)
    assert counts["proba"].tolist() == expected.tolist()
    label = MIXED_REF.outputs["label"]
    assert counts["label"][label.categories.index("yes")] == 1
    assert counts["label"][-1] == 1
    assert all(c.sum() == 0 for c in checker.check_predictions("nonsense").values())


def test_range_tolerance_must_be_non_negative():
    with pytest.raises(ValueError, match="range_tolerance"):
        BatchChecker(NUMERIC_REF, range_tolerance=-0.1)


# --- property tests: any input, never an exception, never an internal fault -----------------

SCALARS = (st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers()
           | st.text(max_size=5) | st.booleans() | st.binary(max_size=3)
           | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2),
                                                                     st.integers(), max_size=1))
NAMES = st.sampled_from(["age", "city", "score", "other", "", "__other__"])
ROWS = st.dictionaries(NAMES, SCALARS, max_size=5)
ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.dtype("U3"),
                           np.dtype(object)]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
BATCHES = (ROWS | st.lists(ROWS, max_size=8) | ARRAYS
           | st.dictionaries(NAMES, st.lists(SCALARS, min_size=2, max_size=2), max_size=4)
           | st.lists(st.lists(SCALARS, max_size=4), max_size=4) | SCALARS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BATCHES, st.sampled_from([MIXED_REF, NUMERIC_REF]))
def test_any_batch_is_counted_without_raising(batch, reference):
    checker = BatchChecker(reference)
    before = faults.internal_error_counts().get("quality", 0)
    result = checker.check(batch)
    assert faults.internal_error_counts().get("quality", 0) == before
    assert set(result.input_errors) <= set(REASONS)
    assert all(v > 0 for v in result.input_errors.values())
    for counts, missing in zip(result.bin_counts, result.missing):
        assert counts.min() >= 0
        assert counts.sum() + missing <= result.rows


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 50), st.just(4)),
                  elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_numeric_arrays_bin_every_present_value(X):
    result = BatchChecker(NUMERIC_REF).check(X)
    expected = expected_numeric(NUMERIC_REF, X)
    assert result.missing.tolist() == expected["missing"]
    assert [b.tolist() for b in result.bin_counts] == [b.tolist() for b in expected["bins"]]
    assert (result.missing + [b.sum() for b in result.bin_counts]).tolist() == [len(X)] * 4


def test_whole_float_codes_match_integer_categories():
    ref = Reference.from_data({"zip": np.array([10115, 75001, 10115])}, categorical=["zip"])
    checker = BatchChecker(ref)
    result = checker.check({"zip": np.array([10115.0, 75001.0, 99999.0])})
    assert result.unseen_category.tolist() == [1]
    assert checker.check([{"zip": "10115"}, {"zip": 75001}]).unseen_category.tolist() == [0]


NUMERIC_ROWS = st.lists(st.fixed_dictionaries(
    {n: st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5) | st.none()
     for n in "abcd"}), min_size=1, max_size=10)


@settings(max_examples=100, deadline=None)
@given(NUMERIC_ROWS)
def test_numeric_rows_count_the_same_as_the_matrix_they_make(rows):
    X = np.array([[np.nan if r[n] is None else float(r[n]) for n in "abcd"] for r in rows])
    checker = BatchChecker(NUMERIC_REF)
    assert_same(checker.check(rows), checker.check(X))


def test_check_predictions_takes_a_probability_matrix_or_a_single_output_array():
    ref = Reference.from_data(np.zeros(100), predictions=RNG.dirichlet([1, 1, 1], 100),
                              prediction_names=["a", "b", "c"])
    checker = BatchChecker(ref)
    proba = RNG.dirichlet([1, 1, 1], 20)
    by_name = checker.check_predictions({n: proba[:, i] for i, n in enumerate("abc")})
    from_matrix = checker.check_predictions(proba)
    assert {n: c.tolist() for n, c in by_name.items()} == \
        {n: c.tolist() for n, c in from_matrix.items()}
    assert sum(c.sum() for c in from_matrix.values()) == 60
    for wrong in (proba[:, :2], [[0.1], [0.2, 0.3]], proba[:, 0]):
        assert all(c.sum() == 0 for c in checker.check_predictions(wrong).values())
    single = BatchChecker(Reference.from_data(np.zeros(10), predictions=np.arange(10.0)))
    assert single.check_predictions([1.0, 2.0, np.nan])["value"].sum() == 2


def test_a_reference_without_features_counts_a_wrong_width():
    checker = BatchChecker(Reference({}))
    assert checker.check(np.ones((2, 2))).input_errors == {"wrong_width": 1}
    assert checker.feature_layout.total == 0 and checker.empty_result().bin_counts == []


def _sparse_of(X: np.ndarray, fmt: str):
    """`X` as a scipy.sparse matrix of format `fmt`, its zeros implicit and its NaN stored."""
    import scipy.sparse as sp

    return sp.csr_matrix(X).asformat(fmt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(4)),
                  elements=st.sampled_from([0.0, 0.0, 0.0, -1.5, 0.3, 2.0, 9.0, np.nan,
                                            np.inf])),
       st.sampled_from(["csr", "csc", "coo"]))
def test_a_sparse_batch_counts_as_the_dense_matrix_it_stands_for(X, fmt):
    """Implicit entries are zeros, a stored NaN is a missing value, inf is non-finite: the
    counts and bins equal those of the dense matrix, in every sparse format."""
    checker = BatchChecker(NUMERIC_REF)
    assert_same(checker.check(_sparse_of(X, fmt)), checker.check(X))


def test_a_wide_sparse_batch_is_checked_a_block_of_rows_at_a_time(monkeypatch):
    """A matrix whose dense form would be large never becomes dense whole: the blocks are
    bounded in cells, and their counts add up to the whole matrix's."""
    import scipy.sparse as sp

    import inferwatch.quality.sparse_rows as sparse_rows

    width = 300
    ref = Reference.from_data(RNG.normal(size=(400, width)))
    X = sp.random(500, width, density=0.02, random_state=1, format="csr")
    X.data[::7] = np.nan
    checker = BatchChecker(ref)
    dense = checker.check(X.toarray())
    shapes = []
    real = checker._matrix

    def spy(block, result):
        shapes.append(block.shape)
        real(block, result)

    monkeypatch.setattr(checker, "_matrix", spy)
    monkeypatch.setattr(sparse_rows, "BLOCK_CELLS", 10 * width)
    assert_same(checker.check(X), dense)
    assert shapes == [(10, width)] * 50
    assert dense.missing.sum() == len(X.data[::7])


def test_bad_sparse_input_is_counted_under_its_reason():
    import scipy.sparse as sp

    checker = BatchChecker(NUMERIC_REF)
    assert checker.check(sp.csr_matrix((0, 4))).input_errors == {"empty_batch": 1}
    assert checker.check(sp.csr_matrix(np.ones((3, 5)))).input_errors == {"wrong_width": 1}


def test_a_reference_profiles_a_sparse_matrix_as_its_dense_form():
    import scipy.sparse as sp

    from inferwatch.quality.input_columns import MAX_SPARSE_CELLS
    from inferwatch.quality.reference import ReferenceError

    X = sp.random(300, 6, density=0.3, random_state=2, format="csr")
    assert Reference.from_data(X) == Reference.from_data(X.toarray())
    wide = sp.csr_matrix((MAX_SPARSE_CELLS // 1000 + 1, 1000))
    with pytest.raises(ReferenceError, match=r"sparse matrix of .* cells once dense"):
        Reference.from_data(wide)


def test_a_polars_frame_counts_as_the_pandas_frame_it_equals():
    """Columns by name in any order, nulls as missing, categories and slices of a long
    frame: a polars DataFrame is checked as pandas' would be, and profiles alike."""
    pl = pytest.importorskip("polars")
    frame = pd.DataFrame({"age": [30.0, None, 200.0, 40.0] * 30,
                          "city": ["Paris", "Tokyo", None, "Rome"] * 30,
                          "score": [0.5, 0.1, 0.9, None] * 30})[["score", "city", "age"]]
    checker = BatchChecker(MIXED_REF, max_pending_rows=7)  # checked in slices of 7 rows
    assert_same(checker.check(pl.from_pandas(frame)), checker.check(frame))
    assert checker.check(pl.from_pandas(frame)).rows == 120
    numeric = pd.DataFrame(RNG.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    assert Reference.from_data(pl.from_pandas(numeric)) == Reference.from_data(numeric)


# --- one rule per value, whatever container or company it comes in ---------------------------

BIG_REF = Reference.from_data({"a": np.arange(100.0), "c": np.array(["x", "y"] * 50)})


@pytest.mark.parametrize("batch", [
    [{"a": 10**400, "c": "x"}, {"a": None, "c": "zzz"}],
    # An object column, as later pandas make of it (2.0.3 refuses the plain list).
    pd.DataFrame({"a": pd.Series([10**400, None], dtype=object), "c": ["x", "zzz"]}),
    {"a": [10**400, None], "c": ["x", "zzz"]},
    np.array([[10**400, "x"], [None, "zzz"]], dtype=object),
])
def test_an_integer_too_large_for_a_float_is_one_value_out_of_range(batch):
    before = faults.internal_error_counts().get("quality", 0)
    result = BatchChecker(BIG_REF).check(batch)
    assert faults.internal_error_counts().get("quality", 0) == before
    # Read as +inf: out of range and in the top bin; the rest of the batch is checked.
    assert result.rows == 2
    assert result.missing.tolist() == [1, 0]
    assert result.out_of_range.tolist() == [1, 0]
    assert result.unseen_category.tolist() == [0, 1]
    assert result.input_errors == {"non_finite": 1}
    assert result.bin_counts[0][-1] == 1
    negative = BatchChecker(BIG_REF).check([{"a": -(10**400), "c": "x"}])
    assert negative.bin_counts[0][0] == 1 and negative.out_of_range.tolist() == [1, 0]


ONE_NUMBER = Reference.from_data({"a": np.arange(100.0)})


@pytest.mark.parametrize(("batch", "wrong"), [
    (pd.DataFrame({"a": ["1.5", "2.5"]}), 2),
    (pd.DataFrame({"a": ["1.5", "abc"]}), 2),
    (pd.DataFrame({"a": pd.array(["1.5", None], dtype="string")}), 1),
    (pd.DataFrame({"a": np.array([1.0, "1.5"], dtype=object)}), 1),
    ({"a": ["1.5", "2.5"]}, 2),
    ([{"a": "1.5"}, {"a": "2.5"}], 2),
    ({"a": "1.5"}, 1),
    # The one exception, documented: numpy text arrays (what numpy makes of a mixed list).
    ({"a": np.array(["1.5", "abc"])}, 1),
    ([[1.0], ["abc"]], 1),
])
def test_text_in_a_numeric_feature_is_wrong_type_cell_by_cell(batch, wrong):
    assert BatchChecker(ONE_NUMBER).check(batch).input_errors == {"wrong_type": wrong}


def test_nullable_numeric_frame_columns_are_still_numbers():
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64")})
    result = BatchChecker(ONE_NUMBER).check(frame)
    assert result.input_errors == {} and result.missing.tolist() == [1]
    assert int(result.flat_bin_counts.sum()) == 2


def test_dates_in_a_numeric_feature_are_wrong_type_and_nat_is_missing():
    checker = BatchChecker(ONE_NUMBER)
    frame = pd.DataFrame({"a": pd.to_datetime(["2020-01-01", None])})
    rows = [{"a": np.datetime64("2020-01-01")}, {"a": np.datetime64("NaT")}]
    for batch in (frame, rows):
        result = checker.check(batch)
        assert result.input_errors == {"wrong_type": 1}, batch
        assert result.missing.tolist() == [1]
        assert int(result.flat_bin_counts.sum()) == 0


def test_row_dict_keys_are_matched_as_text():
    ref = Reference.from_data(pd.DataFrame({0: np.arange(100.0), 1: np.arange(100.0)}))
    checker = BatchChecker(ref)
    expected = checker.check(pd.DataFrame({0: [1.0, 5.0], 1: [2.0, 6.0]}))
    assert expected.input_errors == {}
    assert_same(checker.check([{0: 1.0, 1: 2.0}, {0: 5.0, 1: 6.0}]), expected)
    assert_same(checker.check([{0: 1.0, "1": 2.0}, {"0": 5.0, 1: 6.0}]), expected)
    assert_same(checker.check({0: [1.0, 5.0], 1: [2.0, 6.0]}), expected)
    one = checker.check({0: 1.0, 1: 2.0})
    assert one.rows == 1 and one.input_errors == {}
    # Two keys of one text name the feature twice, as a frame's repeated column or a dict of
    # columns does: neither is read, and the batch counts it.
    assert checker.check({0: 1.0, "0": 1.0, 1: 2.0}).input_errors == {"wrong_shape": 1}


@pytest.mark.parametrize("tolerance", [0.0, 0.1, float("inf")])
@pytest.mark.parametrize("numeric_only", [True, False])
def test_infinities_are_out_of_range_when_the_span_overflows(tolerance, numeric_only):
    train = {"a": np.array([1.7e308, -1.7e308, 0.0])}
    if not numeric_only:  # a categorical feature takes the column-by-column path
        train["c"] = np.array(["x", "y", "x"])
    checker = BatchChecker(Reference.from_data(train), range_tolerance=tolerance)
    batch = pd.DataFrame({"a": [np.inf, -np.inf, 1e308, np.nan], "c": ["x"] * 4})
    if numeric_only:
        batch = batch[["a"]].to_numpy()
    result = checker.check(batch)
    assert result.out_of_range.tolist()[0] == 2
    assert result.input_errors == {"non_finite": 2}


@pytest.mark.parametrize("as_rows", [True, False])
def test_a_feature_without_values_in_training_puts_every_live_value_out_of_range(as_rows):
    ref = Reference.from_data({"a": np.arange(10.0), "empty": np.full(10, np.nan)})
    batch = {"a": [1.0, 2.0, 3.0], "empty": [5.0, np.inf, np.nan]}
    if as_rows:
        batch = [dict(zip(batch, values)) for values in zip(*batch.values())]
    result = BatchChecker(ref, range_tolerance=0.5).check(batch)
    assert result.out_of_range.tolist() == [0, 2]
    assert result.missing.tolist() == [0, 1]
