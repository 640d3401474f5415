"""The alert catalogue: every generated alert, one :class:`AlertDef` row of :data:`ALERTS`.

Each row holds an alert's defaults and its expression and text as functions of the config;
the expressions that take more than a line are built by the helpers above the table. Apart
from the rules module, which renders the rows into rule groups (with their links and a copy
per model override), so the whole catalogue reads in one place.

>>> [alert.name for alert in ALERTS][:2]
['InferwatchTargetDown', 'InferwatchExporterDown']
>>> print(block("up == 0"))
(
  up == 0
)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from inferwatch.generate import baselines
from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config
from inferwatch.generate.objectives import (
    compare,
    is_overridden,
    join_objective,
    objective_of,
    threshold_text,
)
from inferwatch.generate.promql import (
    MODEL_LABELS,
    block,
    exporter_sel,
    model_sel,
    number,
    shown,
)
from inferwatch.generate.rules_pushed import (
    BATCH_RUNS_PANEL,
    batch_run_failed_expr,
    push_periods_text,
    pushed_availability_text,
    pushgateway_expr,
)

# Alerts whose series carry model_version judge each version by its own objective, and say so.
_compare = functools.partial(compare, per_version=True)
_threshold = functools.partial(threshold_text, per_version=True)

# Prometheus template snippets used in annotations.
MODEL = "{{ $labels.model }} {{ $labels.model_version }}"
INSTANCE = "{{ $labels.job }}/{{ $labels.instance }}"
GPU = "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }}"
VALUE = '{{ printf "%.3g" $value }}'
PERCENT = "{{ $value | humanizePercentage }}"
DURATION = "{{ $value | humanizeDuration }}"

# Drops that are the challenger failing have an alert of their own (InferwatchShadowFailing).
QUEUE_DROPS = '{reason!~"error|timeout|crashed"}'
CHALLENGER = "{{ $labels.model }} {{ $labels.model_version }}"
CHAMPION = "{{ $labels.model }} {{ $labels.champion_version }}"

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
    # Whether the config generates the alert at all (a baseline signal can be switched off).
    enabled: Callable[[Config], bool] = field(default=lambda cfg: True)
    # How long it keeps firing once its condition stops holding (None: not at all).
    keep_firing_for: Callable[[Config], str | None] = field(default=lambda cfg: None)
    # The title of the one panel of `dashboard` the link opens, where the dashboard's
    # variables cannot select the alert's series (a batch job's are no scraped service's).
    panel: str = ""


def _burn_expr(cfg: Config, which: str) -> str:
    burn = getattr(cfg.slo, which)

    def limit(availability: str) -> str:
        return f"({number(burn.factor)} * (1 - {availability}))"

    burning = (f"{_compare(cfg, q.error_ratio(burn.long_window), '>', 'slo.availability', limit)}"
               f"\nand\n"
               f"{_compare(cfg, q.error_ratio(burn.short_window), '>', 'slo.availability', limit)}")
    if not burn.min_requests:
        return burning
    # One failed call of a model that served a handful makes both ratios 100%: a critical
    # page for what no SLO counts as spending its budget.
    calls = (f"sum by ({MODEL_LABELS}) "
             f"(increase(inferwatch_requests_total{model_sel(cfg)}[{burn.long_window}]))")
    return (f"{block(burning)}\nand on ({MODEL_LABELS})\n"
            f"{calls} >= {number(burn.min_requests)}")


def _burn_alert_expr(cfg: Config, which: str) -> str:
    burn = getattr(cfg.slo, which)
    return _primary(cfg, _burn_expr(cfg, which), burn.long_window, burn.short_window)


def _accuracy_drop_expr(cfg: Config) -> str:
    """Live accuracy against the model's own validation accuracy less `accuracy.max_drop`,
    or, for a model whose reference carries none, against the fixed `accuracy.min_ratio`."""
    accuracy, validation = q.accuracy(cfg), q.validation_accuracy()
    if is_overridden(cfg, "accuracy.max_drop"):
        drop = (f"{join_objective(cfg, 'accuracy.max_drop', per_version=True)} "
                f"{objective_of(cfg, 'accuracy.max_drop', per_version=True)}")
    else:
        drop = number(cfg.accuracy.max_drop)
    return (f"(\n"
            f"  {accuracy} < ({validation} - {drop})\n"
            f"  or\n"
            f"  ({_compare(cfg, accuracy, '<', 'accuracy.min_ratio')}\n"
            f"   unless on ({MODEL_LABELS}) {validation})\n"
            f")\n"
            f"and\n"
            f"{_compare(cfg, q.outcomes_increase(cfg), '>=', 'accuracy.min_outcomes')}")


# A regression model's bounds on its live mean absolute error: a factor of its reference's,
# and an optional ceiling in the unit of its output.
MAX_ERROR_RATIO, MAX_ERROR = "accuracy.max_error_ratio", "accuracy.max_error"


def has_error_ceiling(cfg: Config) -> bool:
    """Whether some model may be held to accuracy.max_error: the default sets one, or a
    models: entry does."""
    return cfg.accuracy.max_error is not None or is_overridden(cfg, MAX_ERROR)


def error_ratio_of(cfg: Config) -> str:
    """What a validation error is multiplied by: the number, or each model's own joined."""
    if not is_overridden(cfg, MAX_ERROR_RATIO):
        return number(cfg.accuracy.max_error_ratio)
    return f"{join_objective(cfg, MAX_ERROR_RATIO)} {objective_of(cfg, MAX_ERROR_RATIO)}"


