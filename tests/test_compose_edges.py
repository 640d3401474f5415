"""Edges of the compose stack's path from a firing alert to a person: what render-config.sh
makes of odd or wrong environments, where each generated severity is routed, and whether
the links in a notification lead anywhere from the host."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import free_port, require_binary
from processes import stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
RENDER = COMPOSE_DIR / "alertmanager" / "render-config.sh"
SLACK = {"AM_SLACK_API_URL": "https://hooks.slack.com/services/T000/B000/XXXX"}
EMAIL = {"AM_EMAIL_TO": "oncall@example.com", "AM_SMTP_SMARTHOST": "smtp.example.com:587",
         "AM_SMTP_FROM": "alertmanager@example.com"}
VARIABLES = ["AM_PAGER_URL", "AM_WEBHOOK_URL", "AM_SLACK_API_URL", "AM_SLACK_CHANNEL",
             "AM_PAGERDUTY_ROUTING_KEY", "AM_EMAIL_TO", "AM_SMTP_SMARTHOST", "AM_SMTP_FROM",
             "AM_SMTP_USERNAME", "AM_SMTP_PASSWORD"]


def render(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([shutil.which("sh") or "/bin/sh", str(RENDER),
                           str(tmp_path / "alertmanager.yml")],
                          env={**base, **env}, capture_output=True, text=True, timeout=30)


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True,
                          timeout=60)


def refused(result: subprocess.CompletedProcess, tmp_path: Path, variable: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr and "render-config.sh" in result.stderr
    assert not (tmp_path / "alertmanager.yml").exists()


# --- the environment, checked before Alertmanager sees it -------------------------------------


def test_rendered_config_with_secrets_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    env = {**EMAIL, "AM_SMTP_USERNAME": "am", "AM_SMTP_PASSWORD": "s3cret",
           "AM_PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef"}
    result = render(tmp_path, env)
    assert result.returncode == 0, result.stderr
    mode = stat.S_IMODE((tmp_path / "alertmanager.yml").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)


@pytest.mark.parametrize("variable, value", [
    ("AM_WEBHOOK_URL", "hooks.example.com/inferwatch"),
    ("AM_WEBHOOK_URL", "ftp://hooks.example.com/"),
    ("AM_SLACK_API_URL", "T000/B000/XXXX"),
    ("AM_PAGER_URL", "pager:9095"),
])
def test_a_value_that_is_no_url_is_refused_naming_the_variable(
        tmp_path: Path, variable: str, value: str) -> None:
    refused(render(tmp_path, {variable: value}), tmp_path, variable)


def test_a_smarthost_without_port_is_refused_naming_the_variable(tmp_path: Path) -> None:
    result = render(tmp_path, {**EMAIL, "AM_SMTP_SMARTHOST": "smtp.example.com"})
    refused(result, tmp_path, "AM_SMTP_SMARTHOST")


def test_an_smtp_password_without_user_is_refused_not_dropped(tmp_path: Path) -> None:
    result = render(tmp_path, {**EMAIL, "AM_SMTP_PASSWORD": "s3cret"})
    refused(result, tmp_path, "AM_SMTP_USERNAME")


@pytest.mark.parametrize("value", ["#ml-alerts\r", "#ml\talerts", "#ml\x01alerts", "#ml\uffff",
                                   "#ml\x7falerts", "#ml\x85alerts"])
def test_control_characters_are_refused_not_mangled(tmp_path: Path, value: str) -> None:
    # "\r" is what a .env saved with CRLF line ends leaves at the end of every value.
    refused(render(tmp_path, {**SLACK, "AM_SLACK_CHANNEL": value}), tmp_path,
            "AM_SLACK_CHANNEL")


@pytest.mark.parametrize("value", ["#ml \u2028 alerts", "#ml \u2029 alerts", "\u2028#ml"])
def test_unicode_line_separators_reach_the_config_unchanged(tmp_path: Path,
                                                            value: str) -> None:
    result = render(tmp_path, {**SLACK, "AM_SLACK_CHANNEL": value})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert config["receivers"][0]["slack_configs"][0]["channel"] == value


VALUE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@pytest.mark.integration
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(VARIABLES), VALUE, max_size=4),
       st.sampled_from([{}, SLACK, EMAIL, {**SLACK, **EMAIL}]))
def test_any_environment_is_refused_by_name_or_loads_in_alertmanager(
        tmp_path: Path, values: dict[str, str], base: dict[str, str]) -> None:
    (tmp_path / "alertmanager.yml").unlink(missing_ok=True)
    env = {**base, **{k: v for k, v in values.items() if "\x00" not in v}}
    result = render(tmp_path, env)
    if result.returncode != 0:
        assert result.returncode == 2
        assert re.search(r"render-config\.sh: AM_[A-Z_]+ ", result.stderr), result.stderr
        return
    checked = amtool("check-config", str(tmp_path / "alertmanager.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr + repr(env)


# --- routing: each severity the generated alerts carry ----------------------------------------


def generated_severities() -> dict[str, str]:
    severities = {}
    for path in sorted((ROOT / "alerts").glob("*alerting-rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                severities[rule["alert"]] = rule["labels"]["severity"]
    return severities


@pytest.mark.integration
def test_critical_alerts_page_and_every_other_severity_opens_a_ticket(tmp_path: Path) -> None:
    result = render(tmp_path, {**SLACK, "AM_PAGERDUTY_ROUTING_KEY": "k" * 32})
    assert result.returncode == 0, result.stderr
    severities = generated_severities()
    assert {"critical", "warning", "info"} <= set(severities.values())
    for severity in sorted(set(severities.values())):
        alert = next(a for a, s in severities.items() if s == severity)
        routed = amtool("config", "routes", "test",
                        f"--config.file={tmp_path / 'alertmanager.yml'}",
                        f"alertname={alert}", f"severity={severity}", "model=m")
        expected = "page" if severity == "critical" else "ticket"
        assert routed.stdout.strip() == expected, (severity, routed.stdout, routed.stderr)
    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    page = next(r for r in config["receivers"] if r["name"] == "page")
    ticket = next(r for r in config["receivers"] if r["name"] == "ticket")
    assert "pagerduty_configs" in page and "pagerduty_configs" not in ticket


# --- a firing alert reaches the pager, with links that open from the host -----------------


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", received
    finally:
        server.shutdown()
        server.server_close()


def compose_flag(command: list[str], flag: str) -> str | None:
    return next((f.split("=", 1)[1] for f in command if f.startswith(f"{flag}=")), None)


def test_prometheus_and_alertmanager_link_to_their_published_ports() -> None:
    for name, port in (("prometheus", 9090), ("alertmanager", 9093)):
        service = SERVICES[name]
        command = service.get("command") or service["entrypoint"]
        external = compose_flag(command, "--web.external-url")
        assert external is not None, f"{name} links would name its container"
        published = {p.split(":")[1] for p in service["ports"]}
        assert re.fullmatch(rf"http://(localhost|127\.0\.0\.1):{port}/?", external), external
        assert str(port) in published


@pytest.mark.integration
def test_a_critical_alert_pages_through_the_compose_alertmanager(tmp_path: Path) -> None:
    binary = require_binary("prometheus-alertmanager")
    entrypoint = SERVICES["alertmanager"]["entrypoint"]
    flags = entrypoint[entrypoint.index("/bin/alertmanager") + 1:]
    port = free_port()
    with webhook() as (url, received):
        result = render(tmp_path, {"AM_PAGER_URL": url})
        assert result.returncode == 0, result.stderr
        config = tmp_path / "alertmanager.yml"
        # Only the waits change, so the test does not sit out the production 30 s.
        config.write_text(config.read_text().replace("group_wait: 30s", "group_wait: 0s"))
        replaced = {"--config.file": str(config), "--storage.path": str(tmp_path / "data"),
                    "--web.listen-address": f"127.0.0.1:{port}"}
        args = [f"{f.split('=', 1)[0]}={replaced[f.split('=', 1)[0]]}"
                if f.split("=", 1)[0] in replaced else f for f in flags]
        log = (tmp_path / "alertmanager.log").open("w")
        process = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/-/ready", process=process)
            alert = [{"labels": {"alertname": "InferwatchTargetDown", "severity": "critical",
                                 "job": "inferwatch-model", "instance": "model:8000"},
                      "annotations": {"summary": "Model target is down"}}]
            request = urllib.request.Request(f"{base}/api/v2/alerts",
                                             data=json.dumps(alert).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            deadline = time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop(process)
            log.close()
    assert received, "no page reached the pager webhook"
    page = received[0]
    assert page["receiver"] == "page" and page["status"] == "firing"
    assert page["alerts"][0]["labels"]["alertname"] == "InferwatchTargetDown"
    # The silence and "view" links of the notification open from the host's browser.
    assert page["externalURL"] == compose_flag(flags, "--web.external-url"), page["externalURL"]
    assert re.match(r"http://(localhost|127\.0\.0\.1):9093", page["externalURL"])


@contextmanager
def compose_alertmanager(tmp_path: Path) -> Iterator[str]:
    """The compose Alertmanager with the default rendered config, on a loopback port."""
    binary = require_binary("prometheus-alertmanager")
    result = render(tmp_path, {})
    assert result.returncode == 0, result.stderr
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/-/ready", process=process)
        yield base
    finally:
        stop(process)
        log.close()


def post_alerts(base: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(f"{base}/api/v2/alerts", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def alert_states(base: str) -> dict[tuple[str, str, str], str]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=10) as response:
        listed = json.loads(response.read())
    return {(a["labels"]["alertname"], a["labels"].get("model", ""),
             a["labels"].get("instance", "")): a["status"]["state"] for a in listed}


def _settled_states(base: str, expected: dict[tuple[str, str, str], str]
                    ) -> dict[tuple[str, str, str], str]:
    """The alerts' states once they equal `expected`, or as they stand after 30 s."""
    deadline = time.monotonic() + 30
    states = alert_states(base)
    while states != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        states = alert_states(base)
    return states


