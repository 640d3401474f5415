"""A client that goes away while a model's stream feeds the response, under a real uvicorn
and FastAPI: the request ends when the client left, and the model's stream is its stream,
whether the endpoint streams a sync generator (which Starlette steps in its threadpool,
where a client's leaving cannot stop the item being made) or an async one.

The model holds its next item until the test releases it, well after the client left: a
sync stream's request must not wait for it, nor lose its stream to the generator being
closed only later, by the garbage collector."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import inferwatch
from conftest import free_port_in
from inferwatch import faults
from inferwatch.serving.middleware import InstrumentMiddleware
from waiting import wait_until

PORTS = range(21500, 22000)
# How long the model goes on making its next item after the server saw the client leave.
# Not a wait for anything: the request must end at the disconnect, this much earlier than
# the app returns, so a request timed to the app's return is out by at least this much.
MODEL_OUTLIVES_CLIENT = 0.5
DEADLINE = 60.0
OUR_COMPONENTS = ("middleware", "stream", "request")


class Model:
    """What the test sees of the model: `waiting` once it holds back item `hold_at`, until
    `release`; `closed` once its generator has ended, closed or not."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()


class DisconnectSeen:
    """ASGI middleware inside the one under test: when the client's leaving reached the app
    (after it passed the middleware under test, which reads the same message first)."""

    def __init__(self, app: Any, seen: dict[str, float]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def watching() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.seen.setdefault("at", time.perf_counter())
            return message

        await self.app(scope, watching if scope["type"] == "http" else receive, send)


def streaming_app(registry: Any, model: Model, seen: dict[str, float]) -> FastAPI:
    def hold(i: int, hold_at: int) -> bool:
        if i != hold_at:
            return False
        model.waiting.set()
        return True

    @inferwatch.instrument(name="sync_llm", version="1", registry=registry)
    def sync_tokens(n: int, hold_at: int):
        try:
            for i in range(n):
                if hold(i, hold_at):
                    model.release.wait(DEADLINE)
                yield f"tok{i} "
        finally:
            model.closed.set()

    @inferwatch.instrument(name="async_llm", version="1", registry=registry)
    async def async_tokens(n: int, hold_at: int):
        try:
            for i in range(n):
                if hold(i, hold_at):
                    deadline = time.monotonic() + DEADLINE
                    while not model.release.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                yield f"tok{i} "
        finally:
            model.closed.set()

    app = FastAPI()

    @app.get("/sync")
    def sync_route(n: int, hold_at: int = -1) -> StreamingResponse:
        return StreamingResponse(sync_tokens(n, hold_at), media_type="text/plain")

    @app.get("/async")
    async def async_route(n: int, hold_at: int = -1) -> StreamingResponse:
        return StreamingResponse(async_tokens(n, hold_at), media_type="text/plain")

    app.add_middleware(DisconnectSeen, seen=seen)
    app.add_middleware(InstrumentMiddleware, routes={"/sync": "sync_llm", "/async": "async_llm"},
                       registry=registry)
    return app


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[int]:
    """`app` served by a real uvicorn on a loopback port, in a thread of this process (so
    that its clock is the test's, and the test can collect its garbage)."""
    port = free_port_in(PORTS)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
        assert server.started
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=DEADLINE)


def our_faults() -> float:
    counts = faults.internal_error_counts()
    return sum(counts.get(component, 0.0) for component in OUR_COMPONENTS)


@pytest.fixture
def served(scraper):
    model = Model()
    seen: dict[str, float] = {}
    with uvicorn_serving(streaming_app(scraper.registry, model, seen)) as port:
        yield port, model, seen, scraper


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("items_sent", [0, 1, 2])
def test_a_client_gone_mid_stream_ends_the_request_then_with_its_stream(served, kind,
                                                                        items_sent):
    port, model, seen, scraper = served
    name = f"{kind}_llm"
    faults_before = our_faults()
    connected_at = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(f"GET /{kind}?n=5&hold_at={items_sent} HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n\r\n".encode())
        received = b""
        last_sent = f"tok{items_sent - 1} ".encode()
        while items_sent and last_sent not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream early"
            received += chunk
        wait_until(model.waiting.is_set, what="the model to hold back its next item")
    # The socket is closed: the client is gone while the model makes its next item.
    wait_until(lambda: "at" in seen, what="the server to see the client leave")
    time.sleep(MODEL_OUTLIVES_CLIENT)
    model.release.set()

    def cancelled() -> bool:
        return scraper.value("inferwatch_requests_total", model=name,
                             outcome="cancelled") == 1

    wait_until(cancelled, what="the request to end")

    def generator_closed() -> bool:
        gc.collect()  # a sync generator Starlette left suspended is closed when collected
        return model.closed.is_set()

    wait_until(generator_closed, what="the model's generator to be closed")
    by_then = seen["at"] - connected_at

    def value(metric: str, **labels: str) -> float:
        return scraper.value(metric, model=name, **labels) or 0.0

    assert value("inferwatch_requests_total", outcome="cancelled") == 1
    assert value("inferwatch_requests_total", outcome="ok") == 0
    assert value("inferwatch_requests_total", outcome="error") == 0
    assert scraper.total("inferwatch_errors_total", model=name) == 0
    assert value("inferwatch_requests_in_flight") == 0
    # Ended when the client left, not when the model's thread handed back its next item.
    assert value("inferwatch_request_duration_seconds_count") == 1
    assert 0 < value("inferwatch_request_duration_seconds_sum") <= by_then
    # One stream, cancelled with the items the client got, counted once: the generator
    # closed afterwards adds nothing.
    assert value("inferwatch_stream_items_count") == 1
    assert value("inferwatch_stream_items_sum") == items_sent
    assert value("inferwatch_stream_first_item_seconds_count") == (1 if items_sent else 0)
    assert value("inferwatch_stream_item_interval_seconds_count") == max(items_sent - 1, 0)
    # The model's stream, up to the client's leaving, is the request's inference stage.
    assert value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
    assert 0 < value("inferwatch_stage_duration_seconds_sum", stage="inference") <= by_then
    assert our_faults() == faults_before


def test_a_sync_stream_the_client_reads_to_its_end_is_recorded_as_before(served):
    port, model, _, scraper = served
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET /sync?n=3 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert b" 200 " in received.split(b"\r\n", 1)[0]
    assert all(f"tok{i} ".encode() in received for i in range(3))
    wait_until(lambda: scraper.value("inferwatch_requests_total", model="sync_llm",
                                     outcome="ok") == 1, what="the request to end")
    assert model.closed.is_set()

    def value(metric: str, **labels: str) -> float:
        return scraper.value(metric, model="sync_llm", **labels) or 0.0

    assert value("inferwatch_requests_total", outcome="cancelled") == 0
    assert value("inferwatch_requests_in_flight") == 0
    assert value("inferwatch_stream_items_count") == 1
    assert value("inferwatch_stream_items_sum") == 3
    assert value("inferwatch_stream_first_item_seconds_count") == 1
    assert value("inferwatch_stream_item_interval_seconds_count") == 2
    assert value("inferwatch_output_characters_sum") == len("tok0 tok1 tok2 ")
    assert value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
