"""The event log: `emit()` on the request path, everything else on a background writer thread.

``emit(event)`` samples, then appends the event dict to a bounded queue: it never blocks,
never raises and never touches the disk. A daemon writer thread wakes every 50 ms, encodes
what is queued (:class:`~inferwatch.events.sinks.Encoder`: clean, redact, bound the size)
and hands it to the sink, letting the events go once encoded. The queue is bounded in
events (`queue_size`) and, for the events of instrumented calls, in the bytes they hold
(`queue_bytes`): such an event keeps its call's whole input and output until it is
encoded, so the drain that emits it sizes it first, off the request path (see
:meth:`EventLog._offer`). A full queue, a failing disk or a bad event costs only that
event, counted by reason in ``inferwatch_events_dropped_total{reason}``; after a write error
the sink is reopened and writing resumes, backing off while the failures last.

The event dict is read later, on the writer thread: emit a fresh dict and do not change
the objects it holds afterwards.

After ``os.fork`` (gunicorn, multiprocessing) the child starts with an empty queue, zeroed
counts and its own writer thread, file and database connection. At interpreter exit the
calls of monitors writing events are folded and every log flushed, within bounds; so do
:meth:`EventLog.flush` and :meth:`EventLog.close` for the monitors writing to their log.
What this process does for all its logs at once (the exit, the fork hooks) is
:mod:`inferwatch.events.log_lifetime`.

>>> import tempfile
>>> log = EventLog(Path(tempfile.mkdtemp()) / "events.jsonl", redact=["inputs.ssn"])
>>> log.emit({"model": "fraud", "request_id": "r-1", "inputs": {"ssn": "123", "age": 41}})
>>> log.flush(5.0), log.dropped_counts()["queue_full"]
(True, 0)
>>> log.close()
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from inferwatch import exiting
from inferwatch.events import log_lifetime as lifetime
from inferwatch.events.dropped import (
    REASONS,
    process_totals,
    process_value_totals,
)
from inferwatch.events.log_options import (
    MIN_EVENT_BYTES,
    checked_sample_rate,
    numpy_bool_types,
    positive,
    sink_path,
    too_small_message,
)
from inferwatch.events.redact import Redaction
from inferwatch.events.sampling import Sampler
from inferwatch.events.sinks import (
    Encoder,
    Record,
    SinkError,
    TooLarge,
    has_model_errors,
    infer_format,
    is_error,
    log_file,
    open_sink,
)

MiB = 1 << 20
KiB = 1 << 10
FORK_WAIT_SECONDS = 15.0
DEFAULT_ROTATE_BYTES = 10 * MiB
DEFAULT_MAX_EVENT_BYTES = 64 * KiB
DEFAULT_QUEUE_BYTES = 64 * MiB
SECRET_ENV = "INFERWATCH_EVENT_SECRET"
POLL_SECONDS = 0.05
MAX_BATCH = 1_000
BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
# A writer that died of a fault of ours is replaced at once the first time; each later
# restart waits this long after the one before, longer while it keeps dying.
RESTART_BACKOFF_SECONDS = (1.0, 5.0, 30.0, 60.0)
LOG_INTERVAL_SECONDS = 60.0

log = logging.getLogger("inferwatch")



def _listed(paths: Sequence[str] | None) -> Sequence[str] | None:
    """Field paths as a list; anything else as given, for Redaction to refuse by name."""
    if paths is None or isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        return paths
    return list(paths)


class _Flush:
    """A marker in the queue: set once everything queued before it has been handled."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Sized:
    """A queued event with the bytes it holds until it is encoded, counted in
    ``queue_bytes``."""

    __slots__ = ("event", "size")

    def __init__(self, event: dict, size: int) -> None:
        self.event = event
        self.size = size


