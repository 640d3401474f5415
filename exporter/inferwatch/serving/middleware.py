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
server as it is, so that it still sends the file itself (gunicorn by ``os.sendfile``); that
response ends when the server closes the body. Paths that match no model (and
``exclude_paths``, by default ``/metrics``) pass straight through. A fault of ours never
reaches the app: it is counted in ``inferwatch_internal_errors_total{component="middleware"}``.

Streaming responses (an ASGI body sent in several messages, server-sent events, a WSGI body
that is an iterator rather than a list) are also recorded as streams: time to first body byte
(``inferwatch_stream_first_item_seconds``), body chunks and the time between them. A client
that disconnects before the last chunk makes the request ``cancelled``, not an error. When
the body comes from an instrumented model's stream, the request records that stream's
figures instead; if the request ends first (a client gone while a sync generator was left
open in a server's thread), the body's figures stand, and the model's stream adds only its
tokens when it ends: one stream per request.

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

import numbers
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any

from inferwatch import faults
from inferwatch.core.request import ASGIRequest, HTTPRequest, Request
from inferwatch.core.stream_objects import ItemClock
from inferwatch.core.streams import CANCELLED, ERROR, OK, join_stream

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.registry import Registry

Target = str | tuple[str, str]
RouteMap = Mapping[str, Target] | Callable[[Mapping[str, Any]], Target | None]

MAX_REQUEST_ID_LENGTH = 128
# Set by a WSGI framework (or by the Flask hook below) when it turned an exception into a
# 5xx response itself, so the request is counted under the exception class.
ERROR_TYPE_ENVIRON_KEY = "inferwatch.error_type"
# Set in the ASGI scope (WSGI environ) by the middleware that records the request: a second
# instance below it (added twice, or on a mounted sub-app as well) lets it pass through, so
# that one HTTP request stays one model request.
RECORDED_KEY = "inferwatch.recorded"

_COMPONENT = "middleware"
_RESOLVE_SECONDS = 1.0
_MAX_CACHED_TARGETS = 1024
# W3C trace context: version, trace id, parent id, flags; a later version may add fields.
_TRACEPARENT = re.compile(r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})"
                          r"-(?P<parent>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})(?P<more>-.*)?",
                          re.DOTALL)
# Body messages of a response; the one without more_body is its last.
_BODY = frozenset(("http.response.body", "http.response.zerocopysend"))
_PATHSEND = "http.response.pathsend"
# A response whose start announced trailers (ASGI's trailers extension: gRPC-web's status)
# ends with its last trailers message, not with its body.
_TRAILERS = "http.response.trailers"
# Path converters as regular expressions, each framework's own: a template is to match the
# paths its framework routes to the endpoint, no fewer (those requests would go unrecorded)
# and no more (a 404 would count as a model request).
_STARLETTE_CONVERTERS = {
    "str": r"[^/]+", "path": r".*", "int": r"[0-9]+", "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
}
_WERKZEUG_CONVERTERS = {
    "default": r"[^/]+", "string": r"[^/]+", "path": r"[^/].*?", "int": r"\d+",
    "float": r"\d+\.\d+",
    "uuid": r"[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}",
}
_PARAMETER = re.compile(r"\{(?P<s_name>[^}:]+)(?::(?P<s_conv>[^}]+))?\}"
                        r"|<(?:(?P<w_conv>[^>:(]+)(?:\((?P<w_args>[^>]*)\))?:)?(?P<w_name>[^>:]+)>")
_http_error_types: dict[int, type] = {}
# Methods that never reach a model: a browser's CORS preflight precedes each cross-origin
# POST, and counted as a request it would double the traffic and halve the mean latency.
_NOT_PREDICTIONS = frozenset({"OPTIONS"})
# An HTTP header name (RFC 9110 token): any other never arrives, so no id would be read.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _http_error_type(status: int) -> type:
    """A class named ``HTTP<status>`` standing for a 5xx response in ``error_type``."""
    status = status if 500 <= status <= 599 else 500
    error_type = _http_error_types.get(status)
    if error_type is None:
        error_type = type(f"HTTP{status}", (Exception,), {"__module__": __name__})
        _http_error_types[status] = error_type
    return error_type


