"""References from polars and pandas columns that are not one value a row, and category-typed
columns in training and live traffic alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.profiling import profile_column
from inferwatch.quality.reference import Reference, ReferenceError

pl = pytest.importorskip("polars")


@pytest.mark.parametrize("column", [
    pl.Series("s", [{"a": 1.0}, {"a": 2.0}, {"a": 3.0}]),
    pl.Series("s", [{"a": 1, "b": 2}, {"a": 2, "b": 3}, {"a": 5, "b": 1}]),
    pl.Series("s", [[1], [2, 3], []]),
    pl.Series("s", [[1, 2], [3, 4], [5, 6]], dtype=pl.Array(pl.Int64, 2)),
], ids=["struct-one-field", "struct-two-fields", "list", "array"])
def test_polars_nested_columns_are_refused_by_name(column):
    frame = pl.DataFrame({"amount": [1.0, 2.0, 3.0]}).with_columns(column)
    with pytest.raises(ReferenceError, match=r"column 's' holds .*leave it out"):
        Reference.from_data(frame)
    # The other columns still profile once it is left out.
    assert Reference.from_data(frame.drop("s")).feature_names == ["amount"]


def test_polars_nested_prediction_column_is_refused():
    with pytest.raises(ReferenceError, match=r"predictions: column 'p' holds"):
        Reference.from_data({"x": [1.0, 2.0]},
                            predictions=pl.DataFrame({"p": [{"a": 0.1}, {"a": 0.9}]}))


@pytest.mark.parametrize(("cells", "kind"), [
    ([[1], [2, 3], None], "lists"),
    ([{"a": 1}, {"a": 2}, None], "structs"),
    ([None, (1, 2), (3, 4)], "lists"),
    ([np.zeros(3), np.ones(3), None], "lists"),
])
def test_pandas_object_columns_of_lists_or_dicts_are_refused(cells, kind):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "emb": pd.Series(cells, dtype=object)})
    with pytest.raises(ReferenceError, match=rf"column 'emb' holds {kind}"):
        Reference.from_data(frame)
    with pytest.raises(ReferenceError, match=rf"column 'emb' holds {kind}"):
        Reference.from_data(frame, categorical=["emb"])


def test_ragged_lists_in_a_dict_of_columns_are_a_reference_error():
    # Lists of different lengths: numpy cannot stack them, which must not escape as its
    # own ValueError without the column's name.
    with pytest.raises(ReferenceError, match=r"column 'emb' holds lists"):
        Reference.from_data({"x": [1.0, 2.0], "emb": [[1.0], [2.0, 3.0]]})


def test_row_dicts_holding_lists_are_refused():
    with pytest.raises(ReferenceError, match=r"column 'tags' holds lists"):
        Reference.from_data([{"x": 1.0, "tags": ["a"]}, {"x": 2.0, "tags": ["b", "c"]}])


@given(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=1, max_size=30))
@settings(max_examples=40, deadline=None)
def test_one_list_among_scalars_is_still_refused(values):
    column = [*values, [1, 2]]
    with pytest.raises(ReferenceError, match=r"column 'c' holds lists"):
        Reference.from_data({"c": np.array(column, dtype=object)})


@given(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=40))
@settings(max_examples=40, deadline=None)
def test_profile_column_reads_a_category_series_as_from_data_does(values):
    series = pd.Series(pd.Categorical(values))
    direct = profile_column("zip", series)
    via_frame = Reference.from_data(pd.DataFrame({"zip": series})).features["zip"]
    assert direct == via_frame
    assert direct.kind == "categorical"


def test_numeric_feature_reads_a_live_category_column_by_its_values():
    """Training: a category-typed column is profiled as categories. Live: a column is
    judged by its values against the profile, whatever its type; numbers in a category
    column are numbers, text in one is a wrong type, as in a plain column."""
    ref = Reference.from_data({"z": np.arange(100.0)}, bins=4)
    checker = BatchChecker(ref)
    plain = checker.check(pd.DataFrame({"z": [10.0, 60.0, None, 200.0]}))
    typed = checker.check(pd.DataFrame({"z": pd.Categorical([10.0, 60.0, None, 200.0])}))
    assert typed.missing.tolist() == plain.missing.tolist() == [1]
    assert typed.out_of_range.tolist() == plain.out_of_range.tolist() == [1]
    assert [b.tolist() for b in typed.bin_counts] == [b.tolist() for b in plain.bin_counts]
    text = checker.check(pl.DataFrame({"z": ["10", None]}, schema={"z": pl.Categorical}))
    assert text.input_errors == {"wrong_type": 1}
    assert text.missing.tolist() == [1]


def test_categorical_feature_from_a_category_column_meets_plain_live_numbers():
    ref = Reference.from_data(pd.DataFrame({"zip": pd.Categorical([10115, 7, 7, None])}))
    assert ref.features["zip"].kind == "categorical"
    checker = BatchChecker(ref)
    for batch in (pd.DataFrame({"zip": [10115, 7, 3]}),
                  pd.DataFrame({"zip": pd.Categorical([10115, 7, 3])}),
                  [{"zip": 10115}, {"zip": 7.0}, {"zip": 3}]):
        result = checker.check(batch)
        assert result.unseen_category.tolist() == [1]
        assert [b.tolist() for b in result.bin_counts] == [[1, 1, 1]]
