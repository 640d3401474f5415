"""Reading the event log back as an SRE does during an incident: following a log whose
files are cut or hold junk, epoch times in other units, and results larger than memory."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_log_helpers import follow_cli, peak_bytes_reading
from inferwatch.cli import main
from inferwatch.events import EventLog, sqlite
from inferwatch.events.cli import parse_time
from inferwatch.events.jsonl import query_jsonl
from inferwatch.events.sinks import Query, ReadStats

T0 = 1_700_000_000.0


def line(ts: float, request_id: str, **fields: object) -> str:
    return json.dumps({"ts": ts, "request_id": request_id, **fields}) + "\n"


def worker_file(directory: Path, start_ns: int, pid: int) -> Path:
    """A file named as a worker process of the log ``events.jsonl`` names its own."""
    return directory / f"events.{start_ns:020d}.{pid}.jsonl"


def follow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path,
           between_polls: list[Callable[[], None]]) -> list[str]:
    """Raw stdout lines of `tail -n 10 --follow`, each step run in place of a poll's wait."""
    code, out, _ = follow_cli(monkeypatch, capsys, path, between_polls, "-n", "10")
    assert code == 0
    return out.splitlines()


def ids(lines: list[str]) -> list[str]:
    return [json.loads(text)["request_id"] for text in lines]


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_follow_skips_a_line_that_is_not_json_as_query_does(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.jsonl"
    path.write_text(line(T0, "a"))
    printed = follow(monkeypatch, capsys, path, [
        lambda: append(path, "Traceback (most recent call last):\n" + line(T0 + 1, "b")),
    ])
    # Every printed line must be JSON: `| jq` stops at the first that is not.
    assert ids(printed) == ["a", "b"]


def test_follow_reads_a_file_cut_in_place_from_its_start(tmp_path, monkeypatch, capsys):
    """`logrotate copytruncate` empties the file at the configured path and writing goes on."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line(T0 + i, f"old-{i}") for i in range(3)))

    def copytruncate() -> None:
        path.write_text("")

    def write_more() -> None:
        append(path, "".join(line(T0 + 100 + i, f"new-{i}") for i in range(5)))

    printed = follow(monkeypatch, capsys, path, [copytruncate, write_more])
    assert ids(printed) == [f"old-{i}" for i in range(3)] + [f"new-{i}" for i in range(5)]


def test_follow_merges_the_workers_files_of_one_poll_by_time(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.jsonl"
    first = worker_file(tmp_path, 1, 101)
    second = worker_file(tmp_path, 2, 102)
    first.write_text(line(T0, "start"))
    second.write_text("")

    def both_workers_write() -> None:
        append(first, line(T0 + 10, "w1-a") + line(T0 + 12, "w1-b"))
        append(second, line(T0 + 11, "w2-a") + line(T0 + 13, "w2-b"))

    printed = follow(monkeypatch, capsys, path, [both_workers_write])
    assert ids(printed) == ["start", "w1-a", "w2-a", "w1-b", "w2-b"]


@settings(max_examples=200, deadline=None)
@given(seconds=st.integers(min_value=100_000_000, max_value=4_102_444_800),  # 1973-2100
       unit=st.sampled_from([1, 1_000, 1_000_000, 1_000_000_000]))
def test_epoch_time_in_any_unit_is_the_same_moment(seconds, unit):
    assert parse_time(str(seconds * unit)) == pytest.approx(seconds, abs=1e-6)


def test_since_in_epoch_milliseconds_finds_the_events(tmp_path, capsys):
    """A time copied from a Grafana link (`from=1700000060000`) is in milliseconds."""
    path = tmp_path / "events.db"
    event_log = EventLog(path)
    for i in range(5):
        event_log.emit({"ts": T0 + i * 60, "request_id": f"r-{i}"})
    event_log.close()
    since_ms = str(int((T0 + 120) * 1000))
    until_ms = str(int((T0 + 180) * 1000))
    assert main(["events", "query", str(path), "--since", since_ms, "--until", until_ms]) == 0
    assert ids(capsys.readouterr().out.splitlines()) == ["r-2", "r-3"]


def make_schema(path: Path) -> None:
    """An empty event database, as the log makes it."""
    sink = sqlite.SqliteSink(path, max_bytes=1 << 30)
    sink._connect()
    sink.close()


BODY = "x" * 4000
ROWS = 8000  # 32 MB of events


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "events.db"
    make_schema(path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany("INSERT INTO events (ts, model, body) VALUES (?, 'm', ?)",
                         ((T0 + i, json.dumps({"ts": T0 + i, "pad": BODY}))
                          for i in range(ROWS)))
    return path


def test_a_huge_sqlite_result_is_streamed_not_loaded(big_db):
    count, peak = peak_bytes_reading(lambda: sqlite.query_sqlite(big_db, Query(model="m")))
    assert count == ROWS
    assert peak < 8 * 1024 * 1024, f"{peak} bytes held to print {ROWS * len(BODY)} bytes"


def test_a_huge_jsonl_result_is_streamed_not_loaded(tmp_path):
    for worker in range(4):
        with open(worker_file(tmp_path, worker + 1, 200 + worker), "w") as f:
            f.writelines(line(T0 + i * 4 + worker, f"r-{worker}-{i}", pad=BODY)
                         for i in range(ROWS // 4))
    count, peak = peak_bytes_reading(
        lambda: query_jsonl(tmp_path / "events.jsonl", Query(), ReadStats()))
    assert count == ROWS
    assert peak < 8 * 1024 * 1024, f"{peak} bytes held to print {ROWS * len(BODY)} bytes"


def test_retention_deleting_files_mid_query_loses_no_printed_event(tmp_path):
    for worker in range(3):
        worker_file(tmp_path, worker + 1, 300 + worker).write_text(
            "".join(line(T0 + i * 3 + worker, f"r-{i * 3 + worker}") for i in range(50)))
    lines = query_jsonl(tmp_path / "events.jsonl", Query(), ReadStats())
    printed = [next(lines)]
    for file in tmp_path.iterdir():
        file.unlink()  # the writer's retention, while the reader is at its first line
    printed.extend(lines)
    assert ids([p.decode() for p in printed]) == [f"r-{i}" for i in range(150)]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.integers(0, 5), min_size=0, max_size=40),
       page=st.integers(1, 7), limit=st.none() | st.integers(0, 45))
def test_sqlite_pages_print_every_row_once_in_time_order(tmp_path_factory, monkeypatch, times,
                                                         page, limit):
    """Clocks of two writers disagree: many rows share a time, across page boundaries."""
    path = tmp_path_factory.mktemp("pages") / "events.db"
    make_schema(path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany("INSERT INTO events (ts, request_id, body) VALUES (?, ?, ?)",
                         ((T0 + t, str(n), json.dumps({"ts": T0 + t, "request_id": str(n)}))
                          for n, t in enumerate(times)))
    monkeypatch.setattr(sqlite, "QUERY_PAGE_ROWS", page, raising=False)
    got = [json.loads(b)["request_id"] for b in sqlite.query_sqlite(path, Query(limit=limit))]
    expected = [str(n) for _, n in sorted((t, n) for n, t in enumerate(times))]
    assert got == expected[:limit]


def test_several_processes_rotating_one_directory_are_read_once_each(tmp_path):
    """Two forked workers write one log with small files; no event is lost or shown twice."""
    path = tmp_path / "events.jsonl"
    pids = []
    for worker in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                event_log = EventLog(path, rotate_bytes=4096, max_bytes=10 << 20)
                for i in range(300):
                    event_log.emit({"ts": T0 + i, "model": "fraud",
                                    "request_id": f"w{worker}-{i}"})
                code = 0 if event_log.flush(30) else 1
                event_log.close()
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    assert len({f.name.split(".")[2] for f in tmp_path.glob("events.*.*.jsonl")}) == 2
    got = [json.loads(b) for b in query_jsonl(path, Query(model="fraud"), ReadStats())]
    assert sorted(e["request_id"] for e in got) == sorted(
        f"w{w}-{i}" for w in range(2) for i in range(300))
    assert [e["ts"] for e in got] == sorted(e["ts"] for e in got)
    limited = [json.loads(b)["ts"] for b in query_jsonl(path, Query(limit=7), ReadStats())]
    assert limited == [T0, T0, T0 + 1, T0 + 1, T0 + 2, T0 + 2, T0 + 3]
