"""The Grafana dashboards, each a short function of the config.

Every panel follows every variable: the job, instance, model and version selections. Panels
that show what a recording rule computes run the rule's own expression on the raw series,
narrowed by the variables (the rules aggregate job and instance away), so they agree with
the rules and alerts when every variable is All.

>>> from inferwatch.generate.config import DEFAULT
>>> sorted(render(DEFAULT))  # doctest: +NORMALIZE_WHITESPACE
['champion-challenger.json', 'model-overview.json', 'model-quality.json',
 'resources.json', 'slo.json']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attr
from grafanalib import core as g

from inferwatch.generate import baselines, rules
from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_consistency import SIGNAL_QUANTILES
from inferwatch.generate.config_schema import BurnRate, Config, ModelOverride, with_values
from inferwatch.generate.objectives import (
    compare,
    is_overridden,
    is_per_version,
    join_objective,
    models_in,
    objective_of,
    version_objective,
)
from inferwatch.generate.panels import (
    BAND_HIGH,
    BAND_LOW,
    SCHEMA_VERSION,
    Cell,
    band,
    bargauge,
    builtin_annotation,
    dashboard_json,
    datasource_variable,
    heatmap,
    joined_table,
    layout,
    matrix,
    prometheus_annotation,
    query_variable,
    stat,
    state_timeline,
    table,
    target,
    thresholds,
    timeseries,
    up_down_mappings,
)
from inferwatch.generate.promql import exporter_sel, model_sel, number, percent, selector
from inferwatch.generate.rules import dashboard_uid

RATE = "$__rate_interval"
JOB = 'job=~"$job"'
INSTANCE = 'instance=~"$instance"'
MODEL = 'model=~"$model"'
VERSION = 'model_version=~"$model_version"'
ERRORS = 'outcome="error"'
MV = "{{model}} {{model_version}}"


def _raw(cfg: Config, *extra: str) -> str:
    """Selector of raw model series narrowed by every dashboard variable."""
    return model_sel(cfg, JOB, INSTANCE, MODEL, VERSION, *extra)


def _exp(cfg: Config) -> str:
    return exporter_sel(cfg, 'instance=~"$exporter_instance"')


# Stand-ins for the configured selectors while a rule is rendered for a panel, so each selector
# is narrowed by its own variables even when selectors.model and selectors.exporter are the
# same matchers (one scrape job for everything). Reserved label names never clash with a
# user's matchers.
_MODEL_MARK = '__inferwatch_model_series__="1"'
_EXPORTER_MARK = '__inferwatch_exporter_series__="1"'


def _recorded(cfg: Config, name: str) -> str:
    """The expression of recording rule `name`, on raw series narrowed by the variables.

    >>> from inferwatch.generate.config import DEFAULT
    >>> _recorded(DEFAULT, "model:inferwatch_batch_size_sum:rate5m")
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


def _scrape_note(cfg: Config) -> str:
    return (f" Reads the model services' series matching {{{cfg.selectors.model}}} and the "
            f"exporter's matching {{{cfg.selectors.exporter}}}; set selectors.model and "
            f"selectors.exporter in the inferwatch config and regenerate to match your scrape "
            f"jobs.")


def _variables(cfg: Config, exporter: bool = False) -> list[dict[str, Any]]:
    info = "inferwatch_model_info"
    m = cfg.selectors.model
    variables = [
        datasource_variable(cfg.dashboards.datasource),
        query_variable("job", "Job", f"label_values({info}{selector(m)}, job)"),
        query_variable("instance", "Instance",
                       f"label_values({info}{selector(m, JOB)}, instance)"),
        query_variable("model", "Model", f"label_values({info}"
                       f"{selector(m, JOB, INSTANCE)}, model)"),
        query_variable("model_version", "Version", f"label_values({info}"
                       f"{selector(m, JOB, INSTANCE, MODEL)}"
                       f", model_version)"),
    ]
    if exporter:
        variables.append(query_variable(
            "exporter_instance", "Exporter",
            f"label_values(inferwatch_exporter_build_info{exporter_sel(cfg)}, instance)"))
    return variables


def _deploy_annotations(cfg: Config) -> list[dict[str, Any]]:
    now, before = (f"max by (model, model_version) (inferwatch_model_info{_raw(cfg)}{offset})"
                   for offset in ("", " offset 5m"))
    # The versions that started or stopped serving in the last 5 minutes: a change in how
    # many versions serve misses the usual deploy, one version replacing another in place.
    changed = f"count by (model) (({now} unless {before}) or ({before} unless {now}))"
    return [
        builtin_annotation(),
        # The value is the load time itself, so the marker sits where the version started.
        prometheus_annotation(
            "Model loaded", f"max by ({q.MODEL_LABELS}) "
            f"(inferwatch_model_loaded_timestamp_seconds{_raw(cfg)}) * 1000", "blue",
            "{{model}} {{model_version}} loaded", "model,model_version", value_is_time=True),
        prometheus_annotation(
            "Versions serving changed", changed, "purple",
            "{{model}}: versions serving changed", "model"),
    ]


