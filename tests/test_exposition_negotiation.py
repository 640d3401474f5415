"""/metrics as caches, clients with unusual Accept / Accept-Encoding headers, and operators
with unusual TLS files see it: Vary, wildcards, refused codings, clear TLS file errors."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import socket
import subprocess
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch.serving.exposition import gzip_accepted, make_asgi_app, make_wsgi_app, render
from inferwatch.serving.server import serve
from inferwatch.serving.web_config import WebConfigError, load_web_config

HANG_GUARD = 30.0
CLASSIC = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def demo_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_scrapes", "Scrapes.", registry=registry).inc(5)
    return registry


# Vary ------------------------------------------------------------------------------------

NEGOTIATED = [
    ({}, None),
    ({"Accept": PROMETHEUS_ACCEPT}, None),
    ({"Accept-Encoding": "gzip"}, "gzip"),
    ({"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}, "gzip"),
]


def assert_varies(headers: dict[str, str], encoding: str | None) -> None:
    headers = {k.lower(): v for k, v in headers.items()}
    varies = {token.strip().lower() for token in headers.get("vary", "").split(",")}
    assert {"accept", "accept-encoding"} <= varies
    assert headers.get("content-encoding") == encoding


@pytest.mark.parametrize(("request_headers", "encoding"), NEGOTIATED)
def test_render_says_the_body_varies_on_accept_and_accept_encoding(request_headers, encoding):
    _, headers = render(demo_registry(), request_headers.get("Accept"),
                        request_headers.get("Accept-Encoding"))

    assert_varies(headers, encoding)


@pytest.mark.parametrize(("request_headers", "encoding"), NEGOTIATED)
def test_the_metrics_server_answer_carries_vary(request_headers, encoding):
    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as server:
        for method in ("GET", "HEAD"):
            connection = http.client.HTTPConnection("127.0.0.1", server.port,
                                                    timeout=HANG_GUARD)
            try:
                connection.request(method, "/metrics", headers=request_headers)
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
            assert response.status == 200
            assert_varies(dict(response.getheaders()), encoding)


@pytest.mark.parametrize(("request_headers", "encoding"), NEGOTIATED)
def test_the_wsgi_app_answer_carries_vary(request_headers, encoding):
    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = make_server("127.0.0.1", 0, make_wsgi_app(demo_registry()),
                         handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port,
                                                timeout=HANG_GUARD)
        connection.request("GET", "/metrics", headers=request_headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HANG_GUARD)
    assert response.status == 200
    assert_varies(dict(response.getheaders()), encoding)
    if encoding:
        assert gzip.decompress(body).startswith(b"# HELP")


@pytest.mark.parametrize(("request_headers", "encoding"), NEGOTIATED)
def test_the_asgi_app_answer_carries_vary(request_headers, encoding):
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in request_headers.items()]}
    asyncio.run(make_asgi_app(demo_registry())(scope, receive, send))

    assert sent[0]["status"] == 200
    assert_varies({k.decode(): v.decode() for k, v in sent[0]["headers"]}, encoding)


# Wildcards after a refusal -----------------------------------------------------------------

@pytest.mark.parametrize(("accept", "content_type"), [
    ("text/plain;q=0, */*", OPENMETRICS),
    ("text/plain; version=0.0.4; q=0, */*;q=0.5", OPENMETRICS),
    ("TEXT/PLAIN ; Q=0.000 , */*", OPENMETRICS),
    ("application/*", OPENMETRICS),
    ("text/plain;q=0, application/*;q=0.9", OPENMETRICS),
    ("application/openmetrics-text;q=0, */*", CLASSIC),
    ("application/openmetrics-text;version=1.0.0;q=0, text/*", CLASSIC),
    # Refusing another version of a format does not refuse the one a wildcard stands for.
    ("text/plain;version=1.0.0;q=0, */*", CLASSIC),
    ("*/*", CLASSIC),
    ("text/*", CLASSIC),
])
def test_a_wildcard_stands_for_a_format_the_client_did_not_refuse(accept, content_type):
    _, headers = render(demo_registry(), accept, None)

    assert headers["Content-Type"] == content_type


_REFUSALS = {
    "text/plain": (CLASSIC, OPENMETRICS),
    "application/openmetrics-text": (OPENMETRICS, CLASSIC),
}
_QUALITY = st.sampled_from(["1", "0.9", "0.5", "0.100", "0.001", "1.000"])
_ZERO = st.sampled_from(["0", "0.0", "0.000", "0."])
_SPACE = st.sampled_from(["", " ", "  ", "\t"])
_NOISE = st.sampled_from(["application/json", "application/vnd.google.protobuf;proto=io."
                          "prometheus.client.MetricFamily;encoding=delimited", "image/png"])


@given(refused=st.sampled_from(sorted(_REFUSALS)), zero=_ZERO, quality=_QUALITY,
       wildcard=st.sampled_from(["*/*", "*/*", "text/*", "application/*"]),
       noise=st.lists(st.tuples(_NOISE, _QUALITY), max_size=2), space=_SPACE,
       upper=st.booleans(), refusal_first=st.booleans())
def test_a_refused_format_is_never_served_for_a_wildcard(refused, zero, quality, wildcard, noise,
                                                         space, upper, refusal_first):
    refusal = f"{refused}{space};{space}{'Q' if upper else 'q'}={zero}"
    if upper:
        refusal = refusal.upper()
    ranges = [f"{media};q={q}" for media, q in noise]
    ranges.insert(0 if refusal_first else len(ranges), refusal)
    ranges.append(f"{wildcard}{space};q={quality}")

    _, headers = render(demo_registry(), f",{space}".join(ranges), None)

    refused_type, other_type = _REFUSALS[refused]
    wildcard_allows_other = wildcard == "*/*" or other_type.startswith(wildcard[:-1])
    if wildcard_allows_other:
        assert headers["Content-Type"] == other_type
    # text/* after refusing text/plain leaves nothing servable: the documented fallback.
    elif refused != "text/plain":
        assert headers["Content-Type"] != refused_type


# Accept-Encoding refusing identity -----------------------------------------------------------

@pytest.mark.parametrize("accept_encoding", [
    "identity;q=0", "IDENTITY; Q=0.000", "br;q=0.5, identity;q=0", "identity;q=0, deflate",
])
def test_a_client_refusing_the_plain_body_gets_gzip(accept_encoding):
    registry = demo_registry()
    plain, _ = render(registry, None, None)

    body, headers = render(registry, None, accept_encoding)

    assert headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == plain


@given(codings=st.lists(st.tuples(st.sampled_from(["br", "deflate", "zstd", "identity"]),
                                  st.sampled_from(["", ";q=0", ";q=0.5", ";q=1"])),
                        max_size=4),
       gzip_entry=st.sampled_from([None, "gzip;q=0", "x-gzip;q=0", "*;q=0", "gzip", "*"]))
def test_gzip_follows_rfc_9110_for_any_accept_encoding(codings, gzip_entry):
    entries = [f"{coding}{q}" for coding, q in codings]
    if gzip_entry is not None:
        entries.append(gzip_entry)
    identity_refused = ("identity", ";q=0") in codings and not any(
        coding == "identity" and q != ";q=0" for coding, q in codings)

    accepted = gzip_accepted(", ".join(entries))

    if gzip_entry in ("gzip", "*"):
        assert accepted
    elif gzip_entry is not None:
        assert not accepted  # refused by name, or everything refused
    else:
        assert accepted == identity_refused


# TLS files ---------------------------------------------------------------------------------

def make_cert(directory: Path, name: str, passphrase: str | None = None) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    secret = ["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         *secret, "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(directory, "server")
    _, other_key = make_cert(directory, "other")
    locked_cert, locked_key = make_cert(directory, "locked", passphrase="hunter2")
    return {"cert": cert, "key": key, "other_key": other_key, "locked_cert": locked_cert,
            "locked_key": locked_key}


def web_config(tmp_path: Path, cert: Path, key: Path) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    return path


def test_an_encrypted_key_gets_a_clear_error_and_no_passphrase_prompt(tmp_path, tls_files,
                                                                      capfd):
    with pytest.raises(WebConfigError) as from_file:
        load_web_config(web_config(tmp_path, tls_files["locked_cert"], tls_files["locked_key"]))
    with pytest.raises(ValueError) as from_arguments:
        serve(port=0, addr="127.0.0.1", registry=demo_registry(),
              certfile=str(tls_files["locked_cert"]), keyfile=str(tls_files["locked_key"]))

    assert "tls_server_config.key_file:" in str(from_file.value)
    for error in (from_file.value, from_arguments.value):
        assert "encrypted with a passphrase" in str(error)
        assert str(tls_files["locked_key"]) in str(error)
    captured = capfd.readouterr()
    assert "pass phrase" not in captured.out + captured.err


@pytest.mark.parametrize(("cert", "key", "named", "problem"), [
    ("key", "cert", "tls_server_config.cert_file:", "holds no PEM certificate"),
    ("cert", "cert", "tls_server_config.key_file:", "holds no PEM private key"),
    ("cert", "other_key", "tls_server_config.cert_file / key_file:", "does not belong"),
])
def test_a_wrong_certificate_or_key_file_is_named_with_its_problem(tmp_path, tls_files, cert,
                                                                   key, named, problem):
    with pytest.raises(WebConfigError) as from_file:
        load_web_config(web_config(tmp_path, tls_files[cert], tls_files[key]))
    with pytest.raises(ValueError) as from_arguments:
        serve(port=0, addr="127.0.0.1", registry=demo_registry(),
              certfile=str(tls_files[cert]), keyfile=str(tls_files[key]))

    assert named in str(from_file.value)
    assert problem in str(from_file.value)
    assert problem in str(from_arguments.value)


def test_a_good_certificate_and_key_still_load(tmp_path, tls_files):
    config = load_web_config(web_config(tmp_path, tls_files["cert"], tls_files["key"]))

    assert config.ssl_context() is not None


# Empty lines before a request line -----------------------------------------------------------

def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_an_empty_line_before_the_request_line_is_ignored():
    with serve(port=0, addr="127.0.0.1", registry=demo_registry()) as server:
        alone = exchange(server.port, b"\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
        # An HTTP/1.0-era client ends a POST body with a CRLF it does not count.
        after_body = exchange(server.port, b"POST /-/healthy HTTP/1.1\r\nHost: x\r\n"
                                           b"Content-Length: 2\r\n\r\nok\r\n"
                                           b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n")

    assert alone.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"demo_scrapes_total 5.0" in alone
    assert after_body.startswith(b"HTTP/1.1 405 ")
    assert after_body.count(b"HTTP/1.1 200 OK\r\n") == 1
    assert b"demo_scrapes_total 5.0" in after_body
