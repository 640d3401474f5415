"""The SLO dashboard: availability, latency SLO, error budget, burn rates and alerts.

With its burn-rate panels, one per distinct set of windows and factor a `models:` entry gives
its own copy of a burn-rate alert, and the latency SLO over each model's own p99 threshold.
"""

from __future__ import annotations

from typing import Any

from inferwatch.generate import promql as q
from inferwatch.generate.config_schema import BurnRate, Config, ModelOverride
from inferwatch.generate.dashboards_frame import dashboard
from inferwatch.generate.dashboards_queries import (
    ERRORS,
    MODEL,
    MV,
    P99,
    coloured_by_default,
    judged_with,
    objective,
    override_groups,
    raw_sel,
    recorded,
    without_shadows,
)
from inferwatch.generate.objectives import is_per_version, models_in
from inferwatch.generate.panels import (
    Cell,
    builtin_annotation,
    prometheus_annotation,
    stat,
    table,
    target,
    timeseries,
)
from inferwatch.generate.promql import number, selector

# The SLO period: the burn-rate factors of the config are multiples of a 30-day budget.
SLO_PERIOD = "30d"


def own_error_budget() -> str:
    """Each selected model's error budget: 1 - its own availability objective (its `models:`
    entry's, else the default), what the burn-rate alerts divide its error ratio by.

    >>> print(own_error_budget())
    (1 - max by (model) (model:inferwatch_objective:slo_availability{model=~"$model"}))
    """
    return f"(1 - max by (model) ({q.objective('slo.availability')}{selector(MODEL)}))"


def _burn_groups(cfg: Config, which: str) -> dict[Any, list[ModelOverride]]:
    """The windows and factors a burn-rate alert uses besides the default's: each distinct
    one `models:` entries give, with those entries."""
    def shape(c: Config) -> tuple[str, str, float]:
        burn: BurnRate = getattr(c.slo, which)
        return burn.long_window, burn.short_window, burn.factor
    return override_groups(cfg, shape)


def _burn_cells(cfg: Config, title: str, alert: str, which: str) -> list[Cell]:
    """A burn-rate alert's panels: the default windows and factor, then one panel per
    distinct set a `models:` entry gives its own copy of the alert, each showing only the
    models that copy judges (as the default rule leaves them out)."""
    own_budget = own_error_budget()
    groups = _burn_groups(cfg, which)
    default: BurnRate = getattr(cfg.slo, which)
    scopes: list[tuple[tuple[str, str, float], str, str]] = [
        ((default.long_window, default.short_window, default.factor),
         judged_with(cfg, groups, None), "")]
    for key, overrides in groups.items():
        scopes.append((key, judged_with(cfg, groups, key),
                       ": " + ", ".join(o.pattern for o in overrides)))
    return [
        Cell(timeseries(f"{title} burn rate ({long_window} / {short_window}){named}", [
            target(f"({without_shadows(cfg, recorded(cfg, q.error_ratio(window)))}) "
                   f"/ on (model) group_left () "
                   f"{own_budget}{scope}",
                   f"{{{{model}}}} {{{{model_version}}}} {window}")
            for window in (long_window, short_window)], "short",
            f"Error ratio / the model's own error budget over the windows of {alert}, shadow "
            f"versions left out as the alert leaves them out"
            f"{' for the models of ' + named[2:] if named else ''}; it fires when both exceed "
            f"{number(factor)} (dashed line).", limit=factor))
        for (long_window, short_window, factor), scope, named in scopes]


def _latency_objectives(cfg: Config) -> list[tuple[float, ModelOverride | None]]:
    """Each p99 threshold the config gives, in the order the objective rule takes them:
    the `models:` entries' own (the first that sets it wins), then the default."""
    return [*((float(o.values[P99]), o) for o in cfg.models.values() if P99 in o.values),
            (cfg.latency.p99_seconds, None)]


def _declared_p99_note(cfg: Config) -> str:
    """What the latency SLO stat adds when models may declare their p99 in code: it counts
    calls within the config's thresholds only (a histogram bucket must sit at a threshold
    known when the dashboard is generated), while InferwatchLatencyHigh judges the declared."""
    if not is_per_version(cfg, P99):
        return ""
    return (" A p99 threshold a model declares in code (objectives.from_code) is not followed "
            "here: its calls are counted against its config threshold, while "
            "InferwatchLatencyHigh and the p99 latency panel use the declared one.")


def _of_calls(cfg: Config, metric: str, period: str, *matchers: str) -> str:
    """Each model's increase of `metric` over `period`, its shadow versions' calls left out:
    the SLOs are kept to the calls someone waited for."""
    increase = f"increase({metric}{raw_sel(cfg, *matchers)}[{period}])"
    return f"sum by (model) ({without_shadows(cfg, increase)})"