def _dashboard(cfg: Config, key: str, title: str, description: str, panels: list[Cell] | Any,
               exporter: bool = False, annotations: list[dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    d = cfg.dashboards
    dashboard = g.Dashboard(
        title=f"{d.title_prefix}{title}", description=description + _scrape_note(cfg),
        uid=dashboard_uid(cfg, key), tags=list(d.tags), refresh=d.refresh,
        time=g.Time(d.time_from, "now"), timezone="browser", schemaVersion=SCHEMA_VERSION,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, editable=True,
        panels=layout(panels), templating=g.Templating(list=_variables(cfg, exporter)),
        annotations=g.Annotations(list=annotations or _deploy_annotations(cfg)),
    )
    data = dashboard_json(dashboard)
    # Grafana replaces a refresh missing from the picker's intervals (as it comes back from
    # the URL on reload or a shared link) by the first one, 5s; the picker must offer it.
    intervals = data["timepicker"]["refresh_intervals"]
    if d.refresh not in intervals:
        data["timepicker"]["refresh_intervals"] = sorted([*intervals, d.refresh],
                                                         key=duration_seconds)
    return data


# What a panel with a threshold and each model's objective says of its lines.
_OBJECTIVE_LINES = ("Dashed line: the default alert threshold; objective: each selected "
                    "model's own (its models: entry, or what it declares in code).")


def _coloured_by_default(cfg: Config, key: str, what: str, where: str = "") -> str:
    """What a stat panel's description adds when some model has its own `key`: its colour
    follows the default only (Grafana's thresholds are one set per panel, not per series,
    and a ratio to each model's own objective would no longer show the value itself)."""
    if not is_overridden(cfg, key):
        return ""
    return (f" Coloured against the default {what}; a model with its own objective is judged "
            f"by its alert against that one{f' ({where})' if where else ''}.")


def _objective(cfg: Config, key: str, around: str = "{}") -> g.Target:
    """Each selected model's own objective (its `models:` override, else the default), `around`
    turning it into what the panel draws. Where versions declare it in code, each selected
    version's own: the alerts judge a version by its own declaration, so the model's strictest
    would draw a canary's laxer line below its values while no alert fires."""
    if is_per_version(cfg, key):
        series = version_objective(key) + selector(MODEL, VERSION)
        return target(around.format(f"max by ({q.MODEL_LABELS}) ({series})"), "objective " + MV)
    series = q.objective(key) + selector(MODEL)
    return target(around.format(f"max by (model) ({series})"), "objective {{model}}")


def _version_objective(cfg: Config, key: str) -> tuple[str, str]:
    """The vector matching and series that give each selected version its alert's value of
    an objective: the version's own where versions declare it in code, else its model's."""
    matchers = (MODEL, VERSION) if is_per_version(cfg, key) else (MODEL,)
    return (join_objective(cfg, key, per_version=True),
            objective_of(cfg, key, per_version=True) + selector(*matchers))


def _accuracy_threshold(cfg: Config) -> str:
    """What InferwatchAccuracyDrop compares each selected version's accuracy with: its
    validation accuracy less accuracy.max_drop, or, without one, accuracy.min_ratio.

    A model with a validation accuracy pages below a line of its own, often well above the
    minimum: drawing the minimum alone would show it healthy while it pages. Shadow versions
    are left out, as the alert leaves them out.
    """
    drop_on, drop = _version_objective(cfg, "accuracy.max_drop")
    floor_on, floor = _version_objective(cfg, "accuracy.min_ratio")
    serving = f"group by ({q.MODEL_LABELS}) (inferwatch_model_info{_raw(cfg)})"
    shadows = _raw(cfg, 'role="shadow"')
    # `unless` binds tighter than `or`: the brackets make it leave shadows out of both.
    return (f"(\n  (\n    {_recorded(cfg, q.validation_accuracy())}\n"
            f"    - {drop_on} {drop}\n  )\n"
            f"  or on ({q.MODEL_LABELS})\n"
            f"  (\n    {serving} * 0\n    + {floor_on} {floor}\n  )\n)\n"
            f"unless on ({q.MODEL_LABELS})\n"
            f"max by ({q.MODEL_LABELS}) (inferwatch_model_info{shadows})")


def _baseline(cfg: Config, key: str, operation: str, *matchers: str) -> str:
    """A baseline series of the selected models (recorded per model, versions aggregated):
    its value, or an edge of its band (`lower`, `upper`: computed from expected and sigma)."""
    spec = baselines.SIGNALS[key]
    if operation in ("lower", "upper"):
        return baselines.band_edge(cfg, spec, operation, selector(MODEL, *matchers))
    name = (baselines.value_name(cfg, spec) if operation == "value"
            else baselines.record(spec, operation))
    return name + selector(MODEL, *matchers)


_BAND_TITLES = {"traffic": "Calls per second", "errors": "Error ratio", "latency": "Latency",
                "batch_size": "Mean batch size", "predictions": "Prediction",
                "confidence": "Confidence", "classes": "Class shares",
                "missing": "Missing values per row", "out_of_range": "Out-of-range values per row"}


# Which of its signal's quantiles a band panel draws: the last latency one, the first other.
_BAND_QUANTILE_INDEX = {"latency": -1, "predictions": 0, "confidence": 0}


def _band_quantile(cfg: Config, key: str) -> tuple[tuple[str, ...], str]:
    """The matchers and title of a band panel: its quantile's, where the signal has them."""
    title = _BAND_TITLES[key]
    if key not in SIGNAL_QUANTILES:
        return (), title
    quantile = getattr(cfg.baselines, SIGNAL_QUANTILES[key])[_BAND_QUANTILE_INDEX[key]]
    # A regex that takes either spelling of the bound (Prometheus 3 may write 0.50).
    escaped = quantile.replace(".", "\\\\.")
    return (f'quantile=~"{escaped}0*"',), f"{title} p{percent(float(quantile))}"


def _k_text(cfg: Config, spec: baselines.SignalSpec) -> str:
    """A band's k as its description says it: the number, or each model's own where a
    `models:` entry sets one (the edges drawn already use each model's own)."""
    k = number(baselines.settings(cfg, spec).k)
    if not is_overridden(cfg, baselines.k_key(spec)):
        return k
    return f"k (each model's own, from its models: entry; by default {k})"


def _band_cells(cfg: Config, keys: tuple[str, ...]) -> list[Cell]:
    """One shaded band per enabled signal, repeated per selected model: what its alert saw."""
    cells = []
    for key in keys:
        spec = baselines.SIGNALS[key]
        own = baselines.settings(cfg, spec)
        if not own.enabled:
            continue
        matchers, title = _band_quantile(cfg, key)
        if spec.labels and key in ("predictions", "classes", "missing", "out_of_range"):
            # Several bands per model (one per output, class or feature): dashed edges, no
            # fill. One shaded band per model would take the max of the outputs' values and
            # the envelope of their bands, so a shift of one output would never leave it.
            label = spec.labels[0]
            # Repeated per model like the shaded bands: the legends name only the class or
            # feature, so two models' lines and edges would otherwise be indistinguishable.
            cells.append(Cell(attr.evolve(timeseries(
                f"{title} and expected bands: $model", [
                    target(_baseline(cfg, key, "value", *matchers), f"{{{{{label}}}}}"),
                    target(_baseline(cfg, key, "lower", *matchers), f"low {{{{{label}}}}}"),
                    target(_baseline(cfg, key, "upper", *matchers), f"high {{{{{label}}}}}")],
                spec.unit, f"{spec.alert} fires when a value leaves its band: expected "
                f"+- {_k_text(cfg, spec)} sigma of its own {own.baseline_window} history."),
                repeat_over="model")))
            continue
        cells.append(Cell(band(
            f"{title} and expected band: $model",
            target(f"max by (model) ({_baseline(cfg, key, 'value', *matchers)})",
                   "{{model}}"),
            target(f"min by (model) ({_baseline(cfg, key, 'lower', *matchers)})", BAND_LOW),
            target(f"max by (model) ({_baseline(cfg, key, 'upper', *matchers)})", BAND_HIGH),
            spec.unit, f"Shaded: the expected band of {spec.alert}, expected +- "
            f"{_k_text(cfg, spec)} sigma of the model's own {own.baseline_window} history"
            f"{' and the same time a week (or a day) ago' if own.seasonal else ''}. Empty "
            "until a day of history exists.")))
    return cells


def model_overview(cfg: Config) -> dict[str, Any]:
    """Traffic, errors, latency, in-flight, batch size, versions serving and deploys."""
    raw, w = _raw(cfg), cfg.windows.rate
    budget = 1 - cfg.slo.availability
    traffic = [
        Cell(stat("Calls / s", [target(f"sum({_recorded(cfg, q.requests_rate(cfg))})")],
                  "reqps", f"All calls of the selected models, over {w}."), 6, 4),
        Cell(stat("Error ratio", [target(f"sum by (model) (rate(inferwatch_requests_total"
                                         f"{_raw(cfg, ERRORS)}[{RATE}])) / sum by "
                                         f"(model) (rate(inferwatch_requests_total{raw}[{RATE}]))",
                                         "{{model}}")],
                  "percentunit", "Failed calls / all calls; red above the error budget of "
                  f"the {number(cfg.slo.availability)} availability SLO."
                  + _coloured_by_default(cfg, "slo.availability", "error budget",
                                         "drawn in the Error ratio panel"),
                  limit=budget), 6, 4),
        Cell(stat("In flight", [target(f"sum(inferwatch_requests_in_flight{raw})")], "short",
                  "Calls running now."), 6, 4),
        Cell(stat("p99 latency", [target(f"max({_recorded(cfg, q.latency_quantile(cfg, 99))})")],
                  "s", f"Worst p99 of the selected versions over {w}; red above "
                  f"{number(cfg.latency.p99_seconds)}s."
                  + _coloured_by_default(cfg, _P99, "p99 threshold",
                                         "drawn in the Latency quantiles panel"),
                  limit=cfg.latency.p99_seconds), 6, 4),
        Cell(timeseries("Calls per second by outcome", [target(
            f"sum by ({q.MODEL_LABELS}, outcome) (rate(inferwatch_requests_total{raw}[{RATE}]))",
            MV + " {{outcome}}")], "reqps", stack=True)),
        Cell(timeseries("Error ratio", [
            target(_recorded(cfg, q.error_ratio(w)), MV),
            _objective(cfg, "slo.availability", "1 - {}")],
            "percentunit", f"Dashed line: the error budget of the "
            f"{number(cfg.slo.availability)} availability SLO; objective: each model's own "
            f"budget.", limit=budget)),
        # Per version, as the alerts judge versions: a canary's errors summed into the stable
        # version's would show neither.
        Cell(timeseries("Errors by type", [target(
            f"sum by ({q.MODEL_LABELS}, error_type) (rate(inferwatch_errors_total{raw}"
            f"[{RATE}]))", MV + " {{error_type}}")], "reqps", stack=True), 24),
    ]
    latency = [
        Cell(timeseries("Latency quantiles", [
            *(target(_recorded(cfg, q.latency_quantile(cfg, n)), f"p{n} {MV}")
              for n in (50, 90, 99)),
            _objective(cfg, "latency.p99_seconds")],
            "s", "From the latency histogram, across replicas. Dashed line: the default p99 "
                 "threshold of InferwatchLatencyHigh; objective: each model's own.",
            limit=cfg.latency.p99_seconds)),
        Cell(heatmap("Latency distribution",
                     f"sum by (le) (increase(inferwatch_request_duration_seconds_bucket{raw}"
                     f"[{RATE}]))", "s")),
        Cell(timeseries("Stage latency p99", [target(
            _recorded(cfg, q.stage_latency_quantile(cfg, 99)), MV + " {{stage}}")], "s",
            "p99 of each stage (preprocess, inference, postprocess, ...).")),
        Cell(timeseries("In-flight calls", [target(
            f"sum by ({q.MODEL_LABELS}, instance) (inferwatch_requests_in_flight{raw})",
            MV + " {{instance}}")])),
        Cell(timeseries("Batch size", [
            target(f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_batch_size_sum{raw}[{RATE}])) / "
                   f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_batch_size_count{raw}[{RATE}]))",
                   "mean " + MV),
            target(f"histogram_quantile(0.99, sum by ({q.MODEL_LABELS}, le) "
                   f"(rate(inferwatch_batch_size_bucket{raw}[{RATE}])))", "p99 " + MV)],
            "short", "Rows per call, per version.")),
        Cell(timeseries("Rows per second", [target(_recorded(cfg, q.rows_rate(cfg)), MV)], "short",
                        "Rows predicted per second (sum of batch sizes).")),
    ]
    cancelled = _raw(cfg, 'outcome="cancelled"')
    streams = [
        Cell(timeseries("Time to first item", [
            target(_recorded(cfg, q.first_item_quantile(cfg, n)), f"p{n} {MV}") for n in (50, 99)],
            "s", "Streaming calls: from the call (or the request) to the first item or body "
                 "byte. Dashed line: the p99 objective of InferwatchStreamFirstItemSlow.",
            limit=cfg.latency.first_item_p99_seconds)),
        Cell(timeseries("Items and tokens per second", [
            target(f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_stream_items_sum{raw}"
                   f"[{RATE}]))", "items " + MV),
            target(f"sum by ({q.MODEL_LABELS}, kind) (rate(inferwatch_tokens_total{raw}"
                   f"[{RATE}]))", "{{kind}} tokens " + MV)],
            "short", "Items of finished streams, and input and output tokens, per second.")),
        Cell(timeseries("Cancelled streams", [target(
            f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_requests_total{cancelled}[{RATE}])) / "
            f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_requests_total{raw}[{RATE}]))", MV)],
            "percentunit", "Calls whose consumer stopped early (a client gone, a closed "
            "stream) / all calls.", max_value=1)),
        Cell(timeseries("Output tokens per second of a call", [target(
            f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, le) "
            f"(rate(inferwatch_output_tokens_per_second_bucket{raw}[{RATE}])))",
            f"p{n} {MV}") for n in (50, 10)], "short",
            "Generation speed of single calls; p10 is the slow tail.")),
    ]
    versions = [
        Cell(table("Versions serving", [target(
            f"count by (model, model_version, framework, task) (inferwatch_model_info{raw})",
            instant=True, fmt="table")], "Versions with at least one live replica.",
            hide=("Time",)), 12, 7),
        Cell(state_timeline("Replicas per version", [target(
            f"count by ({q.MODEL_LABELS}) (inferwatch_model_info{raw})", MV)],
            "How many replicas serve each version: a rollout shows as a handover."), 12, 7),
        Cell(stat("Model age", [target(
            f"time() - max by ({q.MODEL_LABELS}) "
            f"(inferwatch_model_trained_timestamp_seconds{raw})", MV)], "s",
            f"Time since training; red beyond {cfg.predictions.max_model_age}."
            + _coloured_by_default(cfg, "predictions.max_model_age", "maximum age"),
            limit=duration_seconds(cfg.predictions.max_model_age)), 8, 5),
        Cell(stat("Serving since", [target(
            f"max by ({q.MODEL_LABELS}) (inferwatch_model_loaded_timestamp_seconds{raw}) * 1000",
            MV)], "dateTimeFromNow", "When each version started serving."), 8, 5),
        Cell(table("ML stack", [target(
            f"count by (package, package_version) (inferwatch_dependency_info"
            f"{model_sel(cfg, JOB, INSTANCE)})",
            instant=True, fmt="table")], "Versions of ML packages in the serving processes; "
            "a change is a deploy.", hide=("Time",)), 8, 5),
    ]
    return _dashboard(cfg, "overview", "Model overview",
                      "Traffic, errors, latency and versions of the models inferwatch watches.",
                      [("Traffic and errors", traffic),
                       ("Expected bands (adaptive baselines)",
                        _band_cells(cfg, ("traffic", "errors", "latency", "batch_size"))),
                       ("Latency and load", latency),
                       ("Streams", streams), ("Versions and deploys", versions)])


