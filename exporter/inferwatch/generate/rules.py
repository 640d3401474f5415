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

import textwrap
from typing import Any

from inferwatch.generate import baselines
from inferwatch.generate import promql as q
from inferwatch.generate.config_schema import Config, ModelOverride, alert_setting
from inferwatch.generate.objectives import objective_rules
from inferwatch.generate.promql import block, shown
from inferwatch.generate.rules_alerts import ALERTS, AlertDef
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
    rule: dict[str, Any] = {
        "alert": alert.name,
        "expr": expr,
        "for": alert_setting(cfg, alert.name, "for_", alert.for_),
    }
    keep = alert.keep_firing_for(cfg)
    if keep is not None:
        rule["keep_firing_for"] = keep
    rule["labels"] = {"severity": alert_setting(cfg, alert.name, "severity", alert.severity)}
    rule["annotations"] = {
        "summary": alert.summary,
        "description": alert.description(cfg) + scrape_note(recorded_by or cfg, expr),
        "runbook_url": runbook_url(cfg, alert.name),
        # The dashboards are the whole config's: a model's copy links to the same panels.
        "dashboard_url": dashboard_url(recorded_by or cfg, alert),
    }
    return rule


# The label a copy's series carry, and its rule's label for Alertmanager.
_OVERRIDE = "model_override"
# What the default tags the models a copy judges with (any value but the empty one).
_COPIED = "own copy"


def _tag(expr: str, value: str, patterns: list[str]) -> str:
    """`expr` with the override label set to `value` (removed where `value` is empty) on its
    series whose model matches one of `patterns` (anchored, as `=~` matches)."""
    regex = patterns[0] if len(patterns) == 1 else "|".join(f"(?:{p})" for p in patterns)
    # label_replace expands `$name` in its replacement, so a pattern's own `$` is doubled.
    return (f"label_replace(\n{textwrap.indent(block(expr), '  ')},\n"
            f"  {q.quoted(_OVERRIDE)}, {q.quoted(value.replace('$', '$$'))}, \"model\", "
            f"{q.quoted(regex)}\n)")


def _own_models(expr: str, override: ModelOverride) -> str:
    """`expr` kept to the models `override` applies to: its pattern, no earlier one's."""
    tagged = _tag(expr, override.pattern, [override.pattern])
    if override.earlier and not override.is_name:
        # A name never follows a pattern that matches it (the config refuses that).
        tagged = _tag(tagged, "", list(override.earlier))
    # vector(1) carries no override label: `unless` drops every series left untagged.
    return f"{tagged}\nunless on ({_OVERRIDE})\nvector(1)"


def _other_models(cfg: Config, expr: str, copied: set[str]) -> str:
    """`expr` without the models whose first matching override is one of `copied`."""
    earlier = {pattern for override in cfg.models.values()
               if override.pattern in copied and not override.is_name
               for pattern in override.earlier}
    # Tagged from the last override to the first, so that a model's first match is the
    # tag it keeps; runs of one kind share a label_replace.
    runs: list[tuple[bool, list[str]]] = []
    for override in reversed(cfg.models.values()):
        own = override.pattern in copied
        if own or (override.pattern in earlier and runs):
            if runs and runs[-1][0] == own:
                runs[-1][1].append(override.pattern)
            else:
                runs.append((own, [override.pattern]))
    for own, patterns in runs:
        expr = _tag(expr, _COPIED if own else "", patterns)
    # vector(1) carries no override label: `and` keeps only the series left untagged.
    return f"{expr}\nand on ({_OVERRIDE})\nvector(1)"


def alert_rules(cfg: Config, alert: AlertDef) -> list[dict[str, Any]]:
    """An alert's rules: the default, then a copy for each model override that reshapes it.

    A copy is kept to its override's models, and the default leaves those models out, so
    every model is judged by exactly one rule. Both decide by the model label of the alert's
    own series, never by whether the model's inferwatch_model_info is there: the windowed
    series an alert reads outlive a model that went away, and it must not fall back to the
    default rule meanwhile.
    """
    default = alert_rule(cfg, alert)
    if not alert.per_model:
        return [default]
    copies = []
    for override, shaped in shaped_configs(cfg):
        rule = alert_rule(shaped, alert, recorded_by=cfg)
        if rule != default:
            rule["expr"] = _own_models(rule["expr"], override)
            # Tells the copies apart in Alertmanager (and for promtool's duplicate-rule lint).
            rule["labels"][_OVERRIDE] = shown(override.pattern)
            copies.append((override.pattern, rule))
    if copies:
        default["expr"] = _other_models(cfg, default["expr"], {p for p, _ in copies})
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

