"""Reference profiles built from user data as it arrives from databases, pandas, polars and
Arrow: decimals past float range, category columns without values, nullable dtypes, and
dates or durations profiled as categories, each checked against live data of the same kind."""

from __future__ import annotations

import argparse
import datetime
import decimal
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.quality import profile_cli
from inferwatch.quality.reference import Reference, ReferenceError
from inferwatch.quality.tracker import FeatureTracker

NOW = 1_700_000_000.0


def check(ref: Reference, live) -> tuple:
    """What a model's tracker counts for one batch of live inputs."""
    result = FeatureTracker(ref).check_inputs([live], now=NOW)
    return (result.rows, result.missing.tolist(), result.out_of_range.tolist(),
            result.unseen_category.tolist(), result.input_errors,
            [c.tolist() for c in result.bin_counts])


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


# --- numbers past the range of a float64 --------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(digits=st.integers(1, 10**6), exponent=st.integers(309, 5000),
       negative=st.booleans(), row=st.integers(0, 4))
def test_decimal_past_float_range_is_refused_naming_the_feature(digits, exponent, negative, row):
    # A database NUMERIC of 1E+400 is a data error, as the integer 10**400 is: it must not be
    # profiled as a missing value, leaving a range that says nothing of it.
    big = decimal.Decimal(f"{'-' if negative else ''}{digits}E+{exponent}")
    amounts = [decimal.Decimal("12.50"), decimal.Decimal("3"), None, decimal.Decimal("7.25"),
               decimal.Decimal("1")]
    amounts[row] = big
    with pytest.raises(ReferenceError, match=r"feature 'amount': holds .* too large for a 64-bit"):
        Reference.from_data({"amount": amounts, "ok": [1.0] * 5})
    with pytest.raises(ReferenceError, match="feature 'amount'"):
        Reference.from_data(pd.DataFrame({"amount": pd.Series(amounts, dtype=object)}))


def test_decimal_and_integer_past_float_range_behave_alike():
    for value in (10**400, decimal.Decimal("1e400"), decimal.Decimal("-1e400")):
        with pytest.raises(ReferenceError, match=r"feature 'x'.*leave the column out"):
            Reference.from_data({"x": [decimal.Decimal("1"), value]})
    # Within range, and the Decimal infinities and NaN, are as documented.
    ref = Reference.from_data({"x": [decimal.Decimal("1e300"), decimal.Decimal("Infinity"),
                                     decimal.Decimal("NaN"), decimal.Decimal("1e-400")]})
    profile = ref.features["x"]
    assert (profile.kind, profile.min, profile.max, profile.missing_rate) == \
        ("numeric", 0.0, 1e300, 0.5)


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="no long double wider than a float64 here")
def test_long_double_past_float_range_is_refused_without_a_warning():
    col = np.array([1.0, np.longdouble("1e400")], dtype=np.longdouble)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ReferenceError, match="feature 'x': holds the number"):
            Reference.from_data({"x": col})
        profile = Reference.from_data({"x": np.array([1.0, 2.5], dtype=np.longdouble)}
                                      ).features["x"]
    assert (profile.kind, profile.min, profile.max) == ("numeric", 1.0, 2.5)


# --- category columns with no values --------------------------------------------------------------

def all_missing_categories(container: str):
    column = pd.Series(pd.Categorical([None, None, None], categories=["red", "blue"]))
    if container == "frame":
        return pd.DataFrame({"colour": column, "n": [1.0, 2.0, 3.0]})
    return {"colour": column, "n": [1.0, 2.0, 3.0]}


@pytest.mark.parametrize("container", ["frame", "dict"])
def test_all_missing_category_column_is_profiled_as_categorical(container):
    ref = Reference.from_data(all_missing_categories(container))
    profile = ref.features["colour"]
    assert (profile.kind, profile.categories, profile.missing_rate) == \
        ("categorical", ("__other__",), 1.0)
    # Live categories are unseen, missing ones missing; none is a wrong type.
    live = pd.DataFrame({"colour": pd.Categorical(["red", None, "green"]), "n": [1.0, 2.0, 3.0]})
    assert check(ref, live) == (3, [1, 0], [0, 0], [2, 0], {}, [[2], [1, 1, 1]])
    rows = [{"colour": "red", "n": 1.0}, {"colour": None, "n": 2.0}]
    assert check(ref, rows) == (2, [1, 0], [0, 0], [1, 0], {}, [[1], [1, 1, 0]])


def test_all_missing_category_series_and_predictions_are_categorical():
    empty = pd.Series(pd.Categorical([None, None]))
    ref = Reference.from_data(empty, predictions=empty)
    assert ref.features["x0"].kind == "categorical"
    assert ref.outputs["value"].kind == "categorical"


def test_all_null_polars_categorical_column_is_profiled_as_categorical():
    ref = Reference.from_data(pl.DataFrame({
        "colour": pl.Series([None, None], dtype=pl.Categorical),
        "size": pl.Series([None, None], dtype=pl.Enum(["S", "M"]))}))
    assert [p.kind for p in ref.features.values()] == ["categorical", "categorical"]
    live = pl.DataFrame({"colour": pl.Series(["red", None], dtype=pl.Categorical),
                         "size": pl.Series(["S", "M"], dtype=pl.Enum(["S", "M"]))})
    assert check(ref, live) == (2, [1, 0], [0, 0], [1, 2], {}, [[1], [2]])