_MIN_VALUES = "drift.min_observations"


def _each_versions_minimum(cfg: Config, rows: str) -> str:
    """`rows` (a vector with model and model_version) valued at each version's own
    drift.min_observations, the minimum its drift alerts apply."""
    if not is_overridden(cfg, _MIN_VALUES):
        return f"{rows} * 0 + {number(cfg.drift.min_observations)}"
    on, series = _version_objective(cfg, _MIN_VALUES)
    return f"{rows} * 0 + {on} {series}"


def _feature_drift_judged(cfg: Config, drift: str) -> str:
    """1 for each feature of a version whose drift InferwatchFeatureDrift judges, 0 for one
    it leaves out: no replica has both a window of drift.min_observations rows and as many
    values of the feature (the alert's own conditions, on the same replica)."""
    key, by = _MIN_VALUES, f"{q.MODEL_LABELS}, feature"
    rows = compare(cfg, f"inferwatch_drift_window_observations{_raw(cfg)}", ">=", key,
                   per_version=True)
    few = compare(cfg, f"inferwatch_feature_drift_observations{_raw(cfg)}", "<", key,
                  per_version=True)
    judged = (f"group by ({by}) (\n  {drift}\n  and on (job, instance, {q.MODEL_LABELS})\n"
              f"  {rows}\n  unless on (job, instance, {q.MODEL_LABELS}, feature)\n  ({few})\n)")
    return f"{judged}\nor\ngroup by ({by}) ({drift}) * 0"


