"""The event loop's helpers: blocking work run in a daemon thread, its result handed back
as a future of the loop, and the cancelling of every task left when the loop stops.

Apart from the server because they know nothing of HTTP or sockets; the server runs its
renders and password checks through one and its shutdown through the other.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_daemon_thread(fn: Callable[[], T], on_done: Callable[[], None] | None = None
                     ) -> asyncio.Future[T]:
    """Run `fn` in a new daemon thread; its result arrives as a future of the running loop.

    Daemon threads, not an executor: a collector hung forever must not block interpreter exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if on_done is not None:
            on_done()
        if future.done():
            return  # the waiter gave up (timeout, shutdown)
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def work() -> None:
        try:
            outcome, failed = fn(), False
        except BaseException as exc:
            outcome, failed = exc, True
        try:
            loop.call_soon_threadsafe(settle, outcome, failed)
        except RuntimeError:
            pass  # the loop closed while we worked: the server is gone

    threading.Thread(target=work, name="inferwatch-metrics-render", daemon=True).start()
    return future


def cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task still pending on the stopped `loop` and wait for them to end."""
    # Pending TLS handshakes live in tasks of their own; cancelling them closes their sockets.
    async def cancel_all() -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let aborted transports drop their sockets

    loop.run_until_complete(cancel_all())
    loop.run_until_complete(loop.shutdown_asyncgens())
