"""Multi-worker mode: every worker publishes its state, every ``/metrics`` serves the sum.

Set ``INFERWATCH_MULTIPROC_DIR`` to an existing, writable, otherwise empty directory
before the workers start (gunicorn, ``uvicorn --workers``, pre-fork pools). Each worker's
background drain thread then writes the worker's complete state there at most once a
second, and once more at exit; any worker's ``/metrics`` (and the exporter's ``multiproc``
collector) reads every snapshot and serves the merged view. Dead workers are folded into
one archive, so counters never go backwards and the directory holds one file per live
worker. See docs/multiprocess.md. A shadow's child process (``shadow(mode="process")``) is
no worker: there the directory is ignored, and nothing is published or cleared.

Calls on the request path are unchanged: an append, as in a single process.

>>> import tempfile
>>> from inferwatch.core.registry import Registry
>>> registry = Registry()
>>> publisher = attach(registry, tempfile.mkdtemp())
>>> registry.monitor("fraud", "1").record_call(0.01, 0.3)
>>> registry.drain(); publisher.publish(force=True)
True
>>> view = publisher.directory.read_view(now=0.0)
>>> view.states[0].counters["inferwatch_requests_total"][("ok",)]
1.0
>>> publisher.close()
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import multiprocessing.util
import os
import sys
import tempfile
import threading
import time
import weakref
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from inferwatch import faults
from inferwatch.core.render import events_dropped_counts, loaded_ml_packages, process_families
from inferwatch.core.step_clock import StepSafeClock
from inferwatch.forking import catch_up_after_fork, in_shadow_child
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import (
    ARCHIVE,
    CORRUPT_ARCHIVE,
    LOCK,
    DirectoryUnreadable,
    SnapshotDirectory,
    skipped_counts,
)
from inferwatch.multiproc.worker_id import WORKER, WorkerId, temp_owner
from inferwatch.multiproc.worker_meta import META, WorkerMeta

if TYPE_CHECKING:
    from inferwatch.core.encode import Page
    from inferwatch.core.registry import Registry
    from inferwatch.multiproc.merge import MergedView

ENV_VAR = "INFERWATCH_MULTIPROC_DIR"
PUBLISH_INTERVAL_SECONDS = 1.0
# An idle worker rewrites its unchanged snapshot this often, so its file's age says it lives.
REFRESH_SECONDS = 30.0
EXIT_FOLD_TIMEOUT_SECONDS = 2.0
TICK_SLACK = 0.8
# Dead workers are looked for at most this often by all workers together (the fold lock
# file's mtime says when the last scan began): a scan looks up every worker's pid, and N
# workers each scanning after every drain cost N * N lookups a second.
FOLD_SCAN_SECONDS = 1.0
# The wall clock the scan throttle compares the lock file's mtime with (tests move it).
_now = time.time

log = logging.getLogger("inferwatch.multiproc")
# Every publisher attach() made in this process (and inherited through fork), for
# shutdown(): an app's own registry is published at shutdown as the default one is.
_attached: weakref.WeakSet[Publisher] = weakref.WeakSet()


class MultiprocError(RuntimeError):
    """The multi-worker directory is misconfigured: raised at startup, naming the problem."""


def directory_from_env() -> str | None:
    """The directory named by ``INFERWATCH_MULTIPROC_DIR``, checked; None when unset, and
    in a shadow's child process, which inherits the variable but is no worker.

    >>> import os
    >>> os.environ.pop(ENV_VAR, None) and None
    >>> directory_from_env() is None
    True
    """
    value = os.environ.get(ENV_VAR)
    if value is None or in_shadow_child():
        return None
    return check_directory(value, source=ENV_VAR)


def check_directory(path: str, *, source: str = ENV_VAR, writable: bool = True) -> str:
    """`path` made absolute, or MultiprocError saying why it cannot hold snapshots.

    >>> check_directory("/nonexistent/inferwatch")
    Traceback (most recent call last):
    ...
    inferwatch.multiproc.worker.MultiprocError: \
