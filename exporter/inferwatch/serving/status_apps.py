"""The status page as WSGI and ASGI apps, to mount beside the metrics apps in a web app.

Mount one wherever the page should live (``/status``); its links are relative query
strings (``?model=...&version=...``), so they work under any mount point. The page renders
in a worker thread (ASGI) and at most `max_concurrency` at once; more get a fast 503.
Put the same authentication in front of it as in front of ``/metrics``.

>>> from wsgiref.util import setup_testing_defaults
>>> from inferwatch.core.registry import Registry
>>> registry = Registry()
>>> registry.monitor("fraud", "1").record_call(0.01, 0.5)
>>> environ = {}
>>> setup_testing_defaults(environ)
>>> seen = []
>>> body = b"".join(make_status_wsgi_app(registry)(environ, lambda s, h: seen.append(s)))
>>> seen, b"fraud" in body
(['200 OK'], True)
>>> registry.close()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from inferwatch.serving.exposition import (
    AsgiApp,
    WsgiApp,
    _answer_lifespan,
    _drain_request_body,
    _method_not_allowed,
    _status_line,
)

BUSY = (503, b"busy: too many status pages rendering; retry later\n",
        {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"})


def _pages(registry: Any, config: Any) -> Any:
    from inferwatch.report.status import StatusPages

    return StatusPages(registry, config=config, metrics_link=None)


def _slots(max_concurrency: int) -> threading.BoundedSemaphore:
    # 0 would answer every request 503 forever; a negative count a bare semaphore error.
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
            or max_concurrency < 1:
        raise ValueError("inferwatch status app: max_concurrency must be a whole number >= 1, "
                         f"got {max_concurrency!r}")
    return threading.BoundedSemaphore(max_concurrency)


def _capped(pages: Any, slots: threading.BoundedSemaphore
            ) -> Callable[[str], tuple[int, bytes, dict[str, str]]]:
    def respond(query: str) -> tuple[int, bytes, dict[str, str]]:
        if not slots.acquire(blocking=False):
            return BUSY[0], BUSY[1], dict(BUSY[2])
        try:
            return pages.respond(query)
        finally:
            slots.release()

    return respond


def _query_text(query: str | bytes) -> str:
    r"""The query string as text. Its bytes are UTF-8 (RFC 3986, and what a client sends a
    name like ``café`` in unescaped), but arrive as bytes (ASGI) or as latin-1 text (WSGI,
    PEP 3333): read as latin-1, ``?model=café`` asked for the model "cafÃ©", a 404.

    >>> _query_text(b"model=caf\xc3\xa9"), _query_text("model=caf\xc3\xa9")
    ('model=café', 'model=café')
    """
    if isinstance(query, str):
        try:
            query = query.encode("latin-1")
        except UnicodeEncodeError:
            return query  # a server that decoded it already
    return query.decode("utf-8", "replace")


def make_status_wsgi_app(registry: Any = None, *, config: Any = None,
                         max_concurrency: int = 2) -> WsgiApp:
    """A WSGI app answering the status pages of `registry` (inferwatch's default when None);
    `config` is the generator config whose thresholds the alert conditions use."""
    respond = _capped(_pages(registry, config), _slots(max_concurrency))

    def status_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            status, body, headers = _method_not_allowed(method)
        else:
            status, body, headers = respond(_query_text(environ.get("QUERY_STRING", "")))
        headers["Content-Length"] = str(len(body))
        start_response(_status_line(status), list(headers.items()))
        return [] if method == "HEAD" else [body]

    return status_app


def make_status_asgi_app(registry: Any = None, *, config: Any = None,
                         max_concurrency: int = 2) -> AsgiApp:
    """An ASGI app answering the status pages; rendering runs in a worker thread, so the
    event loop serving the model never waits for it."""
    respond = _capped(_pages(registry, config), _slots(max_concurrency))

    async def status_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                         send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
            return
        if scope["type"] != "http" or not await _drain_request_body(receive):
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            status, body, headers = _method_not_allowed(method)
        else:
            query = _query_text(scope.get("query_string", b""))
            loop = asyncio.get_running_loop()
            status, body, headers = await loop.run_in_executor(None, respond, query)
        headers["Content-Length"] = str(len(body))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return status_app
