"""A ``with mon.request()`` block opened inside a ``@contextmanager`` or
``@asynccontextmanager`` helper (FastAPI makes an async ``Depends`` generator one) belongs to
the ``with`` that entered the helper: the model calls in that ``with`` body join it, so each
request counts once, with its ``inference`` stage and its prediction, and its request id is
joined by ``record_outcome``. Such a helper pauses at its ``yield`` like a streaming
generator does, yet it is no stream: a streaming generator that uses the helper still keeps
its request to itself while its consumer runs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import pytest
import uvicorn
from fastapi import Depends, FastAPI
from fastapi import Request as HTTPRequest

import inferwatch
from conftest import free_port
from request_totals import request_totals

DEADLINE = 60.0


def wait_for(check: Callable[[], bool], what: str, seconds: float = DEADLINE) -> None:
    """Poll `check` until it holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def stage_counts(mon: Any) -> dict[str, int]:
    mon.drain()
    stages = mon.state.histograms.get("inferwatch_stage_duration_seconds", {})
    return {key[0]: histogram.count for key, histogram in stages.items() if histogram.count}


def outcomes_joined(mon: Any, request_ids: list[str]) -> tuple[int, float]:
    """Report ground truth for each of `request_ids`: (joined, unmatched) once drained."""
    for request_id in request_ids:
        mon.record_outcome(request_id, 1.0)
    mon.drain()
    delays = mon.state.histograms.get("inferwatch_outcome_delay_seconds", {})
    unmatched = mon.state.counters.get("inferwatch_outcomes_unmatched_total", {})
    return sum(h.count for h in delays.values()), sum(unmatched.values())


def fraud_model(registry: Any) -> tuple[Callable, Callable, Any]:
    """A sync and an async instrumented model of one monitor, and the monitor."""
    def score(x: list[float]) -> list[float]:
        return [0.9]

    async def ascore(x: list[float]) -> list[float]:
        await asyncio.sleep(0)
        return [0.9]

    model = inferwatch.instrument(score, name="fraud", version="1", registry=registry)
    amodel = inferwatch.instrument(ascore, name="fraud", version="1", registry=registry)
    return model, amodel, registry.monitor("fraud", "1")


def test_block_in_a_contextmanager_helper_is_joined_by_the_with_body(registry: Any) -> None:
    model, _, mon = fraud_model(registry)

    @contextlib.contextmanager
    def scored_request(request_id: str) -> Iterator[Any]:
        with mon.request(request_id=request_id) as r:
            yield r

    ids = [f"s{i}" for i in range(3)]
    for request_id in ids:
        with scored_request(request_id) as r:
            with r.stage("preprocess"):
                pass
            model([1.0])
            r.action("allowed")
    assert request_totals(mon) == {"ok": 3, "error": 0, "cancelled": 0, "in_flight": 0}
    assert stage_counts(mon) == {"preprocess": 3, "inference": 3}
    assert mon.state.counters["inferwatch_actions_total"] == {("allowed",): 3.0}
    assert outcomes_joined(mon, ids) == (3, 0)


def test_block_in_an_asynccontextmanager_helper_is_joined_by_the_with_body(
        registry: Any) -> None:
    model, amodel, mon = fraud_model(registry)

    @contextlib.asynccontextmanager
    async def scored_request(request_id: str) -> AsyncIterator[Any]:
        with mon.request(request_id=request_id) as r:
            yield r

    ids = [f"a{i}" for i in range(4)]

    async def handle(request_id: str, call: Callable) -> None:
        async with scored_request(request_id) as r:
            with r.stage("preprocess"):
                await asyncio.sleep(0)
            result = call([1.0])
            if asyncio.iscoroutine(result):
                await result

    async def serve() -> None:
        # Concurrent tasks, each its own request, half of them calling the sync model.
        await asyncio.gather(*(handle(request_id, (amodel, model)[i % 2])
                               for i, request_id in enumerate(ids)))

    asyncio.run(serve())
    assert request_totals(mon) == {"ok": 4, "error": 0, "cancelled": 0, "in_flight": 0}
    assert stage_counts(mon) == {"preprocess": 4, "inference": 4}
    assert outcomes_joined(mon, ids) == (4, 0)


