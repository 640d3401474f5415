"""Files a WSGI server sends itself (``environ["wsgi.file_wrapper"]``) through the WSGI
middleware: the server still recognises them (gunicorn still sends them by ``os.sendfile``),
bodies arrive byte-exact, and each download is one request with its outcome, recorded when
the server closes the body, also when the client goes away mid-file.

gunicorn runs ``apps/file_app.py`` with the config file ``apps/sendfile_counter.py``, whose
workers log what each ``os.sendfile`` call sent.
"""

from __future__ import annotations

import contextlib
import io
import random
import socket
import struct
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from wsgiref import simple_server
from wsgiref.util import FileWrapper

import pytest

import inferwatch
from conftest import free_port
from inferwatch import faults
from inferwatch.serving.middleware import WSGIInstrumentMiddleware
from test_middleware import APPS, get, scrape, server
from test_stream_middleware import wait_for

SIZE = 3 * 1024 * 1024 + 17  # a few MB, not a whole number of any block size
# Far more than a client's small receive buffer and the server's send buffer (Linux caps it
# at tcp_wmem's maximum, 4 MB by default) hold together: the server is still sending when
# the client goes away. Sparse, so it costs no disk.
HUGE = 256 * 1024 * 1024


@pytest.fixture
def body_file(tmp_path: Path) -> Path:
    path = tmp_path / "body.bin"
    path.write_bytes(random.Random(7).randbytes(SIZE))
    return path


@contextlib.contextmanager
def gunicorn(tmp_path: Path, app: str, body: Path,
             worker_class: str = "sync") -> Iterator[tuple[str, Path]]:
    """A one-worker gunicorn serving `app` (sending `body`); its URL and its sendfile log."""
    port = free_port()
    sendfile_log = tmp_path / "sendfile.log"
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", worker_class, "--log-level", "warning",
            "-c", str(APPS / "sendfile_counter.py"), app]
    env = {"FILE_APP_BODY": str(body), "SENDFILE_LOG": str(sendfile_log)}
    with server(args, port, tmp_path, env) as url:
        yield url, sendfile_log


def sent_by_sendfile(sendfile_log: Path) -> list[int]:
    """The bytes each ``os.sendfile`` call of the worker sent, in order."""
    if not sendfile_log.exists():
        return []
    return [int(line) for line in sendfile_log.read_text().split()]


def files_requests(url: str, outcome: str) -> float:
    return scrape(url, "inferwatch_requests_total", model="files", outcome=outcome)


