"""The champion vs challenger dashboard: a shadow model scored next to its champion.

Agreement, differences, both sides' health by version and accuracy on shared outcomes.
"""

from __future__ import annotations

from typing import Any

from inferwatch.generate import promql as q
from inferwatch.generate.config_schema import Config
from inferwatch.generate.dashboards_frame import dashboard, output_variable
from inferwatch.generate.dashboards_queries import (
    ERRORS,
    MIN_VALUES,
    MV,
    OUTPUT,
    RATE,
    objective,
    raw_sel,
    recorded,
)
from inferwatch.generate.objectives import compare
from inferwatch.generate.panels import Cell, heatmap, matrix, stat, target, timeseries
from inferwatch.generate.promql import number

PAIR = "{{model}} {{model_version}} vs {{champion_version}}"


def _confusion_by_pair(selector: str) -> str:
    """The confusion counts over the time range, each row's champion class prefixed by its
    pair ("fraud 2-rc vs 1: legit"): the matrix groups by the two class labels alone, so
    two models' or two challengers' rows of a class would otherwise add in one cell."""
    counts = (f"sum by ({q.SHADOW_PAIR}, champion_class, shadow_class) "
              f"(increase(inferwatch_shadow_confusion_total{selector}[$__range]))")
    # Constant labels and joins, not a capture group: Grafana would read "$1" as a variable.
    words = f'label_replace(label_replace({counts}, "vs", "vs", "", ""), "colon", ":", "", "")'
    marked = f'label_join({words}, "champion_version", "", "champion_version", "colon")'
    row = (f'label_join({marked}, "champion_class", " ", "model", "model_version", "vs", '
           f'"champion_version", "champion_class")')
    return f"sum by (champion_class, shadow_class) ({row})"


def _one_pair(buckets: str) -> str:
    """`buckets` summed by le while they hold one challenger pair, else nothing: a heatmap
    draws one distribution, and two pairs' differences added are neither's."""
    return (f"sum by (le) ({buckets})\nand on ()\n"
            f"(count(count by ({q.SHADOW_PAIR}) ({buckets})) == 1)")


# What the drift panels by version draw besides each version's drift: the thresholds of
# InferwatchFeatureDrift and InferwatchPredictionDrift.
_DRIFT_LINES = ("Dashed line: the default threshold of the drift alert; objective: each "
                "selected model's own (its models: entry, or what it declares in code).")


