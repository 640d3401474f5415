"""Whether the interpreter's exit has run inferwatch's event flush, and the hook that runs it.

``inferwatch.events`` registers its exit flush as it is imported (in ``log_lifetime``).
An exit hook that is the first to use it (``instrument(model, events="events.jsonl")`` at
exit) imports it during the exit, and a hook registered then never runs. So ``import
inferwatch`` registers :func:`_at_exit` too, which runs that flush when its own did not
run. It stands behind every hook registered after ``import inferwatch`` (atexit runs the
last registered first).

Once the flush has run, :data:`exit_flushed` is True, and what comes later is written as
it comes: an event emitted is written at once (``EventLog.emit``), and a call of a model
that writes events is folded at once (``Monitor.submit``). That is the work of an exit
hook registered before inferwatch was imported, which runs after its flush.

>>> import inferwatch.exiting
>>> inferwatch.exiting.exit_flushed
False
"""

from __future__ import annotations

import atexit
import sys

exit_flushed = False
# How long a call made after the exit's flush waits for its fold; none once one timed out
# (a lock held for good by a stuck thread would cost every later call as much).
_fold_seconds = 2.0


def _at_exit() -> None:
    global exit_flushed
    if exit_flushed:
        return
    events_log = sys.modules.get("inferwatch.events.log_lifetime")
    if events_log is None:
        exit_flushed = True  # a log opened later flushes as it goes
        return
    try:
        events_log.flush_all_at_exit()  # sets exit_flushed
    except Exception:
        exit_flushed = True


def fold_after_exit_flush(monitor: object) -> None:
    """Fold `monitor`'s pending calls now: a call made after the exit's flush (by an exit
    hook that runs after it) would wait for a drain that never comes again, and its event
    would be lost. Its event is written as it is emitted. Never raises.

    >>> fold_after_exit_flush(object())  # not a live monitor: nothing to fold
    """
    global _fold_seconds
    try:
        if sys.is_finalizing():  # a record collected while modules are torn down
            return
        from inferwatch.core.drain_thread import drain_live

        if not drain_live(lambda picked: picked is monitor, _fold_seconds):
            _fold_seconds = 0.0
    except Exception:
        pass


atexit.register(_at_exit)
