"""Where the /metrics server listens: every interface means one port for IPv4 and IPv6."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

import pytest

from inferwatch.serving.server import serve
from test_server import HANG_GUARD, demo_registry


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not (socket.has_dualstack_ipv6() and ipv6_loopback()),
                                reason="this host has no dual-stack IPv6 loopback")


def status_at(host: str, port: int) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=HANG_GUARD)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@needs_ipv6
@pytest.mark.parametrize("addr", ["", "::"])
def test_every_interface_listens_on_one_port_for_ipv4_and_ipv6(addr):
    # `:0` (inferwatch-exporter's `--web.listen-address=:0`) used to bind IPv4 and IPv6 on
    # two different free ports and report only one of them: its URL reached nothing.
    with serve(port=0, addr=addr, registry=demo_registry()) as server:
        url = urlsplit(server.url)
        url_status = status_at(url.hostname, url.port)
        statuses = {host: status_at(host, server.port) for host in ("127.0.0.1", "::1")}

    assert url_status == 200
    assert statuses == {"127.0.0.1": 200, "::1": 200}


@needs_ipv6
def test_every_interface_frees_its_port_on_shutdown_and_serves_again_on_it():
    first = serve(port=0, addr="", registry=demo_registry())
    port = first.port
    first.shutdown()
    for host in ("127.0.0.1", "::1"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=HANG_GUARD).close()

    with serve(port=port, addr="", registry=demo_registry()) as again:
        assert status_at("127.0.0.1", again.port) == 200
        assert status_at("::1", again.port) == 200


def test_every_interface_on_a_taken_port_names_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on :{port}"):
            serve(port=port, addr="", registry=demo_registry())
