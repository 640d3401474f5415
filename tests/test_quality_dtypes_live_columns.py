"""Live and training columns of the dtypes the checks used to lose or misread: narrow floats
against a feature without bin edges, tz-aware timestamps from polars and Arrow, text and
bool columns with no value in training, polars 128-bit integers, and a feature named twice
in a batch longer than one slice.
"""

from __future__ import annotations

import datetime
import zoneinfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.column_checks import at_precision
from inferwatch.quality.profile import ReferenceError
from inferwatch.quality.reference import Reference

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")


def _counts(result) -> tuple:
    return (result.rows, result.missing.tolist(), result.out_of_range.tolist(),
            result.unseen_category.tolist(), result.flat_bin_counts.tolist(),
            dict(sorted(result.input_errors.items())))


def _quality_faults() -> int:
    return faults.internal_error_counts().get("quality", 0)


# --- a feature without bin edges, live narrow floats --------------------------------------

def _no_edges_reference() -> Reference:
    return Reference.from_data(pd.DataFrame({"age": [30.0, 40.0, 50.0], "unused": [np.nan] * 3}))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_narrow_floats_against_a_feature_without_edges_are_counted(dtype):
    ref = _no_edges_reference()
    assert ref.features["unused"].edges == ()
    checker = BatchChecker(ref)
    wide = checker.check(pd.DataFrame({"age": [35.0, 99.0], "unused": [1.0, np.nan]}))
    before = _quality_faults()
    for batch in (pd.DataFrame({"age": [35.0, 99.0], "unused": [1.0, np.nan]}).astype(dtype),
                  np.array([[35.0, 1.0], [99.0, np.nan]], dtype=dtype),
                  {"age": np.array([35.0, 99.0], dtype), "unused": np.array([1.0, np.nan], dtype)},
                  [{"age": dtype(35.0), "unused": dtype(1.0)},
                   {"age": dtype(99.0), "unused": dtype(np.nan)}]):
        assert _counts(checker.check(batch)) == _counts(wide)
    assert _quality_faults() == before
    assert wide.rows == 2 and wide.missing.tolist() == [0, 1]
    assert wide.out_of_range.tolist() == [1, 1]


def test_narrow_floats_against_a_one_bin_reference_are_counted():
    ref = Reference.from_data(pd.DataFrame({"age": [30.0, 40.0, 50.0]}), bins=1)
    assert ref.features["age"].edges == ()
    result = BatchChecker(ref).check(pd.DataFrame({"age": [35.0, 99.0]}, dtype="float32"))
    assert result.rows == 2 and result.out_of_range.tolist() == [1]
    assert result.bin_counts[0].tolist() == [2]


def test_at_precision_of_no_edges_is_no_edges():
    assert at_precision(np.array([]), np.dtype(np.float32), edges=True).shape == (0,)
    assert at_precision(np.empty((3, 0)), np.dtype(np.float16), edges=True).shape == (3, 0)
    one = at_precision(np.array([[0.1], [2.0]]), np.dtype(np.float32), edges=True)
    assert one.tolist() == [[float(np.float32(0.1))], [2.0]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(width=32, allow_nan=True), st.floats(width=32, allow_nan=True)),
                min_size=1, max_size=40))
def test_float32_counts_match_float64_counts_without_edges(rows):
    # Every float32 value is exactly a float64 one, and the reference's bounds and edges
    # (whole numbers) are exact in float32: the two must count alike.
    checker = BatchChecker(_no_edges_reference())
    narrow = np.array(rows, dtype=np.float32)
    expected = _counts(checker.check(narrow.astype(np.float64)))
    assert _counts(checker.check(narrow)) == expected
    frame = pd.DataFrame(narrow, columns=["age", "unused"])
    assert _counts(checker.check(frame)) == expected


def test_a_feature_whose_count_fails_leaves_the_others_counted(monkeypatch):
    ref = Reference.from_data({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]})
    checker = BatchChecker(ref)
    expected = checker.check({"a": [2.0, 9.0], "b": ["x", "z"]})

    def broken(values, out):
        raise RuntimeError("boom")

    monkeypatch.setattr(checker._columns[1], "count", broken)
    before = _quality_faults()
    result = checker.check({"a": [2.0, 9.0], "b": ["x", "z"]})
    assert _quality_faults() == before + 1
    assert result.rows == 2
    assert result.out_of_range.tolist() == [expected.out_of_range[0], 0]
    assert result.bin_counts[0].tolist() == expected.bin_counts[0].tolist()
    assert result.bin_counts[1].tolist() == [0, 0, 0]


