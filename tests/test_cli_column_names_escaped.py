"""Column names read from a data file or a reference reach the terminal escaped in the
errors of ``inferwatch profile`` and ``inferwatch report``: a header holding terminal escape
sequences (set the title, clear the screen) or a line break prints as text, one line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.cli import main

# Sets the terminal's title, then clears the screen.
ESCAPES = "\x1b]0;PWNED\x07\x1b[2J"
HOSTILE = f"y{ESCAPES}"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _data(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "data.csv", ["x", HOSTILE],
                      [[i, i % 3] for i in range(50)])


def _error_line(err: str, command: str) -> str:
    """The one error line, checked to hold nothing a terminal would act on."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err[:-1]
    assert line.startswith(f"inferwatch {command}: error: "), line
    assert line.isprintable(), line
    return line


@pytest.mark.parametrize("flag", ["--categorical", "--ignore", "--predictions-column",
                                  "--target"])
def test_profile_unknown_column_shows_the_file_columns_escaped(tmp_path: Path, capsys,
                                                               flag: str) -> None:
    status = main(["profile", str(_data(tmp_path)), "-o", str(tmp_path / "ref.json"),
                   flag, "nope"])
    assert status == 2
    line = _error_line(capsys.readouterr().err, "profile")
    assert "unknown column 'nope'" in line and repr(HOSTILE) in line


def test_profile_date_column_hint_shows_its_name_escaped(tmp_path: Path, capsys) -> None:
    data = _write_csv(tmp_path / "dates.csv", ["x", HOSTILE],
                      [[i, f"2024-01-{i % 28 + 1:02d}"] for i in range(50)])
    assert main(["profile", str(data), "-o", str(tmp_path / "ref.json")]) == 2
    line = _error_line(capsys.readouterr().err, "profile")
    assert "holds dates" in line and f"--ignore {HOSTILE!r}" in line


def test_profile_date_column_hint_stays_a_shell_word(tmp_path: Path, capsys) -> None:
    # A printable name is written as the shell takes it, ready to paste.
    data = _write_csv(tmp_path / "dates.csv", ["x", "sign-up day"],
                      [[i, f"2024-01-{i % 28 + 1:02d}"] for i in range(50)])
    assert main(["profile", str(data), "-o", str(tmp_path / "ref.json")]) == 2
    line = _error_line(capsys.readouterr().err, "profile")
    assert "--ignore 'sign-up day'" in line and "--categorical 'sign-up day'" in line


def test_profile_nested_column_hint_shows_its_name_escaped(tmp_path: Path, capsys) -> None:
    data = tmp_path / "nested.parquet"
    pd.DataFrame({"x": np.arange(20.0),
                  HOSTILE: [[1.0, 2.0]] * 20}).to_parquet(data)
    assert main(["profile", str(data), "-o", str(tmp_path / "ref.json")]) == 2
    line = _error_line(capsys.readouterr().err, "profile")
    assert "holds lists" in line and f"--ignore {HOSTILE!r}" in line


def _reference(tmp_path: Path, *outputs: str) -> Path:
    """A reference with feature "x" and the prediction `outputs`."""
    data = _write_csv(tmp_path / "train.csv", ["x", *outputs],
                      [[i, *(i / 50 for _ in outputs)] for i in range(50)])
    reference = tmp_path / "ref.json"
    assert main(["profile", str(data), "-o", str(reference),
                 *(f"--predictions-column={output}" for output in outputs)]) == 0
    return reference


def test_report_unknown_predictions_column_shows_the_file_columns_escaped(
        tmp_path: Path, capsys) -> None:
    reference = _reference(tmp_path, "score")
    capsys.readouterr()
    status = main(["report", "--reference", str(reference), str(_data(tmp_path)),
                   "-o", str(tmp_path / "r.html"), "--predictions-column", "nope"])
    assert status == 2
    line = _error_line(capsys.readouterr().err, "report")
    assert "unknown column 'nope'" in line and repr(HOSTILE) in line


def test_report_stray_predictions_column_shows_the_outputs_escaped(tmp_path: Path,
                                                                   capsys) -> None:
    # Two outputs: a single one would be compared with whichever one column is given.
    reference = _reference(tmp_path, HOSTILE, "score")
    capsys.readouterr()
    live = _write_csv(tmp_path / "live.csv", ["x", "other", HOSTILE, "score"],
                      [[i, i, i / 50, i / 50] for i in range(50)])
    status = main(["report", "--reference", str(reference), str(live),
                   "-o", str(tmp_path / "r.html"), "--predictions-column", "other"])
    assert status == 2
    line = _error_line(capsys.readouterr().err, "report")
    assert "names no prediction output" in line and repr(HOSTILE) in line


# Names a CSV header can hold: any text but NUL and surrogates (not UTF-8), and not blank
# once the reader strips it.
column_names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                       min_size=1, max_size=12).filter(lambda name: name.strip() != "")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(column_names, min_size=1, max_size=4,
                      unique_by=lambda name: name.strip()))
def test_any_header_gives_one_printable_error_line(tmp_path: Path, capsys,
                                                   names: list[str]) -> None:
    capsys.readouterr()
    data = _write_csv(tmp_path / "any.csv", names, [list(range(len(names)))] * 3)
    status = main(["profile", str(data), "-o", str(tmp_path / "ref.json"),
                   "--categorical", "\x01nope"])
    assert status == 2
    _error_line(capsys.readouterr().err, "profile")
