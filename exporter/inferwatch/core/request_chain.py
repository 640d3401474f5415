"""The requests opened with :meth:`Request.open` and never closed, ended once past their age.

A web handler that opens a request (``mon.request().open()``, or the middleware's) and never
closes it leaves each new request inside the last one, which is then never the innermost a
call finds. Each thread's or task's chain of such requests is kept here, oldest first, and
each open ends a few at its old end that are past their age (or past the chain's bound), so
the chain holds about the requests opened within their age, and no open sweeps a pile.
"""

from __future__ import annotations

import math
import sys
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from inferwatch import faults

if TYPE_CHECKING:
    from inferwatch.core.request import Request

# A handler that forgets close() opens each new request inside the last one, which is then
# never the innermost a call finds: those older ones are ended by the opens that follow
# (see OpenedChain). Past this many opened and not closed in one thread's or task's chain,
# the oldest is ended as cancelled however young: no code nests that many open requests,
# and the chain must not hold requests (and their records) by the ten thousand.
MAX_OPENED_UNCLOSED = 10_000
# What one open (or close) does for its chain at most: each open adds one request, so
# ending up to this many keeps the chain to those within their age, and no open ever
# sweeps a pile.
_CHAIN_STEPS_PER_OPEN = 4


def running_task() -> Any:
    """The asyncio or trio task running in this thread, if any."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return asyncio.current_task()
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_task()
        except RuntimeError:  # not in trio's thread
            pass
    return None


class OpenedChain:
    """The requests opened with :meth:`Request.open` in one thread or task while a chain of
    nested requests lasts there, oldest first. A request opens inside the innermost one
    still open, so a handler that forgets close() leaves each new request inside the last:
    the calls that end abandoned requests stop at the innermost, which is young, and never
    reach the older ones. Each open ends instead those at the old end past their age (a few
    per open, as many as it adds), so the chain keeps about the requests opened within
    their age, and no open sweeps a pile. One thread's or task's own: tasks started inside
    one request each nest their own requests, and are bounded each on its own. Held weakly:
    a request dropped (its task's context freed) is still ended by its finaliser."""

    __slots__ = ("entries", "task", "thread")

    def __init__(self, thread: int, task: int) -> None:
        self.entries: deque[weakref.ref[Request]] = deque()
        self.thread = thread
        self.task = task


def note_opened(request: Request, now: float) -> None:
    """`request` was just opened by :meth:`Request.open` at `now` (``time.perf_counter()``),
    with its deadline: end the
    requests at the old end of its thread's or task's chain that are past their age (or
    past the chain's bound), then add it at the new end. A request opened inside none is
    the innermost, which the calls check: its chain begins with the first opened in it."""
    parent = request._parent
    if parent is None:
        return
    chain = request._opened
    thread = threading.get_ident()
    task = id(running_task())
    if chain is None or chain.thread != thread or chain.task != task:
        chain = request._opened = OpenedChain(thread, task)
        # The request it opens in, itself opened by open() in no chain yet: the first of
        # the chain, or a handler's first forgotten request would stay open for good.
        if parent._opened is None and parent._deadline < math.inf and parent._open:
            parent._opened = chain
            chain.entries.append(weakref.ref(parent))
    else:
        _end_oldest_abandoned(chain.entries, now)
    chain.entries.append(weakref.ref(request))


def _end_oldest_abandoned(entries: deque[weakref.ref[Request]], now: float) -> None:
    """End as cancelled the oldest requests of a chain (see :class:`OpenedChain`) that are
    past their age, or beyond the chain's bound, and drop those ended already: at most a
    few, stopping at the first one within its age, as every request opened after it is."""
    for _ in range(_CHAIN_STEPS_PER_OPEN):
        try:
            oldest_entry = entries[0]
        except IndexError:
            return
        oldest = oldest_entry()
        full = len(entries) >= MAX_OPENED_UNCLOSED
        if oldest is not None and oldest._open and not full and \
                (now < oldest._deadline or oldest._ended_by_owner):
            return
        try:
            taken = entries.popleft()
        except IndexError:  # a close in another thread took it meanwhile
            return
        if taken is not oldest_entry:
            entries.appendleft(taken)
            return
        if oldest is None:
            continue
        # A block entered again (its deadline none) or a request its owner ends is only
        # dropped from the chain: nothing but its own exit ends it.
        if oldest._open and oldest._deadline < math.inf and not oldest._ended_by_owner:
            try:
                oldest.close(None, cancelled=True)
            except Exception as exc:
                faults.record("request", exc)
        if not oldest._open:
            _splice_out(oldest, entries)


def _splice_out(ended: Request, entries: deque[weakref.ref[Request]]) -> None:
    """Take the ended request `ended` out of the parent links of the next one of its chain,
    opened inside it: the walks pass over an ended request anyway, and the link would keep
    every ended request of the chain, and its record, for as long as the chain lives."""
    try:
        following = entries[0]()
    except IndexError:
        return
    # Not a block that joined `ended` (depth below zero): its link is what it joined.
    if following is not None and following._parent is ended and following._depth >= 0:
        following._parent = ended._parent


def drop_ended_newest(entries: deque[weakref.ref[Request]]) -> None:
    """A request of the chain ended: drop the ended ones at the chain's new end (a request
    closed as it should be is the newest), so that a chain inside a request left open for
    long does not keep one entry per request closed meanwhile."""
    for _ in range(_CHAIN_STEPS_PER_OPEN):
        try:
            newest_entry = entries.pop()
        except IndexError:
            return
        newest = newest_entry()
        if newest is not None and newest._open:
            entries.append(newest_entry)
            return