def compile_template(template: str) -> re.Pattern[str]:
    """A regular expression matching the paths of a Starlette or werkzeug route template.

    A werkzeug converter's bounds on a value (``<int(min=1, max=9):n>``) are no part of
    it: a route checks them after the match, as werkzeug does.

    >>> bool(compile_template("/users/{user_id:int}/score").fullmatch("/users/42/score"))
    True
    >>> bool(compile_template("/files/<path:name>").fullmatch("/files/a/b.csv"))
    True
    >>> bool(compile_template("/users/<int:user_id>").fullmatch("/users/me"))
    False
    >>> bool(compile_template("/lang/<string(length=2):code>").fullmatch("/lang/fra"))
    False
    """
    return _compile(template)[0]


_Check = Callable[[str], bool]


def _compile(template: str) -> tuple[re.Pattern[str], tuple[tuple[str, _Check], ...]]:
    """The regular expression of a route template, and the checks of the values its
    werkzeug converters bound (by group name): a value out of bounds is a 404 there."""
    pattern, end, starlette = [], 0, False
    checks: list[tuple[str, _Check]] = []
    for index, parameter in enumerate(_PARAMETER.finditer(template)):
        pattern.append(re.escape(template[end:parameter.start()]))
        check = None
        if parameter.group("s_name") is not None:
            starlette = True
            converter = (parameter.group("s_conv") or "str").strip()
            regex = _STARLETTE_CONVERTERS.get(converter, _STARLETTE_CONVERTERS["str"])
        else:
            regex, check = _werkzeug_converter(
                (parameter.group("w_conv") or "default").strip(), parameter.group("w_args"))
        if check is None:
            pattern.append(f"(?:{regex})")
        else:
            group = f"p{index}"
            pattern.append(f"(?P<{group}>{regex})")
            checks.append((group, check))
        end = parameter.end()
    pattern.append(re.escape(template[end:]))
    if starlette:
        # Starlette ends a route's regex with $, which also matches before a final newline:
        # it routes /s/12%0A to /s/{v:int}, so the template must match that path too.
        pattern.append("\n?")
    return re.compile("".join(pattern)), tuple(checks)


# werkzeug's converter arguments: Python-like literals, positional or by name.
_CONVERTER_ARGUMENT = re.compile(r"""
    \s*((?P<name>\w+)\s*=\s*)?
    (?P<value>True|False|\d+.\d+|\d+.|\d+|[\w\d_.]+|[urUR]?(?P<string>"[^"]*?"|'[^']*'))\s*,
    """, re.VERBOSE)
_CONSTANTS: dict[str, object] = {"None": None, "True": True, "False": False}


def _converter_arguments(arguments: str) -> tuple[list[object], dict[str, object]] | None:
    """A werkzeug converter's arguments as werkzeug reads them; None when it would refuse
    them (the route then never exists)."""
    positional: list[object] = []
    named: dict[str, object] = {}
    text, position = arguments + ",", 0
    for found in _CONVERTER_ARGUMENT.finditer(text):
        if found.start() != position:
            return None
        position = found.end()
        raw = found.group("string") or found.group("value")
        value: object
        if raw in _CONSTANTS:
            value = _CONSTANTS[raw]
        else:
            value = raw[1:-1] if raw[:1] == raw[-1:] and raw[:1] in "\"'" else raw
            for convert in (int, float):
                try:
                    value = convert(raw)
                    break
                except ValueError:
                    pass
        if found.group("name"):
            named[found.group("name")] = value
        else:
            positional.append(value)
    return positional, named


def _string_converter(minlength: int = 1, maxlength: int | None = None,
                      length: int | None = None) -> str:
    if length is not None:
        return f"[^/]{{{int(length)}}}"
    return f"[^/]{{{int(minlength)},{'' if maxlength is None else int(maxlength)}}}"


