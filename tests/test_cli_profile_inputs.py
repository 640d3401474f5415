"""`inferwatch profile` on the files users have: compressed exports, other separators."""

from __future__ import annotations

import csv
import gzip
import subprocess

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_pages import INFERWATCH
from inferwatch.quality.reference import Reference


def inferwatch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*INFERWATCH, *argv], capture_output=True, text=True, timeout=120)


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


# --- reading a CSV in blocks --------------------------------------------------------------

_CELLS = st.one_of(
    st.sampled_from(["", "NA", "nan", "null", " 7 ", "01", "1e3", "-0.5", "inf", "x", "é"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.text(alphabet="ab01.-", min_size=1, max_size=4),
)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or len(a) != len(b):
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return a.tolist() == b.tolist()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.integers(1, 4).flatmap(lambda n: st.lists(
    st.lists(_CELLS, min_size=n, max_size=n), min_size=1, max_size=25)),
    block_cells=st.integers(1, 12), text=st.booleans())
def test_reading_in_blocks_types_every_column_as_reading_it_whole(tmp_path_factory, columns,
                                                                  block_cells, text):
    """A column is numbers only if every cell of the whole file is one, whichever block
    shows the first text; text keeps every cell as written."""
    from inferwatch.quality import data_files

    path = tmp_path_factory.mktemp("csv") / "data.csv"
    width = len(columns[0])
    header = [f"c{j}" for j in range(width)]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *columns])
    rows = columns  # the writer quotes a row of one empty cell, so no row is blank
    text_columns = {"c0"} if text else set()
    progress = data_files.Progress("r", enabled=False)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_files, "BLOCK_CELLS", block_cells)
        in_blocks = data_files.read_csv(str(path), progress, text_columns=text_columns)
        patch.setattr(data_files, "BLOCK_CELLS", 1 << 30)
        whole = data_files.read_csv(str(path), progress, text_columns=text_columns)

    assert list(in_blocks) == header
    for name in header:
        assert _same(in_blocks[name], whole[name]), name
        assert len(in_blocks[name]) == len(rows)
    for j, name in enumerate(header):
        cells = [row[j] for row in rows]
        if in_blocks[name].dtype == object:
            assert in_blocks[name].tolist() == [
                None if c.strip() in data_files.MISSING_TOKENS else c for c in cells]
        else:
            assert name not in text_columns


def test_a_column_that_turns_to_text_late_keeps_its_early_cells_as_written(tmp_path,
                                                                            monkeypatch):
    # Codes that look like numbers for the first blocks ("01.50", "007") must come back as
    # written once a later block shows the column is text: read as numbers they were lost.
    from inferwatch.quality import data_files

    path = tmp_path / "codes.csv"
    path.write_text("code,amount\n01.50,1\n007,2\n,3\nAB-9,4\n", encoding="utf-8")
    monkeypatch.setattr(data_files, "BLOCK_CELLS", 2)  # one row a block
    columns = data_files.read_csv(str(path), data_files.Progress("r", enabled=False))
    assert columns["code"].tolist() == ["01.50", "007", None, "AB-9"]
    assert columns["amount"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_large_csv_is_never_held_as_text(tmp_path, monkeypatch):
    # Every cell of the file was kept as a Python string until the end (about 60 bytes
    # each): a 42 MB CSV took 810 MB. Now one block of text at a time, numbers as floats.
    import tracemalloc

    from inferwatch.quality import data_files

    rows, width = 100_000, 4
    path = tmp_path / "large.csv"
    rng = np.random.default_rng(3)
    np.savetxt(path, rng.random((rows, width)), delimiter=",", fmt="%.6f",
               header=",".join(f"f{j}" for j in range(width)), comments="")
    monkeypatch.setattr(data_files, "BLOCK_CELLS", 4096)
    tracemalloc.start()
    try:
        columns = data_files.read_csv(str(path), data_files.Progress("r", enabled=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrays = sum(column.nbytes for column in columns.values())
    assert arrays == rows * width * 8
    assert peak < 2.5 * arrays  # the arrays, their blocks before concatenation, one block


@pytest.mark.parametrize("stamp", ["2024-01-05", "2024-01-05T10:30:00Z",
                                   "2024-01-05 10:30:00.250+02:00"])
def test_a_column_of_dates_is_refused_as_in_parquet_naming_the_flags(training, tmp_path,
                                                                     stamp):
    """As categories, every live date would be an unseen category (a ticket every day); a
    Parquet or pandas column of datetimes is refused already."""
    days = pd.date_range(stamp[:10], periods=len(training), freq="D")
    training["signup"] = [stamp.replace(stamp[:10], str(day.date())) for day in days]
    training.loc[3, "signup"] = ""  # a missing cell is no reason to profile the dates
    path = tmp_path / "train.csv"
    training.to_csv(path, index=False)
    refused = inferwatch("profile", str(path), "-o", str(tmp_path / "ref.json"))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "column 'signup' holds dates" in refused.stderr
    assert "--ignore signup" in refused.stderr and "--categorical signup" in refused.stderr
    assert not (tmp_path / "ref.json").exists()
    for flag, kept in (("--ignore", False), ("--categorical", True)):
        done = inferwatch("profile", str(path), "-o", str(tmp_path / "ref.json"), flag,
                          "signup")
        assert done.returncode == 0, done.stderr
        assert ("signup" in Reference.load(tmp_path / "ref.json").features) is kept


def test_a_text_column_that_only_starts_with_dates_is_profiled(training, tmp_path):
    training["note"] = ["2024-01-05"] * 10 + ["see ticket"] * (len(training) - 10)
    path = tmp_path / "train.csv"
    training.to_csv(path, index=False)
    done = inferwatch("profile", str(path), "-o", str(tmp_path / "ref.json"))
    assert done.returncode == 0, done.stderr
    assert Reference.load(tmp_path / "ref.json").features["note"].kind == "categorical"