def head(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


@pytest.mark.integration
@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_sends_a_file_wrapper_body_by_sendfile_and_records_it_once(
        tmp_path, body_file, worker_class):
    expected = body_file.read_bytes()
    with gunicorn(tmp_path, "file_app:plain", body_file, worker_class) as (url, sendfile_log):
        status, body = get(url + "/file")
        assert status == 200 and body == expected
        # The request ends when gunicorn closes the body, after its last sendfile call.
        wait_for(lambda: files_requests(url, "ok") == 1, "the download to be counted")
        assert sum(sent_by_sendfile(sendfile_log)) == SIZE

        status, body = get(url + "/file?status=503")
        assert status == 503 and body == expected
        wait_for(lambda: scrape(url, "inferwatch_errors_total", model="files",
                                error_type="HTTP503") == 1, "the 503 download to be counted")
        assert sum(sent_by_sendfile(sendfile_log)) == 2 * SIZE

        # A HEAD answer: gunicorn never sends the file, and still closes it.
        assert head(url + "/file") == 200
        wait_for(lambda: files_requests(url, "ok") == 2, "the HEAD request to be counted")
        assert sum(sent_by_sendfile(sendfile_log)) == 2 * SIZE

        assert files_requests(url, "error") == 1
        assert files_requests(url, "cancelled") == 0
        assert scrape(url, "inferwatch_request_duration_seconds_count", model="files") == 3
        assert scrape(url, "inferwatch_requests_in_flight", model="files") == 0
        # A file the server sends in one go is no stream of chunks (nor is an ASGI pathsend).
        assert scrape(url, "inferwatch_stream_items_count", model="files") == 0


@pytest.mark.integration
def test_gunicorn_sends_a_flask_send_file_response_by_sendfile(tmp_path, body_file):
    with gunicorn(tmp_path, "file_app:flask_app", body_file) as (url, sendfile_log):
        status, body = get(url + "/download")
        assert status == 200 and body == body_file.read_bytes()
        wait_for(lambda: files_requests(url, "ok") == 1, "the download to be counted")
        assert sum(sent_by_sendfile(sendfile_log)) == SIZE
        assert files_requests(url, "ok") == 1
        assert files_requests(url, "error") == 0
        assert scrape(url, "inferwatch_request_duration_seconds_count", model="files") == 1
        assert scrape(url, "inferwatch_requests_in_flight", model="files") == 0


def read_part_then_reset(port: int, path: str, body_bytes: int) -> None:
    """GET `path` with a small receive window, read `body_bytes` of the body, then reset the
    connection while the server is still sending."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connecting
        sock.settimeout(60)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < body_bytes:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection early"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        # Linger 0: close() resets the connection at once rather than draining it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.integration
def test_a_client_gone_mid_file_makes_the_request_cancelled_once(tmp_path):
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as file:
        file.truncate(HUGE)
    with gunicorn(tmp_path, "file_app:plain", huge) as (url, sendfile_log):
        port = int(url.rsplit(":", 1)[1])
        read_part_then_reset(port, "/file", body_bytes=256 * 1024)
        wait_for(lambda: files_requests(url, "cancelled") == 1,
                 "the interrupted download to be counted")
        sent = sent_by_sendfile(sendfile_log)
        assert sent, "gunicorn did not send the file by sendfile"
        assert sum(sent) < HUGE
        assert files_requests(url, "cancelled") == 1
        assert files_requests(url, "ok") == 0
        assert files_requests(url, "error") == 0
        assert scrape(url, "inferwatch_request_duration_seconds_count", model="files") == 1
        assert scrape(url, "inferwatch_requests_in_flight", model="files") == 0


def send_file_wrapper(path: Path, environ: dict[str, Any],
                      start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A plain WSGI app answering every request with the server's file wrapper of `path`."""
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(path.stat().st_size))])
    return environ["wsgi.file_wrapper"](path.open("rb"))


class QuietRequestHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


def test_wsgiref_is_handed_its_own_file_wrapper_and_the_body_arrives_whole(
        scraper, body_file, monkeypatch):
    inferwatch.monitor("files", "1", registry=scraper.registry)
    offered: list[type] = []

    class RecordingServerHandler(simple_server.ServerHandler):
        def sendfile(self) -> bool:
            # wsgiref asks only when the body is an instance of its wsgi.file_wrapper.
            offered.append(type(self.result))
            return False  # then it iterates the file, as it does by default

    monkeypatch.setattr(simple_server, "ServerHandler", RecordingServerHandler)
    app = WSGIInstrumentMiddleware(partial(send_file_wrapper, body_file), model="files",
                                   registry=scraper.registry)
    httpd = simple_server.make_server("127.0.0.1", 0, app, handler_class=QuietRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        status, body = get(f"http://127.0.0.1:{httpd.server_port}/file")
    finally:
        # serve_forever returns once the request in hand is done: the body is closed.
        httpd.shutdown()
        httpd.server_close()
        thread.join(60)
    assert status == 200 and body == body_file.read_bytes()
    assert offered == [FileWrapper]
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 0
    assert scraper.value("inferwatch_requests_in_flight") == 0


# --- the middleware alone, driven as a server drives it ---------------------------------------
class Closes(io.BytesIO):
    """A file that counts its close() calls."""

    closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def file_app(status: str = "200 OK") -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](environ["test.file"])
    return app


