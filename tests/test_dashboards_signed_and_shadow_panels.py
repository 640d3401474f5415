"""The generated dashboards with values below zero and with shadow models.

A panel whose values can be negative (a model's outputs, shadow minus champion, an error
budget overspent) has no axis floor at 0, which would cut them off. A shadow challenger's
calls, failures and latency stay out of its model's SLOs and totals, as the alerts leave
them out: checked on the committed dashboards' queries against a real Prometheus scraping
real instrumented models, a challenger failing every call beside a champion that never fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from conftest import require_binary
from e2e_dashboards import panels, substitute
from inferwatch.core.registry import Registry
from inferwatch.demo.stack import Stack, free_port, prometheus_config, query, write_yaml
from inferwatch.generate import dashboards
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.serving.bridge import InferwatchCollector

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# Metric families whose samples are a model's outputs or differences of outputs: any real
# number, so anything drawn from them can be negative. Rates, ratios, counts, latencies,
# bytes and drift scores cannot.
SIGNED_FAMILIES = ("inferwatch_prediction", "inferwatch_prediction_value",
                   "inferwatch_shadow_difference", "inferwatch_baseline_predictions")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{|\[|\s*\))")
# A band's lower edge, expected - k sigma, reaches below zero for any signal.
_LOWER_EDGE = re.compile(r"- [0-9.e+]+ \* [a-z_]+:inferwatch_baseline_\w+:sigma")


def _family(metric: str) -> str:
    """The family a selected series belongs to: a recorded series' metric part, without the
    histogram suffixes."""
    name = metric.split(":")[1] if metric.count(":") == 2 else metric
    for suffix in ("_bucket", "_count", "_sum"):
        name = name.removesuffix(suffix)
    return name


def _can_be_negative(panel: dict[str, Any]) -> bool:
    exprs = [t["expr"] for t in panel.get("targets", [])]
    return any(_family(m) in SIGNED_FAMILIES for e in exprs for m in _METRIC.findall(e)) or \
        any(_LOWER_EDGE.search(e) for e in exprs)


def _floored(panel: dict[str, Any]) -> bool:
    floor = panel.get("fieldConfig", {}).get("defaults", {}).get("min")
    return floor is not None and floor >= 0


def _committed() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards")
                                                              .glob("*.json"))}


def _signed_but_floored(rendered: dict[str, dict[str, Any]]) -> tuple[list[str], int]:
    signed = [(name, p) for name, d in rendered.items() for p in panels(d)
              if p.get("type") == "timeseries" and _can_be_negative(p)]
    return [f"{name}: {p['title']}" for name, p in signed if _floored(p)], len(signed)


def test_committed_panels_of_signed_values_have_no_floor_at_zero() -> None:
    floored, signed = _signed_but_floored(_committed())
    assert floored == []
    # Predictions (histogram and rolling), by version, differences, the predictions band.
    assert signed >= 5


_SIGNALS = ("traffic", "errors", "latency", "batch_size", "predictions", "confidence",
            "classes", "missing", "out_of_range")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enabled=st.lists(st.booleans(), min_size=len(_SIGNALS), max_size=len(_SIGNALS)),
       k=st.sampled_from([1, 2.5, 3, 6]))
def test_any_config_draws_signed_values_without_a_floor(enabled: list[bool], k: float) -> None:
    cfg = from_dict({"baselines": {signal: {"enabled": on, "k": k}
                                   for signal, on in zip(_SIGNALS, enabled, strict=True)}})
    rendered = {name.removesuffix(".json"): d for name, d in dashboards.render(cfg).items()}
    assert _signed_but_floored(rendered)[0] == []


def test_the_default_dashboards_are_the_committed_ones() -> None:
    rendered = {name.removesuffix(".json"): d for name, d in dashboards.render(DEFAULT).items()}
    assert rendered == _committed(), "run `make generate`"


# --- live: a real Prometheus scraping a champion, its failing shadow, and more ------------------


class _Classifier:
    classes_ = np.array(["legit", "fraud"])

    def __init__(self, bias: float) -> None:
        self.bias = bias

    def predict_proba(self, x: Any) -> np.ndarray:
        p = 1 / (1 + np.exp(-(np.asarray(x, float)[:, 0] + self.bias)))
        return np.column_stack([1 - p, p])


class _Broken:
    classes_ = _Classifier.classes_

    def predict_proba(self, x: Any) -> np.ndarray:
        raise RuntimeError("challenger not ready")


class _Regressor:
    """Outputs around -10, and one call in four fails: its error budget is overspent."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, x: Any) -> np.ndarray:
        self.calls += 1
        if self.calls % 4 == 0:
            raise ValueError("bad row")
        return np.asarray(x, float)[:, 0] * 20 - 10


