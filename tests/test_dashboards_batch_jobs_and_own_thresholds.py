"""Dashboards that show what the alerts linking to them judge.

- InferwatchBatchRunFailed and InferwatchPushgatewayGroupStale open the overview's panel of
  the pushed groups, whose queries a real Prometheus evaluates here on groups that real batch
  jobs pushed to a real Pushgateway: the same groups, counts and verdicts as the alerts.
- The Champion vs challenger drift panels draw each model's own drift thresholds.
- The Accuracy panel says a model's own minimum of outcomes exists where one does.
- The expected-band panels say when the band is drawn and when the alert may fire, from the
  settings, as promtool shows the band appear.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

import inferwatch
from e2e_dashboards import panels, regex_of
from inferwatch.core.registry import Registry
from inferwatch.generate import dashboards, rules
from inferwatch.generate.config import DEFAULT, Config, from_dict
from inferwatch.generate.rules_alerts import BATCH_RUNS_PANEL
from processes import Prometheus, prometheus
from promtool_cases import assert_promtool_passes, write_generated_rules
from test_dashboard_schema import schema_errors
from test_generated_rules_and_panels import _selected
from test_pushgateway import Gateway, gateway  # noqa: F401 (the fixture)

OVERVIEW, QUALITY = "model-overview.json", "model-quality.json"
SHADOW = "champion-challenger.json"
BATCH_ALERTS = ("InferwatchBatchRunFailed", "InferwatchPushgatewayGroupStale")
MODEL_JOB = 'job="inferwatch-model"'


def _panel(cfg: Config, file: str, title: str) -> dict[str, Any]:
    dashboard = dashboards.render(cfg)[file]
    assert schema_errors(dashboard) == []
    found = [p for p in panels(dashboard) if p.get("title") == title]
    assert len(found) == 1, [p.get("title") for p in panels(dashboard)]
    return found[0]


# --- 1. the batch alerts' panel ----------------------------------------------------------------


@pytest.mark.parametrize("config", [
    {},
    # Fewer band panels above it: the panel's id moves, the links follow.
    {"baselines": {"traffic": {"enabled": False}, "latency": {"enabled": False}}},
    # Copies of InferwatchBatchRunFailed for models of their own link to the same panel.
    {"models": {"fraud": {"slo": {"availability": 0.99,
                                  "fast_burn": {"long_window": "2h"}}}},
     "links": {"grafana_url": "https://grafana.example/"},
     "dashboards": {"uid_prefix": "ml"}},
])
def test_both_batch_alerts_open_the_panel_of_the_pushed_groups(config: dict[str, Any]
                                                               ) -> None:
    cfg = from_dict(config)
    panel = _panel(cfg, OVERVIEW, BATCH_RUNS_PANEL)
    base = cfg.links.grafana_url.rstrip("/")
    expected = f"{base}/d/{cfg.dashboards.uid_prefix}-overview?viewPanel={panel['id']}"
    links = {(rule["alert"], rule["annotations"]["dashboard_url"])
             for group in rules.alerting_groups(cfg) for rule in group["rules"]
             if rule["alert"] in BATCH_ALERTS}
    assert links == {(alert, expected) for alert in BATCH_ALERTS}


def test_the_batch_panel_reads_the_pushed_groups_not_the_scraped_services() -> None:
    cfg = from_dict({"pushgateway": {"selector": 'job=~"batch-.+"'}})
    exprs = [t["expr"] for t in _panel(cfg, OVERVIEW, BATCH_RUNS_PANEL)["targets"]]
    assert len(exprs) == 9
    for expr in exprs:
        assert 'job=~"batch-.+"' in expr
        assert MODEL_JOB not in expr
        # Narrowed by the Model variable alone: a batch job is no scrape job or instance.
        assert set(re.findall(r"\$\w+", expr)) == {"$model"}, expr


def _score(row: float) -> float:
    if row < 0:
        raise ValueError("negative amount")
    return 0.5


def _run(address: str, job: str, model: str, calls: int, failing: int) -> None:
    """One run of batch job `job` in a fresh registry, as a fresh process counts it."""
    registry = Registry(drain_interval=3600)
    try:
        scored = inferwatch.instrument(_score, name=model, version="3", registry=registry)
        with inferwatch.push.on_exit(address, job=job, registry=registry):
            for i in range(calls):
                with contextlib.suppress(ValueError):  # a row the job skips
                    scored(-1.0 if i < failing else 1.0)
    finally:
        registry.close()


def _table(server: Prometheus, panel: dict[str, Any], model: str) -> dict[tuple[str, str],
                                                                          dict[str, float]]:
    """The panel's rows as Grafana joins them: each query's value by its (job, model), under
    the column name the panel gives it."""
    names = next(t["options"]["renameByName"] for t in panel["transformations"]
                 if t["id"] == "organize")
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for query in panel["targets"]:
        assert query["instant"] and query["format"] == "table"
        column = names[f"Value #{query['refId']}"]
        for sample in server.query(_selected(query["expr"], model=model)):
            key = (sample["metric"]["job"], sample["metric"]["model"])
            rows.setdefault(key, {})[column] = float(sample["value"][1])
    return rows


def _alerting(server: Prometheus, cfg: Config, alert: str) -> set[tuple[str, str]]:
    """The groups an alert's condition holds for now."""
    exprs = [rule["expr"] for group in rules.alerting_groups(cfg) for rule in group["rules"]
             if rule["alert"] == alert]
    return {(s["metric"]["job"], s["metric"]["model"])
            for expr in exprs for s in server.query(expr)}