def call(app: Callable[..., Iterable[bytes]], file: Any,
         file_wrapper: Any = FileWrapper) -> Iterable[bytes]:
    environ = {"PATH_INFO": "/file", "REQUEST_METHOD": "GET",
               "wsgi.file_wrapper": file_wrapper, "test.file": file}
    return app(environ, lambda status, headers, exc_info=None: None)


@pytest.fixture
def files(scraper):
    return inferwatch.monitor("files", "1", registry=scraper.registry)


def test_the_servers_file_wrapper_comes_back_as_it_is_and_ends_at_close_once(scraper, files):
    captured = []

    def app(environ, start_response):
        captured.append(file_app()(environ, start_response))
        return captured[-1]

    file = Closes(b"x" * 100)
    body = call(WSGIInstrumentMiddleware(app, model="files", registry=scraper.registry), file)
    assert body is captured[0] and isinstance(body, FileWrapper)
    assert body.filelike is file and body.blksize == 8192
    assert scraper.value("inferwatch_requests_in_flight") == 1  # sent, not yet closed
    body.close()  # a server that sent the file itself never iterated it
    body.close()
    assert file.closes == 2 and file.closed
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 0
    assert scraper.value("inferwatch_request_duration_seconds_count") == 1
    assert scraper.value("inferwatch_requests_in_flight") == 0


class ReadOnly:
    """A file-like object with no close(): a FileWrapper around it has none either."""

    def __init__(self, data: bytes) -> None:
        self.read = io.BytesIO(data).read


def test_a_server_file_without_close_gets_one_the_server_calls(scraper, files):
    app = WSGIInstrumentMiddleware(file_app(), model="files", registry=scraper.registry)
    body = call(app, ReadOnly(b"x" * 10))
    assert isinstance(body, FileWrapper) and hasattr(body, "close")
    assert b"".join(body) == b"x" * 10
    body.close()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def test_a_server_file_closed_as_sending_fails_is_cancelled(scraper, files):
    app = WSGIInstrumentMiddleware(file_app(), model="files", registry=scraper.registry)
    body = call(app, io.BytesIO(b"x" * 100))
    with pytest.raises(BrokenPipeError):
        try:
            raise BrokenPipeError("the client went away")
        finally:
            body.close()  # as gunicorn closes the body when sendfile fails
    ended = call(app, io.BytesIO(b"y"))
    for _ in ended:
        pass
    try:
        raise StopIteration  # a server that drives the body by hand sees it run out
    except StopIteration:
        ended.close()
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 1
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", outcome="error") == 0


def test_a_5xx_file_is_an_error_of_its_status(scraper, files):
    app = WSGIInstrumentMiddleware(file_app("503 Service Unavailable"), model="files",
                                   registry=scraper.registry)
    call(app, io.BytesIO(b"busy")).close()
    assert scraper.value("inferwatch_errors_total", error_type="HTTP503") == 1


class SlottedFileWrapper:
    """A server's file wrapper whose objects take no attribute of the middleware's."""

    __slots__ = ("filelike",)

    def __init__(self, filelike: io.BytesIO) -> None:
        self.filelike = filelike

    def __iter__(self) -> Iterator[bytes]:
        return iter([self.filelike.read()])

    def close(self) -> None:
        self.filelike.close()


@pytest.mark.parametrize("file_wrapper", [SlottedFileWrapper, lambda file: FileWrapper(file)],
                         ids=["slotted class", "function"])
def test_a_file_wrapper_the_middleware_cannot_watch_is_wrapped_as_any_body(
        scraper, files, file_wrapper):
    app = WSGIInstrumentMiddleware(file_app(), model="files", registry=scraper.registry)
    faults_before = faults.internal_error_counts().get("middleware", 0)
    body = call(app, io.BytesIO(b"whole file"), file_wrapper)
    assert b"".join(body) == b"whole file"
    body.close()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert faults.internal_error_counts().get("middleware", 0) == faults_before
