"""The accuracy panel draws the line InferwatchAccuracyDrop pages below, and the SLO panels say
what they cannot follow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import dashboards, rules, rules_alerts
from inferwatch.generate.config import DEFAULT, Config, from_dict
from inferwatch.generate.dashboards_quality import model_quality
from promtool_cases import assert_promtool_passes
from test_dashboard_schema import schema_errors

OBJECTIVE = "objective {{model}} {{model_version}}"


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _titled(dashboard: dict[str, Any], start: str) -> dict[str, Any]:
    found = [p for p in _panels(dashboard) if p.get("title", "").startswith(start)]
    assert len(found) == 1, [p.get("title") for p in _panels(dashboard)]
    return found[0]


def _schema_clean(cfg: Config) -> dict[str, dict[str, Any]]:
    rendered = dashboards.render(cfg)
    for name, dashboard in rendered.items():
        assert schema_errors(dashboard) == [], name
    return rendered


def _objective_target(cfg: Config) -> dict[str, Any]:
    quality = model_quality(cfg)
    assert schema_errors(quality) == []
    panel = _titled(quality, "Accuracy (")
    found = [t for t in panel["targets"] if t["legendFormat"].startswith("objective")]
    assert len(found) == 1, panel["targets"]
    return found[0]


def _all_selected(expr: str) -> str:
    """A panel query as Grafana sends it with every variable at All."""
    return re.sub(r"\$\w+", ".*", expr.replace("$__rate_interval", "5m"))


def _series(name: str, model: str, version: str, values: str, **labels: str
            ) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{job="inferwatch-model", instance="a:9", model="{model}", '
                      f'model_version="{version}"{extra}}}', "values": values}


def _labels(model: str, version: str) -> str:
    return f'{{model="{model}", model_version="{version}"}}'


# --- the accuracy objective is the alert's threshold ------------------------------------------


def test_accuracy_objective_is_the_line_the_alert_pages_below(tmp_path: Path) -> None:
    """fraud v1 validated at 0.99: InferwatchAccuracyDrop pages below 0.94 (0.99 - max_drop
    0.05), yet the panel drew 0.9 (accuracy.min_ratio) as fraud's line, so its 0.92 looked
    healthy while it paged."""
    cfg = DEFAULT
    objective = _objective_target(cfg)
    assert objective["legendFormat"] == OBJECTIVE
    minute = 60
    series = [
        _series("inferwatch_model_info", "fraud", "1", "1x90"),
        _series("inferwatch_model_info", "fraud", "2", "1x90"),
        _series("inferwatch_model_info", "churn", "1", "1x90"),
        # A shadow is judged by alerts of its own: no accuracy line of the primary's.
        _series("inferwatch_model_info", "fraud", "3", "1x90", role="shadow"),
        _series("inferwatch_reference_validation", "fraud", "1", "0.99x90", metric="accuracy"),
        _series("inferwatch_reference_validation", "fraud", "3", "0.99x90", metric="accuracy"),
        # A regressor's validation metric is not an accuracy.
        _series("inferwatch_reference_validation", "churn", "1", "3x90",
                metric="mean_absolute_error"),
        # fraud v1: 92 of 100 outcomes right each minute.
        _series("inferwatch_outcomes_total", "fraud", "1", f"0+{92 * minute // 60}x90",
                result="correct"),
        _series("inferwatch_outcomes_total", "fraud", "1", f"0+{8 * minute // 60}x90",
                result="wrong"),
    ]
    alert = rules_alerts._primary(cfg, rules_alerts._accuracy_drop_expr(cfg))
    # The recording rules loaded: the objective series are what Prometheus would record.
    assert_promtool_passes(tmp_path, series, rule_groups=rules.recording_groups(cfg), exprs=[
        {"expr": _all_selected(objective["expr"]), "eval_time": "80m", "exp_samples": [
            {"labels": _labels("fraud", "1"), "value": 0.94},
            {"labels": _labels("fraud", "2"), "value": 0.9},
            {"labels": _labels("churn", "1"), "value": 0.9}]},
        # The alert's own condition pages for fraud v1 at 0.92, under the line drawn.
        {"expr": f"count by (model, model_version) ({alert})", "eval_time": "80m",
         "exp_samples": [{"labels": _labels("fraud", "1"), "value": 1}]},
    ])


def test_accuracy_objective_follows_overrides_and_code(tmp_path: Path) -> None:
    """With objectives declared in code, each version is judged by its own max_drop and
    min_ratio: v1 declares a drop of 0.02 (line 0.97), v2 a minimum of 0.7; churn's models:
    entry sets its minimum to 0.6."""
    cfg = from_dict({"objectives": {"from_code": True},
                     "models": {"churn": {"accuracy": {"min_ratio": 0.6}}}})
    objective = _objective_target(cfg)
    assert "model_version:inferwatch_objective:accuracy_max_drop" in objective["expr"]
    assert "model_version:inferwatch_objective:accuracy_min_ratio" in objective["expr"]
    series = [
        _series("inferwatch_model_info", "fraud", "1", "1x30"),
        _series("inferwatch_model_info", "fraud", "2", "1x30"),
        _series("inferwatch_model_info", "churn", "1", "1x30"),
        _series("inferwatch_reference_validation", "fraud", "1", "0.99x30", metric="accuracy"),
        _series("inferwatch_model_objective", "fraud", "1", "0.02x30",
                objective="accuracy.max_drop"),
        _series("inferwatch_model_objective", "fraud", "2", "0.7x30",
                objective="accuracy.min_ratio"),
    ]
    assert_promtool_passes(tmp_path, series, rule_groups=rules.recording_groups(cfg), exprs=[
        {"expr": _all_selected(objective["expr"]), "eval_time": "10m", "exp_samples": [
            {"labels": _labels("fraud", "1"), "value": 0.97},
            {"labels": _labels("fraud", "2"), "value": 0.7},
            {"labels": _labels("churn", "1"), "value": 0.6}]},
    ])


@st.composite
def accuracy_configs(draw: st.DrawFn) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for i in range(draw(st.integers(0, 4))):
        own: dict[str, Any] = {}
        if draw(st.booleans()):
            own["min_ratio"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            own["max_drop"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            own["window"] = draw(st.sampled_from(["1h", "6h", "1d"]))
        models[f"m{i}" if draw(st.booleans()) else f"m{i}-.*"] = {"accuracy": own}
    return {"objectives": {"from_code": draw(st.booleans())}, "models": models}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accuracy_configs())
def test_accuracy_objective_reads_the_series_the_alert_reads(raw: dict[str, Any]) -> None:
    """Whatever the entries, the panel's line reads the objective series the alert compares
    with (per version where versions declare it), and the dashboard stays valid."""
    cfg = from_dict(raw)
    objective = _objective_target(cfg)
    assert objective["legendFormat"] == OBJECTIVE
    alert = rules_alerts._accuracy_drop_expr(cfg)
    scope = "model_version" if cfg.objectives.from_code else "model"
    for key in ("accuracy_max_drop", "accuracy_min_ratio"):
        assert f"{scope}:inferwatch_objective:{key}" in objective["expr"], key
    if any("max_drop" in m["accuracy"] for m in raw["models"].values()) or \
            cfg.objectives.from_code:
        assert f"{scope}:inferwatch_objective:accuracy_max_drop" in alert
    assert "inferwatch_reference_validation" in objective["expr"]
    assert 'role="shadow"' in objective["expr"]


# --- the latency SLO and objectives declared in code -------------------------------------------


def test_latency_slo_says_it_cannot_follow_p99_declared_in_code() -> None:
    """A model declares a p99 of 0.05s in code and pages above it; the latency SLO stat
    counts its calls within the config's 0.5s and said nothing of it."""
    cfg = from_dict({"objectives": {"from_code": True}})
    within = _titled(_schema_clean(cfg)["slo.json"], "Calls within ")
    assert "objectives.from_code" in within["description"]
    assert "declares in code" in within["description"]
    default = _titled(dashboards.render(DEFAULT)["slo.json"], "Calls within ")
    assert "from_code" not in default["description"]


