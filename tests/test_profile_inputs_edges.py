"""`inferwatch profile` on files as real exports and shells hand them over: other encodings
and line endings, other compressions, pipes, malformed quoting, nested Parquet columns."""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import io
import json
import lzma
import os
import subprocess
import threading
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_pages import INFERWATCH
from inferwatch.quality import data_files, profile_cli
from inferwatch.quality.reference import Reference

TEXT = "age,city,score\n31,Berlin,0.25\n45,Paris,0.5\n,Rome,0.75\n52,Berlin,0.125\n"
ERROR = "inferwatch profile: error: "


def run_profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferwatch profile")
    profile_cli.add_arguments(parser)
    return profile_cli.run(parser.parse_args(argv))


def profile_of(tmp_path, data: bytes, name: str = "train.csv") -> Reference:
    path, out = tmp_path / name, tmp_path / f"{name}.json"
    path.write_bytes(data)
    assert run_profile([str(path), "-o", str(out), "--predictions-column", "score"]) == 0
    return Reference.load(out)


@pytest.fixture()
def plain(tmp_path) -> Reference:
    return profile_of(tmp_path, TEXT.encode(), "plain.csv")


@pytest.mark.parametrize(("encoding", "newline"), [
    ("utf-16", "\r\n"),      # a spreadsheet's "Unicode text", with its byte order mark
    ("utf-16-be", "\n"),     # (written with a mark below)
    ("utf-8", "\r"),         # "CSV (Macintosh)": a lone carriage return ends each line
    ("utf-8-sig", "\r\n"),
])
def test_a_text_export_reads_as_the_same_profile_whatever_its_encoding_and_line_ends(
        tmp_path, plain, encoding, newline):
    text = TEXT.replace("\n", newline)
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    assert profile_of(tmp_path, data) == plain


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress, gzip.compress])
def test_bzip2_and_xz_exports_read_as_gzip_ones_do(tmp_path, plain, compress):
    assert profile_of(tmp_path, compress(TEXT.encode()), "train.csv.packed") == plain


@pytest.mark.parametrize(("kind", "tool"), [("zip", "unzip -p"), ("zstd", "zstd -dc")])
def test_compressions_it_cannot_read_are_named_with_the_command_that_can(tmp_path, capsys,
                                                                        kind, tool):
    if kind == "zip":
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w") as archive:
            archive.writestr("train.csv", TEXT)
        data = packed.getvalue()
    else:
        data = b"\x28\xb5\x2f\xfd" + bytes(40)  # a zstd frame's magic number, then data
    path = tmp_path / "train.csv.x"
    path.write_bytes(data)
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{ERROR}{path}: {kind}-compressed data")
    assert f"{tool} {path} | inferwatch profile - " in err
    assert err.count("\n") == 1


def test_a_damaged_bzip2_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "train.csv.bz2"
    path.write_bytes(bz2.compress(TEXT.encode() * 50)[:40])
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{ERROR}{path}: cannot read: damaged bzip2 data")
    assert err.count("\n") == 1


def test_a_latin1_file_names_the_line_of_its_first_bad_byte_and_how_to_convert(tmp_path,
                                                                               capsys):
    path = tmp_path / "train.csv"
    path.write_bytes("age,city\n31,Berlin\n45,Zürich\n".encode("latin-1"))
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{ERROR}{path}: line 3: not UTF-8 text (byte 0xfc)")
    assert "iconv -f latin1 -t utf-8" in err
    assert "Parquet" not in err  # it is plainly a text file


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.ndjson.gz", "ROWS.JSONL"])
def test_a_json_file_is_refused_not_profiled_as_csv(tmp_path, capsys, name):
    # Read as CSV, the first JSON line was the header and every row a category: a reference
    # of two nonsense categorical features, and exit status 0.
    path = tmp_path / name
    path.write_text("".join(json.dumps({"x": i, "y": 2 * i}) + "\n" for i in range(50)))
    out = tmp_path / "r.json"
    assert run_profile([str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{ERROR}DATA {path} is JSON, which profile does not read")
    assert "to_parquet" in err and not out.exists()


def test_a_latin1_file_refused_by_report_names_no_other_command(tmp_path):
    reference = tmp_path / "ref.json"
    assert inferwatch("profile", "-", "-o", str(reference),
                      stdin=b"age,city\n31,Berlin\n").returncode == 0
    path = tmp_path / "live.csv"
    path.write_bytes("age,city\n31,Berlin\n45,Zürich\n".encode("latin-1"))
    done = inferwatch("report", "--reference", str(reference), str(path), "-o",
                      str(tmp_path / "r.html"))
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.startswith(f"inferwatch report: error: cannot read {path}: line 3: not UTF-8")
    assert "profile" not in err


def test_a_quote_never_closed_is_an_error_not_the_rest_of_the_file_lost(tmp_path, capsys):
    # Read leniently, the quote swallowed every later row into one cell: a 2-row profile
    # of a 5-row file, and exit status 0.
    path = tmp_path / "train.csv"
    path.write_text('age,city\n31,Berlin\n45,"Paris\n52,Rome\n60,Oslo\n70,Rome\n')
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{ERROR}{path}: line 6: the file ends inside a quoted field")
    assert "data row 2" in err
    assert not (tmp_path / "r.json").exists()


def test_a_ragged_row_names_its_line_in_the_file(tmp_path, capsys):
    # Blank lines and a quoted cell over two lines put data row 3 on line 7.
    path = tmp_path / "train.csv"
    path.write_text('age,city\n\n31,"New\nYork"\n\n45,Paris\n52\n')
    assert run_profile([str(path), "-o", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"{ERROR}{path}: data row 3 has 1 fields, expected 2 (line 7)\n")


def inferwatch(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*INFERWATCH, *argv], input=stdin, capture_output=True, timeout=120)


@pytest.mark.parametrize("data", ["-", "/dev/stdin"])
def test_data_from_a_pipe_on_stdin(tmp_path, plain, data):
    out = tmp_path / "r.json"
    done = inferwatch("profile", data, "-o", str(out), "--predictions-column", "score",
                      stdin=gzip.compress(TEXT.encode()))
    assert done.returncode == 0, done.stderr
    assert Reference.load(out) == plain


def test_data_from_a_named_pipe_as_process_substitution_gives(tmp_path, plain):
    # `inferwatch profile <(zcat train.csv.gz)` hands over a pipe's path: it was "not found".
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as sink:
            sink.write(TEXT.encode())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = tmp_path / "r.json"
    done = inferwatch("profile", str(fifo), "-o", str(out), "--predictions-column", "score")
    writer.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert Reference.load(out) == plain


def test_a_parquet_file_on_stdin(tmp_path):
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [0.5, 1.5, 2.5]}), buffer)
    out = tmp_path / "r.json"
    done = inferwatch("profile", "-", "--format", "parquet", "-o", str(out),
                      stdin=buffer.getvalue())
    assert done.returncode == 0, done.stderr
    assert Reference.load(out).rows == 3


