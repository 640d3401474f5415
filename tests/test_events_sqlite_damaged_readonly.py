"""`inferwatch events`: `tail -n` past damaged SQLite rows, query matches of files deleted
before printing, read-only SQLite readers, and negative times on the command line."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.events import cli as events_cli
from inferwatch.events.jsonl import query_jsonl
from inferwatch.events.sinks import Query, ReadStats, Record
from inferwatch.events.sqlite import SqliteSink, tail_sqlite


def _record(i: int, ts: float | None = None) -> Record:
    ts = float(i) if ts is None else ts
    line = json.dumps({"ts": ts, "model": "fraud", "request_id": f"r-{i}"}).encode()
    return Record(ts, "fraud", "1", f"r-{i}", None, None, line)


def _ids(out: str) -> list[str]:
    return [json.loads(line)["request_id"] for line in out.splitlines()]


# --- `tail -n N` on SQLite: damaged rows do not count toward N -----------------------------

@settings(max_examples=25, deadline=None)
@given(middle=st.lists(st.booleans(), max_size=40), n=st.integers(0, 45))
def test_tail_prints_n_readable_rows_past_damaged_ones(middle: list[bool], n: int) -> None:
    kinds = [True, *middle, False]  # readable rows exist, and the newest row is damaged
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "events.db"
        sink = SqliteSink(db, max_bytes=1 << 20)
        sink.write([_record(0, ts=-1.0)])  # creates the schema
        sink.close()
        readable = []
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
            conn.execute("DELETE FROM events")
            for i, good in enumerate(kinds):
                if good:
                    readable.append(f"r-{i}")
                    body: object = _record(i).line.decode()
                else:  # not UTF-8: a damaged page, another writer's row
                    body = b'{"ts": 1, "x": "\xff\xfe"}'
                conn.execute("INSERT INTO events (ts, body) VALUES (?, CAST(? AS TEXT))",
                             (float(i), body))
        stats = ReadStats()
        lines = tail_sqlite(db, n, stats)
        assert [json.loads(x)["request_id"] for x in lines] == \
            readable[max(0, len(readable) - n):len(readable) if n else 0]
        assert len(lines) == min(n, len(readable))


def test_cli_tail_n_on_sqlite_skips_and_names_damaged_rows(tmp_path: Path, capsys) -> None:
    db = tmp_path / "events.db"
    sink = SqliteSink(db, max_bytes=1 << 20)
    sink.write([_record(i) for i in range(5)])
    sink.close()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for ts in (10.0, 11.0):  # the newest rows are the damaged ones
            conn.execute("INSERT INTO events (ts, body) VALUES (?, CAST(? AS TEXT))",
                         (ts, b"\xff"))
    assert main(["events", "tail", str(db), "-n", "3"]) == 0
    out, err = capsys.readouterr()
    assert _ids(out) == ["r-2", "r-3", "r-4"]
    assert "skipped 2 unreadable lines" in err


# --- a query over more files than it keeps open: files deleted before printing ------------

@contextlib.contextmanager
def _open_files_limit(soft: int) -> Iterator[None]:
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def _write_files(directory: Path, count: int) -> None:
    for i in range(count):  # one worker's file each, all matching
        name = f"events.{i + 1:020d}.{100 + i}.jsonl"
        (directory / name).write_bytes(_record(i).line + b"\n" +
                                       b'{"ts": 0, "model": "other"}\n')
        os.utime(directory / name, (1_000_000 + i, 1_000_000 + i))


def test_query_names_files_deleted_before_their_matches_were_printed(tmp_path: Path,
                                                                     capsys) -> None:
    _write_files(tmp_path, 40)
    stats = ReadStats()
    with _open_files_limit(64):  # a query keeps 16 files open, the rest are closed
        lines = query_jsonl(tmp_path / "events.jsonl", Query(model="fraud"), stats)
        printed = [next(lines)]  # every file scanned
        for file in tmp_path.glob("events.*.jsonl"):
            file.unlink()  # retention of a busy log, while the output is paged
        printed += list(lines)
    assert 0 < len(printed) < 40
    assert len(stats.unreadable_files) == 40 - len(printed)  # each lost file named
    for reason in stats.unreadable_files.values():
        assert "1 matching events not printed" in reason
    events_cli._report_unreadable(stats)
    assert capsys.readouterr().err.count("matching events not printed") == 40 - len(printed)


# --- SQLite readers never write ---------------------------------------------------------

def _wal_copy(source: Path, target: Path) -> None:
    """A copy of a live database and its write-ahead log, as a backup tool takes it."""
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


def test_reading_a_wal_copy_changes_nothing(tmp_path: Path, capsys) -> None:
    live = tmp_path / "live.db"
    sink = SqliteSink(live, max_bytes=1 << 22)
    try:
        sink.write([_record(i) for i in range(20)])
        assert os.path.getsize(f"{live}-wal") > 0  # events still in the write-ahead log
        copy = tmp_path / "copy" / "events.db"
        copy.parent.mkdir()
        _wal_copy(live, copy)
        before = {p.name: p.read_bytes() for p in copy.parent.iterdir() if "-shm" not in p.name}
        assert main(["events", "query", str(copy), "--model", "fraud"]) == 0
        assert main(["events", "tail", str(copy), "-n", "2"]) == 0
        out, err = capsys.readouterr()
        assert _ids(out) == [f"r-{i}" for i in range(20)] + ["r-18", "r-19"], err
        after = {p.name: p.read_bytes() for p in copy.parent.iterdir() if "-shm" not in p.name}
        assert after == before  # no checkpoint into the copy, its log not deleted
        # And the live log, read while its writer goes on:
        assert main(["events", "tail", str(live), "-n", "1"]) == 0
        sink.write([_record(20)])
        assert main(["events", "tail", str(live), "-n", "1"]) == 0
        assert _ids(capsys.readouterr().out) == ["r-19", "r-20"]
    finally:
        sink.close()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    """A directory and a function making it read-only (for root too: a tmpfs remounted)."""
    directory = tmp_path / "ro"
    directory.mkdir()
    if os.geteuid() == 0:
        if shutil.which("mount") is None or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory)],
                capture_output=True).returncode != 0:
            pytest.skip("root cannot be kept from writing without a read-only mount")

        def protect() -> None:
            subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)

        try:
            yield directory, protect
        finally:
            subprocess.run(["umount", "-l", str(directory)], check=False)
    else:
        def protect() -> None:
            directory.chmod(0o555)

        try:
            yield directory, protect
        finally:
            directory.chmod(0o755)


def test_wal_database_in_read_only_directory(tmp_path: Path, read_only_dir, capsys) -> None:
    directory, protect = read_only_dir
    live = tmp_path / "live.db"
    sink = SqliteSink(live, max_bytes=1 << 22)
    try:
        sink.write([_record(i) for i in range(3)])
        _wal_copy(live, directory / "pending.db")  # events only in the -wal, no -shm
    finally:
        sink.close()  # the last connection: checkpointed, the -wal removed
    shutil.copyfile(live, directory / "whole.db")  # WAL mode, every event in the file
    assert not os.path.exists(f"{live}-wal")
    protect()
    assert main(["events", "query", str(directory / "whole.db")]) == 0
    out, err = capsys.readouterr()
    assert _ids(out) == ["r-0", "r-1", "r-2"], err
    assert main(["events", "tail", str(directory / "pending.db")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "pending.db-shm" in err and "read-only" in err and "Traceback" not in err


# --- negative times: the documented forms, without argparse internals ---------------------

@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(min_value=-1e12, max_value=-1e-3, allow_nan=False),
       spelling=st.sampled_from(["{:g}", "{:.3e}", "{:.6f}"]))
def test_negative_times_are_values(tmp_path: Path, capsys, seconds: float,
                                   spelling: str) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(_record(1, ts=-1e13).line + b"\n" + _record(2, ts=5.0).line + b"\n")
    text = spelling.format(seconds)
    assert main(["events", "query", str(log), "--since", text]) == 0
    out, err = capsys.readouterr()
    assert _ids(out) == ["r-2"], err


def test_time_flag_values_that_are_flags_or_not_times(tmp_path: Path, capsys) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(_record(1).line + b"\n")
    for argv, expected in ((["--since", "--errors"], "expected one argument"),
                           (["--until", "-2h"], "'-2h' is not a time"),
                           (["--since", "-h"], "expected one argument")):
        with pytest.raises(SystemExit) as exit_info:
            main(["events", "query", str(log), *argv])
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err
    assert main(["events", "query", str(log), "--since=-5", "--until", "2h"]) == 0
    assert _ids(capsys.readouterr().out) == ["r-1"]
    assert main(["events", "query", str(log), "--since", "-5", "--until", "1"]) == 0
    assert _ids(capsys.readouterr().out) == ["r-1"]


def test_time_values_use_no_private_argparse_tables() -> None:
    assert "_option_string_actions" not in inspect.getsource(events_cli)