def _number_converter(regex: str, parse: Callable[[str], float], fixed_digits: int = 0,
                      min: float | None = None, max: float | None = None,
                      signed: bool = False) -> tuple[str, _Check | None]:
    def check(value: str) -> bool:
        if fixed_digits and len(value) != fixed_digits:
            return False
        try:
            number = parse(value)
            return (min is None or number >= min) and (max is None or number <= max)
        except (ValueError, OverflowError, TypeError):  # TypeError: a bound that is text
            return False

    bounded = bool(fixed_digits) or min is not None or max is not None
    return ("-?" + regex if signed else regex), (check if bounded else None)


def _werkzeug_converter(converter: str, arguments: str | None) -> tuple[str, _Check | None]:
    """The regular expression of a werkzeug converter with its arguments
    (``int(signed=True)``, ``string(length=2)``, ``any(cat, dog)``) and, for bounds a
    regular expression cannot say (``int(min=1, max=9)``), a check of the value; another
    converter matches one segment."""
    default = _WERKZEUG_CONVERTERS.get(converter, _WERKZEUG_CONVERTERS["default"])
    parsed = _converter_arguments(arguments) if arguments else ([], {})
    if parsed is None:
        return default, None
    positional, named = parsed
    try:
        if converter == "any":
            items = [str(item) for item in positional]
            if items and not named:
                return "|".join(re.escape(item) for item in items), None
        elif converter in ("default", "string"):
            return _string_converter(*positional, **named), None  # type: ignore[arg-type]
        elif converter == "int":
            return _number_converter(default, int, *positional, **named)  # type: ignore[arg-type]
        elif converter == "float":
            # werkzeug's float takes no fixed_digits: its first argument is min.
            return _float_converter(default, *positional, **named)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass  # arguments werkzeug refuses too
    return default, None


def _float_converter(regex: str, min: float | None = None,
                     max: float | None = None,
                     signed: bool = False) -> tuple[str, _Check | None]:
    return _number_converter(regex, float, 0, min, max, signed)


def clean_request_id(value: str) -> str | None:
    """A request id from a header: printable ASCII, at most 128 characters, None if empty.

    Characters that are not are dropped first, so that the spaces they leave at the edges
    are stripped too.

    >>> clean_request_id("  r-17  "), clean_request_id("a\\r\\nb"), clean_request_id("")
    ('r-17', 'ab', None)
    >>> clean_request_id("r-17 \\x00")
    'r-17'
    """
    if not (value.isascii() and value.isprintable()):
        value = "".join(c for c in value if c.isascii() and c.isprintable())
    return value.strip()[:MAX_REQUEST_ID_LENGTH] or None


