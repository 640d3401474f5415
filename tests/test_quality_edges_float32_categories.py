"""Data quality against a training reference: precision, category dtypes, name collisions,
incomplete reference files and column names the CLI flags must reach."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.quality import profile_cli
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.column_flags import split_columns
from inferwatch.quality.reference import Reference, ReferenceError


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


# Decimal values as a user types them or a JSON request carries them.
decimals = st.integers(-10**6, 10**6).map(lambda i: i / 1000)


# --- 1. float32 training columns against float64 live values (and back) ----------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(decimals, min_size=2, max_size=40))
def test_float32_training_values_are_in_range_as_float64(values):
    """A model trained on a float32 frame and served float64 (JSON, pandas) sees the very
    same numbers: none of them is out of range, and each lands in the bin it trained in."""
    train = np.array(values, dtype=np.float32)
    ref = Reference.from_data({"p": train})
    checker = BatchChecker(ref)
    as_float64 = checker.check({"p": values})
    as_float32 = checker.check({"p": train})
    assert as_float64.out_of_range.tolist() == [0]
    assert as_float32.out_of_range.tolist() == [0]
    assert as_float64.flat_bin_counts.tolist() == as_float32.flat_bin_counts.tolist()
    counts = np.array(ref.features["p"].fractions) * len(values)
    assert np.allclose(as_float64.flat_bin_counts, counts)


def test_float32_constant_feature_gets_float64_value_in_its_own_bin():
    ref = Reference.from_data({"c": np.full(20, 0.7, dtype=np.float32)})
    result = BatchChecker(ref).check({"c": [0.7, 0.7]})
    assert result.out_of_range.tolist() == [0]
    assert result.flat_bin_counts.tolist() == [0, 2, 0]  # at the value, not above it


@settings(max_examples=60, deadline=None)
@given(st.lists(decimals, min_size=2, max_size=40))
def test_float32_live_batches_match_a_float64_reference(values):
    """A float64 reference (a pandas training frame) and float32 inputs (a torch or ONNX
    model server): the training values, sent as float32, are in range and binned alike."""
    ref = Reference.from_data({"a": np.array(values), "b": np.array(values)})
    checker = BatchChecker(ref)
    as_float64 = checker.check(np.column_stack([values, values]))
    as_float32 = checker.check(np.column_stack([values, values]).astype(np.float32))
    assert as_float32.out_of_range.tolist() == [0, 0]
    assert as_float32.flat_bin_counts.tolist() == as_float64.flat_bin_counts.tolist()
    one_column = checker.check({"a": np.array(values, dtype=np.float32), "b": values})
    assert one_column.out_of_range.tolist() == [0, 0]
    assert one_column.flat_bin_counts.tolist() == as_float64.flat_bin_counts.tolist()


def test_float32_infinities_and_huge_values_stay_out_of_range():
    ref = Reference.from_data({"a": [0.0, 1.0], "b": [-1e300, 1e300]})
    batch = np.array([[np.inf, np.inf], [-np.inf, 1.0], [2.0, 0.0]], dtype=np.float32)
    result = BatchChecker(ref).check(batch)
    assert result.out_of_range.tolist() == [3, 1]
    assert result.input_errors == {"non_finite": 3}


# --- 2. pandas category columns of numbers ------------------------------------------------

def zip_frame() -> pd.DataFrame:
    return pd.DataFrame({"zip": pd.Categorical([10115, 75001, 10115, 20095, None] * 20),
                         "amount": np.arange(100.0)})


@pytest.mark.parametrize("wrap", [lambda f: f, lambda f: pa.Table.from_pandas(f),
                                  lambda f: {"zip": f["zip"], "amount": f["amount"]}],
                         ids=["pandas", "arrow", "dict-of-series"])
def test_numeric_category_column_is_profiled_as_categories(wrap):
    profile = Reference.from_data(wrap(zip_frame())).features["zip"]
    assert profile.kind == "categorical"
    assert profile.categories == ("10115", "20095", "75001", "__other__")
    assert profile.missing_rate == pytest.approx(0.2)


def test_numeric_categories_are_checked_as_categories_live():
    checker = BatchChecker(Reference.from_data(zip_frame()))
    live = pd.DataFrame({"zip": pd.Categorical([10115, 99999, None]), "amount": [1.0] * 3})
    result = checker.check(live)
    assert result.unseen_category.tolist() == [1, 0]
    assert result.missing.tolist() == [1, 0]
    # The same codes as plain numbers (a JSON request) are the same categories.
    plain = checker.check([{"zip": 10115, "amount": 1.0}, {"zip": 75001.0, "amount": 2.0}])
    assert plain.unseen_category.tolist() == [0, 0]
    assert plain.input_errors == {}


def test_profile_cli_reads_a_parquet_category_column_as_categories(tmp_path):
    data, out = tmp_path / "train.parquet", tmp_path / "ref.json"
    pq.write_table(pa.Table.from_pandas(zip_frame()), data)
    assert run_profile([str(data), "-o", str(out)]) == 0
    written = Reference.load(out)
    assert written.features["zip"].kind == "categorical"
    assert written == Reference.from_data(zip_frame())


# --- 3. a dict of columns whose keys are one text ---------------------------------------------

@pytest.mark.parametrize("max_pending_rows", [65_536, 3])
def test_dict_of_columns_with_0_and_text_0_is_counted_not_silently_merged(max_pending_rows):
    ref = Reference.from_data({"0": [1.0, 2.0], "b": [1.0, 2.0]})
    checker = BatchChecker(ref, max_pending_rows=max_pending_rows)
    result = checker.check({0: [1.0] * 7, "0": [50.0] * 7, "b": [1.5] * 7})
    assert result.input_errors == {"wrong_shape": 1}
    assert result.rows == 7
    assert result.out_of_range.tolist() == [0, 0]
    # The feature's values were not read (neither key wins); the other feature is checked.
    bins = result.bin_counts
    assert bins[0].sum() == 0 and bins[1].sum() == 7


def test_dict_of_columns_with_colliding_unknown_keys_counts_both_as_extra():
    checker = BatchChecker(Reference.from_data({"a": [1.0, 2.0]}))
    result = checker.check({"a": [1.0, 2.0], 5: [0, 0], "5": [1, 1]})
    assert result.input_errors == {"extra_column": 4}
    assert result.rows == 2


# --- 4. reference files without features; header-only CSV ---------------------------------

def test_reference_without_features_key_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"format": "inferwatch.reference", "version": 1, "rows": 10,
                                "outputs": []}))
    with pytest.raises(ReferenceError, match=r"ref\.json.*'features'"):
        Reference.load(path)


def test_header_only_csv_is_an_error_naming_the_file(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("age,city\n")
    assert run_profile([str(data), "-o", str(tmp_path / "ref.json")]) == 2
    err = capsys.readouterr().err
    assert "train.csv" in err and "no data rows" in err
    assert not (tmp_path / "ref.json").exists()


# --- 5. column names holding commas in the CLI flags ---------------------------------------

@pytest.fixture()
def comma_csv(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text('"zip,code",age,"id,x"\n' + "".join(
        f"{10115 + i % 3},{20 + i},{i}\n" for i in range(30)))
    return data


@pytest.mark.parametrize("flag", ["zip,code", "zip\\,code"])
def test_categorical_flag_names_a_column_with_a_comma(comma_csv, tmp_path, flag):
    out = tmp_path / "ref.json"
    assert run_profile([str(comma_csv), "-o", str(out), "--categorical", flag,
                        "--ignore", "id\\,x"]) == 0
    ref = Reference.load(out)
    assert ref.feature_names == ["zip,code", "age"]
    assert ref.features["zip,code"].kind == "categorical"


def test_comma_lists_still_name_several_columns(comma_csv, tmp_path):
    out = tmp_path / "ref.json"
    assert run_profile([str(comma_csv), "-o", str(out), "--ignore", "id\\,x,age"]) == 0
    assert Reference.load(out).feature_names == ["zip,code"]


def test_a_value_naming_a_column_and_a_list_of_columns_is_refused(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text('a,b,"a,b"\n1,2,3\n4,5,6\n')
    assert run_profile([str(data), "-o", str(tmp_path / "r.json"), "--ignore", "a,b"]) == 2
    assert "a\\\\,b" in capsys.readouterr().err


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab,\\ "), min_size=1, max_size=5), min_size=1,
                max_size=3))
def test_escaped_names_round_trip_through_split(names):
    names = [n.strip() for n in names]
    if any(not n or n.endswith("\\") or "\\," in n for n in names):
        return  # names the escape itself cannot write
    escaped = ",".join(n.replace(",", "\\,") for n in names)
    assert split_columns([escaped]) == names


def test_pandas_float32_frame_against_a_float64_reference():
    ref = Reference.from_data({"a": [0.0, 0.1, 0.7, 0.7, 0.1]})
    live = pd.DataFrame({"a": np.array([0.1, 0.7, 0.7], dtype=np.float32)})
    result = BatchChecker(ref).check(live)
    assert result.out_of_range.tolist() == [0]
    assert result.flat_bin_counts.tolist() == BatchChecker(ref).check(
        {"a": [0.1, 0.7, 0.7]}).flat_bin_counts.tolist()
