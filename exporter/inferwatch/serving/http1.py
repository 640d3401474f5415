"""The minimal HTTP/1.1 the /metrics server speaks: reading a request head, parsing it, the
error that answers a bad one, and the lingering close after that answer.

Apart from the server because none of it knows of routes, connection budgets or rendering:
it is the wire format alone, kept to what scrapers, health probes and browsers send.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from urllib.parse import quote

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_LINES = 100
# Generous: Prometheus on a slow link still reads a large scrape within this.
WRITE_TIMEOUT_SECONDS = 60.0
# After an error answer the rest of the client's request is read and dropped, at most this
# long and this much: closing with bytes unread makes the kernel send a reset, which can
# destroy the answer before the client reads it (it then reports the reset, not the 431).
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
# RFC 9110 token characters: what a header name or method may hold.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Reader(asyncio.StreamReader):
    """A StreamReader that tells whether a whole request head waits in it, unparsed."""

    def has_request(self) -> bool:
        # A partial head (a slow sender's) does not count: it may never end.
        buffered = self._buffer  # type: ignore[attr-defined]
        return b"\r\n\r\n" in buffered or b"\n\n" in buffered


async def read_head_lines(reader: asyncio.StreamReader, start: bytes = b"") -> bytes:
    """The request head after `start`, up to its blank line, with CRLF line ends.

    A bare LF also ends a line (RFC 9112 2.2 allows it, Go's net/http takes it, and shell
    probes such as `printf 'GET /-/healthy HTTP/1.0\\n\\n' | nc` send it); waiting for a
    CRLF that never comes left such a client unanswered until read_timeout.
    """
    raw = start
    while True:
        try:
            raw += await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise HttpError(431, "request head too large", sent=raw) from None
        if len(raw) > MAX_HEADER_BYTES:
            raise HttpError(431, "request head too large", sent=raw)
        # Empty lines before the request line are skipped (RFC 9112 2.2), not its end.
        head = raw.lstrip(b"\r\n")
        if head.endswith((b"\n\n", b"\n\r\n")):
            lines = head.split(b"\n")[:-2]
            return b"".join(line.removesuffix(b"\r") + b"\r\n" for line in lines) + b"\r\n"


def buffered_start(reader: asyncio.StreamReader) -> bytes:
    """The first bytes waiting unread: the method of a head too large to read whole."""
    return bytes(reader._buffer[:16])  # type: ignore[attr-defined]


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close our side, then read and drop what the client still sends, within
    LINGER_SECONDS and LINGER_BYTES, so the close that follows sends no reset."""
    try:
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_SECONDS)
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError, asyncio.TimeoutError):
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    dropped = 0
    while dropped < LINGER_BYTES:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            chunk = await asyncio.wait_for(reader.read(64 * 1024), remaining)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            return
        if not chunk:
            return
        dropped += len(chunk)


@dataclass
class Request:
    """A parsed request head: its request line, and its headers by lower-case name."""

    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self._origin_form.partition("?")[0]

    @property
    def query(self) -> str:
        return self._origin_form.partition("?")[2]

    @property
    def _origin_form(self) -> str:
        """The target's path and query: a server must also take a target in absolute form
        (``http://host:9100/metrics``, RFC 9112 3.2.2), as a forwarding proxy sends it."""
        target = self.target
        scheme, sep, rest = target.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            return target
        start = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        origin = rest[start:]
        return origin if origin.startswith("/") else "/" + origin

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


class HttpError(Exception):
    """A request refused before routing: its status, the plain-text body that says why and
    any header fields the refusal needs (WWW-Authenticate, Retry-After). The connection is
    closed after the answer."""

    def __init__(self, status: int, message: str, *, sent: bytes = b"",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = f"{message}\n".encode()
        self.sent = sent  # the start of a request head read before the error, if any
        self.headers = dict(headers or {})


def parse_head(head: bytes) -> Request:
    """The request in `head` (CRLF line ends, as read_head_lines returns it); HttpError
    when it is not a request this server takes."""
    # RFC 9112 2.2: empty lines before the request line are ignored; a client may send a
    # CRLF after a request body it did not count in Content-Length.
    lines = head[:-4].lstrip(b"\r\n").split(b"\r\n")
    if len(lines) > MAX_HEADER_LINES:
        raise HttpError(431, "too many header lines")
    try:
        request_line = lines[0].decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request line is not ASCII") from None
    parts = request_line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0].encode()) or not parts[1] \
            or not parts[1].isprintable():
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        status = 505 if version.startswith("HTTP/") else 400
        raise HttpError(status, "only HTTP/1.0 and HTTP/1.1 are served")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(400, "malformed header line")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(method, target, version, headers)


def response_fields(configured: dict[str, str], page: dict[str, str],
                     framing: dict[str, str]) -> list[tuple[str, str]]:
    """The header lines of an answer: the operator's configured headers win over a page's
    own of the same name (names compare case-insensitively), except a
    Content-Security-Policy, where both are sent: a browser enforces every policy it gets,
    so the stricter of the two holds. `framing` (Content-Length, Connection) always wins.

    >>> response_fields({"X-Frame-Options": "deny", "Content-Security-Policy": "a"},
    ...                  {"x-frame-options": "sameorigin", "Content-Security-Policy": "b"},
    ...                  {"Connection": "close"})  # doctest: +NORMALIZE_WHITESPACE
    [('X-Frame-Options', 'deny'), ('Content-Security-Policy', 'a'),
     ('Content-Security-Policy', 'b'), ('Connection', 'close')]
    """
    framed = {name.lower() for name in framing}
    replaced = {name.lower() for name in configured} - {"content-security-policy"} | framed
    fields = [(name, value) for name, value in configured.items() if name.lower() not in framed]
    fields += [(name, value) for name, value in page.items() if name.lower() not in replaced]
    return fields + list(framing.items())


def url_path(path: str) -> str:
    """`path` as a URL carries it: characters a request line cannot hold percent-encoded,
    escapes already there kept.

    >>> url_path("/métriques"), url_path("/a%20b"), url_path("/metrics")
    ('/m%C3%A9triques', '/a%20b', '/metrics')
    """
    return quote(path, safe="/%:@!$&'()*+,;=-._~")
