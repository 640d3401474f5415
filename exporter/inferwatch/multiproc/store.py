"""The shared directory of multi-worker mode: who wrote what, reading it, folding the dead.

Files in the directory (anything else there is ignored):

- ``worker-<pid>-<start>-<boot>.snapshot``: the complete state of one live (or not yet
  folded) process; ``start`` is its start time in centiseconds (on Linux counted from
  boot, so a stepped clock does not change it), so a reused pid is a new name; ``boot``
  is the kernel's boot id (Linux), so a directory that survives a reboot never has a
  previous boot's worker taken for a live one of this boot with the same pid and start.
  Without a boot id (other systems, or files of releases before it) the name is
  ``worker-<pid>-<start>.snapshot``, read and judged by pid and start alone. Releases of
  snapshot format 1 gave the wall-clock start there on Linux too: such a start is judged
  as one (worker_id.EPOCH_START_CENTISECONDS), so a live old worker is never taken for
  dead. A file of another format is skipped, counted once as a ``multiproc_read`` fault,
  and deleted by a fold only once its writer has exited.
- ``archive.snapshot``: the final state of every dead worker folded into one, plus the
  names of the snapshots folded in but possibly not yet deleted.
- ``<name>.tmp-<pid>-<start>``: a write in progress (renamed over ``<name>`` when done);
  one left by a writer that died is deleted by the next fold.
- ``.fold.lock``: ``flock``-ed by the one process folding at a time (private to the
  workers' user, see fold_lock.py).

Every file is replaced with ``os.replace``, so a reader sees an old or a new version,
never half of one. Anyone able to write to the directory can put anything there, so every
entry is opened with ``O_NOFOLLOW | O_NONBLOCK``, read only when ``fstat`` says it is a
regular file owned by this process's user or the directory's owner, and never past the
largest size the format allows; what is skipped (and what a fold cannot delete) is counted
by reason in ``inferwatch_multiproc_files_skipped_total``.

Folding writes the archive (listing the folded names) before it deletes their snapshots,
and readers skip snapshots the archive lists, so readers need no lock: a reader that
lists a snapshot, reads an archive without it and then finds the snapshot gone has raced
a fold, and reads again.

>>> import tempfile
>>> directory = SnapshotDirectory(tempfile.mkdtemp())
>>> directory.read_view(now=0.0).states
[]
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterable

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

from inferwatch import faults
from inferwatch.core.state import ModelState
from inferwatch.multiproc.fold_lock import LOCK as LOCK  # where worker.py looks for it
from inferwatch.multiproc.fold_lock import FoldLock
from inferwatch.multiproc.merge import MergedView, merge_model, merge_view
from inferwatch.multiproc.merged_caps import cap_state, capped_values
from inferwatch.multiproc.reference_choice import OTHER_REFERENCE, settle_drift
from inferwatch.multiproc.safe_read import SKIP_REASONS, Skipped, read_entry
from inferwatch.multiproc.snapshot_format import (
    PROCESS_COUNTERS,
    OtherFormat,
    RawSnapshot,
    Snapshot,
    SnapshotError,
    decode,
    encode,
    exact_models,
    model_dict,
)
from inferwatch.multiproc.worker_id import (
    WORKER,
    WorkerId,
    alive,
    temp_owner,
    worker_alive,
)
from inferwatch.multiproc.worker_meta import meta_of

ARCHIVE = "archive.snapshot"
CORRUPT_ARCHIVE = "archive.snapshot.corrupt"
# Model versions kept in the archive that no live worker serves: a server redeployed with a
# new version every hour would otherwise carry every version it ever ran until a clear.
# The least recently folded go first; a version a live worker serves is never dropped
# (its sum would fall, which Prometheus reads as a reset).
MAX_ARCHIVED_VERSIONS = 64
READ_ATTEMPTS = 5
# A snapshot written this recently has a live writer (workers rewrite theirs at least every
# worker.REFRESH_SECONDS): only an older one is looked up in /proc.
RECENT_WRITE_SECONDS = 60.0
# How long a reader that folds keep racing waits to hold them off (a fold takes milliseconds).
LOCKED_READ_TIMEOUT_SECONDS = 2.0
# A fold takes milliseconds; one stuck longer must not stop a server from starting.
CLEAR_LOCK_TIMEOUT_SECONDS = 5.0
# How far ahead of the reader's (or folder's) clock a snapshot's stamp is still believed: a
# wall clock stepped back leaves live workers' windows ahead by the step (see _view_time),
# but a stamp further ahead is a wrong clock or a damaged file, and taken as it was it
# moved every merged window (and, through the archive, every later fold) past all the data.
MAX_CLOCK_LEAD_SECONDS = 86400.0
# How far a live worker's stamp may lie ahead of the median live stamp and still move the
# merged view (see _view_time): live workers rewrite their files at least every
# worker.REFRESH_SECONDS (30 s), so after a clock step their stamps stay that close.
MAX_STAMP_SPREAD_SECONDS = 300.0
# Errors that pass (descriptors or memory short, a disk hiccup): the file is as good as it was.
PASSING_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS,
                            errno.EIO, errno.EAGAIN, errno.EINTR})

# A snapshot this process may not open (the workers' umask 077, the exporter another user):
# skipped like another user's file, but said, since only the workers' umask can cure it.
UNREADABLE = "unreadable"

log = logging.getLogger("inferwatch.multiproc")

_skipped_lock = threading.Lock()
_skipped = dict.fromkeys((*SKIP_REASONS, UNREADABLE), 0)


def skipped_counts() -> dict[str, int]:
    """Directory entries this process skipped, by reason (every reason present).

    >>> set(skipped_counts()) == {*SKIP_REASONS, UNREADABLE}
    True
    """
    # No lock: copying a dict of str to int is atomic under the GIL, and a forked child's
    # hooks (the registry's, registered before this module's) read it before the lock
    # is renewed.
    return dict(_skipped)


class DirectoryUnreadable(OSError):
    """The directory itself cannot be listed (gone, not a directory, permission denied):
    a read of it must fail rather than serve a view without every worker's counts."""


