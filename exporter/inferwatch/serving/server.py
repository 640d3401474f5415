"""The hardened /metrics server: an asyncio event loop in a daemon thread.

Why asyncio: an idle TCP connection, a TLS client that never finishes its handshake or a
slow sender costs one small object and a timer rather than a thread, so none of them can
starve a real scrape. Rendering runs in threads, at most `max_concurrency` at once; a scrape
beyond that gets an immediate 503 with Retry-After instead of queueing behind a slow collector.

Every accepted socket counts toward one connection budget from the moment it is accepted,
TLS handshakes included (the handshake runs inside the connection's own task): the budget
is `max_connections`, lowered at start-up to a quarter of the process's open-file limit
(``RLIMIT_NOFILE``), so the host application always keeps most of its descriptors; the
server never holds more sockets. At the budget, a new connection evicts the least recently
active one that is not rendering: connections refused with an error (closing) go first,
then those that never completed a good request (idle, half-open, slow, never-handshaking),
oldest first, and one with request bytes waiting unread (a newcomer that has just sent its
request) is spared while any other can go. Clients holding sockets can never lock a
newcomer out.

>>> import urllib.request
>>> from prometheus_client import CollectorRegistry, Counter
>>> registry = CollectorRegistry()
>>> Counter("example_scrapes", "Scrapes.", registry=registry).inc()
>>> with serve(port=0, addr="127.0.0.1", registry=registry) as server:
...     body = urllib.request.urlopen(server.url).read()
>>> b"example_scrapes_total 1.0" in body
True
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from prometheus_client.registry import Collector

from inferwatch.faults import record
from inferwatch.serving.connections import (
    Connection,
    connection_budget,
    dual_stack_socket,
    host_port,
    peer,
    unhandled,
)
from inferwatch.serving.event_loop import cancel_remaining_tasks, in_daemon_thread
from inferwatch.serving.exposition import metrics_response, resolve_registry
from inferwatch.serving.http1 import (
    MAX_HEADER_BYTES,
    WRITE_TIMEOUT_SECONDS,
    HttpError,
    Reader,
    Request,
    buffered_start,
    linger,
    parse_head,
    read_head_lines,
    response_fields,
    url_path,
)
from inferwatch.serving.web_config import (
    MAX_SENSIBLE_BCRYPT_COST,
    TlsFileError,
    WebConfig,
    load_cert_chain,
    load_web_config,
)

if TYPE_CHECKING:
    from inferwatch.core.registry import Registry

log = logging.getLogger("inferwatch.serving.server")

MAX_BODY_BYTES = 64 * 1024
SHUTDOWN_TIMEOUT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1
# bcrypt checks (of passwords not yet accepted) waiting or running at once; beyond, a 503.
MAX_WAITING_PASSWORD_CHECKS = 8
WARNING_INTERVAL_SECONDS = 60.0
HEALTH_ROUTES = ("/-/healthy", "/-/ready")
# ASCII digits only: str.isdigit() accepts "²" and other digits int() refuses.
_DECIMAL = re.compile(r"[0-9]{1,18}")

_TEXT = "text/plain; charset=utf-8"
_LANDING_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>inferwatch</title></head>
<body><h1>inferwatch</h1><p><a href="{path}">Metrics</a></p></body></html>
"""


