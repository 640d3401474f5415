"""Rendering /metrics: content negotiation, gzip, and WSGI / ASGI apps serving it.

Content negotiation picks the Accept header's preferred range by quality value and hands
it to prometheus_client's own `choose_encoder`, so Prometheus gets OpenMetrics when it
prefers it and the classic text format otherwise.

>>> from prometheus_client import CollectorRegistry, Counter
>>> registry = CollectorRegistry()
>>> Counter("example_calls", "Calls made.", registry=registry).inc()
>>> body, headers = render(registry, accept=None, accept_encoding=None)
>>> headers["Content-Type"]
'text/plain; version=0.0.4; charset=utf-8'
>>> b"example_calls_total 1.0" in body
True
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

from prometheus_client import exposition as text_format
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import Collector, CollectorRegistry

from inferwatch.core.render import openmetrics_families
from inferwatch.forking import renew_at_fork

if TYPE_CHECKING:
    from inferwatch.core.registry import Registry

log = logging.getLogger("inferwatch.serving.exposition")

# zlib's default level: level 9 costs several times more CPU for a few percent less.
GZIP_LEVEL = 6
ALLOWED_METHODS = "GET, HEAD"
FAILURE_LOG_INTERVAL_SECONDS = 60.0
VARY = "Accept, Accept-Encoding"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
AsgiApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
     Callable[[dict[str, Any]], Awaitable[None]]],
    Awaitable[None],
]

_failure_lock = threading.Lock()
renew_at_fork(globals(), "_failure_lock")
_last_failure_logged = -FAILURE_LOG_INTERVAL_SECONDS
_EOF = b"# EOF\n"


class Format(NamedTuple):
    """The exposition format a scrape asked for: OpenMetrics or text, and name escaping."""

    openmetrics: bool
    escaping: str


class Prerendered(Metric):
    """Families a collector has already written in the scrape's format, as one stand-in.

    A collector yields one only when :func:`prerender_format` says the scrape in progress
    takes them; any other consumer of ``collect()`` gets ordinary families.
    """

    def __init__(self, text: str) -> None:
        super().__init__("prerendered", "", "unknown")
        self.text = text
        scrape = _prerender.get()
        if scrape is not None:
            scrape.issued += 1


class _PrerenderingScrape:
    """A scrape that takes pre-rendered families, and how many collectors made one.

    A user's collector that wraps a registry (relabels, filters or copies its families)
    sits between the scrape and inferwatch's collector: it would rebuild or drop the
    stand-in, and every inferwatch series would vanish. Counting the stand-ins made
    against the ones that reached the scrape tells that case apart.
    """

    __slots__ = ("format", "issued")

    def __init__(self, wanted: Format) -> None:
        self.format = wanted
        self.issued = 0


_prerender: ContextVar[_PrerenderingScrape | None] = ContextVar("inferwatch_prerender",
                                                                default=None)


def prerender_format() -> Format | None:
    """The format to pre-render in, while :func:`render` collects; None otherwise.

    >>> prerender_format() is None
    True
    """
    scrape = _prerender.get()
    return None if scrape is None else scrape.format


def resolve_registry(registry: Collector | Registry | None, *,
                     caller: str = "inferwatch") -> Collector:
    """What to serve for `registry`: a prometheus_client registry or collector as it is; an
    inferwatch :class:`~inferwatch.core.registry.Registry` (the one given to
    ``instrument(registry=...)``) as the metrics of its monitors; and when None, what
    inferwatch serves by default: prometheus_client's default registry with inferwatch's
    metrics added, or in multi-worker mode the merged view of every worker
    (:func:`~inferwatch.serving.bridge.served_registry`).

    Raises ValueError, prefixed with `caller`, for anything else: it failed every scrape.

    >>> try:
    ...     resolve_registry("REGISTRY", caller="inferwatch.make_wsgi_app")
    ... except ValueError as exc:
    ...     print(str(exc).split(" a ")[0])
    inferwatch.make_wsgi_app: registry must be an inferwatch Registry,
    """
    from inferwatch.core.registry import Registry

    if registry is None:
        from inferwatch.serving.bridge import served_registry

        return served_registry()
    if isinstance(registry, Registry):
        from inferwatch.serving.bridge import InferwatchCollector

        # As the default path adds inferwatch's collector to a prometheus_client registry:
        # `?name[]=` then selects by the names it describes.
        served = CollectorRegistry()
        served.register(InferwatchCollector(registry))
        return served
    if not callable(getattr(registry, "collect", None)):
        raise ValueError(f"{caller}: registry must be an inferwatch Registry, a "
                         "prometheus_client CollectorRegistry or a collector (an object with "
                         f"collect()), got {type(registry).__name__}")
    return registry


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip, by its quality values (RFC 9110 12.5.3).

    ``gzip;q=0`` and ``*;q=0`` refuse it, ``*`` allows it unless gzip is named, and
    ``x-gzip`` is gzip; ``identity;q=0`` alone asks for it, as the plain body is refused,
    and ``identity`` rated above gzip refuses it.
    A malformed quality value makes its entry count as absent.

    >>> gzip_accepted("gzip;q=0.5, br"), gzip_accepted("gzip;q=0"), gzip_accepted("*")
    (True, False, True)
    >>> gzip_accepted("*, gzip;q=0"), gzip_accepted(None), gzip_accepted("gzip;q=0.1, identity")
    (False, False, False)
    """
    named: float | None = None
    anything: float | None = None
    identity: float | None = None
    for entry in (accept_encoding or "").split(","):
        coding, *parameters = entry.split(";")
        coding = coding.strip().lower()
        quality: float | None = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                quality = _quality(value.strip())
        if quality is None:
            continue
        if coding in ("gzip", "x-gzip"):
            named = quality if named is None else max(named, quality)
        elif coding == "*":
            anything = quality if anything is None else max(anything, quality)
        elif coding == "identity":
            identity = quality if identity is None else max(identity, quality)
    gzip_quality = named if named is not None else anything
    if gzip_quality is None:
        # `identity;q=0` refuses the plain body; gzip, not refused, is then the one coding
        # left.
        return identity == 0
    # A client rating the plain body above gzip (`gzip;q=0.1, identity`) gets it, as from
    # Go's promhttp; a tie goes to gzip.
    identity_quality = identity if identity is not None else anything
    return gzip_quality > 0 and (identity_quality is None or identity_quality <= gzip_quality)


