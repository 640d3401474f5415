"""Streaming responses through the web middleware: a real uvicorn, SSE, client disconnects
(one of them leaving a model's sync stream open), and WSGI iterable bodies."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import time

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import inferwatch
from conftest import free_port
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from test_middleware import get, scrape, server

TOKENS = "".join(f"tok{i} " for i in range(5))


def wait_for(check, what: str, seconds: float = 120.0) -> None:
    """Poll `check` until it holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_then_disconnect(port: int, path: str, until: bytes) -> bytes:
    """Send a GET, read the streamed body until `until` shows up, then drop the connection."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while until not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream early"
            received += chunk
    return received


@pytest.mark.integration
def test_uvicorn_streaming_response_sse_and_a_client_that_disconnects(tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "web_streams:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    with server(args, port, tmp_path) as url:
        status, body = get(url + "/generate/5")
        assert status == 200 and body.decode() == TOKENS
        # The model's stream ran inside the HTTP request: one request, counted once.
        assert scrape(url, "inferwatch_requests_total", model="chat", outcome="ok") == 1
        assert scrape(url, "inferwatch_stream_items_sum", model="chat") == 5
        assert scrape(url, "inferwatch_stream_items_count", model="chat") == 1
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="chat") == 1
        assert scrape(url, "inferwatch_output_characters_sum", model="chat") == len(TOKENS)
        assert scrape(url, "inferwatch_stage_duration_seconds_count", model="chat",
                      stage="inference") == 1

        # Server-sent events from a plain generator: the middleware times the body itself.
        status, body = get(url + "/events/4")
        assert status == 200 and body.count(b"data: ") == 4
        assert scrape(url, "inferwatch_requests_total", model="sse", outcome="ok") == 1
        assert scrape(url, "inferwatch_stream_items_sum", model="sse") == 4
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="sse") == 1
        assert scrape(url, "inferwatch_stream_item_interval_seconds_count", model="sse") == 3

        # Clients that go away mid-stream: cancelled, never errors.
        read_then_disconnect(port, "/generate/100000", b"tok2 ")
        read_then_disconnect(port, "/events/100000", b"data: tok2")

        def both_cancelled() -> bool:
            return (scrape(url, "inferwatch_requests_total", outcome="cancelled", model="chat")
                    == 1 and scrape(url, "inferwatch_requests_total", outcome="cancelled",
                                    model="sse") == 1)

        wait_for(both_cancelled, "the disconnected streams to be counted")
        for model in ("chat", "sse"):
            assert scrape(url, "inferwatch_requests_total", model=model, outcome="error") == 0
            assert scrape(url, "inferwatch_requests_total", model=model, outcome="ok") == 1
            assert scrape(url, "inferwatch_errors_total", model=model) == 0
            assert scrape(url, "inferwatch_requests_in_flight", model=model) == 0
        assert scrape(url, "inferwatch_stream_items_count", model="chat") == 2
        assert scrape(url, "inferwatch_stream_items_sum", model="chat") >= 5 + 3


def test_a_sync_model_stream_left_open_by_a_disconnect_is_one_stream(scraper):
    # Starlette iterates a sync generator in a thread and, when the client goes away,
    # leaves it suspended: the model's stream ends only when it is collected, after the
    # request. The request keeps its body's figures; the model adds its tokens alone.
    @inferwatch.instrument(name="llm", version="1", count_tokens=lambda text: 1,
                           registry=scraper.registry)
    def tokens(n):
        for i in range(n):
            time.sleep(0.002)
            yield f"t{i} "

    app = FastAPI()

    @app.get("/chat")
    async def chat() -> StreamingResponse:
        return StreamingResponse(tokens(100_000), media_type="text/plain")

    app.add_middleware(InstrumentMiddleware, routes={"/chat": "llm"}, registry=scraper.registry)

    async def request_then_leave() -> None:
        three_chunks = asyncio.Event()
        chunks = 0

        async def receive() -> dict:
            await three_chunks.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal chunks
            if message["type"] == "http.response.body" and message.get("body"):
                chunks += 1
                if chunks == 3:
                    three_chunks.set()

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/chat",
                 "raw_path": b"/chat", "root_path": "", "query_string": b"", "headers": [],
                 "server": ("test", 80), "client": ("client", 1)}
        await app(scope, receive, send)

    asyncio.run(request_then_leave())
    gc.collect()
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 0
    assert scraper.value("inferwatch_stream_items_count") == 1
    assert scraper.value("inferwatch_stream_items_sum") >= 3
    assert scraper.value("inferwatch_stream_first_item_seconds_count") == 1
    assert scraper.value("inferwatch_tokens_total", kind="output") >= 3
    assert scraper.value("inferwatch_requests_in_flight") == 0


def wsgi_stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/event-stream")])

    def events():
        for i in range(environ.get("test.events", 4)):
            yield f"data: {i}\n\n".encode()
    return events()


def wsgi_list(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"one body"]


def call_wsgi(app, path: str, chunks: int | None = None, **environ) -> list[bytes]:
    """Drive a WSGI app as a server does: iterate (`chunks` of it, or all), then close()."""
    body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET", **environ},
               lambda status, headers, exc_info=None: None)
    received = []
    for chunk in body:
        received.append(chunk)
        if chunks is not None and len(received) == chunks:
            break
    body.close()
    return received


def test_wsgi_iterable_bodies_are_streams_and_an_early_close_is_cancelled(scraper):
    inferwatch.monitor("events", "1", registry=scraper.registry)
    app = WSGIInstrumentMiddleware(wsgi_stream, model="events", registry=scraper.registry)
    assert len(call_wsgi(app, "/events")) == 4
    assert len(call_wsgi(app, "/events", chunks=2, **{"test.events": 1000})) == 2
    plain = WSGIInstrumentMiddleware(wsgi_list, model="events", registry=scraper.registry)
    assert call_wsgi(plain, "/plain") == [b"one body"]
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1
    assert scraper.value("inferwatch_requests_total", outcome="error") == 0
    # The list body is no stream: two streams, 4 + 2 chunks.
    assert scraper.value("inferwatch_stream_items_count") == 2
    assert scraper.value("inferwatch_stream_items_sum") == 6
    assert scraper.value("inferwatch_stream_first_item_seconds_count") == 2