def trace_id_from_traceparent(value: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header, None when it is not valid: the
    version is two lowercase hex digits but not ``ff``, version ``00`` has exactly four
    fields, the trace id (32) and parent id (16 lowercase hex digits) are not all zeros and
    the flags are two hex digits. None as well when the caller did not sample the trace
    (flags without the ``sampled`` bit), as for an OpenTelemetry span: no backend holds
    that trace, so an exemplar would point nowhere.

    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    '4bf92f3577b34da6a3ce929d0e0e4736'
    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
    >>> trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    """
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None or found["version"] == "ff" or (
            found["version"] == "00" and found["more"] is not None):
        return None
    trace = found["trace"]
    if trace == "0" * 32 or found["parent"] == "0" * 16 or not int(found["flags"], 16) & 1:
        return None
    return trace


class _Routes:
    """Path -> (model, version): exclusions, exact paths, templates, a function, a default."""

    def __init__(self, routes: RouteMap | None, model: str | None, version: str | None,
                 exclude_paths: Sequence[str], registry: Registry | None) -> None:
        if model is None and not (callable(routes) or routes):
            # An empty mapping (a config section left empty) would record nothing, silently.
            raise ValueError("inferwatch middleware: give routes= (a mapping or a function) "
                             "and/or model= (the model of every route)"
                             + ("" if routes is None else ", got an empty routes mapping"))
        self._exact: dict[str, tuple[str, str | None]] = {}
        self._templates: list[tuple[re.Pattern[str], tuple[tuple[str, _Check], ...],
                                    tuple[str, str | None]]] = []
        self._function: Callable[[Mapping[str, Any]], Target | None] | None = None
        if callable(routes):
            self._function = routes
        elif routes is not None:
            for path, target in routes.items():
                resolved = _target(target, version, f"routes[{path!r}]")
                if "{" in path or "<" in path:
                    self._templates.append((*_compile(path), resolved))
                else:
                    self._exact[path] = resolved
        self._default = None if model is None else _target(model, version, "model")
        self._version = version
        if isinstance(exclude_paths, str) or not isinstance(exclude_paths, Iterable):
            # None (meant as "leave nothing out") would fail at tuple() below with an error
            # naming no option.
            raise TypeError("inferwatch middleware: exclude_paths is a sequence of paths "
                            f"(() for none), got {exclude_paths!r}")
        exclude_paths = tuple(exclude_paths)  # read twice below: a generator only once
        for path in exclude_paths:
            # A path that does not start with '/' never matches a request's path, and an
            # empty one (a split environment variable) would leave out every path: either
            # records what was meant to be left out, or nothing at all, silently.
            if not (isinstance(path, str) and path.startswith("/")):
                raise ValueError(f"inferwatch middleware: exclude_paths entry {path!r} is "
                                 "not a path: a path starts with '/', as in '/metrics'")
        self._excluded = frozenset(p.rstrip("/") or "/" for p in exclude_paths)
        self._excluded_prefixes = tuple(p.rstrip("/") + "/" for p in exclude_paths)
        if registry is not None and not callable(getattr(registry, "existing_monitor", None)):
            # Found out only at the first request, each model request would pass through
            # unrecorded, counted as an internal error only.
            raise TypeError("inferwatch middleware: registry must be an inferwatch Registry "
                            f"(or None for the default one), got {registry!r}")
        self._registry = registry
        self._cache: dict[tuple[str, str | None], tuple[Monitor | None, float]] = {}
        # path -> (its monitor or None, until when that answer holds)
        self._resolved: dict[str, tuple[Monitor | None, float]] = {}
        self.clock = time.monotonic  # when cached answers expire; a test may set its own

    def resolve(self, path: str, scope: Mapping[str, Any]) -> Monitor | None:
        """The monitor of the model a request to `path` goes to; None to pass it through.

        A path's answer is kept for a second (as :meth:`monitor` keeps a target's), unless a
        routes function gives it: that may read more of the scope than the path.
        """
        now = self.clock()
        hit = self._resolved.get(path)
        if hit is not None and hit[1] > now:
            return hit[0]
        target = self.target(path, scope)
        monitor = None if target is None else self.monitor(target)
        if self._function is None:
            if len(self._resolved) >= _MAX_CACHED_TARGETS:
                self._resolved.clear()  # a scan of many distinct paths stays bounded
            self._resolved[path] = (monitor, now + _RESOLVE_SECONDS)
        return monitor

    def target(self, path: str, scope: Mapping[str, Any]) -> tuple[str, str | None] | None:
        if path in self._excluded or path.startswith(self._excluded_prefixes):
            return None
        target = self._exact.get(path)
        if target is not None:
            return target
        # A template is matched once per path and second: resolve() keeps the answer.
        for pattern, checks, candidate in self._templates:
            found = pattern.fullmatch(path)
            # A value out of its converter's bounds makes werkzeug answer 404 (or route the
            # request to a later rule): no request of this route.
            if found is not None and all(check(found[group]) for group, check in checks):
                return candidate
        if self._function is not None:
            found = self._function(scope)
            if found is not None:
                return _target(found, self._version, "the routes function's result")
        return self._default

    def monitor(self, target: tuple[str, str | None]) -> Monitor | None:
        """The model's monitor; None while it is not instrumented (never creates one).

        Creating it here would fix its settings before ``instrument()`` gives them. The
        answer is kept for a second, so a newly instrumented version serves within one.
        """
        now = self.clock()
        cached = self._cache.get(target)
        if cached is not None and cached[1] > now:
            return cached[0]
        registry = self._registry
        if registry is None:
            from inferwatch.core.registry import default_registry

            registry = self._registry = default_registry()
        # Where the caps stored the model or its version as __other__ (instrumented past
        # max_models or max_versions_per_model), that monitor serves and records it: its
        # route's requests belong there, not nowhere.
        monitor = registry.existing_monitor(*target)
        if len(self._cache) >= _MAX_CACHED_TARGETS:
            self._cache.clear()  # targets from a routes function could be many
        self._cache[target] = (monitor, now + _RESOLVE_SECONDS)
        return monitor


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


def _is_cancellation(exc: BaseException) -> bool:
    """Whether `exc` is the event loop cancelling the request's task (asyncio's
    ``CancelledError``, or trio's ``Cancelled`` under hypercorn's trio worker or anyio on
    trio), which a server raises into the app when its client goes away: the classes an
    instrumented call counts as cancelled (``monitor.cancellations``)."""
    from inferwatch.core.monitor import cancellations

    return isinstance(exc, cancellations())


def _target(value: object, default_version: str | None, where: str) -> tuple[str, str | None]:
    if isinstance(value, str) and value:
        return value, default_version
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and value[0]:
        version = _version(value[1])
        if version is not None:
            return value[0], version
    raise TypeError(f"inferwatch middleware: {where} must be a model name or a "
                    f"(model, version) pair of non-empty strings (a version may be a "
                    f"number), got {value!r}")


def _version(value: object) -> str | None:
    """A version as ``instrument()`` records it: a number is its text (``version=2`` is the
    ``"2"`` that ``instrument(..., version=2)`` made), else a non-empty string; None if not."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    return None


