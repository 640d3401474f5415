"""The /metrics server on real sockets: routes, limits, stalled clients, TLS, basic auth."""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import ssl
import subprocess
import threading
import time
from base64 import b64encode
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.serving.server import serve

# Upper bound on any wait in these tests: reached only when the server is broken (hung).
HANG_GUARD = 30.0


def make_cert(directory: Path, name: str = "server",
              san: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName={san}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("certs")
    server_cert, server_key = make_cert(directory)
    client_cert, client_key = make_cert(directory, "scraper", "DNS:scraper.example")
    other_cert, other_key = make_cert(directory, "stranger", "DNS:stranger.example")
    return {"cert": server_cert, "key": server_key, "client_cert": client_cert,
            "client_key": client_key, "other_cert": other_cert, "other_key": other_key}


def client_context(certs, client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["cert"]))
    if client is not None:
        context.load_cert_chain(str(certs[f"{client}_cert"]), str(certs[f"{client}_key"]))
    return context


def demo_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_scrapes", "Scrapes.", registry=registry).inc(5)
    return registry


def request(server, path="/metrics", method="GET", headers=None, context=None):
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_GUARD)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=HANG_GUARD,
                                                 context=context)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    """Wait (bounded) for the server to close `sock`."""
    sock.settimeout(HANG_GUARD)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


@pytest.fixture
def server():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as running:
        yield running


def test_metrics_in_the_text_format(server):
    status, headers, body = request(server)

    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    samples = {s.name: s.value for f in text_string_to_metric_families(body.decode())
               for s in f.samples}
    assert samples["demo_scrapes_total"] == 5.0


def test_metrics_openmetrics_gzip_and_query_string(server):
    status, headers, body = request(server, "/metrics?name[]=demo_scrapes_total", headers={
        "Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"})

    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert gzip.decompress(body).endswith(b"# EOF\n")


def test_head_metrics_has_headers_only(server):
    _, get_headers, get_body = request(server)
    status, headers, body = request(server, method="HEAD")

    assert status == 200
    assert body == b""
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))


def test_landing_page_and_health_routes(server):
    landing = request(server, "/")
    healthy = request(server, "/-/healthy")
    ready = request(server, "/-/ready")

    assert landing[0] == 200 and b'href="/metrics"' in landing[2]
    assert landing[1]["content-type"].startswith("text/html")
    assert healthy[:1] + healthy[2:] == (200, b"OK")
    assert ready[:1] + ready[2:] == (200, b"OK")


def test_unknown_paths_404_and_other_methods_405(server):
    assert request(server, "/metricsx")[0] == 404
    assert request(server, "/metrics/")[0] == 404
    status, headers, _ = request(server, "/metrics", method="POST")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert request(server, "/-/healthy", method="DELETE")[0] == 405


def test_telemetry_path_moves_the_metrics():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               telemetry_path="/custom/metrics") as server:
        moved = request(server, "/custom/metrics")
        old = request(server, "/metrics")
        landing = request(server, "/")
        url = server.url

    assert moved[0] == 200 and b"demo_scrapes_total 5.0" in moved[2]
    assert old[0] == 404
    assert b'href="/custom/metrics"' in landing[2]
    assert url.endswith("/custom/metrics")


@pytest.mark.parametrize("path", ["metrics", "/", "/-/healthy", "/a b", "/m?x=1"])
def test_telemetry_path_must_be_a_free_path(path):
    with pytest.raises(ValueError, match="telemetry_path"):
        serve(port=0, addr="127.0.0.1", registry=demo_registry(), telemetry_path=path)


def test_keep_alive_serves_several_requests_on_one_connection(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_GUARD)
    try:
        statuses = []
        for path in ("/metrics", "/-/healthy", "/metrics"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert response.getheader("Connection") == "keep-alive"
            sock = connection.sock
        assert statuses == [200, 200, 200]
        assert sock is connection.sock  # never reconnected
    finally:
        connection.close()


def test_connection_close_and_http_1_0_close_after_the_answer(server):
    answer = raw_exchange(server.port, b"GET /-/healthy HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nOK")
    closing = raw_exchange(server.port,
                           b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert closing.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"413"),
    (b"GET /metrics HTTP/1.1\r\nContent-Length: nope\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", b"431"),
    (b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"431"),
])
def test_malformed_requests_get_an_error_and_a_closed_connection(server, raw, status):
    answer = raw_exchange(server.port, raw)

    assert answer.split(b" ")[1] == status
    assert b"Connection: close" in answer
    assert request(server, "/-/healthy")[0] == 200  # the server shrugs it off


