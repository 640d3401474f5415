"""The JSON lines sink: one file per process, size-based rotation, a bound on total size.

A log configured as ``logs/events.jsonl`` (or as the directory ``logs``, see
:func:`~inferwatch.events.sinks.log_file`) writes ``logs/events.<start-ns>.<pid>.jsonl``: each
process appends to its own file, so records of several workers never interleave, and a
file is replaced by a new one when it would pass ``rotate_bytes``. The configured path itself
is a symbolic link to the file opened last, so ``tail -F logs/events.jsonl`` follows the log
across rotations and restarts, and ``cat``, ``grep`` or ``jq`` read its newest file (a
regular file already at that path is left alone, without a link). Before each write, under
an advisory lock shared by every process (``logs/.events.jsonl.lock``), the oldest files of
the log (least recently written first, whichever process wrote them) are deleted until the
files of the log, the new bytes included, fit in ``max_bytes``. A writer whose file was
deleted by another process notices on its next write and starts a new file.

A failed write (a full disk, say) is cut back to the last complete record, so a record is
never left torn in the middle of a file; readers skip an incomplete last line.

>>> import tempfile
>>> from inferwatch.events.sinks import Record
>>> base = Path(tempfile.mkdtemp()) / "events.jsonl"
>>> sink = JsonlSink(base, max_bytes=1 << 20, rotate_bytes=1 << 16)
>>> sink.write([Record(1.0, "m", None, "r-1", None, None, b'{"ts":1.0}')]); sink.close()
>>> [p.read_bytes() for p in event_files(base)]
[b'{"ts":1.0}\\n']
"""

from __future__ import annotations

import fcntl
import heapq
import json
import math
import os
import re
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from inferwatch.events.query_matches import QueryMatches
from inferwatch.events.sinks import Query, ReadStats, Record, SinkError

_READ_BLOCK = 1 << 16
# Large chunks go out in pieces so that a disk filling up mid-chunk still keeps
# every record that fitted.
_WRITE_BLOCK = 1 << 16


class _Partial(Exception):
    def __init__(self, records: int, cause: OSError) -> None:
        super().__init__(records, cause)
        self.records = records
        self.cause = cause


