"""The `inferwatch` command where a shell meets it: closed and full streams, Ctrl-C in the
middle of an answer, a busy database, and URLs copied from a browser."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
import inferwatch.events.sqlite as events_sqlite
from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.events import EventLog
from inferwatch.quality.reference import Reference

# The real command line, with Python's own Ctrl-C handler whatever the test runner's is.
COMMAND = [sys.executable, "-c",
           "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
           " from inferwatch.cli import main; sys.exit(main(sys.argv[1:]))"]


def write_jsonl(path: Path, count: int, garbage: bool = False) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps({"ts": 1_700_000_000 + i, "model": "fraud", "request_id": f"r-{i}",
                                "prediction": "x" * 100}) + "\n")
            if garbage and i == 0:
                f.write('{"ts": 1700009999, "model": "fr\n')  # torn by a crash mid-write
    return path


def close_fd(fd: int):
    return lambda: os.close(fd)  # in the child: as `>&-` or `2>&-` in a shell


def test_a_full_disk_under_stdout_is_not_blamed_on_the_log(tmp_path):
    # `inferwatch events query log > /dev/full`: the log is fine, stdout is not.
    log = write_jsonl(tmp_path / "events.jsonl", 50)
    with open(os.devnull, "rb") as stdin, open("/dev/full", "wb") as full:
        done = subprocess.run([*COMMAND, "events", "query", str(log)], stdin=stdin, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "inferwatch events: cannot write to stdout: No space left on device\n"


@pytest.mark.parametrize("command", ["events", "report"])
def test_a_closed_stdout_is_one_line_not_a_traceback(tmp_path, command):
    log = write_jsonl(tmp_path / "events.jsonl", 5)
    rng = np.random.default_rng(0)
    Reference.from_data({"a": rng.normal(size=200)}).save(tmp_path / "reference.json")
    (tmp_path / "live.csv").write_text("a\n" + "\n".join(str(v) for v in rng.normal(size=50)))
    argv = (["events", "query", str(log)] if command == "events" else
            ["report", "--reference", str(tmp_path / "reference.json"),
             str(tmp_path / "live.csv"), "-o", "-"])
    done = subprocess.run([*COMMAND, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=close_fd(1))
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "stdout" in done.stderr and "closed" in done.stderr


def test_a_closed_stderr_keeps_warnings_out_of_the_data(tmp_path):
    # With stderr closed, Python's print(file=None) writes to stdout: the warning about an
    # unreadable line would land among the JSON lines a pipeline parses.
    log = write_jsonl(tmp_path / "events.jsonl", 3, garbage=True)
    done = subprocess.run([*COMMAND, "events", "query", str(log)], capture_output=True,
                          text=True, timeout=60, preexec_fn=close_fd(2))
    assert done.returncode == 0
    assert [json.loads(line)["request_id"] for line in done.stdout.splitlines()] == [
        "r-0", "r-1", "r-2"]


def test_a_closed_stderr_does_not_crash_a_dispatched_command(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(100)))
    out = tmp_path / "reference.json"
    done = subprocess.run([*COMMAND, "profile", str(data), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, preexec_fn=close_fd(2))
    assert done.returncode == 0, done.stdout
    assert "Traceback" not in done.stdout
    assert set(Reference.load(out).features) == {"a", "b"}


def test_ctrl_c_in_the_middle_of_a_query_is_status_130(tmp_path):
    # A query cut short by Ctrl-C printed only part of its answer: a script must not take
    # it for the whole one (`--follow`, which only Ctrl-C ends, is another matter).
    log = write_jsonl(tmp_path / "events.jsonl", 5_000)  # ~700 KB: more than a pipe holds
    process = subprocess.Popen([*COMMAND, "events", "query", str(log)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["request_id"] == "r-0"
        # Not reading on: the command blocks on a full pipe, mid-answer, until interrupted.
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(out.splitlines()) < 4_999
    assert err.decode() == "inferwatch events: interrupted\n"
    assert process.returncode == 130


def test_a_locked_database_is_not_called_another_applications(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.db"
    log = EventLog(path)
    for i in range(3):
        log.emit({"ts": time.time(), "model": "m", "request_id": f"r-{i}"})
    log.close()
    monkeypatch.setattr(events_sqlite, "BUSY_TIMEOUT_MS", 50)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")  # a VACUUM, a backup, someone's sqlite3 shell
        for action in ("tail", "query"):
            assert main(["events", action, str(path)]) == 2
            out, err = capsys.readouterr()
            assert out == ""
            assert "not an inferwatch event log" not in err
            assert err == f"inferwatch events: cannot read {path}: database is locked\n"
        holder.execute("ROLLBACK")
    assert main(["events", "query", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=st.one_of(
    st.integers(65_536, 10**12).map(lambda p: f"http://127.0.0.1:{p}/"),
    st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=8).filter(
        lambda s: not s.isdigit()).map(lambda p: f"http://127.0.0.1:{p}/"),
    st.sampled_from(["http://[::1/", "http://[fe80::1/", "https://[not-an-ip]:80/"])))
def test_a_malformed_metrics_url_is_a_usage_error(tmp_path_factory, capsys, url):
    out = tmp_path_factory.mktemp("out") / "report.html"
    assert main(["report", "--metrics", url, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferwatch report: error: --metrics ") and err.count("\n") == 1
    assert not out.exists()


def test_the_metrics_url_of_a_model_page_reports_that_model(tmp_path, capsys):
    # The address of one model's status page, copied from the browser, keeps its choice.
    registry = Registry()
    for name in ("fraud", "churn"):
        registry.monitor(name, "1").record_call(0.01, 0.5)
    registry.monitor("fraud", "2").record_call(0.01, 0.5)
    out = tmp_path / "report.html"
    try:
        with inferwatch.serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
                              status_page=registry) as server:
            base = f"http://127.0.0.1:{server.port}/"
            assert main(["report", "--metrics", f"{base}?model=fraud&version=2",
                         "-o", str(out)]) == 0
            assert capsys.readouterr().err.endswith(": 1 model versions\n")
            assert main(["report", "--metrics", f"{base}?model=fraud", "-o", str(out)]) == 0
            assert capsys.readouterr().err.endswith(": 2 model versions\n")
            # --model, given too, wins over the URL's.
            assert main(["report", "--metrics", f"{base}?model=fraud", "--model", "churn",
                         "-o", str(out)]) == 0
            assert capsys.readouterr().err.endswith(": 1 model versions\n")
    finally:
        registry.close()


def test_data_that_is_a_directory_is_named_as_such(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Reference.from_data({"a": rng.normal(size=200)}).save(tmp_path / "reference.json")
    (tmp_path / "live.csv").mkdir()  # `-o` and DATA swapped, an unpacked archive...
    assert main(["report", "--reference", str(tmp_path / "reference.json"),
                 str(tmp_path / "live.csv"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err == f"inferwatch report: error: DATA file is a directory: {tmp_path}/live.csv\n"


@pytest.mark.parametrize("output", ["-", "reference.json"])
def test_a_reader_that_left_early_is_no_traceback_in_any_command(tmp_path, output):
    # `inferwatch profile train.csv -o - | head -c 200`: the reader leaves before the end.
    data = tmp_path / "train.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(100)))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run([*COMMAND, "profile", str(data), "-o",
                               output if output == "-" else str(tmp_path / output)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.returncode == 0
    if output != "-":  # the file was written whole; only the summary line had no reader
        assert set(Reference.load(tmp_path / output).features) == {"a", "b"}


@pytest.fixture(scope="module")
def report_inputs(tmp_path_factory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(3)
    Reference.from_data({"a": rng.normal(size=200)}).save(where / "reference.json")
    (where / "live.csv").write_text("a\n" + "\n".join(str(v) for v in rng.normal(size=50)))
    return where / "reference.json", where / "live.csv"


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(min_size=1, max_size=30), encoding=st.sampled_from(["ascii", "latin-1"]))
def test_a_report_to_stdout_is_the_same_utf8_page_whatever_the_locale(
        report_inputs, tmp_path_factory, monkeypatch, title, encoding):
    # `LANG=C inferwatch report ... -o - | gzip`: the page declares UTF-8, so its bytes must
    # be UTF-8 (and the same as `-o report.html`), not the locale's encoding, or an error.
    import io

    reference, live = report_inputs
    out = tmp_path_factory.mktemp("out") / "report.html"
    # As one argument: a title such as "-1" would otherwise be read as a flag.
    argv = ["report", "--reference", str(reference), str(live), f"--title={title}"]
    assert main([*argv, "-o", str(out)]) == 0
    stdout = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        assert main([*argv, "-o", "-"]) == 0
    page = stdout.buffer.getvalue()  # type: ignore[attr-defined]
    page.decode("utf-8")
    assert without_time(page) == without_time(out.read_bytes())


def without_time(page: bytes) -> bytes:
    """The page without the second it was made at (two runs may fall in two seconds)."""
    return re.sub(rb"Generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", b"Generated", page)


@pytest.mark.parametrize("argv, command", [
    (["events", "query", "x.jsonl", "--sinse", "1h"], "inferwatch events query"),
    (["events", "tail", "x.jsonl", "extra.jsonl"], "inferwatch events tail"),
    (["report", "-o", "r.html", "--refrence", "ref.json"], "inferwatch report"),
    (["generate", "--confg", "x.yaml"], "inferwatch generate"),
])
def test_a_mistyped_flag_shows_the_usage_of_its_command(capsys, argv, command):
    # The top level's usage lists no flag of the command: the user could not see the right
    # spelling in it.
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"usage: {command} ")
    unknown = argv[-2] if argv[-2].startswith("--") else argv[-1]
    assert err.splitlines()[-1].startswith(f"{command}: error: unrecognized arguments: {unknown}")


def test_a_predictions_column_is_compared_with_the_references_one_output(tmp_path, capsys):
    # A reference profiled from a bare array of predictions names its output "value"; the
    # live file's column is "score". Given with --predictions-column, it must be compared,
    # not dropped with the drift it shows.
    rng = np.random.default_rng(5)
    Reference.from_data({"a": rng.normal(size=2_000)}, predictions=rng.normal(size=2_000)).save(
        tmp_path / "reference.json")
    rows = [f"{a},{s}" for a, s in zip(rng.normal(size=1_500), rng.normal(size=1_500) + 3)]
    (tmp_path / "live.csv").write_text("a,score\n" + "\n".join(rows) + "\n")
    argv = ["report", "--reference", str(tmp_path / "reference.json"),
            str(tmp_path / "live.csv"), "-o", str(tmp_path / "report.html")]
    assert main([*argv, "--predictions-column", "score"]) == 0
    err = capsys.readouterr().err
    assert "InferwatchPredictionDrift" in err and "InferwatchFeatureDrift" not in err


def test_a_predictions_column_matching_no_output_is_an_error(tmp_path, capsys):
    rng = np.random.default_rng(6)
    Reference.from_data({"a": rng.normal(size=500), "b": rng.normal(size=500)}).save(
        tmp_path / "reference.json")
    rows = [f"{a},{b}" for a, b in rng.normal(size=(100, 2))]
    (tmp_path / "live.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    out = tmp_path / "report.html"
    assert main(["report", "--reference", str(tmp_path / "reference.json"),
                 str(tmp_path / "live.csv"), "--predictions-column", "b", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferwatch report: error: --predictions-column 'b' names no "
                          "prediction output of ") and err.count("\n") == 1
    assert not out.exists()


def test_a_reader_that_left_early_ends_every_command_alike(tmp_path):
    # `inferwatch report ... -o - | head` ends as `inferwatch events query ... | head` and
    # `inferwatch profile ... -o - | head` do, not with an error about writing "-".
    rng = np.random.default_rng(7)
    Reference.from_data({"a": rng.normal(size=200)}).save(tmp_path / "reference.json")
    (tmp_path / "live.csv").write_text("a\n" + "\n".join(str(v) for v in rng.normal(size=50)))
    log = write_jsonl(tmp_path / "events.jsonl", 5)
    codes = {}
    for argv in (["report", "--reference", str(tmp_path / "reference.json"),
                  str(tmp_path / "live.csv"), "-o", "-"],
                 ["events", "query", str(log)],
                 ["profile", str(tmp_path / "live.csv"), "-o", "-"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run([*COMMAND, *argv], stdout=write_end, stderr=subprocess.PIPE,
                                  text=True, timeout=120)
        finally:
            os.close(write_end)
        assert done.stderr == "", argv
        codes[argv[0]] = done.returncode
    assert codes == {"report": 0, "events": 0, "profile": 0}
