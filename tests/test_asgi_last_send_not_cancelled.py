"""An ASGI response the server was given in full is complete, however soon its client closes:
one whose last message was handed to the server's ``send`` (a client that reads the whole
body and closes at once makes hypercorn's last ``send`` fail or its task cancelled, and the
app's ``receive`` return ``http.disconnect``, before that send returns), and one whose bytes
reached its declared ``Content-Length`` before its empty last message (Starlette's
``FileResponse`` of a size that is a multiple of its chunk, any ``BaseHTTPMiddleware``).
A client gone before that is still a cancelled request.

Through a real uvicorn with a raw socket client that closes at exact points, and driven as a
server drives the app at the one point no real server here can be made to hit on purpose:
a disconnect while the server's last ``send`` is under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

import inferwatch
from conftest import free_port_in
from inferwatch.serving.middleware import InstrumentMiddleware
from processes import serving_app
from request_totals import requests_by_outcome
from stream_totals import STREAM_EXAMPLES
from waiting import wait_until

# The loopback ports these tests' servers may take: below those handed out to outgoing
# connections (32768 and up).
PORTS = range(31200, 31250)


@contextlib.contextmanager
def own_server(command: Callable[[int], list[str]], app_dir: Path, token: str
               ) -> Iterator[tuple[str, int]]:
    """The server `command(port)` starts from `app_dir` on a port of `PORTS`, once its
    ``/whoami`` answers `token`: its URL and port. A port that another server took between
    the choice and the bind (a test running at the same time) answers with another token,
    and the next port is tried."""
    for _ in range(5):
        port = free_port_in(PORTS)
        with serving_app(command(port), port, app_dir=app_dir, log_dir=app_dir,
                         ready_path="/health") as url:
            if http_get(url + "/whoami") != token.encode():
                continue
            yield url, port
            return
    raise AssertionError(f"no port of {PORTS} stayed this test's server's")


def http_get(url: str) -> bytes:
    """The body of a GET of `url` (of an error answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        return error.read()


APP = '''
import inferwatch
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Mount, Route

SIZE = 300_000


async def wait_for_the_client_to_go(receive):
    while (await receive())["type"] != "http.disconnect":
        pass


async def declared(scope, receive, send):
    """GET /whole/{n}: the declared bytes in two messages, then, once the client has gone,
    the empty last message. GET /cut/{n}: half of them, then nothing once it has gone."""
    whole = scope["path"].startswith("/whole/")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(SIZE).encode()),
                            (b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": b"a" * (SIZE // 2), "more_body": True})
    if whole:
        await send({"type": "http.response.body", "body": b"b" * (SIZE - SIZE // 2),
                    "more_body": True})
    await wait_for_the_client_to_go(receive)
    if whole:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def health(request):
    return PlainTextResponse("ok")


async def whoami(request):
    return PlainTextResponse(TOKEN)


async def download(request):
    return FileResponse(FILE)


class ServedBy(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Served-By"] = "a"
        return response


starlette = Starlette(routes=[Route("/health", health), Route("/whoami", whoami),
                              Route("/file/{n}", download),
                              Mount("/metrics", inferwatch.make_asgi_app())],
                      middleware=[Middleware(ServedBy)])


async def router(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(("/whole/", "/cut/")):
        await declared(scope, receive, send)
    else:
        await starlette(scope, receive, send)


inferwatch.monitor("files", "1")
app = inferwatch.InstrumentMiddleware(router, routes={
    "/whole/{n}": "files", "/cut/{n}": "files", "/file/{n}": "files"})
'''


@contextlib.contextmanager
def uvicorn(tmp_path: Path, file_size: int) -> Iterator[tuple[str, int, bytes]]:
    """uvicorn serving `APP` with a file of `file_size` bytes; its URL, port and file."""
    data = random.Random(5).randbytes(file_size)
    token = uuid.uuid4().hex
    (tmp_path / "report.bin").write_bytes(data)
    (tmp_path / "last_send_app.py").write_text(
        f"FILE = {str(tmp_path / 'report.bin')!r}\nTOKEN = {token!r}\n" + textwrap.dedent(APP))

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "last_send_app:app", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]

    with own_server(command, tmp_path, token) as (url, port):
        yield url, port, data


