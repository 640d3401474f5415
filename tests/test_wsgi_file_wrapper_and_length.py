"""WSGI answers that are no streams: a body of declared length (``Content-Length``) is one
answer however many chunks its iterable yields, and a file made by the server's
``wsgi.file_wrapper`` is one answer, also when a framework iterates it on its way out. A
server whose wrapper is a function (uWSGI's hands the object it was given back as the body
and sends it by its file descriptor only when the body is that object) still gets its
object, and where it iterates it, gets the app's blocks rather than the file's lines.

Through a real gunicorn, and as a uWSGI-like server drives the middleware (uWSGI itself is
no dependency of the project).
"""

from __future__ import annotations

import io
import os
import random
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.serving.middleware import WSGIInstrumentMiddleware
from request_totals import requests_by_outcome
from stream_totals import STREAM_EXAMPLES
from test_asgi_last_send_not_cancelled import own_server
from test_middleware import get, scrape
from waiting import wait_until

APP = '''
import os
from flask import Flask, Response
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import inferwatch
from inferwatch.serving.middleware import WSGIInstrumentMiddleware

CHUNKS = [b"a" * 1000, b"b" * 1000, b"c" * 1000]
inferwatch.monitor("answers", "1")


def answers(environ, start_response):
    """/sized: a generator of three chunks with a Content-Length; /stream: without one."""
    headers = [("Content-Type", "application/octet-stream")]
    if environ["SCRIPT_NAME"].endswith("/sized"):  # where the dispatcher mounted it
        headers.append(("Content-Length", str(sum(map(len, CHUNKS)))))
    start_response("200 OK", headers)
    return (chunk for chunk in CHUNKS)


flask_app = Flask(__name__)


@flask_app.get("/health")
def health():
    return "ok"


@flask_app.get("/whoami")
def whoami():
    return TOKEN


@flask_app.get("/report")
def report():
    # The server's file wrapper, iterated by werkzeug (no direct passthrough): no length.
    wrapper = __import__("flask").request.environ["wsgi.file_wrapper"]
    return Response(wrapper(open(FILE, "rb"), 4096), mimetype="application/octet-stream")


flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {
    "/metrics": inferwatch.make_wsgi_app(), "/sized": answers, "/stream": answers})
app = WSGIInstrumentMiddleware(flask_app.wsgi_app, routes={
    "/sized": "answers", "/stream": "answers", "/report": "answers"})
'''


@pytest.mark.integration
def test_gunicorn_sized_bodies_and_wrapped_files_are_answers_and_streams_stay_streams(
        tmp_path: Path) -> None:
    data = random.Random(3).randbytes(100_000)
    (tmp_path / "report.bin").write_bytes(data)
    token = uuid.uuid4().hex
    (tmp_path / "answers_app.py").write_text(
        f"FILE = {str(tmp_path / 'report.bin')!r}\nTOKEN = {token!r}\n" + textwrap.dedent(APP))

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
                "1", "--log-level", "warning", "answers_app:app"]

    with own_server(command, tmp_path, token) as (url, _):
        for _ in range(2):
            assert get(url + "/sized") == (200, b"a" * 1000 + b"b" * 1000 + b"c" * 1000)
        assert get(url + "/report") == (200, data)
        wait_until(lambda: scrape(url, "inferwatch_requests_total", model="answers") == 3,
                   what="the answers to be counted")
        assert scrape(url, "inferwatch_requests_total", model="answers", outcome="ok") == 3
        assert scrape(url, "inferwatch_stream_items_count", model="answers") == 0
        assert scrape(url, "inferwatch_stream_first_item_seconds_count", model="answers") == 0

        assert get(url + "/stream")[0] == 200  # no length: still a stream of three chunks
        wait_until(lambda: scrape(url, "inferwatch_requests_total", model="answers") == 4,
                   what="the stream to be counted")
        assert scrape(url, "inferwatch_stream_items_count", model="answers") == 1
        assert scrape(url, "inferwatch_stream_items_sum", model="answers") == 3
        assert scrape(url, "inferwatch_requests_in_flight", model="answers") == 0