def _quality(text: str) -> float | None:
    """A qvalue (0 to 1, at most three decimals); None when it is not one."""
    if not text or len(text) > 5 or text[0] not in "01" or (len(text) > 1 and text[1] != "."):
        return None
    # ASCII digits only: str.isdigit() also takes "²", which float() then refuses.
    if not all(c in "0123456789" for c in text[2:]) or (text[0] == "1" and text[2:].strip("0")):
        return None
    return float(text)


def negotiate(accept: str | None) -> tuple[Callable[[Collector], bytes], str]:
    """The encoder and Content-Type for an Accept header: prometheus_client's
    ``choose_encoder`` for the media range the client prefers.

    Ranges are tried by quality value, highest first (RFC 9110 12.5.1), so a client that
    prefers the classic text format gets it even when it lists OpenMetrics too; ``q=0``
    refuses a range, also where a wildcard (``*/*``, ``text/*``, ``application/*``) would
    stand for it. Media types and parameter names are case-insensitive and parameter
    values may be quoted. A range whose version cannot be read is skipped rather than failing
    the scrape; with nothing usable the classic text format is served.

    >>> negotiate("text/plain;version=0.0.4;q=0.6,application/openmetrics-text;q=0.5")[1]
    'text/plain; version=0.0.4; charset=utf-8'
    >>> negotiate('application/openmetrics-text; version="1.0.0"')[1]
    'application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores'
    """
    ranges: list[tuple[float, int, str, list[tuple[str, str]]]] = []
    refused: set[str] = set()
    for position, entry in enumerate((accept or "").split(",")):
        media, *parameters = entry.split(";")
        quality: float | None = 1.0
        kept: list[tuple[str, str]] = []
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            key, value = key.strip().lower(), _unquote(value.strip())
            if key == "q":
                quality = _quality(value)
            elif key:
                kept.append((key, value))
        if quality is not None and quality > 0:
            ranges.append((-quality, position, media.strip().lower(), kept))
        elif quality == 0 and _names_wildcard_default(media.strip().lower(), kept):
            refused.add(media.strip().lower())
    for _, _, media, parameters in sorted(ranges):
        if media in _WILDCARDS:
            # A wildcard stands for a format the client did not refuse by name: after
            # `text/plain;q=0`, `*/*` means OpenMetrics, and `application/*` never means text.
            for candidate in _WILDCARDS[media]:
                if candidate not in refused:
                    return choose_encoder(_WILDCARD_RANGES[candidate])
            continue
        if media not in ("application/openmetrics-text", "text/plain"):
            continue
        version = next((value for key, value in parameters if key == "version"), "")
        number = _version_of(version) if version else None
        if version and number is None:
            continue
        if media == "application/openmetrics-text" and number is not None and number < (1, 0, 0):
            continue  # OpenMetrics 0.0.1 is not written by prometheus_client: try the next
        # One range alone: choose_encoder takes the first range it can serve, whatever its q.
        return choose_encoder(";".join([media, *(f"{k}={v}" for k, v in parameters)]))
    return choose_encoder("")