class JsonlSink:
    """Appends records to this process's current file of the log at `path`."""

    def __init__(self, path: Path, *, max_bytes: int, rotate_bytes: int) -> None:
        self.directory = path.parent
        self.stem = path.stem
        self.link_name = path.name
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self._pattern = _file_pattern(self.stem)
        self._lock_path = self.directory / f".{self.stem}.jsonl.lock"
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._file: Path | None = None
        self._size = 0

    def write(self, records: list[Record]) -> None:
        """Append `records`; raises SinkError saying how many were stored before a failure."""
        written = 0
        try:
            lines = [r.line + b"\n" for r in records]
            self._open_lock()
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                total = self._total_size()
                while written < len(lines):
                    self._ensure_file()
                    chunk, count = self._next_chunk(lines, written)
                    if not count:  # the next line does not fit in what is left of this file
                        self._close_file()
                        continue
                    total = self._make_room(total, len(chunk))
                    self._ensure_file()
                    try:
                        self._append(chunk)
                    except _Partial as partial:
                        written += partial.records
                        raise
                    total += len(chunk)
                    written += count
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except _Partial as partial:
            raise SinkError(written, partial.cause) from partial.cause
        except Exception as exc:
            raise SinkError(written, exc) from exc

    def close(self) -> None:
        """Close the current file and the lock; the next write opens new ones."""
        self._close_file()
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's descriptors without touching its lock."""
        # Closing drops only this process's reference to the lock; LOCK_UN would release
        # the lock for the parent as well, since both share one open file description.
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = self._file = None

    def _open_lock(self) -> None:
        if self._lock_fd is not None and os.fstat(self._lock_fd).st_nlink == 0:
            # The directory was removed (a cleanup job, `rm -r` of old logs): a lock on the
            # deleted file excludes nobody, and the directory must be made again before
            # this batch is written, not after it failed.
            self.close()
        if self._lock_fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                    0o600)

    def _ensure_file(self) -> None:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self._close_file()  # retention in another process deleted it
        if self._fd is None:
            name = f"{self.stem}.{time.time_ns():020d}.{os.getpid()}.jsonl"
            path = self.directory / name
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(path, flags, 0o600)
            self._file, self._size = path, 0
            self._point_link(name)

    def _point_link(self, name: str) -> None:
        """Make the configured path a link to `name` (atomically; held under the log's lock)."""
        link = self.directory / self.link_name
        if os.path.lexists(link) and not link.is_symlink():
            return  # someone's own file: never replace it
        temporary = self.directory / f".{self.link_name}.{os.getpid()}.tmp"
        try:
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(name, temporary)  # relative: the directory may be moved or mounted
            os.replace(temporary, link)
        except OSError:
            pass  # a convenience for readers: the log itself is written all the same

    def _next_chunk(self, lines: list[bytes], start: int) -> tuple[bytes, int]:
        room = self.rotate_bytes - self._size
        size = 0
        end = start
        while end < len(lines) and size + len(lines[end]) <= room:
            size += len(lines[end])
            end += 1
        if end == start and self._size == 0:
            end = start + 1  # a line longer than a whole file still gets a file of its own
        return b"".join(lines[start:end]), end - start

    def _append(self, chunk: bytes) -> None:
        """Write `chunk`; on failure keep its complete records, raise _Partial saying how many."""
        assert self._fd is not None
        start = self._size
        done = 0
        try:
            while done < len(chunk):
                done += os.write(self._fd, chunk[done:done + _WRITE_BLOCK])
        except OSError as exc:
            keep = chunk.rfind(b"\n", 0, done) + 1
            try:
                if keep < done:
                    os.ftruncate(self._fd, start + keep)  # never leave half a record behind
            except OSError:
                self._close_file()  # could not cut it back: later records go to a new file
            self._size = start + keep
            if not self._size:
                # Nothing stored in it: a full disk would otherwise leave one empty file
                # per retry, without bound, since every reopened sink starts a new file.
                self._discard_file()
            raise _Partial(chunk.count(b"\n", 0, keep), exc) from exc
        self._size += len(chunk)

    def _discard_file(self) -> None:
        file = self._file
        self._close_file()
        if file is not None:
            try:
                os.unlink(file)
            except OSError:
                pass  # gone already, or the directory refuses: nothing more to free

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._file = self._fd, None, None
            os.close(fd)

    def _files(self) -> list[tuple[float, str, int]]:
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if self._pattern.fullmatch(entry.name):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    found.append((st.st_mtime, entry.name, st.st_size))
        return found

    def _total_size(self) -> int:
        return sum(size for _, _, size in self._files())

    def _make_room(self, total: int, incoming: int) -> int:
        if total + incoming <= self.max_bytes:
            return total
        now = time.time()
        current = self._file.name if self._file is not None else None
        # This process's current file goes last: it is the one written now, whatever
        # its mtime says (one left ahead of the clock by a step back would otherwise go
        # first, and with it the newest events, on every write).
        files = sorted(self._files(),
                       key=lambda f: (f[1] == current, _write_order(f[0], f[1], now)))
        total = sum(size for _, _, size in files)
        for _, name, size in files:
            if total + incoming <= self.max_bytes:
                break
            if self._file is not None and name == self._file.name:
                self._close_file()
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                pass
            total -= size
        return total


def _file_pattern(stem: str) -> re.Pattern[str]:
    return re.compile(re.escape(stem) + r"\.\d{20}\.\d+\.jsonl")


# The start time (ns) in the name of a log's file: `<stem>.<start-ns>.<pid>.jsonl`.
_START_NS = re.compile(r"\.(\d{20})\.\d+\.jsonl\Z")
# How far ahead of this process's clock an mtime may be and still count as written now:
# the clock of a file server a little ahead of this host's.
_MTIME_SKEW_S = 2.0


def _write_order(mtime: float, name: str, now: float) -> tuple[bool, float, int, str]:
    """The key that sorts a log's files least recently written first, at time `now`.

    An mtime well ahead of the clock was left by a write before the wall clock stepped
    back (NTP, a host resumed or migrated): every file with an mtime up to now may have been
    written since, so such a file sorts before them all (among themselves by mtime, still
    true between them). Read as written now instead, it would outlast everything written
    after the step, and retention would delete the newest events first. Equal times go by
    the start time in the name, then by name.
    """
    before_step = mtime > now + _MTIME_SKEW_S
    started = _START_NS.search(name)
    return (not before_step, mtime if before_step else min(mtime, now),
            int(started.group(1)) if started else 0, name)


