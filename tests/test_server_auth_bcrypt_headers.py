"""Basic auth and response headers of the /metrics server as operators configure them: users
hashed at very different bcrypt costs, wrong passwords arriving faster than bcrypt checks
them, headers set both by the web config and by a page, YAML scalars that are no strings."""

from __future__ import annotations

import http.client
import logging
import threading
from base64 import b64encode
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch.serving import web_config as web_config_module
from inferwatch.serving.server import serve
from inferwatch.serving.web_config import WebConfig, load_web_config

# Bounds every read from the server; on loopback an answer takes milliseconds.
READ_GUARD = 30.0
RENDER_THREAD = "inferwatch-metrics-render"


def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_requests", "Requests.", registry=registry).inc()
    return registry


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def with_cost(hashed: str, cost: int) -> str:
    """`hashed` with its cost field replaced: a hash bcrypt checks at `cost` (and that no
    password matches), without paying that cost to make it."""
    return f"{hashed[:4]}{cost:02d}{hashed[6:]}"


def get(port: int, path: str = "/metrics",
        headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_GUARD)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def write_users(path: Path, users: dict[str, str], extra: str = "") -> Path:
    path.write_text("basic_auth_users:\n"
                    + "".join(f"  {user}: '{hashed}'\n" for user, hashed in users.items())
                    + extra)
    return path


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


def render_threads() -> int:
    return sum(t.name == RENDER_THREAD and t.is_alive() for t in threading.enumerate())


# The decoy for unknown users --------------------------------------------------------------

def test_an_unknown_user_is_refused_quickly_when_one_user_has_a_huge_cost(tmp_path, hashed):
    # The decoy took the highest configured cost: one archive user at cost 17 made every
    # unknown name's check take seconds (cost 31: days), so it ran past read_timeout and
    # answered 503, and each such check kept a core busy long after.
    web = write_users(tmp_path / "web.yml", {"prometheus": hashed, "grafana": hashed,
                                             "archive": with_cost(hashed, 17)})
    with serve(port=0, addr="127.0.0.1", registry=registry(), web_config_file=str(web),
               read_timeout=3.0) as server:
        stranger = get(server.port, headers=basic("intruder", "guess"))
        known = get(server.port, headers=basic("prometheus", "s3cret"))

    assert stranger.status == 401
    assert known.status == 200


@given(costs=st.lists(st.integers(4, 31), min_size=1, max_size=12))
def test_the_decoy_cost_is_the_most_common_cost_bounded(costs):
    users = {f"user{i}": with_cost("$2b$04$" + "a" * 53, cost) for i, cost in enumerate(costs)}
    config = WebConfig(path="inline", users=users)

    most = max(costs.count(cost) for cost in costs)
    common = min(cost for cost in costs if costs.count(cost) == most)
    cap = web_config_module.MAX_DECOY_COST
    assert config.decoy_cost == min(common, cap)
    assert 4 <= config.decoy_cost <= cap


# A cost whose check outlasts read_timeout ---------------------------------------------------

def test_a_cost_above_sixteen_is_warned_about_naming_the_user(tmp_path, hashed, caplog):
    # Accepted silently, every first scrape of that user answered 503 (each check takes
    # longer than read_timeout), and nothing said why.
    web = write_users(tmp_path / "web.yml", {"prometheus": hashed,
                                             "archive": with_cost(hashed, 20)})
    with caplog.at_level(logging.WARNING, logger="inferwatch.serving.server"), \
            serve(port=0, addr="127.0.0.1", registry=registry(), web_config_file=str(web)):
        pass

    warnings = [r.getMessage() for r in caplog.records
                if "basic_auth_cost_too_high" in r.getMessage()]
    assert len(warnings) == 1
    assert "user=archive " in warnings[0] and "cost=20 " in warnings[0]
    assert str(web) in warnings[0]
    suggested = int(warnings[0].rsplit(" ", 1)[1])
    assert 4 <= suggested <= 16


