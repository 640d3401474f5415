"""The quality dashboard's drift panels: per version, as the drift alerts judge, and each
feature's values in the drift window beside whether its alert can judge it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import dashboards, rules, rules_alerts
from inferwatch.generate.config import DEFAULT, Config, from_dict
from promtool_cases import assert_promtool_passes, write_generated_rules
from test_dashboard_schema import schema_errors
from test_generated_rules_and_panels import _selected

QUALITY = "model-quality.json"
JOB = 'job="inferwatch-model"'


def _panel(cfg: Config, title: str, file: str = QUALITY) -> dict[str, Any]:
    dashboard = dashboards.render(cfg)[file]
    assert schema_errors(dashboard) == []
    found = [p for p in dashboard["panels"] if p.get("title") == title]
    assert len(found) == 1, [p.get("title") for p in dashboard["panels"]]
    return found[0]


def _series(name: str, model: str, version: str, values: str, instance: str = "a:9",
            **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{JOB}, instance="{instance}", model="{model}", '
                      f'model_version="{version}"{extra}}}', "values": values}


def _labels(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _drift_table(cfg: Config) -> dict[str, str]:
    """The Feature drift now table's queries, by the column each one fills."""
    panel = _panel(cfg, f"Feature drift now ({cfg.drift.method})")
    assert panel["type"] == "table"
    [merge, organize] = panel["transformations"]
    assert merge["id"] == "merge"
    names = organize["options"]["renameByName"]
    return {names[f"Value #{t['refId']}"]: t["expr"] for t in panel["targets"]}


# --- 1. per version, as the alerts judge ------------------------------------------------------


CANARY = [
    _series("inferwatch_model_info", "fraud", "1", "1x20"),
    _series("inferwatch_model_info", "fraud", "2", "1x20", instance="b:9"),
    _series("inferwatch_feature_drift", "fraud", "1", "0.05x20", feature="age", method="psi"),
    _series("inferwatch_feature_drift", "fraud", "2", "0.9x20", instance="b:9", feature="age",
            method="psi"),
    _series("inferwatch_prediction_drift", "fraud", "1", "0.01x20", output="score",
            method="psi"),
    _series("inferwatch_prediction_drift", "fraud", "2", "0.7x20", instance="b:9",
            output="score", method="psi"),
]


def test_drift_panels_show_each_version_as_the_alert_judges_it(tmp_path: Path) -> None:
    """During a canary the drift panels took the max per model: the canary's 0.9 stood for
    the stable version too, with no version in the legend, while the alert paged only for
    the canary."""
    checks = []
    for title, label, value in (("Feature drift (psi)", "feature", "age"),
                                ("Prediction drift (psi)", "output", "score")):
        panel = _panel(DEFAULT, title)
        drawn = panel["targets"][0]
        assert "{{model_version}}" in drawn["legendFormat"], title
        expected = {"1": 0.05, "2": 0.9} if label == "feature" else {"1": 0.01, "2": 0.7}
        checks.append({"expr": _selected(drawn["expr"]), "eval_time": "10m", "exp_samples": [
            {"labels": _labels(model="fraud", model_version=v, **{label: value}), "value": x}
            for v, x in expected.items()]})
    checks.append({"expr": _selected(_drift_table(DEFAULT)["drift"]), "eval_time": "10m",
                   "exp_samples": [{"labels": _labels(model="fraud", model_version=v,
                                                      feature="age"), "value": x}
                                   for v, x in (("1", 0.05), ("2", 0.9))]})
    assert_promtool_passes(tmp_path, CANARY, exprs=checks,
                           rule_files=write_generated_rules(DEFAULT, tmp_path))


# --- 2. each feature's values in the window, and whether its alert judges it ---------------


def test_drift_table_shows_values_in_window_and_the_sparse_features(tmp_path: Path) -> None:
    """A feature missing from most rows drifts wildly from its few values: the bar gauge
    showed it red while InferwatchFeatureDrift left it out, and nothing said why."""
    queries = _drift_table(DEFAULT)
    assert list(queries) == ["drift", "values in window", "values needed", "alert judges it"]
    series = [
        _series("inferwatch_model_info", "fraud", "1", "1x20"),
        _series("inferwatch_drift_window_observations", "fraud", "1", "5000x20"),
        _series("inferwatch_feature_drift", "fraud", "1", "0.3x20", feature="age",
                method="psi"),
        _series("inferwatch_feature_drift", "fraud", "1", "2.5x20", feature="income",
                method="psi"),
        _series("inferwatch_feature_drift_observations", "fraud", "1", "5000x20",
                feature="age"),
        _series("inferwatch_feature_drift_observations", "fraud", "1", "12x20",
                feature="income"),
    ]

    def column(name: str, values: dict[str, float]) -> dict[str, Any]:
        return {"expr": _selected(queries[name]), "eval_time": "10m", "exp_samples": [
            {"labels": _labels(model="fraud", model_version="1", feature=f), "value": x}
            for f, x in values.items()]}

    checks = [column("values in window", {"age": 5000, "income": 12}),
              column("values needed", {"age": 1000, "income": 1000}),
              column("alert judges it", {"age": 1, "income": 0})]
    assert_promtool_passes(tmp_path, series, exprs=checks,
                           rule_files=write_generated_rules(DEFAULT, tmp_path))
    panel = _panel(DEFAULT, "Feature drift now (psi)")
    coloured = {o["matcher"]["options"]: o["properties"]
                for o in panel["fieldConfig"]["overrides"]}
    [steps] = [p["value"]["steps"] for p in coloured["values in window"]
               if p["id"] == "thresholds"]
    assert steps[-1] == {"color": "green", "value": 1000}
    [mappings] = [p["value"] for p in coloured["alert judges it"] if p["id"] == "mappings"]
    assert mappings[0]["options"]["0"]["text"].startswith("no")