def _feature_drift_table(cfg: Config) -> g.Panel:
    """Each feature's drift now, beside the values it has in the window, the minimum its
    alert needs and whether the alert judges it: a sparse feature's drift is noise from a
    few values, and its alert stays silent whatever the drift shows."""
    by = f"{q.MODEL_LABELS}, feature"
    drift = f"inferwatch_feature_drift{_raw(cfg, f'method={q.quoted(cfg.drift.method)}')}"
    values = f"inferwatch_feature_drift_observations{_raw(cfg)}"
    judged_mappings = [{"type": "value", "options": {
        "0": {"text": "no: too few values or rows", "color": "orange", "index": 0},
        "1": {"text": "yes", "color": "green", "index": 1}}}]
    text_cell = {"id": "custom.cellOptions", "value": {"type": "color-text"}}
    minimum = number(cfg.drift.min_observations)
    own = (" (each version's own: its models: entry, or what it declares in code)"
           if is_overridden(cfg, _MIN_VALUES) else "")
    return joined_table(
        f"Feature drift now ({cfg.drift.method})", [
            target(f"max by ({by}) ({drift})", instant=True, fmt="table"),
            target(f"max by ({by}) ({values})", instant=True, fmt="table"),
            target(_each_versions_minimum(cfg, f"group by ({by}) ({drift})"), instant=True,
                   fmt="table"),
            target(_feature_drift_judged(cfg, drift), instant=True, fmt="table")],
        [("drift", [text_cell, {"id": "color", "value": {"mode": "thresholds"}},
                    {"id": "thresholds", "value": thresholds(
                        ("red", cfg.drift.feature_threshold))}]),
         ("values in window", [text_cell, {"id": "color", "value": {"mode": "thresholds"}},
                               {"id": "thresholds", "value": {"mode": "absolute", "steps": [
                                   {"color": "orange", "value": None},
                                   {"color": "green",
                                    "value": cfg.drift.min_observations}]}}]),
         ("values needed", []),
         ("alert judges it", [text_cell, {"id": "mappings", "value": judged_mappings}])],
        f"Per version, worst replica: a feature's drift, its values in the drift window "
        f"(missing values left out) and the {minimum} its drift alert needs{own}. "
        f"InferwatchFeatureDrift judges a feature only where one replica has a window of "
        f"that many rows and that many values of the feature; the others' drift is scored "
        f"from too few values to page on. Drift red above the default threshold "
        f"{number(cfg.drift.feature_threshold)} (a model's own is drawn in the panel beside).",
        hide=("Time",))