DOWN = {"alertname": "InferwatchTargetDown", "severity": "critical", "job": "inferwatch-model"}
FRAUD_SLOW = {"alertname": "InferwatchLatencyHigh", "severity": "warning", "model": "fraud",
              "model_version": "1.4.2"}
CHURN_SLOW = {"alertname": "InferwatchLatencyHigh", "severity": "warning", "model": "churn",
              "model_version": "2.0"}


@pytest.mark.integration
def test_one_down_replica_holds_back_no_warning_of_the_model_its_peers_still_serve(
        tmp_path: Path) -> None:
    # fraud runs on m1 and m2; only m1 is down. The per-model warnings are computed from
    # every replica (they carry no instance), so m2's latency is still worth a ticket.
    expected = {
        ("InferwatchTargetDown", "fraud", "m1:8000"): "active",
        ("InferwatchTargetDown", "", "m9:8000"): "active",
        ("InferwatchLatencyHigh", "fraud", ""): "active",
        ("InferwatchLatencyHigh", "churn", ""): "active",
        # A target that served no model holds back nothing: a missing label is an empty one
        # to Alertmanager, and the exporter's warnings name no model either.
        ("InferwatchExporterDown", "", "e1:9400"): "active",
    }
    with compose_alertmanager(tmp_path) as base:
        post_alerts(base, [
            {**DOWN, "instance": "m1:8000", "model": "fraud"},
            {**DOWN, "instance": "m9:8000"},
            FRAUD_SLOW, CHURN_SLOW,
            {"alertname": "InferwatchExporterDown", "severity": "warning",
             "job": "inferwatch-exporter", "instance": "e1:9400"},
        ])
        states = _settled_states(base, expected)
    assert states == expected


@pytest.mark.integration
def test_a_model_with_every_target_down_has_its_warnings_held_back(tmp_path: Path) -> None:
    # Both of fraud's targets are down: InferwatchTargetDown fires once per target and once
    # for the model itself (no instance), and that last one holds back fraud's warnings.
    expected = {
        ("InferwatchTargetDown", "fraud", "m1:8000"): "active",
        ("InferwatchTargetDown", "fraud", "m2:8000"): "active",
        ("InferwatchTargetDown", "fraud", ""): "active",
        ("InferwatchLatencyHigh", "fraud", ""): "suppressed",
        ("InferwatchLatencyHigh", "churn", ""): "active",
    }
    with compose_alertmanager(tmp_path) as base:
        post_alerts(base, [
            {**DOWN, "instance": "m1:8000", "model": "fraud"},
            {**DOWN, "instance": "m2:8000", "model": "fraud"},
            {"alertname": "InferwatchTargetDown", "severity": "critical", "model": "fraud"},
            FRAUD_SLOW, CHURN_SLOW,
        ])
        states = _settled_states(base, expected)
    assert states == expected
