"""Small HTTP servers on loopback ports that tests put in front of a real component (a
proxy before the Pushgateway, a host serving a status page's bytes)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps its access log out of the test output."""

    def log_message(self, *args: object) -> None:
        pass


class LoopbackServer:
    """`handler` served on a free loopback port from a thread, until :meth:`close`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def serving_bytes(body: bytes, headers: dict[str, str]) -> Iterator[str]:
    """A host answering every GET with `body` and `headers` (a broken proxy, a hostile
    host); yields its URL."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with LoopbackServer(Handler) as server:
        yield server.url


def forward_put(handler: BaseHTTPRequestHandler, target: str, body: bytes) -> None:
    """Send the PUT `handler` is answering on to `target` ("host:port") unchanged, and
    answer with the target's status and body."""
    host, port = target.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("PUT", handler.path, body=body, headers={
            "Content-Type": handler.headers.get("Content-Type", "")})
        answer = connection.getresponse()
        payload = answer.read()
    finally:
        connection.close()
    handler.send_response(answer.status)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
