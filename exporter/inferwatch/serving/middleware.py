"""Web middleware: each HTTP request to a model's route becomes one ``mon.request()``.

``InstrumentMiddleware`` is pure ASGI (FastAPI, Starlette, any ASGI app);
``WSGIInstrumentMiddleware`` wraps a WSGI app (Flask: ``app.wsgi_app``). Both map a route
to a model, open ``mon.request(request_id=<X-Request-ID>)`` around the request, and end it
when the last body chunk has been sent. The endpoint's instrumented model calls join that
request as its ``inference`` stage and give it its prediction, so latency, outcome, stages,
predictions, drift and the event log describe whole HTTP requests.

Outcomes: an exception is an error of its class; a 5xx response without one is an error
of type ``HTTP<status>`` (``HTTP500`` .. ``HTTP599``, so at most 100 values before the
error-type cap); anything else, 4xx included, is ok: a rejected input is the service
working, not the model failing. Once the last body chunk of a response below 500 has been
sent, the outcome is what the client got: an exception after it (a Starlette background
task that fails) is re-raised unchanged but is not the request's error. The response ends
with its last ``http.response.body`` (or ``http.response.zerocopysend``) message, or with
an ``http.response.pathsend`` (a file the server sends itself, where it offers that
extension). A WSGI body made by the server's ``wsgi.file_wrapper`` goes back to the
server as it is, so that it still sends the file itself (gunicorn by ``os.sendfile``, uWSGI
by the file's descriptor); that response ends when the server closes the body, and is one
plain response however it is iterated. Paths that match no model (and
``exclude_paths``, by default ``/metrics``) pass straight through. A fault of ours never
reaches the app: it is counted in ``inferwatch_internal_errors_total{component="middleware"}``.

Streaming responses (a body that comes in more than one chunk with bytes in it: an ASGI body
sent in several messages, server-sent events, a WSGI body that is an iterator rather than a
list, of no declared length) are also recorded as streams: time to first body byte
(``inferwatch_stream_first_item_seconds``), body chunks and the time between them. One chunk
of bytes is no stream, however many empty messages go with it (Starlette's
``BaseHTTPMiddleware`` adds one to every answer), nor are chunks of a gzip-encoded body that
hold only the member's framing (its header, an empty flush, its end), as Starlette's GZip
sends around such an answer; a body whose length the response declared (``Content-Length``:
a ``FileResponse``, in 64 KiB chunks) is no stream either. A client that disconnects before
the last chunk was handed to the server (or all the bytes of a declared ``Content-Length``
were, a zero-copy file's counted by its ``count`` or its size), or before the server took
all of a WSGI body, list or iterator, makes the request ``cancelled``, not an error (one
that read the whole answer and closed while the server's last ``send`` was under way got it:
ok). Under ASGI a cancelled request ends when the middleware saw the client go (its
``http.disconnect``, or a send that failed), however long the app takes to return after it.
When the body comes from an instrumented model's stream, the request records that stream's
figures instead. A sync generator that a server steps in a thread (Starlette's
``StreamingResponse``) is still open when its client goes, making its next item, and is
closed only when collected: the request ends without it, with the body's figures as that
stream's (none or one chunk too, as of the client's leaving) and the stream's time until
then as its ``inference`` stage, as an async stream cancelled with its request would give;
the model's stream adds only its tokens when it ends: one stream per request.

The WSGI middleware and its body wrappers are in :mod:`inferwatch.serving.wsgi_middleware`;
both middlewares route by :mod:`inferwatch.serving.routes`, read a request's ids with
:mod:`inferwatch.serving.request_ids` and end a request with
:mod:`inferwatch.serving.request_end`.

>>> import asyncio
>>> from inferwatch.core.registry import Registry
>>> registry = Registry()
>>> model = registry.monitor("fraud", "1.4.2")
>>> async def app(scope, receive, send):
...     await send({"type": "http.response.start", "status": 200, "headers": []})
...     await send({"type": "http.response.body", "body": b"ok"})
>>> wrapped = InstrumentMiddleware(app, routes={"/score/{id}": "fraud"}, registry=registry)
>>> async def receive():
...     return {"type": "http.request", "body": b""}
>>> async def send(message):
...     pass
>>> scope = {"type": "http", "path": "/score/7", "headers": [(b"x-request-id", b"r-17")]}
>>> asyncio.run(wrapped(scope, receive, send))
>>> model.drain(); model.state.counters["inferwatch_requests_total"]
{('ok',): 1.0, ('error',): 0.0, ('cancelled',): 0.0}
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from inferwatch import faults
from inferwatch.core.request import Request
from inferwatch.core.stream_objects import ItemClock
from inferwatch.core.streams import StreamWatch
from inferwatch.core.web_requests import ASGIRequest
from inferwatch.serving.request_end import COMPONENT, finish, outcome, stream_end
from inferwatch.serving.request_ids import (
    clean_request_id,
    follows_callers_trace,
    trace_id_from_traceparent,
)
from inferwatch.serving.routes import (
    NOT_PREDICTIONS,
    RECORDED_KEY,
    RouteMap,
    Routes,
    check_options,
)
from inferwatch.serving.wsgi_middleware import WSGIInstrumentMiddleware

if TYPE_CHECKING:
    from inferwatch.core.registry import Registry

# Body messages of a response; the one without more_body is its last.
_BODY = frozenset(("http.response.body", "http.response.zerocopysend"))
_PATHSEND = "http.response.pathsend"
# A response whose start announced trailers (ASGI's trailers extension: gRPC-web's status)
# ends with its last trailers message, not with its body.
_TRAILERS = "http.response.trailers"


def _within(path: str, root_path: str | None) -> str:
    """`path` below the app's mount point `root_path`, when it lies below it: ``/api`` is
    the root of ``/api/score``, not of ``/apiv2/score``.

    >>> _within("/api/score", "/api"), _within("/apiv2/score", "/api"), _within("/api", "/api")
    ('/score', '/apiv2/score', '/')
    """
    if not root_path or not path.startswith(root_path):
        return path
    rest = path[len(root_path):]
    if rest and not rest.startswith("/") and not root_path.endswith("/"):
        return path  # a sibling that only shares the prefix's letters
    return rest if rest.startswith("/") else "/" + rest


def _built_on_first_call() -> bool:
    """Whether the middleware is being made by Starlette (FastAPI) building its middleware
    stack, which it does on its first call, the lifespan startup. An error raised there
    reaches the server as the app's failure to speak the lifespan protocol, which uvicorn's
    default ``--lifespan auto`` takes for "lifespan unsupported": it serves anyway, and
    every request fails with that error. A subclass's ``__init__`` may come in between."""
    frame = sys._getframe(2)  # above this function and InstrumentMiddleware.__init__
    while frame is not None and frame.f_code.co_name == "__init__":
        frame = frame.f_back
    return frame is not None and frame.f_code.co_name == "build_middleware_stack"


