"""Event log, second pass: following an SQLite log whose table starts again, events lost
after the exit flush, flags given as sizes, and databases of an older release read as
they are."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_log_helpers import follow_cli, run_python, write_events
from inferwatch.cli import main
from inferwatch.events import EventLog, sqlite


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["events", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _ids(lines: list[str] | list[bytes]) -> list[str]:
    return [json.loads(line)["request_id"] for line in lines]


# --- following a table that starts its row ids again ---------------------------------------

def _follow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path,
            between_polls: list[Callable[[], None]]) -> list[str]:
    """`tail --follow`, running each step of `between_polls` in place of a wait."""
    code, out, err = follow_cli(monkeypatch, capsys, path, between_polls, "-n", "100")
    assert (code, err) == (0, "")
    return _ids(out.splitlines())


def _empty(path: Path) -> None:
    # A retention job (or the size bound) leaves the table empty: ids start again at 1.
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM events")


@pytest.mark.parametrize("new", [3, 4, 7])
def test_follow_prints_every_row_of_a_table_emptied_and_refilled_between_polls(
        tmp_path, monkeypatch, capsys, new):
    path = tmp_path / "events.db"
    write_events(path, ["old-0", "old-1", "old-2"])
    fresh = [f"new-{i}" for i in range(new)]

    def empty_and_refill() -> None:
        _empty(path)
        write_events(path, fresh)

    printed = _follow(monkeypatch, capsys, path, [empty_and_refill, lambda: None])
    assert printed == ["old-0", "old-1", "old-2", *fresh]


# A step between two polls: delete the `trim` oldest rows (all of them: -1), then add `add`.
_STEP = st.tuples(st.one_of(st.just(-1), st.integers(0, 4)), st.integers(0, 6))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, min_size=1, max_size=8))
def test_follow_prints_each_row_once_whatever_is_deleted_between_polls(
        tmp_path_factory, steps):
    path = tmp_path_factory.mktemp("follow") / "events.db"
    write_events(path, ["seed"])
    printed, cursor = sqlite.tail_and_last_id(path, 10)
    printed = list(printed)
    added = ["seed"]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for trim, add in steps:
            if trim < 0:
                conn.execute("DELETE FROM events")
            else:
                conn.execute("DELETE FROM events WHERE id IN "
                             "(SELECT id FROM events ORDER BY id LIMIT ?)", (trim,))
            for _ in range(add):
                request_id = f"r-{len(added)}"
                added.append(request_id)
                conn.execute("INSERT INTO events (ts, request_id, body) VALUES (?, ?, ?)",
                             (time.time(), request_id, json.dumps({"request_id": request_id})))
            lines, cursor = sqlite.follow_sqlite(path, cursor)
            printed.extend(lines)
    assert _ids(printed) == added


# --- events emitted after the exit flush, with a writer that cannot finish ----------------

def _after_a_timed_out_exit_flush(path: Path, late: str, flush_seconds: float,
                                  timeout: float) -> object:
    """Runs a process whose atexit hook `late()` emits to the log at `path` after an exit
    flush of `flush_seconds` timed out on a writer stuck behind another process's long
    transaction; the last line it printed, as JSON."""
    script = textwrap.dedent("""
        import atexit, json, sqlite3, time

        holder = []
    """) + textwrap.dedent(late) + textwrap.dedent(f"""
        # Registered before inferwatch is imported: runs after inferwatch's exit flush.
        atexit.register(late)

        from inferwatch.events import EventLog, log, log_lifetime

        # The writer below is stuck for 5 s at least.
        log_lifetime.ATEXIT_FLUSH_SECONDS = {flush_seconds!r}
        holder.append(EventLog({str(path)!r}))
        holder[0].emit({{"request_id": "first"}})
        assert holder[0].flush(60)
        # Another process's long transaction: the writer waits on the database lock.
        blocker = sqlite3.connect({str(path)!r}, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        holder[0].emit({{"request_id": "stuck"}})
    """)
    done = run_python(script, timeout)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_event_emitted_after_a_timed_out_exit_flush_is_counted(tmp_path):
    path = tmp_path / "events.db"
    counts = _after_a_timed_out_exit_flush(path, """
        def late():
            holder[0].emit({"request_id": "late"})
            print(json.dumps(holder[0].dropped_counts()), flush=True)
    """, flush_seconds=0.3, timeout=60)
    assert counts["closed"] >= 1  # "late" at least; "stuck" too when it was still queued
    with contextlib.closing(sqlite3.connect(path)) as conn:
        stored = [json.loads(b)["request_id"] for (b,) in conn.execute("SELECT body FROM events")]
    assert stored == ["first"]


def test_many_events_after_a_timed_out_exit_flush_do_not_hold_the_exit_up(tmp_path):
    path = tmp_path / "events.db"
    took, counts = _after_a_timed_out_exit_flush(path, """
        def late():
            started = time.monotonic()
            for i in range(10):  # a shutdown hook logging its last in-flight requests
                holder[0].emit({"request_id": f"late-{i}"})
            print(json.dumps([time.monotonic() - started, holder[0].dropped_counts()]))
    """, flush_seconds=1.0, timeout=120)
    assert took < 5.0  # not a second per event
    assert counts["closed"] >= 10


# --- sizes given as flags --------------------------------------------------------------------

@pytest.mark.parametrize("option", ["max_bytes", "queue_size", "rotate_bytes",
                                    "max_event_bytes"])
@pytest.mark.parametrize("flag", [True, False])
def test_a_flag_given_as_a_size_is_refused_by_name(tmp_path, option, flag):
    with pytest.raises(ValueError, match=rf"^{option}: expected a positive integer, got {flag}"):
        EventLog(tmp_path / "events.jsonl", **{option: flag})  # type: ignore[arg-type]


# --- a database of an older release, read before any writer migrated it --------------------

_OLD_ROWS = [
    {"ts": 1_700_000_000.0, "model": "fraud", "request_id": "ok-1"},
    {"ts": 1_700_000_001.0, "model": "fraud", "request_id": "bad-1",
     "error": {"type": "ValueError"}},
    {"ts": 1_700_000_002.0, "model": "churn", "request_id": 17, "error": None},
    {"ts": 1_700_000_003.0, "model": "churn", "request_id": "bad-2",
     "error": {"type": "KeyError"}},
]


def _old_release_db(path: Path, columns: tuple[str, ...]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
                   + "".join(f"{c} TEXT, " for c in columns) + "body TEXT NOT NULL)")
        for row in _OLD_ROWS:
            values = [row["ts"], *(None if row.get(c) is None else str(row[c])
                                   for c in columns), json.dumps(row)]
            db.execute(f"INSERT INTO events (ts, {''.join(c + ', ' for c in columns)}body) "
                       f"VALUES ({', '.join('?' * len(values))})", values)


def _schema(path: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA table_info(events)").fetchall()


@pytest.mark.parametrize("columns", [(), ("model",), ("model", "request_id")])
def test_an_older_database_is_queried_by_every_filter_without_being_changed(
        tmp_path, capsys, columns):
    path = tmp_path / "events.db"
    _old_release_db(path, columns)
    before = _schema(path)
    for argv, wanted in ((["--errors"], ["bad-1", "bad-2"]),
                         (["--model", "churn"], [17, "bad-2"]),
                         (["--request-id", "17"], [17]),
                         (["--model", "fraud", "--errors"], ["bad-1"])):
        code, lines, err = _run_cli(capsys, "query", str(path), *argv)
        assert (code, err) == (0, ""), argv
        assert _ids(lines) == wanted, argv
    assert _schema(path) == before  # a reader never writes