def model_quality(cfg: Config) -> dict[str, Any]:
    """Predictions, class mix, confidence, data quality, drift and ground truth."""
    raw, w = _raw(cfg), cfg.windows.rate
    method = f'method="{cfg.drift.method}"'
    predictions = [
        Cell(timeseries("Prediction quantiles", [
            target(f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, output, le) "
                   f"(rate(inferwatch_prediction_value_bucket{raw}[{RATE}])))",
                   f"p{n} {MV} {{{{output}}}}") for n in (50, 90, 99)],
            "short", "From the prediction histogram, across replicas.")),
        Cell(timeseries("Rolling prediction quantiles per replica", [target(
            f"inferwatch_prediction{raw}",
            "{{instance}} " + MV + " {{output}} q{{quantile}}")], "short",
            "Rolling-window quantiles each replica computes exactly (not aggregatable).")),
        Cell(heatmap("Prediction distribution",
                     f"sum by (le) (increase(inferwatch_prediction_value_bucket{raw}[{RATE}]))",
                     "short")),
        # Per model: two models naming a class alike ("1", "fraud") would otherwise share
        # one bar, each model's share diluted by the other's calls.
        Cell(bargauge("Class mix", [target(
            f"sum by (model, class) (increase(inferwatch_predicted_class_total{raw}"
            f"[$__range])) / on (model) group_left sum by (model) "
            f"(increase(inferwatch_predicted_class_total{raw}[$__range]))",
            "{{model}} {{class}}", instant=True)], "percentunit",
            "Share of each predicted class of each model over the time range.", max_value=1)),
        # One panel per model: each model's shares stack to 1, so two models in one stack
        # would reach 2 and be cut off at the axis maximum.
        Cell(attr.evolve(timeseries("Class mix over time", [target(
            f"sum by (model, class) (rate(inferwatch_predicted_class_total{raw}[{RATE}])) / "
            f"on (model) group_left sum by (model) "
            f"(rate(inferwatch_predicted_class_total{raw}[{RATE}]))",
            "{{model}} {{class}}")], "percentunit", stack=True, max_value=1),
            repeat_over="model")),
        Cell(timeseries("Confidence", [target(
            f"inferwatch_prediction_confidence{raw}", "{{instance}} " + MV + " q{{quantile}}")],
            "percentunit", "Rolling quantiles of the top-class probability.", max_value=1)),
        Cell(timeseries("Invalid predictions", [
            target(_recorded(cfg, q.invalid_ratio(cfg)), "ratio " + MV),
            _objective(cfg, "predictions.invalid_ratio")], "percentunit",
            f"Invalid values per row over {w}. {_OBJECTIVE_LINES}",
            limit=cfg.predictions.invalid_ratio)),
        Cell(timeseries("Invalid predictions by reason", [target(
            f"sum by ({q.MODEL_LABELS}, reason) (rate(inferwatch_invalid_predictions_total{raw}"
            f"[{RATE}]))", MV + " {{reason}}")], "short", stack=True)),
        Cell(timeseries("Actions taken", [target(
            f"sum by ({q.MODEL_LABELS}, action) (rate(inferwatch_actions_total{raw}[{RATE}]))",
            MV + " {{action}}")], "short", "What the system did with predictions, per "
            "second.", stack=True), 24),
    ]
    quality = [
        Cell(timeseries("Missing values per row", [target(
            _recorded(cfg, q.feature_ratio(cfg, 'inferwatch_feature_missing')),
            MV + " {{feature}}"), _objective(cfg, "data_quality.missing_ratio")], "percentunit",
            _OBJECTIVE_LINES, limit=cfg.data_quality.missing_ratio)),
        Cell(timeseries("Out-of-range values per row", [target(
            _recorded(cfg, q.feature_ratio(cfg, 'inferwatch_feature_out_of_range')),
            MV + " {{feature}}"), _objective(cfg, "data_quality.out_of_range_ratio")],
            "percentunit", f"Outside the reference range. {_OBJECTIVE_LINES}",
            limit=cfg.data_quality.out_of_range_ratio)),
        Cell(timeseries("Unseen categories", [target(
            f"sum by ({q.MODEL_LABELS}, feature) (rate(inferwatch_feature_unseen_category_total"
            f"{raw}[{RATE}]))", MV + " {{feature}}")], "short",
            "Categories absent from the reference, per second.")),
        Cell(timeseries("Input errors", [target(
            f"sum by ({q.MODEL_LABELS}, reason) (rate(inferwatch_input_errors_total{raw}"
            f"[{RATE}]))", MV + " {{reason}}")], "short", "Schema violations per second.")),
    ]
    # Per version, as the drift alerts judge: during a canary a per-model maximum would mix
    # the stable version's drift with the canary's, and show neither what either alert saw.
    drift = [
        Cell(_feature_drift_table(cfg), 8, 10),
        Cell(timeseries(f"Feature drift ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}, feature) (inferwatch_feature_drift{_raw(cfg, method)})",
            MV + " {{feature}}"), _objective(cfg, "drift.feature_threshold")], "short",
            _OBJECTIVE_LINES, limit=cfg.drift.feature_threshold), 16, 10),
        Cell(timeseries(f"Prediction drift ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}, output) (inferwatch_prediction_drift"
            f"{_raw(cfg, method)})", MV + " {{output}}"),
            _objective(cfg, "drift.prediction_threshold")], "short",
            _OBJECTIVE_LINES, limit=cfg.drift.prediction_threshold)),
        # A model's own minimum (drift.min_observations is an objective) decides whether its
        # drift alerts can fire at all: the default line alone hides a model kept silent.
        # The replica with the most rows: the drift alerts need only one replica with enough,
        # so the fewest (a replica just started) would show a version below the line while
        # its alert can still fire.
        Cell(timeseries("Drift window rows", [target(
            f"max by ({q.MODEL_LABELS}) (inferwatch_drift_window_observations{raw})", MV),
            _objective(cfg, "drift.min_observations")],
            "short", f"Per version, the replica with the most rows in its drift window: the "
            f"drift alerts judge a version where one replica has at least "
            f"{number(cfg.drift.min_observations)} rows (dashed line), or its model's own "
            f"minimum (objective: its models: entry, or what it declares in code).",
            limit=cfg.drift.min_observations)),
    ]
    # Each accuracy window in use (the default's, then the models: entries' own), each kept to
    # the models its alert judges over it: a model drawn over every window would show lines
    # its alert never compares with, beside the one it does.
    windows = [own.accuracy.window for own in rules.accuracy_configs(cfg)]
    judged = _override_groups(cfg, lambda c: c.accuracy.window)

    def accuracy_of(own: Config) -> str:
        rule = _recorded(cfg, q.accuracy(own))
        if not judged:
            return rule
        window = own.accuracy.window
        return f"({rule}){_judged_with(cfg, judged, window if window in judged else None)}"

    accuracy = [target(accuracy_of(own),
                       MV if len(windows) == 1 else f"{MV} over {own.accuracy.window}")
                for own in rules.accuracy_configs(cfg)]
    truth = [
        Cell(timeseries(f"Accuracy ({', '.join(windows)})", [
            *accuracy, target(_accuracy_threshold(cfg), "objective " + MV)],
            "percentunit", f"Correct outcomes / all outcomes; the alert needs "
            f"{number(cfg.accuracy.min_outcomes)} outcomes. Dashed line: the default "
            f"minimum, for a version without a validation accuracy; objective: the line "
            f"InferwatchAccuracyDrop judges each version by, its validation accuracy less "
            f"accuracy.max_drop, else its model's own minimum.",
            limit=cfg.accuracy.min_ratio, max_value=1)),
        Cell(timeseries("Outcomes by result", [target(
            f"sum by ({q.MODEL_LABELS}, result) (rate(inferwatch_outcomes_total{raw}[{RATE}]))",
            MV + " {{result}}")], "short", "Ground truth joined per second.", stack=True)),
        Cell(timeseries("Label delay", [
            target(f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, le) "
                   f"(rate(inferwatch_outcome_delay_seconds_bucket{raw}[{RATE}])))",
                   f"p{n} {MV}") for n in (50, 90)], "s",
            "Time from prediction to ground truth.")),
        Cell(timeseries("Regression error", [
            target(f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, le) "
                   f"(rate(inferwatch_outcome_error_bucket{raw}[{RATE}])))",
                   f"p{n} {MV}") for n in (50, 90)], "short",
            "Absolute error once ground truth arrives.")),
        Cell(timeseries("Unmatched outcomes", [target(
            f"sum by ({q.MODEL_LABELS}, reason) (rate(inferwatch_outcomes_unmatched_total{raw}"
            f"[{RATE}]))", MV + " {{reason}}")], "short", "Outcomes with no prediction to join.",
            stack=True), 24),
    ]
    return _dashboard(cfg, "quality", "Model quality",
                      "What the models predict, on what data, and how right they are.",
                      [("Predictions", predictions),
                       ("Expected bands (adaptive baselines)", _band_cells(cfg, (
                           "predictions", "confidence", "classes", "missing",
                           "out_of_range"))),
                       ("Data quality", quality),
                       ("Drift against the training reference", drift),
                       ("Ground truth", truth)])


_MIG_NOTE = "A MIG device shows as gpu/gpu instance/compute instance."


def _mig(cfg: Config, metric: str) -> str:
    """GPU memory series with a `device` label naming the GPU, or its MIG device.

    A MIG-enabled GPU has memory series of its own and one per MIG device, told apart only by
    gpu_instance and compute_instance: a legend of the GPU index alone draws them all under
    one name, and a legend naming those labels prints their names for a whole GPU (Grafana
    writes a missing label's name). So each kind gets a `device` label of its own.

    >>> from inferwatch.generate.config import DEFAULT
    >>> print(_mig(DEFAULT, "m"))  # doctest: +NORMALIZE_WHITESPACE
    label_join(m{job="inferwatch-exporter", instance=~"$exporter_instance", gpu_instance=""},
               "device", "", "gpu")
    or label_join(m{job="inferwatch-exporter", instance=~"$exporter_instance",
                    gpu_instance!=""}, "device", "/", "gpu", "gpu_instance", "compute_instance")
    """
    def of(kind: str) -> str:
        return metric + exporter_sel(cfg, 'instance=~"$exporter_instance"', kind)
    whole, mig = of('gpu_instance=""'), of('gpu_instance!=""')
    return (f'label_join({whole}, "device", "", "gpu")\n'
            f'or label_join({mig}, "device", "/", "gpu", "gpu_instance", "compute_instance")')