def _error_rise_expr(cfg: Config) -> str:
    """Live mean absolute error above the model's own validation error times
    `accuracy.max_error_ratio`, or above `accuracy.max_error` where the model has one.

    A classifier joins no absolute error, so it has no mean to compare; a regression model
    whose reference carries no validation error is judged by the ceiling alone, or not at
    all."""
    mean = q.outcome_error_mean(cfg)
    bound = f"  {mean} > ({q.validation_error()} * {error_ratio_of(cfg)})\n"
    if has_error_ceiling(cfg):
        bound += f"  or\n  {_compare(cfg, mean, '>', MAX_ERROR)}\n"
    return (f"(\n{bound})\n"
            f"and\n"
            f"{_compare(cfg, q.outcome_error_count(cfg), '>=', 'accuracy.min_outcomes')}")


def _error_rise_text(cfg: Config) -> str:
    """The bounds InferwatchRegressionErrorRise judged the alert's version by, each where it
    has it: its validation error times the ratio, and the ceiling."""
    validation = (f"{{{{ with printf `{q.validation_error()}{{model=%q,model_version=%q}}` "
                  f"$labels.model $labels.model_version | query }}}}"
                  f"{threshold_text(cfg, MAX_ERROR_RATIO)}x its validation error of "
                  f"{{{{ . | first | value | printf \"%.3g\" }}}}; {{{{ end }}}}")
    if not is_overridden(cfg, MAX_ERROR):
        ceiling = ("" if cfg.accuracy.max_error is None
                   else f"ceiling {number(cfg.accuracy.max_error)}; ")
    else:
        ceiling = (f"{{{{ with printf `{q.objective(MAX_ERROR)}{{model=%q}}` $labels.model "
                   f"| query }}}}ceiling {{{{ . | first | value | printf \"%g\" }}}}; "
                   f"{{{{ end }}}}")
    return (f"{MODEL} was off by {VALUE} on average (mean absolute error) over the outcomes "
            f"of the last {cfg.accuracy.window}, above its bound ({validation}{ceiling}"
            f"windows of at least {_threshold(cfg, 'accuracy.min_outcomes')} outcomes).")


def _burn_text(cfg: Config, which: str) -> str:
    burn = getattr(cfg.slo, which)
    slo = _threshold(cfg, "slo.availability", f"{q.percent(cfg.slo.availability)}%",
                         "humanizePercentage")
    return (f"{MODEL} failed {PERCENT} of calls over {burn.long_window} and still fails "
            f"over {burn.short_window}: more than {number(burn.factor)}x the error budget of "
            f"the {slo} availability SLO.")


def _drift_expr(cfg: Config, metric: str, label: str, key: str) -> str:
    method = f'method="{cfg.drift.method}"'
    observations = _compare(cfg, f"inferwatch_drift_window_observations{model_sel(cfg)}", ">=",
                           "drift.min_observations")
    sparse = ""
    if label == "feature":
        # A feature missing from most rows is scored from the few values it has. Left out
        # only where its count says so: a target of an older release exports none.
        few = _compare(cfg, f"inferwatch_feature_drift_observations{model_sel(cfg)}", "<",
                       "drift.min_observations")
        sparse = (f"  unless on (job, instance, {MODEL_LABELS}, feature)\n"
                  f"  ({few})\n")
    drift = (f"max by ({MODEL_LABELS}, {label}) (\n"
             f"  {metric}{model_sel(cfg, method)}\n"
             f"  and on (job, instance, {MODEL_LABELS})\n"
             f"  {observations}\n"
             f"{sparse}"
             f")")
    return _compare(cfg, drift, ">", key)


def _fresh_increase(series: str, by: str, window: str, up: str) -> str:
    # increase() needs two samples, so a series born at its first count would never show it:
    # a series with no sample in the window before this one counts as new as well. Not just
    # one window ago: a scrape gap there (Prometheus restarted, the target unreachable for
    # more than the lookback) would make every old count look new and fire once more.
    # Neither sees a series that came back within two windows of its end, at a count it
    # had before (an exporter restarted, then the same Xid once more: 1 again): the third
    # term holds for a window after any minute the series was there and a minute before
    # was not, while Prometheus did scrape its target then (`up`), so a gap of its own is
    # no appearance.
    appeared = f"({series} unless {series} offset 1m) and on (job, instance) {up} offset 1m"
    return (f"sum by ({by}) (increase({series}[{window}])) > 0\n"
            f"or\n"
            f"sum by ({by}) ({series} unless last_over_time({series}[{window}] offset {window}))"
            f" > 0\n"
            f"or\n"
            f"sum by ({by}) (max_over_time(({appeared})[{window}:1m])) > 0")