def test_a_small_request_body_is_read_and_ignored(server):
    answer = raw_exchange(server.port, b"GET /-/healthy HTTP/1.1\r\nContent-Length: 5\r\n"
                                       b"Connection: close\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_bind_error_names_the_address():
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(port=port, addr="127.0.0.1", registry=demo_registry())


@pytest.mark.parametrize("kwargs, message", [
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_connections": -1}, "max_connections"),
    ({"read_timeout": 0}, "read_timeout"),
    ({"collect_timeout": 0}, "collect_timeout"),
    ({"certfile": "a.crt"}, "certfile and keyfile"),
    ({"certfile": "a.crt", "keyfile": "a.key", "web_config_file": "w.yml"}, "not both"),
    ({"certfile": "/nonexistent.crt", "keyfile": "/nonexistent.key"}, "nonexistent.crt"),
])
def test_bad_settings_raise_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        serve(port=0, addr="127.0.0.1", registry=demo_registry(), **kwargs)


@pytest.mark.parametrize("port", [True, -1, 70000, "8000", 8000.0, None])
def test_a_port_that_is_no_port_number_is_a_clear_value_error(port):
    # True bound port 1, -1 and 70000 raised OverflowError, "8000" a name lookup error.
    with pytest.raises(ValueError, match="port must be a whole number from 0 to 65535"):
        serve(port=port, addr="127.0.0.1", registry=demo_registry())


def test_an_address_that_is_no_string_is_a_clear_type_error():
    with pytest.raises(TypeError, match="addr must be a host name or address string, got int"):
        serve(port=0, addr=5, registry=demo_registry())


def test_port_zero_url_and_shutdown_frees_the_port(caplog):
    caplog.set_level(logging.INFO, logger="inferwatch.serving.server")
    server = serve(port=0, addr="0.0.0.0", registry=demo_registry())
    port = server.port
    assert server.url == f"http://127.0.0.1:{port}/metrics"
    assert request(server)[0] == 200
    server.shutdown()
    server.shutdown()  # twice is harmless

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD).close()
    assert any(f"event=listening address=0.0.0.0:{port}" in r.getMessage()
               for r in caplog.records)