def _count_skip(reason: str, count: int = 1) -> None:
    with _skipped_lock:
        _skipped[reason] += count


def _reset_after_fork() -> None:
    global _skipped_lock
    _skipped_lock = threading.Lock()
    # A scrape in another thread at fork time held its directory's read lock for good.
    for directory in list(_directories):
        directory._read_lock = threading.Lock()
        directory._other_format_lock = threading.Lock()


_directories: weakref.WeakSet[SnapshotDirectory] = weakref.WeakSet()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class SnapshotDirectory:
    """Reads, writes and folds the snapshots in one directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Whose files are read: this process's user, and the directory's owner (the
        # workers' user, when the exporter reads as another one), as of the last read.
        self.trusted_uids = frozenset({os.geteuid()})
        self._fold_lock = FoldLock(path, self.trusted_uids, count_skip=_count_skip)
        self._trust_current_owner()
        # Names of the files found unreadable (warned once each), and how many of the
        # files of the last read could not be opened, of how many.
        self._said_unreadable: set[str] = set()
        self._unopened = (0, 0)
        # name -> (stat key, decoded): unchanged files are not read again, and a file that
        # turns out damaged is replaced by its last good version for that scrape.
        self._cache: dict[str, tuple[tuple[int, int, int], RawSnapshot]] = {}
        # name -> stat key of a version refused (damaged, of another format): counted once,
        # not read and decoded again on every scrape while it stays as it is.
        self._refused: dict[str, tuple[int, int, int]] = {}
        # name -> stat key of a version of another format (another release's, during an
        # upgrade): counted once as a read fault, by whichever of a scrape or a fold meets
        # it first. Its own lock: folds note them too, and a fold never waits on a scrape.
        self._other_format: dict[str, tuple[int, int, int]] = {}
        self._other_format_lock = threading.Lock()
        # Concurrent scrapes of one process (gthread workers, two Prometheus servers) share
        # the caches: one pruning them while another adds an entry failed its scrape.
        self._read_lock = threading.Lock()
        _directories.add(self)

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _trust_current_owner(self) -> None:
        """Trust the directory's owner as it is now, not as it was when this process
        started: the app's entrypoint may chown the directory after the exporter started
        (docs/multiprocess.md, step 1), and every worker's file was then refused as another
        user's for as long as the exporter ran. One stat a read or fold."""
        try:
            owner = os.stat(self.path).st_uid
        except OSError:
            return  # trusted as at the last look; the read itself will say what is wrong
        trusted = frozenset({os.geteuid(), owner})
        if trusted != self.trusted_uids:
            self.trusted_uids = trusted
            self._fold_lock.trusted_uids = trusted

    def nothing_readable(self) -> bool:
        """Whether the last read could open none of the files it found (at least one)."""
        unopened, found = self._unopened
        return 0 < unopened == found

    # --- writing ------------------------------------------------------------------------
    def holds(self, name: str) -> bool:
        """Whether the snapshot `name` is in the directory."""
        return os.path.lexists(self._file(name))

    def write(self, name: str, data: bytes, owner: WorkerId) -> None:
        """Replace `name` with `data` atomically; raises OSError (the old file stays)."""
        temp = self._file(f"{name}.tmp-{owner.pid}-{owner.start}")
        if len(data) > _file_size_limit():
            # Writing past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills the
            # process: only Python run as a program ignores it, an embedding server
            # (mod_wsgi) may not. A snapshot that cannot fit is a failed write, never a death.
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), temp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)  # a link or FIFO planted under our temp name is not followed
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
            with open(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, self._file(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    # --- reading ------------------------------------------------------------------------
    def read_raws(self, own: tuple[str, RawSnapshot] | None = None,
                  dead: set[int] | None = None) -> list[RawSnapshot]:
        """The archive and every snapshot not yet folded into it, as one consistent set.

        `own` replaces one snapshot by a version in memory: a process that cannot write
        its file still serves its own current counts. `dead`, when given, receives the
        ``id()`` of the archive and of each snapshot whose writer has exited.
        """
        with self._read_lock:
            self._trust_current_owner()
            raws: list[RawSnapshot] = []
            for _ in range(READ_ATTEMPTS):
                names = self._names()
                if dead is not None:
                    dead.clear()
                raws, complete = self._read_consistent(names, own, dead)
                if complete:
                    self._cache = {k: v for k, v in self._cache.items() if k in names}
                    self._refused = {k: v for k, v in self._refused.items() if k in names}
                    self._forget_other_formats(names)
                    self._said_unreadable &= names
                    return raws
            # Folds kept racing this reader (many workers recycled at once): a partial read
            # lacks what they folded, a drop Prometheus takes for a reset. One more read with
            # folds held off is whole; without the lock, serve what was read.
            with self._fold_lock.shared(LOCKED_READ_TIMEOUT_SECONDS) as locked:
                if locked:
                    names = self._names()
                    if dead is not None:
                        dead.clear()
                    raws, complete = self._read_consistent(names, own, dead)
                    if complete:
                        return raws
            faults.record("multiproc_read")
            return raws

    def _names(self) -> set[str]:
        try:
            entries = os.listdir(self.path)
        except OSError as exc:
            # Removed, replaced by a file, or no longer readable: no file of any worker can
            # be read, and a view of none would serve sums that dropped to nothing.
            raise DirectoryUnreadable(exc.errno, exc.strerror, self.path) from exc
        return {name for name in entries if name == ARCHIVE or WORKER.fullmatch(name)}

    def _read_consistent(self, names: set[str], own: tuple[str, RawSnapshot] | None = None,
                         dead: set[int] | None = None) -> tuple[list[RawSnapshot], bool]:
        raws: list[RawSnapshot] = []
        if own is not None:
            names = names - {own[0]}
            raws.append(own[1])
        self._unopened = (0, 0)
        folded: set[str] = set()
        if ARCHIVE in names:
            archive = self._load(ARCHIVE)
            if archive is _VANISHED:
                return raws, False
            if archive is not None:
                raws.append(archive)
                folded = set(archive.folded)
                if dead is not None:
                    dead.add(id(archive))  # the final states of exited workers
        stats: dict[int, tuple[str, int] | None] = {}
        for name in sorted(names - folded - {ARCHIVE}):
            raw = self._load(name)
            if raw is _VANISHED:
                return raws, False  # folded since we listed: the archive we read is stale
            if raw is not None:
                raws.append(raw)
                if dead is not None and not self._written_lately(name) \
                        and not alive(name, stats):
                    dead.add(id(raw))
        return raws, True

    def _written_lately(self, name: str) -> bool:
        """Whether the snapshot `name` was written within RECENT_WRITE_SECONDS: a live
        worker rewrites its file at least every REFRESH_SECONDS, so its writer lives (or
        died since, and its gauges go at a later scrape); asking /proc costs about 30 us a
        file, on every scrape."""
        cached = self._cache.get(name)
        if cached is None:
            return False
        # Written "in the future": the clock was stepped back since, and the file's age
        # says nothing; a dead writer's gauges would show until the clock caught up.
        return 0.0 <= time.time() - cached[0][1] / 1e9 < RECENT_WRITE_SECONDS

    def _load(self, name: str) -> RawSnapshot | None:
        unopened, found = self._unopened
        self._unopened = (unopened, found + 1)
        cached = self._cache.get(name)
        refused = self._refused.get(name)
        known = refused if refused is not None else (None if cached is None else cached[0])
        try:
            data, key = read_entry(self._file(name), self.trusted_uids, known)
            if data is None:  # as it was when last read: decoded, or refused
                return self._last_good(name) if refused is not None else cached[1]  # type: ignore[index]
        except FileNotFoundError:
            return _VANISHED
        except Skipped as skipped:
            _count_skip(skipped.reason)
            return self._last_good(name)
        except PermissionError:  # EACCES, EPERM
            self._skip_unreadable(name)
            return self._last_good(name)
        except OSError as exc:
            if exc.errno in PASSING_ERRNOS and (name == ARCHIVE or name not in self._cache):
                # Without this file (or with an archive from before the latest fold, whose
                # folded snapshots are gone) the sums would drop below the last scrape's,
                # which Prometheus reads as a reset: fail this read, the next one recovers.
                raise
            faults.record("multiproc_read", exc)
            return self._last_good(name)
        try:
            raw = decode(data)
        except OtherFormat as exc:
            self._note_other_format(name, key, exc)
            self._refused[name] = key
            return self._last_good(name)
        except SnapshotError as exc:
            faults.record("multiproc_read", exc)
            self._refused[name] = key
            return self._last_good(name)
        self._refused.pop(name, None)
        self._cache[name] = (key, raw)
        return raw

    def _note_other_format(self, name: str, key: tuple[int, int, int],
                           exc: OtherFormat) -> None:
        """Count a file of another format as a read fault, once per version of it: it is no
        fault of the fold, which skips it (or, its writer gone, deletes it)."""
        with self._other_format_lock:
            if self._other_format.get(name) == key:
                return
            self._other_format[name] = key
        faults.record("multiproc_read", exc)

    def _forget_other_formats(self, names: Iterable[str]) -> None:
        """Forget the files of another format no longer among `names` (the directory's)."""
        with self._other_format_lock:
            kept = set(names)
            self._other_format = {k: v for k, v in self._other_format.items() if k in kept}

    def _skip_unreadable(self, name: str) -> None:
        """Count a file this process may not open, and say once what cures it."""
        with contextlib.suppress(OSError):
            if os.lstat(self._file(name)).st_uid not in self.trusted_uids:
                # Refused for its owner before its mode matters, as if it were readable.
                _count_skip("foreign_owner")
                return
        _count_skip(UNREADABLE)
        unopened, found = self._unopened
        self._unopened = (unopened + 1, found)
        if name not in self._said_unreadable:
            self._said_unreadable.add(name)
            log.warning("%s: permission denied to this process (uid %d), so it is skipped "
                        "and counted in inferwatch_multiproc_files_skipped_total"
                        "{reason=\"unreadable\"}; start the workers with umask 022, or "
                        "027 with this user in their group, so that their files can be "
                        "read", self._file(name), os.geteuid())

    def _last_good(self, name: str) -> RawSnapshot | None:
        cached = self._cache.get(name)
        return None if cached is None else cached[1]

    def read_view(self, now: float, own: tuple[str, RawSnapshot] | None = None) -> MergedView:
        """Everything in the directory merged: what ``/metrics`` serves in this mode.

        Gauges of workers that have exited are left out: a killed worker's in-flight calls
        ended with it, and a reader that never folds (the exporter, or every worker gone)
        would otherwise show them forever. Their counters still add up, and their identity
        (info labels) yields to that of the live workers.

        Raises DirectoryUnreadable when the directory cannot be listed, and OSError for a
        passing error reading the archive: either view would lack counts it served before.
        """
        dead: set[int] = set()
        raws = self.read_raws(own, dead)
        view = merge_view(raws, _view_time(now, raws, dead),
                          on_error=lambda exc: faults.record("multiproc_read", exc),
                          without_gauges=dead)
        _count_skip(OTHER_REFERENCE, view.other_reference)  # a replaced reference: no fault
        return view

    # --- folding ------------------------------------------------------------------------
    def fold(self, me: WorkerId, *, also: Iterable[str] = (), timeout: float = 0.0,
             now: float | None = None) -> list[str]:
        """Fold the snapshots of dead workers (and the names in `also`) into the archive.

        Deletes temp files their dead writers left. Returns the names folded; an empty
        list when nothing was dead or another process holds the fold lock past `timeout`.
        """
        also = set(also)
        self._trust_current_owner()
        with self._fold_lock.exclusive(timeout) as locked:
            if not locked:
                return []
            entries = os.listdir(self.path)
            self._forget_other_formats(entries)
            # Every worker folds about once a second: one /proc lookup per pid per fold
            # (not one per file), and none for this process itself.
            stats: dict[int, tuple[str, int] | None] = {}
            # Deleted first: on a full disk they hold the space the archive needs, and a
            # fold that fails writing it would otherwise never get to them.
            for name in entries:
                if (owner := temp_owner(name)) is not None and owner != me \
                        and not worker_alive(owner, stats):
                    self._remove(name)
            dead = sorted(name for name in entries
                          if (worker := WorkerId.parse(name)) is not None
                          and (name in also
                               or (worker != me and not worker_alive(worker, stats))))
            if dead:
                dead = self._fold_locked(me, dead, time.time() if now is None else now,
                                         live=[name for name in entries
                                               if WORKER.fullmatch(name) and name not in dead])
            return dead

    def _remove(self, name: str) -> None:
        """Delete one entry; one that cannot go (a directory, no permission) is counted."""
        try:
            os.unlink(self._file(name))
        except FileNotFoundError:
            pass
        except OSError:
            _count_skip("undeletable")

    def _fold_locked(self, me: WorkerId, dead: list[str], now: float,
                     live: Iterable[str] = ()) -> list[str]:
        """Fold `dead` into the archive and delete them; returns those folded (one that
        could not be read for a passing reason stays for the next fold). `live` are the
        other snapshots: their model versions stay in the archive whatever its size."""
        archive, archived_states = self._read_archive()
        already = set(archive.folded)
        if already.issuperset(dead):
            # Folded before, not deleted (a fold died, or an entry cannot be removed):
            # delete what can go; rewriting the archive would change nothing.
            for name in dead:
                self._remove(name)
            return dead
        states = {state.key: state for state in archived_states}
        kept: set[str] = set()
        loaded: list[RawSnapshot] = []
        for name in dead:
            if name in already:
                continue  # folded by a fold that died before deleting it
            try:
                data, key = read_entry(self._file(name), self.trusted_uids)
                loaded.append(decode(data))  # type: ignore[arg-type]
            except OtherFormat as exc:
                # Another release's worker, exited: this release cannot read its counts,
                # and no writer will replace the file. Deleted below, and no fold fault.
                self._note_other_format(name, key, exc)
                continue
            except Skipped as skipped:
                _count_skip(skipped.reason)  # not a snapshot: removed below, never read
                continue
            except FileNotFoundError:
                continue  # gone already (a clear): nothing to fold or delete
            except OSError as exc:
                # Out of file descriptors, an I/O error: the file is as good as it was, and
                # readers still count it. Deleting it now would take its counts back.
                faults.record("multiproc_fold", exc)
                kept.add(name)
                continue
            except SnapshotError as exc:
                faults.record("multiproc_fold", exc)  # damaged: its counts are lost
                continue
        # Every stamp known before any window merges: one time for the whole fold.
        now = _fold_time(now, archive.written_at if archive.written_at > 0 else None,
                         [_written_at(raw) for raw in loaded])
        for raw in loaded:
            try:
                models = exact_models(raw)
            except SnapshotError as exc:
                faults.record("multiproc_fold", exc)  # damaged: its counts are lost
                continue
            for state in models:
                state.gauges.clear()  # a dead process has nothing in flight
                # Popped and put back last: the archive's order is that of the latest
                # fold of each version, which decides what goes past MAX_ARCHIVED_VERSIONS.
                target = states.pop(state.key, None)
                if target is None:
                    _cap(state)
                    states[state.key] = state
                else:  # a series laid out otherwise (a rollout) is skipped and counted
                    _count_skip(OTHER_REFERENCE, min(1, settle_drift(target, state, now)))
                    info = state.info
                    kept_values = capped_values(target)
                    # At the fold's time: a dead worker whose clock ran a window ahead
                    # must not replace the archive's drift rows still in the window.
                    merge_model(target, state,
                                lambda exc: faults.record("multiproc_fold", exc), now=now)
                    if target.extras.get("drift") is not None:
                        # Loaded only for a model with a reference (the exporter stays free
                        # of it): each reload's old features would grow the archive for good.
                        from inferwatch.quality.tracker import retire_feature_series

                        retire_feature_series(target)
                    target.info = _newer_info(target.info, info)
                    # What the archive keeps stays kept: recycled workers each bring new
                    # values, and the union of them all would grow the archive for good.
                    _cap(target, kept_values)
                    states[state.key] = target
            for field in PROCESS_COUNTERS:
                _add(getattr(archive, field), raw.header.get(field))
        for state in states.values():
            for series in state.summaries.values():
                for summary in series.values():
                    summary.sketch.window(now)  # drops expired age buckets: bounded archive
        if len(states) > MAX_ARCHIVED_VERSIONS:
            # Unread dead files still count in readers' sums, as live ones do.
            self._drop_old_versions(states, [*live, *kept])
        folded = [name for name in dead if name not in kept]
        remaining = {name for name in os.listdir(self.path) if name in already}
        archive.folded = sorted(remaining | set(folded))
        archive.models = [model_dict(state) for state in states.values()]
        archive.written_at = now
        self.write(ARCHIVE, encode(archive), me)
        for name in folded:
            self._remove(name)
        return folded

    def _drop_old_versions(self, states: dict[tuple[str, str], ModelState],
                           live: Iterable[str]) -> None:
        """Drop the least recently folded versions past MAX_ARCHIVED_VERSIONS that no live
        snapshot holds (read only here: an archive rarely grows past the bound)."""
        served: set[tuple[str, str]] = set()
        for name in live:
            try:
                data, _ = read_entry(self._file(name), self.trusted_uids)
                raw = decode(data)  # type: ignore[arg-type]
            except (FileNotFoundError, Skipped, OtherFormat):
                continue  # gone (a clear), or not a snapshot here: readers do not count it
            except (OSError, SnapshotError):
                return  # a live worker's versions unknown: keep every version this time
            if raw.layout is not None:
                served.update(model.key for model in raw.layout.models)
        spare = len(states) - MAX_ARCHIVED_VERSIONS
        for key in [key for key in states if key not in served][:spare]:
            del states[key]

    def _read_archive(self) -> tuple[Snapshot, list[ModelState]]:
        """The archive's process counters and folded names, and its model states."""
        key = (0, 0, 0)
        try:
            data, key = read_entry(self._file(ARCHIVE), self.trusted_uids)
            raw = decode(data)  # type: ignore[arg-type]
            archive = Snapshot(folded=raw.folded, written_at=max(0.0, _written_at(raw)))
            states = exact_models(raw)
            for field in PROCESS_COUNTERS:
                _add(getattr(archive, field), raw.header.get(field))
            return archive, states
        except FileNotFoundError:
            return Snapshot(), []
        except (SnapshotError, Skipped) as exc:
            if isinstance(exc, Skipped):
                _count_skip(exc.reason)
            if isinstance(exc, OtherFormat):
                # Another release's archive (an upgrade): no fault of this one. Set aside
                # as documented, since this release writes its own under the same name.
                self._note_other_format(ARCHIVE, key, exc)
            else:
                # Keeping a damaged archive would stop every later fold; its counts
                # restart. Not so for a passing error (EMFILE, EIO), which raises: the
                # fold waits.
                faults.record("multiproc_archive", exc)
            with contextlib.suppress(OSError):
                os.replace(self._file(ARCHIVE), self._file(CORRUPT_ARCHIVE))
            return Snapshot(), []

    def clear(self, keep_live: bool = True) -> int:
        """Delete every inferwatch file here (before a server starts); returns how many.

        With `keep_live` (the default), snapshots and writes in progress of other processes
        that still run are kept: on gunicorn's USR2 upgrade the new master starts beside the
        old one, whose workers keep publishing, and deleting their files made every counter
        drop and come back. This process's own files go (it publishes again within a
        second). The archive goes either way.

        Waits (a few seconds at most) for a fold in progress: a preloading gunicorn master
        may be folding the previous run's workers, and would write the archive it read back
        after the clear. The lock file stays: deleted while a folder held it, the next
        folder would lock a new file under the same name, and two folds would run at once.
        """
        me = WorkerId.current()
        stats: dict[int, tuple[str, int] | None] = {}
        removed = 0
        with self._fold_lock.exclusive(CLEAR_LOCK_TIMEOUT_SECONDS, create=False):
            for name in os.listdir(self.path):
                if name not in (ARCHIVE, CORRUPT_ARCHIVE):
                    writer = WorkerId.parse(name) or temp_owner(name)
                    if writer is None:
                        continue  # not inferwatch's
                    if keep_live and writer != me and worker_alive(writer, stats):
                        continue
                try:
                    os.unlink(self._file(name))
                    removed += 1
                except FileNotFoundError:
                    pass
                except OSError:
                    _count_skip("undeletable")
        with self._read_lock:
            self._cache.clear()
            self._refused.clear()
        return removed


_VANISHED = RawSnapshot({}, None)  # type: ignore[arg-type]


def _view_time(now: float, raws: Iterable[RawSnapshot], dead: set[int]) -> float:
    """`now`, or the newest time a live writer stamped its snapshot with when that is later,
    leaving out stamps further than MAX_STAMP_SPREAD_SECONDS ahead of the median one.

    After the wall clock steps back, live workers keep their windows going at the monotonic
    pace from where they were (``Monitor.window_time``), and stamp their files so: a reader
    at the stepped wall time would find every bucket "in the future" and serve empty
    quantiles and drift until the clock caught up. A step moves every worker's clock alike,
    so their stamps stay within a refresh of each other. One worker alone far ahead of the
    others (its window time kept from a clock that ran ahead, a damaged file) is the odd one
    out: followed, it moved the view past every other worker's drift and quantile windows,
    which all read as empty. The (lower) median of the live stamps is where most workers
    are; stamps beyond it by more than the spread are left out, and counted.
    """
    # An exited writer's time stopped; it says nothing of the others'.
    stamps = sorted(stamp for raw in raws if id(raw) not in dead
                    if (stamp := _trusted(_written_at(raw), now, "multiproc_read")) > -math.inf)
    if not stamps:
        return now
    bound = stamps[(len(stamps) - 1) // 2] + MAX_STAMP_SPREAD_SECONDS
    at = max(now, max(stamp for stamp in stamps if stamp <= bound))
    if stamps[-1] > at:
        faults.record("multiproc_read")
    return at


def _fold_time(clock: float, archived: float | None, stamps: list[float]) -> float:
    """The time a fold merges windows at: the folder's `clock`, or the archive's stamp
    (`archived`, None without an archive) or a folded snapshot's when later, leaving out
    folded stamps further than MAX_STAMP_SPREAD_SECONDS ahead of the (lower) median of
    these stamps.

    A wall clock stepped back leaves the windows of workers that ran before it ahead of
    the folder's clock: merged at that clock, their buckets would expire as "from the
    future", and the archive be stamped behind what it holds. But one dead worker stamped
    far ahead of the others (a clock that ran ahead, a damaged file; up to a day is
    believed) moved the fold past every window the archive held, which expired, and
    stamped the archive so: every later fold then merged there, and kept no window, until
    the clock caught up. As in :func:`_view_time`, where most stamps are is believed.
    """
    known = [stamp for stamp in (_trusted(stamp, clock, "multiproc_fold") for stamp in stamps)
             if stamp > -math.inf]
    at = clock
    if archived is not None:
        archived = _trusted(archived, clock, "multiproc_fold")
        at = max(at, archived)  # the archive's windows are there already: always followed
        known.append(archived)
    if not known:
        return at
    known.sort()
    bound = known[(len(known) - 1) // 2] + MAX_STAMP_SPREAD_SECONDS
    at = max(at, max(stamp for stamp in known if stamp <= bound))
    if known[-1] > at:
        faults.record("multiproc_fold")
    return at


def _trusted(written: float, now: float, component: str) -> float:
    """`written` (a snapshot's stamp), or `now` + MAX_CLOCK_LEAD_SECONDS when it lies
    further ahead than that (counted as a fault of `component`)."""
    bound = now + MAX_CLOCK_LEAD_SECONDS
    if written > bound:
        faults.record(component)
        return bound
    return written


def _written_at(raw: RawSnapshot) -> float:
    """The time `raw` was stamped with, or -inf where it holds no finite one."""
    written = raw.header.get("written_at")
    if isinstance(written, (int, float)) and not isinstance(written, bool) \
            and math.isfinite(written):
        return float(written)
    return -math.inf


def _file_size_limit() -> float:
    """The largest file this process may write (RLIMIT_FSIZE), in bytes."""
    if resource is None:
        return math.inf
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (OSError, ValueError):
        return math.inf
    return math.inf if soft == resource.RLIM_INFINITY else soft


def _cap(state: ModelState, kept: dict[str, set[str]] | None = None) -> None:
    """Bound `state`'s capped labels at the caps its workers counted under (when known)."""
    meta = meta_of(state.extras)
    if meta is not None and meta.caps:
        cap_state(state, meta.caps, kept)


def _newer_info(archived: dict[str, str], newer: dict[str, str]) -> dict[str, str]:
    """Info labels of a model version folded later (a redeploy changed one) win over the
    archive's, which would otherwise show the first run's for good; a known task stays
    known when the newer worker never saw a prediction ("auto")."""
    merged = {**archived, **newer}
    if newer.get("task") == "auto" and archived.get("task", "auto") != "auto":
        merged["task"] = archived["task"]
    return merged


def _add(total: dict[str, float], counts: object) -> None:
    if isinstance(counts, dict):
        for name, value in counts.items():
            total[str(name)] = total.get(str(name), 0) + float(value)