class MetricsServer:
    """A running /metrics server; `serve` starts one. Stop it with `shutdown` or a `with` block.

    >>> from prometheus_client import CollectorRegistry
    >>> server = serve(port=0, addr="127.0.0.1", registry=CollectorRegistry())
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.shutdown()
    """

    def __init__(self, registry: Collector, addr: str, port: int, *,
                 ssl_context: ssl.SSLContext | None, web_config: WebConfig | None,
                 max_concurrency: int, max_connections: int, read_timeout: float,
                 idle_timeout: float, collect_timeout: float | None,
                 telemetry_path: str = "/metrics", status_pages: Any = None) -> None:
        self.addr = addr
        self.port = port
        self.telemetry_path = telemetry_path
        # Paths are compared percent-decoded, as Go's net/http (node_exporter) does: a
        # client sends "/métriques" as "/m%C3%A9triques", and may send "/metric%73".
        self._metrics_route = unquote(telemetry_path)
        self._routes = {self._metrics_route, "/", *HEALTH_ROUTES}
        self._landing_page = _LANDING_PAGE.format(
            path=html.escape(url_path(telemetry_path))).encode()
        self._registry = registry
        # inferwatch.report.status.StatusPages, or None: "/" is then a plain landing page.
        self._status_pages = status_pages
        self._ssl_context = ssl_context
        self._web_config = web_config
        self._extra_headers = dict(web_config.headers) if web_config else {}
        self._max_concurrency = max_concurrency
        self._max_connections = max_connections
        self._read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self._collect_timeout = collect_timeout
        self.connection_budget = connection_budget(max_connections)
        # Touched only from the loop thread, so they need no lock. In accept order.
        self._connections: dict[asyncio.Task[None], Connection] = {}
        self._evicted = 0
        self._rendering = 0
        self._password_checks = 0  # waiting for or running a bcrypt check
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False
        self._last_warned: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._auth_lock: asyncio.Lock | None = None
        self._startup_error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"inferwatch-metrics-{port}",
                                        daemon=True)

    @property
    def url(self) -> str:
        """The metrics URL, with a wildcard address replaced by loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.addr, self.addr)
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{url_path(self.telemetry_path)}"

    def start(self) -> None:
        """Bind and start serving in a daemon thread; raise OSError naming the address."""
        if self._thread.is_alive() or self._ready.is_set():
            # A thread starts once; restarting a stopped server would need a new socket too.
            raise RuntimeError(f"inferwatch: the server for {host_port(self.addr, self.port)} "
                               "was started already; call serve() again for a new one")
        self._thread.start()
        self._ready.wait()
        error = self._startup_error
        if error is not None:
            address = host_port(self.addr, self.port)
            if isinstance(error, OSError):
                reason = f"inferwatch: cannot listen on {address}: {error.strerror or error}"
                if error.errno is None:
                    raise OSError(reason) from error
                raise OSError(error.errno, reason) from error
            if isinstance(error, ValueError):  # an address the name lookup cannot take
                raise ValueError(f"inferwatch.serve: cannot listen on addr={self.addr!r} "
                                 f"port={self.port}: {error}") from error
            raise RuntimeError(f"inferwatch: cannot start the server for {address}: "
                               f"{error}") from error

    def shutdown(self) -> None:
        """Stop accepting, close every connection and stop the thread. Safe to call twice."""
        loop = self._loop
        if loop is None or self._closing or loop.is_closed():
            return
        self._closing = True
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(
                SHUTDOWN_TIMEOUT_SECONDS)
            loop.call_soon_threadsafe(loop.stop)
        except Exception as exc:  # the loop already stopped: nothing left to close
            _log(logging.DEBUG, "event=shutdown_incomplete error=%r", exc)
        self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"MetricsServer(url={self.url!r})"

    # The loop thread.

    def _run(self) -> None:
        loop: asyncio.AbstractEventLoop | None = None
        try:
            try:
                # Inside the guard: out of file descriptors, the loop's own selector and
                # self-pipe fail, and start() must hear of it rather than wait forever.
                loop = asyncio.new_event_loop()
                loop.set_exception_handler(_report_loop_error)
                self._loop = loop
                self._server = loop.run_until_complete(self._listen())
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                self._startup_error = exc
                if self._server is not None:
                    self._server.close()
                return
            # Ready before the first log line: the server is up whatever logging does.
            self._ready.set()
            _log(logging.INFO, "event=listening address=%s tls=%s basic_auth=%s "
                 "max_concurrency=%d max_connections=%d connection_budget=%d",
                 host_port(self.addr, self.port), self._ssl_context is not None,
                 bool(self._web_config and self._web_config.auth_required),
                 self._max_concurrency, self._max_connections, self.connection_budget)
            loop.run_forever()
        finally:
            self._ready.set()
            if loop is not None:
                cancel_remaining_tasks(loop)
                loop.close()

    @property
    def open_connections(self) -> int:
        """Sockets this server holds now, TLS handshakes in progress included."""
        return len(self._connections)

    @property
    def evicted_connections(self) -> int:
        """Connections closed so far to make room for a newer one."""
        return self._evicted

    async def _listen(self) -> asyncio.AbstractServer:
        self._auth_lock = asyncio.Lock()
        # No ssl= here: the handshake runs in the connection's task (start_tls), so a
        # socket counts toward the budget from accept, not from a finished handshake.
        # The backlog is also how many sockets one accept round takes: keep it small.
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:  # asyncio.start_server's, our reader
            return asyncio.StreamReaderProtocol(Reader(MAX_HEADER_BYTES, loop=loop),
                                                self._on_connection, loop=loop)

        backlog = min(self.connection_budget, 128)
        sock = dual_stack_socket(self.addr, self.port, backlog)
        if sock is not None:
            return await loop.create_server(protocol, sock=sock, backlog=backlog)
        try:
            server = await loop.create_server(protocol, self.addr, self.port,
                                              backlog=backlog, reuse_address=True)
        except OSError as exc:
            if exc.errno is None:
                # Python 3.13 and later: "could not bind on any address", which hides why
                # when no socket could be made at all; out of file descriptors, say that.
                _raise_if_no_socket(self.addr)
            raise
        if not server.sockets:
            # asyncio skips an address whose socket cannot be made as if its family were
            # unsupported, out of file descriptors included, and then serves nothing.
            server.close()
            raise OSError("no socket could be made for any of its addresses (out of file "
                          "descriptors, or an address family this host lacks)")
        return server

    def _make_room(self) -> bool:
        """Evict one connection if the budget is full; False when none can go."""
        if len(self._connections) < self.connection_budget:
            return True
        # Refused ones first (answered with an error, lingering to close), then unproven
        # before proven (a good answer makes a connection proven), least recently active
        # first; a newcomer is spared while any other can go (see _spared).
        candidates = sorted((c for c in self._connections.values() if not c.busy),
                            key=lambda c: (not c.refused, c.trusted, c.last_active))
        if not candidates:
            return False
        victim = next((c for c in candidates if not _spared(c)), candidates[0])
        del self._connections[victim.task]
        self._evicted += 1
        victim.transport.abort()  # its pending read fails; its task ends on its own
        if victim.checking_password:
            victim.task.cancel()  # it leaves the queue for bcrypt now, not at read_timeout
        self._warn("evicted", "event=connection_evicted reason=connection_budget budget=%d",
                   self.connection_budget)
        return True

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        if not self._make_room():
            self._warn("max_connections", "event=connection_refused reason=connection_budget "
                       "budget=%d note=every connection is rendering", self.connection_budget)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        connection = Connection(task, writer.transport, reader,  # type: ignore[arg-type]
                                 last_active=time.monotonic())
        self._connections[task] = connection
        self._handlers.add(task)
        try:
            if self._ssl_context is not None:
                # Bounds what a client that connects and never sends a ClientHello can hold.
                if not await self._handshake(writer):
                    return
                connection.transport = writer.transport
                if self._web_config is not None and \
                        not self._web_config.allows_client_certificate(
                            writer.get_extra_info("peercert")):
                    self._warn("client_allowed_sans", "event=connection_refused "
                               "reason=client_allowed_sans peer=%s", peer(writer))
                    return
            await self._serve_requests(reader, writer, connection)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError):
            pass  # the client went away, stalled or was evicted: nobody to answer
        except asyncio.CancelledError:
            # Shutdown cancels every connection. asyncio (3.11) reports a connection task
            # that ends cancelled as an unhandled exception, logging a traceback for each
            # kept-alive scraper; ending normally closes it just the same.
            pass
        except Exception as exc:
            record("server", exc)
        finally:
            if self._connections.get(task) is connection:
                del self._connections[task]
            self._handlers.discard(task)
            if self._closing:
                writer.transport.abort()
            else:
                writer.close()

    async def _handshake(self, writer: asyncio.StreamWriter) -> bool:
        """Upgrade to TLS within read_timeout; False when the peer left during it."""
        plain = writer.transport
        try:
            await writer.start_tls(self._ssl_context, ssl_handshake_timeout=self._read_timeout)
        except AttributeError:
            pass  # asyncio (3.11) when the socket closed with no error mid-handshake
        if writer.transport is None:
            # asyncio handed back no TLS transport: keep the closed plain one, so closing
            # the writer stays safe.
            writer._transport = plain  # type: ignore[attr-defined]
            return False
        return True

    async def _serve_requests(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter, connection: Connection) -> None:
        first = True
        while not self._closing:
            head: bytes | None = None
            request: Request | None = None
            try:
                head = await self._read_head(reader, first, connection)
                connection.unhandled = False
                if head is None:
                    return
                started = time.perf_counter()
                request = parse_head(head)
                await self._discard_body(reader, writer, request)
                # First, as in exporter-toolkit; before `busy`: a password check is evictable.
                await self._authenticate(request, connection)
                connection.busy = True
                try:
                    status, body, headers = await self._route(request)
                finally:
                    connection.busy = False
                keep_alive = request.keep_alive
                head_only = request.method == "HEAD"
            except HttpError as error:  # closed after: pipelined guesses queue no more checks
                status, body = error.status, error.body
                headers = {"Content-Type": _TEXT, **error.headers}
                keep_alive, started = False, time.perf_counter()
                # A HEAD answer never has a body (RFC 9110 9.3.2), an error's included: a
                # client reading one would take the body for the next answer's head.
                sent = head if head is not None else error.sent or buffered_start(reader)
                head_only = sent.lstrip(b"\r\n").startswith(b"HEAD ")
                failed = True
            else:
                failed = False
            keep_alive = keep_alive and not self._closing
            await self._send(writer, status, headers, body, keep_alive=keep_alive,
                             head_only=head_only)
            if failed and not self._closing:
                # The rest of a refused request may still be on its way; meanwhile the
                # connection is the first a newcomer evicts.
                connection.refused = True
                await linger(reader, writer)
            connection.last_active = time.monotonic()
            connection.trusted = connection.trusted or status < 400
            if log.isEnabledFor(logging.DEBUG):
                _log(logging.DEBUG, "event=request peer=%s method=%s path=%r status=%d "
                     "bytes=%d duration_ms=%.1f", peer(writer),
                     request.method if request else "-", request.path if request else "-",
                     status, len(body), (time.perf_counter() - started) * 1000)
            if not keep_alive:
                return
            first = False

    async def _read_head(self, reader: asyncio.StreamReader, first: bool,
                         connection: Connection) -> bytes | None:
        """The request line and headers, or None when the client closed or went quiet."""
        try:
            if first:
                return await asyncio.wait_for(unhandled(read_head_lines(reader), connection),
                                              self._read_timeout)
            # Between keep-alive requests a client may stay silent up to idle_timeout; once it
            # starts a request, the rest of the head must arrive within read_timeout.
            start = await asyncio.wait_for(unhandled(reader.readexactly(1), connection),
                                           self._idle_timeout)
            return await asyncio.wait_for(unhandled(read_head_lines(reader, start), connection),
                                          self._read_timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            return None

    async def _discard_body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            request: Request) -> None:
        if "transfer-encoding" in request.headers:
            raise HttpError(501, "request bodies with Transfer-Encoding are not supported")
        length = request.headers.get("content-length")
        if length is None:
            return
        if not _DECIMAL.fullmatch(length):
            raise HttpError(400, "invalid Content-Length")
        if int(length) > MAX_BODY_BYTES:
            raise HttpError(413, "request body too large")
        if int(length):
            if request.version == "HTTP/1.1" and \
                    request.headers.get("expect", "").strip().lower() == "100-continue":
                # The client holds its body back until told to send it (RFC 9110 10.1.1):
                # waiting for the body without saying so left it unanswered until
                # read_timeout, then closed.
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_SECONDS)
            await asyncio.wait_for(reader.readexactly(int(length)), self._read_timeout)

    async def _route(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        path = unquote(request.path)
        if path not in self._routes:
            return 404, f"not found; the metrics are at {self.telemetry_path}\n".encode(), {
                "Content-Type": _TEXT}
        if request.method not in ("GET", "HEAD"):
            return 405, f"method {request.method} not allowed\n".encode(), {
                "Content-Type": _TEXT, "Allow": "GET, HEAD"}
        if path == self._metrics_route:
            return await self._scrape(request)
        if path == "/":
            if self._status_pages is not None:
                return await self._render_in_slot(
                    functools.partial(self._status_pages.respond, request.query), "page")
            return 200, self._landing_page, {"Content-Type": "text/html; charset=utf-8"}
        return 200, b"OK", {"Content-Type": _TEXT}

    async def _authenticate(self, request: Request, connection: Connection) -> None:
        """Return when `request` may be answered; HttpError 401 when its credentials are
        wrong or missing, 503 when its password check cannot be had in time."""
        config = self._web_config
        if config is None or not config.auth_required:
            return
        header = request.headers.get("authorization")
        allowed = config.check_basic_auth_cached(header)
        if allowed is None:
            allowed = await self._check_password(config, header, connection)
        if not allowed:
            raise HttpError(401, "unauthorized",
                            headers={"WWW-Authenticate": 'Basic realm="inferwatch"'})

    async def _check_password(self, config: WebConfig, header: str | None,
                              connection: Connection) -> bool:
        """The bcrypt check, one at a time in a thread, at most MAX_WAITING_PASSWORD_CHECKS
        waiting or running; the connection stays evictable, and eviction ends its wait."""
        assert self._auth_lock is not None
        lock = self._auth_lock

        async def check() -> bool:
            await lock.acquire()
            # Released when the bcrypt thread really ends, not when this waiter gives up:
            # released at the timeout, every later check started a thread that queued on
            # bcrypt's lock, so slow checks piled up threads without bound.
            try:
                checked = in_daemon_thread(functools.partial(config.check_basic_auth, header),
                                            on_done=lock.release)
            except BaseException:
                lock.release()
                raise
            return await checked

        if self._password_checks >= MAX_WAITING_PASSWORD_CHECKS:
            note = f"{self._password_checks} password checks waiting"
        else:
            self._password_checks += 1
            connection.checking_password = True
            try:
                return await asyncio.wait_for(check(), self._read_timeout)
            except asyncio.TimeoutError:
                note = f"password checks queued longer than read_timeout={self._read_timeout}s"
            except Exception as exc:  # a broken bcrypt install refuses access, not crashes
                record("server.auth", exc)
                return False
            finally:
                self._password_checks -= 1
                connection.checking_password = False
        self._warn("auth_backlog", "event=auth_backlog note=%s", note)
        raise HttpError(503, "too many password checks queued; retry later",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    async def _scrape(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        render = functools.partial(
            metrics_response, self._registry, request.headers.get("accept"),
            request.headers.get("accept-encoding"), request.query)
        return await self._render_in_slot(render, "scrape")

    async def _render_in_slot(self, render: Callable[[], tuple[int, bytes, dict[str, str]]],
                              what: str) -> tuple[int, bytes, dict[str, str]]:
        """Run `render` in a thread under the one concurrency cap that scrapes and status
        pages share; above it, a fast 503."""
        busy_headers = {"Content-Type": _TEXT, "Retry-After": str(RETRY_AFTER_SECONDS)}
        if self._rendering >= self._max_concurrency:
            self._warn("max_concurrency", "event=%s_rejected reason=max_concurrency "
                       "rendering=%d", what, self._rendering)
            return 503, b"busy: too many scrapes in progress; retry later\n", busy_headers
        self._rendering += 1
        # The slot is released when the render thread really ends, not when we stop waiting:
        # renders stuck in a hung collector keep counting, so they cannot pile up.
        rendered = in_daemon_thread(render, on_done=self._render_finished)
        try:
            return await asyncio.wait_for(rendered, self._collect_timeout)
        except asyncio.TimeoutError:
            self._warn("collect_timeout", "event=%s_timeout collect_timeout=%ss",
                       what, self._collect_timeout)
            return 503, (f"metrics collection took longer than {self._collect_timeout}s\n"
                         .encode()), busy_headers

    def _render_finished(self) -> None:
        self._rendering -= 1

    async def _send(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str],
                    body: bytes, *, keep_alive: bool, head_only: bool) -> None:
        fields = response_fields(self._extra_headers, headers, {
            "Content-Length": str(len(body)),
            "Connection": "keep-alive" if keep_alive else "close"})
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [f"{name}: {value}" for name, value in fields]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_SECONDS)

    def _warn(self, key: str, message: str, *args: object) -> None:
        # These fire once per rejected request; one line a minute per kind tells the story.
        now = time.monotonic()
        if now - self._last_warned.get(key, -WARNING_INTERVAL_SECONDS) >= WARNING_INTERVAL_SECONDS:
            self._last_warned[key] = now
            _log(logging.WARNING, message + " (logged at most once a minute)", *args)


def _log(level: int, message: str, *args: object) -> None:
    """Log on the server's logger. logging's handleError covers only a handler's emit(): an
    application's filter or handler that raises (one expecting attributes its own records
    carry) would otherwise end the server thread or a connection, or raise into the caller."""
    try:
        log.log(level, message, *args, stacklevel=2)
    except Exception as exc:
        record("server.logging", exc)


def _report_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own report of a failed callback or transport, through its logger; raised
    from there, a logging failure would escape run_forever and stop the server."""
    try:
        loop.default_exception_handler(context)
    except Exception as exc:
        record("server.logging", exc)