def event_files(path: Path) -> list[Path]:
    """The files holding the log at `path`, least recently written first.

    `path` is the configured log path (``logs/events.jsonl``, a link to the newest file),
    one of its files, or a directory (every ``*.jsonl`` file in it, links left out). A
    regular file at the configured path is read together with the log's files, which the
    log writes beside it all the same.
    """
    if path.is_dir():
        candidates = [p for p in _entries(path)
                      if p.suffix == ".jsonl" and p.is_file() and not p.is_symlink()]
    else:
        candidates = _log_files(path)
        if path.is_file() and not path.is_symlink():
            candidates.append(path)
    now = time.time()
    stamped = []
    for p in candidates:
        try:
            stamped.append((_write_order(p.stat().st_mtime, p.name, now), p))
        except FileNotFoundError:
            continue
    return [p for _, p in sorted(stamped)]


def _log_files(path: Path) -> list[Path]:
    """The per-process files of the log configured as `path` (none for one of those files)."""
    pattern = _file_pattern(path.stem)
    # Regular files only: a FIFO of that name would hang the reader in open(), a directory
    # fail the whole read.
    return [p for p in _entries(path.parent) if pattern.fullmatch(p.name) and p.is_file()]


def _entries(directory: Path) -> list[Path]:
    """The entries of `directory`; none when it is missing or no directory.

    A cleanup job (``rm -r`` of old logs) may remove it at any moment, also between a check
    that it exists and the listing: a log without a directory is a log without files, which
    ``--follow`` waits on as it waits on a missing file, rather than failing.
    """
    try:
        return list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def exists(path: Path) -> bool:
    """Whether there is anything to read at `path`: a directory counts only with a log's
    file in it (a mistyped or empty one looked like a healthy log with no events)."""
    if path.is_dir():
        return bool(event_files(path))
    return path.exists() or bool(event_files(path))


# The most files a query keeps open from reading to printing, and opens again at once.
_MAX_OPEN_FILES = 256
_REOPENED_FILES = 16

# Where a follower has read a file to: the file's identity (device, inode), the offset
# just after its last complete line, the bytes just before that offset (at most
# _MARK_BYTES, ending with the newline), and how far past it a newline is known to be
# missing (an unterminated line is not looked through again on every poll).
Position = tuple[tuple[int, int], int, bytes, int]
_MARK_BYTES = 64
# The most a follower reads of one file per poll.
_FOLLOW_READ_BYTES = 1 << 20
# The longest line a reader holds: a longer one (far past any max_event_bytes in use, a
# foreign file at the log's path) is skipped and counted as unreadable, so that memory
# stays bounded whatever the files hold.
MAX_LINE_BYTES = 64 << 20


