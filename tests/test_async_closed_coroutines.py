"""An ``async def`` model's coroutine closed before it finished (``coro.close()`` by a caller
that gave up, or an event loop shut down with the call pending, its task's coroutine then
closed by the garbage collector) counts as ``cancelled``, as docs/shapes.md says and as a
sync function returning a coroutine already did: never as an error of type
``GeneratorExit``. The caller's close goes through unchanged: the coroutine ends, nothing
is raised out of ``close()``."""

from __future__ import annotations

import asyncio
import gc
import types
from collections.abc import Callable, Generator
from typing import Any

import pytest

import inferwatch
from request_totals import request_totals
from test_request_caught_model_errors import errors


@types.coroutine
def suspend() -> Generator[None, None, None]:
    """What an await on I/O does: hand control back to whatever drives the coroutine."""
    yield


async def slow_model(x: float) -> list[float]:
    while True:
        await suspend()


async def slow_model_with_id(x: float, request_id: str | None = None) -> list[float]:
    while True:
        await suspend()


def closed_after_first_step(call: Any) -> None:
    """Run the call to its first await, then give up on it as a caller does."""
    call.send(None)
    call.close()  # raises if the wrapper swallowed or replaced the GeneratorExit


def fast_path(model: Callable) -> Any:
    return model(1.0)


def slow_path(model: Callable) -> Any:
    return model(1.0, request_id="r-1")


@pytest.mark.parametrize("call", [fast_path, slow_path], ids=["fast_path", "slow_path"])
def test_async_model_closed_unfinished_counts_cancelled(registry: Any, call: Callable) -> None:
    model = inferwatch.instrument(slow_model_with_id, name="closed", version="1",
                                  registry=registry)
    mon = registry.monitor("closed", "1")
    for _ in range(3):
        closed_after_first_step(call(model))
    assert request_totals(mon) == {"ok": 0, "error": 0, "cancelled": 3, "in_flight": 0}
    assert errors(mon) == {}


def test_async_model_closed_inside_a_request_block_is_no_model_error(registry: Any) -> None:
    """A call joining an open block and closed unfinished is no failure of the model: the
    block's request says nothing of a GeneratorExit."""
    model = inferwatch.instrument(slow_model, name="joined", version="1", registry=registry)
    mon = registry.monitor("joined", "1")

    async def handler() -> None:
        with mon.request(request_id="r-7"):
            call = model(1.0)
            call.send(None)
            call.close()

    handler_call = handler()
    with pytest.raises(StopIteration):
        handler_call.send(None)
    assert request_totals(mon) == {"ok": 1, "error": 0, "cancelled": 0, "in_flight": 0}
    assert errors(mon) == {}


def shut_down_with_pending(make_call: Callable[[], Any], calls: int,
                           in_flight: Callable[[], float]) -> None:
    """Start `calls` tasks of `make_call()` on a loop of their own, each run to its await,
    then close the loop with them pending, as a common shutdown does; their coroutines are
    closed as they are collected."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # "Task was destroyed..."
    tasks = []

    async def fire() -> None:
        tasks.extend(loop.create_task(make_call()) for _ in range(calls))
        await asyncio.sleep(0)

    loop.run_until_complete(fire())
    assert in_flight() == calls
    loop.close()


@pytest.mark.parametrize("call", [fast_path, slow_path], ids=["fast_path", "slow_path"])
def test_loop_closed_with_async_calls_pending_counts_them_cancelled(registry: Any,
                                                                     call: Callable) -> None:
    async def waits_on_the_loop(x: float, request_id: str | None = None) -> list[float]:
        await asyncio.Event().wait()
        return [0.5]

    model = inferwatch.instrument(waits_on_the_loop, name="shutdown", version="1",
                                  registry=registry)
    mon = registry.monitor("shutdown", "1")
    shut_down_with_pending(lambda: call(model), 2, lambda: request_totals(mon)["in_flight"])
    gc.collect()
    assert request_totals(mon) == {"ok": 0, "error": 0, "cancelled": 2, "in_flight": 0}
    assert errors(mon) == {}


def test_async_model_turning_a_close_into_its_own_error_still_counts_that_error(
        registry: Any) -> None:
    """Only the close itself is a cancellation: a model whose cleanup raises instead fails."""
    async def cleanup_fails(x: float) -> list[float]:
        try:
            await suspend()
        except GeneratorExit:
            raise OSError("connection pool gone") from None
        return [0.5]

    model = inferwatch.instrument(cleanup_fails, name="cleanup", version="1",
                                  registry=registry)
    mon = registry.monitor("cleanup", "1")
    call = model(1.0)
    call.send(None)
    with pytest.raises(OSError, match="connection pool gone"):
        call.close()
    assert request_totals(mon) == {"ok": 0, "error": 1, "cancelled": 0, "in_flight": 0}
    assert errors(mon) == {"OSError": 1}
