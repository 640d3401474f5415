"""The generated files: committed copies are fresh, every config value reaches the output,
the dashboards use the current Grafana schema, and every alert has its runbook."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferwatch.catalogue import CATALOGUE
from inferwatch.generate import render
from inferwatch.generate.baselines import SIGNALS, helper_rules
from inferwatch.generate.config import DEFAULT, Config, from_dict
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import (
    BASELINE_OBJECTIVE_KEYS,
    OBJECTIVE_KEYS,
    RULE_KEYS,
    leaves,
)
from inferwatch.generate.promql import number
from inferwatch.generate.rules import (
    alerting_groups,
    baseline_alerting_groups,
    baseline_recording_groups,
    recording_groups,
)
from inferwatch.generate.rules_alerts import ALERTS
from inferwatch.generate.rules_links import anchor

ROOT = Path(__file__).resolve().parents[1]
GENERATED_GLOBS = ("dashboards/*.json", "alerts/*.yml", "alerts/kubernetes/*.yaml")
RULE_FILES = ("alerts/recording-rules.yml", "alerts/alerting-rules.yml",
              "alerts/baseline-recording-rules.yml", "alerts/baseline-alerting-rules.yml")


def all_alert_rules(cfg: Config) -> list[dict[str, Any]]:
    """Every alert rule, the adaptive-baseline ones included."""
    return [r for g in alerting_groups(cfg) + baseline_alerting_groups(cfg) for r in g["rules"]]
CURRENT_PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "heatmap", "state-timeline",
                       "row"}
VARIABLES = {"datasource", "job", "instance", "model", "model_version"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render(DEFAULT)


@pytest.fixture(scope="module")
def dashboards(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {path: json.loads(text) for path, text in files.items() if path.endswith(".json")}


# --- committed output -------------------------------------------------------------------------


def test_committed_files_equal_a_fresh_render_of_the_defaults(files: dict[str, str]) -> None:
    committed = {str(p.relative_to(ROOT)) for pattern in GENERATED_GLOBS
                 for p in ROOT.glob(pattern)}
    assert committed == set(files), "run `make generate`: generated files were added or removed"
    stale = [path for path, text in files.items()
             if (ROOT / path).read_text(encoding="utf-8") != text]
    assert not stale, f"run `make generate`: stale {stale}"


def test_rendering_is_deterministic(files: dict[str, str]) -> None:
    assert render(from_dict({})) == files
    for path, text in files.items():
        if path.endswith(".json"):
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


# --- sentinel: every config value shows up in the output --------------------------------------

SENTINELS: dict[str, Any] = {
    "selectors.model": 'job="sentinel-model-job", cluster="c-sentinel"',
    "selectors.exporter": 'job="sentinel-exporter-job"',
    "windows.rate": "7m",
    "windows.no_traffic_lookback": "97m",
    "windows.versions_serving": "13m",
    "slo.availability": 0.987,
    "slo.fast_burn.long_window": "77m",
    "slo.fast_burn.short_window": "3m",
    "slo.fast_burn.factor": 2.5,
    "slo.fast_burn.min_requests": 1237,
    "slo.slow_burn.long_window": "7h",
    "slo.slow_burn.short_window": "43m",
    "slo.slow_burn.factor": 1.75,
    "slo.slow_burn.min_requests": 1239,
    "latency.p99_seconds": 0.321,
    "latency.first_item_p99_seconds": 0.654,
    "predictions.invalid_ratio": 0.0123,
    "predictions.max_versions": 611,
    "predictions.max_model_age": "47d",
    "data_quality.missing_ratio": 0.0456,
    "data_quality.out_of_range_ratio": 0.0789,
    "data_quality.schema_error_ratio": 0.0543,
    "drift.method": "js",
    "drift.feature_threshold": 0.345,
    "drift.prediction_threshold": 0.567,
    "drift.min_observations": 4321,
    "accuracy.window": "131m",
    "accuracy.min_ratio": 0.876,
    "accuracy.min_outcomes": 765,
    "shadow.window": "113m",
    "shadow.min_agreement": 0.8123,
    "shadow.min_compared": 4567,
    "shadow.max_error_ratio": 0.0719,
    "shadow.max_drop_ratio": 0.0237,
    "shadow.outcome_window": "17h",
    "shadow.min_outcomes": 3721,
    "shadow.min_accuracy_gain": 0.0433,
    "accuracy.max_drop": 0.0317,
    "accuracy.max_error_ratio": 1.723,
    "accuracy.max_error": 2.917,
    "objectives.from_code": True,
    "gpu.memory_used_ratio": 0.912,
    "gpu.temperature_celsius": 77.5,
    "internal.errors_per_second": 0.0042,
    "internal.overflow_window": "83m",
    "gpu.xid_window": "67m",
    "pushgateway.selector": 'instance="sentinel-pushgateway"',
    "pushgateway.max_age": "29h",
    "pushgateway.jobs": {"sentinel-batch-job": "31h"},
    "links.grafana_url": "https://grafana.sentinel.example",
    "links.runbook_url": "https://wiki.sentinel.example/ml/runbooks#{anchor}",
    "dashboards.uid_prefix": "sntl",
    "dashboards.title_prefix": "Sentinel board: ",
    "dashboards.datasource": "SentinelDS",
    "dashboards.refresh": "41s",
    "dashboards.time_from": "now-13h",
    "dashboards.tags": ["sentinel-tag"],
    "kubernetes.namespace": "sentinel-ns",
    "kubernetes.rule_name": "sentinel-rules",
    "kubernetes.labels": {"sentinel.io/team": "sentinel-team"},
    "kubernetes.model_match_labels": {"sentinel.io/role": "sentinel-model-pods"},
    "kubernetes.exporter_match_labels": {"sentinel.io/agent": "sentinel-exporter-pods"},
    "kubernetes.model_job": "sentinel-model-job",
    "kubernetes.exporter_job": "sentinel-exporter-job",
    "kubernetes.port": "sentinel-port",
    "kubernetes.path": "/sentinel-metrics",
    "kubernetes.scrape_interval": "29s",
    "kubernetes.exporter_port": "sentinel-xport",
    "kubernetes.exporter_path": "/sentinel-xmetrics",
    "kubernetes.baseline_rule_name": "sentinel-costly-rules",
}
for _side in ("model", "exporter"):
    SENTINELS.update({
        f"kubernetes.{_side}_scrape.scheme": "https",
        f"kubernetes.{_side}_scrape.tls_ca": {"secret": f"sentinel-{_side}-ca", "key": "ca.pem"},
        f"kubernetes.{_side}_scrape.tls_server_name": f"sentinel-{_side}.example",
        f"kubernetes.{_side}_scrape.tls_insecure_skip_verify": True,
        f"kubernetes.{_side}_scrape.tls_cert": {"config_map": f"sentinel-{_side}-cert",
                                                "key": "sentinel-cert-key"},
        f"kubernetes.{_side}_scrape.tls_key": {"secret": f"sentinel-{_side}-client",
                                               "key": "sentinel-private-key"},
        f"kubernetes.{_side}_scrape.basic_auth_username": {"secret": f"sentinel-{_side}-auth",
                                                           "key": "sentinel-user-key"},
        f"kubernetes.{_side}_scrape.basic_auth_password": {"secret": f"sentinel-{_side}-auth",
                                                           "key": "sentinel-password-key"},
    })
# Each baseline signal's settings, distinct per signal and from every default.
for _i, _signal in enumerate(SIGNALS):
    SENTINELS.update({
        f"baselines.{_signal}.enabled": True,
        f"baselines.{_signal}.k": round(2.0131 + 0.0001 * _i, 4),
        f"baselines.{_signal}.window": f"{601 + _i}s",
        f"baselines.{_signal}.baseline_window": f"{1501 + _i}m",
        f"baselines.{_signal}.baseline_offset": f"{181 + _i}m",
        f"baselines.{_signal}.min_history": f"{1601 + _i}m",
        f"baselines.{_signal}.min_coverage": round(0.2113 + 0.0001 * _i, 4),
        f"baselines.{_signal}.min_traffic": round(0.1113 + 0.0001 * _i, 4),
        f"baselines.{_signal}.sigma_floor": round(0.00311 + 0.00001 * _i, 5),
        f"baselines.{_signal}.sigma_floor_ratio": round(0.0611 + 0.0001 * _i, 4),
        f"baselines.{_signal}.seasonal": True,
    })
SENTINELS.update({
    "baselines.evaluation_interval": "270s",
    "baselines.seasonal_offsets": ["9d", "2d"],
    "baselines.seasonal_window": "71m",
    "baselines.features": ["sentinel_feature_a", "sentinel_feature_b"],
    "baselines.latency_quantiles": ["0.37", "0.993"],
    "baselines.prediction_quantiles": ["0.61"],
    "baselines.confidence_quantiles": ["0.47"],
})
# A distinct `for` per alert and the other severity, so a hard-coded one shows.
ALERT_SENTINELS = {alert.name: {"for": f"{101 + i}m",
                                "severity": "warning" if alert.severity == "critical"
                                else "critical"}
                   for i, alert in enumerate(ALERTS)}


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# A switch reads in the output as what it switches on.
SWITCH_OUTPUTS = {"objectives.from_code": ["inferwatch_model_objective"]}
# Values that read in the output as manifest fields, where the bare value is not distinctive.
for _side in ("model", "exporter"):
    SWITCH_OUTPUTS.update({
        f"kubernetes.{_side}_scrape.scheme": ["scheme: https"],
        f"kubernetes.{_side}_scrape.tls_insecure_skip_verify": ["insecureSkipVerify: true"],
        f"kubernetes.{_side}_scrape.tls_ca": [f"name: sentinel-{_side}-ca"],
        f"kubernetes.{_side}_scrape.tls_cert": [f"name: sentinel-{_side}-cert",
                                                "key: sentinel-cert-key"],
        f"kubernetes.{_side}_scrape.tls_key": [f"name: sentinel-{_side}-client",
                                               "key: sentinel-private-key"],
        f"kubernetes.{_side}_scrape.basic_auth_username": [f"name: sentinel-{_side}-auth",
                                                           "key: sentinel-user-key"],
        f"kubernetes.{_side}_scrape.basic_auth_password": ["key: sentinel-password-key"],
    })


def _texts(value: Any) -> list[str]:
    """How a config value reads in the output."""
    if isinstance(value, Mapping):
        return [text for pair in value.items() for text in pair]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, float):
        return [repr(value)]
    if isinstance(value, str) and "{anchor}" in value:
        return [value.split("{anchor}")[0]]
    return [str(value)]


def _sentinel_config() -> Config:
    return from_dict({**_nested(SENTINELS), "alerts": ALERT_SENTINELS})


# One model entry setting every per-model key to a value found nowhere else.
MODEL_PATTERN = "sentinel-model-.*"
MODEL_SENTINELS: dict[str, Any] = {
    "slo.availability": 0.9871,
    "slo.fast_burn.long_window": "79m",
    "slo.fast_burn.short_window": "11m",
    "slo.fast_burn.factor": 2.25,
    "slo.fast_burn.min_requests": 2237,
    "slo.slow_burn.long_window": "9h",
    "slo.slow_burn.short_window": "47m",
    "slo.slow_burn.factor": 1.25,
    "slo.slow_burn.min_requests": 2239,
    "latency.p99_seconds": 0.0321,
    "predictions.invalid_ratio": 0.00123,
    "predictions.max_versions": 613,
    "predictions.max_model_age": "53d",
    "data_quality.missing_ratio": 0.0457,
    "data_quality.out_of_range_ratio": 0.0781,
    "drift.feature_threshold": 0.3451,
    "drift.prediction_threshold": 0.5671,
    "drift.min_observations": 4322,
    "accuracy.window": "139m",
    "accuracy.min_ratio": 0.8761,
    "accuracy.min_outcomes": 766,
    "accuracy.max_drop": 0.0319,
    "accuracy.max_error_ratio": 1.729,
    "accuracy.max_error": 2.913,
    "windows.no_traffic_lookback": "193m",
    **{key: 4.0 + (n + 1) / 1000 for n, key in enumerate(BASELINE_OBJECTIVE_KEYS)},
}
MODEL_ALERT_SENTINELS = {"InferwatchLatencyHigh": {"for": "151m", "severity": "info"}}


def _model_sentinel_config() -> Config:
    return from_dict({"models": {MODEL_PATTERN: {**_nested(MODEL_SENTINELS),
                                                 "alerts": MODEL_ALERT_SENTINELS}}})


def test_every_config_key_has_a_sentinel() -> None:
    keys = {key for key, _, _ in leaves()} - {"alerts", "models"}
    assert keys == set(SENTINELS), "add a sentinel for each new config key"
    assert set(ALERT_SENTINELS) == {alert.name for alert in ALERTS}


def test_every_config_value_reaches_the_output(files: dict[str, str]) -> None:
    default_output = "\n".join(files.values())
    output = "\n".join(render(_sentinel_config()).values())
    for key, value in SENTINELS.items():
        if isinstance(value, bool) and key not in SWITCH_OUTPUTS:
            continue  # a baseline switch shows as rules present or absent: test_baselines.py
        for text in SWITCH_OUTPUTS.get(key) or _texts(value):
            assert text not in default_output, f"sentinel {text!r} of {key} is not distinctive"
            assert text in output, f"{key}: {text!r} does not reach the output"


def test_every_model_value_reaches_the_output(files: dict[str, str]) -> None:
    """The sentinel for `models:`: each per-model value shows up, as the rules compare it."""
    assert set(MODEL_SENTINELS) == set(OBJECTIVE_KEYS) | set(RULE_KEYS)
    default_output = "\n".join(files.values())
    output = "\n".join(render(_model_sentinel_config()).values())
    for key, value in MODEL_SENTINELS.items():
        if key in OBJECTIVE_KEYS:
            text = number(duration_seconds(value) if isinstance(value, str) else value)
        else:
            text = number(value) if isinstance(value, (int, float)) else value
        assert text not in default_output, f"sentinel {text!r} of {key} is not distinctive"
        assert text in output, f"models.{MODEL_PATTERN}.{key}: {text!r} does not reach the output"
    assert f'model=~"{MODEL_PATTERN}"' in output
    rules = [r for r in all_alert_rules(_model_sentinel_config())
             if r["alert"] == "InferwatchLatencyHigh"]
    own = [r for r in rules if r["labels"].get("model_override") == MODEL_PATTERN]
    assert [(r["for"], r["labels"]["severity"]) for r in own] == [("151m", "info")]


def test_alert_overrides_and_links_reach_every_rule() -> None:
    cfg = _sentinel_config()
    rules = {rule["alert"]: rule for rule in all_alert_rules(cfg)}
    for name, override in ALERT_SENTINELS.items():
        rule = rules[name]
        assert rule["for"] == override["for"]
        assert rule["labels"]["severity"] == override["severity"]
        assert rule["annotations"]["runbook_url"] == (
            f"https://wiki.sentinel.example/ml/runbooks#{anchor(name)}")
        assert rule["annotations"]["dashboard_url"].startswith(
            "https://grafana.sentinel.example/d/sntl-")


def test_thresholds_reach_the_alert_expressions() -> None:
    """Each threshold sits in the expression of the alert it belongs to, not only in text."""
    import dataclasses

    # With objectives from code every threshold moves into the objective recording rules.
    cfg = dataclasses.replace(_sentinel_config(),
                              objectives=dataclasses.replace(DEFAULT.objectives,
                                                             from_code=False))
    exprs = {r["alert"]: r["expr"] for r in all_alert_rules(cfg)}
    expected = {
        "InferwatchLatencyHigh": ["0.321", "p99_7m"],
        "InferwatchStreamFirstItemSlow": ["0.654", "inferwatch_stream_first_item_seconds:p99_7m"],
        "InferwatchInvalidPredictions": ["0.0123"],
        "InferwatchTooManyVersionsServing": ["611"],
        "InferwatchModelStale": [str(47 * 86400)],
        "InferwatchMissingValuesSpike": ["0.0456"],
        "InferwatchOutOfRangeSpike": ["0.0789"],
        "InferwatchInputSchemaErrors": ["0.0543", "ratio_rate7m"],
        "InferwatchFeatureDrift": ["0.345", "4321", 'method="js"'],
        "InferwatchPredictionDrift": ["0.567", "4321", 'method="js"'],
        "InferwatchAccuracyDrop": ["0.876", "765", "accuracy_rate131m"],
        "InferwatchRegressionErrorRise": ["1.723", "2.917", "765", "mean_rate131m", "increase131m"],
        "InferwatchGpuMemoryNearFull": ["0.912"],
        "InferwatchGpuTemperatureHigh": ["77.5", 'job="sentinel-exporter-job"'],
        "InferwatchInternalErrors": ["0.0042", "[7m]"],
        "InferwatchSeriesOverflow": ["[83m]", "offset 83m", 'cluster="c-sentinel"'],
        "InferwatchGpuXidErrors": ["[67m]", "offset 67m", 'job="sentinel-exporter-job"'],
        "InferwatchPushgatewayGroupStale": [
            'instance="sentinel-pushgateway", job="sentinel-batch-job"', str(31 * 3600),
            'job!="sentinel-batch-job"', str(29 * 3600)],
        "InferwatchBatchRunFailed": ["(1 - 0.987)", 'instance="sentinel-pushgateway"',
                                     'outcome="error"', "push_time_seconds"],
        "InferwatchTargetMissing": ['absent(up{job="sentinel-model-job"', 'cluster="c-sentinel"',
                                    'absent(up{job="sentinel-exporter-job"})'],
        "InferwatchErrorBudgetBurnFast": ["2.5", "0.987", "rate77m", "rate3m"],
        "InferwatchErrorBudgetBurnSlow": ["1.75", "0.987", "rate7h", "rate43m"],
        "InferwatchNoTraffic": ["offset 97m", "rate7m"],
        "InferwatchTargetDown": ['cluster="c-sentinel"'],
        "InferwatchExporterDown": ['job="sentinel-exporter-job"'],
        "InferwatchGpuLost": ['job="sentinel-exporter-job"'],
        "InferwatchGpuReadErrors": ['job="sentinel-exporter-job"', "[7m]"],
        "InferwatchCollectorFailing": ['job="sentinel-exporter-job"'],
        "InferwatchShadowFailing": ["0.0719", "error_ratio_rate7m", 'role="shadow"'],
        "InferwatchShadowAgreementLow": ["0.8123", "4567", "ratio_rate113m", "increase113m"],
        "InferwatchShadowDropping": ["0.0237", "ratio_rate7m"],
        "InferwatchShadowBetter": ["0.0433", "3721", "accuracy_rate17h", "increase17h"],
    }
    for spec in SIGNALS.values():
        signal = {key.rsplit(".", 1)[1]: value for key, value in SENTINELS.items()
                  if key.startswith(f"baselines.{spec.key}.")}
        # Traffic guards on its own trailing mean; the others on the model's calls over
        # their own window, recorded once (baselines.helper_rules).
        traffic = (f"[{signal['baseline_window']}] offset {signal['baseline_offset']}"
                   if spec.key == "traffic" else
                   f"model:inferwatch_baseline_calls:rate{signal['window']} >= ")
        expected[spec.alert] = [f"value_{signal['window']}", f"[{signal['window']}]",
                                f"offset {signal['min_history']}",
                                number(signal["min_traffic"]), traffic]
    assert set(expected) == set(exprs)
    for name, parts in expected.items():
        for part in parts:
            assert part in exprs[name], f"{name}: {part!r} not in {exprs[name]!r}"
    # The calls each guard reads are recorded from the model's own series, each window's.
    shared = dict(helper_rules(cfg))
    for spec in SIGNALS.values():
        window = SENTINELS[f"baselines.{spec.key}.window"]
        assert 'cluster="c-sentinel"' in shared[f"model:inferwatch_baseline_calls:rate{window}"]


# --- dashboards -------------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_five_dashboards_with_stable_uids(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = {path: d["uid"] for path, d in dashboards.items()}
    assert uids == {"dashboards/model-overview.json": "inferwatch-overview",
                    "dashboards/model-quality.json": "inferwatch-quality",
                    "dashboards/resources.json": "inferwatch-resources",
                    "dashboards/slo.json": "inferwatch-slo",
                    "dashboards/champion-challenger.json": "inferwatch-shadow"}
    for d in dashboards.values():
        assert d["schemaVersion"] >= 36
        assert d["id"] is None  # Grafana assigns ids; a fixed one would clash on import


def test_panels_use_current_types_and_the_datasource_variable(
        dashboards: dict[str, dict[str, Any]]) -> None:
    for path, d in dashboards.items():
        panels = _panels(d)
        types = {p["type"] for p in panels}
        assert types <= CURRENT_PANEL_TYPES, f"{path}: {types - CURRENT_PANEL_TYPES}"
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path}: duplicate panel ids"
        for p in panels:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{path}: {p['title']}"
            if p["type"] == "row":
                continue
            assert p["datasource"] == DATASOURCE, f"{path}: {p['title']}"
            assert p["targets"], f"{path}: {p['title']} has no query"
            for t in p["targets"]:
                assert t["datasource"] == DATASOURCE, f"{path}: {p['title']}"
                assert t["expr"].strip()
            ref_ids = [t["refId"] for t in p["targets"]]
            assert len(ref_ids) == len(set(ref_ids))


def test_dashboards_cover_the_required_panel_kinds(
        dashboards: dict[str, dict[str, Any]]) -> None:
    used = {p["type"] for d in dashboards.values() for p in _panels(d)}
    assert used == CURRENT_PANEL_TYPES


def test_every_dashboard_has_the_five_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for path, d in dashboards.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert set(variables) >= VARIABLES, path
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name in VARIABLES - {"datasource"}:
            assert variables[name]["datasource"] == DATASOURCE
            assert f", {name})" in variables[name]["query"]["query"]


def test_overview_has_deploy_annotations(dashboards: dict[str, dict[str, Any]]) -> None:
    annotations = dashboards["dashboards/model-overview.json"]["annotations"]["list"]
    exprs = " ".join(a["target"]["expr"] for a in annotations if "target" in a)
    assert "inferwatch_model_loaded_timestamp_seconds" in exprs
    assert "inferwatch_model_info" in exprs


def dashboard_expressions(dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """Every PromQL expression of the dashboards: panels, variables and annotations."""
    exprs = [t["expr"] for d in dashboards.values() for p in _panels(d)
             for t in p.get("targets", [])]
    for d in dashboards.values():
        # label_values(<series selector>, <label>): the selector is the PromQL part
        exprs += [re.fullmatch(r"label_values\((.*), *\w+\)", v["query"]["query"]).group(1)
                  for v in d["templating"]["list"] if v["type"] == "query"]
        exprs += [a["target"]["expr"] for a in d["annotations"]["list"] if "target" in a]
    return exprs


_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: what is left once matchers, label lists, ranges and
    function calls are taken out, and the names a `__name__` matcher lists."""
    names = {name for listed in re.findall(r'__name__=~?"([\w:|]+)"', expr)
             for name in listed.split("|")}
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"#[^\n]*", " ", expr)  # PromQL comments
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  expr)
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def test_metric_names_reads_series_only() -> None:
    expr = ('histogram_quantile(0.99, sum by (model, le) (rate(a_bucket{job=~"x|y", le="+Inf"}'
            '[$__rate_interval]))) / on (model) group_left b:c:d offset 1h and time() - e')
    assert metric_names(expr) == {"a_bucket", "b:c:d", "e"}
    listed = ('group by (m) ({job="x", __name__=~"f_one|f_two", method=~"psi|"}) * g'
              ' or {__name__="h"}')
    assert metric_names(listed) == {"f_one", "f_two", "g", "h"}