def _check_options(routes: RouteMap | None, version: object,
                   request_id_header: object) -> str | None:
    """Refuse options that would silently record nothing; the version as recorded."""
    checked = None if version is None else _version(version)
    if version is not None and checked is None:
        raise TypeError("inferwatch middleware: version must be a non-empty string (or a "
                        f"number), got {version!r}")
    if not (isinstance(request_id_header, str) and _HEADER_NAME.fullmatch(request_id_header)):
        raise ValueError("inferwatch middleware: request_id_header must be an HTTP header "
                         f"name such as 'X-Request-ID', got {request_id_header!r}")
    if routes is not None and not (callable(routes) or isinstance(routes, Mapping)):
        # A string or a list of pairs would be read letter by letter, or pair by pair, and
        # refused as "not a path", which names no real mistake.
        raise TypeError("inferwatch middleware: routes must be a mapping of paths to models "
                        "(such as {'/predict': 'fraud'}) or a function of the request, "
                        f"got {type(routes).__name__} {routes!r}")
    if routes is not None and not callable(routes):
        for path in routes:
            # Starlette and werkzeug refuse such a route: a request path always starts so.
            if not (isinstance(path, str) and path.startswith("/")):
                raise ValueError(f"inferwatch middleware: routes[{path!r}] is not a path: "
                                 "a route starts with '/', as in the route decorator")
    return checked


def _follows_callers_trace(monitor: Monitor) -> bool:
    """Whether a ``traceparent`` header may give the request its trace id: not where the
    model was instrumented with ``exemplars=False``, which keeps trace ids out of its
    exemplars and its event log whatever their source."""
    return monitor.settings.exemplars is not False