def serve(port: int = 8000, addr: str = "0.0.0.0", *,
          registry: Collector | Registry | None = None,
          certfile: str | None = None, keyfile: str | None = None,
          web_config_file: str | None = None, max_concurrency: int = 4,
          max_connections: int = 512, read_timeout: float = 10.0,
          collect_timeout: float | None = None, idle_timeout: float = 60.0,
          telemetry_path: str = "/metrics", status_page: Any = None,
          status_config: Any = None) -> MetricsServer:
    """Serve /metrics from a background daemon thread; returns once the socket is bound.

    `port=0` picks a free port (read it from `.port`). TLS comes from `certfile` and
    `keyfile` or from `web_config_file` (node_exporter's web-config format, which also
    gives basic auth). At most `max_concurrency` scrapes render at once, the rest get a fast
    503; `collect_timeout` bounds how long a scrape waits for a render; `read_timeout`
    bounds reading a request head and a TLS handshake; `idle_timeout` closes quiet
    keep-alive connections; `max_connections` bounds the sockets held (TLS handshakes
    included; at most a quarter of the open-file limit), the oldest idle one making room
    for a newcomer; `telemetry_path` moves the metrics (node_exporter's
    --web.telemetry-path). Raises OSError naming the address when it cannot bind (or the
    process is out of file descriptors), ValueError or WebConfigError for bad settings
    (TypeError for an `addr` not a string), RuntimeError naming the address when the server
    fails to start for another reason; it never returns a server that is not listening.

    `registry` is what to serve: inferwatch's metrics and prometheus_client's default
    registry when None, an inferwatch :class:`~inferwatch.core.registry.Registry` (the one
    given to ``instrument(registry=...)``) for its monitors' metrics alone, or a
    prometheus_client registry or collector as it is; anything else is a ValueError.

    `/` answers the status page (:mod:`inferwatch.report.status`), behind the same TLS,
    basic auth and concurrency cap as the metrics: on by default when the metrics are
    inferwatch's own (`registry` None or an inferwatch Registry, whose models it shows),
    off with `status_page=False`; given a prometheus_client `registry`, pass the
    :class:`~inferwatch.core.registry.Registry` to show as `status_page`. `status_config`
    is the generator config (a YAML path or Config) whose thresholds the page's alert
    conditions use; the defaults otherwise.

    >>> from prometheus_client import CollectorRegistry
    >>> with serve(port=0, addr="127.0.0.1", registry=CollectorRegistry()) as server:
    ...     server.port > 0
    True
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        # True would bind port 1, -1 raised OverflowError, "8000" a failed name lookup.
        raise ValueError(f"inferwatch.serve: port must be a whole number from 0 to 65535, "
                         f"got {port!r}")
    if not isinstance(addr, str):
        raise TypeError(f"inferwatch.serve: addr must be a host name or address string, "
                        f"got {type(addr).__name__}")
    if addr.startswith("[") and addr.endswith("]"):
        # "[::1]" as a URL and --web.listen-address write it; the name lookup would fail.
        addr = addr[1:-1]
    _check_count(max_concurrency=max_concurrency, max_connections=max_connections)
    _check_positive(read_timeout=read_timeout, idle_timeout=idle_timeout)
    if collect_timeout is not None:
        _check_positive(collect_timeout=collect_timeout)
    if not isinstance(telemetry_path, str):
        raise ValueError(f"inferwatch.serve: telemetry_path must be a path string like "
                         f"/metrics, got {type(telemetry_path).__name__}")
    try:
        telemetry_path.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a path read from bytes with surrogateescape) cannot be sent in
        # a URL; it failed later with a bare UnicodeEncodeError naming no setting.
        raise ValueError(f"inferwatch.serve: telemetry_path must be valid Unicode text, "
                         f"got {telemetry_path!r}") from None
    if web_config_file is not None and (certfile or keyfile):
        raise ValueError("inferwatch.serve: give either certfile/keyfile or web_config_file, "
                         "not both")
    if (not telemetry_path.startswith("/") or unquote(telemetry_path) in ("/", *HEALTH_ROUTES)
            or "?" in telemetry_path or any(c.isspace() for c in telemetry_path)):
        raise ValueError(f"inferwatch.serve: telemetry_path must be a path like /metrics, other "
                         f"than / and {' and '.join(HEALTH_ROUTES)}; got {telemetry_path!r}")
    if bool(certfile) != bool(keyfile):
        raise ValueError("inferwatch.serve: certfile and keyfile go together")
    web_config = load_web_config(web_config_file) if web_config_file is not None else None
    _warn_slow_password_checks(web_config, read_timeout)
    if web_config is not None:
        ssl_context = web_config.ssl_context()
    elif certfile and keyfile:
        ssl_context = _ssl_context(certfile, keyfile)
    else:
        ssl_context = None
    served = resolve_registry(registry, caller="inferwatch.serve")
    pages = _status_pages(status_page, registry, status_config, telemetry_path)
    server = MetricsServer(
        served, addr, port, ssl_context=ssl_context, web_config=web_config,
        max_concurrency=max_concurrency, max_connections=max_connections,
        read_timeout=read_timeout, idle_timeout=idle_timeout, collect_timeout=collect_timeout,
        telemetry_path=telemetry_path, status_pages=pages)
    server.start()
    return server


def _warn_slow_password_checks(web_config: WebConfig | None, read_timeout: float) -> None:
    """Warn, naming the user, about a bcrypt cost whose check takes longer than
    read_timeout here (that user's first scrapes get 503 until one check finishes), or above
    MAX_SENSIBLE_BCRYPT_COST; start-up goes on, as exporter-toolkit takes any cost 4..31."""
    if web_config is None or not web_config.auth_required:
        return
    try:
        seconds = web_config.check_seconds()
    except Exception as exc:  # a broken bcrypt install: the checks themselves will say so
        _log(logging.DEBUG, "event=bcrypt_timing_failed error=%r", exc)
        return
    for user, hashed in web_config.users.items():
        cost = int(hashed.split("$")[2])
        if seconds[user] > read_timeout or cost > MAX_SENSIBLE_BCRYPT_COST:
            # The highest cost whose check takes at most half of read_timeout here.
            suggested = cost
            while suggested > 4 and (suggested > MAX_SENSIBLE_BCRYPT_COST or
                                     seconds[user] * 2.0 ** (suggested - cost)
                                     > read_timeout / 2):
                suggested -= 1
            _log(logging.WARNING, "event=basic_auth_cost_too_high file=%s user=%s cost=%d "
                 "check_seconds=%.1f read_timeout=%ss note=each password check of this user "
                 "takes about %.1fs of CPU here, and one not done within read_timeout answers "
                 "503; hash the password with a cost of at most %d", web_config.path, user,
                 cost, seconds[user], read_timeout, seconds[user], suggested)


def _status_pages(status_page: Any, registry: Collector | Registry | None, config: Any,
                  telemetry_path: str) -> Any:
    """The status pages to serve at "/", or None (see serve)."""
    from inferwatch.core.registry import Registry

    own = isinstance(registry, Registry)
    if status_page is False or (status_page is None and registry is not None and not own):
        return None
    from inferwatch.report.status import StatusPages

    # The page shows the models whose metrics are served: those of an inferwatch Registry
    # given as `registry`, unless `status_page` names another.
    source = (registry if own else None) if status_page in (None, True) else status_page
    # One slash only: "//metrics" less all of them linked to "metrics", that is /metrics.
    return StatusPages(source, config=config, metrics_link=telemetry_path[1:])


def _ssl_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        load_cert_chain(context, certfile, keyfile)
    except TlsFileError as exc:
        raise ValueError(f"inferwatch.serve: cannot load certfile={certfile!r} "
                         f"keyfile={keyfile!r}: {exc.problem}") from exc
    return context


def _check_count(**values: int) -> None:
    for name, value in values.items():
        # A string ("4", from an environment variable) failed with a bare TypeError, 2.5
        # only when the socket was made, and True counted as 1.
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"inferwatch.serve: {name} must be a positive whole number, "
                             f"got {value!r}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"inferwatch.serve: {name} must be a number of seconds, "
                             f"got {value!r}")
        if not value > 0:
            raise ValueError(f"inferwatch.serve: {name} must be positive, got {value!r}")


def _spared(connection: Connection) -> bool:
    """Whether eviction passes `connection` over while any other can go: a newcomer whose
    request waits unread. One refused (closing) or waiting for a password check never is:
    the requests pipelined behind a guess spare it no more than an idle socket."""
    if connection.refused or connection.checking_password:
        return False
    return connection.has_unread_bytes()


def _raise_if_no_socket(addr: str | None) -> None:
    """Raise the error that making a socket for `addr`'s family gives (``EMFILE``: out of
    file descriptors); return when one can be made (then the address was the trouble)."""
    family = socket.AF_INET6 if addr and ":" in addr else socket.AF_INET
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror) from None
