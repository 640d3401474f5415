"""The model quality dashboard: predictions, data quality, drift and ground truth.

With the queries no other dashboard draws: the feature drift table (whether each feature's
alert judges it) and the accuracy threshold InferwatchAccuracyDrop judges each version by.
"""

from __future__ import annotations

from typing import Any

import attr
from grafanalib import core as g

from inferwatch.generate import promql as q
from inferwatch.generate import rules_recording
from inferwatch.generate.config_schema import Config
from inferwatch.generate.dashboards_bands import band_cells
from inferwatch.generate.dashboards_frame import dashboard, output_variable
from inferwatch.generate.dashboards_queries import (
    MIN_VALUES,
    MODEL,
    MV,
    OUTPUT,
    RATE,
    VERSION,
    judged_with,
    objective,
    override_groups,
    raw_sel,
    recorded,
    without_shadows,
)
from inferwatch.generate.objectives import (
    compare,
    is_overridden,
    is_per_version,
    join_objective,
    objective_of,
)
from inferwatch.generate.panels import (
    Cell,
    bargauge,
    heatmap,
    joined_table,
    target,
    thresholds,
    timeseries,
)
from inferwatch.generate.promql import number, selector
from inferwatch.generate.rules_alerts import MAX_ERROR, MAX_ERROR_RATIO, has_error_ceiling

# What a panel with a threshold and each model's objective says of its lines.
_OBJECTIVE_LINES = ("Dashed line: the default alert threshold; objective: each selected "
                    "model's own (its models: entry, or what it declares in code).")


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
    serving = f"group by ({q.MODEL_LABELS}) (inferwatch_model_info{raw_sel(cfg)})"
    # `unless` binds tighter than `or`: the helper's brackets leave shadows out of both.
    return without_shadows(cfg, f"\n  (\n    {recorded(cfg, q.validation_accuracy())}\n"
                                f"    - {drop_on} {drop}\n  )\n"
                                f"  or on ({q.MODEL_LABELS})\n"
                                f"  (\n    {serving} * 0\n    + {floor_on} {floor}\n  )\n")


def _error_bound(cfg: Config) -> str:
    """What InferwatchRegressionErrorRise compares each selected version's mean absolute error
    with: its validation error times accuracy.max_error_ratio, or the ceiling
    accuracy.max_error where the model has one, whichever is lower. Shadow versions are left
    out, as the alert leaves them out."""
    ratio_on, ratio = _version_objective(cfg, MAX_ERROR_RATIO)
    times = (f"{ratio_on} {ratio}" if is_overridden(cfg, MAX_ERROR_RATIO)
             else number(cfg.accuracy.max_error_ratio))
    scaled = f"{recorded(cfg, q.validation_error())} * {times}"
    if not has_error_ceiling(cfg):
        return without_shadows(cfg, scaled)
    serving = f"group by ({q.MODEL_LABELS}) (inferwatch_model_info{raw_sel(cfg)}) * 0"
    if is_overridden(cfg, MAX_ERROR):
        ceiling_on, ceiling = _version_objective(cfg, MAX_ERROR)
        ceiling = f"{serving}\n    + {ceiling_on} {ceiling}"
    else:
        ceiling = f"{serving} + {number(cfg.accuracy.max_error)}"
    # The lower of the two where a version has both, else the one it has.
    return without_shadows(cfg, f"\n  (\n    {scaled}\n  )\n  <= on ({q.MODEL_LABELS})\n"
                                f"  (\n    {ceiling}\n  )\n"
                                f"  or on ({q.MODEL_LABELS})\n  (\n    {ceiling}\n  )\n"
                                f"  or on ({q.MODEL_LABELS})\n  (\n    {scaled}\n  )\n")