class EventLog:
    """A bounded, redacted, off-request-path log of one event per prediction.

    `sink` is a ``.jsonl`` path (per-process files beside it), a directory (the same files
    inside it, as ``events.jsonl``) or an SQLite ``.db`` path.
    `redact` drops fields and `hash_fields` replaces them with a keyed HMAC (paths like
    ``inputs.ssn``, see :mod:`inferwatch.events.redact`); hashing needs `secret` or the
    ``INFERWATCH_EVENT_SECRET`` environment variable. `max_bytes` bounds everything the log
    keeps on disk, `rotate_bytes` one JSONL file or one SQLite transaction (default
    10 MiB, or a tenth of `max_bytes` when that is less), `max_event_bytes` one event
    (default 64 KiB, at most `rotate_bytes`), `queue_size` the events waiting for the writer
    and `queue_bytes` (default 64 MiB) the bytes that the events of instrumented calls hold
    while they wait, their inputs and outputs included (by estimate); past either bound an
    event is dropped as ``queue_full``. Events passed to :meth:`emit` directly are bounded
    by `queue_size` alone.
    Exception messages are stored only with ``error_messages=True``: they often quote
    user data. Inputs and outputs are stored as named fields (DataFrames, dataclasses,
    pydantic models, structured arrays, sparse matrices by column, JSON text: see
    :mod:`inferwatch.events.fields`); a value with no such form is replaced by a marker
    and counted in ``inferwatch_event_values_dropped_total{reason}``, never written as its
    ``str()``, unless ``keep_unstructured=True``.

    >>> EventLog("events.txt")
    Traceback (most recent call last):
    ...
    ValueError: format: cannot tell the format of 'events.txt' from its suffix; use a suffix \
among .jsonl, .ndjson, .log, .db, .sqlite, .sqlite3 or pass format='jsonl' or 'sqlite'
    """

    def __init__(self, sink: str | Path, *, format: str | None = None,
                 sample_rate: float = 1.0, redact: Sequence[str] | None = (),
                 hash_fields: Sequence[str] | None = (), secret: bytes | str | None = None,
                 max_bytes: int = 100 * MiB, rotate_bytes: int | None = None,
                 queue_size: int = 10_000, max_event_bytes: int | None = None,
                 queue_bytes: int = DEFAULT_QUEUE_BYTES,
                 error_messages: bool | None = False,
                 keep_unstructured: bool | None = False) -> None:
        self.path = Path(sink_path(sink))
        self.format = infer_format(self.path, format)
        rate = checked_sample_rate(sample_rate)
        # Listed once: paths given as a generator are read again by options().
        redact, hash_fields = _listed(redact), _listed(hash_fields)
        max_bytes, queue_size, queue_bytes = positive(max_bytes=max_bytes,
                                                      queue_size=queue_size,
                                                      queue_bytes=queue_bytes)
        # Opt-ins to storing what may hold personal data: a string read from an environment
        # variable ("false", "0") is truthy, and would switch them on. None leaves them off.
        for name, flag in (("error_messages", error_messages),
                           ("keep_unstructured", keep_unstructured)):
            if flag is not None and not isinstance(flag, (bool, numpy_bool_types())):
                raise ValueError(f"{name}: expected True or False, got {flag!r}")
        # Which option the event bound comes from, to name it when it is too small.
        bound_by = "max_event_bytes" if max_event_bytes is not None else \
            "rotate_bytes" if rotate_bytes is not None else "max_bytes"
        if rotate_bytes is None:
            rotate_bytes = max(1, min(DEFAULT_ROTATE_BYTES, max_bytes // 10))
        if max_event_bytes is None:
            max_event_bytes = min(DEFAULT_MAX_EVENT_BYTES, rotate_bytes)
        rotate_bytes, max_event_bytes = positive(rotate_bytes=rotate_bytes,
                                                 max_event_bytes=max_event_bytes)
        if max_event_bytes < MIN_EVENT_BYTES:
            # Below this not even the identity fields of an ordinary event fit: every event
            # would be dropped as too_large, a log that silently stores nothing.
            raise ValueError(too_small_message(bound_by, max_bytes, rotate_bytes,
                                               max_event_bytes))
        if rotate_bytes > max_bytes:
            raise ValueError(f"rotate_bytes ({rotate_bytes}) cannot exceed max_bytes "
                             f"({max_bytes})")
        if max_event_bytes > rotate_bytes:
            raise ValueError(f"max_event_bytes ({max_event_bytes}) cannot exceed rotate_bytes "
                             f"({rotate_bytes})")
        if secret is None:
            secret = os.environ.get(SECRET_ENV) or None
        line_bytes = max_event_bytes
        if self.format == "jsonl":
            # A JSONL record is its line and a newline: with max_event_bytes equal to
            # max_bytes, a full-size event would otherwise leave the log one byte over.
            line_bytes = max(1, min(max_event_bytes, max_bytes - 1))
        encoder = Encoder(Redaction(redact, hash_fields, secret),
                          max_event_bytes=line_bytes, error_messages=bool(error_messages),
                          keep_unstructured=bool(keep_unstructured))
        self._sampler = Sampler(rate)
        # What opens this log again where a pickled instrumented model is loaded: the
        # bounds as decided here, the format only if given (a directory's is read there).
        self._options: dict[str, object] = {
            "format": format, "redact": redact, "hash_fields": hash_fields,
            "max_bytes": max_bytes, "rotate_bytes": rotate_bytes, "queue_size": queue_size,
            "max_event_bytes": max_event_bytes, "queue_bytes": queue_bytes,
            "error_messages": bool(error_messages), "keep_unstructured": bool(keep_unstructured)}
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        # Read by the instrumented calls and request blocks: they keep a failure's message
        # only for a log that stores it.
        self.keeps_error_messages = bool(error_messages)
        self._encoder = encoder
        # Decided once: a directory removed later is made again, not written beside.
        target = log_file(self.path, self.format)
        self._new_sink = lambda: open_sink(target, self.format, max_bytes=max_bytes,
                                           rotate_bytes=rotate_bytes)
        self._new_sink().close()  # configuration errors (a too small SQLite bound) show now
        self._closed = False
        self._start()
        with lifetime.logs_lock:
            lifetime.live_logs.add(self)
            lifetime.every_log.add(self)

    def options(self) -> dict[str, object]:
        """The keyword arguments that open this log again as it is now,
        ``EventLog(log.path, **log.options())``: its redaction, hashing, sampling and
        bounds. The secret is never among them (a pickled instrumented model carries these):
        where the log is opened again, hashing takes it from ``INFERWATCH_EVENT_SECRET``.

        >>> import tempfile
        >>> log = EventLog(Path(tempfile.mkdtemp()) / "events.jsonl", redact=["inputs.ssn"])
        >>> log.options()["redact"], log.options()["max_bytes"] == 100 * MiB
        (['inputs.ssn'], True)
        >>> log.close()
        """
        options = dict(self._options, sample_rate=self.sample_rate)
        for name in ("redact", "hash_fields"):
            paths = options[name]
            if isinstance(paths, list):
                options[name] = list(paths)  # the caller's to change
        return options

    @property
    def sample_rate(self) -> float:
        return self._sampler.rate

    @sample_rate.setter
    def sample_rate(self, rate: float) -> None:
        # A rate changed at run time takes effect at once, checked as the constructor's.
        self._sampler = Sampler(checked_sample_rate(rate))

    # --- the request path ------------------------------------------------------------------

    def emit(self, event: dict) -> None:
        """Queue one prediction event; never blocks, never raises.

        Events whose ``"error"`` is set, or that name ``"model_errors"`` (a model call that
        raised inside a request the app answered all the same), are always kept; others are
        kept with probability `sample_rate`, decided by their ``"request_id"`` when they
        have one, so that a prediction and its outcome are kept or dropped together (see
        :mod:`~inferwatch.events.sampling`). ``None``, ``False``, zero and an empty string
        or collection are no error (see :func:`~inferwatch.events.sinks.is_error`).
        """
        try:
            if self._sampler.rate < 1.0 and self._sampled_out(event):
                return
            queue = self._queue
            if len(queue) < self.queue_size and not self._closed:
                queue.append(event)
                if exiting.exit_flushed:
                    # An atexit hook registered before inferwatch's ran after its flush:
                    # the interpreter ends right after it, so the event is written now
                    # (by this thread when no writer can be started: Python 3.12).
                    self._flush_before_exit(lifetime.ATEXIT_FLUSH_SECONDS)
                elif self._writer_done:
                    # close() ran between the check and the append and its writer has
                    # drained for the last time, or the writer died: see _writer_ended.
                    self._writer_ended()
            else:
                self._count("closed" if self._closed else "queue_full")
        except Exception:
            self._count("serialize_error")

    def _sampled_out(self, event: dict) -> bool:
        """Whether sampling leaves `event` out: never an error's, else by its request id."""
        return not is_error(event.get("error")) and \
            not has_model_errors(event.get("model_errors")) and \
            not self._sampler.keeps(event.get("request_id"))

    def _offer(self, event: dict, size: int) -> None:
        """Queue one event of an instrumented call that holds about `size` bytes (its
        inputs and outputs), sampled as :meth:`emit` samples; never blocks, never raises.

        Called by the drain, off the request path, which sizes the event. Past
        `queue_size` events, or past `queue_bytes` held by the events queued and in the
        writer's hands, the event is dropped as ``queue_full``; one arriving when nothing
        is held is taken whatever its size (the writer cuts it to max_event_bytes).
        """
        try:
            if self._sampler.rate < 1.0 and self._sampled_out(event):
                return
            queue = self._queue
            # Reserved under the lock, so that drains racing each other cannot all pass
            # the bound at once.
            with self._bytes_lock:
                held = self._held_bytes
                fits = len(queue) < self.queue_size and not self._closed and \
                    (held <= 0 or held + size <= self.queue_bytes)
                if fits:
                    self._held_bytes = held + size
            if not fits:
                self._count("closed" if self._closed else "queue_full")
                return
            queue.append(_Sized(event, size))
            if exiting.exit_flushed:  # as in emit()
                self._flush_before_exit(lifetime.ATEXIT_FLUSH_SECONDS)
            elif self._writer_done:
                self._writer_ended()
        except Exception:
            self._count("serialize_error")

    # --- control ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every event so far is written or dropped; False on timeout.

        That is every event emitted, and every event of a call already made by a model
        that writes here: its calls wait to be folded (and their events emitted) by the
        background drain, which is made now.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not lifetime.drain_monitors(lambda monitor: monitor.events is self, timeout):
            return False
        return self._flush_queue(None if deadline is None else
                                 max(0.0, deadline - time.monotonic()))

    def _flush_queue(self, timeout: float | None) -> bool:
        """Wait until every event queued so far is written or dropped; False on timeout."""
        if self._writer_done and not self._closed:
            self._writer_ended()  # a writer that died: a new one writes what is queued
        if not self._thread.is_alive() and not self._paused_for_fork:
            return not self._queue
        marker = _Flush()  # a writer stopped for a fork answers it once started again
        self._queue.append(marker)  # past the size bound on purpose: it must get in
        self._wake.set()
        if self._writer_done:
            self._writer_ended()  # the writer ended after is_alive(): answer it here
        return marker.done.wait(timeout)

    def _flush_before_exit(self, timeout: float) -> None:
        """Flush as the interpreter ends; what a dead or stuck writer leaves queued is
        counted as ``closed``: nothing will write it, and the loss must show.

        Once a flush at exit has timed out, later ones do not wait: an atexit hook emitting
        many events would otherwise hold the exit up for the whole timeout per event.
        """
        if not self._exit_stalled:
            if self._writer_done and not self._exit_restarted:
                # The last chance to write what a dead writer left queued: a restart not
                # yet due by the back-off is made now, once (a writer that dies again is
                # not restarted in a loop at exit).
                self._exit_restarted = True
                self._writer_ended(due=True)
            if self._writer_done and not self._closed:
                # Still no writer: none could be started (Python 3.12 at exit), or the one
                # started died again. What is queued is written here, as a writer would.
                if self._write_here(timeout):
                    return
            # The queue alone: this runs inside a monitor's drain too (an event emitted
            # after the exit flush), whose lock a drain of that monitor would wait for.
            elif self._flush_queue(timeout):
                return
            self._exit_stalled = True
        self._drop_leftovers()

    def _write_here(self, timeout: float) -> bool:
        """Write what is queued in this thread, as the writer does, for about `timeout`
        seconds (checked between batches); True once nothing is left."""
        deadline = time.monotonic() + timeout
        holder: list = [None]
        try:
            while self._queue and time.monotonic() < deadline:
                _write_batch(self, holder)
        finally:
            _close_quietly(holder[0])
        return not self._queue

    def _writer_ended(self, due: bool = False) -> None:
        """The writer has ended: what is queued is counted as ``closed`` when the log is
        closed; otherwise the writer died of a fault of ours and a new one takes over.

        Restarts are spaced out (``RESTART_BACKOFF_SECONDS``): a writer that dies on every
        batch must not become a storm of threads. Until the next restart is due, events
        wait in the queue (its bound still holds) and a timer starts the writer when the
        restart is due, so that they are written even if nothing is emitted meanwhile.
        `due` makes the restart now (at exit).
        """
        if self._closed or self._stopping:
            self._drop_leftovers()
            return
        with self._restart_lock:
            if not self._writer_done or self._thread.is_alive() or self._closed:
                return  # another thread restarted it first, or it has not quite ended
            now = time.monotonic()
            if now < self._restart_at and not due:
                if not self._restart_timer:
                    self._restart_timer = True
                    # Capped: fired early, it finds the restart not due and waits again.
                    wait = min(self._restart_at - now, max(RESTART_BACKOFF_SECONDS))
                    timer = threading.Timer(wait, _restart_when_due, args=(weakref.ref(self),))
                    timer.daemon = True
                    try:
                        timer.start()
                    except RuntimeError:  # no thread at interpreter shutdown (3.12)
                        self._restart_timer = False
                return
            self._restart_at = now + RESTART_BACKOFF_SECONDS[
                min(self._restarts, len(RESTART_BACKOFF_SECONDS) - 1)]
            self._restarts += 1
            self._writer_done = False
            self._start_writer()
        self._wake.set()

    def _drop_leftovers(self, reason: str = "closed") -> None:
        """Count what is queued as ``closed`` and answer queued flushes: nothing will
        write it (a writer that has ended, or is stuck at exit)."""
        lost = 0
        freed = 0
        queue = self._queue
        while True:
            try:
                item = queue.popleft()  # the writer may pop too: each item goes to one
            except IndexError:
                break
            if type(item) is _Flush:
                item.done.set()
            else:
                lost += 1
                if type(item) is _Sized:
                    freed += item.size  # type: ignore[union-attr]
        self._release(freed)
        if lost:
            self._count(reason, lost)

    def close(self, timeout: float | None = 5.0) -> None:
        """Flush, stop the writer and close the sink; later events count as dropped.

        The calls already made by a model writing here are folded first (as by
        :meth:`flush`): their events are written, not dropped as ``closed`` at the next
        drain.
        """
        if self._closed:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        lifetime.drain_monitors(lambda monitor: monitor.events is self, timeout)
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(None if deadline is None else
                              max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # A stuck writer still holds queued events: the log stays live so that the exit
            # flush waits for them once more and counts what is left as `closed`. The writer
            # leaves the live set itself when it ends.
            return
        # A writer that died before close() left its queue behind: lost, and it must show.
        self._drop_leftovers()
        with lifetime.logs_lock:
            lifetime.live_logs.discard(self)

    def dropped_counts(self) -> dict[str, int]:
        """Events this log lost in this process, by reason (every reason present, maybe 0).

        >>> import tempfile
        >>> log = EventLog(Path(tempfile.mkdtemp()) / "e.jsonl", queue_size=1)
        >>> log._wake.clear(); log.close(); log.emit({"model": "m"})
        >>> log.dropped_counts()["closed"]
        1
        """
        with self._counts_lock:
            return dict(self._dropped)

    # --- the writer thread -----------------------------------------------------------------

    def _start(self) -> None:
        self._queue: deque[dict | _Sized | _Flush] = deque()
        self._reset_held_bytes()
        self._wake = threading.Event()
        self._counts_lock = threading.Lock()
        self._dropped = dict.fromkeys(REASONS, 0)
        self._stopping = False
        # Set by the writer as it ends, before its last look at the queue.
        self._writer_done = False
        self._exit_stalled = False
        self._retry_at = 0.0
        self._failures = 0
        self._last_logged = -LOG_INTERVAL_SECONDS
        self._restart_lock = threading.Lock()
        self._restarts = 0
        self._restart_at = 0.0
        # Whether a timer will start the writer when its restart is due (one at a time).
        self._restart_timer = False
        self._exit_restarted = False
        self._sink_holder: list = [None]
        # Held while the sink writes, and across a fork (see _before_fork).
        self._sink_lock = threading.Lock()
        # Set while the writer is told to stop for a fork; whether it did is told under
        # the lock, so that the parent starts a writer again exactly when it stopped.
        self._paused_for_fork = False
        self._stopped_for_fork = False
        self._pause_lock = threading.Lock()
        self._start_writer()

    def _start_writer(self) -> None:
        """Start a writer thread. Where none can be started (Python 3.12 starts no thread
        once the interpreter shuts down) the writer stays dead, and the exit flush writes
        what is queued itself."""
        self._sink_holder = [None]
        self._thread = threading.Thread(target=_writer_main,
                                        args=(weakref.ref(self), self._sink_holder),
                                        name="inferwatch-events", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:
            self._writer_done = True

    def _stop_writer_for_fork(self) -> threading.Thread | None:
        """Before a fork: tell the writer to stop after the batch in hand, and return it to
        be joined; None when there is none running, or when it is the thread that forks.

        A thread running at fork time is what CPython 3.12+ warns about ("This process is
        multi-threaded, use of fork() may lead to deadlocks in the child"). Takes no lock:
        the forking thread may hold any of this log's. What is queued stays queued, for the
        writer started again after the fork (the child starts with an empty queue).
        """
        thread = self._thread
        if self._closed or self._stopping or self._writer_done or not thread.is_alive() \
                or thread is threading.current_thread():
            return None
        self._paused_for_fork = True
        self._wake.set()
        return thread

    def _writer_stops_for_fork(self) -> bool:
        """Asked by the writer between batches: True when it is to end for a fork (and it
        is then counted as stopped)."""
        with self._pause_lock:
            if self._paused_for_fork:
                self._stopped_for_fork = True
                return True
            return False

    def _restart_after_fork_in_parent(self) -> None:
        # Bounded: the forking thread itself may hold it (no code of ours forks so, but a
        # fork hook must never hang the parent). Past the bound the writer is left to the
        # restart the next emit() or flush() makes of a writer that has ended.
        if not self._pause_lock.acquire(timeout=lifetime.FORK_STOP_SECONDS):
            return
        try:
            stopped = self._stopped_for_fork
            self._paused_for_fork = self._stopped_for_fork = False
        finally:
            self._pause_lock.release()
        # A writer that did not stop in time goes on writing: it sees the flag down.
        if stopped and not self._closed:
            self._start_writer()
            self._wake.set()  # what was emitted during the fork is written at once

    def _restart_in_child(self) -> None:
        # The parent's queue, locks, thread and open files are the parent's: start afresh.
        inherited = self._sink_holder[0]
        if inherited is not None:
            lifetime.abandoned_sinks.append(inherited)
            inherited.forget_after_fork()
        if self._closed:
            self._counts_lock = threading.Lock()
            self._sink_lock = threading.Lock()
            self._restart_lock = threading.Lock()
            self._pause_lock = threading.Lock()
            self._paused_for_fork = self._stopped_for_fork = False
            self._dropped = dict.fromkeys(REASONS, 0)
            # What a stuck writer of the parent still holds is the parent's to write or
            # count: counted here too at exit, each lost event would show twice.
            self._queue = deque()
            self._reset_held_bytes()
            self._exit_stalled = False
            self._writer_done = True  # no writer here: a late append counts itself
        else:
            self._start()

    def _end_quiesce(self) -> None:
        """After the fork, in the parent: what :meth:`_quiesce_for_fork` held is let go."""
        self._sink_lock.release()

    def _quiesce_for_fork(self) -> bool:
        """Before a fork: wait for a batch in flight and close a sink that cannot cross a
        fork; True when the sink lock is held (released after the fork)."""
        sink = self._sink_holder[0]
        if sink is None or not getattr(sink, "closes_before_fork", False):
            return False
        if not self._sink_lock.acquire(timeout=FORK_WAIT_SECONDS):
            return False  # a write stuck this long: fork anyway, as without this hook
        _close_quietly(sink)  # the writer reconnects on its next batch
        return True

    def _reset_held_bytes(self) -> None:
        self._bytes_lock = threading.Lock()
        # The bytes held by the sized events queued or in the writer's hands until encoded.
        self._held_bytes = 0

    def _release(self, size: int) -> None:
        if size:
            with self._bytes_lock:
                self._held_bytes -= size

    def _count(self, reason: str, n: int = 1) -> None:
        with self._counts_lock:
            self._dropped[reason] += n
        with lifetime.logs_lock:
            process_totals[reason] += n

    def _count_values(self, dropped: dict[str, int]) -> None:
        if not dropped:
            return
        with lifetime.logs_lock:
            for reason, n in dropped.items():
                process_value_totals[reason] = process_value_totals.get(reason, 0) + n
        dropped.clear()

    def _drain(self) -> tuple[list[dict], list[_Flush], int]:
        """A batch of events, the flush markers to answer after it, and the bytes the
        batch holds (see :meth:`_offer`)."""
        events: list[dict] = []
        markers: list[_Flush] = []
        size = 0
        queue = self._queue
        while queue and len(events) < MAX_BATCH:
            item = queue.popleft()
            cls = type(item)
            if cls is _Flush:
                markers.append(item)  # type: ignore[arg-type]
                break  # answer the flush as soon as what came before it is written
            if cls is _Sized:
                size += item.size  # type: ignore[union-attr]
                events.append(item.event)  # type: ignore[union-attr]
            else:
                events.append(item)  # type: ignore[arg-type]
        return events, markers, size

    def _write(self, sink_holder: list, events: list[dict], size: int = 0) -> None:
        """Encode `events` and write them. The events are let go once encoded (`events`
        is emptied, and `size`, the bytes they hold, released): a slow or stalled sink
        then holds only their encoded lines, each at most max_event_bytes."""
        try:
            records = self._encode(events)
        finally:
            events.clear()
            self._release(size)
        self._count_values(self._encoder.values_dropped)
        if not records:
            return
        if time.monotonic() < self._retry_at:
            self._count("write_error", len(records))  # the sink is failing: spare the disk
            return
        try:
            with self._sink_lock:
                if sink_holder[0] is None:
                    sink_holder[0] = self._new_sink()
                sink_holder[0].write(records)
            self._failures = 0
        except Exception as exc:
            written = exc.written if isinstance(exc, SinkError) else 0
            self._count("write_error", len(records) - written)
            self._after_failure(sink_holder, exc.cause if isinstance(exc, SinkError) else exc)

    def _encode(self, events: list[dict]) -> list[Record]:
        records: list[Record] = []
        now = time.time()
        for event in events:
            try:
                records.append(self._encoder.encode(event, now))
            except TooLarge:
                self._count("too_large")
            except Exception:
                self._count("serialize_error")
        return records

    def _after_failure(self, sink_holder: list, cause: BaseException) -> None:
        _close_quietly(sink_holder[0])
        sink_holder[0] = None
        delay = BACKOFF_SECONDS[min(self._failures, len(BACKOFF_SECONDS) - 1)]
        self._failures += 1
        now = time.monotonic()
        self._retry_at = now + delay
        if now - self._last_logged >= LOG_INTERVAL_SECONDS:
            self._last_logged = now
            log.warning("inferwatch: cannot write prediction events to %s (%s); dropping them "
                        "(counted in inferwatch_events_dropped_total{reason=\"write_error\"}) "
                        "and retrying; logged at most once a minute", self.path, cause)


def _writer_main(ref: weakref.ref[EventLog], sink_holder: list) -> None:
    """The writer loop; holds the log only weakly between rounds so it can be collected.

    A fault of ours (or a caller's object raising what no ``except Exception`` catches,
    such as ``asyncio.CancelledError``) costs the batch in hand, counted, never the
    writer: a dead writer would leave every later event to queue and be dropped.
    """
    ended = False
    try:
        while True:
            log_ = ref()
            if log_ is None:
                return
            if log_._thread is not threading.current_thread():
                return  # replaced after a fork
            if log_._paused_for_fork and log_._writer_stops_for_fork():
                ended = True  # started again after the fork, with the queue as it is
                return
            if _write_batch(log_, sink_holder):
                continue
            if log_._stopping:
                with lifetime.logs_lock:
                    lifetime.live_logs.discard(log_)
                # An emit that saw the log open may append after the drain above: flagged
                # first, so that either this drain or that emit counts it as `closed`.
                ended = True
                log_._writer_done = True
                log_._drop_leftovers()
                return
            wake = log_._wake
            del log_
            wake.wait(POLL_SECONDS)
            wake.clear()
    except BaseException as exc:  # a bug of ours; never take the server down
        from inferwatch import faults

        faults.record("events", exc)
    finally:
        _close_quietly(sink_holder[0])
        sink_holder[0] = None
        log_ = ref()
        if not ended and log_ is not None and log_._thread is threading.current_thread():
            # Died: the next emit or flush sees this and starts a new writer.
            log_._writer_done = True


def _write_batch(log_: EventLog, sink_holder: list) -> bool:
    """Write one batch of the queue and answer the flushes it reaches; False when the
    queue held nothing. A fault costs the batch, counted, never the caller."""
    events, markers, size = log_._drain()
    count = len(events)  # _write empties the list once the events are encoded
    try:
        if events:
            log_._write(sink_holder, events, size)
    except BaseException as exc:  # the writer must outlive it
        _writer_fault(log_, sink_holder, exc, count)
    for marker in markers:
        marker.done.set()
    return bool(count or markers)


def _restart_when_due(ref: weakref.ref[EventLog]) -> None:
    """A timer's end: start the dead writer of the log, if it is still dead and needed."""
    log_ = ref()
    if log_ is None:
        return
    try:
        log_._restart_timer = False
        if log_._writer_done and not log_._closed:
            log_._writer_ended()
    except Exception as exc:  # a bug of ours; never take the server down
        from inferwatch import faults

        faults.record("events", exc)


def _writer_fault(log_: EventLog, sink_holder: list, exc: BaseException, lost: int) -> None:
    """Count a batch lost to a fault in the writer, and the fault itself."""
    from inferwatch import faults

    faults.record("events", exc)
    log_._count("write_error", lost)
    _close_quietly(sink_holder[0])
    sink_holder[0] = None  # it may be half way through a write: start afresh


def _close_quietly(sink: object) -> None:
    if sink is not None:
        try:
            sink.close()  # type: ignore[attr-defined]
        except Exception:
            pass
