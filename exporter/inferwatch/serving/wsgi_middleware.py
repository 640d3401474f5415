"""The WSGI middleware (Flask: ``app.wsgi_app``) and the wrappers of a response's body that
tell it when the server is done with that response.

What it records is what the ASGI middleware records (see :mod:`inferwatch.serving.middleware`,
from which both are imported). Apart from it because a WSGI response ends in its own way:
when the server has taken the body's last chunk or closes the body, and a file the server
sends itself must go back to the server unwrapped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any

from inferwatch import faults
from inferwatch.core.request import Request
from inferwatch.core.stream_objects import ItemClock
from inferwatch.core.web_requests import HTTPRequest, current_http_request
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

if TYPE_CHECKING:
    from inferwatch.core.registry import Registry

# Set by a WSGI framework (or by the Flask hook below) when it turned an exception into a
# 5xx response itself, so the request is counted under the exception class.
ERROR_TYPE_ENVIRON_KEY = "inferwatch.error_type"


class WSGIInstrumentMiddleware:
    """WSGI middleware with the options of :class:`InstrumentMiddleware`; the routes
    function receives the WSGI environ. Templates use werkzeug's ``<int:id>`` or
    Starlette's ``{id}`` syntax. For Flask, exceptions that Flask turns into a 500 are
    still counted under their class.

    >>> from flask import Flask
    >>> app = Flask(__name__)
    >>> app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, routes={"/predict": "fraud"})
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], *,
                 routes: RouteMap | None = None, model: str | None = None,
                 version: str | float | None = None, request_id_header: str = "X-Request-ID",
                 exclude_paths: Sequence[str] = ("/metrics",),
                 registry: Registry | None = None) -> None:
        self.app = wsgi_app
        version = check_options(routes, version, request_id_header)
        self._routes = Routes(routes, model, version, exclude_paths, registry)
        self._id_key = "HTTP_" + request_id_header.upper().replace("-", "_")
        # werkzeug routes a path by its text after its leading slashes (a client joining
        # "http://host/" and "/score/7" asks for //score/7, and Flask serves it): such a
        # request must match the route too.
        self._strip_leading_slashes = _hook_flask_exceptions(wsgi_app)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = self._begin(environ)
        if request is None:
            return self.app(environ, start_response)
        status = [0]

        def start_and_watch(status_line: str, headers: list, exc_info: Any = None) -> Any:
            try:
                status[0] = int(status_line[:3])
            except (TypeError, ValueError):
                # Not a status line (an int, None): the server refuses it with its own
                # error, which must reach the app rather than one raised here.
                status[0] = 0
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, start_and_watch)
        except BaseException as exc:
            finish(request, exc.__class__, None, raised=exc)
            raise
        request.released()
        if _is_server_file(body, environ) and _ServerFile.watch(body, request, environ, status):
            return body  # the server's own object, so that it still sends the file itself
        watched = _WatchedSizedBody if isinstance(body, Sized) else _WatchedBody
        return watched(body, request, environ, status)

    def _begin(self, environ: dict[str, Any]) -> HTTPRequest | None:
        try:
            if environ.get("REQUEST_METHOD") in NOT_PREDICTIONS or environ.get(RECORDED_KEY):
                return None
            path = _wsgi_path(environ.get("PATH_INFO") or "/")
            if self._strip_leading_slashes and path.startswith("//"):
                path = "/" + path.lstrip("/")
            monitor = self._routes.resolve(path, environ)
            if monitor is None:
                return None
            raw_id = environ.get(self._id_key)
            request_id = None if raw_id is None else clean_request_id(raw_id)
            request = HTTPRequest.open(monitor, request_id)  # as itself, never joining
            request.held()
            traceparent = environ.get("HTTP_TRACEPARENT")
            if traceparent and request.record.trace_id is None and \
                    follows_callers_trace(monitor):
                # A repeated header arrives joined by commas (PEP 3333), which no single
                # traceparent holds: its first value counts, as under ASGI.
                request.record.trace_id = trace_id_from_traceparent(
                    traceparent.partition(",")[0])
            environ[RECORDED_KEY] = True
            return request
        except Exception as exc:
            faults.record(COMPONENT, exc)
            return None


