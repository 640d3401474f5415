"""End to end: the generated rules and dashboards against real Prometheus and Alertmanager.

Two replicas of the demo model and the exporter are scraped by a Prometheus that loads the
rules (windows and ``for:`` scaled down by the demo's config, scrape and evaluation every
second) and sends alerts to a real Alertmanager, which posts them to a webhook this test
runs. A second Prometheus receives the first one's raw series by remote_write and evaluates
the recording rules itself, the way a central Thanos or Mimir ruler would.

One traffic baseline, then one incident (an error burst and a feature drift):
- every dashboard variable and panel query parses and returns data, except the few panels
  listed below with the reason;
- the clean baseline raises no alert at all;
- the incident's alerts reach the webhook;
- the recording rules aggregate across the replicas on the receiving Prometheus;
- a model served without a reference (price-estimate) quietly shifts its outputs on a
  signal, and only its adaptive baseline alert, InferwatchPredictionShift, reaches the webhook.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require_binary
from e2e_dashboards import panel_queries, panels, resolve_variables, substitute
from inferwatch.demo.model import MODEL_VERSION
from inferwatch.demo.receiver import PageReceiver
from inferwatch.demo.scenario import MIN_DRIFT_OBSERVATIONS, Phase, rule_config
from inferwatch.demo.stack import (
    Stack,
    alertmanager_config,
    free_port,
    prometheus_config,
    query,
    write_yaml,
)
from inferwatch.demo.traffic import DRIFTED_FEATURES, TrafficGenerator
from inferwatch.generate import write
from inferwatch.generate.config import from_dict
from inferwatch.generate.rules_pushed import BATCH_RUNS_PANEL
from test_stream_dashboards import STREAM_PANELS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SPEED = 6  # rule windows of 10 s, `for:` of 5 s
RATES = {"replica-a": 15.0, "replica-b": 10.0}  # requests per second
DRIFT_WINDOW_SECONDS = 50  # holds more than MIN_DRIFT_OBSERVATIONS rows at either rate
HOST = "127.0.0.1"
CHAMPION = f'model_version="{MODEL_VERSION}"'  # the shadow's calls are not the replica's traffic
GRAFANA_BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "1m"}

# Panels with no data in any run here, and why. Everything else must return data.
NEVER_DATA = {
    ("resources", "GPU up"): "no GPU here; the exporter runs with --no-collector.gpu",
    ("resources", "GPUs"): "no GPU",
    ("resources", "GPU utilization"): "no GPU",
    ("resources", "GPU memory used"): "no GPU",
    ("resources", "GPU memory"): "no GPU",
    ("resources", "GPU temperature"): "no GPU",
    ("resources", "GPU power"): "no GPU",
    ("resources", "GPU memory busy time"): "no GPU",
    ("resources", "GPU energy per 1,000 predictions"): "no GPU",
    ("resources", "inferwatch internal errors"): "the series appears with the first fault "
                                                 "inside inferwatch, and there is none",
    ("resources", "Label values folded by caps"): "no label reaches its cap in the demo",
    ("model-quality", "Regression error"): "the demo model is a classifier",
    ("champion-challenger", "Mean absolute error on shared outcomes"):
        "the demo model is a classifier",
    ("model-overview", BATCH_RUNS_PANEL): "no batch job pushes to a Pushgateway here; "
                                          "test_dashboards_batch_jobs_and_own_thresholds.py "
                                          "runs it against pushed groups",
    **{("model-overview", title): "the demo model does not stream; test_stream_dashboards.py "
                                  "runs these against a streaming model"
       # The cancelled ratio reads 0, not "no data": the series starts at zero with the model.
       for title in STREAM_PANELS if title != "Cancelled streams"},
}
# Panels that a clean baseline leaves empty and the incident fills. (The missing and
# out-of-range expected bands read 0 for every reference feature from the start.)
AFTER_INCIDENT = {
    ("model-overview", "Errors by type"): "no call fails in the baseline",
    ("champion-challenger", "Errors by type and version"): "no call fails in the baseline",
    ("model-quality", "Missing values per row"): "the incident sends null features",
    ("model-quality", "Out-of-range values per row"): "drifted inputs leave the reference range",
    ("model-quality", "Unseen categories"): "drifted requests come from a new channel",
    ("model-quality", "Input errors"): "the incident sends requests missing a column",
    ("slo", "Firing inferwatch alerts"): "the clean baseline fires no alert",
}
# The shadow was retrained on the shifted inputs: on them it disagrees with its champion.
INCIDENT_ALERTS = {"InferwatchErrorBudgetBurnFast", "InferwatchFeatureDrift",
                   "InferwatchShadowAgreementLow"}


@dataclass
class E2E:
    prometheus: str
    central: str
    alertmanager: str
    receiver: PageReceiver
    dashboards: dict[str, dict[str, Any]]
    config: dict[str, Any]
    replicas: dict[str, str]  # name -> model API URL
    metrics: dict[str, str]  # name -> host:port of /metrics
    generators: list[TrafficGenerator]
    threads: list[Any]
    quiet_shift: Any  # the price-estimate process, which shifts on SIGUSR1

    def play(self, phase: Phase) -> None:
        """Replace the running traffic with `phase`, on every replica."""
        import threading

        self.stop_traffic()
        for name, url in self.replicas.items():
            generator = TrafficGenerator(url, [phase], rate=RATES[name], seed=len(name))
            thread = threading.Thread(target=generator.run, daemon=True)
            thread.start()
            self.generators.append(generator)
            self.threads.append(thread)

    def stop_traffic(self) -> None:
        for generator in self.generators:
            generator.stop()
        for thread in self.threads:
            thread.join(20)
        self.generators.clear()
        self.threads.clear()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("e2e")
    config = rule_config(SPEED)
    write(workdir, from_dict(config))
    dashboards = {path.stem: json.loads(path.read_text())
                  for path in (workdir / "dashboards").glob("*.json")}
    stack = Stack(workdir)
    receiver = PageReceiver(HOST, 0, out=lambda line: None)
    e2e = None
    try:
        replicas, metrics, pids = {}, {}, []
        for name in RATES:
            api, port = free_port(HOST), free_port(HOST)
            pids.append(stack.start_model(name, HOST, api, port,
                                          drift_window=DRIFT_WINDOW_SECONDS).pid)
            replicas[name] = f"http://{HOST}:{api}"
            metrics[name] = f"{HOST}:{port}"
        quiet_port = free_port(HOST)
        quiet = stack.start_quiet_shift_model(HOST, quiet_port, speed=SPEED, on_signal=True)
        pids.append(quiet.pid)
        exporter = free_port(HOST)
        stack.start_exporter(HOST, exporter, pids)
        am_port = free_port(HOST)
        stack.start_alertmanager(write_yaml(workdir / "alertmanager.yml", alertmanager_config(
            receiver.url, group_wait="1s", group_interval="2s")), HOST, am_port)
        central_port = free_port(HOST)
        stack.start_prometheus("central", write_yaml(workdir / "central.yml", prometheus_config(
            model_targets=[], exporter_targets=[], alertmanager=None,
            rule_files=[str(workdir / "alerts" / "recording-rules.yml")])),
            HOST, central_port, ["--web.enable-remote-write-receiver"])
        prom_port = free_port(HOST)
        scraping = prometheus_config(
            model_targets=[*metrics.values(), f"{HOST}:{quiet_port}"],
            exporter_targets=[f"{HOST}:{exporter}"],
            alertmanager=f"{HOST}:{am_port}",
            rule_files=[str(workdir / "alerts" / "*.yml")],
            remote_write=f"http://{HOST}:{central_port}/api/v1/write")
        # The exporter reads every serving process each scrape: on two cores shared with the
        # rest of the suite it can take over a second for a few seconds on end, and the
        # scaled-down InferwatchExporterDown (for: 5s) paged the clean baseline. Two seconds
        # to answer is still far under anything a real deployment gives it.
        for job in scraping["scrape_configs"]:
            if job["job_name"] == "inferwatch-exporter":
                job["scrape_interval"] = job["scrape_timeout"] = "2s"
        stack.start_prometheus("prometheus", write_yaml(workdir / "prometheus.yml", scraping),
                               HOST, prom_port)
        e2e = E2E(f"http://{HOST}:{prom_port}", f"http://{HOST}:{central_port}",
                  f"http://{HOST}:{am_port}", receiver, dashboards, config, replicas, metrics,
                  [], [], quiet)
        e2e.play(Phase("baseline", math.inf, "clean traffic"))
        _wait_for_full_windows(e2e)
        yield e2e
    finally:
        if e2e is not None:
            e2e.stop_traffic()
        stack.close()
        receiver.close()


def _wait_for_full_windows(e2e: E2E, timeout: float = 90.0) -> None:
    """Until both drift windows hold enough rows for the drift alerts to be live, every
    rate window is full of baseline traffic, and outcomes have been joined."""
    deadline = time.monotonic() + timeout
    guard = (f"min(inferwatch_drift_window_observations) >= {MIN_DRIFT_OBSERVATIONS} "
             # two replicas, each with the champion and its shadow
             "and on () count(inferwatch_drift_window_observations) == 4 "
             "and on () sum(inferwatch_outcomes_total) >= 100")
    while time.monotonic() < deadline:
        if query(e2e.prometheus, guard):
            time.sleep(3)  # a few more evaluations with every alert expression live
            return
        time.sleep(1)
    pytest.fail(f"baseline never filled the windows: {guard}")


def _evaluate(e2e: E2E) -> dict[tuple[str, str], bool]:
    """(dashboard, panel) -> whether its queries returned data (any of its targets but the
    objective lines, which every model has; those are run too, and must be valid)."""
    has_data: dict[tuple[str, str], bool] = {}
    for name, dashboard in sorted(e2e.dashboards.items()):
        found, values = resolve_variables(dashboard, GRAFANA_BUILTINS,
                                          lambda q: query(e2e.prometheus, q))
        empty = [var for var, vals in found.items() if not vals]
        assert not empty, f"{name}: variables without values: {empty}"
        for panel in panel_queries(name, dashboard):
            result = query(e2e.prometheus, substitute(panel.expr, values))  # raises if invalid
            key = (panel.dashboard, panel.panel)
            has_data[key] = has_data.get(key, False) or (bool(result)
                                                          and not panel.is_objective)
    return has_data


def _firing_and_pending(e2e: E2E) -> list[dict[str, Any]]:
    import urllib.request

    with urllib.request.urlopen(f"{e2e.prometheus}/api/v1/alerts", timeout=5) as response:
        return json.loads(response.read())["data"]["alerts"]


def _layout(dashboard: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(p.get("id"), p.get("type"), len(p.get("targets", []))) for p in panels(dashboard)]


def test_the_test_config_dashboards_have_the_committed_panels(e2e: E2E) -> None:
    """What runs here is what ships: only windows and thresholds differ (titles name them)."""
    assert sorted(e2e.dashboards) == sorted(p.stem for p in (ROOT / "dashboards").glob("*.json"))
    for name, dashboard in e2e.dashboards.items():
        committed = json.loads((ROOT / "dashboards" / f"{name}.json").read_text())
        assert _layout(dashboard) == _layout(committed)


def test_baseline_every_panel_has_data_except_the_listed_ones(e2e: E2E) -> None:
    has_data = _evaluate(e2e)
    listed = set(NEVER_DATA) | set(AFTER_INCIDENT)
    assert listed <= set(has_data), f"listed panels that do not exist: {listed - set(has_data)}"
    assert [k for k, v in has_data.items() if not v and k not in listed] == []
    # The lists stay as short as they can be: a listed panel that has data must leave them.
    assert [k for k in listed if has_data[k]] == []


def test_clean_baseline_raises_no_alert(e2e: E2E) -> None:
    assert _firing_and_pending(e2e) == []
    assert e2e.receiver.received() == []


def test_recording_rules_aggregate_both_replicas_on_the_receiving_prometheus(e2e: E2E) -> None:
    rate = e2e.config["windows"]["rate"]
    # remote_write delivers within a second or two on an idle machine; wait until the
    # receiving side has both replicas rather than trusting that it has by now.
    deadline = time.monotonic() + 60
    while True:
        at = time.time() - 5
        per_replica = {r["metric"]["instance"]: float(r["value"][1]) for r in query(
            e2e.central, f'sum by (instance) (rate(inferwatch_requests_total'
                         f'{{job="inferwatch-model", {CHAMPION}}}[{rate}]))', at)}
        recorded = query(e2e.central, f"model:inferwatch_requests:rate{rate}{{{CHAMPION}}}",
                         at)
        if set(per_replica) == set(e2e.metrics.values()) and recorded:
            break
        assert time.monotonic() < deadline, f"remote_write never delivered: {per_replica}"
        time.sleep(1)
    assert len(recorded) == 1 and "instance" not in recorded[0]["metric"]
    total = float(recorded[0]["value"][1])
    # Both replicas count, and the sum equals what the replicas send (25/s) within jitter.
    assert total == pytest.approx(sum(per_replica.values()), rel=0.15)
    assert total == pytest.approx(sum(RATES.values()), rel=0.2)
    assert total > 1.3 * max(per_replica.values())
    # The same rule on the scraping Prometheus agrees with the central one.
    local = float(query(e2e.prometheus, f"model:inferwatch_requests:rate{rate}{{{CHAMPION}}}",
                        at)[0]["value"][1])
    assert total == pytest.approx(local, rel=0.15)


def test_incident_alerts_reach_the_webhook_and_fill_the_remaining_panels(e2e: E2E) -> None:
    e2e.play(Phase("incident", math.inf, "errors and drift", drift=3.0, error_ratio=0.3,
                   malformed_ratio=0.1))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not e2e.receiver.names() >= INCIDENT_ALERTS:
        time.sleep(1)
    assert e2e.receiver.names() >= INCIDENT_ALERTS, e2e.receiver.received()
    pages = [a for a in e2e.receiver.received()
             if a["labels"]["alertname"] in INCIDENT_ALERTS]
    for page in pages:
        assert page["labels"]["model"] == "breast-cancer"
        assert page["annotations"]["runbook_url"].endswith(
            "#" + page["labels"]["alertname"].lower())
    drifted = {a["labels"]["feature"] for a in pages
               if a["labels"]["alertname"] == "InferwatchFeatureDrift"}
    # Only what the incident shifted drifts: the shifted columns and the request channel.
    assert drifted and drifted <= {*DRIFTED_FEATURES, "channel"}

    has_data = _evaluate(e2e)
    assert [k for k in AFTER_INCIDENT if not has_data[k]] == []


def test_a_quiet_shift_without_a_reference_reaches_the_webhook(e2e: E2E) -> None:
    """price-estimate has no reference profile, so no drift score or fixed threshold watches
    its outputs. Its upstream's unit change raises every estimate by about half while every
    call succeeds; the prediction band learned from its own history catches it."""
    import signal

    from inferwatch.demo.quiet_shift import MODEL_NAME

    assert not query(e2e.prometheus, f'inferwatch_drift_score{{model="{MODEL_NAME}"}}')
    e2e.quiet_shift.popen.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 90

    def shifted() -> list[dict[str, Any]]:
        return [a for a in e2e.receiver.received()
                if a["labels"]["alertname"] == "InferwatchPredictionShift"
                and a["labels"].get("model") == MODEL_NAME and a["status"] == "firing"]

    while time.monotonic() < deadline and not shifted():
        time.sleep(1)
    pages = shifted()
    assert pages, e2e.receiver.received()
    page = pages[0]
    assert page["labels"]["severity"] == "warning"
    assert page["labels"]["output"] and page["labels"]["quantile"] in {"0.5", "0.9"}
    assert "outside its expected band" in page["annotations"]["description"]
    assert page["annotations"]["runbook_url"].endswith("#inferwatchpredictionshift")
    # Nothing else about price-estimate pages: the shift is invisible to every other alert.
    others = {a["labels"]["alertname"] for a in e2e.receiver.received()
              if a["labels"].get("model") == MODEL_NAME}
    assert others == {"InferwatchPredictionShift"}