def test_all_missing_category_column_in_parquet_is_categorical_through_the_cli(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"colour": pd.Categorical([None, None], categories=["red"]),
                  "n": [1.0, 2.0]}).to_parquet(path)
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 0
    assert Reference.load(tmp_path / "r.json").features["colour"].kind == "categorical"


# --- dates and durations named categorical --------------------------------------------------------

STAMPS = ["2024-01-05 10:30:00", "2024-01-06 00:00:00", "2024-01-05 10:30:00", None]


def stamp_reference(unit: str) -> Reference:
    column = pd.Series(pd.to_datetime(STAMPS, format="ISO8601")).dt.as_unit(unit)
    return Reference.from_data(pd.DataFrame({"at": column}), categorical=["at"])


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_categories_match_whatever_carries_the_live_value(unit):
    ref = stamp_reference(unit)
    assert ref.features["at"].missing_rate == 0.25
    seen = [[2, 1, 0]]
    # The same instants in a frame of another unit, in row dicts as pandas, datetime and
    # numpy values, and in a polars frame: every one is a category the profile holds.
    for other in ("s", "us", "ns"):
        live = pd.DataFrame({"at": pd.Series(pd.to_datetime(STAMPS, format="ISO8601")
                                             ).dt.as_unit(other)})
        assert check(ref, live) == (4, [1], [0], [0], {}, [[2, 1, 0]]), other
    rows = [{"at": pd.Timestamp("2024-01-05 10:30")},
            {"at": datetime.datetime(2024, 1, 5, 10, 30)},
            {"at": np.datetime64("2024-01-06")}]
    assert check(ref, rows) == (3, [0], [0], [0], {}, seen)
    polars = pl.DataFrame({"at": [datetime.datetime(2024, 1, 5, 10, 30),
                                  datetime.datetime(2024, 1, 6), None]})
    assert check(ref, polars) == (3, [1], [0], [0], {}, [[1, 1, 0]])
    assert check(ref, [{"at": pd.Timestamp("2024-01-07")}]) == (1, [0], [0], [1], {}, [[0, 0, 1]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stamps=st.lists(st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                                    max_value=datetime.datetime(2200, 1, 1)),
                       min_size=1, max_size=20),
       unit=st.sampled_from(["us", "ns"]))
def test_every_training_timestamp_is_a_seen_category_in_every_container(stamps, unit):
    train = pd.DataFrame({"at": pd.Series(stamps, dtype=f"datetime64[{unit}]")})
    ref = Reference.from_data(train, categorical="at")
    n = len(stamps)
    expected = (n, [0], [0], [0], {})
    assert check(ref, train)[:5] == expected
    assert check(ref, [{"at": s} for s in stamps])[:5] == expected
    assert check(ref, [{"at": pd.Timestamp(s)} for s in stamps])[:5] == expected
    assert check(ref, pl.DataFrame({"at": stamps}))[:5] == expected


def test_duration_categories_match_whatever_carries_the_live_value():
    durations = pd.Series(pd.to_timedelta(["1h", "90s", "1h", None]))
    ref = Reference.from_data(pd.DataFrame({"wait": durations}), categorical=["wait"])
    assert ref.features["wait"].categories == ("1:00:00", "0:01:30", "__other__")
    live = pd.DataFrame({"wait": durations.dt.as_unit("ns")})
    assert check(ref, live) == (4, [1], [0], [0], {}, [[2, 1, 0]])
    rows = [{"wait": datetime.timedelta(hours=1)}, {"wait": pd.Timedelta("90s")},
            {"wait": np.timedelta64(90, "s")}, {"wait": datetime.timedelta(days=2)}]
    assert check(ref, rows) == (4, [0], [0], [1], {}, [[1, 2, 1]])


# --- nullable and Arrow-backed dtypes (profile and live of the same kind) ---------------------

@pytest.mark.parametrize(("dtype", "train", "live", "expected"), [
    ("Int64", [1, None, 3, 4], [1, None, 9], (3, [1], [1], [0], {}, [[1, 0, 1]])),
    ("Float64", [1.5, None, 3.0], [1.5, None, 9.0], (3, [1], [1], [0], {}, [[1, 1]])),
    ("int64[pyarrow]", [1, None, 3], [1, None, 9], (3, [1], [1], [0], {}, [[1, 1]])),
    ("boolean", [True, None, False], [True, None, True], (3, [1], [0], [0], {}, [[0, 2, 0]])),
    ("string", ["x", None, "y"], ["x", None, "z"], (3, [1], [0], [1], {}, [[1, 0, 1]])),
    ("string[pyarrow]", ["x", None, "y"], ["x", None, "z"], (3, [1], [0], [1], {}, [[1, 0, 1]])),
])
def test_nullable_dtypes_count_exactly(dtype, train, live, expected):
    ref = Reference.from_data(pd.DataFrame({"a": pd.array(train, dtype=dtype)}))
    assert check(ref, pd.DataFrame({"a": pd.array(live, dtype=dtype)})) == expected
