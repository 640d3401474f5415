"""A `models:` entry's alert copy keeps judging its models after their inferwatch_model_info
is gone, and the default rule never takes them over: through the generated rules on the real
promtool.

The burn-rate ratios are windowed, so they outlive the info series of a model whose replicas
all went away while it failed. Each model must still be judged by exactly one rule, its
entry's copy or the default, at every evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferwatch.generate.config import from_dict
from inferwatch.generate.rules import alerting_groups
from inferwatch.generate.rules_alerts import ALERTS
from test_rules_semantics_edges import promtool_test

pytestmark = pytest.mark.integration

BURN = "InferwatchErrorBudgetBurn.*"
DEMOTED = {"alerts": {"InferwatchErrorBudgetBurnFast": {"severity": "warning"},
                      "InferwatchErrorBudgetBurnSlow": {"severity": "warning"}}}
# Serving for an hour, then gone; evaluated for two hours.
SERVES, END = 60, "120m"


def _failing_then_gone(model: str, instance: str) -> list[tuple[str, str]]:
    """`model`'s only replica fails half of 100 calls a minute, then goes away at 60m: its
    target is down and every series it exported, inferwatch_model_info included, goes stale."""
    labels = (f'job="inferwatch-model", instance="{instance}", model="{model}", '
              f'model_version="1.0"')
    return [(f'up{{job="inferwatch-model", instance="{instance}"}}', f"1x{SERVES} 0x{SERVES}"),
            (f'inferwatch_model_info{{{labels}, role="primary"}}', f"1x{SERVES} stale"),
            (f'inferwatch_requests_total{{{labels}, outcome="ok"}}', f"0+50x{SERVES} stale"),
            (f'inferwatch_requests_total{{{labels}, outcome="error"}}', f"0+50x{SERVES} stale")]


def _firing(alert: str, model: str, severity: str, override: str | None) -> dict:
    labels = {"alertname": alert, "alertstate": "firing", "model": model,
              "model_version": "1.0", "severity": severity}
    if override is not None:
        labels["model_override"] = override
    text = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"labels": f"ALERTS{{{text}}}", "value": 1}


def _burning(eval_time: str, firing: list[dict]) -> dict:
    return {"expr": f'ALERTS{{alertname=~"{BURN}", alertstate="firing"}}',
            "eval_time": eval_time, "exp_samples": firing}


def _never(selector: str) -> dict:
    """No burn alert matching `selector`, pending or firing, at any evaluation."""
    return {"expr": f'count_over_time(ALERTS{{alertname=~"{BURN}", {selector}}}[{END}])',
            "eval_time": END,
            "exp_samples": []}


def _judged_once(models: tuple[str, ...]) -> dict:
    """Each model has at most one burn alert of each name at every evaluation (no overlap),
    and `models` each had one at some evaluation (the series did reach the rules)."""
    per_rule = f'count by (model, alertname) (ALERTS{{alertname=~"{BURN}"}})'
    return {"expr": f"max by (model) (max_over_time(({per_rule})[{END}:1m]))",
            "eval_time": END,
            "exp_samples": [{"labels": f'{{model="{model}"}}', "value": 1}
                            for model in models]}


def test_a_demoted_burn_alert_stays_demoted_after_the_model_vanished(tmp_path: Path) -> None:
    """fraud's entry demotes both burn-rate alerts to warnings; ranker has no entry. Both
    fail half their calls, then their only replica goes away at 60m. fraud's warnings keep
    firing from its own copies as long as the windowed ratios do (to 63m fast, 77m slow) and
    the default never judges it; ranker pages from the default rules at the same times. The
    copies were scoped to the current info series, so the default paged for fraud as soon as
    it was gone."""
    series = [*_failing_then_gone("fraud", "a"), *_failing_then_gone("ranker", "b")]
    fraud = [_firing(f"InferwatchErrorBudgetBurn{speed}", "fraud", "warning", "fraud")
             for speed in ("Fast", "Slow")]
    ranker = [_firing(f"InferwatchErrorBudgetBurn{speed}", "ranker", "critical", None)
              for speed in ("Fast", "Slow")]
    exprs = [_burning("60m", [*fraud, *ranker]),
             _burning("63m", [*fraud, *ranker]),
             _burning("77m", [fraud[1], ranker[1]]),
             _never('model="fraud", model_override=""'),
             _never('model="ranker", model_override!=""'),
             _judged_once(("fraud", "ranker"))]
    promtool_test(tmp_path, {"models": {"fraud": DEMOTED}}, series, exprs=exprs)


def test_a_regex_entry_keeps_its_models_and_an_earlier_entry_keeps_its_own(
        tmp_path: Path) -> None:
    """`fr.*` demotes the burn alerts, but fraud matches the earlier `fraud` entry first
    (which only sets an objective, so the default alert judges it). After every replica is
    gone, fraud-b stays with `fr.*`'s copy and fraud with the default: each by one rule."""
    config = {"models": {"fraud": {"latency": {"p99_seconds": 0.05}}, "fr.*": DEMOTED}}
    series = [*_failing_then_gone("fraud", "a"), *_failing_then_gone("fraud-b", "b")]
    regex = [_firing(f"InferwatchErrorBudgetBurn{speed}", "fraud-b", "warning", "fr.*")
             for speed in ("Fast", "Slow")]
    default = [_firing(f"InferwatchErrorBudgetBurn{speed}", "fraud", "critical", None)
               for speed in ("Fast", "Slow")]
    exprs = [_burning("60m", [*default, *regex]),
             _burning("63m", [*default, *regex]),
             _burning("77m", [default[1], regex[1]]),
             _never('model="fraud-b", model_override=""'),
             _never('model="fraud", model_override!=""'),
             _judged_once(("fraud", "fraud-b"))]
    promtool_test(tmp_path, config, series, exprs=exprs)


def test_no_alert_copy_or_default_is_scoped_by_the_info_series() -> None:
    """Which rule judges a model follows from its name alone, for every alert about one
    model: no rule of a config with entries joins inferwatch_model_info to decide it."""
    plain = {rule["alert"]: rule["expr"] for group in alerting_groups(from_dict({}))
             for rule in group["rules"]}
    cfg = from_dict({"models": {"fraud": DEMOTED, "rank.*": {
        "alerts": {alert.name: {"for": "3h"} for alert in ALERTS if alert.per_model}}}})
    scoped = [rule for group in alerting_groups(cfg) for rule in group["rules"]
              if rule["expr"] != plain[rule["alert"]]]
    assert {rule["alert"] for rule in scoped} >= {"InferwatchErrorBudgetBurnFast",
                                                  "InferwatchNoTraffic"}
    for rule in scoped:
        assert rule["expr"].count("inferwatch_model_info") == plain[rule["alert"]].count(
            "inferwatch_model_info"), rule["alert"]
