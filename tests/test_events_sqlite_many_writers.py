"""Several processes writing one SQLite event log, as the workers of a pre-fork server do.

SQLite lets one connection checkpoint the write-ahead log at a time; another writer's
checkpoint is no reader holding a snapshot, and must cost no event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import sqlite3
import threading
import time
import types
from pathlib import Path

import pytest

from inferwatch.events import REASONS, EventLog, log, sqlite
from inferwatch.events.sinks import Record

WORKERS = 4
EVENTS_PER_WORKER = 1500
BLOB = "y" * 400  # about 500 bytes a row: the log passes its cap every few batches


def _write_events(path: Path, max_bytes: int, worker: int, start: object,
                  results: multiprocessing.Queue) -> None:
    """One worker process: its own event log on the shared database, started together with
    the others so that their batches and checkpoints overlap."""
    event_log = EventLog(path, max_bytes=max_bytes, queue_size=EVENTS_PER_WORKER * 2)
    start.wait(60)
    for i in range(EVENTS_PER_WORKER):
        event_log.emit({"model": "m", "request_id": f"{worker}-{i}", "inputs": {"b": BLOB}})
    flushed = event_log.flush(120)
    dropped = event_log.dropped_counts()
    event_log.close()
    results.put((worker, flushed, dropped, getattr(sqlite, "largest_total_seen", 0)))


def run_workers(path: Path, max_bytes: int) -> list[tuple[int, bool, dict[str, int], int]]:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    workers = [context.Process(target=_write_events,
                               args=(path, max_bytes, worker, start, results))
               for worker in range(WORKERS)]
    for process in workers:
        process.start()
    try:
        outcome = [results.get(timeout=300) for _ in workers]
    finally:
        for process in workers:
            process.join(60)
    assert [process.exitcode for process in workers] == [0] * WORKERS
    return sorted(outcome)


def stored_ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [json.loads(body)["request_id"]
                for (body,) in conn.execute("SELECT body FROM events ORDER BY id")]


def files_size(path: Path) -> int:
    total = 0
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += (path.parent / name).stat().st_size
    return total


def test_every_event_of_every_worker_is_stored(tmp_path):
    path = tmp_path / "events.db"
    outcome = run_workers(path, max_bytes=64 << 20)
    assert [(flushed, dropped) for _, flushed, dropped, _ in outcome] == \
        [(True, dict.fromkeys(REASONS, 0))] * WORKERS
    stored = stored_ids(path)
    assert len(stored) == WORKERS * EVENTS_PER_WORKER
    assert set(stored) == {f"{w}-{i}" for w in range(WORKERS) for i in range(EVENTS_PER_WORKER)}


def _records(prefix: str, count: int) -> list[Record]:
    return [Record(1.0, "m", "1", f"{prefix}-{i}", None, None,
                   json.dumps({"request_id": f"{prefix}-{i}"}).encode()) for i in range(count)]


def test_a_writer_opening_the_log_while_another_creates_it_loses_no_event(tmp_path,
                                                                         monkeypatch):
    """The writer that creates the database removes the journals beside the new file (a
    deleted database's). A second writer that opened the new file in the moment between
    committed into a write-ahead log then unlinked under it, and every event it wrote after
    was lost without an error: one worker's 1,500 events in a run of the test above. The
    second writer now waits until the first has set the database up. The creator is held at
    that moment for 1.5 s, long enough for the second writer to write, had it not waited."""
    path = tmp_path / "events.db"
    creator = sqlite.SqliteSink(path, max_bytes=1 << 20)
    other = sqlite.SqliteSink(path, max_bytes=1 << 20)
    created, other_wrote = threading.Event(), threading.Event()
    remove = sqlite._remove_deleted_journals

    def held(journal_of: Path) -> None:
        created.set()
        other_wrote.wait(1.5)
        remove(journal_of)

    monkeypatch.setattr(sqlite, "_remove_deleted_journals", held)
    failures: list[BaseException] = []

    def write_other() -> None:
        try:
            assert created.wait(30)
            other.write(_records("other", 50))
            other_wrote.set()
            other.write(_records("later", 50))
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    thread = threading.Thread(target=write_other)
    thread.start()
    creator.write(_records("creator", 50))
    thread.join(60)
    creator.close()
    other.close()
    assert not failures and not thread.is_alive()
    assert sorted(stored_ids(path)) == sorted(
        f"{prefix}-{i}" for prefix in ("creator", "other", "later") for i in range(50))


def test_a_child_forked_while_a_writer_opens_the_log_does_not_keep_it_locked(tmp_path):
    """A child forked while a writer holds the lock it opens the database under closes its
    copy of the lock's descriptor: the next writer need not wait for the child to exit."""
    import fcntl

    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    with sqlite._opening(tmp_path):
        pid = os.fork()
        if pid == 0:  # the child: says it runs, then waits to be told to exit
            try:
                os.write(ready_w, b"1")
                os.read(exit_r, 1)
            finally:
                os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:  # BlockingIOError while the child's copy held the lock
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        os.write(exit_w, b"1")
        os.waitpid(pid, 0)
        for end in (ready_r, ready_w, exit_r, exit_w):
            os.close(end)


@pytest.fixture
def sizes_after_every_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each forked worker records the size of the three files after each of its commits,
    when the write-ahead log is at its largest (before any checkpoint shrinks it)."""
    insert = sqlite.SqliteSink._insert

    def measured(self: sqlite.SqliteSink, conn: sqlite3.Connection, chunk: list) -> None:
        insert(self, conn, chunk)
        sqlite.largest_total_seen = max(getattr(sqlite, "largest_total_seen", 0),
                                        files_size(self.path))

    monkeypatch.setattr(sqlite.SqliteSink, "_insert", measured)


def test_workers_at_the_size_bound_lose_only_the_oldest_events(tmp_path,
                                                               sizes_after_every_commit):
    max_bytes = 1 << 20  # the workers write about 3 MB
    path = tmp_path / "events.db"
    outcome = run_workers(path, max_bytes=max_bytes)
    assert [(flushed, dropped) for _, flushed, dropped, _ in outcome] == \
        [(True, dict.fromkeys(REASONS, 0))] * WORKERS
    assert files_size(path) <= max_bytes
    # Each transaction finds the log under its cap while holding the write lock, so the
    # log passes the cap by one transaction's pages, not by one from every worker.
    largest = max(seen for *_, seen in outcome)
    assert 0 < largest <= max_bytes * 1.1
    # The bound deletes in commit order: what is left of each worker is its newest events.
    stored = stored_ids(path)
    assert stored
    for worker in range(WORKERS):
        numbers = [int(i.split("-")[1]) for i in stored if i.startswith(f"{worker}-")]
        assert numbers == list(range(EVENTS_PER_WORKER - len(numbers), EVENTS_PER_WORKER))


def emit_all(event_log: EventLog, count: int, prefix: str) -> None:
    for i in range(count):
        event_log.emit({"request_id": f"{prefix}-{i}", "inputs": {"b": BLOB}})
    assert event_log.flush(60)


def test_a_reader_holding_a_snapshot_is_named_as_the_cause(tmp_path, make_log, monkeypatch,
                                                           caplog):
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(log, "BACKOFF_SECONDS", (0.01,))
    path = tmp_path / "events.db"
    event_log = make_log(path, max_bytes=1 << 20, queue_size=10_000)
    emit_all(event_log, 1, "first")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchall()  # holds this snapshot
        with caplog.at_level(logging.WARNING, logger="inferwatch"):
            emit_all(event_log, 1000, "pinned")  # about 500 KB: far more than the log's cap
    finally:
        reader.close()
    assert event_log.dropped_counts()["write_error"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("a reader holds an old snapshot" in w for w in warnings), warnings
    # Once the reader lets go, writing resumes: after the back-off of the last failed
    # batch (events emitted during it are dropped, as documented), a probe is stored...
    deadline = time.monotonic() + 60
    probes = 0
    while f"probe{probes - 1}-0" not in stored_ids(path)[-1:]:
        assert time.monotonic() < deadline, "writing never resumed"
        emit_all(event_log, 1, f"probe{probes}")
        probes += 1
    # ...and every event after it.
    emit_all(event_log, 10, "after")
    assert stored_ids(path)[-10:] == [f"after-{i}" for i in range(10)]


def test_a_checkpoint_held_by_another_connection_is_waited_for(tmp_path, monkeypatch):
    """SQLite answers busy at once, with no frame counts, while another connection holds
    the checkpoint lock (every commit's automatic checkpoint, where several processes
    write): the writer tries again rather than fail the batch. The real processes above
    meet that answer only when their checkpoints happen to overlap."""
    path = tmp_path / "events.db"
    sink = sqlite.SqliteSink(path, max_bytes=1 << 20)
    answers = iter([(1, -1, -1), (1, -1, -1), (0, 0, 0)])
    asked: list[str] = []

    class Connection:
        def execute(self, sql: str) -> object:
            asked.append(sql)
            return types.SimpleNamespace(fetchone=lambda: next(answers))

    monkeypatch.setattr(sink, "_wal_size", lambda: sink.wal_bytes + 1)
    assert sink._checkpoint(Connection(), wait=True) is None
    assert asked == ["PRAGMA wal_checkpoint(TRUNCATE)"] * 3


if os.name != "posix":  # fork is what pre-fork servers do; nothing else is tested here
    pytestmark = pytest.mark.skip("needs fork")
