"""Data-quality checks: the same values give the same counts whatever else their batch holds."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference

REF = Reference.from_data({
    "zip": [10115.0, 20095.0] * 50,
    "age": np.arange(100.0),
    "colour": ["red", "blue"] * 50,
}, categorical=["zip"], bins=4)
AGE_MIN, AGE_MAX = 0.0, 99.0
D = decimal.Decimal


def _age_expectation(values: list) -> dict[str, int]:
    """Counts of the `age` feature, one value at a time, as docs/drift.md defines them."""
    out = {"missing": 0, "out_of_range": 0, "wrong_type": 0, "non_finite": 0}
    for v in values:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or (
                isinstance(v, D) and v.is_nan()):
            out["missing"] += 1
            continue
        if isinstance(v, str):
            out["wrong_type"] += 1
            continue
        number = float(v)
        out["non_finite"] += math.isinf(number)
        out["out_of_range"] += not AGE_MIN <= number <= AGE_MAX
    return out


def _age_counts(batch) -> dict[str, int]:
    result = BatchChecker(REF).check(batch)
    return {"missing": int(result.missing[1]), "out_of_range": int(result.out_of_range[1]),
            "wrong_type": result.input_errors.get("wrong_type", 0),
            "non_finite": result.input_errors.get("non_finite", 0)}


AGE_VALUES = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True, places=2),
    st.sampled_from([D("sNaN"), D("NaN"), D("-1e400"), D("1e400"), D("42.5"), None, pd.NA,
                     "x", "3.5", 7.0, float("nan"), 500.0]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(AGE_VALUES, min_size=1, max_size=6))
def test_decimal_amounts_count_the_same_beside_any_neighbour(values):
    rows = [{"zip": 10115.0, "age": v, "colour": "red"} for v in values]
    expected = _age_expectation(values)
    assert _age_counts(rows) == expected
    assert _age_counts(pd.DataFrame(rows)) == expected
    # One row at a time, no neighbour at all: the sum is the same.
    singles = [_age_counts([row]) for row in rows]
    assert {k: sum(s[k] for s in singles) for k in expected} == expected


def test_a_decimal_beside_text_is_a_number_and_its_signalling_nan_is_missing():
    result = BatchChecker(REF).check([
        {"zip": 10115.0, "age": D("12.5"), "colour": "red"},
        {"zip": 10115.0, "age": "lots", "colour": "red"},
        {"zip": 10115.0, "age": D("sNaN"), "colour": "red"},
    ])
    assert result.input_errors == {"wrong_type": 1}
    assert result.missing.tolist() == [0, 1, 0]
    assert int(result.bin_counts[1].sum()) == 1  # 12.5 is binned


def test_decimal_amounts_through_instrument_are_not_wrong_types(scraper):
    model = inferwatch.instrument(lambda rows: np.zeros(len(rows)), name="m", version="1",
                                  reference=REF, registry=scraper.registry)
    model([{"zip": 10115.0, "age": D("5"), "colour": "red"},
           {"zip": 10115.0, "age": pd.NA, "colour": "red"},
           {"zip": 10115.0, "age": "x", "colour": "red"}])
    assert scraper.value("inferwatch_input_errors_total", reason="wrong_type") == 1
    assert scraper.value("inferwatch_feature_missing_total", feature="age") == 1


# --- lists of rows that mix numbers and text ---------------------------------------------

ROW_VALUES = st.tuples(
    st.sampled_from([10115.0, 20095.0, 10115, 99999.0, None]),
    st.sampled_from([3.0, True, False, 150.0, None, "1.5", "x"]),
    st.sampled_from(["red", "blue", "green", None]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW_VALUES, min_size=1, max_size=5))
def test_a_list_of_lists_counts_as_the_same_rows_as_dicts(rows):
    checker = BatchChecker(REF)
    as_dicts = checker.check([dict(zip(REF.feature_names, row)) for row in rows])
    as_lists = checker.check([list(row) for row in rows])
    assert as_lists.rows == as_dicts.rows == len(rows)
    assert as_lists.missing.tolist() == as_dicts.missing.tolist()
    assert as_lists.out_of_range.tolist() == as_dicts.out_of_range.tolist()
    assert as_lists.unseen_category.tolist() == as_dicts.unseen_category.tolist()
    assert as_lists.input_errors == as_dicts.input_errors
    assert as_lists.flat_bin_counts.tolist() == as_dicts.flat_bin_counts.tolist()


def test_a_float_code_in_a_list_row_is_its_category_and_true_a_number():
    checker = BatchChecker(REF)
    result = checker.check([[10115.0, True, "red"]])
    assert result.unseen_category.tolist() == [0, 0, 0]
    assert result.input_errors == {}
    one_row = checker.check([10115.0, "1.5", "red"])  # text in a numeric feature of a list
    assert one_row.input_errors == {"wrong_type": 1}
    assert one_row.unseen_category.tolist() == [0, 0, 0]


# --- duplicated column names ----------------------------------------------------------------

FRAME = pd.DataFrame({"zip": [10115.0, 20095.0], "age": [1.0, 200.0], "colour": ["red", "x"]})


def test_a_duplicated_extra_column_loses_none_of_the_features_checks():
    # pd.concat(axis=1) of the features and two frames of request metadata, both with an id.
    frame = pd.concat([FRAME, pd.DataFrame({"id": [1, 2]}), pd.DataFrame({"id": [3, 4]})],
                      axis=1)
    checker = BatchChecker(REF)
    result = checker.check(frame)
    alone = checker.check(FRAME)
    assert result.rows == 2
    assert result.out_of_range.tolist() == alone.out_of_range.tolist() == [0, 1, 0]
    assert result.unseen_category.tolist() == [0, 0, 1]
    assert result.flat_bin_counts.tolist() == alone.flat_bin_counts.tolist()
    assert result.input_errors == {"extra_column": 4}  # two columns of two rows


def test_a_duplicated_feature_is_a_wrong_shape_and_the_others_are_checked(scraper):
    frame = pd.concat([FRAME, FRAME[["age"]]], axis=1)
    result = BatchChecker(REF).check(frame)
    assert result.rows == 2
    assert result.input_errors == {"wrong_shape": 1}
    assert result.unseen_category.tolist() == [0, 0, 1]
    assert int(result.bin_counts[1].sum()) == 0  # the ambiguous feature is not binned
    model = inferwatch.instrument(lambda rows: np.zeros(len(rows)), name="m", version="1",
                                  reference=REF, registry=scraper.registry)
    model(frame)
    assert scraper.value("inferwatch_feature_unseen_category_total", feature="colour") == 1
    assert scraper.value("inferwatch_drift_window_observations") == 2


def test_a_decimal_nan_in_a_categorical_feature_is_missing_in_profile_and_checks():
    # colour is categorical: a NaN amount is no category "NaN", neither when profiled nor
    # when checked.
    reference = Reference.from_data({"colour": ["red", D("NaN"), "blue", D("sNaN")] * 25},
                                    categorical=["colour"], bins=4)
    assert "NaN" not in reference.features["colour"].categories
    assert "sNaN" not in reference.features["colour"].categories
    result = BatchChecker(reference).check([{"colour": D("NaN")}, {"colour": "red"}])
    assert result.missing.tolist() == [1]
    assert result.input_errors.get("unseen_category", 0) == 0