INFERWATCH_MULTIPROC_DIR='/nonexistent/inferwatch': the directory does not exist; \
create it before the workers start
    """
    where = f"{source}={path!r}"
    _check_is_directory(path, where)
    if writable:
        failure = _write_failure(path)
        if failure is not None:
            raise _unwritable(where, failure) from failure
    elif not os.access(path, os.R_OK | os.X_OK):
        raise MultiprocError(f"{where}: cannot read it")
    return os.path.abspath(path)


def _check_is_directory(path: str, where: str) -> None:
    if not path.strip():
        raise MultiprocError(f"{where}: is empty; set it to a directory or unset it")
    if not os.path.exists(path):
        raise MultiprocError(f"{where}: the directory does not exist; create it before the "
                             "workers start")
    if not os.path.isdir(path):
        raise MultiprocError(f"{where}: is not a directory")


def _write_failure(path: str) -> OSError | None:
    """Why a file cannot be created in `path` now, or None when one can."""
    # Permission bits do not tell the whole story (root, read-only mounts): try it.
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".inferwatch-probe-"):
            pass
    except OSError as exc:
        return exc
    return None


def _unwritable(where: str, failure: OSError) -> MultiprocError:
    return MultiprocError(f"{where}: cannot create files in it ({failure.strerror}); "
                          "every worker must be able to write there")


def _attachable_directory(path: str, *, source: str = ENV_VAR) -> str:
    """`path` made absolute, for a worker to publish to; MultiprocError when it cannot be
    the directory of any server (missing, not a directory), or cannot be written and holds
    no file of inferwatch's (a server that never ran there: a misconfiguration).

    A directory that holds a running server's files and cannot be written now (remounted
    read-only, out of space or inodes) is attached all the same, the failure counted as
    ``multiproc_write``: gunicorn takes a worker that fails to start (one recycled by
    ``--max-requests``, or after a crash) as a reason to stop the whole server. The worker
    publishes once the directory can be written again.
    """
    where = f"{source}={path!r}"
    _check_is_directory(path, where)
    failure = _write_failure(path)
    if failure is not None:
        if not _holds_inferwatch_files(path):
            raise _unwritable(where, failure) from failure
        faults.record("multiproc_write", failure)
        log.warning("%s: cannot create files in it (%s); it holds a running server's files, "
                    "so this worker starts, counts multiproc_write and publishes once the "
                    "directory can be written again", where, failure.strerror)
    return os.path.abspath(path)


def _holds_inferwatch_files(path: str) -> bool:
    """Whether `path` holds a snapshot, the archive, the fold lock or a write in progress."""
    try:
        entries = os.listdir(path)
    except OSError:
        return False  # nothing says a server runs there
    return any(name in (ARCHIVE, CORRUPT_ARCHIVE, LOCK) or WORKER.fullmatch(name)
               or temp_owner(name) is not None for name in entries)


def attach(registry: Registry, directory: str | None = None) -> Publisher:
    """Put `registry` in multi-worker mode, publishing to `directory` (default: the env var).

    Raises MultiprocError when the directory is missing, not a directory, or not writable
    while it holds no file of inferwatch's yet; a running server's directory that cannot be
    written now is attached, counting ``multiproc_write`` (see _attachable_directory).
    Attaching a registry again to the same directory returns its publisher; to another
    directory, it raises MultiprocError.

    In a shadow's child process the registry is left as it is, a single process's, and the
    publisher returned is closed: it writes nothing. The app's module that child imports
    to rebuild the challenger (a warm-up call as it loads) was counted by the worker that
    serves it already.
    """
    if in_shadow_child():
        return _closed_publisher(registry, directory)
    if directory is None:
        directory = os.environ.get(ENV_VAR)
    if directory is None:
        raise MultiprocError(f"{ENV_VAR} is not set and no directory was given")
    path = _attachable_directory(directory)
    current = registry.multiproc
    if current is not None and not current.closed:
        # A second publisher would write the same file name as the first, each with its own
        # exit hook: two writers racing on one snapshot, the older state able to win.
        if _same_directory(current.directory.path, path):
            return current
        raise MultiprocError(f"this registry already publishes to {current.directory.path!r}; "
                             f"it cannot publish to {path!r} as well")
    publisher = Publisher(registry, path)
    registry.multiproc = publisher
    _attached.add(publisher)
    ref = weakref.ref(publisher)
    atexit.register(_close_at_exit, ref)
    # A multiprocessing child (a Pool worker) leaves through os._exit, past atexit: its
    # last calls would never be published. multiprocessing runs its own finalizers there,
    # but clears those it inherited, so each child registers one after it forks.
    multiprocessing.util.register_after_fork(publisher, _close_at_child_exit)
    return publisher


def _closed_publisher(registry: Registry, directory: str | None) -> Publisher:
    """What :func:`attach` returns in a shadow's child: the directory is not checked (the
    child need not be able to write there), and no exit hook is registered."""
    path = directory if directory is not None else os.environ.get(ENV_VAR)
    if path is None:
        raise MultiprocError(f"{ENV_VAR} is not set and no directory was given")
    publisher = Publisher(registry, os.path.abspath(path))
    publisher._closed = True
    return publisher


def _same_directory(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _close_at_exit(ref: weakref.ref[Publisher]) -> None:
    publisher = ref()
    if publisher is not None:
        # A stream still open would be recorded when collected, after the last snapshot.
        _end_open_streams()
        publisher.close()


def _end_open_streams() -> None:
    """End the streams still open as cancelled; none when no model ever streamed."""
    streams = sys.modules.get("inferwatch.core.streams")
    if streams is not None:
        streams.end_open_streams()  # never raises


def _close_at_child_exit(publisher: Publisher) -> None:
    multiprocessing.util.Finalize(None, _close_at_exit, args=(weakref.ref(publisher),),
                                  exitpriority=0)


class Publisher:
    """Publishes one registry's state as this process's snapshot; serves the merged view."""

    def __init__(self, registry: Registry, directory: str,
                 interval: float = PUBLISH_INTERVAL_SECONDS) -> None:
        self._registry = weakref.ref(registry)
        self.directory = SnapshotDirectory(directory)
        self.interval = interval
        self.worker = WorkerId.current()
        self._lock = threading.Lock()
        self._last_publish = -math.inf
        self._last_fingerprint: tuple | None = None
        self._closed = False
        # True while this process's file on disk is behind its state (the last write
        # failed: a read-only or full directory): its own /metrics then merges the state
        # from memory instead, so its counts and the write faults still show.
        self._unpublished = False
        # inferwatch's own fault counts as last written: while the file is behind, only the
        # faults counted since are added to this process's view.
        self._published_errors: dict[str, float] = {}
        # Process-wide counts inherited through fork belong to the parent's snapshot.
        self._baseline: dict[str, dict[str, float]] = {}
        # Where this process's windows are, stepped-back wall clock or not: see _window_now().
        self._clock = StepSafeClock()
        # When this process began laying out series: the latest start's histogram buckets
        # win where workers' differ (worker_meta).
        self._started = time.time()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run: nothing is published any more."""
        return self._closed

    # --- publishing (the drain thread, a scrape, exit) ---------------------------------------
    def tick(self) -> None:
        """What the background drain does after each drain: publish if due, fold the dead."""
        # Ticks come once a drain interval, give or take the thread's wake-up jitter; a tick
        # slightly early must not wait for the next one.
        self.publish(min_interval=self.interval * TICK_SLACK)
        self.fold_dead()

    def publish(self, force: bool = False, min_interval: float | None = None) -> bool:
        """Write this process's snapshot if a second has passed (or `force`). Never raises."""
        # Forked without Python's at-fork hooks (uWSGI's pre-forked workers), it would
        # write its parent's file, under its parent's lock: it becomes a worker first.
        catch_up_after_fork()
        try:
            with self._lock:
                if self._closed:
                    return False
                now = time.monotonic()
                wait = self.interval if min_interval is None else min_interval
                if not force and now - self._last_publish < wait:
                    return False
                return self._publish_locked(now, force)
        except Exception as exc:
            faults.record("multiproc_write", exc)
            return False

    def _publish_locked(self, now: float, force: bool) -> bool:
        registry = self._registry()
        if registry is None:
            return False
        snapshot, key = self._snapshot(registry)
        if not force and key == self._last_fingerprint and not self._unpublished and \
                now - self._last_publish < REFRESH_SECONDS and \
                self.directory.holds(self.worker.name):
            # Nothing changed, and the file is there: a clear_directory() run after this
            # process published (gunicorn --preload's on_starting) must not hide it for 30 s.
            return False
        try:
            self.directory.write(self.worker.name, encode(snapshot), self.worker)
        except BaseException:
            self._unpublished = True
            raise
        self._unpublished = False
        self._published_errors = dict(snapshot.internal_errors)
        self._last_publish, self._last_fingerprint = now, key
        return True

    def _snapshot(self, registry: Registry) -> tuple[Snapshot, tuple]:
        """This process's snapshot now, and a fingerprint telling whether it changed."""
        # Here, not at import: the exporter reads the directory without the hot path.
        from inferwatch.core.monitor_configure import CAP_OPTIONS

        models, fingerprint = [], []
        for monitor in registry.monitors():
            model, mark = monitor.publishable(model_dict)
            model.setdefault("extras", {})[META] = WorkerMeta(
                self._started, {metric: getattr(monitor.settings, option)
                                for metric, option in CAP_OPTIONS.items()}).to_dict()
            models.append(model)
            fingerprint.append(mark)
        counts = self._process_counts(registry)
        key = (tuple(fingerprint), repr(counts))
        snapshot = Snapshot(models=models, written_at=self._window_now(),
                            dependencies=faults.guard("multiproc_write", loaded_ml_packages,
                                                        default={}) or {},
                            **counts)
        return snapshot, key

    def _window_now(self) -> float:
        """The time this process's rolling windows are at, as its monitors keep it
        (``Monitor.window_time``): the wall clock, unless it stepped back. Then the monitors
        go on at the monotonic pace from where their windows were, and a snapshot stamped
        with the stepped clock would have its window row (and every reader's window) end an
        hour before the buckets it holds: the merged quantiles and drift went empty."""
        return self._clock.read(time.time())

    def _fold_time(self) -> float:
        """The time a fold merges windows at: where this process's windows are (the wall
        clock stepped back leaves them ahead of it)."""
        with self._lock:
            return self._window_now()

    def _process_counts(self, registry: Registry) -> dict[str, dict[str, float]]:
        current = {
            "internal_errors": faults.internal_error_counts(),
            "overflow": registry.overflow_counts(),
            "events_dropped": faults.guard("multiproc_write", events_dropped_counts,
                                             default={}) or {},
            "event_values_dropped": faults.guard("multiproc_write", _event_values_dropped,
                                                   default={}) or {},
            "files_skipped": skipped_counts(),
        }
        return {kind: {name: value - self._baseline.get(kind, {}).get(name, 0)
                       for name, value in counts.items()
                       if value - self._baseline.get(kind, {}).get(name, 0) > 0}
                for kind, counts in current.items()}

    def fold_dead(self) -> None:
        """Fold snapshots of dead workers into the archive, unless another process is, or
        one scanned for them within FOLD_SCAN_SECONDS."""
        catch_up_after_fork()  # folding as its parent would take the parent for itself
        try:
            if self._scanned_lately():
                return
            self.directory.fold(self.worker, now=self._fold_time())
        except Exception as exc:
            faults.record("multiproc_fold", exc)

    def _scanned_lately(self) -> bool:
        """Whether any process began a scan for dead workers within FOLD_SCAN_SECONDS;
        when none did, this one marks its own scan as begun now."""
        lock = os.path.join(self.directory.path, LOCK)
        now = _now()
        try:
            last = os.stat(lock, follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return False  # no one has folded here yet: the fold creates it
        # A mark "in the future" (the clock was stepped back) says nothing: scan.
        if 0.0 <= now - last < FOLD_SCAN_SECONDS:
            return True
        # Not marked (another user's lock file): every tick scans, as before.
        with contextlib.suppress(OSError):
            os.utime(lock, (now, now), follow_symlinks=False)
        return False

    # --- the merged view ----------------------------------------------------------------------
    def collect(self) -> list[Metric]:
        """Every worker's metrics merged (this one's state published first if due)."""
        try:
            view, now = self._read()
            return view.families(now)
        except DirectoryUnreadable as exc:
            # No worker's counts can be read: the scrape fails (Prometheus records `up` 0)
            # rather than answer 200 with every model series gone.
            faults.record("multiproc_read", exc)
            raise
        except Exception as exc:
            faults.record("multiproc_read", exc)
            return list(process_families(faults.internal_error_counts(), {}, {}, {}))

    def merged_view(self) -> MergedView:
        """Every worker's states merged, this one's included (what a scrape reads)."""
        return self._read()[0]

    def encode_into(self, page: Page) -> None:
        """What :meth:`collect` gives, written into an exposition page."""
        try:
            view, now = self._read()
            view.encode_into(page, now)
        except DirectoryUnreadable as exc:
            faults.record("multiproc_read", exc)  # the scrape fails, as in collect()
            raise
        except Exception as exc:
            faults.record("multiproc_read", exc)
            page.clear()
            page.clear_process()
            page.add_process(faults.internal_error_counts(), {}, {}, {})

    def _read(self) -> tuple[MergedView, float]:
        """This process's calls drained and published if due, then the directory merged
        (plus the faults this process counted since its file last changed), and the time
        the view is for."""
        registry = self._registry()
        if registry is not None:
            registry.drain()
        self.publish()
        now = time.time()
        # Every worker serves the same files: one serving its unwritten counts from memory
        # would show higher sums than the others, and a scrape answered by another worker
        # next would read a drop, which Prometheus takes for a reset. The faults still show.
        view = self.directory.read_view(now)
        if self._unpublished:
            for component, count in self._unpublished_errors().items():
                view.internal_errors[component] = view.internal_errors.get(component, 0) + count
        return view, now

    def _unpublished_errors(self) -> dict[str, float]:
        """inferwatch's own faults counted here since this process's file was written."""
        registry = self._registry()
        if registry is None:
            return {}
        with self._lock:
            current = self._process_counts(registry)["internal_errors"]
            published = self._published_errors
        return {component: count - published.get(component, 0)
                for component, count in current.items()
                if count - published.get(component, 0) > 0}

    # --- lifecycle ----------------------------------------------------------------------------
    def after_fork(self) -> None:
        """In a forked child: a new identity, and none of the parent's counts.

        The parent keeps publishing what it recorded before the fork; a child that kept
        it too would count it twice.
        """
        self._lock = threading.Lock()
        self.worker = WorkerId.current()
        self._started = time.time()
        self._last_publish = -math.inf
        self._last_fingerprint = None
        # The parent's failed write and what it published are the parent's.
        self._unpublished = False
        self._published_errors = {}
        self.directory = SnapshotDirectory(self.directory.path)
        registry = self._registry()
        if registry is None:
            return
        for monitor in registry.monitors():
            monitor.reset_after_fork()
        self._baseline = {}
        self._baseline = self._process_counts(registry)

    def close(self) -> None:
        """Publish a final snapshot and fold it into the archive (at exit), once.

        Never raises; nothing is published after it.
        """
        catch_up_after_fork()  # as in publish(): never the parent's file, nor its lock
        try:
            registry = self._registry()
            if registry is not None:
                registry.drain()
            with self._lock:
                if self._closed:
                    return
                try:
                    self._publish_locked(time.monotonic(), force=True)
                except Exception as exc:
                    # A full or read-only directory: counted as the write it is; the last
                    # snapshot written is still folded below (or by a live worker later).
                    faults.record("multiproc_write", exc)
                finally:
                    self._closed = True
            self.directory.fold(self.worker, also=[self.worker.name],
                                timeout=EXIT_FOLD_TIMEOUT_SECONDS, now=self._fold_time())
        except Exception as exc:
            faults.record("multiproc_fold", exc)


def _event_values_dropped() -> dict[str, int]:
    events = sys.modules.get("inferwatch.events.dropped")
    return {} if events is None else events.values_dropped_totals()


def shutdown() -> None:
    """What the exit handlers do, now: end the streams still open (as cancelled), fold the
    calls not yet drained and flush the event logs (for at most 2 s each), then publish
    this worker's final snapshot and fold it into the archive.

    Exit handlers do this when the process exits normally (gunicorn's sync, gthread and
    gevent workers, a script). uvicorn re-raises SIGTERM once it has shut down, so its
    workers die without running exit handlers: call this from the app's lifespan
    shutdown, with or without a multi-worker directory. Idempotent; never raises. Every
    registry attached in multi-worker mode is published: the default one and an app's
    own (``attach(registry)``). The snapshot is left alone outside multi-worker mode, or
    when no registry was ever used. Events emitted after it are written as ever (the
    process may go on).

    >>> shutdown()
    """
    _end_open_streams()
    events = sys.modules.get("inferwatch.events.log_lifetime")
    if events is not None:  # no event log was ever opened otherwise
        events.flush_all_before_shutdown()  # never raises
    try:
        from inferwatch.core import registry

        # Not default_registry(): at shutdown it would create (and attach) a registry that
        # nothing used, and raise into the app's shutdown when the directory has gone since.
        default = registry._default
        publishers = [] if default is None or default.multiproc is None else [
            default.multiproc]
        publishers += [p for p in list(_attached) if p not in publishers]
        for publisher in publishers:
            publisher.close()  # never raises
    except Exception as exc:  # a bug of ours: never into the app's shutdown
        faults.record("multiproc_write", exc)


def clear_directory(directory: str | None = None) -> int:
    """Delete inferwatch's files from the directory (default: the env var); returns how many.

    Call it once before the workers start (gunicorn's ``on_starting`` hook) so a new
    server does not carry the previous run's counts. Snapshots (and writes in progress)
    of other processes that still run are kept: on gunicorn's USR2 upgrade the new
    master starts beside the old one, whose workers keep serving and publishing.

    In a shadow's child process, which starts while the server runs, it deletes nothing
    and returns 0: the archive there holds the counts of workers that have exited.

    >>> clear_directory(tempfile.mkdtemp())
    0
    """
    if in_shadow_child():
        return 0
    path = check_directory(directory) if directory is not None else directory_from_env()
    if path is None:
        raise MultiprocError(f"{ENV_VAR} is not set and no directory was given")
    return SnapshotDirectory(path).clear()