# What a wildcard range may be served as, most preferred first, and the range asking for it.
_WILDCARDS = {
    "*/*": ("text/plain", "application/openmetrics-text"),
    "text/*": ("text/plain",),
    "application/*": ("application/openmetrics-text",),
}
_WILDCARD_RANGES = {"text/plain": "", "application/openmetrics-text":
                    "application/openmetrics-text;version=1.0.0"}
_WILDCARD_VERSIONS = {"text/plain": (0, 0, 4), "application/openmetrics-text": (1, 0, 0)}


def _names_wildcard_default(media: str, parameters: list[tuple[str, str]]) -> bool:
    """Whether a range names the format a wildcard would be served as (no version, or that
    version), so that its ``q=0`` refuses it."""
    if media not in _WILDCARD_VERSIONS:
        return False
    version = next((value for key, value in parameters if key == "version"), "")
    return not version or _version_of(version) == _WILDCARD_VERSIONS[media]


def _unquote(value: str) -> str:
    """A parameter value without its quotes (an RFC 9110 quoted-string)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _version_of(text: str) -> tuple[int, ...] | None:
    """A dotted version as numbers; None when a part is not a number, which
    prometheus_client's version comparison would raise on."""
    parts = text.split(".")
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def render(registry: Collector, accept: str | None, accept_encoding: str | None, *,
           names: Iterable[str] | None = None) -> tuple[bytes, dict[str, str]]:
    """Render `registry` in the format `accept` asks for, gzipped when `accept_encoding` allows.

    Returns the body and the response headers (Content-Type, Vary, and Content-Encoding
    when gzipped). `names` restricts the output to those metric names, like prometheus_client's
    `?name[]=` query parameter. Raises whatever a collector raises.

    >>> from prometheus_client import CollectorRegistry, Gauge
    >>> registry = CollectorRegistry()
    >>> Gauge("example_temperature_celsius", "Temperature in celsius.", registry=registry).set(21)
    >>> body, headers = render(registry, "application/openmetrics-text; version=1.0.0", "gzip")
    >>> headers["Content-Type"].split(";")[0], headers["Content-Encoding"]
    ('application/openmetrics-text', 'gzip')
    >>> gzip.decompress(body).endswith(b"# EOF\\n")
    True
    """
    encoder, content_type = negotiate(accept)
    wanted = _format_of(encoder)
    if names is not None:
        # A collector served as it is (`serve(registry=collector)`) has no restricted_registry.
        registry = (registry.restricted_registry(list(names))
                    if isinstance(registry, CollectorRegistry) else _Restricted(registry, names))
    if wanted is not None and wanted.openmetrics:
        # inferwatch's families that come as plain families (the exporter's merged view, a
        # `?name[]=` selection) are written as OpenMetrics allows: see openmetrics_families.
        registry = _OpenMetricsView(registry)
    if names is not None:
        wanted = None  # the restriction filters samples, which a pre-rendered text has none of
    try:
        body = encoder(registry) if wanted is None else _render_mixed(registry, encoder, wanted)
    except UnicodeEncodeError:
        # A label value holding a lone surrogate cannot be UTF-8 encoded and would fail every
        # scrape from then on; re-render with such characters replaced instead.
        body = encoder(_Utf8SafeView(registry))
    # The body depends on both headers: a shared cache must not hand this representation to
    # a client that asked differently (gzip to one that cannot inflate it, OpenMetrics to
    # one that wants the text format).
    headers = {"Content-Type": content_type, "Vary": VARY}
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def metrics_response(registry: Collector, accept: str | None, accept_encoding: str | None,
                     query: str = "") -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers for one scrape; a failing collector gives 500, never raises.

    `query` is the raw query string (`name[]=a&name[]=b` restricts the output).

    >>> from prometheus_client import CollectorRegistry
    >>> status, body, headers = metrics_response(CollectorRegistry(), None, None)
    >>> status, body
    (200, b'')
    """
    names = parse_qs(query).get("name[]") if query else None
    try:
        body, headers = render(registry, accept, accept_encoding, names=names)
    except Exception as exc:
        _log_render_failure(exc)
        message = f"metrics collection failed: {type(exc).__name__}\n".encode()
        return 500, message, {"Content-Type": "text/plain; charset=utf-8"}
    return 200, body, headers


def make_wsgi_app(registry: Collector | Registry | None = None) -> WsgiApp:
    """A WSGI app serving the metrics of `registry` (inferwatch's registry when None): a
    prometheus_client registry or collector, or an inferwatch Registry, whose monitors'
    metrics it serves. Anything else is a ValueError naming `registry`.

    Mount it wherever the metrics should live (Flask: DispatcherMiddleware at /metrics);
    it answers GET and HEAD on any path and 405 otherwise.

    >>> from wsgiref.util import setup_testing_defaults
    >>> from prometheus_client import CollectorRegistry
    >>> environ = {}
    >>> setup_testing_defaults(environ)
    >>> app = make_wsgi_app(CollectorRegistry())
    >>> seen = []
    >>> b"".join(app(environ, lambda status, headers: seen.append(status)))
    b''
    >>> seen
    ['200 OK']
    """
    source = resolve_registry(registry, caller="inferwatch.make_wsgi_app")

    def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            status, body, headers = _method_not_allowed(method)
        else:
            status, body, headers = metrics_response(
                source, environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"),
                environ.get("QUERY_STRING", ""))
        headers["Content-Length"] = str(len(body))
        start_response(_status_line(status), list(headers.items()))
        return [] if method == "HEAD" else [body]

    return metrics_app


def make_asgi_app(registry: Collector | Registry | None = None) -> AsgiApp:
    """An ASGI app serving the metrics of `registry` (inferwatch's registry when None), as
    :func:`make_wsgi_app` takes it.

    Rendering runs in a worker thread, so a slow collector never blocks the event loop
    that serves the model's own requests.

    >>> import asyncio
    >>> from prometheus_client import CollectorRegistry
    >>> sent = []
    >>> async def receive():
    ...     return {"type": "http.request", "body": b"", "more_body": False}
    >>> async def send(message):
    ...     sent.append(message)
    >>> scope = {"type": "http", "method": "GET", "headers": [], "query_string": b""}
    >>> asyncio.run(make_asgi_app(CollectorRegistry())(scope, receive, send))
    >>> sent[0]["status"]
    200
    """
    source = resolve_registry(registry, caller="inferwatch.make_asgi_app")

    async def metrics_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                          send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: returning without accepting makes the server close it
        if not await _drain_request_body(receive):
            return  # the client went away
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            status, body, headers = _method_not_allowed(method)
        else:
            accept = _joined_header(scope, b"accept")
            accept_encoding = _joined_header(scope, b"accept-encoding")
            query = scope.get("query_string", b"").decode("latin-1")
            loop = asyncio.get_running_loop()
            status, body, headers = await loop.run_in_executor(
                None, metrics_response, source, accept, accept_encoding, query)
        headers["Content-Length"] = str(len(body))
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers.items()],
        })
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return metrics_app


def _format_of(encoder: Callable[[Collector], bytes]) -> Format | None:
    """The format `encoder` (from ``choose_encoder``) writes, when it is one we pre-render."""
    func, keywords = encoder, {}
    if isinstance(encoder, functools.partial):
        func, keywords = encoder.func, encoder.keywords
    if func is text_format.generate_latest:
        return Format(False, keywords.get("escaping", openmetrics_format.UNDERSCORES))
    if func is openmetrics_format.generate_latest:
        return Format(True, keywords.get("escaping", openmetrics_format.UNDERSCORES))
    return None


def _render_mixed(registry: Collector, encoder: Callable[[Collector], bytes],
                  wanted: Format) -> bytes:
    """The body, pre-rendered families as they are and the others through `encoder`.

    Families keep the registry's order; OpenMetrics' single ``# EOF`` ends the whole body.
    """
    parts: list[bytes] = []
    pending: list[Metric] = []

    def flush() -> None:
        if pending:
            body = encoder(_Families(list(pending)))
            parts.append(body[:-len(_EOF)] if wanted.openmetrics else body)
            pending.clear()

    scrape = _PrerenderingScrape(wanted)
    received = 0
    token = _prerender.set(scrape)
    try:
        for family in registry.collect():
            if isinstance(family, Prerendered):
                received += 1
                flush()
                parts.append(family.text.encode("utf-8"))
            else:
                pending.append(family)
    finally:
        _prerender.reset(token)
    if received != scrape.issued:
        # A collector between the scrape and inferwatch's consumed a stand-in: render the
        # whole body again from ordinary families, as prometheus_client would.
        return encoder(registry)
    flush()
    if wanted.openmetrics:
        parts.append(_EOF)
    return b"".join(parts)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class _Restricted:
    """The samples of a collector whose names are in `names`, as prometheus_client's
    ``restricted_registry`` gives those of a registry."""

    def __init__(self, source: Collector, names: Iterable[str]) -> None:
        self._source = source
        self._names = frozenset(names)

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            samples = [sample for sample in family.samples if sample.name in self._names]
            if samples:
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = samples
                yield kept


class _OpenMetricsView:
    """The metrics of a collector as OpenMetrics allows inferwatch's summaries."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from openmetrics_families(self._source.collect())


class _Utf8SafeView:
    """The metrics of a collector with every string made encodable as UTF-8."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            clean = Metric(family.name, _utf8_safe(family.documentation), family.type,
                           _utf8_safe(family.unit))
            for sample in family.samples:
                labels = {k: _utf8_safe(v) for k, v in sample.labels.items()}
                exemplar = sample.exemplar
                if exemplar is not None:
                    exemplar = exemplar._replace(
                        labels={k: _utf8_safe(v) for k, v in exemplar.labels.items()})
                clean.samples.append(sample._replace(labels=labels, exemplar=exemplar))
            yield clean


def _utf8_safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _log_render_failure(exc: Exception) -> None:
    # A broken collector fails every scrape; one log line a minute is enough to find it.
    global _last_failure_logged
    now = time.monotonic()
    with _failure_lock:
        if now - _last_failure_logged < FAILURE_LOG_INTERVAL_SECONDS:
            return
        _last_failure_logged = now
    try:
        log.error("event=render_failed error=%s (logged at most once a minute)",
                  type(exc).__name__, exc_info=exc)
    except Exception:  # the application's log handler failed: the scrape still gets its 500
        pass


def _method_not_allowed(method: str) -> tuple[int, bytes, dict[str, str]]:
    body = f"method {method} not allowed; use GET or HEAD\n".encode("latin-1", "replace")
    return 405, body, {"Content-Type": "text/plain; charset=utf-8", "Allow": ALLOWED_METHODS}


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def _joined_header(scope: dict[str, Any], name: bytes) -> str:
    return ",".join(value.decode("latin-1") for key, value in scope.get("headers", ())
                    if key.lower() == name)


async def _drain_request_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body", False):
            return True


async def _answer_lifespan(receive: Callable[[], Awaitable[dict[str, Any]]],
                           send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    # Served alone (`uvicorn module:app`), the app gets lifespan events and must answer them.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