class GatedCollector:
    """Blocks every collect() until the test opens the gate; counts the renders started."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.renders = 0
        self._lock = threading.Lock()

    def collect(self):
        with self._lock:
            self.renders += 1
        self.gate.wait(HANG_GUARD)
        yield GaugeMetricFamily("demo_gated", "Served once the gate opens.", value=1)


def test_200_concurrent_scrapes_get_200_or_an_immediate_503():
    collector = GatedCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    with serve(port=0, addr="127.0.0.1", registry=registry, max_concurrency=2) as server, \
            ThreadPoolExecutor(max_workers=200) as pool:
        futures = [pool.submit(request, server) for _ in range(200)]
        # While both renders are held at the gate, the other 198 must all be answered:
        # a 503 that waited for a render slot could never arrive.
        deadline = time.monotonic() + HANG_GUARD
        while sum(f.done() for f in futures) < 198 and time.monotonic() < deadline:
            time.sleep(0.02)
        answered_while_gated = [f.result() for f in futures if f.done()]
        collector.gate.set()
        answers = [f.result() for f in futures]

    assert len(answered_while_gated) == 198
    assert all(status == 503 and headers["retry-after"] == "1"
               for status, headers, _ in answered_while_gated)
    assert sorted(status for status, _, _ in answers) == [200] * 2 + [503] * 198
    assert collector.renders == 2


def test_idle_connections_do_not_stall_a_scrape():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), read_timeout=60) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
                for _ in range(50)]
        try:
            status, _, body = request(server)
            assert status == 200 and b"demo_scrapes_total 5.0" in body
            assert all(still_open(sock) for sock in idle)  # served alongside, not by dropping them
        finally:
            for sock in idle:
                sock.close()


def test_a_silent_or_slow_client_is_closed_after_read_timeout():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), read_timeout=0.3) as server:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        try:
            assert closed_by_server(silent)
            assert closed_by_server(slow)
        finally:
            silent.close()
            slow.close()


def test_an_idle_keep_alive_connection_is_closed_after_idle_timeout():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), idle_timeout=0.3) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"OK"):
            answer += sock.recv(4096)
        assert closed_by_server(sock)


class HangingCollector:
    def __init__(self) -> None:
        self.release = threading.Event()

    def collect(self):
        self.release.wait(HANG_GUARD)
        yield GaugeMetricFamily("demo_recovered", "Present once collect returns.", value=1)


def test_a_hanging_collector_gives_503_after_collect_timeout_and_other_routes_work():
    collector = HangingCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    with serve(port=0, addr="127.0.0.1", registry=registry, max_concurrency=1,
               collect_timeout=0.2) as server:
        timed_out = request(server)
        healthy = request(server, "/-/healthy")
        # The hung render still holds the only slot: no second thread piles up behind it.
        busy = request(server)
        collector.release.set()
        deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
        while True:
            recovered = request(server)
            if recovered[0] == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)

    assert timed_out[0] == 503 and b"longer than 0.2s" in timed_out[2]
    assert healthy[0] == 200
    assert busy[0] == 503 and b"busy" in busy[2]
    assert recovered[0] == 200 and b"demo_recovered 1.0" in recovered[2]


def test_a_raising_collector_gives_500_and_the_server_keeps_serving():
    class Raising:
        def collect(self):
            raise RuntimeError("boom")

    registry = CollectorRegistry()
    registry.register(Raising())
    with serve(port=0, addr="127.0.0.1", registry=registry) as server:
        assert request(server)[0] == 500
        assert request(server, "/-/healthy")[0] == 200


def test_tls_with_certfile_and_keyfile(certs):
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), certfile=str(certs["cert"]),
               keyfile=str(certs["key"])) as server:
        status, _, body = request(server, context=client_context(certs))
        assert server.url.startswith("https://")
        with pytest.raises(ssl.SSLError):  # an untrusting client refuses the self-signed cert
            request(server, context=ssl.create_default_context())

    assert status == 200 and b"demo_scrapes_total 5.0" in body


def test_tls_clients_that_never_handshake_do_not_stall_a_scrape(certs):
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), certfile=str(certs["cert"]),
               keyfile=str(certs["key"]), read_timeout=60) as server:
        silent = [socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
                  for _ in range(20)]
        try:
            status, _, body = request(server, context=client_context(certs))
            assert status == 200 and b"demo_scrapes_total 5.0" in body
            assert all(still_open(sock) for sock in silent)
        finally:
            for sock in silent:
                sock.close()


def test_a_stalled_tls_handshake_is_dropped_after_read_timeout(certs):
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(), certfile=str(certs["cert"]),
               keyfile=str(certs["key"]), read_timeout=0.3) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD) as silent:
        assert closed_by_server(silent)


def write_web_config(tmp_path: Path, certs, extra: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {certs['cert']}\n"
                    f"  key_file: {certs['key']}\n{extra}")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_and_tls_from_a_web_config_file(tmp_path, certs):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = write_web_config(tmp_path, certs, (
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"))
    context = client_context(certs)
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               web_config_file=str(config)) as server:
        anonymous = request(server, context=context)
        wrong = request(server, context=context, headers=basic("prometheus", "guess"))
        unknown = request(server, context=context, headers=basic("mallory", "s3cret"))
        health_anonymous = request(server, "/-/healthy", context=context)
        right = request(server, context=context, headers=basic("prometheus", "s3cret"))
        again = request(server, context=context, headers=basic("prometheus", "s3cret"))

    for refused in (anonymous, wrong, unknown, health_anonymous):
        assert refused[0] == 401
        assert refused[1]["www-authenticate"] == 'Basic realm="inferwatch"'
    assert right[0] == again[0] == 200
    assert b"demo_scrapes_total 5.0" in right[2]
    assert right[1]["x-content-type-options"] == "nosniff"
    assert anonymous[1]["x-content-type-options"] == "nosniff"


def test_client_certificates_required_and_matched_against_allowed_sans(tmp_path, certs):
    # Both client certificates are self-signed and trusted; only one carries an allowed SAN.
    bundle = tmp_path / "clients.pem"
    bundle.write_bytes(certs["client_cert"].read_bytes() + certs["other_cert"].read_bytes())
    config = write_web_config(tmp_path, certs, (
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {bundle}\n"
        "  client_allowed_sans: [scraper.example]\n"))
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               web_config_file=str(config)) as server:
        accepted = request(server, context=client_context(certs, "client"))
        with pytest.raises((ssl.SSLError, ConnectionError)):  # no certificate at all
            request(server, context=client_context(certs))
        with pytest.raises((ssl.SSLError, ConnectionError)):  # trusted, but its SAN is not allowed
            request(server, context=client_context(certs, "other"))

    assert accepted[0] == 200