# --- tz-aware timestamps ------------------------------------------------------------------

def _paris_days() -> pd.Series:
    return pd.Series(pd.date_range("2024-03-29 10:00", periods=4, freq="D", tz="Europe/Paris"))


def test_tz_aware_polars_and_arrow_timestamps_match_a_pandas_profile():
    days = _paris_days()  # across the change to summer time: two offsets
    ref = Reference.from_data(pd.DataFrame({"day": days}), categorical=["day"])
    assert ref.features["day"].categories[:4] == (
        "2024-03-29 10:00:00+01:00", "2024-03-30 10:00:00+01:00",
        "2024-03-31 10:00:00+02:00", "2024-04-01 10:00:00+02:00")
    checker = BatchChecker(ref)
    expected = _counts(checker.check(pd.DataFrame({"day": days})))
    assert expected[3] == [0]
    frame = pd.DataFrame({"day": days})
    table = pa.Table.from_pandas(frame)
    for batch in (pl.from_pandas(frame), table, {"day": pl.from_pandas(frame)["day"]},
                  {"day": table.column("day")}, {"day": table.column("day").combine_chunks()},
                  [{"day": t.to_pydatetime()} for t in days]):
        assert _counts(checker.check(batch)) == expected, type(batch)


def test_tz_aware_polars_and_arrow_training_columns_profile_as_pandas_does():
    frame = pd.DataFrame({"day": _paris_days()})
    ref = Reference.from_data(frame, categorical=["day"])
    table = pa.Table.from_pandas(frame)
    for data in (pl.from_pandas(frame), table, {"day": pl.from_pandas(frame)["day"]},
                 {"day": table.column("day")}):
        assert Reference.from_data(data, categorical=["day"]) == ref, type(data)


def test_a_tz_aware_polars_column_is_still_refused_as_a_number():
    data = pl.from_pandas(pd.DataFrame({"day": _paris_days()}))
    with pytest.raises(ReferenceError, match="'day': holds dates or times"):
        Reference.from_data(data)


_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(_ZONES),
       st.lists(st.one_of(st.none(), st.datetimes(min_value=datetime.datetime(1970, 1, 2),
                                                   max_value=datetime.datetime(2200, 1, 1))),
                min_size=1, max_size=20))
def test_tz_aware_keys_are_one_text_per_instant_whatever_carries_them(zone, naive_utc):
    instants = [None if t is None else t.replace(tzinfo=datetime.timezone.utc)
                .astimezone(zoneinfo.ZoneInfo(zone)) for t in naive_utc]
    pandas_column = pd.Series(pd.to_datetime(instants, utc=True)).dt.tz_convert(zone)
    # pandas 2.0 reads a zone's daylight saving time only through 2037 (2038-04-01
    # in Paris at 01:00+01:00): the text of each instant is what its container says it is.
    assume(all(t is None or t.utcoffset() == p.utcoffset()
               for t, p in zip(instants, pandas_column)))
    frame = pd.DataFrame({"t": pandas_column})
    ref = Reference.from_data(frame, categorical=["t"])
    checker = BatchChecker(ref)
    expected = _counts(checker.check(frame))
    assert expected[3] == [0]
    polars_frame = pl.DataFrame({"t": pl.Series(instants, dtype=pl.Datetime("us", zone))})
    for batch in (polars_frame, pa.Table.from_pandas(frame)):
        assert _counts(checker.check(batch)) == expected
        assert Reference.from_data(batch, categorical=["t"]) == ref


# --- text and bool columns without a value in training ------------------------------------