async def _refuse(refused: Exception, scope: dict[str, Any], receive: Callable[..., Any],
                  send: Callable[..., Any]) -> None:
    """Fail the app's start-up with the error of its middleware's options: the server
    (uvicorn, gunicorn's UvicornWorker, hypercorn) then exits naming it. A server that skips
    the start-up (``--lifespan off``) gets the error on every request instead."""
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed",
                        "message": f"{type(refused).__name__}: {refused}"})
        return
    # A copy: the one error raised again and again would grow its traceback each time.
    raise copy.copy(refused)


def _is_cancellation(exc: BaseException) -> bool:
    """Whether `exc` is the event loop cancelling the request's task (asyncio's
    ``CancelledError``, or trio's ``Cancelled`` under hypercorn's trio worker or anyio on
    trio), which a server raises into the app when its client goes away: the classes an
    instrumented call counts as cancelled (``call_values.cancellations``)."""
    from inferwatch.core.call_values import cancellations

    return isinstance(exc, cancellations())


def _raised(exc: BaseException, status: int, ended_at: float | None) -> type | None:
    """The outcome of a request whose app raised `exc`: its class, unless the client had its
    whole answer below 500 first (a background task failed after it): then ok, as it was
    for the client. A 5xx answer sent before the exception (Starlette's error middleware
    answers, then re-raises) is that exception's."""
    if ended_at is not None and status < 500:
        return None
    return exc.__class__


# A gzip member's framing, which a compressor may send as chunks of their own, with none
# of the body's bytes in them (RFC 1952, RFC 1951): its header, an empty stored block (a
# flush with nothing new to flush), and its end: an empty last block (zlib's fixed-code
# one, or a stored one) and 8 bytes of CRC-32 and length.
_GZIP_MAGIC = b"\x1f\x8b\x08"
_GZIP_HEADER = 10
_EMPTY_STORED_BLOCK = b"\x00\x00\x00\xff\xff"
_EMPTY_LAST_BLOCKS = (b"\x03\x00", b"\x01\x00\x00\xff\xff")
_GZIP_TRAILER = 8
_FEXTRA, _FNAME, _FCOMMENT, _FHCRC, _FRESERVED = 4, 8, 16, 2, 0xE0


