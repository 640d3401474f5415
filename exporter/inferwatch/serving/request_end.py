"""How a request the web middleware recorded ends: its outcome from the response's status,
a streamed body's figures, and the close. Apart from the middleware because the ASGI and
the WSGI middleware each find out in their own way when a response has ended, and then end
its request the same way; a fault of either is counted under the same component.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from inferwatch import faults
from inferwatch.core.stream_objects import ItemClock
from inferwatch.core.stream_records import CANCELLED, ERROR, OK
from inferwatch.core.streams import join_stream

if TYPE_CHECKING:
    from inferwatch.core.request import Request
    from inferwatch.core.streams import Tracker

COMPONENT = "middleware"
_http_error_types: dict[int, type] = {}


def _http_error_type(status: int) -> type:
    """A class named ``HTTP<status>`` standing for a 5xx response in ``error_type``."""
    status = status if 500 <= status <= 599 else 500
    error_type = _http_error_types.get(status)
    if error_type is None:
        error_type = type(f"HTTP{status}", (Exception,), {"__module__": __name__})
        _http_error_types[status] = error_type
    return error_type


def finish(request: Request, error_type: type | None, ended_at: float | None,
           cancelled: bool = False, raised: BaseException | None = None) -> None:
    """End the request as of `ended_at` (the last body chunk), outside the app's code path;
    `cancelled` (a client gone) goes with the close, which keeps it only if it is the close
    that ends the request: set on the record before, it could land on a record that the
    abandoned-request check had ended and handed to the drain. `raised` is the exception
    the app raised, when `error_type` is its class: counted besides the request's model
    errors unless it came from one (read now, never kept)."""
    try:
        if raised is not None and error_type is not None:
            request.ending_with(raised)
        # The request ends when its response has been sent, not after background tasks.
        request.close(error_type, ended_at, cancelled=cancelled)
    except Exception as exc:
        faults.record(COMPONENT, exc)


def outcome(status: int) -> type | None:
    """The error type of a response whose app raised nothing: ``HTTP<status>`` for a 5xx
    status, ``HTTP500`` for one past 599 or for none (0: no response started, or its
    status line was not one); None, ok, for any other status."""
    return _http_error_type(status) if status >= 500 or status == 0 else None


def stream_end(request: Request, body: ItemClock | None, cancelled: bool,
               error_type: type | None, outlived: Sequence[Tracker] = (),
               ended_at: float | None = None) -> None:
    """Attach a streamed body's figures to the request, while it is open and has none from a
    model's stream (that fed the body). Ended elsewhere already (found abandoned, at its
    bound of stages), its record went to the drain, which may be reading it: it stands.

    `outlived` are the model's streams still open when the request ends cancelled (a sync
    generator left in a server's thread when its client went away, closed only later): the
    body's figures, none or one chunk too, stand for theirs as of `ended_at` (when the
    client left; None: now), and each is an inference stage up to then, as an async stream
    cancelled with its request would be. Each adds only its tokens when it ends."""
    if body is None and not outlived:
        return
    try:
        outcome = CANCELLED if cancelled else OK if error_type is None else ERROR
        if body is None:
            body = ItemClock(request._start, request.monitor.settings.stream_interval_buckets)
        figures = body.record(outcome, error_type) if ended_at is None else \
            body.record(outcome, error_type, ended_at)
        if not outlived:
            join_stream(request, figures)
            return
        end = perf_counter() if ended_at is None else ended_at
        for stream in outlived:
            # The first joins the figures; any other is a stage of the request beside them.
            join_stream(request, figures, max(end - stream.start, 0.0))
    except Exception as exc:
        faults.record(COMPONENT, exc)