def test_block_in_a_helper_entered_through_other_helpers_and_exit_stacks(
        registry: Any) -> None:
    """What FastAPI does with an async dependency: the generator made a context manager,
    wrapped in another generator's context manager, entered through an AsyncExitStack."""
    model, amodel, mon = fraud_model(registry)

    @contextlib.contextmanager
    def scored_request(request_id: str) -> Iterator[Any]:
        with mon.request(request_id=request_id) as r:
            yield r

    @contextlib.contextmanager
    def timed_request(request_id: str) -> Iterator[Any]:
        with scored_request(request_id) as r, r.stage("setup"):
            yield r

    async def scored_dependency(request_id: str) -> AsyncIterator[Any]:
        with mon.request(request_id=request_id) as r:
            yield r

    @contextlib.asynccontextmanager
    async def shielded(manager: Any) -> AsyncIterator[Any]:
        async with manager as value:
            yield value

    with timed_request("n1"):
        model([1.0])
    with contextlib.ExitStack() as stack:
        stack.enter_context(scored_request("n2"))
        model([1.0])

    async def handler() -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(
                shielded(contextlib.asynccontextmanager(scored_dependency)("n3")))
            await amodel([1.0])

    asyncio.run(handler())
    assert request_totals(mon) == {"ok": 3, "error": 0, "cancelled": 0, "in_flight": 0}
    assert stage_counts(mon) == {"setup": 1, "inference": 3}
    assert outcomes_joined(mon, ["n1", "n2", "n3"]) == (3, 0)


def test_streaming_generator_using_a_helper_keeps_its_request_from_its_consumer(
        registry: Any) -> None:
    model, _, mon = fraud_model(registry)

    @contextlib.contextmanager
    def scored_request(request_id: str) -> Iterator[Any]:
        with mon.request(request_id=request_id) as r:
            yield r

    def stream() -> Iterator[int]:
        with scored_request("stream") as r:
            for step in range(3):
                with r.stage("step"):
                    model([1.0])  # the generator's own calls join its request
                yield step

    for _ in stream():
        model([2.0])  # the consumer's calls meanwhile are requests of their own
    assert request_totals(mon) == {"ok": 4, "error": 0, "cancelled": 0, "in_flight": 0}
    assert stage_counts(mon) == {"step": 3, "inference": 3}


def test_async_streaming_generator_using_a_helper_keeps_its_request_from_its_consumer(
        registry: Any) -> None:
    _, amodel, mon = fraud_model(registry)

    @contextlib.asynccontextmanager
    async def scored_request(request_id: str) -> AsyncIterator[Any]:
        with mon.request(request_id=request_id) as r:
            yield r

    async def stream() -> AsyncIterator[int]:
        async with scored_request("stream") as r:
            for step in range(3):
                with r.stage("step"):
                    await amodel([1.0])
                yield step

    async def consume() -> None:
        async for _ in stream():
            await amodel([2.0])

    asyncio.run(consume())
    assert request_totals(mon) == {"ok": 4, "error": 0, "cancelled": 0, "in_flight": 0}
    assert stage_counts(mon) == {"step": 3, "inference": 3}


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """`app` served by a real uvicorn on a loopback port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


async def scored_request(request: HTTPRequest) -> AsyncIterator[Any]:
    """An async FastAPI dependency opening the request of the app's model."""
    with request.app.state.monitor.request(request_id=request.headers["x-order-id"]) as r:
        yield r


ScoredRequest = Annotated[Any, Depends(scored_request)]


def test_fastapi_async_dependency_opening_the_request_under_uvicorn(registry: Any) -> None:
    model, amodel, mon = fraud_model(registry)
    app = FastAPI()
    app.state.monitor = mon

    @app.get("/score")
    async def score(r: ScoredRequest) -> dict:
        with r.stage("preprocess"):
            pass
        return {"score": (await amodel([1.0]))[0]}

    @app.get("/score-sync")
    def score_sync(r: ScoredRequest) -> dict:
        # A def endpoint runs in the threadpool with a copy of the request's context,
        # which holds the request the async dependency opened.
        with r.stage("preprocess"):
            pass
        return {"score": model([1.0])[0]}

    ids = [f"o{i}" for i in range(6)]
    with uvicorn_serving(app) as url:
        for i, request_id in enumerate(ids):
            path = ("/score", "/score-sync")[i % 2]
            call = urllib.request.Request(url + path, headers={"X-Order-ID": request_id})
            with urllib.request.urlopen(call, timeout=DEADLINE) as response:
                assert response.status == 200
        wait_for(lambda: request_totals(mon)["ok"] >= len(ids), "the requests to end")
    assert request_totals(mon) == {"ok": 6, "error": 0, "cancelled": 0, "in_flight": 0}
    assert stage_counts(mon) == {"preprocess": 6, "inference": 6}
    assert outcomes_joined(mon, ids) == (6, 0)