def _within(cfg: Config, period: str) -> str:
    """Each model's share of calls within its own p99 threshold over `period`."""
    def ratio(seconds: float) -> str:
        # Prometheus 3 writes classic bucket bounds as floats (le="1.0"), 2.x as scraped ("1").
        bound = 'le=~"' + number(seconds).replace(".", "\\\\.") + '(\\\\.0+)?"'
        return (f"{_of_calls(cfg, 'inferwatch_request_duration_seconds_bucket', period, bound)}"
                f" / {_of_calls(cfg, 'inferwatch_request_duration_seconds_count', period)}")

    objectives = _latency_objectives(cfg)
    if len(objectives) == 1:
        return ratio(cfg.latency.p99_seconds)
    # `or` keeps the first term's series of a model, as the objective's own rule does.
    return " or ".join(f"({ratio(seconds)})" + (
        f" and on (model) {models_in(cfg, override)}" if override else "")
        for seconds, override in objectives)


def _alert_history(cfg: Config) -> list[dict[str, Any]]:
    firing = 'ALERTS{alertname=~"Inferwatch.+", alertstate="firing", ' + MODEL + "}"
    return [builtin_annotation(), prometheus_annotation(
        "inferwatch alerts", firing, "red", "{{alertname}} {{model}}",
        "alertname,severity,model")]


def slo(cfg: Config) -> dict[str, Any]:
    """Availability and latency SLOs, error budget, burn rates and the inferwatch alerts."""
    period = SLO_PERIOD
    # For a person: 1 - 0.999 is 0.0010000000000000009 in binary floating point.
    budget, own_budget = f"{1 - cfg.slo.availability:.6g}", own_error_budget()
    calls = "inferwatch_requests_total"
    errors = f"{_of_calls(cfg, calls, period, ERRORS)} / {_of_calls(cfg, calls, period)}"
    # Divided by each model's own budget, as its alerts are: with the default budget, a model
    # with a stricter objective would show a burn below the line while it pages.
    remaining = f"1 - ({errors}) / on (model) {own_budget}"
    p99 = number(cfg.latency.p99_seconds)
    thresholds = sorted({seconds for seconds, _ in _latency_objectives(cfg)})
    within_title = (f"Calls within {p99}s" if len(thresholds) == 1
                    else "Calls within each model's p99 threshold")
    availability = [
        Cell(stat(f"Availability over {period}", [target(f"1 - ({errors})", "{{model}}")],
                  "percentunit", "Calls that did not fail (every outcome but error: cancelled "
                  "calls count as available), a shadow version's left out; SLO "
                  f"{number(cfg.slo.availability)}."
                  + coloured_by_default(cfg, "slo.availability", "SLO",
                                        "the error budget remaining uses it"),
                  floor=cfg.slo.availability), 8, 5),
        Cell(stat(f"Error budget remaining ({period})", [target(remaining, "{{model}}")],
                  "percentunit", f"Share of each model's {period} error budget (1 - its "
                  f"availability objective; by default {budget} of calls) not yet spent.",
                  floor=0), 8, 5),
        Cell(stat(f"{within_title} over {period}", [target(_within(cfg, period), "{{model}}")],
                  "percentunit", f"Latency SLO: 99% of calls within the p99 threshold "
                  f"({p99}s by default; a models: entry's own for its models). Needs a "
                  f"latency bucket at {' and '.join(f'{number(t)}' for t in thresholds)}."
                  + _declared_p99_note(cfg),
                  floor=0.99), 8, 5),
        Cell(timeseries(f"Error budget remaining ({period})", [target(remaining, "{{model}}")],
                        "percentunit", "Dashed line: the budget is spent; below it, overspent.",
                        limit=0, signed=True), 24),
    ]
    burns = [
        *_burn_cells(cfg, "Fast", "InferwatchErrorBudgetBurnFast", "fast_burn"),
        *_burn_cells(cfg, "Slow", "InferwatchErrorBudgetBurnSlow", "slow_burn"),
    ]
    latency = [
        Cell(timeseries("p99 latency", [
            target(without_shadows(cfg, recorded(cfg, q.latency_quantile(cfg, 99))), MV),
            objective(cfg, P99)], "s",
            "The versions InferwatchLatencyHigh judges (shadows left out). Dashed line: its "
            "default threshold; objective: each selected model's own (its models: entry, or "
            "what it declares in code).",
            limit=cfg.latency.p99_seconds), 24),
    ]
    alerts = [
        Cell(table("Firing inferwatch alerts", [target(
            'ALERTS{alertname=~"Inferwatch.+", alertstate="firing", ' + MODEL + "}",
            instant=True, fmt="table")], "Alerts firing now, from Prometheus' ALERTS series; "
            "the annotations mark their history.",
            hide=("Time", "Value", "__name__", "alertstate")), 24, 8),
    ]
    return dashboard(cfg, "slo", "SLOs and alerts",
                     "Availability and latency SLOs per model, error budget, burn rates and "
                     "the inferwatch alerts, from the same config as the burn-rate alerts.",
                     [("Service level objectives", availability),
                       ("Burn rates", burns), ("Latency", latency),
                       ("Alerts", alerts)], annotations=_alert_history(cfg))
