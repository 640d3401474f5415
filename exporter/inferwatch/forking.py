"""Module-level locks that a forked child gets fresh, and which process a shadow's child is.

A lock another thread held when a model server forked (gunicorn, ``multiprocessing``) is
never released in the child, whose copy of that thread does not exist: the first use
there would wait for good. Each such lock is made anew in the child, right after the fork.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any


def renew_at_fork(namespace: dict[str, Any], name: str,
                  factory: Callable[[], Any] = threading.Lock) -> None:
    """Replace ``namespace[name]`` (a module's ``globals()``) with ``factory()`` in every
    child forked from now on; code that reads the global at each use gets the new one.

    >>> _lock = threading.Lock()
    >>> renew_at_fork(globals(), "_lock")
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: namespace.__setitem__(name, factory()))


def wait_for_system_thread_exit(thread: threading.Thread, deadline: float) -> None:
    """Wait (until the ``time.monotonic()`` `deadline`) for the system thread of an ended
    `thread` to be gone too, before a fork: ``join()`` returns as the thread lets go of its
    Python state, a moment before the system thread exits, and CPython 3.12's fork warning
    counts system threads (on Linux; elsewhere this returns at once).

    >>> done = threading.Thread(target=lambda: None)
    >>> done.start(); done.join()
    >>> wait_for_system_thread_exit(done, time.monotonic() + 1.0)
    """
    if thread.is_alive():
        return
    task = f"/proc/self/task/{thread.native_id}"
    while thread.native_id is not None and os.path.exists(task) \
            and time.monotonic() < deadline:
        time.sleep(0.0002)


def join_before_fork(threads: list[threading.Thread], seconds: float,
                     nudge: Callable[[], None] | None = None,
                     on_fault: Callable[[Exception], None] | None = None) -> None:
    """Wait at most `seconds` in all for `threads`, each told to stop, to end before a fork,
    and for their system threads to be gone (:func:`wait_for_system_thread_exit`). One that
    does not end in time is left running: the child renews every lock anyway. `nudge` is
    called between short joins, for threads that may have gone back to sleep past the stop;
    a fault joining one thread goes to `on_fault` and the others are still waited for.

    >>> worker = threading.Thread(target=lambda: None)
    >>> worker.start()
    >>> join_before_fork([worker], 1.0)
    >>> worker.is_alive()
    False
    """
    deadline = time.monotonic() + seconds
    for thread in threads:
        try:
            if nudge is None:
                thread.join(max(0.0, deadline - time.monotonic()))
            while thread.is_alive() and time.monotonic() < deadline:
                nudge()  # type: ignore[misc]  # only reached with a nudge
                thread.join(min(0.01, max(0.0, deadline - time.monotonic())))
            wait_for_system_thread_exit(thread, deadline)
        except Exception as exc:
            if on_fault is not None:
                on_fault(exc)


# The name of a process-mode shadow's child (core/shadow_process.py). Multiprocessing sets
# a spawned child's name first of all it prepares, before it runs the parent's __main__
# again or unpickles the challenger: the one mark in place before any of the app's code
# runs there, and it touches no environment variable (which other threads of the serving
# process would see change while a child starts). Here, in a leaf module, so that the
# multi-worker code can ask without loading the shadow machinery.
CHILD_NAME = "inferwatch-shadow"


def in_shadow_child() -> bool:
    """Whether this process is a shadow's child (``shadow(mode="process")``).

    Such a child serves no request: the app's module it imports to rebuild the challenger
    re-runs what a worker did as it loaded. It publishes nothing to the multi-worker
    directory, and a process-mode shadow made there (at the app's import) starts no
    child: a daemonic process may have none, and a challenger run in it in a thread
    instead would answer calls no one sees, and could hang or crash the very child that
    process mode keeps it out of.

    >>> in_shadow_child()
    False
    """
    return multiprocessing.current_process().name == CHILD_NAME