def _error_bound_text(cfg: Config) -> str:
    """The bound line of the Regression error panel in words."""
    own = " (or its models: entry's)" if is_overridden(cfg, MAX_ERROR_RATIO) else ""
    text = (f"its validation error times {number(cfg.accuracy.max_error_ratio)}{own}")
    if is_overridden(cfg, MAX_ERROR):
        default = ("" if cfg.accuracy.max_error is None
                   else f" (default {number(cfg.accuracy.max_error)})")
        return (f"{text}, or its model's ceiling accuracy.max_error{default}, whichever is "
                f"lower")
    if cfg.accuracy.max_error is not None:
        return f"{text}, or the ceiling {number(cfg.accuracy.max_error)}, whichever is lower"
    return f"{text} (no line for a version without one)"


def _outcomes_needed(cfg: Config) -> str:
    """How many outcomes InferwatchAccuracyDrop needs, as the Accuracy panel says it: the
    default, and whose own number applies where some model has its own."""
    key = "accuracy.min_outcomes"
    needed = f"the alert needs {number(cfg.accuracy.min_outcomes)} outcomes"
    if not is_overridden(cfg, key):
        return needed
    declared = ", or what a version declares in code" if is_per_version(cfg, key) else ""
    return f"{needed} by default; a models: entry's own minimum for its models{declared}"


def _each_versions_minimum(cfg: Config, rows: str) -> str:
    """`rows` (a vector with model and model_version) valued at each version's own
    drift.min_observations, the minimum its drift alerts apply."""
    if not is_overridden(cfg, MIN_VALUES):
        return f"{rows} * 0 + {number(cfg.drift.min_observations)}"
    on, series = _version_objective(cfg, MIN_VALUES)
    return f"{rows} * 0 + {on} {series}"


def _feature_drift_judged(cfg: Config, drift: str) -> str:
    """1 for each feature of a version whose drift InferwatchFeatureDrift judges, 0 for one
    it leaves out: no replica has both a window of drift.min_observations rows and as many
    values of the feature (the alert's own conditions, on the same replica)."""
    key, by = MIN_VALUES, f"{q.MODEL_LABELS}, feature"
    rows = compare(cfg, f"inferwatch_drift_window_observations{raw_sel(cfg)}", ">=", key,
                   per_version=True)
    few = compare(cfg, f"inferwatch_feature_drift_observations{raw_sel(cfg)}", "<", key,
                  per_version=True)
    judged = (f"group by ({by}) (\n  {drift}\n  and on (job, instance, {q.MODEL_LABELS})\n"
              f"  {rows}\n  unless on (job, instance, {q.MODEL_LABELS}, feature)\n  ({few})\n)")
    return f"{judged}\nor\ngroup by ({by}) ({drift}) * 0"


