"""Rule evaluation on a real Prometheus: 100 models with their own objectives vs the defaults.

One synthetic target exposes the series of 100 models (latency histograms, calls by outcome,
outcomes, drift and data-quality series for 5 features, model info). Two Prometheus servers
scrape it at the same time, one with the default rules, one with rules where every model has
its own latency, accuracy, availability and drift objectives and ten regex groups also have
their own `for`, accuracy window and burn factor. Both evaluate every second. The table
reports the CPU each Prometheus spends (its own `process_cpu_seconds_total`, the scrape and
storage included, so the ratio is what a user pays), the time one evaluation of all rule
groups takes (`evaluationTime` summed over the groups: the fastest round, since on a shared
machine a round's wall time is mostly how long it waited for a core), and the rule counts:
the objectives must not multiply the alert rules by the number of models.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from benchmarks.common import Row, fmt_seconds
from inferwatch.generate import render, rule_files
from inferwatch.generate.config import Config, from_dict

MODELS = 100
FEATURES = 5
GROUPS = 10
# One more recording rule term per model and one alert copy per reshaping group cost some
# evaluation time; more than this over the defaults means the joins are not cheap.
CPU_RATIO_TARGET = 2.0
# Rule copies may grow with the reshaping groups, never with the models: a group copies the
# alerts that read what it changes, four (the accuracy window is read by
# InferwatchAccuracyDrop and InferwatchRegressionErrorRise, the fast burn factor by
# InferwatchErrorBudgetBurnFast, and InferwatchLatencyHigh has its own `for`).
ALERTS_PER_GROUP = 4
ALERT_RULES_TARGET = f"defaults + {ALERTS_PER_GROUP} per group"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def override_config(models: int = MODELS, groups: int = GROUPS) -> Config:
    """Every model with its own objectives; `groups` regexes also change three settings,
    which four alerts read (:data:`ALERTS_PER_GROUP`)."""
    entries: dict[str, Any] = {}
    for i in range(models):
        entries[f"model-{i:03d}"] = {
            "latency": {"p99_seconds": round(0.05 + 0.01 * i, 3)},
            "accuracy": {"min_ratio": round(0.6 + 0.003 * i, 3)},
            "slo": {"availability": 0.995},
            "drift": {"feature_threshold": 0.3},
        }
    for g in range(groups):
        entries[f"batch-{g}-.*"] = {
            "accuracy": {"window": "2h"},
            "slo": {"fast_burn": {"factor": 10}},
            "alerts": {"InferwatchLatencyHigh": {"for": "30m"}},
        }
    return from_dict({"models": entries})


def _registry(models: int) -> tuple[CollectorRegistry, Any]:
    registry = CollectorRegistry()
    base = ["model", "model_version"]
    requests = Counter("inferwatch_requests", "Calls.", [*base, "outcome"], registry=registry)
    latency = Histogram("inferwatch_request_duration_seconds", "Latency.", base,
                        registry=registry)
    outcomes = Counter("inferwatch_outcomes", "Outcomes.", [*base, "result"], registry=registry)
    rows = Counter("inferwatch_batch_size_sum", "Rows.", base, registry=registry)
    missing = Counter("inferwatch_feature_missing", "Missing.", [*base, "feature"],
                      registry=registry)
    drift = Gauge("inferwatch_feature_drift", "Drift.", [*base, "feature", "method"],
                  registry=registry)
    observations = Gauge("inferwatch_drift_window_observations", "Rows.", base,
                         registry=registry)
    info = Gauge("inferwatch_model_info", "Info.", base, registry=registry)
    names = [f"model-{i:03d}" for i in range(models)]
    for name in names:
        info.labels(name, "1").set(1)
        observations.labels(name, "1").set(5000)
        for f in range(FEATURES):
            drift.labels(name, "1", f"f{f}", "psi").set(0.1)

    def tick() -> None:
        for i, name in enumerate(names):
            requests.labels(name, "1", "ok").inc(100)
            requests.labels(name, "1", "error").inc(i % 3)
            latency.labels(name, "1").observe(0.01 * (i % 50))
            outcomes.labels(name, "1", "correct").inc(8)
            outcomes.labels(name, "1", "wrong").inc(2)
            rows.labels(name, "1").inc(100)
            for f in range(FEATURES):
                missing.labels(name, "1", f"f{f}").inc(i % 2)

    return registry, tick


@contextmanager
def _prometheus(directory: Path, target: str, files: dict[str, str],
                flags: tuple[str, ...] = ()) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("bench_rules needs the prometheus binary")
    rules = [str(directory / Path(p).name) for p in files]
    for path, text in files.items():
        (directory / Path(path).name).write_text(text)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": rules,
              "scrape_configs": [{"job_name": "inferwatch-model",
                                  "static_configs": [{"targets": [target]}]}]}
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         *flags],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"prometheus did not start: {directory / 'prometheus.log'}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _groups(url: str) -> list[dict[str, Any]]:
    import json

    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as response:
        return json.load(response)["data"]["groups"]


def _cpu_seconds(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("process_cpu_seconds_total "):
                return float(line.split()[1])
    raise RuntimeError("prometheus exposes no process_cpu_seconds_total")


def _round_seconds(url: str) -> tuple[float, str]:
    """Seconds the latest evaluation of every group took together, and when each ran."""
    groups = _groups(url)
    return (sum(g["evaluationTime"] for g in groups),
            "".join(g.get("lastEvaluation", "") for g in groups))


def _rule_counts(files: dict[str, str]) -> tuple[int, int]:
    alerts = recording = 0
    for text in files.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts += 1
                else:
                    recording += 1
    return alerts, recording


def run(quick: bool = False) -> list[Row]:
    samples = 8 if quick else 40
    registry, tick = _registry(MODELS)
    port = _free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.5):
            tick()

    threading.Thread(target=traffic, daemon=True).start()
    defaults = rule_files(render(from_dict({})))
    overrides = rule_files(render(override_config()))
    rows = []
    try:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
                _prometheus(Path(a), f"127.0.0.1:{port}", defaults) as base_url, \
                _prometheus(Path(b), f"127.0.0.1:{port}", overrides) as own_url:
            # Rates need a few scrapes before the expressions touch real series.
            time.sleep(5 if quick else 15)
            measured: dict[str, list[float]] = {base_url: [], own_url: []}
            seen: dict[str, str] = {}
            cpu = {url: _cpu_seconds(url) for url in measured}
            while min(len(v) for v in measured.values()) < samples:
                for url, values in measured.items():
                    seconds, stamp = _round_seconds(url)
                    if stamp != seen.get(url):
                        seen[url] = stamp
                        values.append(seconds)
                time.sleep(0.3)
            cpu = {url: _cpu_seconds(url) - start for url, start in cpu.items()}
            own, base = min(measured[own_url]), min(measured[base_url])
            medians = (statistics.median(measured[own_url]),
                       statistics.median(measured[base_url]))
            series = sum(1 for g in _groups(own_url) for r in g["rules"]
                         if r["name"].startswith("model:inferwatch_objective:"))
    finally:
        stop.set()
        server.shutdown()
    base_alerts, base_recording = _rule_counts(defaults)
    own_alerts, own_recording = _rule_counts(overrides)
    cpu_ratio = cpu[own_url] / cpu[base_url]
    rows.append(Row(f"Prometheus CPU over {samples} rounds, {MODELS} models with own "
                    f"objectives", fmt_seconds(cpu[own_url]),
                    fmt_seconds(cpu[base_url]) + " (defaults)", cpu_ratio,
                    f"<= {CPU_RATIO_TARGET}x", cpu_ratio <= CPU_RATIO_TARGET))
    rows.append(Row(f"one evaluation of all rules, fastest round (medians "
                    f"{fmt_seconds(medians[0])} vs {fmt_seconds(medians[1])})",
                    fmt_seconds(own), fmt_seconds(base) + " (defaults)", own / base,
                    "reported", True))
    rows.append(Row(f"alert rules ({own_recording} vs {base_recording} recording, "
                    f"{series} objective rules)", str(own_alerts), str(base_alerts),
                    own_alerts / base_alerts, ALERT_RULES_TARGET,
                    own_alerts <= base_alerts + ALERTS_PER_GROUP * GROUPS))
    return rows
