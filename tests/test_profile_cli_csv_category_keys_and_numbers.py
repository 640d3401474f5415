"""`inferwatch profile` on CSV: --categorical cells keyed as live values are, and numbers
read as pandas reads them (ASCII decimal syntax; an overflow refused, not dropped)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.quality import profile_cli
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
    """The `inferwatch` command itself, in a child process."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from inferwatch.cli import main;"
         " sys.exit(main(sys.argv[1:]))", *argv],
        capture_output=True, text=True, timeout=120)


def test_integer_codes_with_a_gap_written_by_pandas_match_live_codes(tmp_path):
    train = pd.DataFrame({"zip": [10115, 20095, None, 10115, 80331] * 20,
                          "amount": np.arange(100.0)})
    data, out = tmp_path / "zips.csv", tmp_path / "zips.json"
    train.to_csv(data, index=False)
    assert "10115.0" in data.read_text()  # the gap makes pandas write floats

    done = run_command("profile", str(data), "-o", str(out), "--categorical", "zip")

    assert done.returncode == 0, done.stderr
    reference = Reference.load(out)
    assert reference.features["zip"].categories == \
        Reference.from_data(train, categorical=["zip"]).features["zip"].categories
    checker = BatchChecker(reference)
    for live in (train, pd.read_csv(data),
                 pd.DataFrame({"zip": [10115, 20095, 80331], "amount": [1.0, 2.0, 3.0]})):
        assert checker.check(live).unseen_category.tolist() == [0, 0]


def test_iso_date_times_profiled_as_categories_match_live_timestamps(tmp_path):
    data, out = tmp_path / "iso.csv", tmp_path / "iso.json"
    data.write_text("slot,x\n" + "".join(f"2024-01-0{d}T10:30:00,{d}\n" for d in range(1, 6))
                    + "2024-01-06T00:00:00,6\n2024-01-07T10:30:00.250,7\n,8\n")

    assert run_profile([str(data), "-o", str(out), "--categorical", "slot"]) == 0

    live = pd.read_csv(data, parse_dates=["slot"], date_format="ISO8601")
    assert live["slot"].dtype.kind == "M"
    categories = Reference.load(out).features["slot"].categories
    assert categories == Reference.from_data(live, categorical=["slot"]).features[
        "slot"].categories
    assert "2024-01-01 10:30:00" in categories and "2024-01-06" in categories
    result = BatchChecker(Reference.load(out)).check(live)
    assert result.unseen_category.tolist() == [0, 0]
    assert result.missing.tolist() == [1, 0]


def test_date_times_with_an_offset_keep_it(tmp_path):
    data, out = tmp_path / "tz.csv", tmp_path / "tz.json"
    data.write_text("at\n2024-01-01T10:30:00+02:00\n2024-01-01T10:30:00Z\n")

    assert run_profile([str(data), "-o", str(out), "--categorical", "at"]) == 0

    assert Reference.load(out).features["at"].categories[:2] == (
        "2024-01-01 10:30:00+00:00", "2024-01-01 10:30:00+02:00")


@pytest.mark.parametrize(("cells", "expected"), [
    # Codes written as text keep their leading zeros, as a live string keeps them.
    (["01234", "00042", "01234"], ("01234", "00042")),
    # A column that is not all numbers is text in pandas too: "2.0" stays "2.0".
    (["2.0", "2.10", "beta"], ("2.0", "2.10", "beta")),
    (["Oslo", "2024-01-01"], ("2024-01-01", "Oslo")),
])
def test_text_that_is_not_a_number_or_time_column_stays_as_written(tmp_path, cells, expected):
    data, out = tmp_path / "codes.csv", tmp_path / "codes.json"
    data.write_text("code\n" + "".join(f"{c}\n" for c in cells))

    assert run_profile([str(data), "-o", str(out), "--categorical", "code"]) == 0

    assert sorted(Reference.load(out).features["code"].categories[:-1]) == sorted(expected)


def test_python_only_number_syntax_is_text_as_pandas_reads_it(tmp_path):
    data, out = tmp_path / "num.csv", tmp_path / "num.json"
    data.write_text("sku,qty,price\n1_000,١٢,1.5\n2_000,٣,2.5\n3_500,٤,-inf\n")

    assert run_profile([str(data), "-o", str(out)]) == 0

    reference = Reference.load(out)
    assert not reference.features["sku"].is_numeric
    assert not reference.features["qty"].is_numeric
    assert reference.features["price"].is_numeric
    live = pd.read_csv(data)
    assert live["sku"].dtype != float and live["qty"].dtype != float
    assert BatchChecker(reference).check(live.iloc[:2]).input_errors == {}


def test_a_number_too_large_for_a_float_is_refused_naming_column_and_row(tmp_path):
    data, out = tmp_path / "big.csv", tmp_path / "big.json"
    data.write_text("a,big\n1,5\n2,6\n3,1e400\n4,7\n")

    done = run_command("profile", str(data), "-o", str(out))

    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "'big'" in lines[0] and "data row 3" in lines[0] and "1e400" in lines[0]
    assert not out.exists()


def test_an_overflowing_cell_in_a_column_that_turns_to_text_is_text(tmp_path):
    data, out = tmp_path / "late.csv", tmp_path / "late.json"
    data.write_text("code\n1e400\n5\nabc\n")

    assert run_profile([str(data), "-o", str(out)]) == 0

    assert not Reference.load(out).features["code"].is_numeric


integer_codes = st.lists(
    st.one_of(st.none(), st.integers(-10**6, 10**6), st.integers(-2**62, 2**62)),
    min_size=1, max_size=40).filter(lambda codes: any(c is not None for c in codes))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(codes=integer_codes, as_floats=st.booleans())
def test_profiled_integer_codes_are_the_categories_from_data_finds(tmp_path, codes,
                                                                   as_floats):
    series = pd.Series(codes, dtype="float64" if as_floats else None)
    train = pd.DataFrame({"code": series, "x": np.arange(len(codes), dtype=float)})
    data, out = tmp_path / "codes.csv", tmp_path / "codes.json"
    train.to_csv(data, index=False)

    assert run_profile([str(data), "-o", str(out), "--categorical", "code",
                        "--max-categories", "100"]) == 0

    expected = Reference.from_data(train, categorical=["code"], max_categories=100)
    assert Reference.load(out).features["code"].categories == \
        expected.features["code"].categories