def test_drift_table_uses_each_models_own_minimum(tmp_path: Path) -> None:
    """fraud's alerts need 20,000 values: its 5,000 must read as too sparse to alert."""
    cfg = from_dict({"models": {"fraud": {"drift": {"min_observations": 20000}}}})
    queries = _drift_table(cfg)
    assert "own" in _panel(cfg, "Feature drift now (psi)")["description"]
    series = []
    for model in ("fraud", "churn"):
        series += [
            _series("inferwatch_model_info", model, "1", "1x20"),
            _series("inferwatch_drift_window_observations", model, "1", "30000x20"),
            _series("inferwatch_feature_drift", model, "1", "0.3x20", feature="age",
                    method="psi"),
            _series("inferwatch_feature_drift_observations", model, "1", "5000x20",
                    feature="age")]
    checks = [{"expr": _selected(queries[name]), "eval_time": "10m", "exp_samples": [
        {"labels": _labels(model=m, model_version="1", feature="age"), "value": x}
        for m, x in values.items()]}
        for name, values in (("values needed", {"fraud": 20000, "churn": 1000}),
                             ("alert judges it", {"fraud": 0, "churn": 1}))]
    assert_promtool_passes(tmp_path, series, exprs=checks,
                           rule_files=write_generated_rules(cfg, tmp_path))


@functools.cache
def _default_queries() -> tuple[str, str]:
    """The table's "alert judges it" query and InferwatchFeatureDrift's expression."""
    [alert] = [a for a in rules_alerts.ALERTS if a.name == "InferwatchFeatureDrift"]
    return (_drift_table(DEFAULT)["alert judges it"],
            rules.alert_rule(DEFAULT, alert)["expr"])


REPLICA = st.fixed_dictionaries({
    "rows": st.sampled_from([0, 999, 1000, 4000]),
    # None: a replica of an older release, which exports no per-feature count.
    "values": st.sampled_from([None, 0, 12, 999, 1000, 4000]),
    "drift": st.sampled_from([0.05, 0.2, 0.21, 3.0]),
})


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=st.lists(st.lists(REPLICA, min_size=1, max_size=3), min_size=1, max_size=4))
def test_alert_judges_it_agrees_with_the_feature_drift_alert(tmp_path: Path,
                                                             versions: list[list[dict[str, Any]]]
                                                             ) -> None:
    """For any replicas' window rows, feature values and drift, the table's "alert judges
    it" is 1 exactly for the versions whose feature the alert's own expression scores, and
    its drift over the threshold exactly where the alert fires."""
    judged_expr, alert_expr = _default_queries()
    series, judged, firing = [], {}, {}
    for v, replicas in enumerate(versions):
        version = str(v)
        series.append(_series("inferwatch_model_info", "m", version, "1x10"))
        counted = []
        for r, replica in enumerate(replicas):
            instance = f"r{r}:9"
            series.append(_series("inferwatch_drift_window_observations", "m", version,
                                  f"{replica['rows']}x10", instance=instance))
            series.append(_series("inferwatch_feature_drift", "m", version,
                                  f"{replica['drift']}x10", instance=instance, feature="f",
                                  method="psi"))
            if replica["values"] is not None:
                series.append(_series("inferwatch_feature_drift_observations", "m", version,
                                      f"{replica['values']}x10", instance=instance,
                                      feature="f"))
            if replica["rows"] >= 1000 and (replica["values"] is None
                                            or replica["values"] >= 1000):
                counted.append(replica["drift"])
        judged[version] = 1 if counted else 0
        if counted and max(counted) > 0.2:
            firing[version] = max(counted)
    checks = [
        {"expr": _selected(judged_expr), "eval_time": "5m",
         "exp_samples": [{"labels": _labels(model="m", model_version=v, feature="f"),
                          "value": x} for v, x in judged.items()]},
        {"expr": alert_expr, "eval_time": "5m", "exp_samples": [
            {"labels": _labels(model="m", model_version=v, feature="f"), "value": x}
            for v, x in firing.items()]},
    ]
    # No rule files: with no models: entry every threshold is a number in the queries.
    assert_promtool_passes(tmp_path, series, exprs=checks)


def test_drift_table_is_schema_clean_for_random_methods_and_overrides() -> None:
    for cfg in (DEFAULT, from_dict({"drift": {"method": "ks"}}),
                from_dict({"objectives": {"from_code": True}}),
                from_dict({"models": {"a.*": {"drift": {"min_observations": 10}}}})):
        queries = _drift_table(cfg)
        assert len(queries) == 4