def _gzip_header_length(chunk: bytes) -> int | None:
    """How many bytes of `chunk` a gzip member's header takes, or None when `chunk` does not
    begin with a whole one.

    >>> import gzip
    >>> _gzip_header_length(gzip.compress(b"x", mtime=0)), _gzip_header_length(b"{}")
    (10, None)
    """
    if not chunk.startswith(_GZIP_MAGIC) or len(chunk) < _GZIP_HEADER:
        return None
    flags = chunk[3]
    if flags & _FRESERVED:
        return None
    at = _GZIP_HEADER
    if flags & _FEXTRA:
        if len(chunk) < at + 2:
            return None
        at += 2 + int.from_bytes(chunk[at:at + 2], "little")
    for field in (_FNAME, _FCOMMENT):
        if flags & field:
            end = chunk.find(b"\x00", at)
            if end < 0:
                return None
            at = end + 1
    if flags & _FHCRC:
        at += 2
    return at if at <= len(chunk) else None


class _GzipFraming:
    """Tells the chunks of a gzip-encoded body that carry some of its bytes from those of
    its framing alone. Starlette's GZip compresses a plain answer that comes in several
    messages (as an ``@app.middleware("http")`` re-sends every answer) in streaming mode:
    the answer and its member's end go out as two chunks, and a compressor that writes its
    header first sends that alone. Neither is an item of the body."""

    __slots__ = ("begun", "framed")

    def __init__(self) -> None:
        self.begun = False
        self.framed = True  # False once the body turned out not to begin as gzip does

    def carries_content(self, chunk: bytes, last: bool) -> bool:
        """Whether `chunk` (not empty), the last of the body or not, holds more than
        framing. A body that does not begin as gzip does counts every chunk."""
        if not self.framed:
            return True
        start = 0
        if not self.begun:
            self.begun = True
            header = _gzip_header_length(chunk)
            if header is None:
                self.framed = False
                return True
            start = header
        end = len(chunk)
        if last:
            end -= _GZIP_TRAILER
            if end < start:
                return True
            for block in _EMPTY_LAST_BLOCKS:
                if chunk.endswith(block, start, end):
                    end -= len(block)
                    break
            else:
                if end > start:  # the last block is in this chunk, with bytes in it
                    return True
        flushes, rest = divmod(end - start, len(_EMPTY_STORED_BLOCK))
        return bool(rest) or chunk[start:end] != _EMPTY_STORED_BLOCK * flushes


def _declared_body(headers: Any) -> tuple[bool, int | None, bool]:
    """Whether a response's headers declare its length (a body of a size known before it
    is sent, as a file's, is no stream however many chunks it comes in), that length when
    it is a number of bytes, and whether they declare the body gzip-encoded.

    >>> _declared_body([(b"content-length", b"5")])
    (True, 5, False)
    >>> _declared_body([(b"Content-Encoding", b"gzip"), (b"Content-Length", b"n/a")])
    (True, None, True)
    """
    sized = gzipped = False
    length: int | None = None
    for name, value in headers or ():
        name = bytes(name).lower()
        if name == b"content-length":
            sized = True
            text = bytes(value).strip()
            # Digits only: int() would take "+5", "5_0" or " 5 ", which no server sends as
            # a length; a length the server refuses is none the body could reach.
            length = int(text) if text.isdigit() and length is None else length
        elif name == b"content-encoding":
            gzipped = bytes(value).strip().lower() in (b"gzip", b"x-gzip")
    return sized, length, gzipped


def _still_owed(owed: int, chunk: Any) -> int:
    """The bytes of a declared length still owed once `chunk` is sent, never below none.

    >>> _still_owed(5, b"abc"), _still_owed(2, memoryview(b"abc")), _still_owed(4, None)
    (2, 0, 4)
    """
    try:
        return max(owed - len(chunk or b""), 0)
    except TypeError:  # a body that is no bytes: the server refuses it, not we
        return owed


def _zero_copy_owed(owed: int, message: dict[str, Any]) -> int:
    """The bytes of a declared length still owed once an ``http.response.zerocopysend`` is
    sent: its ``count``, or without one the file from ``offset`` (else the file's position)
    to its end. A file that cannot be measured leaves `owed` as it was.

    >>> _zero_copy_owed(10, {"file": 0, "count": 4}), _zero_copy_owed(3, {"count": 7})
    (6, 0)
    """
    count = message.get("count")
    if count is None:
        try:
            file = message["file"]
            fd = file if isinstance(file, int) else file.fileno()
            offset = message.get("offset")
            start = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else offset
            count = os.fstat(fd).st_size - start
        except Exception:  # no such file, no descriptor: the server refuses it, not we
            return owed
    if not isinstance(count, int) or isinstance(count, bool):
        return owed
    return max(owed - max(count, 0), 0)


