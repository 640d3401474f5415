"""serve() when its server thread fails before listening, an application's logging that
raises, and the rate limit on client_allowed_sans refusals."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferwatch.serving import server as server_module
from inferwatch.serving.server import serve
from test_server import HANG_GUARD, demo_registry, make_cert

# The port serve() is asked for where the server never gets as far as binding it.
UNBOUND_PORT = 45211


class NeedsRequestId(logging.Filter):
    """An application's filter that expects an attribute its own records carry (set by a
    LoggerAdapter or a contextvar): records of other libraries make it raise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.request_id is not None  # type: ignore[attr-defined]


@pytest.fixture
def raising_log_filter() -> Iterator[None]:
    """A root handler whose filter raises for every record, every server log line enabled."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(NeedsRequestId())
    root = logging.getLogger()
    server_log = logging.getLogger("inferwatch.serving.server")
    level = server_log.level
    root.addHandler(handler)
    server_log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        server_log.setLevel(level)


def get(port: int, connection: http.client.HTTPConnection | None = None) -> int:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_GUARD)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    response.read()
    return response.status


@pytest.mark.parametrize("free_descriptors", [0, 1, 2, 3])
def test_serve_out_of_file_descriptors_raises_an_os_error_naming_the_address(
        free_descriptors):
    # With no descriptor for the event loop's selector or self-pipe, the server thread died
    # before binding and serve() waited forever for it to be ready; with none for the
    # listening socket, asyncio served no socket and serve() failed on an IndexError.
    script = textwrap.dedent(f"""
        import faulthandler, os, resource
        import inferwatch.core.registry, inferwatch.serving.server  # imports open files
        from prometheus_client import CollectorRegistry
        registry = CollectorRegistry()
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for _ in range({free_descriptors}):
            os.close(held.pop())
        faulthandler.dump_traceback_later({HANG_GUARD}, exit=True)
        try:
            server = inferwatch.serving.server.serve(port={UNBOUND_PORT}, addr="127.0.0.1",
                                                     registry=registry, status_page=False)
        except OSError as exc:
            print("raised", exc, flush=True)
        else:
            print("served", server, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=HANG_GUARD * 2)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(("raised [Errno 24] inferwatch: cannot listen on "
                                   f"127.0.0.1:{UNBOUND_PORT}: Too many open files",
                                   f"raised inferwatch: cannot listen on 127.0.0.1:"
                                   f"{UNBOUND_PORT}: no socket could be made for any of its "
                                   "addresses (out of file descriptors")), \
        done.stdout + done.stderr


def test_an_error_other_than_os_error_before_listening_is_raised_naming_the_address(
        monkeypatch):
    def no_loop() -> asyncio.AbstractEventLoop:
        raise RuntimeError("no event loop today")

    monkeypatch.setattr(server_module.asyncio, "new_event_loop", no_loop)
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            serve(port=UNBOUND_PORT, addr="127.0.0.1", registry=demo_registry())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    # serve() waited forever for a thread that had died: bound the wait here.
    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    starting.join(HANG_GUARD)

    assert outcome, "serve() did not return"
    assert isinstance(outcome[0], RuntimeError)
    assert str(outcome[0]) == (f"inferwatch: cannot start the server for "
                               f"127.0.0.1:{UNBOUND_PORT}: no event loop today")


def test_an_address_with_a_null_character_is_a_value_error_naming_it():
    # Was a bare "embedded null character" from the name lookup, naming no setting.
    with pytest.raises(ValueError, match=r"^inferwatch\.serve: cannot listen on "
                                         r"addr='a\\x00b' port=0: embedded null character$"):
        serve(port=0, addr="a\x00b", registry=demo_registry())


def test_a_raising_log_filter_neither_stops_the_server_nor_its_connections(
        raising_log_filter):
    # The filter raised in "event=listening": serve() returned, nothing ever answered.
    # At DEBUG it raised in each request's line too, closing every kept-alive connection.
    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as server:
        kept_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_GUARD)
        try:
            statuses = [get(server.port, kept_alive) for _ in range(3)]
        finally:
            kept_alive.close()

    assert statuses == [200, 200, 200]


def test_a_raising_log_filter_does_not_stop_the_event_loop_when_asyncio_reports_an_error(
        raising_log_filter):
    # asyncio reports a failed callback through its logger; a raising filter there
    # escaped the loop and ended the server thread.
    def failing_callback() -> None:
        raise RuntimeError("a callback failed")

    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as server:
        assert server._loop is not None
        server._loop.call_soon_threadsafe(failing_callback)

        assert get(server.port) == 200


@pytest.fixture(scope="module")
def san_certs(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("sans_refusals")
    server_cert, server_key = make_cert(directory)
    stranger_cert, stranger_key = make_cert(directory, "stranger", "DNS:stranger.example")
    return {"cert": server_cert, "key": server_key, "stranger_cert": stranger_cert,
            "stranger_key": stranger_key}


def refused_after_handshake(port: int, context: ssl.SSLContext) -> bool:
    """True when the server closes the connection unanswered after the TLS handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                return tls.recv(100) == b""
        except (ssl.SSLError, ConnectionError):
            return True


def test_client_allowed_sans_refusals_are_logged_at_most_once_a_minute(tmp_path, san_certs,
                                                                       caplog):
    # Every refused connection logged a line: a client retrying in a loop flooded the log,
    # while every other refusal is logged at most once a minute.
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {san_certs['cert']}\n"
        f"  key_file: {san_certs['key']}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {san_certs['stranger_cert']}\n"
        "  client_allowed_sans: [scraper.example]\n")
    stranger = ssl.create_default_context(cafile=str(san_certs["cert"]))
    stranger.load_cert_chain(str(san_certs["stranger_cert"]), str(san_certs["stranger_key"]))
    caplog.set_level(logging.INFO, logger="inferwatch.serving.server")
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               web_config_file=str(config)) as server:
        refusals = [refused_after_handshake(server.port, stranger) for _ in range(5)]

    assert refusals == [True] * 5
    logged = [r for r in caplog.records if "client_allowed_sans" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.WARNING
    assert "event=connection_refused reason=client_allowed_sans peer=127.0.0.1:" \
           in logged[0].getMessage()
    assert "(logged at most once a minute)" in logged[0].getMessage()
