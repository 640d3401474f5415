"""The /metrics server over real loopback HTTP: shutdown with kept-alive scrapers, paths as
clients send them, settings of the wrong type."""

from __future__ import annotations

import http.client
import logging
import time
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch.serving.server import HEALTH_ROUTES, serve

# Upper bound on any wait in these tests: reached only when the server is broken (hung).
HANG_GUARD = 30.0


def demo_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_scrapes", "Scrapes.", registry=registry).inc(5)
    return registry


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def get(port: int, target: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_GUARD)
    try:
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# --- shutdown while Prometheus keeps its connections alive ---------------------------------

def test_shutdown_with_kept_alive_scrapers_logs_no_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    server = serve(port=0, addr="127.0.0.1", registry=demo_registry())
    scrapers = []
    try:
        for _ in range(3):
            # As Prometheus does: one scrape, then the connection stays open for the next.
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_GUARD)
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            assert response.status == 200 and b"demo_scrapes_total 5.0" in response.read()
            scrapers.append(connection)
        wait_for(lambda: server.open_connections == 3, "three kept-alive connections")
    finally:
        server.shutdown()
        for connection in scrapers:
            connection.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert server.open_connections == 0


# --- paths as clients send them ------------------------------------------------------------

def test_a_telemetry_path_with_non_ascii_characters_is_served_at_its_url():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               telemetry_path="/métriques") as server:
        assert server.url.endswith("/m%C3%A9triques")
        with urllib.request.urlopen(server.url, timeout=HANG_GUARD) as response:
            assert response.status == 200
            assert b"demo_scrapes_total 5.0" in response.read()
        # The landing page links to the same URL.
        status, _, page = get(server.port, "/")
        assert status == 200 and b'href="/m%C3%A9triques"' in page


def test_a_percent_encoded_request_path_reaches_the_metrics_as_in_go():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as server:
        status, _, body = get(server.port, "/metric%73")
        assert status == 200 and b"demo_scrapes_total 5.0" in body
        status, _, body = get(server.port, "/-/health%79")
        assert (status, body) == (200, b"OK")
        assert get(server.port, "/metrics%2Fx")[0] == 404


def test_a_telemetry_path_written_with_escapes_is_still_served_where_it_was():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               telemetry_path="/a%20b") as server:
        assert server.url.endswith("/a%20b")
        assert get(server.port, "/a%20b")[0] == 200


def test_a_telemetry_path_that_decodes_to_a_health_route_is_refused():
    with pytest.raises(ValueError, match="telemetry_path"):
        serve(port=0, addr="127.0.0.1", registry=demo_registry(),
              telemetry_path="/-/health%79")


_PATH_CHARACTERS = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
                                 blacklist_characters="?")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(_PATH_CHARACTERS, min_size=1, max_size=12))
def test_any_accepted_telemetry_path_is_served_at_the_servers_url(tail):
    path = "/" + tail
    try:
        server = serve(port=0, addr="127.0.0.1", registry=demo_registry(),
                       telemetry_path=path)
    except ValueError:
        return  # refused up front with a clear error: fine
    with server:
        request = urllib.request.Request(server.url)
        with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
            assert response.status == 200
            assert b"demo_scrapes_total 5.0" in response.read()


# --- settings of the wrong type ------------------------------------------------------------

@pytest.mark.parametrize("setting, value", [
    ("max_concurrency", "4"),
    ("max_concurrency", True),
    ("max_connections", 2.5),
    ("max_connections", "512"),
    ("read_timeout", "10"),
    ("idle_timeout", None),
    ("collect_timeout", "5"),
    ("telemetry_path", None),
    ("telemetry_path", b"/metrics"),
])
def test_a_setting_of_the_wrong_type_is_a_value_error_naming_it(setting, value):
    with pytest.raises(ValueError, match=f"inferwatch.serve: {setting} must be"):
        serve(port=0, addr="127.0.0.1", registry=demo_registry(), **{setting: value})


def test_the_health_routes_are_still_refused_as_telemetry_paths():
    for route in ("/", *HEALTH_ROUTES):
        with pytest.raises(ValueError, match="telemetry_path"):
            serve(port=0, addr="127.0.0.1", registry=demo_registry(), telemetry_path=route)


# --- request heads with bare LF line ends --------------------------------------------------

def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data`, then read the answer until the server closes the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("request_bytes", [
    b"GET /-/healthy HTTP/1.0\n\n",
    b"\nGET /-/healthy HTTP/1.0\nHost: probe\n\n",
    b"GET /-/healthy HTTP/1.0\r\nHost: probe\n\r\n",
])
def test_a_probe_ending_its_lines_with_a_bare_lf_is_answered(request_bytes):
    # read_timeout is short so that a server waiting for a CRLF gives up within the test.
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), read_timeout=2) as server:
        answer = raw_exchange(server.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(b"\r\n\r\nOK")


def test_keep_alive_requests_with_bare_lf_each_get_their_answer():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), read_timeout=2) as server:
        answer = raw_exchange(server.port, b"GET /metrics HTTP/1.1\nHost: a\n\n"
                              b"HEAD /metrics HTTP/1.1\nHost: a\n\n"
                              b"GET /-/ready HTTP/1.1\nHost: a\nConnection: close\n\n")
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answer.count(b"demo_scrapes_total 5.0") == 1  # the HEAD answer has no body
    assert answer.endswith(b"\r\n\r\nOK")


def test_a_head_too_large_still_gets_its_431():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as server:
        header_lines = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 100) for i in range(99))
        answer = raw_exchange(server.port, b"HEAD /metrics HTTP/1.1\r\n" + header_lines * 2
                              + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert answer.endswith(b"\r\n\r\n")  # an answer to HEAD, an error's included, has no body


# --- an IPv6 address written in brackets ---------------------------------------------------

def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_an_ipv6_address_in_brackets_listens_on_that_address():
    with serve(port=0, addr="[::1]", registry=demo_registry()) as server:
        assert server.url == f"http://[::1]:{server.port}/metrics"
        with urllib.request.urlopen(server.url, timeout=HANG_GUARD) as response:
            assert b"demo_scrapes_total 5.0" in response.read()
