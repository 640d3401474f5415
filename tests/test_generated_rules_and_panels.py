"""What the generated rules and panels compute, through promtool, for configs and selections
the committed unit tests do not exercise: a per-model override of every alert about one
model, ratio panels narrowed to one instance, and the SLO panels of a model with its own
availability objective."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferwatch.generate import dashboards, rules, rules_alerts
from inferwatch.generate.alert_names import MODEL_ALERT_NAMES
from inferwatch.generate.config import DEFAULT, Config, from_dict
from promtool_cases import assert_promtool_passes, write_generated_rules

pytestmark = pytest.mark.integration

MODEL = 'job="inferwatch-model"'


def _panel_exprs(cfg: Config, file: str, title: str, kind: str = "timeseries") -> list[str]:
    """The queries of one dashboard panel, by title and type."""
    found = [panel for panel in dashboards.render(cfg)[file]["panels"]
             if panel.get("title") == title and panel["type"] == kind]
    assert len(found) == 1, (file, title)
    return [t["expr"] for t in found[0]["targets"]]


def _selected(expr: str, **values: str) -> str:
    """A panel query as Grafana sends it: each variable replaced by its selection (All: .*)."""
    for name in ("model_version", "exporter_instance", "instance", "model", "job"):
        expr = expr.replace(f"${name}", values.get(name, ".*"))
    assert not re.search(r"\$\w", expr), expr
    return expr


# --- per-model overrides of every alert about one model ----------------------------------


def test_every_alert_about_one_model_accepts_a_per_model_override() -> None:
    """An alert whose series carry a model (its dashboard link is narrowed to the model) can
    be reshaped per model, as docs/configuration.md says of every alert about one model."""
    per_model = {alert.name for alert in rules_alerts.ALERTS if alert.per_model}
    assert per_model - MODEL_ALERT_NAMES == set()


def test_a_model_gets_its_own_stream_first_item_alert(tmp_path: Path) -> None:
    """chat pages after 2m of slow first items; summarize, as slow, keeps the default 10m."""
    cfg = from_dict({"models": {"chat": {"alerts": {
        "InferwatchStreamFirstItemSlow": {"for": "2m", "severity": "critical"}}}}})
    series = []
    for model in ("chat", "summarize"):
        labels = f'{MODEL}, instance="m:1", model="{model}", model_version="1"'
        series.append({"series": f"inferwatch_model_info{{{labels}}}", "values": "1x20"})
        for le, per_minute in (("1", 0), ("2.5", 60), ("+Inf", 60)):
            series.append({"series": f'inferwatch_stream_first_item_seconds_bucket'
                                     f'{{{labels}, le="{le}"}}',
                           "values": f"0+{per_minute}x20"})
    firing = 'ALERTS{alertname="InferwatchStreamFirstItemSlow", alertstate="firing"}'
    check = {"expr": f"count by (model, severity, model_override) ({firing})",
             "eval_time": "5m",
             "exp_samples": [{"labels": '{model="chat", model_override="chat", '
                                        'severity="critical"}', "value": 1}]}
    assert_promtool_passes(tmp_path, series, exprs=[check],
                           rule_files=write_generated_rules(cfg, tmp_path))


# --- ratio panels narrowed by the variables -----------------------------------------------


RATIO_PANELS = (("Invalid predictions", "inferwatch_invalid_predictions_total", 'reason="nan"'),
                ("Missing values per row", "inferwatch_feature_missing_total", 'feature="age"'),
                ("Out-of-range values per row", "inferwatch_feature_out_of_range_total",
                 'feature="age"'))


@pytest.mark.parametrize(("title", "counter", "label"), RATIO_PANELS,
                         ids=[title for title, _, _ in RATIO_PANELS])
def test_a_ratio_panel_narrowed_to_one_instance_counts_that_instances_rows(
        tmp_path: Path, title: str, counter: str, label: str) -> None:
    """Two replicas predict 10 rows a second each; only a:1 sees a bad value in one row of
    ten. With Instance a:1 the panel says 0.1, its rows alone; with All, 0.05, as the rule."""
    series = []
    for instance, bad in (("a:1", 60), ("b:1", 0)):
        labels = f'{MODEL}, instance="{instance}", model="fraud", model_version="1"'
        series += [{"series": f"inferwatch_batch_size_sum{{{labels}}}", "values": "0+600x15"},
                   {"series": f"{counter}{{{labels}, {label}}}", "values": f"0+{bad}x15"}]
    # The panel's first query; the second draws each model's objective.
    expr, objective = _panel_exprs(DEFAULT, "model-quality.json", title)
    assert objective.startswith("max by (model) (model:inferwatch_objective:")
    wanted = '{model="fraud", model_version="1"' + (", " + label if "feature" in label else "")
    checks = [{"expr": f"round({_selected(expr, instance=instance)}, 0.001)", "eval_time": "10m",
               "exp_samples": [{"labels": wanted + "}", "value": value}]}
              for instance, value in (("a:1", 0.1), ("b:1", 0), (".*", 0.05))]
    assert_promtool_passes(tmp_path, series, exprs=checks,
                           rule_files=write_generated_rules(DEFAULT, tmp_path))


# --- SLO panels of a model with its own availability objective -----------------------------


def test_slo_panels_judge_each_model_by_its_own_error_budget(tmp_path: Path) -> None:
    """fraud (99.99%) and churn (the default 99.9%) both fail 1% of their calls: fraud burns
    its budget 100x over, churn 10x, as their burn-rate alerts see it, and the budgets left
    are 1 - 100 and 1 - 10."""
    cfg = from_dict({"models": {"fraud": {"slo": {"availability": 0.9999}}}})
    series = []
    for model in ("fraud", "churn"):
        labels = f'{MODEL}, instance="m:1", model="{model}", model_version="1"'
        series += [
            {"series": f"inferwatch_model_info{{{labels}}}", "values": "1x90"},
            {"series": f'inferwatch_requests_total{{{labels}, outcome="ok"}}',
             "values": "0+594x90"},
            {"series": f'inferwatch_requests_total{{{labels}, outcome="error"}}',
             "values": "0+6x90"}]
    burn = {"fraud": 100, "churn": 10}
    checks = []
    long_window, short_window = _panel_exprs(cfg, "slo.json", "Fast burn rate (1h / 5m)")
    for expr in (long_window, short_window):
        checks.append({"expr": f"round({_selected(expr)}, 0.001)", "eval_time": "80m",
                       "exp_samples": [{"labels": f'{{model="{m}", model_version="1"}}',
                                        "value": value} for m, value in burn.items()]})
    [remaining] = _panel_exprs(cfg, "slo.json", "Error budget remaining (30d)")
    checks.append({"expr": f"round({_selected(remaining)}, 0.001)", "eval_time": "80m",
                   "exp_samples": [{"labels": f'{{model="{m}"}}', "value": 1 - value}
                                   for m, value in burn.items()]})
    assert_promtool_passes(tmp_path, series, exprs=checks,
                           rule_files=write_generated_rules(cfg, tmp_path))


# --- each model's own objective beside a panel's default threshold -------------------------


OBJECTIVE_PANELS = (
    ("Invalid predictions", "predictions.invalid_ratio", 0.002),
    ("Missing values per row", "data_quality.missing_ratio", 0.2),
    ("Out-of-range values per row", "data_quality.out_of_range_ratio", 0.3),
    ("Feature drift (psi)", "drift.feature_threshold", 0.5),
    ("Prediction drift (psi)", "drift.prediction_threshold", 0.45),
)


@pytest.mark.parametrize(("title", "key", "value"), OBJECTIVE_PANELS,
                         ids=[title for title, _, _ in OBJECTIVE_PANELS])
def test_a_threshold_panel_draws_each_models_own_objective(tmp_path: Path, title: str,
                                                           key: str, value: float) -> None:
    """The panels drew only the default threshold: a model whose `models:` entry allows 20%
    missing values showed red past 5%, while its alert stayed quiet until 20%."""
    section, name = key.split(".")
    cfg = from_dict({"models": {"fraud": {section: {name: value}}}})
    default = getattr(getattr(cfg, section), name)
    series = [{"series": f'inferwatch_model_info{{{MODEL}, instance="m:1", model="{model}", '
                         f'model_version="1"}}', "values": "1x10"} for model in ("fraud", "churn")]
    _, objective = _panel_exprs(cfg, "model-quality.json", title)
    checks = [{"expr": _selected(objective, model=model), "eval_time": "5m",
               "exp_samples": [{"labels": f'{{model="{model}"}}', "value": expected}]}
              for model, expected in (("fraud", value), ("churn", default))]
    assert_promtool_passes(tmp_path, series, exprs=checks,
                           rule_files=write_generated_rules(cfg, tmp_path))


def test_lost_targets_of_regex_selectors_each_page_naming_their_selector(tmp_path: Path) -> None:
    """absent() keeps only equality matchers: with regex job selectors both lost targets made
    one alert with no labels, its summary "No target of  is discovered"."""
    cfg = from_dict({"selectors": {"model": 'job=~"model-.*"',
                                   "exporter": 'job=~"exporter-.*", env="prod"'}})
    series = [{"series": 'up{job="model-a", instance="m:1"}', "values": "1x5"},
              {"series": 'up{job="exporter-a", instance="e:1", env="prod"}', "values": "1x5"},
              {"series": 'up{job="other", instance="o:1"}', "values": "1x40"}]
    [alert] = [a for a in rules_alerts.ALERTS if a.name == "InferwatchTargetMissing"]
    annotations = rules.alert_rule(cfg, alert)["annotations"]
    expected = []
    for selector, extra in (('job=~"model-.*"', {}),
                            ('job=~"exporter-.*", env="prod"', {"env": "prod"})):
        expected.append({
            "exp_labels": {"severity": "warning", "selector": selector, **extra},
            "exp_annotations": {
                name: text.replace("{{ $labels.selector }}", selector)
                for name, text in annotations.items()}})
    assert_promtool_passes(tmp_path, series, rule_files=write_generated_rules(cfg, tmp_path),
                           alerts=[{"eval_time": "30m", "alertname": "InferwatchTargetMissing",
                                    "exp_alerts": expected}])


@pytest.mark.parametrize(("availability", "shown"), [(0.999, "0.001"), (0.9995, "0.0005"),
                                                      (0.99, "0.01")])
def test_the_slo_panel_names_the_default_budget_as_a_person_writes_it(availability, shown):
    # 1 - 0.999 is 0.0010000000000000009 in binary floating point; the panel said so.
    cfg = from_dict({"slo": {"availability": availability}})
    [panel] = [p for p in dashboards.render(cfg)["slo.json"]["panels"]
               if p.get("title") == "Error budget remaining (30d)" and p["type"] == "stat"]
    assert f"by default {shown} of calls" in panel["description"]
