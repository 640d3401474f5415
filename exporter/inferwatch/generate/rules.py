"""Prometheus recording and alerting rules as a pure function of the config.

Every alert is one row of :data:`ALERTS`; its runbook and dashboard links are added in
:func:`alert_rule`, the only place links are built.

>>> from inferwatch.generate.config import DEFAULT
>>> groups = recording_groups(DEFAULT)
>>> groups[0]["rules"][0]["record"]
'model:inferwatch_requests:rate5m'
>>> runbook_url(DEFAULT, "InferwatchGpuLost").endswith("#inferwatchgpulost")
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inferwatch.generate import promql as q
from inferwatch.generate.config import Config, alert_setting, duration_seconds
from inferwatch.generate.promql import MODEL_LABELS, exporter_sel, model_sel, number

# Prometheus template snippets used in annotations.
MODEL = "{{ $labels.model }} {{ $labels.model_version }}"
INSTANCE = "{{ $labels.job }}/{{ $labels.instance }}"
GPU = "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }}"
VALUE = '{{ printf "%.3g" $value }}'
PERCENT = "{{ $value | humanizePercentage }}"
DURATION = "{{ $value | humanizeDuration }}"

# Dashboards an alert can link to: key -> uid suffix (the dashboards module uses the same keys).
DASHBOARD_SUFFIXES = {"overview": "overview", "quality": "quality", "resources": "resources",
                      "slo": "slo"}


@dataclass(frozen=True)
class AlertDef:
    """One alert: defaults for severity and `for`, and its text as functions of the config."""

    name: str
    severity: str
    for_: str
    group: str
    dashboard: str
    per_model: bool
    expr: Callable[[Config], str]
    summary: str
    description: Callable[[Config], str]


def _burn_expr(cfg: Config, which: str) -> str:
    burn = getattr(cfg.slo, which)
    limit = f"({number(burn.factor)} * (1 - {number(cfg.slo.availability)}))"
    return (f"{q.error_ratio(burn.long_window)} > {limit}\n"
            f"and\n"
            f"{q.error_ratio(burn.short_window)} > {limit}")


def _burn_text(cfg: Config, which: str) -> str:
    burn = getattr(cfg.slo, which)
    return (f"{MODEL} failed {PERCENT} of calls over {burn.long_window} and still fails "
            f"over {burn.short_window}: more than {number(burn.factor)}x the error budget of "
            f"the {cfg.slo.availability * 100:.10g}% availability SLO.")


def _drift_expr(cfg: Config, metric: str, label: str, threshold: float) -> str:
    method = f'method="{cfg.drift.method}"'
    return (f"max by ({MODEL_LABELS}, {label}) (\n"
            f"  {metric}{model_sel(cfg, method)}\n"
            f"  and on (job, instance, {MODEL_LABELS})\n"
            f"  inferwatch_drift_window_observations{model_sel(cfg)}"
            f" >= {number(cfg.drift.min_observations)}\n"
            f") > {number(threshold)}")


def _no_traffic_expr(cfg: Config) -> str:
    rate = q.requests_rate(cfg)
    return (f"sum by (model) ({rate}) == 0\n"
            f"and on (model)\n"
            f"sum by (model) ({rate} offset {cfg.windows.no_traffic_lookback}) > 0")


ALERTS: tuple[AlertDef, ...] = (
    # --- availability -------------------------------------------------------------------------
    AlertDef(
        "InferwatchTargetDown", "critical", "5m", "availability", "overview", False,
        lambda c: f"up{model_sel(c)} == 0",
        f"Model target {INSTANCE} is down",
        lambda c: f"Prometheus cannot scrape {INSTANCE} (selector {c.selectors.model}): the "
                  f"model service is down or its /metrics endpoint fails.",
    ),
    AlertDef(
        "InferwatchExporterDown", "warning", "5m", "availability", "resources", False,
        lambda c: f"up{exporter_sel(c)} == 0",
        f"inferwatch exporter {INSTANCE} is down",
        lambda c: f"Prometheus cannot scrape the exporter {INSTANCE} (selector "
                  f"{c.selectors.exporter}): GPU and process metrics are missing.",
    ),
    AlertDef(
        "InferwatchNoTraffic", "warning", "15m", "availability", "overview", True,
        _no_traffic_expr,
        "Model {{ $labels.model }} receives no traffic",
        lambda c: f"Model {{{{ $labels.model }}}} served no calls in the last {c.windows.rate} "
                  f"but did {c.windows.no_traffic_lookback} ago.",
    ),
    AlertDef(
        "InferwatchErrorBudgetBurnFast", "critical", "2m", "availability", "overview", True,
        lambda c: _burn_expr(c, "fast_burn"),
        f"Model {MODEL} burns its error budget fast",
        lambda c: _burn_text(c, "fast_burn"),
    ),
    AlertDef(
        "InferwatchErrorBudgetBurnSlow", "critical", "15m", "availability", "overview", True,
        lambda c: _burn_expr(c, "slow_burn"),
        f"Model {MODEL} burns its error budget",
        lambda c: _burn_text(c, "slow_burn"),
    ),
    AlertDef(
        "InferwatchLatencyHigh", "warning", "10m", "availability", "overview", True,
        lambda c: f"{q.latency_quantile(c, 99)} > {number(c.latency.p99_seconds)}",
        f"Model {MODEL} p99 latency is high",
        lambda c: f"p99 latency of {MODEL} is {DURATION} over {c.windows.rate}, above the "
                  f"threshold of {number(c.latency.p99_seconds)}s.",
    ),
    AlertDef(
        "InferwatchStreamFirstItemSlow", "warning", "10m", "availability", "overview", True,
        lambda c: f"{q.first_item_quantile(c, 99)} > {number(c.latency.first_item_p99_seconds)}",
        f"Model {MODEL} is slow to start its streams",
        lambda c: f"p99 time to first item of {MODEL} streams is {DURATION} over "
                  f"{c.windows.rate}, above the objective of "
                  f"{number(c.latency.first_item_p99_seconds)}s.",
    ),
    # --- predictions and model identity -------------------------------------------------------
    AlertDef(
        "InferwatchInvalidPredictions", "critical", "5m", "predictions", "quality", True,
        lambda c: f"{q.invalid_ratio(c)} > {number(c.predictions.invalid_ratio)}",
        f"Model {MODEL} returns invalid predictions",
        lambda c: f"{PERCENT} of the rows {MODEL} predicted were invalid (nan, inf or out of "
                  f"range) over {c.windows.rate}; threshold "
                  f"{number(c.predictions.invalid_ratio)}.",
    ),
    AlertDef(
        "InferwatchModelStale", "warning", "1h", "predictions", "overview", True,
        lambda c: (f"time() - max by ({MODEL_LABELS}) "
                   f"(inferwatch_model_trained_timestamp_seconds{model_sel(c)})"
                   f" > {number(duration_seconds(c.predictions.max_model_age))}"),
        f"Model {MODEL} is stale",
        lambda c: f"{MODEL} was trained {DURATION} ago, longer than the "
                  f"{c.predictions.max_model_age} allowed.",
    ),
    AlertDef(
        "InferwatchTooManyVersionsServing", "warning", "1h", "predictions", "overview", True,
        lambda c: (f"count by (model) (max by ({MODEL_LABELS}) "
                   f"(inferwatch_model_info{model_sel(c)}))"
                   f" > {number(c.predictions.max_versions)}"),
        "Model {{ $labels.model }} serves {{ $value }} versions",
        lambda c: f"{{{{ $value }}}} versions of model {{{{ $labels.model }}}} serve at once; "
                  f"at most {number(c.predictions.max_versions)} expected. A rollout or canary "
                  f"may be stuck.",
    ),
    # --- data quality and drift ---------------------------------------------------------------
    AlertDef(
        "InferwatchMissingValuesSpike", "warning", "15m", "quality", "quality", True,
        lambda c: (f"{q.feature_ratio(c, 'inferwatch_feature_missing')}"
                   f" > {number(c.data_quality.missing_ratio)}"),
        f"Feature {{{{ $labels.feature }}}} of {MODEL} is often missing",
        lambda c: f"Feature {{{{ $labels.feature }}}} is missing in {PERCENT} of the rows "
                  f"{MODEL} received over {c.windows.rate}; threshold "
                  f"{number(c.data_quality.missing_ratio)}.",
    ),
    AlertDef(
        "InferwatchOutOfRangeSpike", "warning", "15m", "quality", "quality", True,
        lambda c: (f"{q.feature_ratio(c, 'inferwatch_feature_out_of_range')}"
                   f" > {number(c.data_quality.out_of_range_ratio)}"),
        f"Feature {{{{ $labels.feature }}}} of {MODEL} is often out of range",
        lambda c: f"Feature {{{{ $labels.feature }}}} falls outside its reference range in "
                  f"{PERCENT} of the rows {MODEL} received over {c.windows.rate}; threshold "
                  f"{number(c.data_quality.out_of_range_ratio)}.",
    ),
    AlertDef(
        "InferwatchFeatureDrift", "warning", "30m", "quality", "quality", True,
        lambda c: _drift_expr(c, "inferwatch_feature_drift", "feature",
                              c.drift.feature_threshold),
        f"Feature {{{{ $labels.feature }}}} of {MODEL} drifts",
        lambda c: f"{c.drift.method} drift of feature {{{{ $labels.feature }}}} is {VALUE} "
                  f"against the training reference (threshold "
                  f"{number(c.drift.feature_threshold)}, windows of at least "
                  f"{number(c.drift.min_observations)} rows).",
    ),
    AlertDef(
        "InferwatchPredictionDrift", "warning", "30m", "quality", "quality", True,
        lambda c: _drift_expr(c, "inferwatch_prediction_drift", "output",
                              c.drift.prediction_threshold),
        f"Predictions {{{{ $labels.output }}}} of {MODEL} drift",
        lambda c: f"{c.drift.method} drift of output {{{{ $labels.output }}}} is {VALUE} "
                  f"against the training reference (threshold "
                  f"{number(c.drift.prediction_threshold)}, windows of at least "
                  f"{number(c.drift.min_observations)} rows).",
    ),
    AlertDef(
        "InferwatchAccuracyDrop", "warning", "30m", "quality", "quality", True,
        lambda c: (f"{q.accuracy(c)} < {number(c.accuracy.min_ratio)}\n"
                   f"and\n"
                   f"{q.outcomes_increase(c)} >= {number(c.accuracy.min_outcomes)}"),
        f"Accuracy of {MODEL} dropped",
        lambda c: f"{MODEL} was right in {PERCENT} of the outcomes of the last "
                  f"{c.accuracy.window}, below {number(c.accuracy.min_ratio)} (windows of at "
                  f"least {number(c.accuracy.min_outcomes)} outcomes).",
    ),
    # --- resources and inferwatch itself ------------------------------------------------------
    AlertDef(
        "InferwatchGpuMemoryNearFull", "warning", "10m", "resources", "resources", False,
        lambda c: f"{q.gpu_memory_ratio()} > {number(c.gpu.memory_used_ratio)}",
        f"{GPU} memory is nearly full",
        lambda c: f"{GPU} uses {PERCENT} of its memory, above "
                  f"{number(c.gpu.memory_used_ratio)}; the next batch may fail with out of "
                  f"memory.",
    ),
    AlertDef(
        "InferwatchGpuTemperatureHigh", "warning", "10m", "resources", "resources", False,
        lambda c: (f"inferwatch_gpu_temperature_celsius{exporter_sel(c)}"
                   f" > {number(c.gpu.temperature_celsius)}"),
        f"{GPU} runs hot",
        lambda c: f"{GPU} is at {VALUE} degrees celsius, above "
                  f"{number(c.gpu.temperature_celsius)}; it will throttle.",
    ),
    AlertDef(
        "InferwatchGpuLost", "critical", "1m", "resources", "resources", False,
        lambda c: f"inferwatch_gpu_up{exporter_sel(c)} == 0",
        f"{GPU} is lost",
        lambda c: f"{GPU} no longer answers NVML (selector {c.selectors.exporter}): the device "
                  f"fell off the bus or the driver failed.",
    ),
    AlertDef(
        "InferwatchGpuReadErrors", "warning", "15m", "resources", "resources", False,
        lambda c: (f"sum by (job, instance, gpu, uuid, field, reason) "
                   f"(rate(inferwatch_gpu_nvml_errors_total{exporter_sel(c)}[{c.windows.rate}]))"
                   f" > 0"),
        "NVML reads of {{ $labels.field }} fail on GPU {{ $labels.gpu }} on "
        "{{ $labels.instance }}",
        lambda c: f"Reading {{{{ $labels.field }}}} of GPU {{{{ $labels.gpu }}}} "
                  f"({{{{ $labels.uuid }}}}) on {INSTANCE} keeps failing with "
                  f"{{{{ $labels.reason }}}} (selector {c.selectors.exporter}); the GPU still "
                  f"answers, but that field is missing.",
    ),
    AlertDef(
        "InferwatchCollectorFailing", "warning", "10m", "resources", "resources", False,
        lambda c: f"inferwatch_exporter_collector_success{exporter_sel(c)} == 0",
        "inferwatch collector {{ $labels.collector }} fails on {{ $labels.instance }}",
        lambda c: f"The {{{{ $labels.collector }}}} collector of exporter {INSTANCE} has failed "
                  f"every scrape for a while (selector {c.selectors.exporter}); its metrics "
                  f"are missing.",
    ),
    AlertDef(
        "InferwatchInternalErrors", "warning", "15m", "resources", "resources", False,
        lambda c: (f"sum by (job, instance, component) "
                   f"(rate(inferwatch_internal_errors_total{model_sel(c)}[{c.windows.rate}]))"
                   f" > {number(c.internal.errors_per_second)}"),
        "inferwatch component {{ $labels.component }} fails on {{ $labels.instance }}",
        lambda c: f"inferwatch swallowed {VALUE} faults per second in "
                  f"{{{{ $labels.component }}}} on {INSTANCE} over {c.windows.rate} (threshold "
                  f"{number(c.internal.errors_per_second)}); predictions still run but some "
                  f"metrics may be missing.",
    ),
)

ALERT_NAMES: frozenset[str] = frozenset(alert.name for alert in ALERTS)


def anchor(alert_name: str) -> str:
    """The runbook section anchor of an alert.

    >>> anchor("InferwatchGpuLost")
    'inferwatchgpulost'
    """
    return alert_name.lower()


def runbook_url(cfg: Config, alert_name: str) -> str:
    """The runbook link of an alert: the one place runbook links are built."""
    return cfg.links.runbook_url.format(anchor=anchor(alert_name))


def dashboard_uid(cfg: Config, key: str) -> str:
    """The uid of a generated dashboard, shared by the dashboards and the alert links.

    >>> from inferwatch.generate.config import DEFAULT
    >>> dashboard_uid(DEFAULT, "overview")
    'inferwatch-overview'
    """
    return f"{cfg.dashboards.uid_prefix}-{DASHBOARD_SUFFIXES[key]}"


def dashboard_url(cfg: Config, alert: AlertDef) -> str:
    """The dashboard link of an alert, narrowed to the alert's model when it has one."""
    url = f"{cfg.links.grafana_url.rstrip('/')}/d/{dashboard_uid(cfg, alert.dashboard)}"
    if alert.per_model:
        url += "?var-model={{ $labels.model | urlquery }}"
    return url