def read_then_close(port: int, path: str, body_bytes: int | None = None) -> bytes:
    """GET `path` on a raw socket, read `body_bytes` of the body (None: all its declared
    Content-Length), and close at once: the body read."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, "the server closed before its headers"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        if body_bytes is None:
            lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            body_bytes = int(lengths[0])
        while len(body) < body_bytes:
            chunk = sock.recv(65536)
            assert chunk, "the server closed mid-body"
            body += chunk
        return body[:body_bytes]


def outcomes(url: str) -> dict[str, float]:
    from test_middleware import scrape

    return {outcome: scrape(url, "inferwatch_requests_total", model="files", outcome=outcome)
            for outcome in ("ok", "error", "cancelled")}


def counted(url: str, count: int) -> bool:
    return sum(outcomes(url).values()) >= count


@pytest.mark.integration
def test_uvicorn_a_body_that_reached_its_length_is_ok_when_the_client_goes_before_its_end(
        tmp_path):
    with uvicorn(tmp_path, 1000) as (url, port, _):
        # The app sends its empty last message only after uvicorn told it the client left.
        body = read_then_close(port, "/whole/1")
        assert body == b"a" * 150_000 + b"b" * 150_000
        wait_until(lambda: counted(url, 1), what="the whole answer to be counted")
        assert outcomes(url) == {"ok": 1, "error": 0, "cancelled": 0}

        assert read_then_close(port, "/cut/2", body_bytes=1000) == b"a" * 1000
        wait_until(lambda: counted(url, 2), what="the cut answer to be counted")
        assert outcomes(url) == {"ok": 1, "error": 0, "cancelled": 1}
        from test_middleware import scrape
        assert scrape(url, "inferwatch_stream_items_count", model="files") == 0
        assert scrape(url, "inferwatch_requests_in_flight", model="files") == 0


@pytest.mark.integration
def test_uvicorn_file_responses_read_whole_by_clients_that_close_at_once_are_ok(tmp_path):
    # Four whole 64 KiB chunks: FileResponse ends with an empty message, as does the
    # BaseHTTPMiddleware it goes through.
    with uvicorn(tmp_path, 4 * 64 * 1024) as (url, port, data):
        for i in range(20):
            assert read_then_close(port, f"/file/{i}") == data
        wait_until(lambda: counted(url, 20), what="the downloads to be counted")
        assert outcomes(url) == {"ok": 20, "error": 0, "cancelled": 0}


# --- driven as a server drives it ---------------------------------------------------------
class Server:
    """One request's server side: `receive` gives the request, then waits until the client
    has gone and says so; `send` takes the messages, and the one numbered `gone_at` (from 0,
    the response's start) is the one the client leaves during, in the way `how`:

    - ``"tells"``: the server notes the disconnect and lets the app run (its disconnect
      listener gets ``http.disconnect``) before that send returns, as uvicorn while it
      waits to write, or hypercorn;
    - ``"fails"``: that send then raises, as a server whose write found the socket closed;
    - ``"cancels"``: the server cancels the app's task, as hypercorn does.

    Messages sent after the client left are dropped, as uvicorn drops them."""

    def __init__(self, gone_at: int | None, how: str = "tells") -> None:
        self.gone_at = gone_at
        self.how = how
        self.sent: list[dict] = []
        self.gone = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.requested = False

    async def receive(self) -> dict:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if self.gone.is_set():
            return
        self.sent.append(message)
        if len(self.sent) - 1 != self.gone_at:
            return
        self.gone.set()
        for _ in range(3):  # the app's disconnect listener runs
            await asyncio.sleep(0)
        if self.how == "fails":
            raise ConnectionResetError("connection reset by peer")
        if self.how == "cancels":
            assert self.task is not None
            self.task.cancel()
            await asyncio.sleep(0)

    def serve(self, app: Callable[..., Any], path: str = "/file") -> BaseException | None:
        """Run `app` for one GET of `path`: what it raised, if anything."""
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [], "server": ("test", 80), "client": ("client", 1)}

        async def main() -> BaseException | None:
            self.task = asyncio.ensure_future(app(scope, self.receive, self.send))
            try:
                await self.task
            except BaseException as exc:
                return exc
            return None

        return asyncio.run(main())


@pytest.fixture
def files(registry):
    return inferwatch.monitor("files", "1", registry=registry)


@pytest.mark.parametrize("how", ["tells", "fails", "cancels"])
def test_a_file_response_whose_last_message_the_server_took_is_ok(registry, files, tmp_path,
                                                                   how):
    """A FileResponse of one chunk: start, then its body in its last message, during whose
    send the client, having read it all, closes."""
    path = tmp_path / "report.txt"
    path.write_bytes(b"x" * 1000)

    async def download(request):
        return FileResponse(path)

    app = InstrumentMiddleware(Starlette(routes=[Route("/file", download)]), model="files",
                               registry=registry)
    server = Server(gone_at=1, how=how)
    server.serve(app)
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]
    assert server.sent[1]["body"] == b"x" * 1000
    assert requests_by_outcome(files) == {"ok": 1}


@pytest.mark.parametrize("how", ["tells", "fails", "cancels"])
def test_a_client_gone_while_an_earlier_message_is_sent_is_cancelled(registry, files,
                                                                     tmp_path, how):
    path = tmp_path / "report.bin"
    path.write_bytes(b"x" * (3 * 64 * 1024 + 5))  # four body messages

    async def download(request):
        return FileResponse(path)

    app = InstrumentMiddleware(Starlette(routes=[Route("/file", download)]), model="files",
                               registry=registry)
    Server(gone_at=2, how=how).serve(app)
    assert requests_by_outcome(files) == {"cancelled": 1}


def chunked_app(chunks: list[bytes], declared: bool, empty_end: bool) -> Callable[..., Any]:
    """An app streaming `chunks` (with a Content-Length when `declared`; then an empty last
    message when `empty_end`) while it listens for its client's disconnect, as Starlette's
    responses do under ASGI spec 2.3: the disconnect stops it."""

    async def app(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        headers = [(b"content-length", str(sum(map(len, chunks))).encode())] if declared else []
        messages = [{"type": "http.response.start", "status": 200, "headers": headers}]
        messages += [{"type": "http.response.body", "body": chunk, "more_body": True}
                     for chunk in chunks]
        if empty_end or not chunks:
            messages.append({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            messages[-1]["more_body"] = False

        async with anyio.create_task_group() as group:
            async def respond() -> None:
                for message in messages:
                    await send(message)
                group.cancel_scope.cancel()

            group.start_soon(respond)
            await receive()  # the request
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

    return app


@STREAM_EXAMPLES
@given(chunks=st.lists(st.binary(min_size=0, max_size=40), max_size=6),
       declared=st.booleans(), empty_end=st.booleans(), gone_at=st.integers(0, 8),
       how=st.sampled_from(["tells", "fails", "cancels"]))
def test_a_response_is_cancelled_only_when_its_client_left_before_it_was_handed_over_whole(
        registry, chunks, declared, empty_end, gone_at, how):
    """Whatever the chunks and wherever the client goes: cancelled when it went during the
    send of a message before the one that completed the answer (its last, or the one that
    reached its declared length), ok otherwise, and the client never missed a byte of an
    answer counted ok."""
    model = registry.monitor("files", "1")
    before = requests_by_outcome(model)
    app = InstrumentMiddleware(chunked_app(chunks, declared, empty_end), model="files",
                               registry=registry)
    server = Server(gone_at=gone_at, how=how)
    server.serve(app)

    bodies = [m for m in server.sent if m["type"] == "http.response.body"]
    total = sum(map(len, chunks))
    messages = 1 + len(chunks) + (1 if empty_end or not chunks else 0)
    completing = messages - 1
    if declared:
        taken = 0
        for index, chunk in enumerate(chunks, start=1):
            taken += len(chunk)
            if taken >= total:
                completing = min(completing, index)
                break
    cancelled = gone_at < completing
    after = requests_by_outcome(model)
    gained = {k: after.get(k, 0) - before.get(k, 0) for k in ("ok", "cancelled", "error")}
    assert gained == {"ok": 0 if cancelled else 1, "cancelled": 1 if cancelled else 0,
                      "error": 0}
    if not cancelled:
        assert b"".join(m["body"] for m in bodies) == b"".join(chunks)
