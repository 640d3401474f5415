"""`inferwatch report` on inputs as shells and users hand them over: stdin and pipes, CSV
and Parquet, references of prediction outputs only."""

from __future__ import annotations

import io
import os
import subprocess
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_pages import INFERWATCH, data_values
from inferwatch.cli import main
from inferwatch.quality.reference import Reference
from inferwatch.report.model import from_data

ERROR = "inferwatch report: error: "


def inferwatch(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*INFERWATCH, *argv], input=stdin, capture_output=True, timeout=120)


@pytest.fixture
def reference(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "reference.json"
    Reference.from_data({"amount": rng.normal(size=2_000),
                         "city": np.array(["Berlin", "Paris"] * 1_000, dtype=object)},
                        predictions={"score": rng.random(2_000)}).save(path)
    return path


def live_rows(n: int = 1_200) -> dict[str, list]:
    rng = np.random.default_rng(4)
    return {"amount": [round(float(v), 4) for v in rng.normal(2.0, 1.0, size=n)],
            "city": ["Berlin" if i % 3 else "Paris" for i in range(n)],
            "score": [round(float(v), 4) for v in rng.random(n)]}


def csv_text(columns: dict[str, list]) -> str:
    names = list(columns)
    lines = [",".join(names)]
    lines += [",".join(str(columns[n][i]) for n in names)
              for i in range(len(columns[names[0]]))]
    return "\n".join(lines) + "\n"


def parquet_bytes(columns: dict[str, list]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


# --- DATA from stdin and pipes -------------------------------------------------------------

@pytest.mark.parametrize("data", ["-", "/dev/stdin"])
def test_a_csv_file_on_stdin_is_reported(tmp_path, reference, data):
    # `zcat live.csv.gz | inferwatch report --reference r.json - -o report.html` was refused
    # with "DATA file not found: -" ("not a regular file" for /dev/stdin).
    out = tmp_path / "report.html"
    done = inferwatch("report", "--reference", str(reference), data, "-o", str(out),
                      stdin=csv_text(live_rows()).encode())
    assert done.returncode == 0, done.stderr
    assert b"1200 rows, 2 features" in done.stderr
    page = data_values(out.read_text(encoding="utf-8"))
    assert float(page["feature_drift|amount|psi"]) > 0.2
    assert float(page["prediction_drift|score|psi"]) < 0.2


def test_a_parquet_file_on_stdin_is_reported(tmp_path, reference):
    out = tmp_path / "report.html"
    done = inferwatch("report", "--reference", str(reference), "-", "--format", "parquet",
                      "-o", str(out), stdin=parquet_bytes(live_rows()))
    assert done.returncode == 0, done.stderr
    assert b"1200 rows, 2 features" in done.stderr
    assert "prediction_drift|score|psi" in data_values(out.read_text(encoding="utf-8"))


def test_a_named_pipe_as_process_substitution_gives_is_reported(tmp_path, reference):
    # `inferwatch report ... <(zcat live.csv.gz)` hands over a pipe's path.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = csv_text(live_rows()).encode()

    def feed() -> None:
        with open(fifo, "wb") as sink:
            sink.write(text)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = tmp_path / "report.html"
    done = inferwatch("report", "--reference", str(reference), str(fifo), "-o", str(out))
    writer.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"1200 rows" in done.stderr


def test_a_malformed_file_on_stdin_is_one_line_naming_stdin(tmp_path, reference):
    done = inferwatch("report", "--reference", str(reference), "-", "--format", "parquet",
                      "-o", str(tmp_path / "report.html"), stdin=b"not parquet at all")
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{ERROR}cannot read stdin")
    assert "inferwatch-profile-" not in lines[0]  # not the temporary copy's name
    assert not (tmp_path / "report.html").exists()


def test_stdin_with_the_report_to_stdout_writes_the_page(reference):
    done = inferwatch("report", "--reference", str(reference), "-", "-o", "-",
                      stdin=csv_text(live_rows()).encode())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"<!DOCTYPE html>")
    assert b"Drift report: stdin" in done.stdout


def test_a_missing_data_file_still_names_it(tmp_path, reference, capsys):
    missing = tmp_path / "nope.csv"
    code = main(["report", "--reference", str(reference), str(missing),
                 "-o", str(tmp_path / "r.html")])
    assert code == 2
    assert capsys.readouterr().err == f"{ERROR}DATA file not found: {missing}\n"


# --- a reference of prediction outputs only ------------------------------------------------

@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=1, max_value=3_000), shift=st.floats(0.0, 2.0))
def test_a_reference_of_outputs_only_counts_the_rows_compared(n, shift):
    # A model monitored on its predictions alone: the page said "0 rows compared" and its
    # prediction drift "no data" whatever the file held.
    rng = np.random.default_rng(n)
    reference = Reference.from_dict(_outputs_only())
    predictions = {"score": rng.random(n) + shift}
    report = from_data(reference, {}, predictions)
    assert report.rows == n
    assert data_values(report.html())["drift_rows"] == str(n)
    flag = {f.alert: f for f in report.flags}["InferwatchPredictionDrift"]
    if n >= 1_000:
        assert flag.state != "no data"
        assert flag.state == ("firing" if report.outputs[0].psi > 0.2 else "ok")
    else:
        assert flag.state == "no data"


def _outputs_only() -> dict:
    rng = np.random.default_rng(0)
    full = Reference.from_data({"unused": rng.random(500)}, predictions={"score": rng.random(500)})
    data = full.to_dict()
    data["features"] = []
    return data


def test_the_report_command_on_a_reference_of_outputs_only(tmp_path, capsys):
    import json

    path = tmp_path / "reference.json"
    path.write_text(json.dumps(_outputs_only()), encoding="utf-8")
    rng = np.random.default_rng(5)
    data = tmp_path / "live.csv"
    data.write_text(csv_text({"score": [round(float(v), 4) for v in rng.random(1_500) + 0.6]}))
    out = tmp_path / "report.html"
    code = main(["report", "--reference", str(path), str(data), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1500 rows" in err
    assert "InferwatchPredictionDrift" in err  # firing: the scores moved by 0.6
    html = out.read_text(encoding="utf-8")
    assert 'data-key="drift_rows" data-value="1500"' in html


# --- an output that cannot be written, known before the data is read ----------------------

@pytest.mark.parametrize("where", ["missing_folder", "folder", "file_as_folder"])
def test_an_unwritable_output_is_refused_before_a_pipe_is_read(tmp_path, reference, where):
    # `zcat big.csv.gz | inferwatch report ... - -o reprots/x.html` read the whole pipe,
    # then failed to write: the data was gone. A pipe no one writes to shows the order:
    # the refusal must come without waiting for it.
    (tmp_path / "a_file").write_text("x")
    out = {"missing_folder": tmp_path / "no" / "such" / "report.html",
           "folder": tmp_path,
           "file_as_folder": tmp_path / "a_file" / "report.html"}[where]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        done = subprocess.run([*INFERWATCH, "report", "--reference", str(reference), str(fifo),
                               "-o", str(out)], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        with open(fifo, "wb"):  # releases the child blocked opening the pipe
            pass
        pytest.fail("the report waited for DATA before refusing -o")
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.startswith(f"{ERROR}cannot write {out}") and err.count("\n") == 1
    assert not out.exists() or out.is_dir()
