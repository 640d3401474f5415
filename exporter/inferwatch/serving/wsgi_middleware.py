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
        started = _Started()

        def start_and_watch(status_line: str, headers: list, exc_info: Any = None) -> Any:
            try:
                started.status = int(status_line[:3])
            except (TypeError, ValueError):
                # Not a status line (an int, None): the server refuses it with its own
                # error, which must reach the app rather than one raised here.
                started.status = 0
            started.sized = _declares_length(headers)
            return start_response(status_line, headers, exc_info)

        files = _FileWrapping.install(environ)
        try:
            body = self.app(environ, start_and_watch)
        except BaseException as exc:
            finish(request, exc.__class__, None, raised=exc)
            raise
        finally:
            if files is not None:
                files.uninstall(environ)
        request.released()
        made = None if files is None else files.made
        server_file = body is made or _is_server_file(body, environ)
        if server_file and _ServerFile.watch(body, request, environ, started):
            return body  # the server's own object, so that it still sends the file itself
        watched = _WatchedSizedBody if isinstance(body, Sized) else _WatchedBody
        # A file the server's wrapper made is one answer, whatever wraps it on its way out
        # (a framework's response iterating it) and however many blocks it comes in.
        return watched(body, request, environ, started, plain=made is not None)

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


class _Started:
    """What the app's ``start_response`` told of its response: its status (0 until then, or
    when it was no status line), and whether it declared its length (``Content-Length``)."""

    __slots__ = ("sized", "status")

    def __init__(self) -> None:
        self.status = 0
        self.sized = False


def _declares_length(headers: Any) -> bool:
    """Whether a response's headers declare its length: a body of a size known before it is
    sent (a file, an answer) is one answer however many chunks it comes in, as under ASGI.

    >>> _declares_length([("Content-Type", "text/plain"), ("content-length", "5")])
    True
    >>> _declares_length([("Content-Type", "text/plain")]), _declares_length(None)
    (False, False)
    """
    try:
        return any(name.lower() == "content-length" for name, _ in headers or ())
    except Exception as exc:  # odd headers: the server refuses them, not we
        faults.record(COMPONENT, exc)
        return False