def _streamed(body: ItemClock | None) -> ItemClock | None:
    """The body's clock when the body was a stream: more than one chunk with bytes in it.
    A body sent in several messages may still be one answer: Starlette's
    ``BaseHTTPMiddleware`` (any ``@app.middleware("http")``) re-sends every response as its
    bytes and then an empty last message, and a plain JSON answer is no stream (which would
    also make a model of ``task="auto"`` a generation model). As under WSGI."""
    return body if body is not None and body.items > 1 else None


def _is_item(chunk: bytes | None, gzip_framing: _GzipFraming | None, last: bool) -> bool:
    """Whether a body message's `chunk` is an item of the body: it has bytes, and under
    gzip more than the member's framing."""
    if not chunk:
        return False
    if gzip_framing is None:
        return True
    try:
        return gzip_framing.carries_content(chunk, last)
    except Exception as exc:  # a body that is no bytes: the server refuses it, not we
        faults.record(COMPONENT, exc)
        return True


def _end(request: Request, streams: StreamWatch, body: ItemClock | None, cancelled: bool,
         error_type: type | None, ended_at: float | None, left_at: float | None,
         raised: BaseException | None = None) -> None:
    """End the request once its app returned or raised: as of when its client left, if it
    did, else of its last body chunk. A model's stream still open then (a sync generator
    that the server steps in a thread, which the client's leaving cannot stop) is outlived
    by it: the body's figures, as of the client's leaving, are that stream's."""
    try:
        outlived = streams.outlive() if cancelled else []
        streams.close()
    except Exception as exc:
        faults.record(COMPONENT, exc)
        outlived = []
    stream_end(request, body if outlived else _streamed(body), cancelled, error_type,
               outlived, left_at)
    finish(request, error_type, ended_at if left_at is None else left_at, cancelled, raised)