def _absent_targets(matchers: str) -> str:
    """1 with label `selector` (the matchers' text) while no `up` series matches them.

    >>> print(_absent_targets('job=~"model-.*"'))
    label_replace(absent(up{job=~"model-.*"}), "selector", "job=~\\"model-.*\\"", "", "")
    """
    # label_replace expands `$name` in its replacement as a capture group (empty here), so a
    # selector's own `$` is doubled to stand for itself.
    return (f"label_replace(absent(up{q.selector(matchers)}), \"selector\", "
            f"{q.quoted(matchers.replace('$', '$$'))}, \"\", \"\")")


def _shadow_info(cfg: Config) -> str:
    return q.shadow_versions(cfg)


def _primary(cfg: Config, expr: str, *windows: str) -> str:
    """`expr` without shadow models: a challenger has alerts of its own and never pages.

    `windows`: every window `expr` reads (none where it reads only gauges). Its series
    outlive a shadow removed or dead by that long, while the shadow's info series ends at
    once; so a version that was a shadow within the longest is left out too, unless it was
    promoted. One rate window more: the recording rules run in a group of their own, and may
    hand this rule a series up to one evaluation older than the info it reads.
    """
    longest = max((duration_seconds(window) for window in windows), default=0.0)
    memory = baselines.duration_text(longest + duration_seconds(cfg.windows.rate))
    return f"{block(expr)}\nunless on ({MODEL_LABELS})\n{q.recent_shadow_versions(cfg, memory)}"


def _versions_serving_expr(cfg: Config) -> str:
    # windows.versions_serving bridges the gaps between a quiet canary's calls, but a retired
    # version also counts for that long after its last call: well under the alert's `for`
    # (checked), or a rollout that overlaps for a moment would fire.
    serving = _primary(cfg, _serving_versions(cfg), cfg.windows.versions_serving)
    return compare(cfg, f"count by (model) {block(serving)}", ">", "predictions.max_versions")


def _shadow_better_expr(cfg: Config) -> str:
    gain = (f"{q.shadow_accuracy(cfg, 'shadow')}\n-\n{q.shadow_accuracy(cfg, 'champion')}\n"
            f"> {number(cfg.shadow.min_accuracy_gain)}")
    return f"{block(gain)}\nand\n{q.shadow_outcomes(cfg)} >= {number(cfg.shadow.min_outcomes)}"


# Input errors that mean the inputs no longer fit the reference's schema: a column gone or
# renamed, a value of another type, a batch of another width or shape. Not extra_column (a
# column added upstream is harmless to a model that picks its columns by name, and a renamed
# one also counts as missing), empty_batch (a probe, an empty page of work) nor non_finite
# (an infinity is out of range: InferwatchOutOfRangeSpike's).
SCHEMA_ERRORS = ("missing_column", "wrong_type", "wrong_width", "wrong_shape")


def input_error_ratio(cfg: Config) -> str:
    """The recording rule of input errors per call, by reason."""
    return q.record_name("model_reason", "inferwatch_input_errors", f"ratio_rate{cfg.windows.rate}")


def _schema_errors_expr(cfg: Config) -> str:
    reasons = q.selector(f"reason=~{q.quoted('|'.join(SCHEMA_ERRORS))}")
    return _primary(cfg, _compare(cfg, f"{input_error_ratio(cfg)}{reasons}", ">",
                                  "data_quality.schema_error_ratio"), cfg.windows.rate)


def _serving_versions(cfg: Config) -> str:
    """One series per version whose calls rose within windows.versions_serving."""
    # A version serves while its calls rise, not while its inferwatch_model_info lasts: that
    # can outlive the version (a worker's files kept across a reload, a monitor of the old
    # version still registered), its counters then flat.
    calls = f"inferwatch_requests_total{model_sel(cfg)}"
    return (f"sum by ({MODEL_LABELS}) (increase({calls}[{cfg.windows.versions_serving}]))"
            " > 0")


def _model_stale_expr(cfg: Config) -> str:
    # Gated on calls: a version never called, or retired by a swap in the same process, keeps
    # exporting its training time, and would stay stale for as long as the process runs.
    age = (f"time() - max by ({MODEL_LABELS}) "
           f"(inferwatch_model_trained_timestamp_seconds{model_sel(cfg)})")
    stale = _compare(cfg, age, ">", "predictions.max_model_age")
    return _primary(cfg, f"{block(stale)}\nand on ({MODEL_LABELS})\n{_serving_versions(cfg)}",
                    cfg.windows.versions_serving)


