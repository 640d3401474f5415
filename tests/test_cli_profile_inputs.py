"""`inferwatch profile` on the files users have: compressed exports, other separators."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from inferwatch.quality.reference import Reference

COMMAND = [sys.executable, "-c",
           "import sys; from inferwatch.cli import main; sys.exit(main(sys.argv[1:]))"]


def inferwatch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def training(tmp_path) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 300
    return pd.DataFrame({"age": rng.integers(18, 90, n).astype(float),
                         "income": rng.lognormal(10, 1, n),
                         "city": rng.choice(["Berlin", "Paris", "Rome"], n),
                         "score": rng.random(n)})


@pytest.mark.parametrize("name", ["train.csv.gz", "train.csv"])
def test_a_gzip_compressed_csv_gives_the_reference_of_the_plain_file(training, tmp_path,
                                                                     name):
    # pandas writes .csv.gz when asked for it, and reads it back without a word: so does
    # profile, by the content (an export compressed under a plain .csv name reads too).
    plain, packed = tmp_path / "plain.csv", tmp_path / name
    training.to_csv(plain, index=False)
    packed.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    for data, out in ((plain, "plain.json"), (packed, "packed.json")):
        done = inferwatch("profile", str(data), "-o", str(tmp_path / out),
                          "--predictions-column", "score")
        assert done.returncode == 0, done.stderr
    assert Reference.load(tmp_path / "packed.json") == Reference.load(tmp_path / "plain.json")

    done = inferwatch("report", "--reference", str(tmp_path / "plain.json"), str(packed),
                      "-o", str(tmp_path / "report.html"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"wrote {tmp_path / 'report.html'}: 300 rows, 3 features")


def test_a_truncated_gzip_file_is_a_one_line_error(training, tmp_path):
    plain, packed = tmp_path / "plain.csv", tmp_path / "train.csv.gz"
    training.to_csv(plain, index=False)
    packed.write_bytes(gzip.compress(plain.read_bytes(), mtime=0)[:2000])  # a copy cut short
    out = tmp_path / "reference.json"

    done = inferwatch("profile", str(packed), "-o", str(out))

    assert done.returncode == 2
    assert done.stderr == (f"inferwatch profile: error: {packed}: cannot read: damaged gzip"
                           " data: Compressed file ended before the end-of-stream marker was"
                           " reached\n")
    assert not out.exists()


@pytest.mark.parametrize(("separator", "name", "convert"), [
    (";", "semicolons", "sep=';', decimal=','"),
    ("\t", "tabs", "sep='\\t'"),
])
def test_a_file_separated_by_semicolons_or_tabs_is_refused_not_read_as_one_column(
        training, tmp_path, separator, name, convert):
    # A spreadsheet export where the comma is the decimal mark, or a TSV file: read with
    # commas it was one feature named "age;income;city;score", and a reference that every
    # live row fails.
    data, out = tmp_path / "train.csv", tmp_path / "reference.json"
    training.to_csv(data, index=False, sep=separator)
    header = separator.join(training.columns)

    done = inferwatch("profile", str(data), "-o", str(out))

    assert done.returncode == 2
    assert done.stderr == (
        f"inferwatch profile: error: {data}: the header reads as one column, {header!r}:"
        f" separated by {name}? Only commas separate columns: convert it, for example with"
        f" pandas.read_csv(path, {convert}).to_csv(out, index=False)\n")
    assert not out.exists()


def test_a_one_column_file_is_still_a_profile(tmp_path):
    data, out = tmp_path / "scores.csv", tmp_path / "reference.json"
    data.write_text("score\n0.1\n0.7\n0.4\n", encoding="utf-8")
    done = inferwatch("profile", str(data), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert Reference.load(out).feature_names == ["score"]