def resources(cfg: Config) -> dict[str, Any]:
    """GPU devices, serving processes, exporter health and cost per prediction."""
    e, raw = _exp(cfg), _raw(cfg)
    gpu = "{{instance}} gpu {{gpu}}"
    memory = "{{instance}} gpu {{device}}"
    per_model = (f"on () group_right sum by (model) "
                 f"(rate(inferwatch_requests_total{raw}[{RATE}]))")
    devices = [
        Cell(state_timeline("GPU up", [target(f"inferwatch_gpu_up{e}", gpu)],
                            "Red: the device is lost or unreadable.", up_down_mappings()), 12, 6),
        Cell(table("GPUs", [target(f"inferwatch_gpu_info{e}", instant=True, fmt="table")],
                   "Name, driver and uuid of each device.", hide=("Time", "Value", "__name__")),
             12, 6),
        Cell(timeseries("GPU utilization", [target(f"inferwatch_gpu_utilization_ratio{e}", gpu)],
                        "percentunit", "Share of time a kernel ran. NVML reports none for a "
                        "MIG-enabled GPU, so such a GPU has no line here.", max_value=1)),
        Cell(timeseries("GPU memory used", [target(_mig(cfg, q.gpu_memory_ratio()), memory)],
                        "percentunit", "Dashed line: InferwatchGpuMemoryNearFull threshold. "
                        f"{_MIG_NOTE}", limit=cfg.gpu.memory_used_ratio, max_value=1)),
        Cell(timeseries("GPU memory", [
            target(_mig(cfg, "inferwatch_gpu_memory_used_bytes"), "used " + memory),
            target(_mig(cfg, "inferwatch_gpu_memory_total_bytes"), "total " + memory)], "bytes",
            _MIG_NOTE)),
        Cell(timeseries("GPU temperature", [target(f"inferwatch_gpu_temperature_celsius{e}",
                                                   gpu)], "celsius",
                        limit=cfg.gpu.temperature_celsius)),
        Cell(timeseries("GPU power", [
            target(f"inferwatch_gpu_power_watts{e}", "draw " + gpu),
            target(f"inferwatch_gpu_power_limit_watts{e}", "limit " + gpu)], "watt")),
        Cell(timeseries("GPU memory busy time", [target(
            f"inferwatch_gpu_memory_utilization_ratio{e}", gpu)], "percentunit",
            "Share of time device memory was being read or written: busy time, not "
            "bandwidth. None for a MIG-enabled GPU.", max_value=1)),
    ]
    process = [
        Cell(timeseries("Process CPU", [target(
            f"rate(inferwatch_process_cpu_seconds_total{e}[{RATE}])",
            "{{instance}} {{process}} {{pid}}")], "short", "CPU cores used.")),
        Cell(timeseries("Process memory", [target(
            f"inferwatch_process_resident_memory_bytes{e}",
            "{{instance}} {{process}} {{pid}}")], "bytes", "Resident set size.")),
    ]
    exporter = [
        Cell(state_timeline("Collector health", [target(
            f"inferwatch_exporter_collector_success{e}", "{{instance}} {{collector}}")],
            "Red: the collector failed its last scrape.", up_down_mappings("ok", "failed"))),
        Cell(timeseries("Collector duration", [target(
            f"inferwatch_exporter_collector_duration_seconds{e}", "{{instance}} {{collector}}")],
            "s")),
        Cell(timeseries("inferwatch internal errors", [target(
            f"sum by (instance, component) (rate(inferwatch_internal_errors_total"
            f"{model_sel(cfg, JOB, INSTANCE)}[{RATE}]))",
            "{{instance}} {{component}}")], "short", "Faults swallowed inside inferwatch, "
            "per second.", limit=cfg.internal.errors_per_second)),
        Cell(timeseries("Label values folded by caps", [target(
            f"sum by (metric) (rate(inferwatch_series_overflow_total"
            f"{model_sel(cfg, JOB, INSTANCE)}[{RATE}]))",
            "{{metric}}")], "short", "Values folded into __other__ by cardinality caps.")),
    ]
    cost = [
        Cell(timeseries("CPU seconds per 1,000 predictions", [target(
            f"1000 * sum(rate(inferwatch_process_cpu_seconds_total{e}[{RATE}])) / {per_model}",
            "{{model}}")], "s", "CPU time of the watched processes on the selected exporter "
            "instances per 1,000 calls of each model. Select the exporter next to a model's "
            "serving process to attribute its cost.")),
        Cell(timeseries("GPU energy per 1,000 predictions", [target(
            f"1000 * sum(rate(inferwatch_gpu_energy_joules_total{e}[{RATE}])) / {per_model}",
            "{{model}}")], "joule", "GPU energy on the selected exporter instances per 1,000 "
            "calls of each model.")),
    ]
    return _dashboard(cfg, "resources", "Resources",
                      "GPUs, serving processes, exporter health and the cost of predictions.",
                      [("GPU devices", devices), ("Serving processes", process),
                       ("Exporter and inferwatch health", exporter),
                       ("Cost per prediction", cost)], exporter=True)


# The SLO period: the burn-rate factors of the config are multiples of a 30-day budget.
SLO_PERIOD = "30d"


def own_error_budget() -> str:
    """Each selected model's error budget: 1 - its own availability objective (its `models:`
    entry's, else the default), what the burn-rate alerts divide its error ratio by.

    >>> print(own_error_budget())
    (1 - max by (model) (model:inferwatch_objective:slo_availability{model=~"$model"}))
    """
    return f"(1 - max by (model) ({q.objective('slo.availability')}{selector(MODEL)}))"


def _of_models(cfg: Config, overrides: list[ModelOverride]) -> str:
    """One series per model of any of `overrides`, as the alert copies scope them."""
    return _or(models_in(cfg, override) for override in overrides)


def _or(terms: Any) -> str:
    listed = list(terms)
    return listed[0] if len(listed) == 1 else "(" + " or ".join(listed) + ")"


def _override_groups(cfg: Config, value: Callable[[Config], Any]
                     ) -> dict[Any, list[ModelOverride]]:
    """The `models:` entries whose alert copies use another `value` than the default's
    (a window, a burn), by that value, in the config's order."""
    default = value(cfg)
    groups: dict[Any, list[ModelOverride]] = {}
    for override, shaped in rules.shaped_configs(cfg):
        own = value(shaped)
        if own != default:
            groups.setdefault(own, []).append(override)
    return groups


def _judged_with(cfg: Config, groups: dict[Any, list[ModelOverride]], key: Any) -> str:
    """What keeps a query to the models judged with `key` of `groups`, as the alert rules
    scope their copies: the entries' models, or (key None) every model but theirs."""
    if key is not None:
        return f" and on (model) {_of_models(cfg, groups[key])}"
    if not groups:
        return ""
    return f" unless on (model) {_of_models(cfg, [o for g in groups.values() for o in g])}"


def _burn_groups(cfg: Config, which: str) -> dict[Any, list[ModelOverride]]:
    """The windows and factors a burn-rate alert uses besides the default's: each distinct
    one `models:` entries give, with those entries."""
    def shape(c: Config) -> tuple[str, str, float]:
        burn: BurnRate = getattr(c.slo, which)
        return burn.long_window, burn.short_window, burn.factor
    return _override_groups(cfg, shape)


def _burn_cells(cfg: Config, title: str, alert: str, which: str) -> list[Cell]:
    """A burn-rate alert's panels: the default windows and factor, then one panel per
    distinct set a `models:` entry gives its own copy of the alert, each showing only the
    models that copy judges (as the default rule leaves them out)."""
    own_budget = own_error_budget()
    groups = _burn_groups(cfg, which)
    default: BurnRate = getattr(cfg.slo, which)
    scopes: list[tuple[tuple[str, str, float], str, str]] = [
        ((default.long_window, default.short_window, default.factor),
         _judged_with(cfg, groups, None), "")]
    for key, overrides in groups.items():
        scopes.append((key, _judged_with(cfg, groups, key),
                       ": " + ", ".join(o.pattern for o in overrides)))
    return [
        Cell(timeseries(f"{title} burn rate ({long_window} / {short_window}){named}", [
            target(f"({_recorded(cfg, q.error_ratio(window))}) / on (model) group_left () "
                   f"{own_budget}{scope}",
                   f"{{{{model}}}} {{{{model_version}}}} {window}")
            for window in (long_window, short_window)], "short",
            f"Error ratio / the model's own error budget over the windows of {alert}"
            f"{' for the models of ' + named[2:] if named else ''}; it fires when both exceed "
            f"{number(factor)} (dashed line).", limit=factor))
        for (long_window, short_window, factor), scope, named in scopes]