class _WatchedBody:
    """The app's response body; the request ends when the server has taken the last chunk.
    A `plain` body (a file's) is one answer however many chunks it comes in."""

    __slots__ = ("_body", "_clock", "_environ", "_exhausted", "_request", "_started")

    def __init__(self, body: Iterable[bytes], request: HTTPRequest, environ: dict[str, Any],
                 started: _Started, plain: bool = False) -> None:
        self._body = body
        self._request: Request | None = request
        self._environ = environ
        self._started = started
        self._exhausted = False
        # An iterator body (a generator, a Flask stream_with_context) may be a stream.
        self._clock = None if plain or isinstance(body, (list, tuple)) else ItemClock(
            request._start, request.monitor.settings.stream_interval_buckets)
        if plain or self._clock is not None:
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
            _end_response(request, self._started, self._environ, self._clock, error_type,
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

    __slots__ = ("_close", "_environ", "_request", "_started")

    def __init__(self, close: Callable[[], Any] | None, request: Request,
                 environ: dict[str, Any], started: _Started) -> None:
        self._close = close
        self._request: Request | None = request
        self._environ = environ
        self._started = started

    @classmethod
    def watch(cls, body: Any, request: HTTPRequest, environ: dict[str, Any],
              started: _Started) -> bool:
        """Make `body`'s ``close`` end `request`; False when `body` takes no attribute of
        ours (a class with ``__slots__``, a C type): then it is wrapped as any other body."""
        try:
            watcher = cls(getattr(body, "close", None), request, environ, started)
            body.close = watcher.close
        except (AttributeError, TypeError):
            return False
        except Exception as exc:
            faults.record(COMPONENT, exc)
            return False
        # As a file body the middleware wraps: the server's close() ends it, however long
        # a large file to a slow client takes to send.
        request.responding()
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
                _end_response(request, self._started, self._environ, None, None, cancelled)


_FILE_WRAPPER = "wsgi.file_wrapper"
_BLOCK_SIZE = 8192  # PEP 3333's example wrapper's, and wsgiref's and gunicorn's default


class _FileWrapping:
    """Stands for the server's ``wsgi.file_wrapper`` while the app runs, to know the body
    that the server's wrapper made (the last, where the app made several). The app's call
    goes on to the server's wrapper, so the server still knows its object and sends the
    file itself. A wrapper that is a function (uWSGI's hands the very object it was given
    back as the body, and sends it by its file descriptor only when the body is that
    object) gets the file as a :class:`_ServedFile`: one the middleware can watch the
    closing of, and that the server, when it iterates it, reads in the app's blocks rather
    than by lines. ``isinstance`` against it is against the server's class, as servers and
    frameworks check a body."""

    __slots__ = ("made", "server_wrapper")

    def __init__(self, server_wrapper: Callable[..., Any]) -> None:
        self.server_wrapper = server_wrapper
        self.made: Any = None

    @classmethod
    def install(cls, environ: dict[str, Any]) -> _FileWrapping | None:
        """Put one in `environ` in place of the server's wrapper, if it offers one."""
        try:
            server_wrapper = environ.get(_FILE_WRAPPER)
            if server_wrapper is None or not callable(server_wrapper):
                return None
            files = cls(server_wrapper)
            environ[_FILE_WRAPPER] = files
            return files
        except Exception as exc:
            faults.record(COMPONENT, exc)
            return None

    def uninstall(self, environ: dict[str, Any]) -> None:
        """Give `environ` the server's wrapper back (gunicorn reads it again to tell its
        object), unless the app put another there."""
        try:
            if environ.get(_FILE_WRAPPER) is self:
                environ[_FILE_WRAPPER] = self.server_wrapper
        except Exception as exc:
            faults.record(COMPONENT, exc)

    def __call__(self, filelike: Any, *args: Any, **kwargs: Any) -> Any:
        """The server's wrapper of `filelike`, as the app asked for it."""
        given = filelike
        if not isinstance(self.server_wrapper, type):
            try:
                given = _ServedFile(filelike, _block_size(args, kwargs))
            except Exception as exc:
                faults.record(COMPONENT, exc)
        body = self.server_wrapper(given, *args, **kwargs)
        self.made = body
        return body

    def __instancecheck__(self, instance: Any) -> bool:
        server_wrapper = self.server_wrapper
        return isinstance(server_wrapper, type) and isinstance(instance, server_wrapper)

    def __subclasscheck__(self, subclass: type) -> bool:
        server_wrapper = self.server_wrapper
        return isinstance(server_wrapper, type) and issubclass(subclass, server_wrapper)


def _block_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The block size the app asked the file wrapper for (positional, as PEP 3333 calls it,
    or by the name servers give it), or the usual default.

    >>> _block_size((65536,), {}), _block_size((), {"blksize": 4096}), _block_size((), {})
    (65536, 4096, 8192)
    >>> _block_size((0,), {}), _block_size(("big",), {})
    (8192, 8192)
    """
    size = args[0] if args else kwargs.get("blksize", kwargs.get("block_size", _BLOCK_SIZE))
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    return _BLOCK_SIZE


class _ServedFile:
    """The app's file as a server's wrapper function gets it: the file itself to the server
    (its ``fileno()`` for sendfile, ``read``, ``seek``, ``close``), and a body of blocks of
    the app's size when iterated. A file object iterates by lines: a binary file with few
    newlines would be read whole into memory, and one chunk per line counted."""

    def __init__(self, filelike: Any, block_size: int) -> None:
        self._file = filelike
        self._block_size = block_size

    def __getattr__(self, name: str) -> Any:
        if name in ("_file", "_block_size"):  # not set yet (a copy being made): no file
            raise AttributeError(name)
        return getattr(self._file, name)

    def __iter__(self) -> Iterator[Any]:
        read = getattr(self._file, "read", None)
        if read is None:  # not a file: as the server would have iterated it
            yield from self._file
            return
        while True:
            block = read(self._block_size)
            if not block:
                return
            yield block


def _sending_failed() -> bool:
    """Whether an exception is on its way through the caller, as when a server closes a body
    in a ``finally`` or an ``except`` after failing to send it. An iteration's end is none:
    a server driving the body by hand closes it after a StopIteration."""
    error = sys.exc_info()[1]
    return error is not None and not isinstance(error, (StopIteration, StopAsyncIteration))


def _end_response(request: Request, started: _Started, environ: Mapping[str, Any],
                  clock: ItemClock | None, error_type: type | None, cancelled: bool,
                  raised: BaseException | None = None) -> None:
    """End a WSGI request once the server is done with its body: its outcome from its
    status (or `error_type`, the class of `raised` when the body raised), its stream's
    figures when the body came in several chunks and declared no length."""
    if error_type is None and not cancelled:
        error_type = outcome(started.status)
        if error_type is not None:
            error_type = environ.get(ERROR_TYPE_ENVIRON_KEY) or error_type
    # Streamed: several chunks with bytes in them (werkzeug wraps even a one-chunk body in an
    # iterator) of a length not known before (a Content-Length says the answer was whole
    # before its first byte, however the server is handed it); a one-chunk answer cut short
    # is a cancelled answer, not a stream, as under ASGI.
    streamed = clock is not None and clock.items > 1 and not started.sized
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
