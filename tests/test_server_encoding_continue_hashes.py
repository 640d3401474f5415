"""The /metrics server against what real clients send: q-values with non-ASCII digits,
Accept-Encoding preferring the plain body, `Expect: 100-continue`, and bcrypt hashes a
web-config file can hold but bcrypt can never check."""

from __future__ import annotations

import gzip
import http.client
import socket

import bcrypt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch.serving.exposition import gzip_accepted, metrics_response
from inferwatch.serving.server import serve
from inferwatch.serving.web_config import WebConfigError, load_web_config

# Bounds every read from the server; on loopback an answer takes milliseconds.
READ_GUARD = 5.0


def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_requests", "Requests.", registry=registry).inc()
    return registry


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_GUARD) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


# Quality values with digits other than ASCII ones -----------------------------------------

# Characters str.isdigit() takes and float() refuses ("²", "¹", "³" are Latin-1 and reach a
# header as they are), and others of Unicode's digit categories.
ODD_DIGITS = st.sampled_from(["\xb2", "\xb9", "\xb3", "\u0663", "\u2075", "\uff11"])


@given(digits=st.lists(ODD_DIGITS, min_size=1, max_size=3).map("".join),
       media=st.sampled_from(["text/plain", "application/openmetrics-text;version=1.0.0",
                              "*/*"]),
       header=st.sampled_from(["accept", "accept_encoding"]))
def test_a_quality_value_with_non_ascii_digits_never_fails_the_scrape(digits, media, header):
    # `q=0.²` passed the digit check (str.isdigit) and then float() raised: every scrape
    # with such a header got a 500 and an error log with a traceback.
    value = f"{media};q=0.{digits}" if header == "accept" else f"gzip;q=0.{digits}"
    accept = value if header == "accept" else None
    accept_encoding = value if header == "accept_encoding" else None

    status, body, headers = metrics_response(registry(), accept, accept_encoding)

    assert status == 200
    # The malformed entry counts as absent: the text format, not gzipped.
    assert headers["Content-Type"].startswith("text/plain")
    assert b"demo_requests_total 1.0" in body


def test_a_scrape_with_a_latin1_digit_in_its_quality_value_is_served():
    with serve(port=0, addr="127.0.0.1", registry=registry()) as server:
        answer = exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                          b"Accept: text/plain;q=0.\xb2\r\nConnection: close\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"demo_requests_total 1.0" in answer


# Accept-Encoding: the plain body preferred ------------------------------------------------

QUALITIES = st.sampled_from(["", ";q=0", ";q=0.1", ";q=0.5", ";q=0.9", ";q=1"])


def quality(suffix: str) -> float:
    return float(suffix.partition("=")[2]) if suffix else 1.0


@given(gzip_q=QUALITIES, identity_q=QUALITIES, order=st.booleans())
def test_gzip_only_when_the_client_does_not_rate_the_plain_body_higher(gzip_q, identity_q,
                                                                      order):
    # Go's promhttp (exporter-toolkit) picks the coding with the highest quality, a tie
    # going to gzip; `gzip;q=0.1, identity` was gzipped anyway.
    entries = [f"gzip{gzip_q}", f"identity{identity_q}"]
    header = ", ".join(entries if order else entries[::-1])

    expected = quality(gzip_q) > 0 and quality(identity_q) <= quality(gzip_q)

    assert gzip_accepted(header) == expected


@pytest.mark.parametrize(("accept_encoding", "gzipped"), [
    ("gzip;q=0.1, identity", False),
    ("identity;q=1, gzip;q=0.5", False),
    ("gzip;q=0.5, *", False),      # `*` rates identity 1, above gzip's 0.5
    ("gzip, identity;q=0.5", True),
    ("gzip;q=0.5, identity;q=0.5", True),
    ("gzip", True),
])
def test_a_real_client_gets_the_coding_it_rates_highest(accept_encoding, gzipped):
    with serve(port=0, addr="127.0.0.1", registry=registry()) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=READ_GUARD)
        try:
            connection.request("GET", "/metrics", headers={"Accept-Encoding": accept_encoding})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()

    assert response.status == 200
    assert (response.getheader("Content-Encoding") == "gzip") is gzipped
    assert b"demo_requests_total 1.0" in (gzip.decompress(body) if gzipped else body)


# Expect: 100-continue ----------------------------------------------------------------------

def test_a_client_waiting_for_100_continue_is_told_to_send_its_body():
    # RFC 9110 10.1.1: the server either sends 100 Continue or a final answer. It waited for
    # a body the client held back, until read_timeout, then closed without a word.
    with serve(port=0, addr="127.0.0.1", registry=registry(), read_timeout=60.0) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=READ_GUARD) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            assert chunk, f"closed after {interim!r}"
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"

        sock.sendall(b"hello")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"demo_requests_total 1.0" in answer


def test_a_body_sent_without_waiting_still_gets_one_answer():
    # A client that sends its body at once (curl after its one-second wait does) reads the
    # 100 Continue, then the answer: one final answer, nothing after it.
    with serve(port=0, addr="127.0.0.1", registry=registry()) as server:
        answer = exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5"
                          b"\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello")

    assert answer.count(b"HTTP/1.1 200 ") == 1
    assert answer.replace(b"HTTP/1.1 100 Continue\r\n\r\n", b"", 1).startswith(b"HTTP/1.1 200 ")
    assert b"demo_requests_total 1.0" in answer


# bcrypt hashes bcrypt cannot check ---------------------------------------------------------

@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


@pytest.mark.parametrize("write", [
    # A block scalar keeps the final line break; `$` in the check matched before it.
    pytest.param(lambda h: f"  prometheus: |\n    {h}\n", id="block-scalar"),
    pytest.param(lambda h: f'  prometheus: "{h}\\n"\n', id="quoted-newline"),
    # Digits of another script: \d took them and int() read the cost as 4.
    pytest.param(lambda h: f"  prometheus: '{h[:4]}0\u0664{h[6:]}'\n", id="arabic-digit-cost"),
])
def test_a_hash_bcrypt_refuses_stops_startup_naming_the_user(tmp_path, hashed, write):
    assert bcrypt.checkpw(b"s3cret", hashed.encode())
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n" + write(hashed), encoding="utf-8")

    # Loaded, every login of that user failed with no word in the log.
    with pytest.raises(WebConfigError, match=r"basic_auth_users\.prometheus: .*bcrypt"):
        load_web_config(path)


def test_the_same_hash_without_the_line_break_logs_in(tmp_path, hashed):
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: >-\n    {hashed}\n")

    config = load_web_config(path)

    from base64 import b64encode
    assert config.check_basic_auth("Basic " + b64encode(b"prometheus:s3cret").decode())
