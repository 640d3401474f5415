"""`inferwatch events`: following past a huge last line, a log directory removed, and SQLite
databases made anew under a follower."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_log_helpers import (
    CountingFile,
    count_jsonl_reads,
    follow_cli,
    follow_until_caught_up,
    write_events,
)
from inferwatch.cli import main
from inferwatch.events import jsonl
from inferwatch.events.sinks import ReadStats


def _follow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path,
            between_polls: list[Callable[[], None]], *flags: str) -> tuple[int, list[str], str]:
    """`tail --follow`, running each step of `between_polls` in place of a wait."""
    code, out, err = follow_cli(monkeypatch, capsys, path, between_polls, *flags)
    return code, [json.loads(line)["request_id"] for line in out.splitlines()], err


# --- `tail -n N --follow` past a huge unterminated last line -----------------------------------

@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> type[CountingFile]:
    return count_jsonl_reads(monkeypatch)


def _poll_until_caught_up(path: Path, offsets: dict, stats: ReadStats) -> list[str]:
    return [json.loads(line)["request_id"]
            for line in follow_until_caught_up(path, offsets, stats, 20)]


def test_following_after_tail_n_does_not_scan_a_huge_overlong_last_line_again(
        tmp_path, monkeypatch, counted_reads):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 100_000)
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n')
        f.write(b"z" * (4 << 20))  # a foreign writer, no newline for megabytes
    offsets: dict = {}
    stats = ReadStats()
    assert [json.loads(line)["request_id"]
            for line in jsonl.tail_jsonl(path, 5, stats, offsets)] == ["r-1"]
    counted_reads.read_bytes = 0
    assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
    # The tail looked through the line already: the first poll has nothing more to scan.
    assert counted_reads.read_bytes < 100_000, counted_reads.read_bytes
    with path.open("ab") as f:
        f.write(b"zz\n" + b'{"ts": 5.0, "request_id": "r-5"}\n')
    assert _poll_until_caught_up(path, offsets, stats) == ["r-5"]
    assert stats.unreadable == 1  # counted once, never printed in part


def test_following_after_tail_n_does_not_rescan_a_long_line_still_being_written(
        tmp_path, counted_reads):
    # Shorter than the longest line held, longer than one poll's read: a big event whose
    # write is in progress. It is printed whole once its end arrives.
    path = tmp_path / "events.jsonl"
    padding = "p" * (3 << 20)
    big = json.dumps({"ts": 2.0, "request_id": "r-big", "pad": padding}).encode()
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n' + big[:-10])
    offsets: dict = {}
    stats = ReadStats()
    assert len(jsonl.tail_jsonl(path, 3, stats, offsets)) == 1
    counted_reads.read_bytes = 0
    assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
    assert counted_reads.read_bytes < 100_000, counted_reads.read_bytes
    with path.open("ab") as f:
        f.write(big[-10:] + b"\n")
    assert _poll_until_caught_up(path, offsets, stats) == ["r-big"]
    assert stats.unreadable == 0


# --- the log's directory removed under a follower ----------------------------------------------

@pytest.mark.parametrize("configured", ["logs/events.jsonl", "logs"])
def test_follow_survives_the_log_directory_removed_between_check_and_listing(
        tmp_path, monkeypatch, capsys, configured):
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "events.00000000000000000001.7.jsonl").write_bytes(
        b'{"ts": 1.0, "request_id": "r-1"}\n')
    real_iterdir = Path.iterdir
    armed = []

    def iterdir(self: Path):
        if armed and self == directory:
            armed.clear()
            # A cleanup job, after the reader saw the directory and before it lists it.
            assert directory.is_dir()
            shutil.rmtree(directory)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)

    def come_back() -> None:
        directory.mkdir()
        (directory / "events.00000000000000000009.7.jsonl").write_bytes(
            b'{"ts": 9.0, "request_id": "r-9"}\n')

    code, ids, err = _follow(monkeypatch, capsys, tmp_path / configured,
                             [lambda: armed.append(True), lambda: None, come_back],
                             "-n", "5")
    assert (code, err) == (0, "")
    assert not armed  # the directory was removed under the follower
    assert ids == ["r-1", "r-9"]


def test_event_files_of_a_removed_directory_are_none(tmp_path):
    assert jsonl.event_files(tmp_path / "gone" / "events.jsonl") == []
    assert jsonl.event_files(tmp_path / "gone") == []


# --- an SQLite log made anew: a follower may look before its table is committed ---------------

def _half_made(path: Path) -> None:
    """The database as the writer leaves it between its setup pragmas and its schema."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
    assert path.stat().st_size > 0


def test_follow_waits_on_a_database_made_anew_until_its_table_is_there(
        tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.db"
    write_events(path, ["a-1", "a-2"])

    def remade() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        _half_made(path)

    code, ids, err = _follow(monkeypatch, capsys, path,
                             [remade, lambda: None, lambda: write_events(path, ["b-1"])])
    assert (code, err) == (0, "")
    assert ids == ["a-1", "a-2", "b-1"]


@pytest.mark.parametrize("start", [lambda p: p.touch(), _half_made])
def test_follow_started_while_the_writer_creates_the_database(
        tmp_path, monkeypatch, capsys, start):
    path = tmp_path / "events.db"
    start(path)
    code, ids, err = _follow(monkeypatch, capsys, path,
                             [lambda: None, lambda: write_events(path, ["c-1", "c-2"])])
    assert (code, err) == (0, "")
    assert ids == ["c-1", "c-2"]


def test_another_applications_database_is_still_refused_when_followed(
        tmp_path, monkeypatch, capsys):
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    code, ids, err = _follow(monkeypatch, capsys, path, [])
    assert code == 2 and ids == []
    assert f"{path} is not an inferwatch event log" in err


# --- a row whose text is not UTF-8 ---------------------------------------------------------------

def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged=st.binary(min_size=1, max_size=40).filter(_not_utf8))
def test_a_row_that_is_not_utf8_is_skipped_and_counted(tmp_path_factory, capsys, damaged):
    path = tmp_path_factory.mktemp("damaged") / "events.db"
    write_events(path, ["r-1", "r-2"])
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        # A damaged page or another writer: TEXT that no UTF-8 decoder accepts.
        conn.execute("INSERT INTO events (ts, model, body) VALUES (?, 'm', CAST(? AS TEXT))",
                     (time.time() + 1, damaged))
    for argv in (["tail", "-n", "5"], ["query"], ["query", "--model", "m"]):
        code = main(["events", *argv, str(path)])
        out, err = capsys.readouterr()
        assert code == 0, err
        expected = [] if "--model" in argv else ["r-1", "r-2"]
        assert [json.loads(line)["request_id"] for line in out.splitlines()] == expected
        assert err == "inferwatch events: skipped 1 unreadable lines\n"


def test_following_past_a_row_that_is_not_utf8(tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.db"
    write_events(path, ["r-1"])

    def damage() -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("INSERT INTO events (ts, body) VALUES (?, CAST(? AS TEXT))",
                         (time.time(), b'{"ts": \xff}'))

    code, ids, err = _follow(monkeypatch, capsys, path,
                             [damage, lambda: write_events(path, ["r-2"])], "-n", "5")
    assert (code, ids) == (0, ["r-1", "r-2"])
    assert err == "inferwatch events: skipped 1 unreadable lines\n"