def _finish(request: Request, error_type: type | None, ended_at: float | None,
            cancelled: bool = False) -> None:
    """End the request as of `ended_at` (the last body chunk), outside the app's code path;
    `cancelled` (a client gone) goes with the close, which keeps it only if it is the close
    that ends the request: set on the record before, it could land on a record that the
    abandoned-request check had ended and handed to the drain."""
    try:
        # The request ends when its response has been sent, not after background tasks.
        request.close(error_type, ended_at, cancelled=cancelled)
    except Exception as exc:
        faults.record(_COMPONENT, exc)


def _outcome(status: int) -> type | None:
    return _http_error_type(status) if status >= 500 or status == 0 else None


def _raised(exc: BaseException, status: int, ended_at: float | None) -> type | None:
    """The outcome of a request whose app raised `exc`: its class, unless the client had its
    whole answer below 500 first (a background task failed after it): then ok, as it was
    for the client. A 5xx answer sent before the exception (Starlette's error middleware
    answers, then re-raises) is that exception's."""
    if ended_at is not None and status < 500:
        return None
    return exc.__class__


def _stream_end(request: Request, body: ItemClock | None, cancelled: bool,
                error_type: type | None) -> None:
    """Attach a streamed body's figures to the request, while it is open and has none from a
    model's stream (that fed the body). Ended elsewhere already (found abandoned, at its
    bound of stages), its record went to the drain, which may be reading it: it stands."""
    if body is None:
        return
    try:
        outcome = CANCELLED if cancelled else OK if error_type is None else ERROR
        join_stream(request, body.record(outcome, error_type))
    except Exception as exc:
        faults.record(_COMPONENT, exc)


