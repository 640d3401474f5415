"""Prometheus recording and alerting rules as a pure function of the config.

Every alert is one row of the catalogue, :data:`~inferwatch.generate.rules_alerts.ALERTS`;
its runbook and dashboard links (:mod:`~inferwatch.generate.rules_links`) are added in
:func:`alert_rule`, the only place links are built. This module renders the rule groups: the
alerts, each with a copy per model override that reshapes it
(:mod:`~inferwatch.generate.rules_overrides`), and the recording rules
(:mod:`~inferwatch.generate.rules_recording`) with every model's objectives.

>>> from inferwatch.generate.config import DEFAULT
>>> groups = recording_groups(DEFAULT)
>>> groups[0]["rules"][0]["record"]
'model:inferwatch_requests:rate5m'
"""

from __future__ import annotations

from typing import Any

from inferwatch.generate import baselines
from inferwatch.generate.config_schema import Config, alert_setting
from inferwatch.generate.objectives import models_in, objective_rules
from inferwatch.generate.rules_alerts import ALERTS, AlertDef, block, shown
from inferwatch.generate.rules_links import dashboard_url, runbook_url, scrape_note
from inferwatch.generate.rules_overrides import shaped_configs
from inferwatch.generate.rules_recording import recording_rules


def alert_rule(cfg: Config, alert: AlertDef, *, recorded_by: Config | None = None
               ) -> dict[str, Any]:
    """The Prometheus rule of one alert, with its severity, `for` and links.

    `recorded_by` is the config whose recording rules the alert reads (default: `cfg`): a
    model's own copy reads the rules the whole config records.
    """
    expr = alert.expr(cfg)
    return {
        "alert": alert.name,
        "expr": expr,
        "for": alert_setting(cfg, alert.name, "for_", alert.for_),
        "labels": {"severity": alert_setting(cfg, alert.name, "severity", alert.severity)},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description(cfg) + scrape_note(recorded_by or cfg, expr),
            "runbook_url": runbook_url(cfg, alert.name),
            "dashboard_url": dashboard_url(cfg, alert),
        },
    }


def alert_rules(cfg: Config, alert: AlertDef) -> list[dict[str, Any]]:
    """An alert's rules: the default, then a copy for each model override that reshapes it.

    A copy is kept to its override's models, and the default leaves those models out, so
    every model is judged by exactly one rule.
    """
    default = alert_rule(cfg, alert)
    if not alert.per_model:
        return [default]
    copies = []
    for override, shaped in shaped_configs(cfg):
        rule = alert_rule(shaped, alert, recorded_by=cfg)
        if rule != default:
            # Both the copy and the default's exclusion: a model must not fall back to the
            # default rule once its own copy cannot see it.
            remembered = max(alert.remembers(cfg), alert.remembers(shaped))
            millis = round(remembered * 1000)
            over = (None if not millis else f"{millis // 1000}s" if not millis % 1000
                    else f"{millis}ms")
            scoped = models_in(cfg, override, over)
            rule["expr"] = f"{block(rule['expr'])}\nand on (model)\n{scoped}"
            # Tells the copies apart in Alertmanager (and for promtool's duplicate-rule lint).
            rule["labels"]["model_override"] = shown(override.pattern)
            copies.append((scoped, rule))
    if copies:
        reshaped = "\nor\n".join(scoped for scoped, _ in copies)
        default["expr"] = f"{block(default['expr'])}\nunless on (model)\n{block(reshaped)}"
    return [default, *(rule for _, rule in copies)]


def _alert_groups(cfg: Config, baseline: bool) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for alert in ALERTS:
        if alert.enabled(cfg) and (alert.group == "baselines") == baseline:
            groups.setdefault(alert.group, []).extend(alert_rules(cfg, alert))
    # The baseline alerts read series recorded at the baseline interval, so they run at it.
    intervals = {"baselines": {"interval": cfg.baselines.evaluation_interval}}
    return [{"name": f"inferwatch-{name}", **intervals.get(name, {}), "rules": rules}
            for name, rules in groups.items()]


def alerting_groups(cfg: Config) -> list[dict[str, Any]]:
    """Alert rule groups, one per area, in table order (the baseline alerts apart)."""
    return _alert_groups(cfg, baseline=False)


def baseline_alerting_groups(cfg: Config) -> list[dict[str, Any]]:
    """The adaptive-baseline alerts: one group, at the baseline interval (none when every
    signal is off)."""
    return _alert_groups(cfg, baseline=True)


def baseline_recording_groups(cfg: Config) -> list[dict[str, Any]]:
    """The adaptive-baseline recording rules: one group, at the baseline interval."""
    return baselines.recording_groups(cfg)


def recording_groups(cfg: Config) -> list[dict[str, Any]]:
    """The recording rule groups: every expression the alerts and dashboards reuse, and every
    model's objectives."""
    rules = [{"record": name, "expr": expr} for name, expr in recording_rules(cfg)]
    objectives = [{"record": name, "expr": expr} for name, expr in objective_rules(cfg)]
    return [{"name": "inferwatch-recording", "rules": rules},
            {"name": "inferwatch-objectives", "rules": objectives}]