# dtype="str" is a text dtype from pandas 3 on; before, it is numpy's object dtype, whose
# missing values say nothing of what the column holds.
_PANDAS_STR_IS_TEXT = pd.Series([None], dtype="str").dtype != object
_ALL_MISSING = {
    "pandas string[pyarrow]": lambda: pd.array([None, None], dtype="string[pyarrow]"),
    "pandas string[python]": lambda: pd.array([None, None], dtype="string[python]"),
    **({"pandas str": lambda: pd.Series([None, None], dtype="str")}
       if _PANDAS_STR_IS_TEXT else {}),
    "pandas boolean": lambda: pd.array([None, None], dtype="boolean"),
    "pandas bool[pyarrow]": lambda: pd.Series([None, None], dtype="bool[pyarrow]"),
    "pandas large_string[pyarrow]": lambda: pd.Series([None, None], dtype="large_string[pyarrow]"),
    "polars String": lambda: pl.Series([None, None], dtype=pl.String),
    "polars Boolean": lambda: pl.Series([None, None], dtype=pl.Boolean),
    "arrow string": lambda: pa.array([None, None], type=pa.string()),
    "arrow large_string": lambda: pa.array([None, None], type=pa.large_string()),
    **({"arrow string_view": lambda: pa.array([None, None], type=pa.string_view())}
       if hasattr(pa, "string_view") else {}),  # pyarrow 16 and later
    "arrow bool": lambda: pa.array([None, None], type=pa.bool_()),
}


@pytest.mark.parametrize("label", sorted(_ALL_MISSING))
def test_an_all_missing_text_or_bool_column_is_categorical(label):
    column = _ALL_MISSING[label]()
    as_dict = {"x": [1.0, 2.0], "promo": column}
    trainings = [as_dict]
    if label.startswith("pandas"):
        trainings.append(pd.DataFrame(as_dict))
    elif label.startswith("polars"):
        trainings.append(pl.DataFrame(as_dict))
    else:
        trainings.append(pa.table(as_dict))
    for training in trainings:
        ref = Reference.from_data(training)
        assert ref.features["promo"].kind == "categorical", type(training)
        assert ref.features["promo"].missing_rate == 1.0
        result = BatchChecker(ref).check(pd.DataFrame({"x": [1.5], "promo": ["SUMMER"]}))
        assert result.input_errors == {}
        assert result.unseen_category.tolist() == [0, 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=1, max_size=30))
def test_a_text_column_profiles_alike_in_every_text_dtype(values):
    plain = Reference.from_data({"c": np.array(values, dtype=object)}, categorical=["c"])
    present = [v for v in values if v is not None]
    if present:  # with no value, plain objects are numbers; text dtypes say otherwise
        assert Reference.from_data({"c": np.array(values, dtype=object)}) == plain
    columns = [pd.Series(values, dtype="string[python]"),
               pd.Series(values, dtype="string[pyarrow]"), pl.Series(values, dtype=pl.String),
               pa.array(values, type=pa.string())]
    if _PANDAS_STR_IS_TEXT or present:
        columns.append(pd.Series(values, dtype="str"))
    for column in columns:
        assert Reference.from_data({"c": column}) == plain, column.dtype if hasattr(
            column, "dtype") else column.type


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans()), min_size=1, max_size=30))
def test_a_bool_column_profiles_alike_in_every_bool_dtype(values):
    plain = Reference.from_data({"c": np.array(values, dtype=object)}, categorical=["c"])
    for column in (pd.Series(values, dtype="boolean"), pd.Series(values, dtype="bool[pyarrow]"),
                   pl.Series(values, dtype=pl.Boolean), pa.array(values, type=pa.bool_())):
        assert Reference.from_data({"c": column}) == plain


# --- polars 128-bit integers --------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["Int128", "UInt128"])
def test_a_polars_128_bit_column_is_refused_naming_it(dtype):
    if not hasattr(pl, dtype):
        pytest.skip(f"polars {pl.__version__} has no {dtype}")
    wide = pl.Series([1, 2, 3], dtype=getattr(pl, dtype))
    for data in (pl.DataFrame({"id": wide, "x": [1.0, 2.0, 3.0]}),
                 {"id": wide, "x": [1.0, 2.0, 3.0]}):
        with pytest.raises(ReferenceError, match=r"'id'.*(Int128|128)"):
            Reference.from_data(data)