def _feature_drift_table(cfg: Config) -> g.Panel:
    """Each feature's drift now, beside the values it has in the window, the minimum its
    alert needs and whether the alert judges it: a sparse feature's drift is noise from a
    few values, and its alert stays silent whatever the drift shows."""
    by = f"{q.MODEL_LABELS}, feature"
    drift = f"inferwatch_feature_drift{raw_sel(cfg, f'method={q.quoted(cfg.drift.method)}')}"
    values = f"inferwatch_feature_drift_observations{raw_sel(cfg)}"
    judged_mappings = [{"type": "value", "options": {
        "0": {"text": "no: too few values or rows", "color": "orange", "index": 0},
        "1": {"text": "yes", "color": "green", "index": 1}}}]
    text_cell = {"id": "custom.cellOptions", "value": {"type": "color-text"}}
    minimum = number(cfg.drift.min_observations)
    own = (" (each version's own: its models: entry, or what it declares in code)"
           if is_overridden(cfg, MIN_VALUES) else "")
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
    raw, w = raw_sel(cfg), cfg.windows.rate
    method = f'method="{cfg.drift.method}"'
    # A model's class mix is what it answered its callers: a shadow's classes, compared on
    # the champion-challenger dashboard, are left out as the class band leaves them out.
    range_classes, classes_now = (without_shadows(
        cfg, f"{function}(inferwatch_predicted_class_total{raw}[{window}])")
        for function, window in (("increase", "$__range"), ("rate", RATE)))
    predictions = [
        Cell(timeseries("Prediction quantiles", [
            target(f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, output, le) "
                   f"(rate(inferwatch_prediction_value_bucket{raw}[{RATE}])))",
                   f"p{n} {MV} {{{{output}}}}") for n in (50, 90, 99)],
            "short", "From the prediction histogram, across replicas.", signed=True)),
        Cell(timeseries("Rolling prediction quantiles per replica", [target(
            f"inferwatch_prediction{raw}",
            "{{instance}} " + MV + " {{output}} q{{quantile}}")], "short",
            "Rolling-window quantiles each replica computes exactly (not aggregatable).",
            signed=True)),
        # One per model and one output at a time, as the latency heatmap leaves shadows out:
        # a heatmap draws one distribution, and a sum of models, of a champion and its
        # shadow, or of a classifier's mirrored probabilities is none of them.
        Cell(heatmap("Prediction distribution: $model", "sum by (le) (" + without_shadows(
            cfg, f"increase(inferwatch_prediction_value_bucket{raw_sel(cfg, OUTPUT)}"
                 f"[{RATE}])") + ")", "short",
            "The values of the output picked in the Output variable (a class's probability, "
            "a regression's value) that each selected model answered, every serving version "
            "together, a shadow version's left out. A model without that output has an "
            "empty heatmap.", repeat_over="model")),
        # Per model: two models naming a class alike ("1", "fraud") would otherwise share
        # one bar, each model's share diluted by the other's calls.
        Cell(bargauge("Class mix", [target(
            f"sum by (model, class) ({range_classes}) / on (model) group_left "
            f"sum by (model) ({range_classes})",
            "{{model}} {{class}}", instant=True)], "percentunit",
            "Share of each predicted class of each model over the time range.", max_value=1)),
        # One panel per model: each model's shares stack to 1, so two models in one stack
        # would reach 2 and be cut off at the axis maximum.
        Cell(attr.evolve(timeseries("Class mix over time", [target(
            f"sum by (model, class) ({classes_now}) / on (model) group_left "
            f"sum by (model) ({classes_now})",
            "{{model}} {{class}}")], "percentunit", stack=True, max_value=1),
            repeat_over="model")),
        Cell(timeseries("Confidence", [target(
            f"inferwatch_prediction_confidence{raw}", "{{instance}} " + MV + " q{{quantile}}")],
            "percentunit", "Rolling quantiles of the top-class probability.", max_value=1)),
        Cell(timeseries("Invalid predictions", [
            target(recorded(cfg, q.invalid_ratio(cfg)), "ratio " + MV),
            objective(cfg, "predictions.invalid_ratio")], "percentunit",
            f"Invalid values per row over {w}. {_OBJECTIVE_LINES}",
            limit=cfg.predictions.invalid_ratio)),
        Cell(timeseries("Invalid predictions by reason", [target(
            f"sum by ({q.MODEL_LABELS}, reason) (rate(inferwatch_invalid_predictions_total{raw}"
            f"[{RATE}]))", MV + " {{reason}}")], "cps", "Invalid predicted values per "
            "second, by reason.", stack=True)),
        Cell(timeseries("Actions taken", [target(
            f"sum by ({q.MODEL_LABELS}, action) (rate(inferwatch_actions_total{raw}[{RATE}]))",
            MV + " {{action}}")], "short", "What the system did with predictions, per "
            "second.", stack=True), 24),
    ]
    quality = [
        Cell(timeseries("Missing values per row", [target(
            recorded(cfg, q.feature_ratio(cfg, 'inferwatch_feature_missing')),
            MV + " {{feature}}"), objective(cfg, "data_quality.missing_ratio")], "percentunit",
            _OBJECTIVE_LINES, limit=cfg.data_quality.missing_ratio)),
        Cell(timeseries("Out-of-range values per row", [target(
            recorded(cfg, q.feature_ratio(cfg, 'inferwatch_feature_out_of_range')),
            MV + " {{feature}}"), objective(cfg, "data_quality.out_of_range_ratio")],
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
            f"max by ({q.MODEL_LABELS}, feature) (inferwatch_feature_drift{raw_sel(cfg, method)})",
            MV + " {{feature}}"), objective(cfg, "drift.feature_threshold")], "short",
            _OBJECTIVE_LINES, limit=cfg.drift.feature_threshold), 16, 10),
        Cell(timeseries(f"Prediction drift ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}, output) (inferwatch_prediction_drift"
            f"{raw_sel(cfg, method)})", MV + " {{output}}"),
            objective(cfg, "drift.prediction_threshold")], "short",
            _OBJECTIVE_LINES, limit=cfg.drift.prediction_threshold)),
        # A model's own minimum (drift.min_observations is an objective) decides whether its
        # drift alerts can fire at all: the default line alone hides a model kept silent.
        # The replica with the most rows: the drift alerts need only one replica with enough,
        # so the fewest (a replica just started) would show a version below the line while
        # its alert can still fire.
        Cell(timeseries("Drift window rows", [target(
            f"max by ({q.MODEL_LABELS}) (inferwatch_drift_window_observations{raw})", MV),
            objective(cfg, "drift.min_observations")],
            "short", f"Per version, the replica with the most rows in its drift window: the "
            f"drift alerts judge a version where one replica has at least "
            f"{number(cfg.drift.min_observations)} rows (dashed line), or its model's own "
            f"minimum (objective: its models: entry, or what it declares in code).",
            limit=cfg.drift.min_observations)),
    ]
    # Each accuracy window in use (the default's, then the models: entries' own), each kept to
    # the models its alert judges over it: a model drawn over every window would show lines
    # its alert never compares with, beside the one it does.
    windows = [own.accuracy.window for own in rules_recording.accuracy_configs(cfg)]
    judged = override_groups(cfg, lambda c: c.accuracy.window)

    def accuracy_of(own: Config) -> str:
        rule = recorded(cfg, q.accuracy(own))
        if not judged:
            return rule
        window = own.accuracy.window
        return f"({rule}){judged_with(cfg, judged, window if window in judged else None)}"

    accuracy = [target(accuracy_of(own),
                       MV if len(windows) == 1 else f"{MV} over {own.accuracy.window}")
                for own in rules_recording.accuracy_configs(cfg)]
    def mean_error_of(own: Config) -> str:
        rule = recorded(cfg, q.outcome_error_mean(own))
        if not judged:
            return rule
        window = own.accuracy.window
        return f"({rule}){judged_with(cfg, judged, window if window in judged else None)}"

    mean_errors = [target(mean_error_of(own), f"mean {MV} over {own.accuracy.window}")
                   for own in rules_recording.accuracy_configs(cfg)]
    truth = [
        Cell(timeseries(f"Accuracy ({', '.join(windows)})", [
            *accuracy, target(_accuracy_threshold(cfg), "objective " + MV)],
            "percentunit", f"Correct outcomes / all outcomes; {_outcomes_needed(cfg)}. "
            f"Dashed line: the default "
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
            *(target(f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, le) "
                     f"(rate(inferwatch_outcome_error_bucket{raw}[{RATE}])))",
                     f"p{n} {MV}") for n in (50, 90)),
            *mean_errors, target(_error_bound(cfg), "bound " + MV)], "short",
            f"Absolute error once ground truth arrives: p50 and p90 over the rate interval, "
            f"and the mean over the accuracy window, which InferwatchRegressionErrorRise "
            f"compares with the bound line: {_error_bound_text(cfg)}; "
            f"{_outcomes_needed(cfg)}.")),
        Cell(timeseries("Unmatched outcomes", [target(
            f"sum by ({q.MODEL_LABELS}, reason) (rate(inferwatch_outcomes_unmatched_total{raw}"
            f"[{RATE}]))", MV + " {{reason}}")], "short", "Outcomes with no prediction to join.",
            stack=True), 24),
    ]
    return dashboard(cfg, "quality", "Model quality",
                     "What the models predict, on what data, and how right they are.",
                     [("Predictions", predictions),
                       ("Expected bands (adaptive baselines)", band_cells(cfg, (
                           "predictions", "confidence", "classes", "missing",
                           "out_of_range"))),
                       ("Data quality", quality),
                       ("Drift against the training reference", drift),
                       ("Ground truth", truth)],
                     variables=(output_variable(cfg, "inferwatch_prediction_value_bucket"),))