def _no_traffic_expr(cfg: Config) -> str:
    rate, lookback, m = q.requests_rate(cfg), cfg.windows.no_traffic_lookback, model_sel(cfg)
    before = f"sum by (model) ({rate} offset {lookback})"
    # A model whose every replica is gone (scaled to zero, evicted, pods stuck pending) has no
    # series left at all, and no target either for InferwatchTargetDown: it serves nothing
    # as surely as one whose counters stand still. One whose target is down is left to
    # InferwatchTargetDown, which says why.
    return (f"(\n"
            f"  sum by (model) ({rate}) == 0\n"
            f"  or\n"
            f"  (\n"
            f"    {before} * 0\n"
            f"    unless on (model)\n"
            f"    sum by (model) ({rate})\n"
            f"    unless on (model)\n"
            f"    group by (model) (\n"
            f"      max_over_time(inferwatch_model_info{m}[{lookback}])\n"
            f"      and on (job, instance)\n"
            f"      up{m} == 0\n"
            f"    )\n"
            f"  )\n"
            f")\n"
            f"and on (model)\n"
            f"{before} > 0")


def target_models(cfg: Config) -> str:
    """The recording rule naming the models each target serves, kept while it is down."""
    return q.record_name("instance_model", "inferwatch_model_info", "served")


def _served_within_lookback(cfg: Config) -> str:
    m, lookback = model_sel(cfg), cfg.windows.no_traffic_lookback
    return f"group by (job, instance, model) (max_over_time(inferwatch_model_info{m}[{lookback}]))"


def target_models_expr(cfg: Config) -> str:
    """The models a target serves now, or served when it went down, as long as it stays down.

    A failed scrape ends the target's series at once, so its models are read from this
    rule's own previous output: a down target keeps the models it had for as long as it stays
    down, however long that is. Where the rule has no output for a down target (its first
    evaluations after Prometheus restarted), the models it served within the lookback.
    """
    m = model_sel(cfg)
    down = f"and on (job, instance)\n  up{m} == 0"
    return (f"group by (job, instance, model) (inferwatch_model_info{m})\n"
            f"or\n"
            f"(\n  {target_models(cfg)}\n  {down}\n)\n"
            f"or on (job, instance)\n"
            f"(\n  {_served_within_lookback(cfg)}\n  {down}\n)")


def _down_target_models(cfg: Config, indent: str) -> str:
    """One series per model a down target served, with the target's job and instance."""
    m = model_sel(cfg)
    # The lookback stands in for the recorded models until their rule has run (right after
    # Prometheus restarted; the rule groups run independently of each other).
    return (f"(up{m} == 0)\n"
            f"* on (job, instance) group_right\n"
            f"group by (job, instance, model) (\n"
            f"  {target_models(cfg)}\n"
            f"  or on (job, instance)\n"
            f"  {_served_within_lookback(cfg)}\n"
            f")").replace("\n", "\n" + indent)


def _target_down_expr(cfg: Config) -> str:
    m = model_sel(cfg)
    # A target that served models fires once per model, as long as it stays down; one that
    # never served any fires once, unlabelled. The per-model alerts add up every replica and
    # carry no instance, so a down replica says nothing about them while another one serves:
    # the model fires once more, without job and instance, only while none of its targets is
    # up, and that is the series Alertmanager's inhibit rule matches on `model`.
    return (f"{_down_target_models(cfg, '')}\n"
            f"or on (job, instance)\n"
            f"up{m} == 0\n"
            f"or\n"
            f"(\n"
            f"  group by (model) (\n"
            f"    {_down_target_models(cfg, '    ')}\n"
            f"  ) * 0\n"
            f"  unless on (model)\n"
            f"  (inferwatch_model_info{m} and on (job, instance) up{m} == 1)\n"
            f")")


