"""The shared directory of multi-worker mode: who wrote what, reading it, folding the dead.

Files in the directory (anything else there is ignored):

- ``worker-<pid>-<start>.snapshot``: the complete state of one live (or not yet folded)
  process; ``start`` is its start time in centiseconds, so a reused pid is a new name.
- ``archive.snapshot``: the final state of every dead worker folded into one, plus the
  names of the snapshots folded in but possibly not yet deleted.
- ``<name>.tmp-<pid>-<start>``: a write in progress (renamed over ``<name>`` when done);
  one left by a writer that died is deleted by the next fold.
- ``.fold.lock``: ``flock``-ed by the one process folding at a time.

Every file is replaced with ``os.replace``, so a reader sees an old or a new version,
never half of one. Folding writes the archive (listing the folded names) before it
deletes their snapshots, and readers skip snapshots the archive lists, so readers need no
lock: a reader that lists a snapshot, reads an archive without it and then finds the
snapshot gone has raced a fold, and reads again.

>>> import tempfile
>>> directory = SnapshotDirectory(tempfile.mkdtemp())
>>> directory.read_view(now=0.0).states
[]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psutil

from inferwatch import faults
from inferwatch.core.state import ModelState
from inferwatch.multiproc.merge import MergedView, merge_view
from inferwatch.multiproc.snapshot_format import (
    RawSnapshot,
    Snapshot,
    SnapshotError,
    decode,
    encode,
    exact_models,
    model_dict,
)

ARCHIVE = "archive.snapshot"
LOCK = ".fold.lock"
_WORKER = re.compile(r"worker-(\d+)-(\d+)\.snapshot")
_TEMP = re.compile(r"(?:worker-\d+-\d+|archive)\.snapshot\.tmp-(\d+)-(\d+)")
CORRUPT_ARCHIVE = "archive.snapshot.corrupt"
# The same process's start time read twice can differ by a second when the clock is
# stepped (psutil adds the boot time, which moves with it); a reused pid is never that quick.
START_TOLERANCE_CENTISECONDS = 200
READ_ATTEMPTS = 5


@dataclass(frozen=True)
class WorkerId:
    """A process, told apart from a later one that reuses its pid by its start time.

    >>> WorkerId.current().alive()
    True
    >>> WorkerId.parse(WorkerId(12, 345).name)
    WorkerId(pid=12, start=345)
    """

    pid: int
    start: int  # process start time, centiseconds since the epoch

    @classmethod
    def current(cls) -> WorkerId:
        return cls(os.getpid(), _start_of(psutil.Process()))

    @classmethod
    def parse(cls, name: str) -> WorkerId | None:
        match = _WORKER.fullmatch(name)
        return cls(int(match[1]), int(match[2])) if match else None

    @property
    def name(self) -> str:
        return f"worker-{self.pid}-{self.start}.snapshot"

    def alive(self) -> bool:
        """Whether this very process still runs (a zombie has stopped: it counts as dead)."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(_start_of(process) - self.start) <= START_TOLERANCE_CENTISECONDS
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:
            return True  # it exists; never fold what might still be writing


def _start_of(process: psutil.Process) -> int:
    return round(process.create_time() * 100)


def _temp_owner(name: str) -> WorkerId | None:
    match = _TEMP.fullmatch(name)
    return WorkerId(int(match[1]), int(match[2])) if match else None