def alert_rule(cfg: Config, alert: AlertDef) -> dict[str, Any]:
    """The Prometheus rule of one alert, with its severity, `for` and links."""
    return {
        "alert": alert.name,
        "expr": alert.expr(cfg),
        "for": alert_setting(cfg, alert.name, "for_", alert.for_),
        "labels": {"severity": alert_setting(cfg, alert.name, "severity", alert.severity)},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description(cfg),
            "runbook_url": runbook_url(cfg, alert.name),
            "dashboard_url": dashboard_url(cfg, alert),
        },
    }


def alerting_groups(cfg: Config) -> list[dict[str, Any]]:
    """Alert rule groups, one per area, in table order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for alert in ALERTS:
        groups.setdefault(alert.group, []).append(alert_rule(cfg, alert))
    return [{"name": f"inferwatch-{name}", "rules": rules} for name, rules in groups.items()]


def _windows(cfg: Config) -> list[str]:
    windows = {cfg.windows.rate, cfg.slo.fast_burn.short_window, cfg.slo.fast_burn.long_window,
               cfg.slo.slow_burn.short_window, cfg.slo.slow_burn.long_window}
    return sorted(windows, key=lambda w: (duration_seconds(w), w))


def _recording_rules(cfg: Config) -> list[tuple[str, str]]:
    m, w = model_sel(cfg), cfg.windows.rate
    by_model = f"sum by ({MODEL_LABELS})"
    rules = [(q.requests_rate(cfg), f"{by_model} (rate(inferwatch_requests_total{m}[{w}]))")]
    for window in _windows(cfg):
        errors = model_sel(cfg, 'outcome="error"')
        rules.append((q.error_ratio(window),
                      f"{by_model} (rate(inferwatch_requests_total{errors}[{window}]))\n"
                      f"/\n"
                      f"{by_model} (rate(inferwatch_requests_total{m}[{window}]))"))
    for quantile in (50, 90, 99):
        rules.append((q.latency_quantile(cfg, quantile),
                      f"histogram_quantile({quantile / 100}, sum by ({MODEL_LABELS}, le) "
                      f"(rate(inferwatch_request_duration_seconds_bucket{m}[{w}])))"))
    for quantile in (50, 99):
        rules.append((q.first_item_quantile(cfg, quantile),
                      f"histogram_quantile({quantile / 100}, sum by ({MODEL_LABELS}, le) "
                      f"(rate(inferwatch_stream_first_item_seconds_bucket{m}[{w}])))"))
    for quantile in (50, 99):
        rules.append((q.stage_latency_quantile(cfg, quantile),
                      f"histogram_quantile({quantile / 100}, sum by ({MODEL_LABELS}, stage, le) "
                      f"(rate(inferwatch_stage_duration_seconds_bucket{m}[{w}])))"))
    rows = q.rows_rate(cfg)
    rules.append((rows, f"{by_model} (rate(inferwatch_batch_size_sum{m}[{w}]))"))
    rules.append((q.invalid_ratio(cfg),
                  f"{by_model} (rate(inferwatch_invalid_predictions_total{m}[{w}]))\n/\n{rows}"))
    for counter in ("inferwatch_feature_missing", "inferwatch_feature_out_of_range"):
        rules.append((q.feature_ratio(cfg, counter),
                      f"sum by ({MODEL_LABELS}, feature) (rate({counter}_total{m}[{w}]))\n"
                      f"/ on ({MODEL_LABELS}) group_left\n{rows}"))
    a = cfg.accuracy.window
    correct = model_sel(cfg, 'result="correct"')
    rules.append((q.accuracy(cfg),
                  f"{by_model} (rate(inferwatch_outcomes_total{correct}[{a}]))\n"
                  f"/\n"
                  f"{by_model} (rate(inferwatch_outcomes_total{m}[{a}]))"))
    rules.append((q.outcomes_increase(cfg),
                  f"{by_model} (increase(inferwatch_outcomes_total{m}[{a}]))"))
    e = exporter_sel(cfg)
    rules.append((q.gpu_memory_ratio(),
                  f"inferwatch_gpu_memory_used_bytes{e}\n/\ninferwatch_gpu_memory_total_bytes{e}"))
    return rules


def recording_groups(cfg: Config) -> list[dict[str, Any]]:
    """The recording rule group: every expression the alerts and dashboards reuse."""
    rules = [{"record": name, "expr": expr} for name, expr in _recording_rules(cfg)]
    return [{"name": "inferwatch-recording", "rules": rules}]


def recording_names(cfg: Config) -> list[str]:
    """Names of the recording rules for a config."""
    return [name for name, _ in _recording_rules(cfg)]
