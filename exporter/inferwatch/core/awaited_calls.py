"""A sync callable's call that returned a coroutine: recorded when the coroutine finishes.

The call's work runs when its caller awaits what it returned (``lambda x:
client.apredict(x)``), so that is when it ends: the caller gets a coroutine of the same
name that awaits the model's and records the call as it finishes, fails or is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from inferwatch import faults


class AwaitedCall:
    """The end of a call whose sync callable returned a coroutine, recorded when the
    coroutine the caller got (:func:`recorded_when_awaited`) finishes: `on_result(value)`
    records the awaited value and gives back what the caller gets (a followed stream, or the
    value), `on_error(duration, exc)` records a failure. A coroutine the caller drops
    unawaited, or closes before it finished, ends as cancelled when it goes: the call was
    counted in flight when it began, and must not stay so.
    """

    __slots__ = ("ended", "on_error", "on_result", "start")

    def __init__(self, start: float, on_result: Callable[[Any], Any],
                 on_error: Callable[[float, BaseException], None]) -> None:
        self.start = start
        self.on_result = on_result
        self.on_error = on_error
        self.ended = False

    def returned(self, value: Any) -> Any:
        self.ended = True
        try:
            return self.on_result(value)
        except Exception as exc:
            faults.record("request", exc)
            return value

    def failed(self, exc: BaseException) -> None:
        if self.ended:
            return
        self.ended = True
        if isinstance(exc, GeneratorExit):
            exc = asyncio.CancelledError()  # closed unfinished: its caller gave up on it
        try:
            self.on_error(time.perf_counter() - self.start, exc)
        except Exception as fault:
            faults.record("request", fault)

    def __del__(self) -> None:
        if not self.ended:
            try:
                self.failed(asyncio.CancelledError())
            except BaseException:  # at interpreter shutdown, with modules half torn down
                pass


async def _awaited_and_recorded(awaitable: Any, call: AwaitedCall) -> Any:
    try:
        value = await awaitable
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.returned(value)


def recorded_when_awaited(awaitable: Any, call: AwaitedCall) -> Any:
    """A coroutine that awaits `awaitable`, the result of a sync callable, and records the
    call (`call`) when it finishes: the caller awaits it as it would have awaited what the
    model returned. It bears the name of the model's own coroutine, which a warning of one
    never awaited shows."""
    wrapper = _awaited_and_recorded(awaitable, call)
    if awaitable.__class__ is CoroutineType:
        wrapper.__name__ = awaitable.__name__
        wrapper.__qualname__ = awaitable.__qualname__
    return wrapper