def _known_series() -> set[str]:
    # Prometheus' own (target health, the alerts it evaluates) and the Pushgateway's
    names = {"up", "ALERTS", "push_time_seconds"}
    for spec in CATALOGUE.values():
        names.add(spec.name)
        if spec.kind in ("histogram", "summary"):
            names.update({f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"})
    return names | {rule["record"] for group in recording_groups(DEFAULT)
                     + baseline_recording_groups(DEFAULT) for rule in group["rules"]}


def test_dashboard_metrics_exist_in_the_catalogue_or_the_rules(
        dashboards: dict[str, dict[str, Any]]) -> None:
    known = _known_series()
    used = set().union(*(metric_names(expr) for expr in dashboard_expressions(dashboards)))
    unknown = used - known
    assert not unknown, f"dashboards read unknown series: {sorted(unknown)}"
    # the extractor really sees the series (a regex that matched nothing would pass above)
    assert {"inferwatch_requests_total", "instance_gpu:inferwatch_gpu_memory_used:ratio",
            "inferwatch_gpu_up"} <= used


def test_rule_metrics_exist_in_the_catalogue_or_the_rules(files: dict[str, str]) -> None:
    known = _known_series()
    for path in RULE_FILES:
        groups = yaml.safe_load(files[path])["groups"]
        for rule in (r for g in groups for r in g["rules"]):
            names = metric_names(rule["expr"])
            assert names, rule
            assert names <= known, f"{rule}: {names - known}"


# --- alerts, runbooks and manifests -----------------------------------------------------------


def test_every_alert_has_labels_annotations_and_naming(files: dict[str, str]) -> None:
    groups = [g for path in ("alerts/alerting-rules.yml", "alerts/baseline-alerting-rules.yml")
              for g in yaml.safe_load(files[path])["groups"]]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(ALERTS)
    for rule in rules:
        assert re.fullmatch(r"Inferwatch(?:[A-Z][a-z0-9]+)+", rule["alert"]), rule["alert"]
        # info: an event worth knowing that needs no action (a better shadow model)
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url",
                                            "dashboard_url"}
        uids = {d.split("/d/")[1].split("?")[0] for d in [rule["annotations"]["dashboard_url"]]}
        assert uids <= {"inferwatch-overview", "inferwatch-quality", "inferwatch-resources",
                        "inferwatch-shadow"}


def test_recording_rules_follow_level_metric_operation(files: dict[str, str]) -> None:
    groups = [g for path in ("alerts/recording-rules.yml", "alerts/baseline-recording-rules.yml")
              for g in yaml.safe_load(files[path])["groups"]]
    for rule in (r for g in groups for r in g["rules"]):
        level, metric, operation = rule["record"].split(":")
        assert level and operation and metric.startswith("inferwatch_"), rule["record"]
        if metric.startswith("inferwatch_baseline_"):
            # Baselines aggregate versions away: a deploy keeps its model's history. Only
            # shadow versions (those that ran as shadows within the window, recorded once)
            # are named, to be left out, and each version's timed calls weigh its latency.
            serving = re.sub(
                r"unless on \(model, model_version\) "
                r"model_version:inferwatch_baseline_shadows:recent\w+", "",
                " ".join(rule["expr"].split()))
            if level == "model_version":
                assert metric in ("inferwatch_baseline_shadows",
                                  "inferwatch_baseline_timed_calls"), rule
                continue
            if rule["record"].startswith("model:inferwatch_baseline_latency:value_"):
                # Per version, weighted and summed by model (test_baselines.py says how).
                assert serving.startswith("( sum by (model) ( histogram_quantile("), rule
                continue
            assert "model_version" not in serving, rule
        elif rule["record"].startswith("model:inferwatch_objective:"):
            assert rule["expr"].startswith("group by (model) (inferwatch_model_info"), rule
        elif level == "model":
            assert "by (model, model_version" in rule["expr"] or rule["expr"].count(":") >= 2


def test_runbooks_have_one_section_per_alert() -> None:
    text = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (\S+)\s*$", text, flags=re.M)
    assert sorted(sections) == sorted(alert.name for alert in ALERTS)
    for body in re.split(r"^## \S+\s*$", text, flags=re.M)[1:]:
        assert "**Check first:**" in body
    assert DEFAULT.links.runbook_url.startswith(
        "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md#")


def test_kubernetes_manifests(files: dict[str, str]) -> None:
    rule = yaml.safe_load(files["alerts/kubernetes/prometheusrule.yaml"])
    plain = [g for path in RULE_FILES for g in yaml.safe_load(files[path])["groups"]]
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == plain
    service = yaml.safe_load(files["alerts/kubernetes/servicemonitor.yaml"])
    pod = yaml.safe_load(files["alerts/kubernetes/podmonitor.yaml"])
    assert service["kind"] == "ServiceMonitor" and pod["kind"] == "PodMonitor"
    relabel = service["spec"]["endpoints"][0]["relabelings"][0]
    assert relabel["replacement"] == DEFAULT.kubernetes.model_job
    assert f'job="{relabel["replacement"]}"' == DEFAULT.selectors.model
    relabel = pod["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
    assert f'job="{relabel["replacement"]}"' == DEFAULT.selectors.exporter


def test_latency_error_and_accuracy_panels_draw_each_models_own_objective(
        dashboards: dict[str, dict[str, Any]]) -> None:
    wanted = {("dashboards/model-overview.json", "Latency quantiles"):
              "model:inferwatch_objective:latency_p99_seconds",
              ("dashboards/model-overview.json", "Error ratio"):
              "model:inferwatch_objective:slo_availability",
              ("dashboards/model-quality.json", "Accuracy (1h)"):
              "model:inferwatch_objective:accuracy_min_ratio"}
    found = set()
    for path, dashboard in dashboards.items():
        for panel in dashboard["panels"]:
            series = wanted.get((path, panel.get("title")))
            if series and panel["type"] == "timeseries":
                exprs = [t["expr"] for t in panel["targets"]]
                assert any(series in e and 'model=~"$model"' in e for e in exprs), exprs
                found.add((path, panel["title"]))
    assert found == set(wanted)