# --- the middleware alone, driven as a server drives it -----------------------------------
def drive(app: Callable[..., Iterable[bytes]], environ: dict[str, Any] | None = None
          ) -> list[bytes]:
    """One GET through `app` by a server that iterates the body and closes it: its chunks."""
    environ = {"PATH_INFO": "/x", "REQUEST_METHOD": "GET", **(environ or {})}
    body = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return list(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def stream_figures(monitor: Any) -> tuple[int, float]:
    """(streams, items) the model recorded, once drained."""
    monitor.drain()
    histogram = monitor.state.histograms.get("inferwatch_stream_items")
    if not histogram:
        return 0, 0.0
    series = histogram[()]
    return int(series.counts.sum()), series.sum


@STREAM_EXAMPLES
@given(chunks=st.lists(st.binary(max_size=30), max_size=6), declared=st.booleans(),
       header_name=st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
def test_a_body_of_declared_length_is_no_stream_however_it_is_chunked(
        registry, chunks, declared, header_name):
    monitor = registry.monitor("answers", "1")
    before_streams, before_items = stream_figures(monitor)
    before = requests_by_outcome(monitor).get("ok", 0)

    def app(environ, start_response):
        headers = [("Content-Type", "application/octet-stream")]
        if declared:
            headers.append((header_name, str(sum(map(len, chunks)))))
        start_response("200 OK", headers)
        return (chunk for chunk in chunks)

    wrapped = WSGIInstrumentMiddleware(app, model="answers", registry=registry)
    assert b"".join(drive(wrapped)) == b"".join(chunks)
    streams, items = stream_figures(monitor)
    with_bytes = sum(1 for chunk in chunks if chunk)
    expected = (1, with_bytes) if with_bytes > 1 and not declared else (0, 0)
    assert (streams - before_streams, items - before_items) == expected
    assert requests_by_outcome(monitor).get("ok", 0) == before + 1


def test_odd_headers_are_the_servers_to_refuse_and_counted(registry):
    monitor = registry.monitor("answers", "1")

    def app(environ, start_response):
        start_response("200 OK", [42])  # no (name, value) pair
        return iter([b"a", b"b"])

    before = faults.internal_error_counts().get("middleware", 0)
    drive(WSGIInstrumentMiddleware(app, model="answers", registry=registry))
    assert faults.internal_error_counts().get("middleware", 0) == before + 1
    assert requests_by_outcome(monitor) == {"ok": 1}


class UwsgiLike:
    """A server with uWSGI's ``wsgi.file_wrapper``: a function that notes the object it was
    given (uWSGI takes its file descriptor) and hands that object back as the body. When
    the app's body is that object, the server sends the file by its descriptor itself (here
    with ``os.read``); otherwise it iterates the body as any other. Either way it then
    closes the body."""

    def __init__(self) -> None:
        self.noted: Any = None
        self.by_descriptor = False
        self.chunks: list[bytes] = []

    def file_wrapper(self, filelike: Any, blksize: int = 0) -> Any:
        self.noted = filelike
        return filelike

    def serve(self, app: Callable[..., Iterable[bytes]], file: Any) -> bytes:
        environ = {"PATH_INFO": "/file", "REQUEST_METHOD": "GET",
                   "wsgi.file_wrapper": self.file_wrapper, "test.file": file}
        body = app(environ, lambda status, headers, exc_info=None: None)
        try:
            descriptor = _descriptor(body) if body is self.noted else None
            if descriptor is not None:
                self.by_descriptor = True
                while block := os.read(descriptor, 1 << 20):
                    self.chunks.append(block)
            else:
                self.chunks.extend(body)
        finally:
            body.close()
        return b"".join(self.chunks)


def _descriptor(file: Any) -> int | None:
    try:
        return file.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return None


def file_app(block_size: int | None) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper = environ["wsgi.file_wrapper"]
        file = environ["test.file"]
        return wrapper(file) if block_size is None else wrapper(file, block_size)
    return app


# Binary, with few newlines: a file iterated by lines comes in a few huge chunks.
FEW_NEWLINES = b"\x00" * 70_000 + b"\n" + b"\x01" * 30_000 + b"\n" + b"\x02" * 5


def test_a_uwsgi_like_server_gets_its_object_back_and_sends_the_file_itself(
        registry, tmp_path):
    monitor = registry.monitor("files", "1")
    path = tmp_path / "body.bin"
    path.write_bytes(FEW_NEWLINES)
    server = UwsgiLike()
    with path.open("rb") as file:
        app = WSGIInstrumentMiddleware(file_app(65536), model="files", registry=registry)
        assert server.serve(app, file) == FEW_NEWLINES
        assert server.by_descriptor
        assert file.closed
    assert requests_by_outcome(monitor) == {"ok": 1}
    assert monitor.in_flight() == 0
    assert stream_figures(monitor) == (0, 0.0)


@pytest.mark.parametrize("block_size", [None, 4096, 65536])
def test_a_file_a_uwsgi_like_server_iterates_comes_in_blocks_and_is_one_answer(
        registry, block_size):
    monitor = registry.monitor("files", "1")
    file = io.BytesIO(FEW_NEWLINES)  # no descriptor: the server iterates the body
    server = UwsgiLike()
    app = WSGIInstrumentMiddleware(file_app(block_size), model="files", registry=registry)
    assert server.serve(app, file) == FEW_NEWLINES
    assert not server.by_descriptor
    size = block_size or 8192
    assert [len(chunk) for chunk in server.chunks[:-1]] == [size] * (len(server.chunks) - 1)
    assert 0 < len(server.chunks[-1]) <= size
    assert file.closed
    assert requests_by_outcome(monitor) == {"ok": 1}
    assert stream_figures(monitor) == (0, 0.0)


@STREAM_EXAMPLES
@given(data=st.lists(st.binary(min_size=1, max_size=2500), min_size=2, max_size=4).map(
    b"\n".join), block_size=st.integers(1, 3000))
def test_any_file_through_a_wrapper_function_arrives_whole_in_blocks_of_its_size(
        registry, data, block_size):
    monitor = registry.monitor("files", "1")
    before = requests_by_outcome(monitor).get("ok", 0)
    server = UwsgiLike()
    app = WSGIInstrumentMiddleware(file_app(block_size), model="files", registry=registry)
    assert server.serve(app, io.BytesIO(data)) == data
    assert all(0 < len(chunk) <= block_size for chunk in server.chunks)
    assert requests_by_outcome(monitor).get("ok", 0) == before + 1
    assert stream_figures(monitor) == (0, 0.0)


def test_the_servers_file_wrapper_is_back_in_the_environ_when_the_app_returns(registry):
    """gunicorn reads ``environ["wsgi.file_wrapper"]`` again to tell its object."""
    registry.monitor("files", "1")
    from wsgiref.util import FileWrapper

    seen: list[bool] = []

    def app(environ, start_response):
        start_response("200 OK", [])
        body = environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10))
        seen.append(isinstance(body, environ["wsgi.file_wrapper"]))
        return body

    environ = {"PATH_INFO": "/file", "REQUEST_METHOD": "GET", "wsgi.file_wrapper": FileWrapper}
    body = WSGIInstrumentMiddleware(app, model="files", registry=registry)(
        environ, lambda status, headers, exc_info=None: None)
    assert environ["wsgi.file_wrapper"] is FileWrapper and isinstance(body, FileWrapper)
    assert seen == [True]
    body.close()


def framework_iterating(file_wrapper_body: Iterable[bytes]) -> Iterator[bytes]:
    yield from file_wrapper_body


def test_a_server_file_a_framework_iterates_on_its_way_out_is_one_answer(registry):
    from wsgiref.util import FileWrapper

    monitor = registry.monitor("files", "1")

    def app(environ, start_response):
        start_response("200 OK", [])
        return framework_iterating(environ["wsgi.file_wrapper"](io.BytesIO(FEW_NEWLINES)))

    wrapped = WSGIInstrumentMiddleware(app, model="files", registry=registry)
    chunks = drive(wrapped, {"wsgi.file_wrapper": FileWrapper})
    assert b"".join(chunks) == FEW_NEWLINES and len(chunks) > 1
    assert requests_by_outcome(monitor) == {"ok": 1}
    assert stream_figures(monitor) == (0, 0.0)
