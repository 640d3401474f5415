"""``inferwatch report --metrics URL`` with a path that needs percent-encoding (a space,
non-ASCII text) reaches that path; a host with a space, or an answer that is not HTTP, is a
one-line error with exit status 2, never a traceback."""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.core.registry import Registry
from inferwatch.report.status import snapshot_json
from loopback_http import LoopbackServer, QuietHandler


def _snapshot() -> bytes:
    registry = Registry()
    try:
        registry.monitor("fraud", "1").record_call(0.01, 0.5)
        registry.drain()
        return snapshot_json(registry.states())
    finally:
        registry.close()


SNAPSHOT = _snapshot()


@contextmanager
def _status_page(paths: list[str]) -> Iterator[str]:
    """A host answering the status snapshot on every path; `paths` gets each request's
    path as sent. Yields the host's base URL, without a trailing slash."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(SNAPSHOT)))
            self.end_headers()
            self.wfile.write(SNAPSHOT)

    with LoopbackServer(Handler) as server:
        yield server.url.rstrip("/")


def _only_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("inferwatch report: error: "), err
    return lines[0]


@pytest.mark.parametrize(("path", "sent"), [
    ("/my status/", "/my%20status/"),
    ("/état/", "/%C3%A9tat/"),
    ("/m%C3%A9triques/", "/m%C3%A9triques/"),  # encoded already: sent as it is
    ("/a;b=c/@x:y", "/a;b=c/@x:y"),
    ("/\udc80x", "/%80x"),  # a command-line byte that is not UTF-8: sent as that byte
])
def test_a_path_needing_encoding_is_sent_encoded(tmp_path: Path, capsys, path: str,
                                                 sent: str) -> None:
    paths: list[str] = []
    with _status_page(paths) as base:
        status = main(["report", "--metrics", base + path, "-o", str(tmp_path / "r.html")])
    assert status == 0, capsys.readouterr().err
    assert paths == [sent + "?format=json"]


def test_any_path_text_is_read_or_refused_in_one_line(tmp_path: Path, capsys) -> None:
    paths: list[str] = []
    with _status_page(paths) as base:

        @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
        # Surrogates too: bytes of a command line that are not UTF-8 arrive as them.
        @given(segment=st.text(st.characters(exclude_categories=()), min_size=1, max_size=20))
        def read_or_refuse(segment: str) -> None:
            paths.clear()
            status = main(["report", "--metrics", f"{base}/{segment}",
                           "-o", str(tmp_path / "r.html")])
            err = capsys.readouterr().err
            if status == 0:
                # What arrived is the path asked for, as urlsplit reads it from the URL.
                wanted = urllib.parse.urlsplit(f"{base}/{segment}").path
                if wanted.startswith("//"):
                    # http.server collapses a path's leading slashes (an open redirect's
                    # guard) before the handler sees it: what was sent is "//...".
                    wanted = "/" + wanted.lstrip("/")
                assert len(paths) == 1
                arrived = paths[0].partition("?")[0]
                assert (urllib.parse.unquote(arrived, errors="surrogateescape")
                        == urllib.parse.unquote(wanted, errors="surrogateescape"))
            else:
                assert status == 2
                _only_error_line(err)

        read_or_refuse()


@pytest.mark.parametrize("url", ["http://my host:8000/", "http://127.0.0.1 :8000/"])
def test_a_host_with_a_space_is_refused_naming_it(tmp_path: Path, capsys, url: str) -> None:
    assert main(["report", "--metrics", url, "-o", str(tmp_path / "r.html")]) == 2
    line = _only_error_line(capsys.readouterr().err)
    assert "host" in line


@contextmanager
def _answering_raw(reply: bytes) -> Iterator[str]:
    """A host that answers one connection with `reply` and closes it; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)

    def answer() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            connection.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()
        thread.join(timeout=10)


@pytest.mark.parametrize("reply", [
    b"not http at all\r\n\r\n",  # http.client.BadStatusLine
    # A chunk size that is not one: http.client.IncompleteRead.
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["bad-status-line", "broken-chunk"])
def test_an_answer_that_is_not_http_is_one_line(tmp_path: Path, capsys, reply: bytes) -> None:
    with _answering_raw(reply) as url:
        status = main(["report", "--metrics", url, "-o", str(tmp_path / "r.html")])
    assert status == 2
    assert "cannot read the status snapshot" in _only_error_line(capsys.readouterr().err)
