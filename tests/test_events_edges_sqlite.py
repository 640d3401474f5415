"""The SQLite event sink and `inferwatch events` over it: files that move, readers that
hold on, and tables or arguments that are not what the reader expects."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_log_helpers import follow_cli, write_events
from inferwatch.cli import main
from inferwatch.events import REASONS, EventLog, log, sqlite


def stored_ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [json.loads(body)["request_id"]
                for (body,) in conn.execute("SELECT body FROM events ORDER BY id")]


def emit_all(event_log: EventLog, ids: list[str], **fields: object) -> None:
    for request_id in ids:
        event_log.emit({"request_id": request_id, **fields})
    assert event_log.flush(60)


def dir_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_under_the_writer_gets_the_next_events(
        tmp_path, make_log, how):
    path = tmp_path / "events.db"
    event_log = make_log(path)
    emit_all(event_log, ["before"])
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / name).unlink()
    if how == "replaced":
        other = tmp_path / "fresh.db"
        with contextlib.closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE unrelated (x)")
        os.replace(other, path)
    emit_all(event_log, ["after-1", "after-2"])
    assert event_log.dropped_counts() == dict.fromkeys(REASONS, 0)
    assert stored_ids(path) == ["after-1", "after-2"]


def test_a_reader_holding_a_snapshot_keeps_the_bound_and_the_writer_moving(
        tmp_path, make_log, monkeypatch):
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(log, "BACKOFF_SECONDS", (0.01,))
    bound = 512 * 1024
    path = tmp_path / "events.db"
    event_log = make_log(path, max_bytes=bound, queue_size=100_000)
    emit_all(event_log, ["first"])
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchall()  # holds this snapshot
        ids = [f"r-{i}" for i in range(1500)]
        for request_id in ids:  # about 300 KB: more than the write-ahead log may hold
            event_log.emit({"request_id": request_id, "inputs": {"t": "q" * 200}})
        assert event_log.flush(60)
        assert dir_size(tmp_path) <= bound
    finally:
        reader.close()
    dropped = event_log.dropped_counts()
    stored = stored_ids(path)
    assert dropped["write_error"] > 0
    assert len(stored) + dropped["write_error"] == 1 + len(ids)  # every loss is counted


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["events", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "events.db"
    event_log = EventLog(path)
    emit_all(event_log, [f"r-{i}" for i in range(3)], model="m")
    event_log.close()
    return path


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(0, 10**30))
def test_any_count_or_limit_reads_without_a_traceback(small_db, capsys, count):
    for argv in (("tail", str(small_db), "-n", str(count)),
                 ("query", str(small_db), "--limit", str(count))):
        code, lines, err = run_cli(capsys, *argv)
        assert (code, err) == (0, "")
        assert len(lines) == min(count, 3)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.none(), st.binary(max_size=20), st.integers(-2**63, 2**63 - 1),
                      st.floats(allow_nan=False)))
def test_a_table_of_another_application_is_a_one_line_error(tmp_path_factory, capsys, body):
    path = tmp_path_factory.mktemp("other") / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL, model TEXT, "
                     "request_id TEXT, error TEXT, body)")
        conn.execute("INSERT INTO events (ts, body) VALUES (1, ?)", (body,))
        conn.commit()
    for action in ("tail", "query"):
        code, lines, err = run_cli(capsys, action, str(path))
        assert code == 2 and lines == []
        assert err.count("\n") == 1 and "not an inferwatch event log" in err


@pytest.mark.parametrize("text", ["nan", "NaN"])
def test_a_nan_time_is_a_bad_argument(small_db, capsys, text):
    with pytest.raises(SystemExit) as exit_info:
        main(["events", "query", str(small_db), "--since", text])
    assert exit_info.value.code == 2
    assert "--since" in capsys.readouterr().err


def follow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path,
           between_polls: list[Callable[[], None]]) -> list[str]:
    """`tail --follow`, running each step of `between_polls` in place of a wait."""
    code, out, err = follow_cli(monkeypatch, capsys, path, between_polls, "-n", "10")
    assert (code, err) == (0, "")
    return [json.loads(line)["request_id"] for line in out.splitlines()]


def test_follow_picks_up_a_database_replaced_by_a_new_one(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.db"
    write_events(path, [f"old-{i}" for i in range(10)])

    def replace() -> None:
        fresh = tmp_path / "fresh.db"
        write_events(fresh, ["new-0", "new-1"])
        os.replace(fresh, path)

    def deleted() -> None:
        path.unlink()

    printed = follow(monkeypatch, capsys, path,
                     [lambda: None, deleted, lambda: write_events(path, ["again-0"]), replace,
                      lambda: None])
    assert printed == [f"old-{i}" for i in range(10)] + ["again-0", "new-0", "new-1"]


def test_follow_prints_an_event_written_as_it_starts_once(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.db"
    write_events(path, ["a"])
    real_reader = sqlite._reader
    opened = []

    def reader(p: Path) -> sqlite3.Connection:
        opened.append(p)
        if len(opened) == 2:  # a writer commits between the CLI's first and second read
            with contextlib.closing(sqlite3.connect(p)) as conn, conn:
                conn.execute("INSERT INTO events (ts, request_id, body) VALUES "
                             "(?, 'b', '{\"request_id\":\"b\"}')", (time.time() + 1,))
        return real_reader(p)

    monkeypatch.setattr(sqlite, "_reader", reader)
    assert follow(monkeypatch, capsys, path, [lambda: None, lambda: None]) == ["a", "b"]
