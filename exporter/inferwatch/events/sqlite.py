"""The SQLite sink: one row per prediction, indexed for ad-hoc queries, bounded in size.

Table ``events(id, ts, model, model_version, request_id, trace_id, error, body)``: ``body``
is the whole event as one JSON line, the other columns copy the fields worth indexing
(``error`` holds the error type). Indexes: ``ts``, ``(model, ts)``, ``request_id``.

Several processes share one database: WAL mode lets readers run beside the writer, and each
batch is one ``BEGIN IMMEDIATE`` transaction, waited for up to ``busy_timeout``. Size: the
write-ahead log is capped by ``journal_size_limit`` and checkpointed early; inside the same
transaction as each insert, the oldest rows are deleted and their pages returned to the file
system (``auto_vacuum = INCREMENTAL``) until database, log and shared-memory index fit in
``max_bytes``.

>>> import tempfile
>>> from inferwatch.events.sinks import Record
>>> db = Path(tempfile.mkdtemp()) / "events.db"
>>> sink = SqliteSink(db, max_bytes=1 << 20)
>>> sink.write([Record(1.0, "fraud", "1", "r-1", None, None, b'{"ts":1.0}')]); sink.close()
>>> list(query_sqlite(db, Query(request_id="r-1")))
[b'{"ts":1.0}']
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, TypeVar

from inferwatch.events.sinks import Query, ReadStats, Record, SinkError

try:
    import fcntl
except ImportError:  # Windows: no flock; the database is opened without the lock
    fcntl = None  # type: ignore[assignment]

BUSY_TIMEOUT_MS = 5_000
LOCKED_WAIT_SECONDS = 10.0  # as long as a busy wait, twice: the writer thread may wait
LOCKED_BACKOFF_SECONDS = (0.01, 0.05, 0.1, 0.2)
T = TypeVar("T")
# SQLite integers are signed 64-bit: a larger LIMIT means "no limit" anyway.
_MAX_SQL_INT = (1 << 63) - 1
MIN_MAX_BYTES = 256 * 1024
# Rows a query reads per read transaction (events are up to 64 KiB each by default).
QUERY_PAGE_ROWS = 256
# Room kept for the shared-memory WAL index (32 KiB per ~4,000 log frames).
_SHM_ALLOWANCE = 64 * 1024
# Waits between tries for the checkpoint lock another connection holds (for milliseconds).
_CHECKPOINT_RETRY_SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02)
_READER_PINS_WAL = "a reader holds an old snapshot of the database"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        model TEXT,
        model_version TEXT,
        request_id TEXT,
        trace_id TEXT,
        error TEXT,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts)",
    "CREATE INDEX IF NOT EXISTS events_model_ts ON events (model, ts)",
    "CREATE INDEX IF NOT EXISTS events_request_id ON events (request_id)",
)
# Every column an insert names; all but ts and body may be added to an older table.
_COLUMNS = ("ts", "model", "model_version", "request_id", "trace_id", "error", "body")
_REQUIRED_COLUMNS = ("ts", "body")
_INSERT = ("INSERT INTO events (ts, model, model_version, request_id, trace_id, error, body)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)")


class SqliteSink:
    """Inserts records into the database at `path`, deleting the oldest to stay in bounds."""

    # SQLite's per-process lock bookkeeping must not be copied into a forked child with the
    # connection open: the event log closes it before every fork (events/log.py).
    closes_before_fork = True

    def __init__(self, path: Path, *, max_bytes: int, chunk_bytes: int = 1 << 20) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes: an SQLite event log needs at least {MIN_MAX_BYTES} "
                             f"bytes, got {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self.wal_bytes = max(64 * 1024, min(max_bytes // 16, 4 << 20))
        # The log may pass its limit by about one transaction before the checkpoint.
        self.db_budget = max_bytes - 2 * self.wal_bytes - _SHM_ALLOWANCE
        # One transaction's pages must fit in the log with room to spare.
        self.chunk_bytes = min(chunk_bytes, self.wal_bytes // 4)
        self._conn: sqlite3.Connection | None = None
        self._inherited: sqlite3.Connection | None = None
        # The file the connection writes to: one deleted or replaced under it would swallow
        # every later event without an error.
        self._file_id: tuple[int, int] | None = None

    def _insert(self, conn: sqlite3.Connection, chunk: list[Record]) -> None:
        try:
            self._begin_with_room(conn)
            conn.executemany(_INSERT, [(r.ts, r.model, r.model_version, r.request_id,
                                        r.trace_id, r.error, r.line.decode("utf-8"))
                                       for r in chunk])
            self._enforce_bound(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def write(self, records: list[Record]) -> None:
        """Insert `records` in size-bounded transactions; SinkError says how many committed."""
        written = 0
        try:
            if self._conn is not None and _file_id(self.path) != self._file_id:
                self.close()
            conn = _when_unlocked(self._connect)
            for chunk in _chunks(records, self.chunk_bytes):
                _when_unlocked(self._insert, conn, chunk)
                written += len(chunk)
            self._checkpoint(conn, wait=False)
        except Exception as exc:
            self.close()  # reconnect next time: the file may have moved or come back
            raise SinkError(written, exc) from exc

    def close(self) -> None:
        """Close the connection; the next write opens a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._file_id = None
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def forget_after_fork(self) -> None:
        """In a forked child: stop using the parent's connection without closing it.

        SQLite connections must not cross a fork; closing one in the child could touch the
        parent's locks, so it is kept referenced and never used again.
        """
        self._inherited, self._conn = self._conn, None
        self._file_id = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _opening(self.path.parent):
            return self._connect_now()

    def _connect_now(self) -> sqlite3.Connection:
        # Create the file ourselves so it is private; SQLite gives -wal and -shm the same mode.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        else:
            _remove_deleted_journals(self.path)
        try:
            stat = os.fstat(fd)
            new_file = stat.st_size == 0
            file_id = (stat.st_dev, stat.st_ino)
        finally:
            os.close(fd)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if new_file:  # takes effect on a new file only, and would contend for its lock
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {self.wal_bytes}")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, self.wal_bytes // page_size // 2)}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_SCHEMA[0])
            # A table made by an earlier release may lack columns added since: without
            # them every insert (and the indexes below) would fail, batch after batch.
            _add_missing_columns(conn, self.path)
            for statement in _SCHEMA[1:]:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._file_id = file_id
        return conn

    def _enforce_bound(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest rows once live pages pass the budget; give back excess file."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        high = self.db_budget - self.chunk_bytes
        low = high - self.wal_bytes // 4  # free pages left over absorb the next inserts
        used = self._used_bytes(conn, page_size)
        if used > high:
            while used > low:
                rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
                if rows == 0:
                    raise OSError("an empty event table does not fit in max_bytes")
                # Small steps: every page a deletion touches goes through the write-ahead log.
                step = max(1, int(rows * (used - low) / used))
                conn.execute("DELETE FROM events WHERE id IN "
                             "(SELECT id FROM events ORDER BY id LIMIT ?)", (step,))
                used = self._used_bytes(conn, page_size)
        excess = conn.execute("PRAGMA page_count").fetchone()[0] - self.db_budget // page_size
        if excess > 0:
            conn.execute(f"PRAGMA incremental_vacuum({int(excess)})")

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection, page_size: int) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    def _wal_size(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            return 0

    def _checkpoint(self, conn: sqlite3.Connection, *, wait: bool) -> str | None:
        """Empty the write-ahead log once it passes its cap; why not, when it stays over.

        Passive automatic checkpoints never shrink the file; a TRUNCATE one does, unless a
        reader still holds old pages. Without `wait` it gives up at once: after a commit the
        batch is stored, and a reader or another process's checkpoint is left to the next
        batch, which waits (see _make_room).

        Only one connection checkpoints at a time, and SQLite refuses the checkpoint lock at
        once, without its busy handler, to a connection that asks while another holds it
        (``busy`` with no frame counts): with several writers that is every other commit's
        automatic checkpoint. That is no failure: its checkpoint ends in milliseconds, or
        within the busy timeout where a reader keeps it waiting, and this one is tried
        again until then.
        """
        if self._wal_size() <= self.wal_bytes:
            return None
        if not wait:
            conn.execute("PRAGMA busy_timeout = 0")
        try:
            return self._truncate_wal(conn, wait=wait)
        finally:
            if not wait:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _truncate_wal(self, conn: sqlite3.Connection, *, wait: bool) -> str | None:
        # Another process's checkpoint may itself wait out a busy timeout on a reader: wait
        # longer than that, so that this one can then find the reader and say so.
        deadline = time.monotonic() + 2 * BUSY_TIMEOUT_MS / 1000
        pauses = itertools.chain(_CHECKPOINT_RETRY_SECONDS,
                                 itertools.repeat(_CHECKPOINT_RETRY_SECONDS[-1]))
        while True:
            try:
                busy, log_frames, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                return None
            if not busy:
                return None
            if log_frames >= 0:  # it ran, and waited the busy timeout for the log's readers
                return _READER_PINS_WAL
            if not wait or self._wal_size() <= self.wal_bytes:
                return None  # the other checkpoint emptied the log, or the next batch waits
            if time.monotonic() > deadline:
                return (f"another connection's checkpoint held it for over "
                        f"{2 * BUSY_TIMEOUT_MS / 1000:g} s")
            time.sleep(next(pauses))

    def _begin_with_room(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` with the write-ahead log under its cap.

        The size is read under the write lock: between a look before it and the lock, every
        other process writing the database may have added a transaction of its own. Past
        the wait for locks, a transaction goes ahead over the cap rather than be lost.
        """
        deadline = time.monotonic() + LOCKED_WAIT_SECONDS
        while True:
            self._make_room(conn)
            conn.execute("BEGIN IMMEDIATE")
            if self._wal_size() <= self.wal_bytes or time.monotonic() > deadline:
                return
            conn.execute("ROLLBACK")

    def _make_room(self, conn: sqlite3.Connection) -> None:
        """Refuse a transaction the write-ahead log has no room for.

        A reader holding an old snapshot (an open ``sqlite3`` shell, a slow query) keeps
        every later page in the log; writing on would grow it past `max_bytes` without
        limit. The batch fails instead and is counted, and writing resumes once the reader
        lets go.
        """
        why = self._checkpoint(conn, wait=True)
        if why is not None and self._wal_size() > self.wal_bytes:
            raise OSError(f"{self.path}-wal is full and cannot be checkpointed: {why}")


def _add_missing_columns(conn: sqlite3.Connection, path: Path) -> None:
    """Add the nullable columns an older ``events`` table lacks; a table without ``ts`` or
    ``body`` is no event log of ours, and the error says so, naming the file."""
    present = {row[1].lower() for row in conn.execute("PRAGMA table_info(events)")}
    missing = [name for name in _COLUMNS if name not in present]
    required = [name for name in missing if name in _REQUIRED_COLUMNS]
    if required:
        raise sqlite3.DatabaseError(
            f"{path} is not an inferwatch event database: its table events has no "
            f"{' or '.join(required)} column; move it aside or configure another path")
    for name in missing:
        conn.execute(f"ALTER TABLE events ADD COLUMN {name} TEXT")


def _when_unlocked(step: Callable[..., T], *args: object) -> T:
    """Run `step`, again after a short wait while SQLite says the database is locked.

    SQLite answers "locked" at once, without its busy handler, where waiting could deadlock
    (several processes opening or checkpointing one log); the writer thread, never the
    request path, waits here before the batch counts as a write error.
    """
    deadline = time.monotonic() + LOCKED_WAIT_SECONDS
    for attempt in itertools.count():
        try:
            return step(*args)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(LOCKED_BACKOFF_SECONDS[min(attempt, len(LOCKED_BACKOFF_SECONDS) - 1)])
    raise AssertionError("unreachable")


def _remove_deleted_journals(path: Path) -> None:
    """Remove the -wal and -shm beside a database file just created: a deleted database's,
    whose pages SQLite would replay into the new file. Only under :func:`_opening`."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


@contextlib.contextmanager
def _opening(directory: Path) -> Iterator[None]:
    """Held while a writer opens the database: one process at a time creates it, removes a
    deleted database's journals beside it and sets it up.

    A writer that created the file removed the -wal and -shm beside it. Another process
    could open the new file in the moment between, and commit into a write-ahead log that
    was then unlinked under it: every event it wrote after went to a deleted file, without
    an error (workers of a pre-fork server writing their first events at once). The lock is
    an flock on the directory: SQLite's own locks on the database file are POSIX locks,
    which closing any other descriptor of that file would drop. A child forked while it is
    held closes its copy of the descriptor (:func:`_close_inherited_locks`; one forked
    without Python's hooks, when it catches up with them). Until then it holds the lock,
    and after ``BUSY_TIMEOUT_MS`` of waiting a writer goes on without it, as it did before
    there was one.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, AttributeError):  # no directory descriptor here (Windows): no lock
        yield
        return
    _HELD.add(fd)
    try:
        if fcntl is not None:
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            for attempt in itertools.count():
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(LOCKED_BACKOFF_SECONDS[min(attempt,
                                                          len(LOCKED_BACKOFF_SECONDS) - 1)])
                except OSError:  # a file system without flock: no lock
                    break
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)  # lets go of the lock


# The directory descriptors this process holds the lock through (one per writer opening).
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    """In a forked child: close the copies of the descriptors the parent held the lock
    through, which would keep it held for as long as the child lives (the thread that
    closes them in the parent does not exist here)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _chunks(records: list[Record], limit: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    size = 0
    for record in records:
        if chunk and size + len(record.line) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += len(record.line)
    if chunk:
        yield chunk


class _Undecodable(bytes):
    """A TEXT value that is not UTF-8 (a damaged page, another writer's row)."""


def _text(raw: bytes) -> str | _Undecodable:
    # The default decoding raises for the whole read: one damaged row would make every
    # other event of the log unreadable, where the JSON lines reader skips and counts it.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(raw)


def _reader(path: Path) -> sqlite3.Connection:
    """A connection that never writes to the database at `path`.

    Read-only (``mode=ro``): a read-write connection that is the last to close checkpoints
    the write-ahead log into the database, so a reader would change a copy kept as
    evidence, and fail on one it may not write. SQLite still needs the ``-shm`` index
    beside a WAL database; where it cannot be made (a read-only directory) a database
    without a write-ahead log is read as immutable, one with a log cannot be read whole
    and the error says so.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no event database at {path}")
    uri = path.absolute().as_uri()
    try:
        return _open_reader(f"{uri}?mode=ro")
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc):
            raise
        if _pending_wal(path):
            raise sqlite3.OperationalError(
                f"its write-ahead log {path.name}-wal cannot be read without "
                f"{path.name}-shm, which cannot be created beside it (a read-only "
                f"directory?): copy {path.name} and {path.name}-wal to a writable "
                "directory and read the copy") from exc
        # No write-ahead log, and none can be started where no -shm can be made either:
        # the file holds every event and nothing will change it under the reader.
        return _open_reader(f"{uri}?mode=ro&immutable=1")


def _open_reader(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                           isolation_level=None)
    try:
        conn.text_factory = _text
        conn.execute("PRAGMA query_only = ON")
        # The files are opened lazily: an unreadable one fails here, not mid-query.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _pending_wal(path: Path) -> bool:
    try:
        return os.stat(f"{path}-wal").st_size > 0
    except FileNotFoundError:
        return False


def _uninitialised(conn: sqlite3.Connection) -> bool:
    """Whether the database has no schema at all: a writer has created the file (its first
    page is written by the pragmas that set it up) and not yet committed its table.

    Such a file appears whenever the log is made anew (deleted, replaced, a first start)
    and is an empty log, not another application's database, which has tables of its own.
    """
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def _bodies(rows: list[tuple[object]], stats: ReadStats | None = None) -> list[bytes]:
    """The stored lines; a body that is no text means another application's table, one
    that is not UTF-8 a damaged row, skipped and counted in `stats`."""
    out = []
    for (body,) in rows:
        if isinstance(body, _Undecodable):
            if stats is not None:
                stats.unreadable += 1
            continue
        if not isinstance(body, str):
            raise sqlite3.DatabaseError(f"events.body holds {type(body).__name__}, "
                                        "not a JSON line")
        out.append(body.encode("utf-8"))
    return out


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1].lower() for row in conn.execute("PRAGMA table_info(events)")}


def _indexed(column: str, present: set[str]) -> str:
    """The SQL for an indexed column; from the body where the table predates the column.

    A database written by an older release gains its missing columns only when a writer
    opens it; a reader must not write, so it reads the field from the stored line instead
    (as text, as the column would hold it: an id given as a number is stored as one).
    """
    if column in present:
        return column
    if column == "error":  # JSON null reads as SQL NULL: no error
        return "json_extract(body, '$.error')"
    return f"CAST(json_extract(body, '$.{column}') AS TEXT)"


def query_sqlite(path: Path, query: Query, stats: ReadStats | None = None) -> Iterator[bytes]:
    """Bodies of the events at `path` matching `query`, oldest first.

    Read a page at a time, each page in its own short read transaction: a result of
    millions of rows is never held in memory, and a slow reader (``| less``) never pins
    a snapshot that would keep the writer's write-ahead log from being checkpointed
    (which fails its batches). Pages follow on by ``(ts, id)``, so no row is printed
    twice or skipped while writes and deletions of the oldest rows go on.
    """
    conn = _reader(path)
    try:
        columns = _columns(conn)
    except BaseException:
        conn.close()
        raise
    where, params = [], []
    for column, value in (("request_id", query.request_id), ("model", query.model)):
        if value is not None:
            where.append(f"{_indexed(column, columns)} = ?")
            params.append(value)
    if query.since is not None:
        where.append("ts >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("ts <= ?")
        params.append(query.until)
    if query.errors_only:
        where.append(f"{_indexed('error', columns)} IS NOT NULL")
    first = "SELECT ts, id, body FROM events"
    if where:
        first += " WHERE " + " AND ".join(where)
    # `ts >= ?` first, so SQLite seeks the ts index to the page's start; the form
    # `ts > ? OR (ts = ? AND id > ?)` seeks nothing, and made every page scan and sort all
    # rows before it (a query quadratic in the log's rows). The index on ts holds the row
    # id after ts, so `ORDER BY ts, id` reads it in order with no sort.
    later = first + (" AND " if where else " WHERE ") + "ts >= ? AND (ts > ? OR id > ?)"
    order = " ORDER BY ts, id LIMIT ?"
    left = _MAX_SQL_INT if query.limit is None else min(query.limit, _MAX_SQL_INT)
    try:
        after: tuple[float, int] | None = None
        while left > 0:
            page = min(left, QUERY_PAGE_ROWS)
            if after is None:
                rows = conn.execute(first + order, [*params, page]).fetchall()
            else:
                rows = conn.execute(later + order,
                                    [*params, after[0], after[0], after[1], page]).fetchall()
            for _, _, body in rows:
                yield from _bodies([(body,)], stats)
            if len(rows) < page:
                return
            left -= len(rows)
            after = (rows[-1][0], rows[-1][1])
    finally:
        conn.close()


class Cursor(NamedTuple):
    """Where following a database stands: the last row printed, by id and content.

    Row ids are not unique over time: without AUTOINCREMENT a table emptied (by hand, or by
    the size bound) numbers its rows from 1 again, so an id alone cannot tell rows already
    printed from new ones that reached the same id between two polls.
    """

    id: int
    ts: float | None = None
    body: str | None = None


def tail_sqlite(path: Path, count: int, stats: ReadStats | None = None) -> list[bytes]:
    """The last `count` event bodies by ``ts``, oldest first."""
    return tail_and_last_id(path, count, stats)[0]


def tail_and_last_id(path: Path, count: int,
                     stats: ReadStats | None = None) -> tuple[list[bytes], Cursor]:
    """The last `count` bodies by ``ts``, oldest first, and the cursor at the highest row
    id, read in one snapshot: following from it prints no event twice and misses none."""
    conn = _reader(path)
    try:
        conn.execute("BEGIN")
        if _uninitialised(conn):
            return [], Cursor(0)
        # Read newest first until `count` rows could be decoded: a damaged row is skipped
        # and counted, and must not take the place of a readable one (`-n 10` prints ten
        # while ten readable events exist).
        found = conn.execute("SELECT body FROM events ORDER BY ts DESC, id DESC")
        lines: list[bytes] = []
        while len(lines) < count:
            page = found.fetchmany(min(QUERY_PAGE_ROWS, count - len(lines)))
            lines.extend(_bodies(page, stats))
            if not page:
                break
        found.close()
        top = conn.execute("SELECT id, ts, body FROM events ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return list(reversed(lines)), Cursor(*top) if top else Cursor(0)


def last_id(path: Path) -> int:
    """The highest row id at `path`: where following starts."""
    conn = _reader(path)
    try:
        return conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    finally:
        conn.close()


# The most a follower reads per poll (one row larger than it is read whole).
_FOLLOW_READ_BYTES = 1 << 20


def follow_sqlite(path: Path, after: Cursor | int) -> tuple[list[bytes], Cursor]:
    """Bodies of rows inserted after the row at `after`, and the cursor at the last one."""
    lines, cursor, _ = follow_sqlite_batch(path, after)
    return lines, cursor


def follow_sqlite_batch(path: Path, after: Cursor | int, limit: int = _FOLLOW_READ_BYTES,
                        stats: ReadStats | None = None) -> tuple[list[bytes], Cursor, bool]:
    """As :func:`follow_sqlite`, about `limit` bytes of rows at most; True when more rows
    may follow already (poll again at once).

    What arrives between two polls has no bound (a burst, a database replaced by a full
    one): it is read in pieces, so a follower's memory does not grow with it.

    Row ids start again at 1 in a database made anew (deleted, replaced, or emptied by the
    size bound). The size bound deletes the oldest rows, lowest ids first, so while the
    table was not emptied the row at the cursor is either still there unchanged or gone
    with every row below it; a different row at that id, or a lower id without it, means
    the table started again and every row is new.
    """
    if not isinstance(after, Cursor):
        after = Cursor(after)
    conn = _reader(path)
    try:
        conn.execute("BEGIN")
        if _uninitialised(conn):  # made anew, its table not yet committed: nothing yet
            return [], Cursor(0), False
        start = after.id
        if start > 0:
            seen = conn.execute("SELECT ts, body FROM events WHERE id = ?",
                                (start,)).fetchone()
            if seen is None:
                restarted = conn.execute("SELECT 1 FROM events WHERE id < ? LIMIT 1",
                                         (start,)).fetchone() is not None
            else:
                restarted = after.body is not None and tuple(seen) != (after.ts, after.body)
            if restarted:
                start = 0
        found = conn.execute("SELECT id, ts, body FROM events WHERE id > ? ORDER BY id",
                             (start,))
        rows: list[tuple] = []
        size = 0
        more = False
        while size < limit:
            page = found.fetchmany(QUERY_PAGE_ROWS)
            for row in page:
                rows.append(row)
                size += len(row[2]) if isinstance(row[2], (str, bytes)) else 0
                if size >= limit:
                    more = True
                    break
            if len(page) < QUERY_PAGE_ROWS:
                break
    finally:
        conn.close()
    if rows:
        after = Cursor(*rows[-1])
    elif start != after.id:
        after = Cursor(0)
    return _bodies([(body,) for _, _, body in rows], stats), after, more
