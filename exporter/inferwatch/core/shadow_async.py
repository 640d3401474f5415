"""An async challenger, awaited on its shadow worker thread's own event loop.

A worker thread that calls an ``async def`` challenger gets a coroutine back: :func:`awaited`
runs it on a loop kept for that thread (cancelled past the shadow's timeout: unlike a thread,
a coroutine can be stopped), and :func:`close_thread_loop` closes that loop as the thread
ends. A ``TimeoutError`` the challenger raises itself comes out as :class:`ChallengersOwn`,
told apart from the wait's own. Apart from :mod:`inferwatch.core.shadow_runtime` because it is
the bookkeeping of event loops alone; the fork hook in :mod:`inferwatch.core.shadow_lifetime`
moves a forked child's copies of the parent's loops to ``inherited_loops``.

>>> async def answer():
...     return 42
>>> awaited(answer(), timeout=10.0)
42
>>> close_thread_loop()
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from inferwatch import faults

# Each worker thread's event loop for async challengers, by thread id, closed when the
# thread ends: left to the garbage collector, a loop may be finalised after its own sockets,
# and fail. A forked child keeps its parent's loops referenced and never closes them: their
# epoll instance is shared with the parent, whose registrations closing would remove.
loops: dict[int, asyncio.AbstractEventLoop] = {}
inherited_loops: list[asyncio.AbstractEventLoop] = []


def close_thread_loop() -> None:
    """Close the calling worker thread's event loop, if it ever awaited a challenger."""
    loop = loops.pop(threading.get_ident(), None)
    if loop is not None:
        try:
            loop.close()
        except Exception as exc:
            faults.record("shadow", exc)


class ChallengersOwn(Exception):
    """A TimeoutError an async challenger raised itself, told apart from wait_for's."""

    def __init__(self, kind: type) -> None:
        super().__init__(kind.__name__)
        self.kind = kind


async def _own_timeouts(awaitable: Any) -> Any:
    try:
        return await awaitable
    except asyncio.TimeoutError as exc:
        raise ChallengersOwn(type(exc)) from exc


def awaited(awaitable: Any, timeout: float) -> Any:
    """An async challenger's result, awaited on the worker thread's own event loop; past
    `timeout` it is cancelled (unlike a thread, a coroutine can be stopped)."""
    ident = threading.get_ident()
    loop = loops.get(ident)
    if loop is None or loop.is_closed():
        loop = loops[ident] = asyncio.new_event_loop()
    return loop.run_until_complete(asyncio.wait_for(_own_timeouts(awaitable), timeout))
