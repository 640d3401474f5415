"""Reference profiles on unusual input: hand-edited files with numbers no float holds, flags
of the wrong type, inconsistent ranges, absurd bin counts and values at the edge of float64.

A reference is configuration: whatever is wrong with it must be a ReferenceError that names
the file and the key, never an OverflowError from deep inside, and a profile that was built
must save and load again.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.profiling import profile_column
from inferwatch.quality.reference import Reference, ReferenceError

HUGE = 10**400  # JSON allows it; no float64 holds it


def _base() -> dict:
    ref = Reference.from_data({"a": np.arange(100.0), "c": ["x", "y"] * 50},
                              predictions=np.linspace(0.0, 1.0, 100),
                              y_true=np.linspace(0.0, 1.0, 100))
    return json.loads(ref.to_json())


def _write(tmp_path, data: object, text: str | None = None) -> str:
    path = tmp_path / "reference.json"
    path.write_text(text if text is not None else json.dumps(data), encoding="utf-8")
    return str(path)


# Every place a hand-edited file can hold a number, as (path into the document, key).
NUMBER_PLACES = [
    (("features", 0), "min"),
    (("features", 0), "max"),
    (("features", 0), "missing_rate"),
    (("features", 1), "missing_rate"),
    (("outputs", 0), "max"),
    (("features", 0, "edges"), 0),
    (("features", 0, "fractions"), 0),
    (("features", 1, "fractions"), 0),
    (("validation",), "value"),
]


def _at(document: dict, path: tuple) -> object:
    for step in path:
        document = document[step]
    return document


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(NUMBER_PLACES), sign=st.sampled_from([1, -1]))
def test_an_integer_too_large_for_a_float_in_the_file_is_a_reference_error(tmp_path, place, sign):
    document = _base()
    container, key = place
    _at(document, container)[key] = sign * HUGE
    path = _write(tmp_path, document)
    with pytest.raises(ReferenceError) as info:
        Reference.load(path)
    assert path in str(info.value)


def test_an_integer_past_pythons_digit_limit_is_a_reference_error_naming_the_file(tmp_path):
    text = json.dumps(_base()).replace('"rows": 100', '"rows": ' + "1" * 5000, 1)
    path = _write(tmp_path, None, text)
    with pytest.raises(ReferenceError, match=r"reference\.json"):
        Reference.load(path)


@pytest.mark.parametrize("rows", [True, False, 1.5, "100"])
def test_rows_must_be_an_integer_not_a_bool(tmp_path, rows):
    document = _base()
    document["rows"] = rows
    with pytest.raises(ReferenceError, match="'rows'"):
        Reference.load(_write(tmp_path, document))


def test_a_range_with_min_above_max_is_refused_not_every_value_out_of_range(tmp_path):
    document = _base()
    document["features"][0]["min"] = 1000.0  # max is 99
    with pytest.raises(ReferenceError, match=r"features\[0\] \('a'\).*'min'.*'max'"):
        Reference.load(_write(tmp_path, document))


@pytest.mark.parametrize("missing", ["min", "max"])
def test_a_range_with_one_bound_null_is_refused(tmp_path, missing):
    document = _base()
    document["features"][0][missing] = None
    with pytest.raises(ReferenceError, match=r"features\[0\] \('a'\).*'min'.*'max'"):
        Reference.load(_write(tmp_path, document))


def test_a_profile_without_values_keeps_both_bounds_null(tmp_path):
    ref = Reference.from_data({"empty": [None, None]})
    path = tmp_path / "r.json"
    ref.save(path)
    assert Reference.load(path) == ref


def test_a_huge_bin_count_is_profiled_without_allocating_per_bin():
    values = np.arange(50.0)
    # The edges come from the data: more bins than values cannot add any.
    profile = profile_column("a", values, bins=10**12)
    assert profile == profile_column("a", values, bins=50)
    assert profile.n_bins == 50


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(-5, 5) | st.floats(-1e6, 1e6, allow_nan=False),
                       min_size=2, max_size=40),
       extra=st.integers(0, 200))
def test_more_bins_than_values_gives_the_same_edges_as_unclamped_quantiles(values, extra):
    data = np.asarray(values, dtype=np.float64)
    bins = len(data) + extra
    profile = profile_column("a", data, bins=bins)
    lo = data.min()
    if lo == data.max():
        return  # a constant has its own three bins
    cuts = np.quantile(data, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="higher")
    expected = np.unique(cuts)
    assert profile.edges == tuple(float(e) for e in expected[expected > lo])


@pytest.mark.parametrize("value", [np.finfo(np.float64).max, -np.finfo(np.float64).max])
def test_a_constant_at_the_largest_float_saves_and_loads(tmp_path, value):
    ref = Reference.from_data({"a": np.full(5, value)})
    path = tmp_path / "r.json"
    ref.save(path)
    loaded = Reference.load(path)
    assert loaded == ref
    profile = loaded.features["a"]
    assert all(np.isfinite(profile.edges))
    result = BatchChecker(loaded).check({"a": [value, 0.0]})
    assert result.out_of_range.tolist() == [1]
    # The value itself lands in a bin holding the whole reference: no drift against itself.
    assert profile.fractions[profile.bin_index(value)] == 1.0


def test_max_categories_refuses_a_bool():
    with pytest.raises(ReferenceError, match="max_categories"):
        Reference.from_data({"c": ["x", "y"]}, max_categories=True)


LONE_SURROGATES = st.text(
    alphabet=st.sampled_from(["a", "\u00e9", "<", "\udc80", "\udcff", "\ud800", "\udfff"]),
    min_size=1, max_size=8).filter(
        lambda s: any("\ud800" <= c <= "\udfff" for c in s)
        and not re.search("[\ud800-\udbff][\udc00-\udfff]", s))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=LONE_SURROGATES, category=LONE_SURROGATES)
def test_names_and_categories_with_undecodable_bytes_save_and_load_back(tmp_path, name,
                                                                        category):
    # Text read with errors="surrogateescape" (file names, bytes that are not UTF-8) holds
    # lone surrogates; the profile must still save, and load back equal.
    ref = Reference.from_data({name: [1.0, 2.0, 3.0], "c": [category, "x", category]})
    path = tmp_path / "r.json"
    ref.save(path)
    path.read_bytes().decode("utf-8")  # the file is valid UTF-8
    loaded = Reference.load(path)
    assert loaded == ref
    assert loaded.feature_names == [name, "c"]
    assert loaded.features["c"].categories[0] == category


def test_a_surrogate_pair_kept_apart_is_refused_naming_the_profile():
    # Escaped in JSON, the two halves would read back as the one character they encode,
    # and the loaded profile would name another feature than the live one.
    ref = Reference.from_data({"c": ["\ud83d\ude00", "x"]})
    with pytest.raises(ReferenceError, match="profile 'c'"):
        ref.to_json()


def test_one_name_given_as_text_is_one_name_not_its_letters():
    data = {"a": [1, 2, 3], "b": [3, 4, 5], "country": [1, 2, 1]}
    ref = Reference.from_data(data, categorical="country")
    assert {n: p.kind for n, p in ref.features.items()} == {
        "a": "numeric", "b": "numeric", "country": "categorical"}
    assert Reference.from_data(data, feature_names="country").feature_names == ["country"]
    with pytest.raises(ReferenceError, match=r"unknown columns: \['ab'\]"):
        Reference.from_data(data, categorical="ab")  # never columns 'a' and 'b'
    ref = Reference.from_data(np.zeros((3, 1)), predictions=np.arange(3.0),
                              prediction_names="score")
    assert ref.output_names == ["score"]


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False),
                               st.sampled_from(["a", "b", "<c>", "\u00e9"]),
                               st.booleans()),
                     min_size=1, max_size=30),
       as_tuples=st.booleans())
def test_rows_mixing_numbers_and_text_profile_the_numbers_as_numbers(rows, as_tuples):
    # numpy turns such a list into one array of text; the numbers must stay numbers, as
    # they do in the same data given as columns (or with a None anywhere in it).
    data = [tuple(r) if as_tuples else list(r) for r in rows]
    ref = Reference.from_data(data, feature_names=["n", "c", "f"])
    columns = {"n": [r[0] for r in rows], "c": [r[1] for r in rows], "f": [r[2] for r in rows]}
    assert ref.features["n"].kind == "numeric"
    assert ref == Reference.from_data(columns)


@settings(max_examples=40, deadline=None)
@given(amounts=st.lists(st.decimals(min_value=-10**6, max_value=10**6, places=2,
                                    allow_nan=False), min_size=1, max_size=40),
       missing=st.integers(0, 3))
def test_a_decimal_column_is_profiled_as_the_numbers_it_holds(amounts, missing):
    # A database's NUMERIC column arrives as decimal.Decimal: one category per amount
    # would make every new live amount an unseen category.
    import decimal

    column = amounts + [None, decimal.Decimal("NaN"), decimal.Decimal("sNaN")][:missing]
    profile = Reference.from_data({"amount": column}).features["amount"]
    floats = Reference.from_data({"amount": [float(a) for a in amounts] + [None] * missing})
    assert profile.kind == "numeric"
    assert profile == floats.features["amount"]
    checked = BatchChecker(Reference.from_data({"amount": column})).check(
        {"amount": [amounts[0], None]})
    assert checked.missing.tolist() == [1] and checked.out_of_range.tolist() == [0]
