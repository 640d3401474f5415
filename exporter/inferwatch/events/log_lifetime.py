"""Every event log of this process: the live ones, the flush at exit and the fork hooks.

At interpreter exit, streams still open are ended as cancelled, the calls still waiting for
the background drain in monitors that write events are folded (for up to
``EXIT_DRAIN_SECONDS``), then every live log's queued events are flushed (for up to
``ATEXIT_FLUSH_SECONDS`` in all); ``inferwatch.multiproc.shutdown()`` does the same for a
process that ends without exit handlers (uvicorn on SIGTERM). Around ``os.fork`` the
writer threads stop (and SQLite connections close) so that nothing is mid-write when the
process is copied; the parent starts them again, and the child starts each log afresh
(``EventLog._restart_in_child``) with zeroed process totals.

The logs themselves (:class:`~inferwatch.events.log.EventLog`) add and take themselves off
:data:`live_logs`; this module never imports them.

>>> flush_all_before_shutdown()  # no log open: nothing to fold or flush
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from inferwatch import exiting
from inferwatch.events.dropped import (
    REASONS,
    VALUE_REASONS,
    process_totals,
    process_value_totals,
)
from inferwatch.forking import join_before_fork

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.events.log import EventLog

# How long a fork waits for the writer threads to stop (all of them together). A write stuck
# on something the forking thread holds, or a long one, must not hold a worker's start up:
# past this the fork goes ahead with that writer running, as it would without the stop.
FORK_STOP_SECONDS = 1.0
ATEXIT_FLUSH_SECONDS = 2.0
# How long the exit waits for the pending calls of the monitors writing events to be
# folded, before the flush: a drain stuck on a lock must not hold the exit up for good.
EXIT_DRAIN_SECONDS = 2.0

# Guards the sets below and the process totals; made anew in a forked child.
logs_lock = threading.Lock()
live_logs: weakref.WeakSet[EventLog] = weakref.WeakSet()
# Closed ones too: a closed log still counts what is emitted to it (as "closed"), so a forked
# child renews the locks of every log it may still be asked about.
every_log: weakref.WeakSet[EventLog] = weakref.WeakSet()
# Sinks inherited across a fork: kept referenced so that nothing in the child ever closes
# (or, for SQLite, finalises) what the parent still uses.
abandoned_sinks: list[object] = []


def drain_monitors(which: Callable[[Monitor], bool], timeout: float | None) -> bool:
    """Fold the pending calls of the monitors `which` picks (their events are emitted as
    they are folded), for at most `timeout` seconds; True when done. No registry module
    loaded: no monitor, nothing to fold."""
    drain_thread = sys.modules.get("inferwatch.core.drain_thread")
    if drain_thread is None:
        return True
    return drain_thread.drain_live(which, timeout)


def end_open_streams() -> None:
    """End the streams still open as cancelled (see ``streams.end_open_streams``), so that
    the drain that follows folds them. No streams module loaded: no stream. Never raises."""
    streams = sys.modules.get("inferwatch.core.streams")
    if streams is not None:
        try:
            streams.end_open_streams()
        except Exception:
            pass


def flush_all_before_shutdown() -> None:
    """What :func:`flush_all_at_exit` does, for a process about to end without exit hooks
    (``inferwatch.multiproc.shutdown()``: uvicorn re-raises SIGTERM after its lifespan).
    Later events are queued as ever: the process may go on, and a flush at exit (when
    there is one) writes them. Bounded as the exit flush is; never raises."""
    _fold_and_flush(at_exit=False)


def flush_all_at_exit() -> None:
    """Fold the calls of the monitors writing events, then flush every log: the exit's
    flush, run by the hook this module registers or, when it was imported during the exit
    (too late for its hook to run), by :mod:`inferwatch.exiting`'s. Never raises."""
    _fold_and_flush(at_exit=True)


def _fold_and_flush(at_exit: bool) -> None:
    # The calls of the last seconds wait for the background drain, which will not come
    # again: folded first, so that their events are in the queues flushed below. A
    # multi-worker publisher closing after this publishes the same drained state.
    with logs_lock:
        any_live = bool(live_logs)
    if any_live:
        # A stream still open would be recorded when collected, after this: ended first.
        end_open_streams()
        try:
            drain_monitors(lambda monitor: monitor.events is not None, EXIT_DRAIN_SECONDS)
        except Exception:
            pass
    if at_exit:
        exiting.exit_flushed = True
    with logs_lock:
        logs = list(live_logs)
    deadline = time.monotonic() + ATEXIT_FLUSH_SECONDS
    for event_log in logs:
        try:
            event_log._flush_before_exit(max(0.0, deadline - time.monotonic()))
        except Exception:
            pass


_quiesced: list[EventLog] = []


def _before_fork() -> None:
    _stop_writers_for_fork()
    # SQLite keeps each process's locks on a file in memory that a fork copies: a child whose
    # parent had the database open (or was mid-transaction) finds it "locked" for good. So
    # no SQLite connection is open across a fork; the forking thread waits for a batch in
    # flight (at most FORK_WAIT_SECONDS), which happens when workers start, never per call.
    # A writer stopped above has closed its sink already.
    for event_log in list(live_logs):
        try:
            if event_log._quiesce_for_fork():
                _quiesced.append(event_log)
        except Exception:
            pass


def _stop_writers_for_fork() -> None:
    """Stop every writer thread before a fork, waiting at most FORK_STOP_SECONDS for all;
    one that does not stop in time is left running (the child renews every lock anyway)."""
    stopping: list[threading.Thread] = []
    for event_log in list(live_logs):
        try:
            writer = event_log._stop_writer_for_fork()
        except Exception:
            continue
        if writer is not None:
            stopping.append(writer)
    join_before_fork(stopping, FORK_STOP_SECONDS)


def _after_fork_in_parent() -> None:
    while _quiesced:
        _quiesced.pop()._end_quiesce()
    for event_log in list(live_logs):
        try:
            event_log._restart_after_fork_in_parent()
        except Exception:
            pass


def _after_fork_in_child() -> None:
    global logs_lock
    _quiesced.clear()  # the child renews every log's locks below
    logs_lock = threading.Lock()
    for reason in REASONS:
        process_totals[reason] = 0
    for reason in VALUE_REASONS:
        process_value_totals[reason] = 0
    for event_log in list(every_log):
        event_log._restart_in_child()


atexit.register(flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
