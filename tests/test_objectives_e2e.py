"""Per-model objectives, live: two models, one config, a real Prometheus and Alertmanager.

``scorer`` answers in 0.1 s against its own 50 ms objective; ``ranker`` answers in 0.7 s
against its own 2 s. The default (0.5 s) would page for the ranker and not for the scorer;
with the overrides only the scorer, which breaks its own objective, pages.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from conftest import require_binary
from inferwatch.demo.receiver import PageReceiver
from inferwatch.demo.stack import (
    Stack,
    alertmanager_config,
    free_port,
    prometheus_config,
    query,
    write_yaml,
)
from inferwatch.generate import write
from inferwatch.generate.config import from_dict

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
APP = Path(__file__).resolve().parent / "apps" / "two_models.py"
CONFIG = {
    "windows": {"rate": "10s"},
    "latency": {"p99_seconds": 0.5},
    "alerts": {"InferwatchLatencyHigh": {"for": "2s"}},
    "models": {"scorer": {"latency": {"p99_seconds": 0.05}},
               "ranker": {"latency": {"p99_seconds": 2}}},
}


def test_only_the_model_that_breaks_its_own_objective_pages(tmp_path: Path) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    write(tmp_path, from_dict(CONFIG), rules_only=True)
    with Stack(tmp_path) as stack, PageReceiver(HOST, 0, out=lambda line: None) as receiver:
        metrics = free_port(HOST)
        app = stack.start("two-models", [sys.executable, str(APP), str(metrics)])
        stack.wait_ready(app, f"http://{HOST}:{metrics}/metrics")
        am_port = free_port(HOST)
        stack.start_alertmanager(write_yaml(tmp_path / "alertmanager.yml", alertmanager_config(
            receiver.url, group_wait="1s", group_interval="2s")), HOST, am_port)
        prom_port = free_port(HOST)
        stack.start_prometheus("prometheus", write_yaml(tmp_path / "prometheus.yml",
            prometheus_config(model_targets=[f"{HOST}:{metrics}"], exporter_targets=[],
                              alertmanager=f"{HOST}:{am_port}",
                              rule_files=[str(tmp_path / "alerts" / "*.yml")])),
            HOST, prom_port)
        prometheus = f"http://{HOST}:{prom_port}"
        # The objectives group runs once a minute, so its first evaluation may take that long.
        deadline = time.monotonic() + 150
        while "InferwatchLatencyHigh" not in receiver.names() and time.monotonic() < deadline:
            time.sleep(1)
        paged = {a["labels"].get("model") for a in receiver.received()
                 if a["labels"].get("alertname") == "InferwatchLatencyHigh"}
        assert paged == {"scorer"}, receiver.received()
        # Both models were judged by their own objectives, against the same kind of series.
        objectives = {r["metric"]["model"]: float(r["value"][1]) for r in query(
            prometheus, "model:inferwatch_objective:latency_p99_seconds")}
        assert objectives == {"scorer": 0.05, "ranker": 2.0}
        p99 = {r["metric"]["model"]: float(r["value"][1]) for r in query(
            prometheus, "model:inferwatch_request_duration_seconds:p99_10s")}
        assert p99["ranker"] > CONFIG["latency"]["p99_seconds"] > p99["scorer"] > 0.05, p99
        # ...and the ranker, above the default but below its own objective, never fired.
        pending = query(prometheus, 'ALERTS{alertname="InferwatchLatencyHigh"}')
        assert {r["metric"]["model"] for r in pending} == {"scorer"}