class _WatchedBody:
    """The app's response body; the request ends when the server has taken the last chunk."""

    __slots__ = ("_body", "_clock", "_environ", "_exhausted", "_request", "_status")

    def __init__(self, body: Iterable[bytes], request: HTTPRequest, environ: dict[str, Any],
                 status: list[int]) -> None:
        self._body = body
        self._request: Request | None = request
        self._environ = environ
        self._status = status
        self._exhausted = False
        # An iterator body (a generator, a Flask stream_with_context) may be a stream.
        self._clock = None if isinstance(body, (list, tuple)) else ItemClock(
            request._start, request.monitor.settings.stream_interval_buckets)
        if self._clock is not None:
            request.responding()

    def __iter__(self) -> Iterator[bytes]:
        clock = self._clock
        try:
            for chunk in self._body:
                if clock is not None and chunk:
                    clock.item()
                yield chunk
        except GeneratorExit:
            raise  # the server stopped iterating: close() tells
        except BaseException as exc:
            self._end(exc.__class__, raised=exc)
            raise
        self._exhausted = True
        self._end(None)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            # Closed before the body ran out: the server gave up on a client that went away,
            # mid-chunk as well: a list's one big chunk is taken whole before it is written.
            self._end(None, cancelled=not self._exhausted)

    def _end(self, error_type: type | None, cancelled: bool = False,
             raised: BaseException | None = None) -> None:
        request, self._request = self._request, None
        if request is not None:
            _end_response(request, self._status[0], self._environ, self._clock, error_type,
                          cancelled, raised)


