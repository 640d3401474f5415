"""Web middleware's late writes: a response that ends after its request was ended
elsewhere, a WSGI app call that runs past the abandoned bound, and real apps answering
HEAD, 204/304, trailers and exceptions after the response started."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import inferwatch
from inferwatch.core import request as request_module
from inferwatch.core import web_requests
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware


def outcomes(scraper) -> dict[str, float | None]:
    return {outcome: scraper.value("inferwatch_requests_total", outcome=outcome)
            for outcome in ("ok", "error", "cancelled")}


class Clock:
    """The requests' clock, moved on at will: ``time`` as request.py and web_requests.py
    read it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def perf_counter(self) -> float:
        return time.perf_counter() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(request_module, "time", clock)
    monkeypatch.setattr(web_requests, "time", clock)
    return clock


# --- a WSGI app call running past the abandoned bound ----------------------------------------
def test_a_wsgi_app_call_longer_than_the_abandoned_bound_is_not_abandoned(scraper, clock):
    """A slow batch endpoint calls the model after ten minutes: the request the middleware
    holds open around the call was ended as abandoned, and the call counted on its own."""
    model = inferwatch.instrument(lambda x: x * 2, name="batch", version="1",
                                  registry=scraper.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        model(1.0)
        clock.offset += request_module.ABANDONED_AFTER_SECONDS + 60
        result = model(2.0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(result).encode()]

    wrapped = WSGIInstrumentMiddleware(app, model="batch", registry=scraper.registry)
    body = wrapped({"REQUEST_METHOD": "POST", "PATH_INFO": "/batch"},
                   lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"4.0"
    body.close()
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 0}
    # Both model calls are stages of the one request.
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 2
    assert scraper.value("inferwatch_requests_in_flight") == 0


def test_a_wsgi_request_is_abandoned_again_once_its_app_call_returned(scraper, clock):
    """After the call, only the server's close() ends it, which may never come: the bound
    runs again from the call's end."""
    model = inferwatch.instrument(lambda x: x, name="batch", version="1",
                                  registry=scraper.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        clock.offset += request_module.ABANDONED_AFTER_SECONDS + 60
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = WSGIInstrumentMiddleware(app, model="batch", registry=scraper.registry)
    wrapped({"REQUEST_METHOD": "POST", "PATH_INFO": "/batch"},
            lambda status, headers, exc_info=None: None)  # a server that never closes it
    model(1.0)  # not yet past the bound from the call's end: joins the open request
    assert outcomes(scraper) == {"ok": 0, "error": 0, "cancelled": 0}
    clock.offset += request_module.ABANDONED_AFTER_SECONDS + 1
    model(2.0)  # now it is abandoned: this call counts as its own
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 1}


def test_a_file_the_server_sends_itself_past_the_abandoned_bound_is_not_abandoned(
        scraper, clock):
    """A download the server sends by sendfile for longer than the abandoned bound (a
    large file to a slow client): its request ends when the server closes the file, not
    as cancelled when a model call of the same thread looks for its open request."""
    from wsgiref.util import FileWrapper

    model = inferwatch.instrument(lambda x: x, name="files", version="1",
                                  registry=scraper.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 100))

    wrapped = WSGIInstrumentMiddleware(app, model="files", registry=scraper.registry)
    body = wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/file",
                    "wsgi.file_wrapper": FileWrapper},
                   lambda status, headers, exc_info=None: None)
    assert isinstance(body, FileWrapper)  # the server's own object: it sends the file
    clock.offset += request_module.ABANDONED_AFTER_SECONDS + 60
    model(1.0)  # still sending: the call joins the open request
    assert outcomes(scraper) == {"ok": 0, "error": 0, "cancelled": 0}
    body.close()  # the server is done with the file
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 0}
    assert scraper.value("inferwatch_requests_in_flight") == 0


# --- trailers ------------------------------------------------------------------------------
def trailers_app(model: Callable[[float], float]) -> Callable[..., Any]:
    """A gRPC-web-like endpoint: body, then its status in the trailers (ASGI extension)."""

    async def app(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/grpc-web")]})
        await send({"type": "http.response.body", "body": str(model(1.0)).encode()})
        await send({"type": "http.response.trailers",
                    "headers": [(b"grpc-status", b"0")], "more_trailers": False})

    return app


def serve_once(wrapped: Callable[..., Any], send: Callable[..., Any]) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/Score", "method": "POST", "headers": [],
             "extensions": {"http.response.trailers": {}}}
    anyio.run(wrapped, scope, receive, send)


def test_a_client_gone_before_the_trailers_is_cancelled(scraper):
    """The client never got the trailers (the call's status): the request was ok."""
    model = inferwatch.instrument(lambda x: x, name="grpc", version="1",
                                  registry=scraper.registry)

    async def send(message: dict) -> None:
        if message["type"] == "http.response.trailers":
            raise OSError("connection reset by peer")

    wrapped = InstrumentMiddleware(trailers_app(model), model="grpc", registry=scraper.registry)
    with pytest.raises(OSError):
        serve_once(wrapped, send)
    assert outcomes(scraper) == {"ok": 0, "error": 0, "cancelled": 1}
    assert scraper.total("inferwatch_errors_total") == 0


def test_a_response_with_trailers_ends_with_them(scraper):
    model = inferwatch.instrument(lambda x: x, name="grpc", version="1",
                                  registry=scraper.registry)
    sent: list[str] = []

    async def send(message: dict) -> None:
        sent.append(message["type"])

    wrapped = InstrumentMiddleware(trailers_app(model), model="grpc", registry=scraper.registry)
    serve_once(wrapped, send)
    assert sent == ["http.response.start", "http.response.body", "http.response.trailers"]
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 0}


def test_a_response_announcing_trailers_that_never_come_is_cancelled(scraper):
    """An app that stopped (its server cancelled it) between the body and the trailers."""
    model = inferwatch.instrument(lambda x: x, name="grpc", version="1",
                                  registry=scraper.registry)

    async def app(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": []})
        await send({"type": "http.response.body", "body": str(model(1.0)).encode()})
        raise asyncio.CancelledError  # as the server cancels its task

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    wrapped = InstrumentMiddleware(app, model="grpc", registry=scraper.registry)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(wrapped({"type": "http", "path": "/Score", "method": "POST",
                             "headers": []}, receive, send))
    assert outcomes(scraper) == {"ok": 0, "error": 0, "cancelled": 1}