def champion_challenger(cfg: Config) -> dict[str, Any]:
    """A shadow model against its champion: agreement, differences, both sides' latency,
    errors and drift, and accuracy on the outcomes both saw. Panels by version compare any
    versions of the selected model, so a canary serving live gets the same view."""
    raw, w, sh = raw_sel(cfg), cfg.windows.rate, cfg.shadow
    # Side-by-side panels show every selected version: with Version on All (or the two
    # picked), the champion and its shadows, or two versions serving live as a canary.
    every_version = raw
    drift_every_version = raw_sel(cfg, f'method="{cfg.drift.method}"')
    correct_every_version = raw_sel(cfg, 'result="correct"')
    # A sparse feature's drift is scored from a few values and never pages: its noise would
    # set the worst line. A target without the count (an older release) keeps every feature.
    sparse = compare(cfg, f"inferwatch_feature_drift_observations{raw}", "<", MIN_VALUES,
                     per_version=True)
    pair = q.SHADOW_PAIR
    agree = raw_sel(cfg, 'result="agree"')
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
            recorded(cfg, q.shadow_outcomes(cfg)), PAIR)], "short",
            f"Outcomes both models were scored on; InferwatchShadowBetter needs "
            f"{number(sh.min_outcomes)}.", floor=sh.min_outcomes), 8, 5),
        Cell(timeseries(f"Agreement over time ({sh.window})", [target(
            recorded(cfg, q.shadow_agreement(cfg)), PAIR)], "percentunit",
            f"Dashed line: InferwatchShadowAgreementLow fires below it (with at least "
            f"{number(sh.min_compared)} rows compared).", limit=sh.min_agreement, max_value=1)),
        Cell(matrix("Confusion: champion class x shadow class", target(
            _confusion_by_pair(raw), "{{champion_class}} x {{shadow_class}}", instant=True,
            fmt="table"), "champion_class", "shadow_class",
            "Compared rows over the time range: one row per challenger pair and champion "
            "class (model, shadow version vs champion version: class), one column per shadow "
            "class; off the diagonal, the two disagree. Pairs are never added together.")),
    ]
    differences = [
        Cell(timeseries("Difference quantiles (shadow - champion)", [target(
            f"histogram_quantile({n / 100}, sum by ({pair}, output, le) "
            f"(rate(inferwatch_shadow_difference_bucket{raw}[{RATE}])))",
            f"p{n} {PAIR} {{{{output}}}}") for n in (10, 50, 90)], "short",
            "Per output or probability column, from the difference histogram across replicas.",
            signed=True)),
        Cell(heatmap("Difference distribution", _one_pair(
            f"increase(inferwatch_shadow_difference_bucket{raw_sel(cfg, OUTPUT)}[{RATE}])"),
            "short", "Shadow minus champion, of the output picked in the Output variable, for "
            "one challenger pair: where the Model and Version variables select more than one "
            "pair the heatmap stays empty rather than add their differences (pick one; the "
            "quantiles beside draw every pair).")),
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
            f"{raw_sel(cfg, ERRORS)}[{RATE}])) / sum by "
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
            "The prediction distributions of two versions, live or shadow, side by side.",
            signed=True)),
        Cell(timeseries("Class mix by version", [target(
            f"sum by ({q.MODEL_LABELS}, class) (rate(inferwatch_predicted_class_total"
            f"{every_version}[{RATE}])) / on ({q.MODEL_LABELS}) group_left sum by "
            f"({q.MODEL_LABELS}) (rate(inferwatch_predicted_class_total{every_version}"
            f"[{RATE}]))", MV + " {{class}}")], "percentunit", max_value=1)),
        Cell(timeseries(f"Prediction drift by version ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}, output) (inferwatch_prediction_drift"
            f"{drift_every_version})",
            MV + " {{output}}"), objective(cfg, "drift.prediction_threshold")], "short",
            f"Both models against the champion's reference. {_DRIFT_LINES}",
            limit=cfg.drift.prediction_threshold)),
        Cell(timeseries(f"Worst feature drift by version ({cfg.drift.method})", [target(
            f"max by ({q.MODEL_LABELS}) (\n  inferwatch_feature_drift{drift_every_version}\n"
            f"  unless on (job, instance, {q.MODEL_LABELS}, feature)\n  ({sparse})\n)", MV),
            objective(cfg, "drift.feature_threshold")],
            "short", "Same inputs, same reference: the two lines differ only by their windows. "
            "Features with fewer values in a replica's drift window than the drift alerts "
            f"need are left out, as InferwatchFeatureDrift leaves them out. {_DRIFT_LINES}",
            limit=cfg.drift.feature_threshold)),
        Cell(timeseries(f"Accuracy by version ({cfg.accuracy.window})", [target(q.share(
            f"sum by ({q.MODEL_LABELS})",
            f"rate(inferwatch_outcomes_total{correct_every_version}[{cfg.accuracy.window}])",
            f"rate(inferwatch_outcomes_total{every_version}[{cfg.accuracy.window}])"), MV)],
            "percentunit", "Each version on its own outcomes (a canary's and the "
            "champion's requests differ; shared outcomes are below).", max_value=1)),
    ]
    truth = [
        Cell(timeseries(f"Accuracy on shared outcomes ({sh.outcome_window})", [
            target(recorded(cfg, q.shadow_accuracy(cfg, "champion")),
                   "champion {{model}} {{champion_version}}"),
            target(recorded(cfg, q.shadow_accuracy(cfg, "shadow")),
                   "shadow {{model}} {{model_version}}")],
            "percentunit", f"Both models scored on the same requests. InferwatchShadowBetter "
            f"fires when the shadow is right {number(sh.min_accuracy_gain)} more often, on at "
            f"least {number(sh.min_outcomes)} shared outcomes.", max_value=1)),
        Cell(timeseries("Shared outcomes by result", [target(
            f"sum by ({pair}, champion_result, shadow_result) (rate("
            f"inferwatch_shadow_outcomes_total{raw}[{RATE}]))",
            PAIR + " champion {{champion_result}} shadow {{shadow_result}}")], "cps",
            "Shared outcomes per second by each model's result on the same request: both "
            "right, both wrong, or one right and the other wrong (where the two differ).",
            stack=True)),
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
            recorded(cfg, q.shadow_drop_ratio(cfg)), PAIR + " {{reason}}")], "percentunit",
            f"InferwatchShadowDropping fires above {number(sh.max_drop_ratio)} for queue_full, "
            f"incomparable and shutdown; errors, timeouts and crashes are the shadow failing.",
            limit=sh.max_drop_ratio)),
    ]
    return dashboard(cfg, "shadow", "Champion vs challenger",
                     "A shadow model scored next to its champion on the same inputs: "
                     "agreement, differences, both sides' health, accuracy on shared outcomes.",
                     [("Agreement", agreement), ("Differences", differences),
                       ("Side by side, every version", side_by_side),
                       ("Ground truth", truth), ("Shadow queue", queue)],
                     variables=(output_variable(cfg, "inferwatch_shadow_difference_bucket"),))