_P99 = "latency.p99_seconds"


def _latency_objectives(cfg: Config) -> list[tuple[float, ModelOverride | None]]:
    """Each p99 threshold the config gives, in the order the objective rule takes them:
    the `models:` entries' own (the first that sets it wins), then the default."""
    return [*((float(o.values[_P99]), o) for o in cfg.models.values() if _P99 in o.values),
            (cfg.latency.p99_seconds, None)]


def _declared_p99_note(cfg: Config) -> str:
    """What the latency SLO stat adds when models may declare their p99 in code: it counts
    calls within the config's thresholds only (a histogram bucket must sit at a threshold
    known when the dashboard is generated), while InferwatchLatencyHigh judges the declared."""
    if not is_per_version(cfg, _P99):
        return ""
    return (" A p99 threshold a model declares in code (objectives.from_code) is not followed "
            "here: its calls are counted against its config threshold, while "
            "InferwatchLatencyHigh and the p99 latency panel use the declared one.")


def _within(cfg: Config, period: str) -> str:
    """Each model's share of calls within its own p99 threshold over `period`."""
    raw = _raw(cfg)

    def ratio(seconds: float) -> str:
        # Prometheus 3 writes classic bucket bounds as floats (le="1.0"), 2.x as scraped ("1").
        bound = 'le=~"' + number(seconds).replace(".", "\\\\.") + '(\\\\.0+)?"'
        return (f"sum by (model) (increase(inferwatch_request_duration_seconds_bucket"
                f"{_raw(cfg, bound)}[{period}])) / sum by (model) (increase("
                f"inferwatch_request_duration_seconds_count{raw}[{period}]))")

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
    raw, period = _raw(cfg), SLO_PERIOD
    # For a person: 1 - 0.999 is 0.0010000000000000009 in binary floating point.
    budget, own_budget = f"{1 - cfg.slo.availability:.6g}", own_error_budget()
    errors = (f"sum by (model) (increase(inferwatch_requests_total{_raw(cfg, ERRORS)}"
              f"[{period}])) / sum by (model) (increase(inferwatch_requests_total{raw}"
              f"[{period}]))")
    # Divided by each model's own budget, as its alerts are: with the default budget, a model
    # with a stricter objective would show a burn below the line while it pages.
    remaining = f"1 - ({errors}) / on (model) {own_budget}"
    p99 = number(cfg.latency.p99_seconds)
    thresholds = sorted({seconds for seconds, _ in _latency_objectives(cfg)})
    within_title = (f"Calls within {p99}s" if len(thresholds) == 1
                    else "Calls within each model's p99 threshold")
    availability = [
        Cell(stat(f"Availability over {period}", [target(f"1 - ({errors})", "{{model}}")],
                  "percentunit", f"Calls with outcome ok; SLO {number(cfg.slo.availability)}."
                  + _coloured_by_default(cfg, "slo.availability", "SLO",
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
                        "percentunit", "Dashed line: the budget is spent.", limit=0), 24),
    ]
    burns = [
        *_burn_cells(cfg, "Fast", "InferwatchErrorBudgetBurnFast", "fast_burn"),
        *_burn_cells(cfg, "Slow", "InferwatchErrorBudgetBurnSlow", "slow_burn"),
    ]
    latency = [
        Cell(timeseries("p99 latency", [
            target(_recorded(cfg, q.latency_quantile(cfg, 99)), MV), _objective(cfg, _P99)], "s",
            "Dashed line: the default threshold of InferwatchLatencyHigh; objective: each "
            "selected model's own (its models: entry, or what it declares in code).",
            limit=cfg.latency.p99_seconds), 24),
    ]
    alerts = [
        Cell(table("Firing inferwatch alerts", [target(
            'ALERTS{alertname=~"Inferwatch.+", alertstate="firing", ' + MODEL + "}",
            instant=True, fmt="table")], "Alerts firing now, from Prometheus' ALERTS series; "
            "the annotations mark their history.",
            hide=("Time", "Value", "__name__", "alertstate")), 24, 8),
    ]
    return _dashboard(cfg, "slo", "SLOs and alerts",
                      "Availability and latency SLOs per model, error budget, burn rates and "
                      "the inferwatch alerts, from the same config as the burn-rate alerts.",
                      [("Service level objectives", availability),
                       ("Burn rates", burns), ("Latency", latency),
                       ("Alerts", alerts)], annotations=_alert_history(cfg))


PAIR = "{{model}} {{model_version}} vs {{champion_version}}"


def champion_challenger(cfg: Config) -> dict[str, Any]:
    """A shadow model against its champion: agreement, differences, both sides' latency,
    errors and drift, and accuracy on the outcomes both saw. Panels by version compare any
    versions of the selected model, so a canary serving live gets the same view."""
    raw, w, sh = _raw(cfg), cfg.windows.rate, cfg.shadow
    # Side-by-side panels show every selected version: with Version on All (or the two
    # picked), the champion and its shadows, or two versions serving live as a canary.
    every_version = raw
    drift_every_version = _raw(cfg, f'method="{cfg.drift.method}"')
    correct_every_version = _raw(cfg, 'result="correct"')
    # A sparse feature's drift is scored from a few values and never pages: its noise would
    # set the worst line. A target without the count (an older release) keeps every feature.
    sparse = compare(cfg, f"inferwatch_feature_drift_observations{raw}", "<", _MIN_VALUES,
                     per_version=True)
    pair = q.SHADOW_PAIR
    agree = _raw(cfg, 'result="agree"')
    agreement = [
        Cell(stat("Agreement", [target(
            f"sum by ({pair}) (rate(inferwatch_shadow_agreement_total{agree}[{RATE}])) / "
            f"sum by ({pair}) (rate(inferwatch_shadow_agreement_total{raw}[{RATE}]))", PAIR)],
            "percentunit", "Compared rows where the shadow model predicted the champion's "
            f"class; red below {number(sh.min_agreement)}.", floor=sh.min_agreement), 8, 5),
        Cell(stat("Sampled calls compared", [target(
            f"sum by ({pair}) (rate(inferwatch_shadow_compared_total{raw}[{RATE}])) / "
            f"sum by ({pair}) (rate(inferwatch_shadow_sampled_total{raw}[{RATE}]))", PAIR)],
            "percentunit", "Share of the sampled champion calls whose two predictions were "
            "compared; the rest were dropped (see the shadow queue).", floor=0.99), 8, 5),
        Cell(stat(f"Shared outcomes ({sh.outcome_window})", [target(
            _recorded(cfg, q.shadow_outcomes(cfg)), PAIR)], "short",
            f"Outcomes both models were scored on; InferwatchShadowBetter needs "
            f"{number(sh.min_outcomes)}.", floor=sh.min_outcomes), 8, 5),
        Cell(timeseries(f"Agreement over time ({sh.window})", [target(
            _recorded(cfg, q.shadow_agreement(cfg)), PAIR)], "percentunit",
            f"Dashed line: InferwatchShadowAgreementLow fires below it (with at least "
            f"{number(sh.min_compared)} rows compared).", limit=sh.min_agreement, max_value=1)),
        Cell(matrix("Confusion: champion class x shadow class", target(
            f"sum by (champion_class, shadow_class) (increase(inferwatch_shadow_confusion_total"
            f"{raw}[$__range]))", "{{champion_class}} x {{shadow_class}}", instant=True,
            fmt="table"), "champion_class", "shadow_class",
            "Compared rows over the time range: one row per champion class, one column per "
            "shadow class; off the diagonal, the two disagree.")),
    ]
    differences = [
        Cell(timeseries("Difference quantiles (shadow - champion)", [target(
            f"histogram_quantile({n / 100}, sum by ({pair}, output, le) "
            f"(rate(inferwatch_shadow_difference_bucket{raw}[{RATE}])))",
            f"p{n} {PAIR} {{{{output}}}}") for n in (10, 50, 90)], "short",
            "Per output or probability column, from the difference histogram across replicas.")),
        Cell(heatmap("Difference distribution",
                     f"sum by (le) (increase(inferwatch_shadow_difference_bucket{raw}[{RATE}]))",
                     "short", "Shadow minus champion prediction, every output.")),
        Cell(timeseries("Absolute difference, rolling quantiles per replica", [target(
            f"inferwatch_shadow_absolute_difference{raw}",
            "{{instance}} " + PAIR + " {{output}} q{{quantile}}")], "short",
            "How far apart the two predictions are, computed exactly by each replica."), 24),
    ]
    latency_by = f"sum by ({q.MODEL_LABELS}, le)"
    side_by_side = [
        Cell(timeseries("p99 latency by version", [target(
            f"histogram_quantile(0.99, {latency_by} (rate(inferwatch_request_duration_seconds"
            f"_bucket{every_version}[{RATE}])))", MV)], "s",
            "Every selected version (All: the champion, its shadows, and canaries).")),
        Cell(timeseries("Error ratio by version", [target(
            f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_requests_total"
            f"{_raw(cfg, ERRORS)}[{RATE}])) / sum by "
            f"({q.MODEL_LABELS}) (rate(inferwatch_requests_total{every_version}[{RATE}]))", MV)],
            "percentunit", f"A shadow's timeouts and crashes count as its errors; "
            f"InferwatchShadowFailing fires above {number(sh.max_error_ratio)}.",
            limit=sh.max_error_ratio)),
        Cell(timeseries("Errors by type and version", [target(
            f"sum by ({q.MODEL_LABELS}, error_type) (rate(inferwatch_errors_total{every_version}"
            f"[{RATE}]))", MV + " {{error_type}}")], "reqps", stack=True)),
        Cell(timeseries("Median prediction by version", [target(
            f"histogram_quantile(0.5, sum by ({q.MODEL_LABELS}, output, le) "
            f"(rate(inferwatch_prediction_value_bucket{every_version}[{RATE}])))",
            MV + " {{output}}")], "short",
            "The prediction distributions of two versions, live or shadow, side by side.")),
        Cell(timeseries("Class mix by version", [target(
            f"sum by ({q.MODEL_LABELS}, class) (rate(inferwatch_predicted_class_total"
            f"{every_version}[{RATE}])) / on ({q.MODEL_LABELS}) group_left sum by "
            f"({q.MODEL_LABELS}) (rate(inferwatch_predicted_class_total{every_version}"
            f"[{RATE}]))", MV + " {{class}}")], "percentunit", max_value=1)),
        Cell(timeseries(f"Prediction drift by version ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}, output) (inferwatch_prediction_drift"
            f"{drift_every_version})",
            MV + " {{output}}")], "short", "Both models against the champion's reference.",
            limit=cfg.drift.prediction_threshold)),
        Cell(timeseries(f"Worst feature drift by version ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}) (\n  inferwatch_feature_drift{drift_every_version}\n"
            f"  unless on (job, instance, {q.MODEL_LABELS}, feature)\n  ({sparse})\n)", MV)],
            "short", "Same inputs, same reference: the two lines differ only by their windows. "
            "Features with fewer values in a replica's drift window than the drift alerts "
            "need are left out, as InferwatchFeatureDrift leaves them out.",
            limit=cfg.drift.feature_threshold)),
        Cell(timeseries(f"Accuracy by version ({cfg.accuracy.window})", [target(
            f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_outcomes_total"
            f"{correct_every_version}"
            f"[{cfg.accuracy.window}])) / sum by ({q.MODEL_LABELS}) (rate("
            f"inferwatch_outcomes_total{every_version}[{cfg.accuracy.window}]))", MV)],
            "percentunit", "Each version on its own outcomes (a canary's and the "
            "champion's requests differ; shared outcomes are below).", max_value=1)),
    ]
    truth = [
        Cell(timeseries(f"Accuracy on shared outcomes ({sh.outcome_window})", [
            target(_recorded(cfg, q.shadow_accuracy(cfg, "champion")),
                   "champion {{model}} {{champion_version}}"),
            target(_recorded(cfg, q.shadow_accuracy(cfg, "shadow")),
                   "shadow {{model}} {{model_version}}")],
            "percentunit", f"Both models scored on the same requests. InferwatchShadowBetter "
            f"fires when the shadow is right {number(sh.min_accuracy_gain)} more often, on at "
            f"least {number(sh.min_outcomes)} shared outcomes.", max_value=1)),
        Cell(timeseries("Shared outcomes by result", [target(
            f"sum by ({pair}, champion_result, shadow_result) (rate("
            f"inferwatch_shadow_outcomes_total{raw}[{RATE}]))",
            PAIR + " champion {{champion_result}} shadow {{shadow_result}}")], "short",
            "Where the two differ: right / wrong on the same request.", stack=True)),
        Cell(timeseries("Mean absolute error on shared outcomes", [target(
            f"sum by ({pair}, side) (rate(inferwatch_shadow_outcome_error_sum{raw}[{RATE}])) / "
            f"sum by ({pair}, side) (rate(inferwatch_shadow_outcome_error_count{raw}[{RATE}]))",
            PAIR + " {{side}}")], "short", "Regressors: both models on the same requests."), 24),
    ]
    queue = [
        Cell(timeseries("Sampled, compared and dropped per second", [
            target(f"sum by ({pair}) (rate(inferwatch_shadow_sampled_total{raw}[{RATE}]))",
                   "sampled " + PAIR),
            target(f"sum by ({pair}) (rate(inferwatch_shadow_compared_total{raw}[{RATE}]))",
                   "compared " + PAIR),
            target(f"sum by ({pair}) (rate(inferwatch_shadow_dropped_total{raw}[{RATE}]))",
                   "dropped " + PAIR)], "reqps")),
        Cell(timeseries(f"Dropped share by reason ({w})", [target(
            _recorded(cfg, q.shadow_drop_ratio(cfg)), PAIR + " {{reason}}")], "percentunit",
            f"InferwatchShadowDropping fires above {number(sh.max_drop_ratio)} for queue_full, "
            f"incomparable and shutdown; errors, timeouts and crashes are the shadow failing.",
            limit=sh.max_drop_ratio)),
    ]
    return _dashboard(cfg, "shadow", "Champion vs challenger",
                      "A shadow model scored next to its champion on the same inputs: "
                      "agreement, differences, both sides' health, accuracy on shared outcomes.",
                      [("Agreement", agreement), ("Differences", differences),
                       ("Side by side, every version", side_by_side),
                       ("Ground truth", truth), ("Shadow queue", queue)])


DASHBOARDS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "champion-challenger.json": champion_challenger,
    "model-overview.json": model_overview,
    "model-quality.json": model_quality,
    "resources.json": resources,
    "slo.json": slo,
}


def render(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every dashboard as JSON data, by file name."""
    return {name: build(cfg) for name, build in DASHBOARDS.items()}