def _read_lines(path: Path, since: Position | None, stats: ReadStats,
                limit: int | None = None) -> tuple[list[bytes], Position | None, bool]:
    """Complete lines after `since` (about `limit` bytes of them at most), the position just
    after the last of them, and whether the file may hold more after that.

    What arrives between two polls has no bound (a burst, a whole file read again after a
    copytruncate): it is read `limit` bytes at a time, so a follower's memory does not grow
    with it. A single line longer than `limit` is read whole once its end is found, or
    skipped (counted in `stats`) when longer than ``MAX_LINE_BYTES``; its end is looked for
    without holding what comes before it.

    A file that is shorter than `since`, or another file by now (``logrotate
    copytruncate``, a file replaced under the same name), is read from its start: seeking
    to the old offset would skip its first lines and print the middle of one. A file
    emptied in place that grew past the old offset before this poll is told by the bytes
    before that offset, which are no longer the line read last.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            start, mark, searched = 0, b"", 0
            if since is not None and since[0] == identity and since[1] <= st.st_size:
                offset = since[1]
                if os.pread(f.fileno(), len(since[2]), offset - len(since[2])) == since[2]:
                    start, mark, searched = offset, since[2], since[3]
            if searched > st.st_size:
                searched = 0  # cut back in place since: what was looked through is gone
            if limit is None:
                limit = _FOLLOW_READ_BYTES
            if searched >= start + limit:
                data, more = b"", True  # the line read last time is still unterminated
            else:
                f.seek(start)
                data = f.read(limit)
                more = len(data) == limit
            if more and b"\n" not in data:
                f.seek(max(searched, start + limit))
                newline = _find_newline(f, limit)
                if newline is None:  # its end not written yet: wait for it, holding nothing
                    # A writer that appends a little at a time would otherwise have the
                    # whole line read again on each poll, ever more as it grows.
                    return [], (identity, start, mark, f.tell()), False
                if newline - start > MAX_LINE_BYTES:
                    stats.unreadable += 1
                    mark = os.pread(f.fileno(), min(newline + 1, _MARK_BYTES),
                                    newline + 1 - min(newline + 1, _MARK_BYTES))
                    return [], (identity, newline + 1, mark, 0), True
                data = os.pread(f.fileno(), newline + 1 - start, start)
                more = True  # what follows the line is read by the next poll, at once
    except FileNotFoundError:
        return [], since, False
    except PermissionError as exc:  # told once; read from its start if it becomes readable
        stats.skip_file(path, exc)
        return [], since, False
    end = data.rfind(b"\n") + 1
    lines = [line for line in data[:end].split(b"\n") if line]
    return lines, _position(identity, start + end, data[:end], since if start else None), more


def _find_newline(f: BinaryIO, block: int) -> int | None:
    """The offset of the next newline at or after `f`'s position, read `block` bytes at a
    time and kept no longer; None when the file ends first."""
    while True:
        offset = f.tell()
        data = f.read(block)
        found = data.find(b"\n")
        if found >= 0:
            return offset + found
        if len(data) < block:
            return None


def _position(identity: tuple[int, int], offset: int, read: bytes,
              before: Position | None) -> Position:
    """The position at `offset`, its mark taken from what was `read` up to it (and, when
    that is short, from the mark of the position it was read from)."""
    mark = read[-_MARK_BYTES:]
    if len(mark) < _MARK_BYTES and before is not None:
        mark = (before[2] + mark)[-_MARK_BYTES:]
    return identity, offset, mark, 0


def _scan(f: BinaryIO, stats: ReadStats,
          progress: list[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """The complete, non-empty lines of `f` with their offsets, one at a time.

    A line longer than ``MAX_LINE_BYTES`` (a foreign file at the log's path, one line of
    gigabytes) is skipped and counted in `stats`, its end looked for a block at a time:
    reading it whole would hold the file in memory. `progress`, when given, holds the
    offset just after the last complete line seen (empty and skipped ones included) and,
    once the scan ends, how far past that offset the file was looked through without
    finding a newline.
    """
    offset = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line.endswith(b"\n"):
            if len(line) <= MAX_LINE_BYTES:
                if progress is not None:
                    progress[1] = f.tell()
                break  # a write in progress, or torn by a crash: not a record yet
            newline = _find_newline(f, _READ_BLOCK)
            if newline is None:
                if progress is not None:
                    progress[1] = f.tell()
                break  # an over-long line still being written: nothing to count yet
            stats.unreadable += 1
            offset = newline + 1
            f.seek(offset)
        else:
            if len(line) > 1:
                yield offset, line[:-1]
            offset += len(line)
        if progress is not None:
            progress[0] = offset


def _decode(line: bytes, stats: ReadStats) -> dict | None:
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):  # deep nesting: a foreign or damaged line
        stats.unreadable += 1
        return None
    if not isinstance(event, dict):
        stats.unreadable += 1
        return None
    return event


def _ts(event: dict) -> float:
    ts = event.get("ts")
    if not isinstance(ts, (int, float)):
        return 0.0
    try:
        value = float(ts)
    except OverflowError:  # an integer of hundreds of digits (a foreign line) is valid JSON
        return math.inf if ts > 0 else -math.inf
    return 0.0 if math.isnan(value) else value  # NaN would leave the merge order undefined


def _open_counted(file: Path, stats: ReadStats) -> BinaryIO | None:
    """`file` opened for reading and counted as read; None when it is gone, or when it may
    not be opened (another user's worker wrote it): skipped and named, as one worker's file
    must not hide all the others."""
    try:
        f = open(file, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        stats.skip_file(file, exc)
        return None
    stats.files_read += 1
    return f


def query_jsonl(path: Path, query: Query, stats: ReadStats) -> Iterator[bytes]:
    """Lines of the log at `path` matching `query`, oldest first."""
    # Without the quotes: a request id stored as a number is written bare.
    needles = [json.dumps(v, ensure_ascii=False)[1:-1].encode("utf-8")
               for v in (query.request_id, query.model) if v is not None]
    # Only where each match is, not the match itself: a query over a log of gigabytes
    # must not hold it all in memory before printing the first line. Files with matches
    # stay open until printed (the first few hundred of them), so retention deleting one
    # meanwhile loses none of them.
    found = QueryMatches(query.limit)
    handles: list[BinaryIO | None] = []
    names: list[Path] = []
    # A file past the bound is closed and opened again to print: a log of thousands of
    # files (small rotate_bytes, many restarts) would otherwise fail with "Too many open
    # files". Its identity tells the same file from a new one under its name.
    reopen: dict[int, tuple[Path, tuple[int, int]]] = {}
    opened: dict[int, BinaryIO | None] = {}  # files opened again, the latest few
    lost: dict[int, int] = {}  # matches that could not be read again, by file number
    held, bound = 0, _open_files_bound()
    try:
        for file in event_files(path):
            f = _open_counted(file, stats)  # held past this loop, closed below
            if f is None:
                continue
            number, matched = len(handles), False
            handles.append(f)
            names.append(file)
            try:
                for offset, line in _scan(f, stats):
                    if any(needle not in line for needle in needles):
                        continue  # cheap pre-filter: the value must appear as written
                    event = _decode(line, stats)
                    if event is not None and query.matches(event):
                        found.add(_ts(event), number, offset, len(line))
                        matched = True
            finally:
                found.end_file(number)
                if matched and held < bound:
                    held += 1
                else:
                    if matched:
                        st = os.fstat(f.fileno())
                        reopen[number] = (file, (st.st_dev, st.st_ino))
                    f.close()
                    handles[number] = None
        for _, number, offset, length in found.ordered():
            handle = handles[number]
            if handle is None:
                if number not in opened:
                    if len(opened) >= _REOPENED_FILES:
                        oldest = opened.pop(next(iter(opened)))
                        if oldest is not None:
                            oldest.close()
                    opened[number] = _reopen(*reopen[number])
                handle = opened[number]
                if handle is None:  # deleted by retention, or replaced, since it was read
                    lost[number] = lost.get(number, 0) + 1
                    continue
            line = os.pread(handle.fileno(), length, offset)
            if len(line) == length:  # else cut short under us (copytruncate): gone
                yield line
            else:
                lost[number] = lost.get(number, 0) + 1
        # Matches found and not printed are told, naming the file, never dropped unsaid.
        for number, count in lost.items():
            stats.skip_file(names[number], OSError(
                f"removed, replaced or cut short while the query ran: {count} matching "
                "events not printed"))
    finally:
        found.close()
        for handle in [*handles, *opened.values()]:
            if handle is not None:
                handle.close()


def _open_files_bound() -> int:
    """How many files a query may hold open: a share of what this process may open."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return _MAX_OPEN_FILES
    if soft == resource.RLIM_INFINITY:
        return _MAX_OPEN_FILES
    return max(1, min(_MAX_OPEN_FILES, soft // 4))


def _reopen(file: Path, identity: tuple[int, int]) -> BinaryIO | None:
    """`file` opened again when it is still the file that was read, else None."""
    try:
        f = open(file, "rb")  # noqa: SIM115 - closed by the caller
    except (FileNotFoundError, PermissionError):
        return None
    st = os.fstat(f.fileno())
    if (st.st_dev, st.st_ino) != identity:
        f.close()
        return None
    return f


def tail_jsonl(path: Path, count: int, stats: ReadStats,
               offsets: dict[Path, Position] | None = None) -> list[bytes]:
    """The last `count` lines by ``ts``; fills `offsets` with where each file was read to.

    Every file is read (one at a time, keeping only the newest `count`): an event's ``ts``
    is the caller's, not the write time, so a file last written long ago may still hold
    the newest events (a clock ahead, a replayed or scheduled event).
    """
    files = list(reversed(event_files(path)))
    # A min-heap of the newest `count` by (ts, read order): a file is streamed line by line,
    # never read whole, so `tail -n 10` of a file of gigabytes (a regular file at the
    # configured path is never rotated) holds ten lines, not the file.
    found: list[tuple[float, int, bytes]] = []
    order = 0
    for file in files:
        if not count:  # nothing to print: only where following starts
            _mark_end(file, offsets, stats)
            continue
        f = _open_counted(file, stats)
        if f is None:
            continue
        with f:
            st = os.fstat(f.fileno())
            progress = [0, 0]
            for _, line in _scan(f, stats, progress):
                event = _decode(line, stats)
                if event is None:
                    continue
                item = (_ts(event), order, line)
                order += 1
                if len(found) < count:
                    heapq.heappush(found, item)
                elif item[0] >= found[0][0]:  # among equal ts, the later read is kept
                    heapq.heapreplace(found, item)
            if offsets is not None:
                end, searched = progress
                mark = os.pread(f.fileno(), min(end, _MARK_BYTES),
                                end - min(end, _MARK_BYTES))
                # How far the unterminated last line was looked through goes with it: the
                # first poll would otherwise scan a huge one from its start once more.
                offsets[file] = ((st.st_dev, st.st_ino), end, mark,
                                 searched if searched > end else 0)
    return [line for _, _, line in sorted(found)]


def _mark_end(path: Path, offsets: dict[Path, Position] | None, stats: ReadStats) -> None:
    """Record in `offsets` that `path` was read to just after its last newline.

    The last newline is looked for backwards over at most ``MAX_LINE_BYTES`` + 1 bytes: a
    last line that long, unterminated (a foreign file, a writer gone mad), is skipped and
    counted once its end arrives whatever came before it, so reading gigabytes back to its
    start would tell nothing more and keep ``tail -n 0 --follow`` silent for minutes.
    """
    if offsets is None:
        return
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = end = f.seek(0, os.SEEK_END)
            floor = max(0, size - (MAX_LINE_BYTES + 1))
            searched = 0
            while end > floor:
                start = max(floor, end - _READ_BLOCK)
                f.seek(start)
                block = f.read(end - start)
                found = block.rfind(b"\n")
                if found >= 0:
                    end = start + found + 1
                    break
                end = start
            else:
                if floor:
                    # Not after a newline, but the line through it is over-long already:
                    # _read_lines skips to its end (counted) without reading it, since no
                    # newline is known before `size`.
                    searched = size
            mark = os.pread(f.fileno(), min(end, _MARK_BYTES), end - min(end, _MARK_BYTES))
    except FileNotFoundError:
        return
    except PermissionError as exc:
        stats.skip_file(path, exc)
        return
    stats.files_read += 1
    offsets[path] = ((st.st_dev, st.st_ino), end, mark, searched)


def follow_jsonl(path: Path, offsets: dict[Path, Position], stats: ReadStats) -> list[bytes]:
    """Events written since `offsets` (updated in place), oldest first by ``ts``."""
    return follow_jsonl_batch(path, offsets, stats)[0]


def follow_jsonl_batch(path: Path, offsets: dict[Path, Position],
                       stats: ReadStats) -> tuple[list[bytes], bool]:
    """As :func:`follow_jsonl`, reading a bounded amount of each file; True when a file
    may hold more already (poll again at once)."""
    new: list[tuple[float, bytes]] = []
    behind = False
    current = event_files(path)
    for file in current:
        lines, position, more = _read_lines(file, offsets.get(file), stats)
        behind = behind or more
        if position is not None:
            offsets[file] = position
        for line in lines:  # what query and tail skip and count, following does too
            event = _decode(line, stats)
            if event is not None:
                new.append((_ts(event), line))
    for gone in set(offsets) - set(current):
        del offsets[gone]
    # Several workers' files are read one after another: merged, as query and tail are.
    new.sort(key=lambda item: item[0])
    return [line for _, line in new], behind