CHAMPION, SHADOW = "1.0", "1.1-rc"
# Grafana's own variables, for a 1 s scrape.
BUILTINS = {"__rate_interval": "10s", "__interval": "2s", "__range": "1m"}
READY = " and on () ".join([
    # Every version has calls in the rules' windows and the shadow has failed some.
    "count(model:inferwatch_requests:error_ratio_rate5m) >= 5",
    f'sum(rate(inferwatch_requests_total{{model="fraud", model_version="{SHADOW}", '
    f'outcome="error"}}[10s])) > 0',
    'sum(rate(inferwatch_requests_total{model="fraud", model_version="1.0"}[10s])) > 0',
    "sum(rate(inferwatch_shadow_difference_bucket[10s])) > 0",
    "sum(rate(inferwatch_process_cpu_seconds_total[10s])) > 0",
    "count(model:inferwatch_objective:slo_availability) >= 3",
])


def _traffic(models: dict[str, Any], stop: threading.Event) -> None:
    rng = np.random.default_rng(0)
    while not stop.is_set():
        for name, model in models.items():
            x = rng.normal(size=(4, 2))
            try:
                model.predict(x) if name == "eta" else model.predict_proba(x)
            except ValueError:
                pass
        stop.wait(0.01)


# Queries read the data as it stood this long ago: every scrape (each second) and rule
# evaluation up to then is in, so two queries at the same time see the same samples. At
# time.time() itself a scrape landing between two queries changed the second's answer.
SETTLED_SECONDS = 5.0


def _settled() -> float:
    return time.time() - SETTLED_SECONDS


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Prometheus with the generated rules, scraping the models and an exporter
    watching this process, once every model has data in every window the panels read."""
    require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("shadow-slo")
    registry = Registry()
    fraud = inferwatch.instrument(_Classifier(0.0), name="fraud", version=CHAMPION,
                                  registry=registry)
    inferwatch.shadow(fraud, _Broken(), version=SHADOW, sample=1.0, registry=registry)
    churn = inferwatch.instrument(_Classifier(0.0), name="churn", version="1",
                                  registry=registry)
    inferwatch.shadow(churn, _Classifier(1.0), version="2-rc", sample=1.0, registry=registry)
    eta = inferwatch.instrument(_Regressor(), name="eta", version="3", task="regression",
                                registry=registry)
    exposed = CollectorRegistry()
    exposed.register(InferwatchCollector(registry))
    metrics_port = free_port(HOST)
    server = inferwatch.serve(port=metrics_port, addr=HOST, registry=exposed)
    stop = threading.Event()
    thread = threading.Thread(target=_traffic, args=({"fraud": fraud, "churn": churn,
                                                      "eta": eta}, stop), daemon=True)
    thread.start()
    stack = Stack(workdir)
    try:
        exporter = f"{HOST}:{free_port(HOST)}"
        stack.start_exporter(HOST, int(exporter.rsplit(":", 1)[1]), [os.getpid()])
        port = free_port(HOST)
        stack.start_prometheus("prometheus", write_yaml(workdir / "prometheus.yml",
            prometheus_config(model_targets=[f"{HOST}:{metrics_port}"],
                              exporter_targets=[exporter], alertmanager=None,
                              rule_files=[str(ROOT / "alerts" / "*.yml")])), HOST, port)
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 120
        while not query(url, READY, at=_settled()):
            assert time.monotonic() < deadline, f"no data in Prometheus: {READY}"
            time.sleep(0.5)
        yield url
    finally:
        stop.set()
        thread.join(10)
        stack.close()
        server.shutdown()
        registry.close()


def _values(model: str = ".*", version: str = ".*") -> dict[str, str]:
    return {**BUILTINS, "job": ".*", "instance": ".*", "exporter_instance": ".*",
            "model": model, "model_version": version, "output": "fraud"}


def _run(url: str, expr: str, values: dict[str, str], at: float) -> dict[str, float]:
    """Each series of a query's result by its labels (as sorted text), with its value."""
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
            for r in query(url, substitute(expr, values), at=at, timeout=20)}


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12)
        or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def _model_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for t in panel.get("targets", []):
            if "inferwatch_" in t.get("expr", ""):
                yield panel["title"], t["expr"]


