"""The web-config file against exporter-toolkit's semantics: bcrypt hashes it can check,
client certificate SANs as Go prints them."""

from __future__ import annotations

import http.client
import ssl
from base64 import b64encode
from pathlib import Path

import bcrypt
import pytest

from inferwatch.serving.server import serve
from inferwatch.serving.web_config import WebConfigError, load_web_config
from test_server import HANG_GUARD, demo_registry, make_cert


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def get(port: int, headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> int:
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_GUARD)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=HANG_GUARD,
                                                 context=context)
    try:
        connection.request("GET", "/metrics", headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def with_cost(hashed: str, cost: str) -> str:
    """`hashed` with its cost field replaced: the shape of a hash, a cost bcrypt refuses."""
    return hashed[:4] + cost + hashed[6:]


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


@pytest.mark.parametrize("broken", [
    pytest.param(lambda h: with_cost(h, "03"), id="cost-below-4"),
    pytest.param(lambda h: with_cost(h, "32"), id="cost-above-31"),
    pytest.param(lambda h: "$2$" + h[4:], id="prefix-2"),
])
def test_a_hash_bcrypt_cannot_check_is_refused_at_load_naming_the_user(tmp_path, hashed,
                                                                       broken):
    # bcrypt cannot check such a hash: accepted, every login of that user fails with no word
    # in the log. exporter-toolkit refuses a cost outside 4..31 at start-up (bcrypt.Cost).
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{broken(hashed)}'\n")

    with pytest.raises(WebConfigError, match=r"basic_auth_users\.prometheus: .*bcrypt"):
        load_web_config(path)


def test_the_allowed_bcrypt_costs_and_prefixes_load(tmp_path, hashed):
    users = {"a": with_cost(hashed, "04"), "b": with_cost(hashed, "31"),
             "c": "$2a$" + hashed[4:], "d": "$2b$" + hashed[4:], "e": "$2y$" + hashed[4:]}
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n" + "".join(f"  {u}: '{h}'\n" for u, h in users.items()))

    assert load_web_config(path).users == users


@pytest.fixture(scope="module")
def san_certs(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("sans")
    server_cert, server_key = make_cert(directory)
    client_cert, client_key = make_cert(directory, "v6client", "IP:2001:db8::1")
    mapped_cert, mapped_key = make_cert(directory, "mapped", "IP:::ffff:192.0.2.7")
    return {"cert": server_cert, "key": server_key, "v6client_cert": client_cert,
            "v6client_key": client_key, "mapped_cert": mapped_cert, "mapped_key": mapped_key}


def client(certs: dict[str, Path], name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["cert"]))
    context.load_cert_chain(str(certs[f"{name}_cert"]), str(certs[f"{name}_key"]))
    return context


@pytest.mark.parametrize(("name", "allowed"), [
    ("v6client", "2001:db8::1"),   # Go's net.IP.String(): compressed, lower case
    ("mapped", "192.0.2.7"),       # Go prints an IPv4-mapped address as IPv4
])
def test_ip_sans_match_as_exporter_toolkit_writes_them(tmp_path, san_certs, name, allowed):
    bundle = tmp_path / "clients.pem"
    bundle.write_bytes(san_certs[f"{name}_cert"].read_bytes())
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {san_certs['cert']}\n  key_file: {san_certs['key']}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {bundle}\n"
        f"  client_allowed_sans: ['{allowed}']\n")
    with serve(port=0, addr="127.0.0.1", registry=demo_registry(),
               web_config_file=str(path)) as server:
        status = get(server.port, context=client(san_certs, name))

    assert status == 200