ALERTS: tuple[AlertDef, ...] = (
    # --- availability -------------------------------------------------------------------------
    AlertDef(
        name="InferwatchTargetDown", severity="critical", for_="5m", group="availability",
        dashboard="overview", per_model=False,
        expr=_target_down_expr,
        summary=("{{ if $labels.instance }}Model target " + INSTANCE + " is down{{ else }}"
                 "Every target of model {{ $labels.model }} is down{{ end }}"),
        description=lambda c: (
            "{{ if $labels.instance }}"
            f"Prometheus cannot scrape {INSTANCE} (selector {shown(c.selectors.model)}): the "
            f"model service is down or its /metrics endpoint fails."
            "{{ if $labels.model }} It served model {{ $labels.model }} when it went down."
            "{{ end }}{{ else }}"
            f"Prometheus can scrape none of the targets (selector {shown(c.selectors.model)}) "
            "that served model {{ $labels.model }}: Alertmanager holds back the model's "
            "warnings while this fires.{{ end }}"),
    ),
    AlertDef(
        name="InferwatchExporterDown", severity="warning", for_="5m", group="availability",
        dashboard="resources", per_model=False,
        expr=lambda c: f"up{exporter_sel(c)} == 0",
        summary=f"inferwatch exporter {INSTANCE} is down",
        description=lambda c: (
            f"Prometheus cannot scrape the exporter {INSTANCE} (selector "
            f"{shown(c.selectors.exporter)}): GPU and process metrics are missing."),
    ),
    AlertDef(
        name="InferwatchTargetMissing", severity="warning", for_="10m", group="availability",
        dashboard="overview", per_model=False,
        # Only while Prometheus scrapes something at all: right after it starts, before its
        # first scrapes, every job is absent.
        # absent() keeps only a selector's equality matchers as labels: with a regex job or
        # none, both sides would be the same empty label set, one alert for either, naming
        # neither. The `selector` label says which selector has no target.
        expr=lambda c: (f"(\n  {_absent_targets(c.selectors.model)}\n  or\n  "
                        f"{_absent_targets(c.selectors.exporter)}\n)\nand on ()\ncount(up)"),
        summary="No target matches {{ $labels.selector }}",
        description=lambda c: (
            "Prometheus has no scrape target at all that matches {{ $labels.selector }} "
            f"(selectors.model {shown(c.selectors.model)}, selectors.exporter "
            f"{shown(c.selectors.exporter)}): service discovery lost it, so InferwatchTargetDown "
            "cannot fire for it either."),
    ),
    AlertDef(
        name="InferwatchPushgatewayGroupStale", severity="warning", for_="5m",
        group="availability", dashboard="overview", per_model=False,
        panel=BATCH_RUNS_PANEL,
        expr=pushgateway_expr,
        summary="Pushed group {{ $labels.job }} {{ $labels.model }} is stale",
        # A group whose every push failed has push_time_seconds 0: its age is time() itself.
        description=lambda c: (
            f"The group {{{{ $labels.job }}}} {{{{ $labels.model }}}} "
            f"{{{{ if eq $value (query `time()` | first | value) }}}}was never pushed to the "
            f"Pushgateway successfully{{{{ else }}}}was last pushed to the Pushgateway "
            f"{DURATION} ago, longer than its job's expected period{{{{ end }}}} "
            f"({push_periods_text(c)}): the batch job stopped running or cannot push."),
    ),
    AlertDef(
        name="InferwatchBatchRunFailed", severity="critical", for_="5m",
        group="availability", dashboard="overview", per_model=True,
        panel=BATCH_RUNS_PANEL,
        expr=batch_run_failed_expr,
        summary="The last run of {{ $labels.job }} failed for model {{ $labels.model }}",
        description=lambda c: (
            f"The last run of batch job {{{{ $labels.job }}}} pushed {PERCENT} of model "
            f"{{{{ $labels.model }}}}'s calls as errors, more than the whole error budget of "
            f"the {pushed_availability_text(c)} availability SLO (slo.availability): the "
            f"job failed, or its model did. It holds until a run pushes fewer errors."),
    ),
    AlertDef(
        name="InferwatchNoTraffic", severity="warning", for_="15m", group="availability",
        dashboard="overview", per_model=True,
        expr=_no_traffic_expr,
        summary="Model {{ $labels.model }} receives no traffic",
        description=lambda c: (
            f"Model {{{{ $labels.model }}}} served no calls in the last {c.windows.rate} "
            f"but did {c.windows.no_traffic_lookback} ago."),
    ),
    AlertDef(
        name="InferwatchErrorBudgetBurnFast", severity="critical", for_="2m", group="availability",
        dashboard="overview", per_model=True,
        expr=lambda c: _burn_alert_expr(c, "fast_burn"),
        # A model of little traffic burning steadily has an error in the short window only
        # now and then: the alert paged and resolved on each one, a page every few minutes
        # for one unchanging condition. It holds for a short window past the last.
        keep_firing_for=lambda c: c.slo.fast_burn.short_window,
        summary=f"Model {MODEL} burns its error budget fast",
        description=lambda c: _burn_text(c, "fast_burn"),
    ),
    AlertDef(
        name="InferwatchErrorBudgetBurnSlow", severity="critical", for_="15m", group="availability",
        dashboard="overview", per_model=True,
        expr=lambda c: _burn_alert_expr(c, "slow_burn"),
        # A model of little traffic burning steadily has an error in the short window only
        # now and then: the alert paged and resolved on each one, a page every few minutes
        # for one unchanging condition. It holds for a short window past the last.
        keep_firing_for=lambda c: c.slo.slow_burn.short_window,
        summary=f"Model {MODEL} burns its error budget",
        description=lambda c: _burn_text(c, "slow_burn"),
    ),
    AlertDef(
        name="InferwatchLatencyHigh", severity="warning", for_="10m", group="availability",
        dashboard="overview", per_model=True,
        expr=lambda c: _primary(c, _compare(c, q.latency_quantile(c, 99), ">",
                                           "latency.p99_seconds"), c.windows.rate),
        summary=f"Model {MODEL} p99 latency is high",
        description=lambda c: (
            f"p99 latency of {MODEL} is {DURATION} over {c.windows.rate}, above the "
            f"threshold of {_threshold(c, 'latency.p99_seconds')}s."),
    ),
    AlertDef(
        name="InferwatchStreamFirstItemSlow", severity="warning", for_="10m",
        group="availability", dashboard="overview", per_model=True,
        expr=lambda c: _primary(c, f"{q.first_item_quantile(c, 99)}"
                                   f" > {number(c.latency.first_item_p99_seconds)}",
                                c.windows.rate),
        summary=f"Model {MODEL} is slow to start its streams",
        description=lambda c: (
            f"p99 time to first item of {MODEL} streams is {DURATION} over "
            f"{c.windows.rate}, above the objective of "
            f"{number(c.latency.first_item_p99_seconds)}s."),
    ),
    # --- predictions and model identity -------------------------------------------------------
    AlertDef(
        name="InferwatchInvalidPredictions", severity="critical", for_="5m", group="predictions",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, _compare(c, q.invalid_ratio(c), ">",
                                           "predictions.invalid_ratio"), c.windows.rate),
        summary=f"Model {MODEL} returns invalid predictions",
        description=lambda c: (
            f"{MODEL} returned {VALUE} invalid values (nan, inf or out of range) per "
            f"predicted row over {c.windows.rate}; threshold "
            f"{_threshold(c, 'predictions.invalid_ratio')}. Each invalid output of a row "
            f"counts, so a model with several outputs may exceed 1."),
    ),
    AlertDef(
        name="InferwatchModelStale", severity="warning", for_="1h", group="predictions",
        dashboard="overview", per_model=True,
        expr=_model_stale_expr,
        summary=f"Model {MODEL} is stale",
        description=lambda c: (
            f"{MODEL} was trained {DURATION} ago, longer than the " + _threshold(
                c, "predictions.max_model_age", c.predictions.max_model_age, "humanizeDuration")
            + f" allowed, and served calls within the last {c.windows.versions_serving}."),
    ),
    AlertDef(
        name="InferwatchTooManyVersionsServing", severity="warning", for_="1h", group="predictions",
        dashboard="overview", per_model=True,
        expr=_versions_serving_expr,
        summary="Model {{ $labels.model }} serves {{ $value }} versions",
        description=lambda c: (
            f"{{{{ $value }}}} versions of model {{{{ $labels.model }}}} served calls in the "
            f"last {c.windows.versions_serving} (shadow models not counted); at most "
            f"{threshold_text(c, 'predictions.max_versions')} expected. A rollout or canary "
            f"may be stuck."),
    ),
    # --- data quality and drift ---------------------------------------------------------------
    AlertDef(
        name="InferwatchMissingValuesSpike", severity="warning", for_="15m", group="quality",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, _compare(
            c, q.feature_ratio(c, "inferwatch_feature_missing"), ">",
            "data_quality.missing_ratio"), c.windows.rate),
        summary=f"Feature {{{{ $labels.feature }}}} of {MODEL} is often missing",
        description=lambda c: (
            f"Feature {{{{ $labels.feature }}}} is missing in {PERCENT} of the rows "
            f"{MODEL} received over {c.windows.rate}; threshold "
            f"{_threshold(c, 'data_quality.missing_ratio')}."),
    ),
    AlertDef(
        name="InferwatchOutOfRangeSpike", severity="warning", for_="15m", group="quality",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, _compare(
            c, q.feature_ratio(c, "inferwatch_feature_out_of_range"), ">",
            "data_quality.out_of_range_ratio"), c.windows.rate),
        summary=f"Feature {{{{ $labels.feature }}}} of {MODEL} is often out of range",
        description=lambda c: (
            f"Feature {{{{ $labels.feature }}}} falls outside its reference range in "
            f"{PERCENT} of the rows {MODEL} received over {c.windows.rate}; threshold "
            f"{_threshold(c, 'data_quality.out_of_range_ratio')}."),
    ),
    AlertDef(
        name="InferwatchInputSchemaErrors", severity="warning", for_="15m", group="quality",
        dashboard="quality", per_model=True,
        expr=_schema_errors_expr,
        summary=f"Inputs of {MODEL} break the reference schema ({{{{ $labels.reason }}}})",
        description=lambda c: (
            f"{MODEL} received {VALUE} input errors {{{{ $labels.reason }}}} per call over "
            f"{c.windows.rate}; threshold {_threshold(c, 'data_quality.schema_error_ratio')}. "
            f"A missing_column counts each row a feature is absent from (a column dropped or "
            f"renamed upstream), a wrong_type each value of the wrong type, a wrong_width or "
            f"wrong_shape each batch, so a call may count several."),
    ),
    AlertDef(
        name="InferwatchFeatureDrift", severity="warning", for_="30m", group="quality",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, (
            _drift_expr(c, "inferwatch_feature_drift", "feature", "drift.feature_threshold"))),
        summary=f"Feature {{{{ $labels.feature }}}} of {MODEL} drifts",
        description=lambda c: (
            f"{c.drift.method} drift of feature {{{{ $labels.feature }}}} is {VALUE} "
            f"against the training reference (threshold "
            f"{_threshold(c, 'drift.feature_threshold')}, windows of at least "
            f"{_threshold(c, 'drift.min_observations')} rows and as many values of the "
            f"feature)."),
    ),
    AlertDef(
        name="InferwatchPredictionDrift", severity="warning", for_="30m", group="quality",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, (
            _drift_expr(c, "inferwatch_prediction_drift", "output",
                        "drift.prediction_threshold"))),
        summary=f"Predictions {{{{ $labels.output }}}} of {MODEL} drift",
        description=lambda c: (
            f"{c.drift.method} drift of output {{{{ $labels.output }}}} is {VALUE} "
            f"against the training reference (threshold "
            f"{_threshold(c, 'drift.prediction_threshold')}, windows of at least "
            f"{_threshold(c, 'drift.min_observations')} rows)."),
    ),
    AlertDef(
        name="InferwatchAccuracyDrop", severity="warning", for_="30m", group="quality",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, _accuracy_drop_expr(c), c.accuracy.window),
        summary=f"Accuracy of {MODEL} dropped",
        description=lambda c: (
            f"{MODEL} was right in {PERCENT} of the outcomes of the last "
            f"{c.accuracy.window}, "
            f"{{{{ with printf `{q.validation_accuracy()}{{model=%q,model_version=%q}}` "
            f"$labels.model $labels.model_version | query }}}}more than "
            f"{_threshold(c, 'accuracy.max_drop')} below its validation accuracy of "
            f"{{{{ . | first | value | humanizePercentage }}}}{{{{ else }}}}below "
            f"{_threshold(c, 'accuracy.min_ratio')}{{{{ end }}}} (windows of "
            f"at least {_threshold(c, 'accuracy.min_outcomes')} outcomes)."),
    ),
    AlertDef(
        name="InferwatchRegressionErrorRise", severity="warning", for_="30m", group="quality",
        dashboard="quality", per_model=True,
        expr=lambda c: _primary(c, _error_rise_expr(c), c.accuracy.window),
        summary=f"Mean absolute error of {MODEL} rose",
        description=_error_rise_text,
    ),
    # --- shadow models -----------------------------------------------------------------------
    AlertDef(
        name="InferwatchShadowFailing", severity="warning", for_="15m", group="shadow",
        dashboard="shadow", per_model=True,
        expr=lambda c: (f"{q.error_ratio(c.windows.rate)} > {number(c.shadow.max_error_ratio)}"
                        f"\nand on ({MODEL_LABELS})\n{_shadow_info(c)}"),
        summary=f"Shadow model {CHALLENGER} is failing",
        description=lambda c: (
            f"Shadow model {CHALLENGER} failed {PERCENT} of its calls over {c.windows.rate} "
            f"(errors, timeouts and crashes; threshold {number(c.shadow.max_error_ratio)}). "
            f"Its champion is not affected, but the comparison is missing those calls."),
    ),
    AlertDef(
        name="InferwatchShadowAgreementLow", severity="warning", for_="30m", group="shadow",
        dashboard="shadow", per_model=True,
        expr=lambda c: (f"{q.shadow_agreement(c)} < {number(c.shadow.min_agreement)}\nand\n"
                        f"{q.shadow_compared(c)} >= {number(c.shadow.min_compared)}"),
        summary=f"Shadow model {CHALLENGER} disagrees with its champion",
        description=lambda c: (
            f"Shadow model {CHALLENGER} predicted the class of its champion {CHAMPION} in "
            f"only {PERCENT} of the rows compared over {c.shadow.window} (threshold "
            f"{number(c.shadow.min_agreement)}, windows of at least "
            f"{number(c.shadow.min_compared)} rows)."),
    ),
    AlertDef(
        name="InferwatchShadowDropping", severity="warning", for_="15m", group="shadow",
        dashboard="shadow", per_model=True,
        expr=lambda c: (f"{q.shadow_drop_ratio(c)}{QUEUE_DROPS}"
                        f" > {number(c.shadow.max_drop_ratio)}"),
        summary=f"The shadow queue of {CHALLENGER} drops work ({{{{ $labels.reason }}}})",
        description=lambda c: (
            f"{PERCENT} of the calls sampled for shadow model {CHALLENGER} were dropped "
            f"({{{{ $labels.reason }}}}) over {c.windows.rate} (threshold "
            f"{number(c.shadow.max_drop_ratio)}): the challenger cannot keep up with the "
            f"sample rate, or its outputs cannot be compared with the champion's."),
    ),
    AlertDef(
        name="InferwatchShadowBetter", severity="info", for_="1h", group="shadow",
        dashboard="shadow", per_model=True,
        expr=_shadow_better_expr,
        summary=f"Shadow model {CHALLENGER} is right more often than {CHAMPION}",
        description=lambda c: (
            f"On the outcomes both saw over {c.shadow.outcome_window} (at least "
            f"{number(c.shadow.min_outcomes)}), shadow model {CHALLENGER} was right "
            f"{{{{ $value | humanizePercentage }}}} more often than its champion {CHAMPION} "
            f"(threshold {number(c.shadow.min_accuracy_gain)}): a candidate for promotion."),
    ),
    # --- resources and inferwatch itself ------------------------------------------------------
    AlertDef(
        name="InferwatchGpuMemoryNearFull", severity="warning", for_="10m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: f"{q.gpu_memory_ratio()} > {number(c.gpu.memory_used_ratio)}",
        summary=f"{GPU} memory is nearly full",
        description=lambda c: (
            f"{GPU} uses {PERCENT} of its memory, above "
            f"{number(c.gpu.memory_used_ratio)}; the next batch may fail with out of "
            f"memory."),
    ),
    AlertDef(
        name="InferwatchGpuTemperatureHigh", severity="warning", for_="10m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: (
            f"inferwatch_gpu_temperature_celsius{exporter_sel(c)}"
            f" > {number(c.gpu.temperature_celsius)}"),
        summary=f"{GPU} runs hot",
        description=lambda c: (
            f"{GPU} is at {VALUE} degrees celsius, above "
            f"{number(c.gpu.temperature_celsius)}; it will throttle."),
    ),
    AlertDef(
        name="InferwatchGpuLost", severity="critical", for_="1m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: f"inferwatch_gpu_up{exporter_sel(c)} == 0",
        summary=f"{GPU} is lost",
        description=lambda c: (
            f"{GPU} no longer answers NVML (selector {shown(c.selectors.exporter)}): the device "
            f"fell off the bus or the driver failed."),
    ),
    AlertDef(
        name="InferwatchGpuReadErrors", severity="warning", for_="15m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: (
            f"sum by (job, instance, gpu, uuid, field, reason) "
            f"(rate(inferwatch_gpu_nvml_errors_total{exporter_sel(c)}[{c.windows.rate}]))"
            f" > 0"),
        summary=("NVML reads of {{ $labels.field }} fail on GPU {{ $labels.gpu }} on "
                 "{{ $labels.instance }}"),
        description=lambda c: (
            f"Reading {{{{ $labels.field }}}} of GPU {{{{ $labels.gpu }}}} "
            f"({{{{ $labels.uuid }}}}) on {INSTANCE} keeps failing with "
            f"{{{{ $labels.reason }}}} (selector {shown(c.selectors.exporter)}); the GPU still "
            f"answers, but that field is missing."),
    ),
    AlertDef(
        name="InferwatchGpuXidErrors", severity="warning", for_="0m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: _fresh_increase(f"inferwatch_gpu_xid_errors_total{exporter_sel(c)}",
                                       "job, instance, gpu, uuid, xid", c.gpu.xid_window,
                                       f"up{exporter_sel(c)}"),
        summary=f"{GPU} reports Xid {{{{ $labels.xid }}}} errors",
        description=lambda c: (
            f"{GPU} reported {VALUE} Xid {{{{ $labels.xid }}}} errors in the last "
            f"{c.gpu.xid_window}: the driver saw a GPU fault (memory, bus or a stuck kernel)."),
    ),
    AlertDef(
        name="InferwatchCollectorFailing", severity="warning", for_="10m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: f"inferwatch_exporter_collector_success{exporter_sel(c)} == 0",
        summary="inferwatch collector {{ $labels.collector }} fails on {{ $labels.instance }}",
        description=lambda c: (
            f"The {{{{ $labels.collector }}}} collector of exporter {INSTANCE} has failed "
            f"every scrape for a while (selector {shown(c.selectors.exporter)}); its metrics "
            f"are missing."),
    ),
    AlertDef(
        name="InferwatchInternalErrors", severity="warning", for_="15m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: (
            f"sum by (job, instance, component) "
            f"(rate(inferwatch_internal_errors_total{model_sel(c)}[{c.windows.rate}]))"
            f" > {number(c.internal.errors_per_second)}"),
        summary="inferwatch component {{ $labels.component }} fails on {{ $labels.instance }}",
        description=lambda c: (
            f"inferwatch swallowed {VALUE} faults per second in "
            f"{{{{ $labels.component }}}} on {INSTANCE} over {c.windows.rate} (threshold "
            f"{number(c.internal.errors_per_second)}); predictions still run but some "
            f"metrics may be missing."),
    ),
    AlertDef(
        name="InferwatchSeriesOverflow", severity="warning", for_="0m", group="resources",
        dashboard="resources", per_model=False,
        expr=lambda c: _fresh_increase(f"inferwatch_series_overflow_total{model_sel(c)}",
                                       "job, instance, metric", c.internal.overflow_window,
                                       f"up{model_sel(c)}"),
        summary="{{ $labels.metric }} folds label values on {{ $labels.instance }}",
        description=lambda c: (
            f"A cardinality cap folded {VALUE} label values of {{{{ $labels.metric }}}} into "
            f"__other__ on {INSTANCE} in the last {c.internal.overflow_window}: a class, "
            f"feature or error type is no longer told apart."),
    ),
)


def _baseline_alert(spec: baselines.SignalSpec) -> AlertDef:
    return AlertDef(
        name=spec.alert, severity="warning", for_="30m", group="baselines",
        dashboard=spec.dashboard, per_model=True,
        expr=lambda c: baselines.alert_expr(c, spec),
        summary=baselines.alert_summary(spec),
        description=lambda c: baselines.alert_description(c, spec),
        enabled=lambda c: baselines.settings(c, spec).enabled,
    )


# Adaptive baselines: a ticket when a signal leaves the band its own history draws.
ALERTS += tuple(_baseline_alert(spec) for spec in baselines.SIGNALS.values())