@pytest.mark.parametrize(("column", "kind"), [
    (pa.array([[1, 2], None, [3]]), "lists"),
    (pa.array([{"p": 1}, {"p": 2}, None]), "structs"),
])
def test_a_nested_parquet_column_is_refused_not_profiled_as_its_repr(tmp_path, capsys,
                                                                    column, kind):
    # It was profiled as categories such as '[1 2]', which no live value ever matches.
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"x": [0.5, 1.5, 2.5], "nested": column}), path)
    out = tmp_path / "r.json"
    assert run_profile([str(path), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"{ERROR}{path}: column 'nested' holds {kind}, not one value a row; flatten it into"
        " one column a field (a feature each), or leave it out (--ignore nested)\n")
    assert run_profile([str(path), "-o", str(out), "--ignore", "nested"]) == 0
    assert list(Reference.load(out).features) == ["x"]


def test_output_naming_the_data_file_is_refused_and_the_data_kept(tmp_path, capsys):
    path = tmp_path / "train.csv"
    path.write_text(TEXT)
    assert run_profile([str(path), "-o", str(path), "--predictions-column", "score"]) == 2
    assert capsys.readouterr().err.startswith(f"{ERROR}-o {path} is the DATA file")
    assert path.read_text() == TEXT


def test_an_output_that_cannot_be_written_is_refused_before_the_data_is_read(
        tmp_path, capsys, monkeypatch):
    # A large file was read for minutes, then the run failed on a mistyped -o folder.
    path = tmp_path / "train.csv"
    path.write_text(TEXT)

    def read_csv(*args, **kwargs):
        raise AssertionError("DATA read before -o was checked")

    monkeypatch.setattr(profile_cli, "read_csv", read_csv)
    out = tmp_path / "no-such-folder" / "r.json"
    assert run_profile([str(path), "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"{ERROR}cannot write {out}: ")


_CELL = st.one_of(st.sampled_from(["", "NA", "1", "-2.5", "1e3", "x,y", 'a "q"', "é"]),
                  st.text(st.characters(blacklist_categories=("Cs",),
                                        blacklist_characters="\x00"), max_size=5))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 3).flatmap(lambda n: st.lists(
    st.lists(_CELL, min_size=n, max_size=n), min_size=1, max_size=8)),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    compress=st.sampled_from([None, gzip.compress, bz2.compress, lzma.compress]))
def test_every_encoding_line_end_and_compression_reads_the_same_columns(
        tmp_path_factory, rows, newline, encoding, compress):
    folder = tmp_path_factory.mktemp("csv")
    header = [f"c{j}" for j in range(len(rows[0]))]
    # Every cell quoted: a lone "\r" ending lines must not read as part of a cell.
    def written(lineterminator: str) -> str:
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator=lineterminator, quoting=csv.QUOTE_ALL).writerows(
            [header, *rows])
        return buffer.getvalue()

    reference_path, path = folder / "utf8.csv", folder / "export.csv"
    reference_path.write_bytes(written("\n").encode())
    data = written(newline).encode(encoding)
    path.write_bytes(compress(data) if compress else data)
    progress = data_files.Progress("r", enabled=False)
    expected = data_files.read_csv(str(reference_path), progress)
    got = data_files.read_csv(str(path), progress)
    assert list(got) == header
    for name in header:
        assert got[name].dtype == expected[name].dtype
        assert [str(v) for v in got[name]] == [str(v) for v in expected[name]]
