"""Reference profiles and data-quality checks on training and serving data as users have it:
structured arrays, Arrow dictionary columns, bytes, masked arrays, hand-edited files, odd CSV."""

from __future__ import annotations

import argparse
import json
import math
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.quality import profile_cli
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference, ReferenceError


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


def counts(result) -> tuple:
    return (result.rows, result.missing.tolist(), result.out_of_range.tolist(),
            result.unseen_category.tolist(), result.input_errors)


# --- profile CLI ------------------------------------------------------------------------------

def test_csv_with_a_blank_line_before_the_header_is_profiled(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("\n\nage,city\n30,Oslo\n40,Rome\n")
    out = tmp_path / "reference.json"
    assert run_profile([str(data), "-o", str(out)]) == 0
    ref = Reference.load(out)
    assert ref.feature_names == ["age", "city"]
    assert ref.features["age"].max == 40.0
    assert ref.features["city"].categories == ("Oslo", "Rome", "__other__")


def test_csv_of_blank_lines_only_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("\n\n\n")
    assert run_profile([str(data), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "empty file" in err and str(data) in err
    assert not (tmp_path / "r.json").exists()


# --- structured arrays ------------------------------------------------------------------------

RECORDS = np.array([(18, 1.5, b"a"), (40, 2.5, b"b"), (90, 3.5, b"a")],
                   dtype=[("age", "i8"), ("score", "f8"), ("code", "S1")])


def test_structured_array_is_profiled_by_field_name():
    ref = Reference.from_data(RECORDS)
    assert ref.feature_names == ["age", "score", "code"]
    assert ref.features["age"].is_numeric and ref.features["age"].max == 90.0
    assert ref.features["score"].min == 1.5
    assert ref.features["code"].categories == ("a", "b", "__other__")
    assert ref.rows == 3


def test_structured_array_of_records_is_refused_when_not_one_row_per_record():
    with pytest.raises(ReferenceError, match="structured array of shape"):
        Reference.from_data(RECORDS.reshape(3, 1))


def test_structured_array_is_checked_by_field_name_in_any_order():
    checker = BatchChecker(Reference.from_data(RECORDS))
    live = np.array([(b"c", 100, 2.0), (b"a", 20, np.nan)],
                    dtype=[("code", "S1"), ("age", "i8"), ("score", "f8")])
    assert counts(checker.check(live)) == (2, [0, 1, 0], [1, 0, 0], [0, 0, 1], {})
    # One record (what indexing a structured array gives) is one row.
    assert counts(checker.check(live[0])) == (1, [0, 0, 0], [1, 0, 0], [0, 0, 1], {})


# --- categories -------------------------------------------------------------------------------

def test_bytes_in_row_dicts_match_a_bytes_training_column():
    ref = Reference.from_data({"code": np.array([b"red", b"blue", b"red"])})
    result = BatchChecker(ref).check([{"code": b"red"}, {"code": np.bytes_(b"blue")},
                                      {"code": "red"}, {"code": b"green"}])
    assert result.unseen_category.tolist() == [1]
    assert result.bin_counts[0].tolist() == [2, 1, 1]


def test_float16_category_values_raise_no_warning():
    ref = Reference.from_data({"n": np.array([1, 2, 3], dtype=np.float16)}, categorical="n")
    assert ref.features["n"].categories == ("1", "2", "3", "__other__")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = BatchChecker(ref).check([{"n": np.float16(3)}, {"n": np.float16(4)}])
    assert counts(result) == (2, [0], [0], [1], {})


class NoText:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_a_value_without_text_keeps_the_counts_of_its_batch():
    ref = Reference.from_data({"city": ["Oslo", "Rome"], "age": [20.0, 30.0]})
    before = faults.internal_error_counts().get("quality", 0)
    result = BatchChecker(ref).check([{"city": NoText(), "age": 99.0},
                                      {"city": None, "age": 25.0}])
    assert counts(result) == (2, [1, 0], [0, 1], [1, 0], {})
    assert faults.internal_error_counts().get("quality", 0) == before


# --- Arrow dictionary columns (a pandas category column read back from Parquet) --------------

def dictionary_table() -> pa.Table:
    city = pa.chunked_array([pa.array(["Oslo", None, "Rome"]).dictionary_encode(),
                             pa.array([None, "Oslo"]).dictionary_encode()])
    return pa.table({"city": city, "age": pa.array([20.0, 30.0, None, 40.0, 50.0])})


def test_arrow_dictionary_column_keeps_its_nulls_missing_in_the_profile():
    ref = Reference.from_data(dictionary_table())
    city = ref.features["city"]
    assert city.missing_rate == pytest.approx(2 / 5)
    assert city.categories == ("Oslo", "Rome", "__other__")
    assert city.fractions == pytest.approx((2 / 3, 1 / 3, 0.0))


def test_arrow_dictionary_column_nulls_are_missing_when_checked():
    ref = Reference.from_data({"city": ["Oslo", "Rome"], "age": [20.0, 50.0]})
    result = BatchChecker(ref).check(dictionary_table())
    assert counts(result) == (5, [2, 1], [0, 0], [0, 0], {})
    assert result.bin_counts[0].tolist() == [2, 1, 0]


def test_parquet_category_column_keeps_its_nulls_through_the_profile_cli(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"city": pd.Categorical(["Oslo", None, "Rome", None]),
                  "age": [1.0, 2.0, 3.0, 4.0]}).to_parquet(path)
    table = pq.read_table(path)
    assert Reference.from_data(table).features["city"].missing_rate == 0.5
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 0
    assert Reference.load(tmp_path / "r.json").features["city"].missing_rate == 0.5


# --- masked arrays ----------------------------------------------------------------------------

def test_masked_entries_are_missing_when_checked_directly():
    checker = BatchChecker(Reference.from_data({"a": [0.0, 1.0], "b": [0.0, 1.0]}))
    batch = np.ma.masked_array([[0.5, 1e9], [0.5, 0.5]], mask=[[False, True], [False, False]])
    assert counts(checker.check(batch)) == (2, [0, 1], [0, 0], [0, 0], {})


# --- reference files --------------------------------------------------------------------------

@pytest.mark.parametrize("version", [True, 1.0])
def test_reference_version_must_be_the_integer_one(tmp_path, version):
    data = Reference.from_data({"a": [1.0, 2.0]}).to_dict()
    data["version"] = version
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReferenceError, match=r"reference.json: key 'version' is"):
        Reference.load(path)


def test_reference_saved_with_a_byte_order_mark_loads(tmp_path):
    ref = Reference.from_data({"a": [1.0, 2.0], "c": ["x", "y"]})
    path = tmp_path / "reference.json"
    path.write_text(ref.to_json(), encoding="utf-8-sig")
    assert Reference.load(path) == ref


def test_float32_training_max_is_in_range_after_a_round_trip(tmp_path):
    values = np.array([0.1, 0.7, 0.3], dtype=np.float32)
    Reference.from_data({"x": values}).save(tmp_path / "r.json")
    checker = BatchChecker(Reference.load(tmp_path / "r.json"))
    live = np.array([[values.max()], [values.min()]], dtype=np.float32)
    assert checker.check(live).out_of_range.tolist() == [0]
    assert checker.check([{"x": float(values.max())}]).out_of_range.tolist() == [0]


# --- exact counts for random frames -----------------------------------------------------------

numbers = st.one_of(st.none(), st.just(math.nan),
                    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
labels = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "z"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(train=st.lists(st.tuples(numbers, labels), min_size=1, max_size=30),
       live=st.lists(st.tuples(numbers, labels), min_size=1, max_size=30),
       tolerance=st.sampled_from([0.0, 0.1]))
def test_counts_are_exact_in_every_container(train, live, tolerance):
    ref = Reference.from_data({"x": [t[0] for t in train], "c": [t[1] for t in train]},
                              categorical="c")
    checker = BatchChecker(ref, range_tolerance=tolerance)
    x = ref.features["x"]
    seen = set(ref.features["c"].categories[:-1])
    present = [v for v, _ in live if v is not None and not math.isnan(v)]
    if x.min is None:
        oor = len(present)
    else:
        slack = tolerance * (x.max - x.min)
        oor = sum(not (x.min - slack <= v <= x.max + slack) for v in present)
    expected = (len(live), [len(live) - len(present), sum(c is None for _, c in live)],
                [oor, 0], [0, sum(c is not None and c not in seen for _, c in live)], {})
    rows = [{"x": v, "c": c} for v, c in live]
    frame = pd.DataFrame({"c": pd.array([c for _, c in live], dtype="string"),
                          "x": pd.array([v for v, _ in live], dtype="Float64")})
    arrow = pa.table({"c": pa.array([c for _, c in live]).dictionary_encode(),
                      "x": pa.array([v for v, _ in live], type=pa.float64())})
    records = np.array([(v if v is not None else np.nan, c or "") for v, c in live],
                       dtype=[("x", "f8"), ("c", object)])
    records["c"] = [c for _, c in live]
    for batch in (rows, frame, arrow, records):
        assert counts(checker.check(batch)) == expected, type(batch)