class InstrumentMiddleware:
    """ASGI middleware recording each request to a model's route as one model request.

    `routes` maps exact paths or route templates (``/score/{id}``, ``/files/{p:path}``) to
    a model name or a ``(model, version)`` pair, or is a function of the ASGI scope that
    returns one (or None). `model` is the model of every other route. Without a version,
    the version instrumented last under that name. The request id comes from
    `request_id_header`; a W3C ``traceparent`` header gives the trace id when OpenTelemetry
    does not. Paths under `exclude_paths` are never recorded.

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
        version = _check_options(routes, version, request_id_header)
        self._routes = _Routes(routes, model, version, exclude_paths, registry)
        self._id_header = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = self._begin(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        status = 0
        ended_at = None
        disconnected = False
        trailers = False
        body: ItemClock | None = None  # set once the body comes in more than one message

        async def receive_and_watch() -> dict[str, Any]:
            nonlocal disconnected
            message = await receive()
            if message.get("type") == "http.disconnect" and ended_at is None:
                disconnected = True
            return message

        async def send_and_watch(message: dict[str, Any]) -> None:
            nonlocal status, ended_at, body, disconnected, trailers
            kind = message["type"]
            last = kind == _PATHSEND
            if kind in _BODY:
                more = message.get("more_body", False)
                if more and body is None:
                    body = ItemClock(request._start,
                                     request.monitor.settings.stream_interval_buckets)
                if body is not None and (message.get("body") or kind != "http.response.body"):
                    body.item()  # as the app hands it over: the first is the first byte
                last = not more
            try:
                await send(message)
            except OSError:
                disconnected = disconnected or ended_at is None
                raise
            if last:
                if not trailers:
                    ended_at = time.perf_counter()
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
            _stream_end(request, body, cancelled, error_type)
            _finish(request, error_type, ended_at, cancelled)
            raise
        # Returned before its last body chunk: the server stopped it (a client disconnect).
        # A client gone before it (mid-upload, while the model ran) never got the answer
        # sent after all, which a server drops (uvicorn): the 400 FastAPI makes of the
        # broken body, or the prediction, went nowhere.
        cancelled = disconnected or (ended_at is None and status != 0)
        error_type = None if cancelled else _outcome(status)
        _stream_end(request, body, cancelled, error_type)
        _finish(request, error_type, ended_at, cancelled)

    def _begin(self, scope: dict[str, Any]) -> Request | None:
        try:
            if scope.get("method") in _NOT_PREDICTIONS or scope.get(RECORDED_KEY):
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
                    _follows_callers_trace(monitor):
                request.record.trace_id = trace_id
            scope[RECORDED_KEY] = True
            return request
        except Exception as exc:
            faults.record(_COMPONENT, exc)
            return None


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
        version = _check_options(routes, version, request_id_header)
        self._routes = _Routes(routes, model, version, exclude_paths, registry)
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
            _finish(request, exc.__class__, None)
            raise
        request.released()
        if _is_server_file(body, environ) and _ServerFile.watch(body, request, environ, status):
            return body  # the server's own object, so that it still sends the file itself
        watched = _WatchedSizedBody if isinstance(body, Sized) else _WatchedBody
        return watched(body, request, environ, status)

    def _begin(self, environ: dict[str, Any]) -> HTTPRequest | None:
        try:
            if environ.get("REQUEST_METHOD") in _NOT_PREDICTIONS or environ.get(RECORDED_KEY):
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
                    _follows_callers_trace(monitor):
                # A repeated header arrives joined by commas (PEP 3333), which no single
                # traceparent holds: its first value counts, as under ASGI.
                request.record.trace_id = trace_id_from_traceparent(
                    traceparent.partition(",")[0])
            environ[RECORDED_KEY] = True
            return request
        except Exception as exc:
            faults.record(_COMPONENT, exc)
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
            self._end(exc.__class__)
            raise
        self._exhausted = True
        self._end(None)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            # Closed before the body ran out: the server gave up on a client that went away.
            self._end(None, cancelled=not self._exhausted and self._clock is not None)

    def _end(self, error_type: type | None, cancelled: bool = False) -> None:
        request, self._request = self._request, None
        if request is not None:
            _end_response(request, self._status[0], self._environ, self._clock, error_type,
                          cancelled)


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
        faults.record(_COMPONENT, exc)
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
            faults.record(_COMPONENT, exc)
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
                  clock: ItemClock | None, error_type: type | None, cancelled: bool) -> None:
    """End a WSGI request once the server is done with its body: its outcome from `status`
    (or `error_type`), its stream's figures when the body came in several chunks."""
    if error_type is None and not cancelled:
        error_type = _outcome(status)
        if error_type is not None:
            error_type = environ.get(ERROR_TYPE_ENVIRON_KEY) or error_type
    # Streamed: several chunks (werkzeug wraps even a one-chunk body in an iterator).
    streamed = clock is not None and (clock.items > 1 or cancelled)
    _stream_end(request, clock if streamed else None, cancelled, error_type)
    _finish(request, error_type, None, cancelled)


def _hook_flask_exceptions(wsgi_app: Callable[..., Any]) -> bool:
    """Flask answers an endpoint's exception with a 500 itself; note the exception's class.
    Whether `wsgi_app` is (or wraps) a Flask app, which werkzeug routes."""
    flask = sys.modules.get("flask")
    if flask is None:
        return False
    owner: Any = wsgi_app
    # Through a few layers of other WSGI middleware (DispatcherMiddleware keeps `.app`).
    for _ in range(8):
        if isinstance(owner, flask.Flask):
            break
        bound_to = getattr(owner, "__self__", None)
        owner = bound_to if isinstance(bound_to, flask.Flask) else getattr(owner, "app", None)
        if owner is None:
            return False
    if not isinstance(owner, flask.Flask):
        return False
    from flask import request as flask_request
    from flask.signals import got_request_exception

    def note_exception(sender: object, exception: BaseException, **extra: object) -> None:
        try:
            flask_request.environ[ERROR_TYPE_ENVIRON_KEY] = exception.__class__
        except Exception as exc:
            faults.record(_COMPONENT, exc)

    got_request_exception.connect(note_exception, owner, weak=False)
    return True


__all__ = ["InstrumentMiddleware", "WSGIInstrumentMiddleware", "clean_request_id",
           "compile_template", "trace_id_from_traceparent"]