@pytest.mark.integration
def test_model_level_signals_leave_the_shadow_out(live: str) -> None:
    """With Version on All, every model-level query (its result has no model_version) of the
    overview, quality, SLO and resources dashboards gives what it gives for the champion
    alone: the shadow failing every call adds nothing to the model's calls or errors."""
    at, checked = _settled(), []
    for name in ("model-overview", "model-quality", "slo", "resources"):
        for title, expr in _model_queries(_committed()[name]):
            every = _run(live, expr, _values("fraud"), at)
            if any("model_version" in json.loads(labels) for labels in every):
                continue
            champion = _run(live, expr, _values("fraud", "1\\\\.0"), at)
            assert _same(every, champion), f"{name}: {title}: {every} != {champion}"
            if every:
                checked.append(title)
    for title in ("Availability over 30d", "Error budget remaining (30d)", "Calls / s",
                  "Error ratio", "Calls within 0.5s over 30d", "In flight", "Latency distribution",
                  "CPU seconds per 1,000 predictions", "Class mix"):
        assert title in checked, title


def _panel_values(url: str, dashboard: str, title: str, at: float) -> list[float]:
    panel = next(p for p in panels(_committed()[dashboard]) if p.get("title") == title)
    return [v for t in panel["targets"]
            for v in _run(url, t["expr"], _values("fraud"), at).values()]


@pytest.mark.integration
def test_no_user_call_failed_so_the_slo_is_met(live: str) -> None:
    at = _settled()
    assert _panel_values(live, "slo", "Availability over 30d", at) == [1.0]
    assert _panel_values(live, "slo", "Error budget remaining (30d)", at) == [1.0]
    assert _panel_values(live, "model-overview", "Error ratio", at) == [0.0]


@pytest.mark.integration
def test_slo_panels_show_only_the_versions_the_alerts_judge(live: str) -> None:
    """The burn rates and the p99 latency of the SLO dashboard, per version, never draw the
    shadow, as the burn-rate and latency alerts never judge it."""
    at = _settled()
    for title, expr in _model_queries(_committed()["slo"]):
        versions = {json.loads(labels).get("model_version")
                    for labels in _run(live, expr, _values(), at)}
        assert SHADOW not in versions and "2-rc" not in versions, title
    burn = _panel_values(live, "slo", "Fast burn rate (1h / 5m)", at)
    assert burn and all(v == 0 for v in burn)


@pytest.mark.integration
def test_versions_serving_says_which_version_is_a_shadow(live: str) -> None:
    at = _settled()
    panel = next(p for p in panels(_committed()["model-overview"])
                 if p.get("title") == "Versions serving")
    rows = {json.loads(labels)["model_version"]: json.loads(labels).get("role")
            for labels in _run(live, panel["targets"][0]["expr"], _values("fraud"), at)}
    assert rows == {CHAMPION: "primary", SHADOW: "shadow"}
    replicas = next(p for p in panels(_committed()["model-overview"])
                    if p.get("title") == "Replicas per version")
    legends = {t["legendFormat"].replace("{{model}}", "fraud").replace(
        "{{model_version}}", json.loads(labels)["model_version"])
        for t in replicas["targets"]
        for labels in _run(live, t["expr"], _values("fraud"), at)}
    assert legends == {f"fraud {CHAMPION}", f"fraud {SHADOW} (shadow)"}


@pytest.mark.integration
def test_every_panel_with_a_value_below_zero_has_no_floor(live: str) -> None:
    """Negative predictions, differences and an overspent error budget, as Prometheus
    returns them: no time series panel that shows one cuts it off at 0."""
    at, negative = _settled(), set()
    for name, dashboard in _committed().items():
        for panel in panels(dashboard):
            if panel.get("type") != "timeseries":
                continue
            for t in panel["targets"]:
                if any(v < 0 for v in _run(live, t["expr"], _values(), at).values()):
                    negative.add(f"{name}: {panel['title']}")
                    assert not _floored(panel), f"{name}: {panel['title']}"
    assert {"model-quality: Prediction quantiles",
            "champion-challenger: Difference quantiles (shadow - champion)",
            "slo: Error budget remaining (30d)"} <= negative


@pytest.mark.integration
def test_overview_draws_no_shadow_version_as_if_it_served(live: str) -> None:
    """The overview's panels by version leave a shadow version out (the Champion vs
    challenger dashboard draws it beside its champion), except where it is marked as one:
    the Versions serving table's role and the (shadow) line of Replicas per version."""
    at, drawn = _settled(), set()
    for panel in panels(_committed()["model-overview"]):
        marked = panel.get("title") == "Versions serving"
        for t in panel.get("targets", []):
            if "inferwatch_" not in t.get("expr", "") or "(shadow)" in t.get("legendFormat", ""):
                continue
            for labels in _run(live, t["expr"], _values(), at):
                version = json.loads(labels).get("model_version")
                drawn.add(version)
                if version in (SHADOW, "2-rc"):
                    assert marked and json.loads(labels).get("role") == "shadow", (
                        f"{panel['title']}: {labels}")
    assert CHAMPION in drawn and "3" in drawn