class InstrumentMiddleware:
    """ASGI middleware recording each request to a model's route as one model request.

    `routes` maps exact paths or route templates (``/score/{id}``, ``/files/{p:path}``) to
    a model name or a ``(model, version)`` pair, or is a function of the ASGI scope that
    returns one (or None). `model` is the model of every other route. Without a version,
    the version instrumented last under that name. The request id comes from
    `request_id_header`; a W3C ``traceparent`` header gives the trace id when OpenTelemetry
    does not. Paths under `exclude_paths` are never recorded. Options that could never
    record a request raise here, or, where Starlette makes the middleware on its first call
    (``app.add_middleware``), fail the app's lifespan startup with that error.

    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> app.add_middleware(InstrumentMiddleware, routes={"/predict": ("fraud", "1.4.2")})
    """

    def __init__(self, app: Callable[..., Any], *, routes: RouteMap | None = None,
                 model: str | None = None, version: str | float | None = None,
                 request_id_header: str = "X-Request-ID",
                 exclude_paths: Sequence[str] = ("/metrics",),
                 registry: Registry | None = None) -> None:
        self.app = app
        # Options that could never record a request, kept when raising them here would not
        # stop the app (see _built_on_first_call): the app then refuses to start with them.
        self._refused: Exception | None = None
        try:
            version = check_options(routes, version, request_id_header)
            self._routes = Routes(routes, model, version, exclude_paths, registry)
            self._id_header = request_id_header.lower().encode("latin-1")
        except Exception as exc:
            if not _built_on_first_call():
                raise
            self._refused = exc

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if self._refused is not None:
            await _refuse(self._refused, scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begun = self._begin(scope)
        if begun is None:
            await self.app(scope, receive, send)
            return
        request, streams = begun
        status = 0
        ended_at = None
        disconnected = False
        # When the client was seen to go: the request ends then, not when the app returns
        # (a sync body's thread still making its next item keeps it waiting for that item).
        left_at: float | None = None
        trailers = False
        body: ItemClock | None = None  # set once the body comes in more than one message
        sized = False  # the response declared its length: a file, an answer, no stream
        # The bytes of the body still to come, once the response declared how many: the
        # client has its whole answer once the app handed them all over, whatever the app
        # sends after (an empty last message, as Starlette's FileResponse of a size that is a
        # multiple of its chunk and any ``@app.middleware("http")`` send).
        owed: int | None = None
        gzip_framing: _GzipFraming | None = None  # of a gzip-encoded body

        async def receive_and_watch() -> dict[str, Any]:
            nonlocal disconnected, left_at
            message = await receive()
            if message.get("type") == "http.disconnect" and ended_at is None:
                disconnected = True
                if left_at is None:
                    left_at = time.perf_counter()
            return message

        async def send_and_watch(message: dict[str, Any]) -> None:
            nonlocal status, ended_at, body, disconnected, trailers, left_at, sized, \
                gzip_framing, owed
            kind = message["type"]
            last = kind == _PATHSEND
            if kind in _BODY:
                more = message.get("more_body", False)
                if more and body is None and not sized:
                    body = ItemClock(request._start,
                                     request.monitor.settings.stream_interval_buckets)
                # As the app hands it over (the first is the first byte), while the client
                # is there to get it: an item a sync stream's thread made after the client
                # left is none of the stream it saw.
                if body is not None and not disconnected and (
                        kind != "http.response.body" or _is_item(message.get("body"),
                                                                 gzip_framing, not more)):
                    body.item()
                last = not more
                if owed is not None:
                    owed = _still_owed(owed, message.get("body")) if \
                        kind == "http.response.body" else _zero_copy_owed(owed, message)
                    last = last or owed == 0  # all it declared: the client has its answer
            elif kind == "http.response.start":
                try:
                    sized, owed, gzipped = _declared_body(message.get("headers"))
                    if message.get("trailers", False):
                        owed = None  # the answer ends with its trailers
                    gzip_framing = _GzipFraming() if gzipped else None
                except Exception as exc:  # odd headers: the server answers them, not we
                    faults.record(COMPONENT, exc)
            # Ended as the last of the response is handed over, before the server's send
            # returns: the client may take it all and close at once, and the server then
            # tells the app (its http.disconnect, hypercorn's failed or cancelled send)
            # before that send returns. A response the server was given whole is complete.
            complete = last and not trailers and ended_at is None
            if complete:
                ended_at = time.perf_counter()
            try:
                await send(message)
            except OSError:
                if not disconnected and ended_at is None:
                    disconnected = True
                    left_at = time.perf_counter()
                raise
            if complete:
                ended_at = time.perf_counter()  # as of when the server took it
            elif kind == "http.response.start":
                status = message["status"]
                trailers = bool(message.get("trailers", False))
            elif kind == _TRAILERS and not message.get("more_trailers", False):
                ended_at = time.perf_counter()

        try:
            await self.app(scope, receive_and_watch, send_and_watch)
        except BaseException as exc:
            # A client gone mid-response, or the request's task cancelled: not the app's error.
            cancelled = disconnected or (ended_at is None and _is_cancellation(exc))
            error_type = None if cancelled else _raised(exc, status, ended_at)
            _end(request, streams, body, cancelled, error_type, ended_at, left_at, exc)
            raise
        # Returned before its last body chunk: the server stopped it (a client disconnect).
        # A client gone before it (mid-upload, while the model ran) never got the answer
        # sent after all, which a server drops (uvicorn): the 400 FastAPI makes of the
        # broken body, or the prediction, went nowhere.
        cancelled = disconnected or (ended_at is None and status != 0)
        error_type = None if cancelled else outcome(status)
        _end(request, streams, body, cancelled, error_type, ended_at, left_at)

    def _begin(self, scope: dict[str, Any]) -> tuple[Request, StreamWatch] | None:
        try:
            if scope.get("method") in NOT_PREDICTIONS or scope.get(RECORDED_KEY):
                return None
            root_path = scope.get("root_path")
            path = _within(scope["path"], root_path) if root_path else scope["path"]
            monitor = self._routes.resolve(path, scope)
            if monitor is None:
                return None
            # A repeated header counts by its first value: the one the app reads
            # (Starlette's ``request.headers``, OpenTelemetry's propagator), so that ground
            # truth reported under the app's id joins this request.
            raw_id = raw_trace = None
            id_header = self._id_header
            for name, value in scope.get("headers", ()):
                if name == id_header:
                    if raw_id is None:
                        raw_id = value
                elif name == b"traceparent" and raw_trace is None:
                    raw_trace = value
            request_id = None if raw_id is None else clean_request_id(raw_id.decode("latin-1"))
            trace_id = None if raw_trace is None else trace_id_from_traceparent(
                raw_trace.decode("latin-1"))
            request = ASGIRequest.open(monitor, request_id)
            if trace_id is not None and request.record.trace_id is None and \
                    follows_callers_trace(monitor):
                request.record.trace_id = trace_id
            scope[RECORDED_KEY] = True
            return request, StreamWatch(request)
        except Exception as exc:
            faults.record(COMPONENT, exc)
            return None


__all__ = ["InstrumentMiddleware", "WSGIInstrumentMiddleware"]
