"""What outlives any one shadow: this process's live shadows, and their fate at exit and fork.

A :class:`~inferwatch.core.shadow_runtime.Shadow` adds itself to :data:`live_shadows` and
takes itself out as it closes; :data:`wiring_lock` is held while a shadow is set on a
champion or taken off it. As the interpreter exits, every live shadow is closed, so that the
calls still queued are counted as dropped, and so are the shadows of the models a
``push.on_exit`` job pushes as it ends (see :func:`settle_before_push`); in a forked
child, each live shadow starts over with an empty queue, and :data:`pid` (read on the
request path) is this process's id again. Apart from :mod:`inferwatch.core.shadow_runtime`
because this is process-wide state, not one shadow's.

The fork hook rebinds :data:`wiring_lock` (a thread of the parent may have held it at the
fork) and :data:`pid`: read them as attributes of this module at the time of use
(``shadow_lifetime.wiring_lock``), never imported by name, which would keep the parent's.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from inferwatch import faults

# Fork hooks run in the order they were registered: these modules register theirs before
# this one does (below), so that in a forked child the locks of monitors, registries,
# requests and streams are renewed before any shadow starts over.
from inferwatch.core import monitor, registry, request, streams  # noqa: F401
from inferwatch.core.shadow_async import inherited_loops, loops

if TYPE_CHECKING:
    from inferwatch.core.shadow_runtime import Shadow

# How long close() waits for a challenger's call under way to end before counting it as
# dropped (shutdown): long enough for a call nearly done, short enough for a server's exit.
CLOSE_WAIT_SECONDS = 1.0

live_shadows: weakref.WeakSet[Shadow] = weakref.WeakSet()
# Held while a shadow is set on a champion or taken off it (see shadow()).
wiring_lock = threading.Lock()


def _close_all_at_exit() -> None:
    """Close every live shadow as the interpreter exits: the calls still queued would never
    be answered (thread workers are daemons, process workers stop), and a final push or
    publish at exit would show sampled calls neither compared nor dropped. close() counts
    them as dropped (``shutdown``); a call under way has until ``CLOSE_WAIT_SECONDS`` from
    now (one wait for all the shadows) to end compared, else it counts as ``shutdown``
    too, since the interpreter stops a daemon thread where it is."""
    deadline = time.monotonic() + CLOSE_WAIT_SECONDS
    for live in list(live_shadows):
        live.close_by(deadline)


def settle_before_push(monitors: Iterable[object], *, close: bool,
                       wait: float | None = None) -> None:
    """Give the live shadows of `monitors` (a champion's or a challenger's) until `wait`
    seconds from now (``CLOSE_WAIT_SECONDS`` when None; one wait for all of them) to answer
    the calls queued so far, so that a push holds them compared. With `close` (a job has
    ended), each is then closed as the interpreter's exit closes it: what is still queued
    or under way counts as dropped (``shutdown``), never pushed as sampled and neither
    compared nor dropped. Without it (a push in the middle of a job), they run on, and a
    call not answered in time counts at a later push. Never raises."""
    try:
        watched = {id(monitor) for monitor in monitors}
        shadows = [shadow for shadow in list(live_shadows)
                   if id(shadow.champion_monitor) in watched or id(shadow.monitor) in watched]
        if not shadows:
            return
        deadline = time.monotonic() + (CLOSE_WAIT_SECONDS if wait is None else wait)
        # Waited on one after the other, but they all run meanwhile: the wait is one bound.
        for shadow in shadows:
            try:
                shadow.flush(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                faults.record("shadow", exc)
        if close:
            for shadow in shadows:
                shadow.close_by(deadline)
    except Exception as exc:
        faults.record("shadow", exc)


class _CloseFirst:
    """The exit hook moved first in line by each new shadow: an object of its own, so that
    moving it leaves the one registered with this module in place. A shadow made during the
    exit (in an exit hook) moves it out of the hooks the exit still runs: the fixed one
    then closes the shadows all the same, later in line."""

    def __call__(self) -> None:
        _close_all_at_exit()


_moving_hook = _CloseFirst()


def close_at_exit_first() -> None:
    """Put the exit hook that closes every live shadow first in line again. Never raises."""
    # atexit runs the last registered first: registered again with each shadow, this runs
    # before the exit hooks set up before it (a multi-worker publisher's last publish, a
    # job's final push), which then see the shadows' calls all accounted for.
    try:
        atexit.unregister(_moving_hook)
        atexit.register(_moving_hook)
    except Exception as exc:
        faults.record("shadow", exc)


atexit.register(_close_all_at_exit)


# This process's id, kept by the fork hook: os.getpid() is a system call, too dear for the
# request path.
pid = os.getpid()


def _after_fork() -> None:
    global pid, wiring_lock
    pid = os.getpid()
    wiring_lock = threading.Lock()  # a thread of the parent may have held it at the fork
    inherited_loops.extend(loops.values())  # the parent's worker threads do not run here
    loops.clear()
    for shadow in list(live_shadows):
        shadow.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
