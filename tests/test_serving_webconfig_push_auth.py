"""Serving edges as SREs meet them: web-config files, the server's lifecycle, status apps,
and pushing to a Pushgateway that wants a password."""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import free_port, require_binary, sleeps_of
from inferwatch.serving.pushgateway import PushError
from inferwatch.serving.server import serve
from inferwatch.serving.status_apps import make_status_asgi_app, make_status_wsgi_app
from inferwatch.serving.web_config import WebConfigError, load_web_config
from processes import stop


def basic(user: str, password: bytes | str) -> str:
    raw = password if isinstance(password, bytes) else password.encode()
    return "Basic " + b64encode(user.encode() + b":" + raw).decode()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- basic auth: passwords as Go's bcrypt and htpasswd take them ------------------------------

@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.binary(min_size=73, max_size=200),
       prefix=st.sampled_from(["$2a$", "$2b$", "$2y$"]))
def test_a_password_longer_than_72_bytes_logs_in_as_go_and_htpasswd_allow(tmp_path, password,
                                                                        prefix):
    # htpasswd -B and Go's bcrypt hash and compare only the first 72 bytes: node_exporter
    # lets such a user in with the whole (long) password, as Prometheus sends it.
    hashed = bcrypt.hashpw(password[:72], bcrypt.gensalt(rounds=4)).decode()
    hashed = prefix + hashed[4:]
    config = load_web_config(write(tmp_path / "web.yml",
                                   f"basic_auth_users:\n  prometheus: '{hashed}'\n"))

    assert config.check_basic_auth(basic("prometheus", password))
    # Another first byte (whatever the drawn one was): within the 72 bytes that count.
    assert not config.check_basic_auth(basic("prometheus", bytes([password[0] ^ 1]) + password[1:]))


def test_a_long_password_scrapes_through_the_server(tmp_path):
    password = "correct-horse-battery-staple-" * 4  # 116 bytes, a generated token
    hashed = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    with serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
               web_config_file=str(web)) as server:
        request = urllib.request.Request(server.url,
                                         headers={"Authorization": basic("prometheus", password)})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


# --- response headers a response can carry ----------------------------------------------------

@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs",)),
                     min_size=1, max_size=20).filter(lambda v: any(ord(c) > 0xFF for c in v)))
def test_a_header_value_no_response_can_carry_is_refused_at_start(tmp_path, value):
    web = write(tmp_path / "web.yml",
                "http_server_config:\n  headers:\n    Content-Security-Policy: "
                + json.dumps(value) + "\n")  # JSON strings are YAML strings
    with pytest.raises(WebConfigError,
                       match=r"http_server_config\.headers\.Content-Security-Policy"):
        load_web_config(web)


def test_a_configured_header_is_sent_on_every_answer(tmp_path):
    web = write(tmp_path / "web.yml", "http_server_config:\n  headers:\n"
                "    Content-Security-Policy: \"default-src 'none'; report-uri /csp-é\"\n")
    with serve(port=0, addr="127.0.0.1", registry=CollectorRegistry(),
               web_config_file=str(web)) as server, \
            urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.status == 200
        raw = response.headers.get("Content-Security-Policy")
    assert raw == "default-src 'none'; report-uri /csp-\xe9"


# --- a key written twice ----------------------------------------------------------------------

def test_a_user_listed_twice_is_refused_not_silently_replaced(tmp_path):
    first = bcrypt.hashpw(b"one", bcrypt.gensalt(rounds=4)).decode()
    second = bcrypt.hashpw(b"two", bcrypt.gensalt(rounds=4)).decode()
    web = write(tmp_path / "web.yml", "basic_auth_users:\n"
                f"  prometheus: '{first}'\n  grafana: '{first}'\n  prometheus: '{second}'\n")
    with pytest.raises(WebConfigError, match=r"line 4.*duplicate key prometheus"):
        load_web_config(web)


def test_a_section_written_twice_is_refused(tmp_path):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  a: '{hashed}'\n"
                "http_server_config:\n  http2: false\n"
                f"basic_auth_users:\n  b: '{hashed}'\n")
    with pytest.raises(WebConfigError, match="duplicate key basic_auth_users"):
        load_web_config(web)


def test_yaml_merge_keys_still_work(tmp_path):
    web = write(tmp_path / "web.yml",
                "http_server_config:\n  headers:\n    <<: {X-Frame-Options: sameorigin}\n"
                "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n")
    assert load_web_config(web).headers == {"X-Frame-Options": "deny",
                                            "X-Content-Type-Options": "nosniff"}


# --- the server's lifecycle ---------------------------------------------------------------------

def test_starting_a_server_twice_says_so():
    server = serve(port=0, addr="127.0.0.1", registry=CollectorRegistry())
    try:
        with pytest.raises(RuntimeError, match="started already"):
            server.start()
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.status == 200  # the first start still serves
    finally:
        server.shutdown()
    with pytest.raises(RuntimeError, match="started already"):
        server.start()


# --- the status apps ----------------------------------------------------------------------------

@pytest.mark.parametrize("make", [make_status_wsgi_app, make_status_asgi_app])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_a_status_app_with_no_slots_is_refused(make, value):
    with pytest.raises(ValueError, match="max_concurrency must be a whole number >= 1"):
        make(max_concurrency=value)


