"""Categorical profiling converts each distinct value once (a pandas categorical by its
codes), and gives exactly what converting every cell on its own gives: the same keys, the
same missing cells, the same profile."""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.quality.category_keys import category_key, category_keys, is_missing
from inferwatch.quality.input_columns import category_values
from inferwatch.quality.profiling import first_nested

CELLS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, -1.0]),
    st.just(float("nan")), st.sampled_from(["a", "b", "1", "True", ""]),
    st.sampled_from([b"a", b"\xff"]), st.sampled_from([decimal.Decimal("1"), decimal.Decimal("1.0"),
                                                      decimal.Decimal("NaN")]),
    st.sampled_from([np.int64(1), np.float32(1.0), np.bool_(True), np.str_("a")]),
    st.just(pd.NA))


def _one_by_one(values: list) -> tuple[list, list]:
    present = [not is_missing(v) for v in values]
    return [category_key(v) if ok else "" for v, ok in zip(values, present)], present


@settings(max_examples=300, deadline=None)
@given(st.lists(CELLS, max_size=40))
def test_keys_converted_once_per_distinct_value_are_those_of_each_cell(values):
    column = np.empty(len(values), dtype=object)
    column[:] = values
    keys, present = category_keys(column)
    assert (keys.tolist(), present.tolist()) == _one_by_one(values)


def test_unhashable_values_are_converted_on_their_own():
    column = np.empty(3, dtype=object)
    column[:] = [{"a": 1}, "a", {"a": 1}]
    keys, present = category_keys(column)
    assert keys.tolist() == [str({"a": 1}), "a", str({"a": 1})]
    assert present.tolist() == [True, True, True]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from([10115, 7, 0, -2])), max_size=30))
def test_a_pandas_categorical_read_by_codes_matches_its_values(values):
    series = pd.Series(pd.Categorical(values))
    expected = [None if v is None else str(v) for v in values]
    assert category_values(series).tolist() == expected
    assert category_values(pd.Categorical(values)).tolist() == expected


def test_a_categorical_column_profiles_as_the_same_text_column():
    rng = np.random.default_rng(3)
    levels = [f"k{i}" for i in range(40)]
    codes = rng.integers(-1, 40, 5_000)  # -1: missing
    categorical = pd.Categorical.from_codes(codes, levels)
    text = pd.Series([None if c < 0 else levels[c] for c in codes], dtype=object)
    by_codes = inferwatch.Reference.from_data(pd.DataFrame({"c": categorical}))
    by_text = inferwatch.Reference.from_data(pd.DataFrame({"c": text}),
                                             categorical=["c"])
    assert by_codes.to_dict() == by_text.to_dict()


def test_a_nested_value_is_found_among_plain_ones():
    plain = np.array(["a", 1, 2.0, None, np.float64(3)], dtype=object)
    assert first_nested(plain) is None
    nested = np.array(["a", 1, np.array([1, 2]), None], dtype=object)
    assert first_nested(nested) == 2
    scalar_array = np.empty(2, dtype=object)
    scalar_array[:] = ["a", np.array(5)]  # a 0-d array is one value
    assert first_nested(scalar_array) is None


def test_a_datetime64_column_keeps_its_instants():
    column = np.array(["2024-01-05T10:30", "NaT", "2024-01-05T10:30"], dtype="datetime64[ns]")
    keys, present = category_keys(column)
    assert (keys.tolist(), present.tolist()) == _one_by_one(list(column))
    assert keys[0] == category_key(np.datetime64("2024-01-05T10:30", "s"))