class _WatchedSizedBody(_WatchedBody):
    """A watched body whose own body has a length (a list of chunks): a server reads it to
    set Content-Length when the app left it out (PEP 3333: wsgiref and waitress do, for a
    body of one chunk), so hiding it would change the response's headers. Only such bodies
    get ``__len__``: a server that finds one calls it."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._body)  # type: ignore[arg-type]


def _wsgi_path(path: str) -> str:
    """PATH_INFO as the route was written: a WSGI server hands the URL's bytes over as
    latin-1 text (PEP 3333), so ``/modèle`` arrives as ``/modÃ¨le``; its UTF-8 reading is
    what Flask routes on, and what ASGI's ``scope["path"]`` holds. A path that is not
    UTF-8 (or that a server already decoded) stays as it came.

    >>> _wsgi_path("/mod\u00c3\u00a8le"), _wsgi_path("/score"), _wsgi_path("/\u00ff")
    ('/modèle', '/score', '/\xff')
    """
    if path.isascii():
        return path
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


def _is_server_file(body: object, environ: Mapping[str, Any]) -> bool:
    """Whether `body` came from the server's ``wsgi.file_wrapper``, which the server knows
    by its class (gunicorn, wsgiref and waitress check it) and then sends itself: gunicorn
    by ``os.sendfile``, without reading the file in Python.

    >>> from wsgiref.util import FileWrapper
    >>> import io
    >>> environ = {"wsgi.file_wrapper": FileWrapper}
    >>> _is_server_file(FileWrapper(io.BytesIO(b"x")), environ), _is_server_file([b"x"], environ)
    (True, False)
    """
    try:
        file_wrapper = environ.get("wsgi.file_wrapper")
        # Only a class tells its objects apart; what a function returns cannot be known.
        return isinstance(file_wrapper, type) and isinstance(body, file_wrapper)
    except Exception as exc:  # an odd __instancecheck__: the body is wrapped as any other
        faults.record(COMPONENT, exc)
        return False


class _ServerFile:
    """Ends the request of a file the server sends itself when the server closes it.

    Wrapped, the file would hide from the server, which would then read and write it in
    Python chunks: the server gets its own object back (PEP 3333 asks middleware to pass it
    through), and only its ``close`` is replaced, by one that closes the file and then ends
    the request. A server calls ``close()`` once it is done with a body, whether it sent
    the file itself, iterated it, never iterated it, or failed mid-file.
    """

    __slots__ = ("_close", "_environ", "_request", "_status")

    def __init__(self, close: Callable[[], Any] | None, request: Request,
                 environ: dict[str, Any], status: list[int]) -> None:
        self._close = close
        self._request: Request | None = request
        self._environ = environ
        self._status = status

    @classmethod
    def watch(cls, body: Any, request: Request, environ: dict[str, Any],
              status: list[int]) -> bool:
        """Make `body`'s ``close`` end `request`; False when `body` takes no attribute of
        ours (a class with ``__slots__``, a C type): then it is wrapped as any other body."""
        try:
            watcher = cls(getattr(body, "close", None), request, environ, status)
            body.close = watcher.close
        except (AttributeError, TypeError):
            return False
        except Exception as exc:
            faults.record(COMPONENT, exc)
            return False
        return True

    def close(self) -> None:
        # The server closes the body as an exception goes through it when sending failed
        # (a client gone mid-file): the client did not get the whole file.
        cancelled = _sending_failed()
        try:
            if self._close is not None:
                self._close()
        finally:
            request, self._request = self._request, None
            if request is not None:  # a second close() closes the file only
                _end_response(request, self._status[0], self._environ, None, None, cancelled)


def _sending_failed() -> bool:
    """Whether an exception is on its way through the caller, as when a server closes a body
    in a ``finally`` or an ``except`` after failing to send it. An iteration's end is none:
    a server driving the body by hand closes it after a StopIteration."""
    error = sys.exc_info()[1]
    return error is not None and not isinstance(error, (StopIteration, StopAsyncIteration))


def _end_response(request: Request, status: int, environ: Mapping[str, Any],
                  clock: ItemClock | None, error_type: type | None, cancelled: bool,
                  raised: BaseException | None = None) -> None:
    """End a WSGI request once the server is done with its body: its outcome from `status`
    (or `error_type`, the class of `raised` when the body raised), its stream's figures
    when the body came in several chunks."""
    if error_type is None and not cancelled:
        error_type = outcome(status)
        if error_type is not None:
            error_type = environ.get(ERROR_TYPE_ENVIRON_KEY) or error_type
    # Streamed: several chunks with bytes in them (werkzeug wraps even a one-chunk body in an
    # iterator); a one-chunk answer cut short is a cancelled answer, not a stream, as under
    # ASGI.
    streamed = clock is not None and clock.items > 1
    stream_end(request, clock if streamed else None, cancelled, error_type)
    finish(request, error_type, None, cancelled, raised)


def _hook_flask_exceptions(wsgi_app: Callable[..., Any]) -> bool:
    """Flask answers an endpoint's exception with a 500 itself; note the exception's class.
    Whether `wsgi_app` is (or wraps, or dispatches to) a Flask app, which werkzeug routes."""
    flask = sys.modules.get("flask")
    if flask is None:
        return False
    apps = _flask_apps(wsgi_app, flask.Flask)
    if not apps:
        return False
    from flask import request as flask_request
    from flask.signals import got_request_exception

    def note_exception(sender: object, exception: BaseException, **extra: object) -> None:
        try:
            flask_request.environ[ERROR_TYPE_ENVIRON_KEY] = exception.__class__
            # Read now, while the exception is at hand: whether it came from a model call
            # that failed in this request (counted already), or is the app's own.
            request = current_http_request()
            if request is not None:
                request.ending_with(exception)
        except Exception as exc:
            faults.record(COMPONENT, exc)

    for app in apps:
        got_request_exception.connect(note_exception, app, weak=False)
    return True


# How far and how wide the search for Flask apps goes: a few layers of middleware, and the
# apps a dispatcher mounts (werkzeug's DispatcherMiddleware keeps them in `mounts`), which
# may be dispatchers in turn; a WSGI graph that loops or sprawls stops it, never the app.
_WRAPPER_DEPTH = 8
_MOST_WSGI_APPS = 256


def _flask_apps(wsgi_app: object, flask_class: type) -> list[Any]:
    """The Flask apps `wsgi_app` is, wraps (through `.app` or a bound method's owner, as
    ``app.wsgi_app`` is) or mounts (``DispatcherMiddleware``'s root `.app` and `mounts`),
    each once."""
    found: dict[int, Any] = {}
    seen: set[int] = set()
    pending: list[tuple[object, int]] = [(wsgi_app, 0)]
    while pending and len(seen) < _MOST_WSGI_APPS:
        owner, depth = pending.pop()
        if owner is None or id(owner) in seen:
            continue
        seen.add(id(owner))
        try:
            if isinstance(owner, flask_class):
                found.setdefault(id(owner), owner)
                continue
            if depth >= _WRAPPER_DEPTH:
                continue
            bound_to = getattr(owner, "__self__", None)
            if isinstance(bound_to, flask_class):
                pending.append((bound_to, depth + 1))
                continue
            mounts = getattr(owner, "mounts", None)
            if isinstance(mounts, Mapping):
                pending.extend((mounted, depth + 1) for mounted in list(mounts.values()))
            pending.append((getattr(owner, "app", None), depth + 1))
        except Exception as exc:  # an odd object's attribute that raises: not a Flask app
            faults.record(COMPONENT, exc)
    return list(found.values())