@pytest.mark.integration
def test_the_batch_panel_shows_each_pushed_run_as_the_alerts_judge_it(
        tmp_path: Path, gateway: Gateway) -> None:  # noqa: F811
    # nightly runs once a day and more; every other job is expected within a second, so the
    # hourly group is overdue as soon as a second has passed.
    cfg = from_dict({"pushgateway": {"max_age": "1s", "jobs": {"nightly": "26h"}},
                     "models": {"fraud": {"slo": {"availability": 0.99}}}})
    panel = _panel(cfg, OVERVIEW, BATCH_RUNS_PANEL)
    # fraud: 0.3% errors within its own 1% budget; churn: 40% against the default 0.1%.
    _run(gateway.address, "nightly", "fraud", calls=1000, failing=3)
    _run(gateway.address, "hourly", "churn", calls=5, failing=2)
    with prometheus(tmp_path, [gateway.address], job_name="pushgateway",
                    honor_labels=True) as server:
        for job in ("nightly", "hourly"):
            server.wait_for(f'inferwatch_requests_total{{job="{job}"}}')
        server.wait_for('time() - push_time_seconds{job="hourly"} > 1')
        rows = _table(server, panel, model=".*")
        assert set(rows) == {("nightly", "fraud"), ("hourly", "churn")}
        fraud, churn = rows["nightly", "fraud"], rows["hourly", "churn"]
        assert 0 <= fraud.pop("last push ago") < 600
        assert churn.pop("last push ago") > 1
        assert fraud == pytest.approx({
            "expected within": 26 * 3600, "overdue": 0, "calls": 1000, "errors": 3,
            "cancelled": 0, "error ratio": 0.003, "error budget": 0.01, "failed": 0})
        assert churn == pytest.approx({
            "expected within": 1, "overdue": 1, "calls": 5, "errors": 2, "cancelled": 0,
            "error ratio": 0.4, "error budget": 0.001, "failed": 1})
        # The verdicts are the alerts' conditions, on the same groups.
        assert _alerting(server, cfg, "InferwatchBatchRunFailed") == {
            key for key, row in rows.items() if row["failed"] == 1} == {("hourly", "churn")}
        assert _alerting(server, cfg, "InferwatchPushgatewayGroupStale") == {
            key for key, row in rows.items() if row["overdue"] == 1}
        # One model selected, as Grafana writes a multi-value variable's selection.
        assert set(_table(server, panel, model=regex_of(["fraud"]))) == {("nightly", "fraud")}


# --- 2. the Champion vs challenger drift panels draw each model's own threshold ---------------


def _series(name: str, model: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{MODEL_JOB}, instance="a:9", model="{model}", '
                      f'model_version="1"{extra}}}', "values": "1x20"}


@pytest.mark.parametrize(("title", "key"), [
    ("Prediction drift by version (psi)", "prediction_threshold"),
    ("Worst feature drift by version (psi)", "feature_threshold"),
])
def test_shadow_drift_panels_draw_each_models_own_threshold(tmp_path: Path, title: str,
                                                            key: str) -> None:
    cfg = from_dict({"models": {"fraud": {"drift": {"feature_threshold": 0.1,
                                                    "prediction_threshold": 0.5}}}})
    objectives = [t for t in _panel(cfg, SHADOW, title)["targets"]
                  if t["legendFormat"].startswith("objective ")]
    assert len(objectives) == 1
    own = {"prediction_threshold": 0.5, "feature_threshold": 0.1}[key]
    series = [_series("inferwatch_model_info", model) for model in ("fraud", "ads")]
    assert_promtool_passes(tmp_path, series, rule_files=write_generated_rules(cfg, tmp_path),
                           exprs=[{"expr": _selected(objectives[0]["expr"]), "eval_time": "10m",
                                   "exp_samples": [
                                       {"labels": '{model="fraud"}', "value": own},
                                       {"labels": '{model="ads"}', "value": 0.2}]}])