def test_a_cost_slower_than_read_timeout_here_is_warned_about(tmp_path, hashed, caplog):
    web = write_users(tmp_path / "web.yml", {"prometheus": with_cost(hashed, 14)})
    with caplog.at_level(logging.WARNING, logger="inferwatch.serving.server"), \
            serve(port=0, addr="127.0.0.1", registry=registry(), web_config_file=str(web),
                  read_timeout=0.01):
        pass

    warnings = [r.getMessage() for r in caplog.records
                if "basic_auth_cost_too_high" in r.getMessage()]
    assert len(warnings) == 1
    assert "user=prometheus " in warnings[0] and "read_timeout=0.01s" in warnings[0]
    assert int(warnings[0].rsplit(" ", 1)[1]) < 14


def test_usual_costs_start_without_a_warning(tmp_path, hashed, caplog):
    web = write_users(tmp_path / "web.yml", {"prometheus": hashed})
    with caplog.at_level(logging.WARNING, logger="inferwatch.serving.server"), \
            serve(port=0, addr="127.0.0.1", registry=registry(), web_config_file=str(web)):
        pass

    assert not [r for r in caplog.records if "basic_auth_cost_too_high" in r.getMessage()]


# Wrong passwords faster than bcrypt ---------------------------------------------------------

def test_password_checks_past_read_timeout_do_not_pile_up_threads(tmp_path, hashed):
    # Each check that ran past read_timeout released the server's lock while its bcrypt
    # thread still ran; every later wrong password started one more thread queued behind
    # it, so a stream of guesses grew the threads (and the queued CPU) without bound.
    web = write_users(tmp_path / "web.yml", {"prometheus": with_cost(hashed, 14)})
    before = render_threads()
    with serve(port=0, addr="127.0.0.1", registry=registry(), web_config_file=str(web),
               read_timeout=0.2) as server:
        statuses = [get(server.port, headers=basic("prometheus", f"guess{i}")).status
                    for i in range(5)]
        during = render_threads() - before

    assert statuses[0] == 503
    assert set(statuses) <= {401, 503}
    assert during <= 1


# Configured headers and a page's own --------------------------------------------------------

def test_the_configured_content_security_policy_is_kept_on_the_status_page(tmp_path):
    # The status page's own policy replaced the operator's: `frame-ancestors 'none'` was
    # lost on exactly the page a browser shows.
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n"
                   "    Content-Security-Policy: \"frame-ancestors 'none'\"\n"
                   "    X-Content-Type-Options: nosniff\n")
    with serve(port=0, addr="127.0.0.1", web_config_file=str(web)) as server:
        page = get(server.port, "/")
        metrics = get(server.port)

    assert page.status == 200
    policies = page.msg.get_all("Content-Security-Policy")
    assert "frame-ancestors 'none'" in policies
    assert len(policies) == 2  # the page's own too: a browser enforces both
    assert page.msg.get_all("X-Content-Type-Options") == ["nosniff"]
    assert metrics.msg.get_all("Content-Security-Policy") == ["frame-ancestors 'none'"]


# YAML scalars that are no strings -------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(value=st.integers(0, 10**6))
def test_a_header_value_written_as_a_yaml_number_loads_as_its_text(tmp_path_factory, value):
    # `X-XSS-Protection: 0` (the value browsers now recommend) is a YAML integer; node_exporter
    # takes it as "0", inferwatch refused the whole file: "must be a string, got int".
    web = tmp_path_factory.mktemp("num") / "web.yml"
    web.write_text(f"http_server_config:\n  headers:\n    X-XSS-Protection: {value}\n")

    assert load_web_config(web).headers == {"X-XSS-Protection": str(value)}


def test_x_xss_protection_zero_is_sent(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    X-XSS-Protection: 0\n")
    with serve(port=0, addr="127.0.0.1", registry=registry(),
               web_config_file=str(web)) as server:
        response = get(server.port)

    assert response.status == 200
    assert response.getheader("X-XSS-Protection") == "0"
