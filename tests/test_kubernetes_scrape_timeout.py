"""The exporter PodMonitor's scrape timeout: the exporter answers within its --scrape.timeout
(5 s by default) plus one second, so the monitor must not leave the wait to a cluster-wide
default that may be shorter, nor ask Prometheus for a timeout above the interval."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_binary
from inferwatch.generate import render
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.kubernetes import pod_monitor

# What the exporter needs by default: --scrape.timeout (5 s) plus the server's one second.
EXPORTER_ANSWERS_WITHIN = 6.0


def _exporter_endpoint(cfg) -> dict:
    return pod_monitor(cfg)["spec"]["podMetricsEndpoints"][0]


def _cfg(interval: str):
    return from_dict({"kubernetes": {"scrape_interval": interval}})


def test_the_default_exporter_monitor_waits_longer_than_the_exporter_answers() -> None:
    """Without a timeout, the Prometheus CR's global scrapeTimeout applies: set below 6 s,
    every scrape of a slow GPU host fails without the exporter's collector_success 0."""
    endpoint = _exporter_endpoint(DEFAULT)
    assert duration_seconds(endpoint["scrapeTimeout"]) > EXPORTER_ANSWERS_WITHIN
    assert duration_seconds(endpoint["scrapeTimeout"]) <= duration_seconds(endpoint["interval"])
    manifest = yaml.safe_load(render(DEFAULT)["alerts/kubernetes/podmonitor.yaml"])
    assert manifest["spec"]["podMetricsEndpoints"][0]["scrapeTimeout"] == "10s"


# Up to a minute: the default windows hold enough scrapes of any of these.
@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(1, 600).map(lambda n: f"{n * 100}ms"),
                 st.integers(1, 60).map(lambda n: f"{n}s"),
                 st.integers(1, 59).map(lambda n: f"1m{n}ms"), st.just("1m")))
def test_the_exporter_timeout_never_exceeds_the_interval(interval: str) -> None:
    cfg = _cfg(interval)
    endpoint = _exporter_endpoint(cfg)
    timeout = duration_seconds(endpoint["scrapeTimeout"])
    assert timeout <= duration_seconds(interval)
    assert timeout == min(duration_seconds(interval), 10.0)


@pytest.mark.parametrize("interval", ["5s", "15s", "1m"])
def test_prometheus_accepts_the_exporter_scrape_settings(interval: str, tmp_path: Path) -> None:
    """The monitor's interval and timeout as the operator hands them to Prometheus."""
    endpoint = _exporter_endpoint(_cfg(interval))
    config = {"global": {"scrape_timeout": "2s", "scrape_interval": "1m"}, "scrape_configs": [{
        "job_name": "exporter", "scrape_interval": endpoint["interval"],
        "scrape_timeout": endpoint["scrapeTimeout"],
        "static_configs": [{"targets": ["127.0.0.1:9400"]}]}]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([require_binary("promtool"), "check", "config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
