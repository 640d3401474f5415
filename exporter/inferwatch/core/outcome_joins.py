"""What :meth:`Monitor.record_outcome` does: join an outcome with the prediction it is
for, hand one this version never predicted to the version that did, and count the join.

Apart from the monitor because joining delayed ground truth is a job of its own, done
when labels arrive, never on the request path.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from inferwatch import faults
from inferwatch.core.timestamps import seconds_of
from inferwatch.forking import catch_up_after_fork

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor


def record_outcome(monitor: Monitor, request_id: object, y_true: object,
                   at: float | None, forward: bool) -> None:
    """Join `y_true` with the prediction `monitor` made for `request_id` (see
    :meth:`Monitor.record_outcome`); `forward`: an outcome it never predicted may go to
    another version of the model. Never raises."""
    try:
        catch_up_after_fork()  # a worker forked past the at-fork hooks: its own locks first
        when = time.time() if at is None else seconds_of(at)
        # Read and bounded as a prediction's id is (request_id_text): bytes as their text,
        # a str subclass as its characters, 101.0 as 101, a long id as its digest; else
        # the two would never join.
        rid = faults.request_id_text(request_id, "outcome")
        if rid is None:
            return  # its __str__ raised: counted as a fault
        if would_wait_on_own_thread(monitor):
            monitor.defer_outcome(rid, y_true, when, forward)
            return
        outcomes = monitor.outcomes
        if monitor.pending() and outcomes.kept_rows(rid) is None and outcomes.knows(rid):
            # An id whose outcome joined before, used again: its new prediction may still
            # wait in the pending lists, and this outcome is not the first one's duplicate.
            monitor.drain()
        joined = outcomes.join(rid, y_true, when)
        if joined.unmatched == "unknown_id":
            monitor.drain()  # the prediction may still be waiting in the pending lists
            joined = outcomes.join(rid, y_true, when)
        if joined.unmatched == "unknown_id" and forward and \
                _to_sibling(monitor, rid, y_true, when):
            return
        with monitor._lock:
            _record_join(monitor, joined)
        if monitor.events is not None:
            # An outcome that judged nothing left its prediction waiting: not "joined".
            match = joined.unmatched or ("missing_label" if joined.waits else "joined")
            monitor.events.emit({"ts": when, "model": monitor.name,
                                 "model_version": monitor.version, "request_id": rid,
                                 "outcome": y_true, "outcome_match": match})
        for listener in monitor.outcome_listeners:
            listener(rid, y_true, when)
    except Exception as exc:
        faults.record("outcome", exc)


def _to_sibling(monitor: Monitor, request_id: str, y_true: object, when: float) -> bool:
    """Hand an outcome this version never predicted to the version of the same model
    that did (or that joined an outcome for it already); whether one did. Labels arrive
    hours or days late: the version a caller reaches by the model's name
    (``inferwatch.monitor("fraud")``, the one instrumented last) may be a newer one than
    the version that made the prediction."""
    siblings = monitor.siblings
    # A shadow challenger (it has drain listeners) gets its outcomes from its champion,
    # and is never given one past it.
    if siblings is None or monitor.drain_listeners:
        return False
    for sibling in siblings():
        if sibling is monitor or sibling.drain_listeners:
            continue
        if would_wait_on_own_thread(sibling):
            monitor.defer_outcome(request_id, y_true, when, True)
            return True
        # A repeat of an outcome the sibling joined (an at-least-once label queue) is its
        # duplicate, or expired again: not an unknown id of the version asked.
        if not sibling.outcomes.knows(request_id) and sibling.pending():
            sibling.drain()
        if sibling.outcomes.knows(request_id):
            record_outcome(sibling, request_id, y_true, when, forward=False)
            return True
    return False


def would_wait_on_own_thread(monitor: Monitor) -> bool:
    """Whether joining an outcome now could wait for a lock of `monitor` that this thread
    holds itself: a signal handler runs on the main thread, between two bytecodes of code
    that may be inside the monitor's lock (a drain, a scrape). Such a lock is never let go
    while the handler runs, and taking it again would hang the process; taking it
    reentrantly would let the join change what the interrupted code is half-way through.

    Only the main thread runs signal handlers, so any other thread waits as usual. On the
    main thread it is yes only when the main thread itself owns one of the locks: one
    that a worker thread holds (a drain, a scrape, another outcome) is let go as usual,
    so the join waits for it, as any caller would; deferring those too would send a
    main-thread label loop's outcomes past the deferred bound while workers serve. It does
    not wait a little first when it owns one: a handler that fires again meanwhile (a
    timer's) would run inside that wait, and so on without end. An outcome deferred so is
    joined by the next drain (a scrape's, or the background drain's, which it makes due).

    >>> from inferwatch.core.registry import Registry
    >>> mon = Registry().monitor("m", "1")
    >>> would_wait_on_own_thread(mon)
    False
    >>> with mon._lock:
    ...     would_wait_on_own_thread(mon)
    True
    >>> import threading
    >>> held, done = threading.Event(), threading.Event()
    >>> def hold():
    ...     with mon._lock:
    ...         held.set()
    ...         done.wait()
    >>> worker = threading.Thread(target=hold); worker.start(); held.wait()
    True
    >>> would_wait_on_own_thread(mon)  # a worker's lock: the join will wait for it
    False
    >>> done.set(); worker.join()
    """
    if threading.get_ident() != threading.main_thread().ident:
        return False
    return any(_owned_here(lock) for lock in (
        monitor._take_lock, monitor._lock, monitor.outcomes._lock))


def _owned_here(lock) -> bool:
    """Whether this thread holds `lock`. A lock that cannot tell its owner (a plain one)
    counts as owned while it is held by anyone: the safe side for a signal handler."""
    is_owned = getattr(lock, "_is_owned", None)
    if is_owned is not None:
        return is_owned()
    if not lock.acquire(blocking=False):
        return True
    lock.release()
    return False


def _record_join(monitor: Monitor, joined) -> None:
    state, s = monitor.state, monitor.settings
    monitor._revision += 1
    if joined.unmatched is not None:
        state.inc("inferwatch_outcomes_unmatched_total", (joined.unmatched,))
        return
    if joined.rows_over_bound:
        state.inc("inferwatch_outcomes_unmatched_total", ("rows_over_bound",),
                  joined.rows_over_bound)
    if joined.missing_labels:
        state.inc("inferwatch_outcomes_unmatched_total", ("missing_label",),
                  joined.missing_labels)
    if joined.unpredicted_rows:
        state.inc("inferwatch_outcomes_unmatched_total", ("unsupported_prediction",),
                  joined.unpredicted_rows)
    if joined.correct:
        state.inc("inferwatch_outcomes_total", ("correct",), joined.correct)
    if joined.incorrect:
        state.inc("inferwatch_outcomes_total", ("incorrect",), joined.incorrect)
    if joined.errors:
        state.histogram("inferwatch_outcome_error", (), s.outcome_error_buckets).observe(
            np.asarray(joined.errors, dtype=np.float64))
    if joined.delay is not None:
        state.histogram("inferwatch_outcome_delay_seconds", (),
                        s.outcome_delay_buckets).observe_one(joined.delay)