class SnapshotDirectory:
    """Reads, writes and folds the snapshots in one directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        # name -> (stat key, decoded): unchanged files are not read again, and a file that
        # turns out damaged is replaced by its last good version for that scrape.
        self._cache: dict[str, tuple[tuple[int, int, int], RawSnapshot]] = {}

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # --- writing ------------------------------------------------------------------------
    def write(self, name: str, data: bytes, owner: WorkerId) -> None:
        """Replace `name` with `data` atomically; raises OSError (the old file stays)."""
        temp = self._file(f"{name}.tmp-{owner.pid}-{owner.start}")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
            os.replace(temp, self._file(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    # --- reading ------------------------------------------------------------------------
    def read_raws(self) -> list[RawSnapshot]:
        """The archive and every snapshot not yet folded into it, as one consistent set."""
        raws: list[RawSnapshot] = []
        for _ in range(READ_ATTEMPTS):
            names = self._names()
            raws, complete = self._read_consistent(names)
            if complete:
                self._cache = {k: v for k, v in self._cache.items() if k in names}
                return raws
        faults.record("multiproc_read")  # folds kept racing: serve what was read
        return raws

    def _names(self) -> set[str]:
        return {name for name in os.listdir(self.path)
                if name == ARCHIVE or _WORKER.fullmatch(name)}

    def _read_consistent(self, names: set[str]) -> tuple[list[RawSnapshot], bool]:
        raws: list[RawSnapshot] = []
        folded: set[str] = set()
        if ARCHIVE in names:
            archive = self._load(ARCHIVE)
            if archive is _VANISHED:
                return raws, False
            if archive is not None:
                raws.append(archive)
                folded = set(archive.folded)
        for name in sorted(names - folded - {ARCHIVE}):
            raw = self._load(name)
            if raw is _VANISHED:
                return raws, False  # folded since we listed: the archive we read is stale
            if raw is not None:
                raws.append(raw)
        return raws, True

    def _load(self, name: str) -> RawSnapshot | None:
        try:
            with open(self._file(name), "rb") as handle:
                stat = os.fstat(handle.fileno())
                key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                cached = self._cache.get(name)
                if cached is not None and cached[0] == key:
                    return cached[1]
                data = handle.read()
        except FileNotFoundError:
            return _VANISHED
        except OSError as exc:
            faults.record("multiproc_read", exc)
            return self._last_good(name)
        try:
            raw = decode(data)
        except SnapshotError as exc:
            faults.record("multiproc_read", exc)
            return self._last_good(name)
        self._cache[name] = (key, raw)
        return raw

    def _last_good(self, name: str) -> RawSnapshot | None:
        cached = self._cache.get(name)
        return None if cached is None else cached[1]

    def read_view(self, now: float) -> MergedView:
        """Everything in the directory merged: what ``/metrics`` serves in this mode."""
        return merge_view(self.read_raws(), now,
                          on_error=lambda exc: faults.record("multiproc_read", exc))

    # --- folding ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _fold_lock(self, timeout: float) -> Iterator[bool]:
        fd = os.open(self._file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def fold(self, me: WorkerId, *, also: Iterable[str] = (), timeout: float = 0.0,
             now: float | None = None) -> list[str]:
        """Fold the snapshots of dead workers (and the names in `also`) into the archive.

        Deletes temp files their dead writers left. Returns the names folded; an empty
        list when nothing was dead or another process holds the fold lock past `timeout`.
        """
        also = set(also)
        with self._fold_lock(timeout) as locked:
            if not locked:
                return []
            entries = os.listdir(self.path)
            orphans = [name for name in entries
                       if (owner := _temp_owner(name)) is not None and owner != me
                       and not owner.alive()]
            dead = sorted(name for name in entries
                          if (worker := WorkerId.parse(name)) is not None
                          and (name in also or not worker.alive()))
            if dead:
                self._fold_locked(me, dead, time.time() if now is None else now)
            for name in orphans:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(name))
            return dead

    def _fold_locked(self, me: WorkerId, dead: list[str], now: float) -> None:
        archive, archived_states = self._read_archive()
        already = set(archive.folded)
        states = {state.key: state for state in archived_states}
        for name in dead:
            if name in already:
                continue  # folded by a fold that died before deleting it
            try:
                with open(self._file(name), "rb") as handle:
                    raw = decode(handle.read())
                models = exact_models(raw)
            except (OSError, SnapshotError) as exc:
                faults.record("multiproc_fold", exc)  # unreadable: its counts are lost
                continue
            for state in models:
                state.gauges.clear()  # a dead process has nothing in flight
                target = states.get(state.key)
                if target is None:
                    states[state.key] = state
                    continue
                try:
                    target.merge(state)
                except ValueError as exc:  # other buckets than the archive's (a rollout)
                    faults.record("multiproc_fold", exc)
            for field in ("internal_errors", "overflow", "events_dropped"):
                _add(getattr(archive, field), raw.header.get(field))
        for state in states.values():
            for series in state.summaries.values():
                for summary in series.values():
                    summary.sketch.window(now)  # drops expired age buckets: bounded archive
        remaining = {name for name in os.listdir(self.path) if name in already}
        archive.folded = sorted(remaining | set(dead))
        archive.models = [model_dict(state) for state in states.values()]
        archive.written_at = now
        self.write(ARCHIVE, encode(archive), me)
        for name in dead:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(name))

    def _read_archive(self) -> tuple[Snapshot, list[ModelState]]:
        """The archive's process counters and folded names, and its model states."""
        try:
            with open(self._file(ARCHIVE), "rb") as handle:
                raw = decode(handle.read())
            archive = Snapshot(folded=raw.folded)
            states = exact_models(raw)
            for field in ("internal_errors", "overflow", "events_dropped"):
                _add(getattr(archive, field), raw.header.get(field))
            return archive, states
        except FileNotFoundError:
            return Snapshot(), []
        except (OSError, SnapshotError) as exc:
            # Keeping a damaged archive would stop every later fold; its counts restart.
            faults.record("multiproc_archive", exc)
            with contextlib.suppress(OSError):
                os.replace(self._file(ARCHIVE), self._file(CORRUPT_ARCHIVE))
            return Snapshot(), []

    def clear(self) -> int:
        """Delete every inferwatch file here (before a server starts); returns how many."""
        removed = 0
        for name in os.listdir(self.path):
            if name in (ARCHIVE, CORRUPT_ARCHIVE, LOCK) or _WORKER.fullmatch(name) \
                    or _TEMP.fullmatch(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(name))
                    removed += 1
        self._cache.clear()
        return removed


_VANISHED = RawSnapshot({}, None)  # type: ignore[arg-type]


def _add(total: dict[str, float], counts: object) -> None:
    if isinstance(counts, dict):
        for name, value in counts.items():
            total[str(name)] = total.get(str(name), 0) + float(value)
