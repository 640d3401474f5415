"""README, "Each request to a model's route": a model call joins the HTTP request through
the handler's context. `asyncio.to_thread` carries it; `loop.run_in_executor` does not,
and submitting ``contextvars.copy_context().run`` with the call is the documented fix."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

import pytest

import inferwatch


def _offloads(pool: ThreadPoolExecutor):
    async def to_thread(model, x):
        return await asyncio.to_thread(model, x)

    async def executor(model, x):
        return await asyncio.get_running_loop().run_in_executor(pool, model, x)

    async def executor_with_context(model, x):
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, model, x)

    return {"to_thread": to_thread, "run_in_executor": executor,
            "run_in_executor with copy_context": executor_with_context}


@pytest.mark.parametrize("offload, requests", [
    ("to_thread", 1), ("run_in_executor with copy_context", 1), ("run_in_executor", 2)])
def test_a_model_called_off_the_event_loop_joins_the_request_its_context_carries(
        scraper, offload, requests):
    model = inferwatch.instrument(lambda rows: [0.7 for _ in rows], name="m", version="1",
                                  registry=scraper.registry)
    with ThreadPoolExecutor(1) as pool:
        call = _offloads(pool)[offload]

        async def app(scope, receive, send):
            await call(model, [[1.0]])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        wrapped = inferwatch.InstrumentMiddleware(app, model="m", registry=scraper.registry)

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            pass

        asyncio.run(wrapped({"type": "http", "method": "GET", "path": "/score",
                             "headers": []}, receive, send))
    assert scraper.value("inferwatch_requests_total", outcome="ok") == requests
    # Joined or not, one prediction of one row was made.
    assert scraper.value("inferwatch_batch_size_sum") == 1