@pytest.mark.parametrize("dtype", ["Int128", "UInt128"])
def test_a_live_polars_128_bit_column_leaves_the_batch_counted(dtype):
    if not hasattr(pl, dtype):
        pytest.skip(f"polars {pl.__version__} has no {dtype}")
    ref = Reference.from_data({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0]})
    checker = BatchChecker(ref)
    expected = _counts(checker.check(pl.DataFrame({"id": [1, None], "x": [9.0, np.nan]})))
    before = _quality_faults()
    wide = pl.Series([1, None], dtype=getattr(pl, dtype))
    for batch in (pl.DataFrame({"id": wide, "x": [9.0, np.nan]}),
                  {"id": wide, "x": np.array([9.0, np.nan])}):
        assert _counts(checker.check(batch)) == expected
    assert _quality_faults() == before
    assert expected[:3] == (2, [1, 1], [0, 1])


# --- a feature named twice in a batch of several slices -----------------------------------

def _frames(n: int) -> list:
    values = np.zeros((n, 4))
    names = ["a", "b", "a", "zz"]
    pandas_frame = pd.DataFrame(values, columns=names)
    arrow_table = pa.Table.from_arrays([pa.array(values[:, i]) for i in range(4)], names=names)
    return [pandas_frame, arrow_table]


@pytest.mark.parametrize("n", [1, 10, 11, 35])
def test_a_feature_named_twice_counts_one_wrong_shape_per_batch(n):
    ref = Reference.from_data({"a": np.arange(10.0), "b": np.arange(10.0)})
    sliced = BatchChecker(ref, max_pending_rows=10)
    whole = BatchChecker(ref)
    for frame in _frames(n):
        result = sliced.check(frame)
        assert result.input_errors == {"wrong_shape": 1, "extra_column": n}
        assert result.rows == n
        assert _counts(result) == _counts(whole.check(frame))
    rows = [{"a": 1.0, 0: 2.0, "0": 3.0, "b": 0.0} for _ in range(n)]
    ref0 = Reference.from_data({"0": np.arange(10.0), "b": np.arange(10.0)})
    result = BatchChecker(ref0, max_pending_rows=10).check(rows)
    assert result.input_errors == {"wrong_shape": 1, "extra_column": n}
    assert _counts(result) == _counts(BatchChecker(ref0).check(rows))


def test_a_large_frame_with_a_feature_named_twice_counts_one_wrong_shape():
    ref = Reference.from_data({"a": np.arange(10.0), "b": np.arange(10.0)})
    frame = pd.DataFrame(np.zeros((200_000, 3)), columns=["a", "b", "a"])
    assert BatchChecker(ref).check(frame).input_errors == {"wrong_shape": 1}


def test_an_empty_frame_with_a_feature_named_twice_is_an_empty_batch():
    ref = Reference.from_data({"a": np.arange(10.0), "b": np.arange(10.0)})
    frame = pd.DataFrame(np.zeros((0, 3)), columns=["a", "b", "a"])
    assert BatchChecker(ref).check(frame).input_errors == {"empty_batch": 1}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12),
       st.lists(st.sampled_from(["a", "b", "c", "zz", "0", 0, "a", 0]), min_size=1, max_size=6),
       st.sampled_from(["pandas", "polars", "arrow", "dict", "rows"]))
def test_slicing_a_batch_changes_no_count(n, step, keys, container):
    # 0 and "0" are one name as text: given both, the feature "0" is named twice.
    ref = Reference.from_data({"a": np.arange(10.0), "b": np.arange(10.0),
                               "0": np.arange(10.0), "c": ["x", "y"] * 5})
    rng = np.random.default_rng(n)
    values = rng.integers(-2, 12, size=(n, len(keys))).astype(np.float64)
    texts = [str(k) for k in keys]
    if container == "pandas":
        batch = pd.DataFrame(values, columns=keys)
    elif container == "polars":
        if len(set(texts)) != len(texts):
            return  # polars refuses two columns of one name
        batch = pl.DataFrame({name: values[:, i] for i, name in enumerate(texts)})
    elif container == "arrow":
        batch = pa.Table.from_arrays([pa.array(values[:, i]) for i in range(len(keys))],
                                     names=texts)
    elif container == "dict":
        batch = {}
        for key, column in zip(keys, values.T):
            batch.setdefault(key, column)
    else:
        batch = [dict(zip(keys, row.tolist())) for row in values]
    assert _counts(BatchChecker(ref, max_pending_rows=step).check(batch)) == \
        _counts(BatchChecker(ref).check(batch))