# --- 3. the Accuracy panel's minimum of outcomes ----------------------------------------------


def _accuracy_description(cfg: Config) -> str:
    [panel] = [p for p in panels(dashboards.render(cfg)[QUALITY])
               if p["title"].startswith("Accuracy (")]
    return panel["description"]


def test_the_accuracy_panel_says_a_model_has_its_own_minimum_of_outcomes() -> None:
    assert "; the alert needs 100 outcomes. " in _accuracy_description(DEFAULT)
    own = _accuracy_description(from_dict({"models": {"fraud": {"accuracy": {
        "min_outcomes": 5}}}}))
    assert ("the alert needs 100 outcomes by default; a models: entry's own minimum for its "
            "models. ") in own
    declared = _accuracy_description(from_dict({"objectives": {"from_code": True}}))
    assert "or what a version declares in code" in declared


# --- 4. when an expected band is drawn -------------------------------------------------------


def _band_descriptions(cfg: Config) -> list[str]:
    rendered = dashboards.render(cfg)
    return [p["description"] for file in (OVERVIEW, QUALITY) for p in panels(rendered[file])
            if "expected band" in p.get("title", "")]


def test_each_band_panel_says_when_its_band_and_its_alert_start() -> None:
    default = _band_descriptions(DEFAULT)
    assert len(default) == 9
    for description in default:
        assert "a day of history" not in description
        assert re.search(r"The band is drawn once the value has 6h of history "
                         r"\(baselines\.\w+\.baseline_offset 3h, then min_coverage 0\.125 of "
                         r"its 1d baseline_window\); Inferwatch\w+ may fire once it has 1d "
                         r"\(baselines\.\w+\.min_history\)\.", description), description
    changed = from_dict({"baselines": {
        "traffic": {"baseline_offset": "40m", "min_history": "2d"},
        "errors": {"baseline_offset": "0s", "min_history": "0s", "min_coverage": 0},
        "latency": {"baseline_offset": "0s", "min_coverage": 0.5, "baseline_window": "2h"},
        "batch_size": {"min_coverage": 0}}})
    traffic, errors, latency, batch = (
        _panel(changed, OVERVIEW, f"{title} and expected band: $model")
        for title in ("Calls per second", "Error ratio", "Latency p99", "Mean batch size"))
    assert ("The band is drawn once the value has 3h40m of history "
            "(baselines.traffic.baseline_offset 40m, then min_coverage 0.125 of its 1d "
            "baseline_window); InferwatchTrafficAnomaly may fire once it has 2d "
            "(baselines.traffic.min_history).") in traffic["description"]
    assert ("The band is drawn from the value's first sample (baselines.errors.baseline_offset "
            "0, min_coverage 0); InferwatchErrorRatioAnomaly may fire from the start "
            "(baselines.errors.min_history 0).") in errors["description"]
    assert ("The band is drawn once the value has 1h of history (min_coverage 0.5 of its 2h "
            "baseline_window)") in latency["description"]
    assert ("The band is drawn once the value has 3h of history "
            "(baselines.batch_size.baseline_offset 3h);") in batch["description"]


def test_the_band_is_drawn_after_baseline_offset_and_min_coverage_not_a_day(
        tmp_path: Path) -> None:
    """What the sentence says, as Prometheus evaluates the panel: with baseline_offset 40m
    and min_coverage 0.25 of a 2h baseline window (30 values at 1m), the band is there
    1h10m after the model started, and not at 65m."""
    cfg = from_dict({"baselines": {"evaluation_interval": "1m", "traffic": {
        "baseline_offset": "40m", "baseline_window": "2h", "min_coverage": 0.25}}})
    band = _panel(cfg, OVERVIEW, "Calls per second and expected band: $model")
    assert "drawn once the value has 1h10m of history" in band["description"]
    lower = next(t["expr"] for t in band["targets"] if t["legendFormat"] == "expected low")
    calls = {"series": f'inferwatch_requests_total{{{MODEL_JOB}, instance="a:9", '
                       f'model="fraud", model_version="1", outcome="ok"}}',
             "values": "0+600x80"}
    check = {"expr": f"count({_selected(lower)})"}
    assert_promtool_passes(
        tmp_path, [calls, _series("inferwatch_model_info", "fraud") | {"values": "1x80"}],
        rule_files=write_generated_rules(cfg, tmp_path),
        exprs=[check | {"eval_time": "65m", "exp_samples": []},
               check | {"eval_time": "75m", "exp_samples": [{"labels": "{}", "value": 1}]}])