# --- the Pushgateway: options checked before the job runs ---------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"timeout": 0}, "timeout must be seconds above 0"),
    ({"timeout": -5}, "timeout must be seconds above 0"),
    ({"timeout": "10"}, "timeout must be seconds above 0"),
    ({"timeout": float("nan")}, "timeout must be seconds above 0"),
    ({"gateway": "pushgateway:9091\n"}, "space or control character"),
    ({"gateway": "pushgateway:port"}, "port of 'pushgateway:port' is not a number"),
    ({"gateway": "http://"}, "gateway must be 'host:port'"),
])
def test_bad_push_options_stop_the_job_before_it_runs(options, message):
    ran = []
    arguments = {"gateway": "127.0.0.1:9091", "job": "nightly", **options}
    with pytest.raises(ValueError, match=message):
        @inferwatch.push.on_exit(**arguments)
        def job() -> None:
            ran.append(True)
        job()
    assert ran == []
    with pytest.raises(ValueError, match=message):
        inferwatch.push(**arguments, registry=inferwatch.Registry())


# --- the Pushgateway behind basic auth ----------------------------------------------------------

class AuthGateway:
    def __init__(self, address: str, user: str, password: str) -> None:
        self.address = address
        self.auth = basic(user, password)

    def samples(self, name: str, **labels: str) -> list:
        request = urllib.request.Request(f"http://{self.address}/metrics",
                                         headers={"Authorization": self.auth})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return [s for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.fixture
def auth_gateway(tmp_path) -> Iterator[AuthGateway]:
    binary = require_binary("prometheus-pushgateway")
    password = "p@ss:w/rd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = write(tmp_path / "gateway-web.yml", f"basic_auth_users:\n  batch: '{hashed}'\n")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        # A file of its own: Debian's default (/var/lib/prometheus/pushgateway.data) would
        # serve the groups every earlier gateway on the machine kept.
        [binary, f"--web.listen-address={address}", f"--web.config.file={web}",
         f"--persistence.file={tmp_path / 'pushgateway.data'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # a safety net: readiness ends the wait
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/-/ready", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (401 without credentials): it is up
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the Pushgateway did not start")
                time.sleep(0.05)
        yield AuthGateway(address, "batch", password)
    finally:
        stop(process)


@pytest.fixture
def model(scraper):
    score = inferwatch.instrument(lambda x: 0.25, name="churn", version="3",
                                  registry=scraper.registry)
    return scraper.registry, score


@pytest.mark.integration
def test_credentials_in_the_gateway_url_authenticate_the_push(auth_gateway, model):
    registry, score = model
    for _ in range(3):
        score([1.0])
    user_info = "batch:p%40ss%3Aw%2Frd"  # the password percent-encoded, as in any URL
    groups = inferwatch.push(f"http://{user_info}@{auth_gateway.address}", "nightly",
                             registry=registry, retries=0)
    assert groups == [{"job": "nightly", "model": "churn"}]
    found = auth_gateway.samples("inferwatch_requests_total", job="nightly", model="churn",
                                 outcome="ok")
    assert [s.value for s in found] == [3]


@pytest.mark.integration
def test_a_refused_password_is_never_written_to_the_error_or_the_log(auth_gateway, model, caplog):
    registry, score = model
    score([1.0])
    url = f"http://batch:WrongHunter2@{auth_gateway.address}"
    with pytest.raises(PushError) as raised:
        inferwatch.push(url, "nightly", registry=registry, retries=0)
    assert "401" in str(raised.value)
    assert "WrongHunter2" not in str(raised.value)
    assert f"http://batch:***@{auth_gateway.address}" in str(raised.value)

    caplog.set_level(logging.WARNING)
    with inferwatch.push.on_exit(url, "nightly", registry=registry, retries=0):
        score([1.0])
    assert "401" in caplog.text
    assert "WrongHunter2" not in caplog.text


def test_credentials_in_the_url_and_a_handler_together_are_refused():
    from prometheus_client.exposition import basic_auth_handler

    with pytest.raises(ValueError, match="either in its URL or through handler="):
        inferwatch.push.on_exit("http://u:p@127.0.0.1:9091", "nightly",
                                handler=basic_auth_handler)


# --- retries: the doubling wait is capped --------------------------------------------------

def test_many_retries_wait_at_most_thirty_seconds_each(monkeypatch):
    from inferwatch.core.registry import Registry
    from inferwatch.serving import pushgateway

    waits = sleeps_of(monkeypatch, pushgateway)
    registry = Registry()
    try:
        model = inferwatch.instrument(lambda x: 1.0, name="eta", version="7", registry=registry)
        model(1.0)
        registry.drain()
        # A port nothing listens on: every attempt fails at once, and may pass (no connection).
        with pytest.raises(PushError, match="1101 attempts"):
            inferwatch.push(f"127.0.0.1:{free_port()}", "nightly", registry=registry,
                            retries=1100, retry_delay=0.5, timeout=1)
    finally:
        registry.close()
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert len(waits) == 1100 and max(waits) == 30.0