# --- objectives declared in code: each version's own line ---------------------------------------


def test_objective_lines_are_per_version_where_versions_declare_them(tmp_path: Path) -> None:
    """fraud's canary v2 declares a p99 of 1s, its stable v1 0.2s; InferwatchLatencyHigh
    judges each version by its own, yet the panels drew the model's strictest, 0.2s, under
    the canary's 0.6s p99 while no alert fired for it."""
    cfg = from_dict({"objectives": {"from_code": True}})
    rendered = _schema_clean(cfg)
    panel = _titled(rendered["model-overview.json"], "Latency quantiles")
    objectives = [t for t in panel["targets"] if t["legendFormat"].startswith("objective")]
    assert [t["legendFormat"] for t in objectives] == [OBJECTIVE]
    series = [
        _series("inferwatch_model_info", "fraud", "1", "1x30"),
        _series("inferwatch_model_info", "fraud", "2", "1x30"),
        _series("inferwatch_model_objective", "fraud", "1", "0.2x30",
                objective="latency.p99_seconds"),
        _series("inferwatch_model_objective", "fraud", "2", "1x30",
                objective="latency.p99_seconds"),
    ]
    assert_promtool_passes(tmp_path, series, rule_groups=rules.recording_groups(cfg), exprs=[
        {"expr": _all_selected(objectives[0]["expr"]), "eval_time": "10m", "exp_samples": [
            {"labels": _labels("fraud", "1"), "value": 0.2},
            {"labels": _labels("fraud", "2"), "value": 1}]},
    ])
    # Every panel with an objective line draws it per version, the error budget included.
    for name, dashboard in rendered.items():
        for p in _panels(dashboard):
            for t in p.get("targets", []):
                if t["legendFormat"].startswith("objective"):
                    assert t["legendFormat"] == OBJECTIVE, (name, p["title"])
                    assert "model_version:inferwatch_objective:" in t["expr"], p["title"]
    # Without objectives in code, each model's line, as before.
    default = _titled(dashboards.render(DEFAULT)["model-overview.json"], "Latency quantiles")
    assert default["targets"][-1]["legendFormat"] == "objective {{model}}"
