"""The web middleware's requests: ``HTTPRequest`` (the WSGI middleware's, one per HTTP
request) and ``ASGIRequest`` (the ASGI middleware's, which its owner always ends).

Apart from the request because only the middleware opens them: a handler's own
``mon.request()`` block joins one rather than opening a second request (see
``Request._http``), and their open skips the checks that a block any thread may reach needs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.core.request import (
    ABANDONED_AFTER_SECONDS,
    Request,
    _current,
    current_request,
)
from inferwatch.core.request_chain import note_opened

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor


class HTTPRequest(Request):
    """The web middleware's request for one HTTP request: a handler's own
    ``mon.request()`` block of the same model inside it joins it rather than opening a
    second request, so that one HTTP request is counted once."""

    __slots__ = ()
    _http = True

    @classmethod
    def open(cls, monitor: Monitor, request_id: str | None = None) -> Request:
        """A new request, already entered, as :meth:`Request.open` makes one.

        What ``__enter__`` guards against cannot happen to an object no other thread or
        block can reach yet (entered twice, entered again, a block of its own model to
        join): the middleware opens one per HTTP request, so it skips those checks and
        their locks.

        >>> from inferwatch.core.registry import Registry
        >>> mon = Registry().monitor("fraud", "1")
        >>> request = HTTPRequest.open(mon, "r-17"); request.close(None)
        >>> mon.drain(); mon.state.counters["inferwatch_requests_total"][("ok",)]
        1.0
        """
        request = cls(monitor, request_id)
        parent = current_request()
        start = time.perf_counter()
        request._start = start
        request._deadline = start + ABANDONED_AFTER_SECONDS
        request._parent = parent
        request._entered = True
        request._open = True
        monitor.call_started()
        _current.set(request)
        # A server that never closes a body leaves each HTTP request of its thread open
        # inside the last: the chain ends those past their age, as Request.open's does.
        request._opened = None if parent is None else parent._opened
        try:
            note_opened(request, time.perf_counter())
        except Exception as exc:
            faults.record("request", exc)
        record = request.record
        record.started_at = time.time()
        if monitor.traces:
            request._take_trace(record)
        return request

    def held(self) -> None:
        """The middleware is inside the app's call, which ends it when the call returns or
        raises: however long the call runs (a slow batch endpoint), a model call inside it
        must not take it for abandoned."""
        self._deadline = math.inf

    def released(self) -> None:
        """The app's call returned: from now on only the server's closing of the body ends
        it, which a server may never do, so the abandoned bound runs again, from now."""
        if self._open:
            self._deadline = time.perf_counter() + ABANDONED_AFTER_SECONDS

    def responding(self) -> None:
        """Its body is an iterator the server now sends (a stream, server-sent events): the
        middleware ends it when the server is done with the body, however long that takes
        (an LLM's stream may run past ABANDONED_AFTER_SECONDS), so its age no longer makes
        it abandoned. The bound on its stages still holds."""
        self._deadline = math.inf


def current_http_request() -> HTTPRequest | None:
    """The web middleware's open request in this thread or task, if any: the current
    request, or the one its blocks are open inside."""
    request = current_request()
    while request is not None and not (request._http and request._open):
        request = request._parent
    return request  # type: ignore[return-value]


class ASGIRequest(HTTPRequest):
    """The ASGI middleware's request: the middleware ends it when its app returns or
    raises, in the request's own task, so it is never abandoned however long it stays open
    (a stream of an hour, a background task that runs after the response)."""

    __slots__ = ()
    _ended_by_owner = True
