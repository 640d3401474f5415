"""The PromQL the dashboards' panels share: selectors, rules' expressions, objective lines.

Every dashboard draws with these, so they sit apart from any one dashboard: the selectors
narrowed by the dashboard variables, the recording rules' own expressions on the raw series,
each model's objective lines, and the scopes of the alert copies a `models:` entry gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafanalib import core as g

from inferwatch.generate import promql as q
from inferwatch.generate import rules, rules_overrides
from inferwatch.generate.config_schema import Config, ModelOverride, with_values
from inferwatch.generate.objectives import (
    is_overridden,
    is_per_version,
    models_in,
    version_objective,
)
from inferwatch.generate.panels import target
from inferwatch.generate.promql import model_sel, selector

RATE = "$__rate_interval"
JOB = 'job=~"$job"'
INSTANCE = 'instance=~"$instance"'
MODEL = 'model=~"$model"'
VERSION = 'model_version=~"$model_version"'
ERRORS = 'outcome="error"'
# The Output variable of the dashboards with a heatmap of model outputs (one at a time).
# Matched exactly: Grafana regex-escapes only a multi-value or All variable, so a class or key
# named C++ or p(fraud) would be an invalid or a non-matching regex.
OUTPUT = 'output="$output"'
# A challenger run beside its champion by inferwatch.shadow(); the champion is "primary".
SHADOW, NOT_SHADOW = 'role="shadow"', 'role!="shadow"'
MV = "{{model}} {{model_version}}"


def raw_sel(cfg: Config, *extra: str) -> str:
    """Selector of raw model series narrowed by every dashboard variable."""
    return model_sel(cfg, JOB, INSTANCE, MODEL, VERSION, *extra)


def without_shadows(cfg: Config, vector: str) -> str:
    """`vector` (series of model and model_version) less the versions that run as shadows,
    as the alert rules and the accuracy objective leave them out: a challenger's calls,
    failures and latency are nobody's request, so a model's availability, error budget,
    traffic and cost must not count them. The shadows are those of the selected replicas
    (a challenger runs in its champion's process). Bracket it inside a larger expression.

    >>> from inferwatch.generate.config import DEFAULT
    >>> print(without_shadows(DEFAULT, "m"))  # doctest: +NORMALIZE_WHITESPACE
    (m) unless on (model, model_version) max by (model, model_version)
    (inferwatch_model_info{job="inferwatch-model", job=~"$job", instance=~"$instance",
    model=~"$model", model_version=~"$model_version", role="shadow"})
    """
    shadows = f"inferwatch_model_info{raw_sel(cfg, SHADOW)}"
    return f"({vector}) unless on ({q.MODEL_LABELS}) max by ({q.MODEL_LABELS}) ({shadows})"


# Stand-ins for the configured selectors while a rule is rendered for a panel, so each selector
# is narrowed by its own variables even when selectors.model and selectors.exporter are the
# same matchers (one scrape job for everything). Reserved label names never clash with a
# user's matchers.
_MODEL_MARK = '__inferwatch_model_series__="1"'
_EXPORTER_MARK = '__inferwatch_exporter_series__="1"'


def recorded(cfg: Config, name: str) -> str:
    """The expression of recording rule `name`, on raw series narrowed by the variables.

    >>> from inferwatch.generate.config import DEFAULT
    >>> recorded(DEFAULT, "model:inferwatch_batch_size_sum:rate5m")
    'sum by (model, model_version) (rate(inferwatch_batch_size_sum{job="inferwatch-model", \
job=~"$job", instance=~"$instance", model=~"$model", model_version=~"$model_version"}[5m]))'
    """
    marked = with_values(cfg, {"selectors.model": _MODEL_MARK,
                               "selectors.exporter": _EXPORTER_MARK})
    expr = {rule["record"]: rule["expr"] for group in rules.recording_groups(marked)
            for rule in group["rules"]}[name]
    narrowed = _narrow(expr, _MODEL_MARK, (cfg.selectors.model, JOB, INSTANCE, MODEL, VERSION))
    return _narrow(narrowed, _EXPORTER_MARK,
                   (cfg.selectors.exporter, 'instance=~"$exporter_instance"'))


def _narrow(expr: str, mark: str, matchers: tuple[str, ...]) -> str:
    # Every selector the rules build starts with the configured matchers (promql.selector).
    return expr.replace("{" + mark, "{" + ", ".join(m.strip() for m in matchers))


def coloured_by_default(cfg: Config, key: str, what: str, where: str = "") -> str:
    """What a stat panel's description adds when some model has its own `key`: its colour
    follows the default only (Grafana's thresholds are one set per panel, not per series,
    and a ratio to each model's own objective would no longer show the value itself)."""
    if not is_overridden(cfg, key):
        return ""
    return (f" Coloured against the default {what}; a model with its own objective is judged "
            f"by its alert against that one{f' ({where})' if where else ''}.")


def objective(cfg: Config, key: str, around: str = "{}") -> g.Target:
    """Each selected model's own objective (its `models:` override, else the default), `around`
    turning it into what the panel draws. Where versions declare it in code, each selected
    version's own: the alerts judge a version by its own declaration, so the model's strictest
    would draw a canary's laxer line below its values while no alert fires."""
    if is_per_version(cfg, key):
        series = version_objective(key) + selector(MODEL, VERSION)
        return target(around.format(f"max by ({q.MODEL_LABELS}) ({series})"), "objective " + MV)
    series = q.objective(key) + selector(MODEL)
    return target(around.format(f"max by (model) ({series})"), "objective {{model}}")


# Objectives more than one dashboard reads by key: the rows the drift alerts need, the p99
# latency threshold.
MIN_VALUES = "drift.min_observations"
P99 = "latency.p99_seconds"


def _of_models(cfg: Config, overrides: list[ModelOverride]) -> str:
    """One series per model of any of `overrides`, as the alert copies scope them."""
    return _or(models_in(cfg, override) for override in overrides)


def _or(terms: Any) -> str:
    listed = list(terms)
    return listed[0] if len(listed) == 1 else "(" + " or ".join(listed) + ")"


def override_groups(cfg: Config, value: Callable[[Config], Any]
                    ) -> dict[Any, list[ModelOverride]]:
    """The `models:` entries whose alert copies use another `value` than the default's
    (a window, a burn), by that value, in the config's order."""
    default = value(cfg)
    groups: dict[Any, list[ModelOverride]] = {}
    for override, shaped in rules_overrides.shaped_configs(cfg):
        own = value(shaped)
        if own != default:
            groups.setdefault(own, []).append(override)
    return groups


def judged_with(cfg: Config, groups: dict[Any, list[ModelOverride]], key: Any) -> str:
    """What keeps a query to the models judged with `key` of `groups`, as the alert rules
    scope their copies: the entries' models, or (key None) every model but theirs."""
    if key is not None:
        return f" and on (model) {_of_models(cfg, groups[key])}"
    if not groups:
        return ""
    return f" unless on (model) {_of_models(cfg, [o for g in groups.values() for o in g])}"
