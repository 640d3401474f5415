"""The model overview dashboard: traffic, errors, latency, streams, versions, deploys and
the runs batch jobs push."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafanalib import core as g

from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config
from inferwatch.generate.dashboards_bands import band_cells
from inferwatch.generate.dashboards_frame import dashboard
from inferwatch.generate.dashboards_queries import (
    ERRORS,
    INSTANCE,
    JOB,
    MODEL,
    MV,
    NOT_SHADOW,
    P99,
    RATE,
    SHADOW,
    coloured_by_default,
    objective,
    raw_sel,
    recorded,
    without_shadows,
)
from inferwatch.generate.objectives import is_per_version
from inferwatch.generate.panels import (
    Cell,
    heatmap,
    joined_table,
    stat,
    state_timeline,
    table,
    target,
    timeseries,
)
from inferwatch.generate.promql import block, model_sel, number, selector
from inferwatch.generate.rules_pushed import (
    BATCH_RUNS_PANEL,
    push_periods,
    pushed_availability,
    pushed_series,
)

# The panels by version draw the versions that serve users; a shadow's lines would read as
# one more version serving, and add into the stacked ones. Where the Champion vs challenger
# dashboard draws the same signal of the shadow, the description sends the reader there;
# elsewhere it says only that the shadow is left out.
SHADOW_LEFT_OUT = "A shadow version is left out: its calls answer no user."


def _shadow_beside(what: str) -> str:
    return (f"A shadow version is left out: the Champion vs challenger dashboard draws its "
            f"{what} beside its champion's.")


def _yes_no(yes: str) -> list[dict[str, Any]]:
    """A table cell's value mappings: 0 a green "no", 1 a red `yes`."""
    return [{"type": "value", "options": {
        "0": {"text": "no", "color": "green", "index": 0},
        "1": {"text": yes, "color": "red", "index": 1}}}]


def _batch_runs(cfg: Config) -> g.Panel:
    """Each pushed group's last push and last run, judged as the two batch alerts judge them.

    A batch job pushes under its own job name, which no scrape job matches, and its model
    need not be a served one: the Job, Instance and Version variables, which list the
    scraped services, do not apply. The Model variable does (All matches every group)."""
    p = cfg.pushgateway
    pushed_at = f"max by (job, model) (push_time_seconds{selector(p.selector, MODEL)})"

    def each_period(term: Callable[[str, str], str]) -> str:
        # Each job's own period, as InferwatchPushgatewayGroupStale chooses it: `term` of a
        # group's push time and the seconds within which its job pushes.
        return "\nor\n".join(
            term(f"max by (job, model) (push_time_seconds{selector(p.selector, MODEL, *jobs)})",
                 number(seconds))
            for jobs, seconds in push_periods(cfg))

    def last_run(*matchers: str) -> str:
        series = pushed_series(cfg, "inferwatch_requests_total", MODEL, *matchers)
        return f"sum by (job, model) {block(series)}"

    ratio = f"{block(last_run(ERRORS))}\n/\n{block(last_run())}"
    budget = block(f"1 - {block(pushed_availability(cfg))}")
    row = {"instant": True, "fmt": "table"}
    periods = ", ".join([*(f"{job} {period}" for job, period in p.jobs.items()),
                         f"{'any other job' if p.jobs else 'every job'} {p.max_age}"])
    own = ("; a models: entry's own for its models"
           if any("slo.availability" in entry.values for entry in cfg.models.values())
           else "")
    if is_per_version(cfg, "slo.availability"):
        own += "; with objectives.from_code, what the model declares in code first"
    seconds = [{"id": "unit", "value": "s"}]
    ratios = [{"id": "unit", "value": "percentunit"}]
    flag = {"id": "custom.cellOptions", "value": {"type": "color-text"}}
    return joined_table(BATCH_RUNS_PANEL, [
        target(f"time() - {pushed_at}", **row),
        target(each_period(lambda pushed, seconds: f"{pushed} * 0 + {seconds}"), **row),
        target(each_period(lambda pushed, seconds: f"time() - {pushed} > bool {seconds}"),
               **row),
        target(last_run(), **row),
        target(last_run(ERRORS), **row),
        target(last_run('outcome="cancelled"'), **row),
        target(ratio, **row),
        target(f"{last_run()} * 0\n+ on (model) group_left ()\n{budget}", **row),
        target(f"{ratio}\n> bool on (model) group_left ()\n{budget}", **row)],
        [("last push ago", seconds), ("expected within", seconds),
         ("overdue", [flag, {"id": "mappings", "value": _yes_no("overdue")}]),
         ("calls", []), ("errors", []), ("cancelled", []),
         ("error ratio", ratios), ("error budget", ratios),
         ("failed", [flag, {"id": "mappings", "value": _yes_no("failed")}])],
        f"Each group a batch job pushed to the Pushgateway (its job and model; series "
        f"matching {{{p.selector}}}, pushgateway.selector): how long ago it last pushed, "
        f"against the period within which its job is expected to push again ({periods}; "
        f"pushgateway.jobs and pushgateway.max_age); and its last run's calls, errors and "
        f"cancelled calls, which the group holds until the next push replaces them, with "
        f"their error ratio against the model's error budget (1 - its availability "
        f"objective: {1 - cfg.slo.availability:.6g} of calls by default{own}). overdue is "
        f"InferwatchPushgatewayGroupStale's condition, failed InferwatchBatchRunFailed's; "
        f"each alert fires once its condition has held for its for: duration. A group "
        f"never pushed successfully shows the time since 1970. The Model variable narrows "
        f"the groups; Job, Instance and Version name the scraped services, not batch jobs.",
        hide=("Time",))


def model_overview(cfg: Config) -> dict[str, Any]:
    """Traffic, errors, latency, in-flight, batch size, versions serving, deploys and the
    batch jobs' pushed runs."""
    raw, w = raw_sel(cfg), cfg.windows.rate
    budget = 1 - cfg.slo.availability

    def served(vector: str) -> str:
        # The totals of a model are its users' calls, and its lines by version the versions
        # serving them: a shadow's run beside them.
        return without_shadows(cfg, vector)

    calls_rate = f"rate(inferwatch_requests_total{raw}[{RATE}])"
    errors_rate = f"rate(inferwatch_requests_total{raw_sel(cfg, ERRORS)}[{RATE}])"
    latency_buckets = f"increase(inferwatch_request_duration_seconds_bucket{raw}[{RATE}])"
    traffic = [
        Cell(stat("Calls / s", [target(f"sum({served(recorded(cfg, q.requests_rate(cfg)))})")],
                  "reqps", f"All calls of the selected models, over {w}; a shadow version's "
                  f"are left out."), 6, 4),
        Cell(stat("Error ratio", [target(f"sum by (model) ({served(errors_rate)}) / "
                                         f"sum by (model) ({served(calls_rate)})", "{{model}}")],
                  "percentunit", "Failed calls / all calls, a shadow version's left out (as "
                  "the burn-rate alerts leave them out); red above the error budget of "
                  f"the {number(cfg.slo.availability)} availability SLO."
                  + coloured_by_default(cfg, "slo.availability", "error budget",
                                        "drawn in the Error ratio panel"),
                  limit=budget), 6, 4),
        Cell(stat("In flight", [target(
            f"sum({served(f'inferwatch_requests_in_flight{raw}')})")], "short",
            "Calls running now, a shadow version's left out."), 6, 4),
        Cell(stat("p99 latency", [target(
            f"max({served(recorded(cfg, q.latency_quantile(cfg, 99)))})")],
                  "s", f"Worst p99 of the selected versions over {w} (shadows left out, as "
                  f"InferwatchLatencyHigh leaves them out); red above "
                  f"{number(cfg.latency.p99_seconds)}s."
                  + coloured_by_default(cfg, P99, "p99 threshold",
                                        "drawn in the Latency quantiles panel"),
                  limit=cfg.latency.p99_seconds), 6, 4),
        Cell(timeseries("Calls per second by outcome", [target(
            served(f"sum by ({q.MODEL_LABELS}, outcome) (rate(inferwatch_requests_total{raw}"
                   f"[{RATE}]))"), MV + " {{outcome}}")], "reqps", _shadow_beside("error ratio"),
            stack=True)),
        Cell(timeseries("Error ratio", [
            target(served(recorded(cfg, q.error_ratio(w))), MV),
            objective(cfg, "slo.availability", "1 - {}")],
            "percentunit", f"Dashed line: the error budget of the "
            f"{number(cfg.slo.availability)} availability SLO; objective: each model's own "
            f"budget. " + _shadow_beside("error ratio"), limit=budget)),
        # Per version, as the alerts judge versions: a canary's errors summed into the stable
        # version's would show neither.
        Cell(timeseries("Errors by type", [target(
            served(f"sum by ({q.MODEL_LABELS}, error_type) (rate(inferwatch_errors_total{raw}"
                   f"[{RATE}]))"), MV + " {{error_type}}")], "reqps",
            _shadow_beside("errors by type"), stack=True), 24),
    ]
    latency = [
        Cell(timeseries("Latency quantiles", [
            *(target(served(recorded(cfg, q.latency_quantile(cfg, n))), f"p{n} {MV}")
              for n in (50, 90, 99)),
            objective(cfg, "latency.p99_seconds")],
            "s", "From the latency histogram, across replicas. Dashed line: the default p99 "
                 "threshold of InferwatchLatencyHigh; objective: each model's own. "
                 + _shadow_beside("p99 latency"),
            limit=cfg.latency.p99_seconds)),
        Cell(heatmap("Latency distribution", f"sum by (le) ({served(latency_buckets)})", "s",
                     "Every call of the selected versions but a shadow's.")),
        Cell(timeseries("Stage latency p99", [target(
            served(recorded(cfg, q.stage_latency_quantile(cfg, 99))), MV + " {{stage}}")], "s",
            "p99 of each stage (preprocess, inference, postprocess, ...). "
            + SHADOW_LEFT_OUT)),
        Cell(timeseries("In-flight calls", [target(
            served(f"sum by ({q.MODEL_LABELS}, instance) (inferwatch_requests_in_flight{raw})"),
            MV + " {{instance}}")], description=SHADOW_LEFT_OUT)),
        # Batch sizes are whole numbers on whole-number buckets: an interpolated p99 reads
        # below the mean when every call has one row. Quantile 1 is the upper bound of the
        # bucket holding the largest batch, no interpolation.
        Cell(timeseries("Batch size", [
            target(served(f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_batch_size_sum{raw}"
                          f"[{RATE}])) / sum by ({q.MODEL_LABELS}) "
                          f"(rate(inferwatch_batch_size_count{raw}[{RATE}]))"), "mean " + MV),
            target(served(f"histogram_quantile(1, sum by ({q.MODEL_LABELS}, le) "
                          f"(rate(inferwatch_batch_size_bucket{raw}[{RATE}])))"),
                   "largest at most " + MV)],
            "short", "Rows per call, per version: the mean, and the upper bound of the "
            "batch-size bucket that holds the largest call in the rate window (that call "
            "has at most that many rows; past the top bucket, the top bucket's bound is "
            "drawn). " + SHADOW_LEFT_OUT)),
        Cell(timeseries("Rows per second", [target(served(recorded(cfg, q.rows_rate(cfg))), MV)],
                        "short", "Rows predicted per second (sum of batch sizes). "
                        + SHADOW_LEFT_OUT)),
    ]
    cancelled = raw_sel(cfg, 'outcome="cancelled"')
    streams = [
        Cell(timeseries("Time to first item", [
            target(served(recorded(cfg, q.first_item_quantile(cfg, n))), f"p{n} {MV}")
            for n in (50, 99)],
            "s", "Streaming calls: from the call (or the request) to the first item or body "
                 "byte. Dashed line: the p99 objective of InferwatchStreamFirstItemSlow. "
                 + SHADOW_LEFT_OUT,
            limit=cfg.latency.first_item_p99_seconds)),
        Cell(timeseries("Items and tokens per second", [
            target(served(f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_stream_items_sum{raw}"
                          f"[{RATE}]))"), "items " + MV),
            target(served(f"sum by ({q.MODEL_LABELS}, kind) (rate(inferwatch_tokens_total{raw}"
                          f"[{RATE}]))"), "{{kind}} tokens " + MV)],
            "short", "Items of finished streams, and input and output tokens, per second. "
            + SHADOW_LEFT_OUT)),
        Cell(timeseries("Cancelled streams", [target(served(
            f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_requests_total{cancelled}[{RATE}])) / "
            f"sum by ({q.MODEL_LABELS}) (rate(inferwatch_requests_total{raw}[{RATE}]))"), MV)],
            "percentunit", "Calls whose consumer stopped early (a client gone, a closed "
            "stream) / all calls. " + SHADOW_LEFT_OUT, max_value=1)),
        Cell(timeseries("Output tokens per second of a call", [target(
            served(f"histogram_quantile({n / 100}, sum by ({q.MODEL_LABELS}, le) "
                   f"(rate(inferwatch_output_tokens_per_second_bucket{raw}[{RATE}])))"),
            f"p{n} {MV}") for n in (50, 10)], "short",
            "Generation speed of single calls; p10 is the slow tail. " + SHADOW_LEFT_OUT)),
    ]
    serving_window = cfg.windows.versions_serving

    def calling(*extra: str) -> str:
        # A replica serves a version while the version's calls there rise, as
        # InferwatchTooManyVersionsServing counts them: a retired version's info series can
        # outlive it (a worker's files kept across a reload), its counters then flat.
        by = f"job, instance, {q.MODEL_LABELS}"
        return (f"inferwatch_model_info{raw_sel(cfg, *extra)}\n  and on ({by})\n  "
                f"(sum by ({by}) (increase(inferwatch_requests_total{raw}[{serving_window}]))"
                f" > 0)")

    versions = [
        Cell(table("Versions serving", [target(
            f"count by (model, model_version, framework, task, role) (\n  {calling()}\n)",
            instant=True, fmt="table")], f"Versions with a replica that served calls within "
            f"the last {serving_window} (windows.versions_serving); role: shadow for a "
            f"challenger run beside its champion (primary), which the model's totals and SLOs "
            f"leave out.", hide=("Time",)), 12, 7),
        Cell(state_timeline("Replicas per version", [
            target(f"count by ({q.MODEL_LABELS}) (\n  {calling(NOT_SHADOW)}\n)", MV),
            target(f"count by ({q.MODEL_LABELS}) (\n  {calling(SHADOW)}\n)", f"{MV} (shadow)")],
            f"How many replicas serve each version (calls within the last {serving_window}): "
            f"a rollout shows as a handover. A shadow version is marked (shadow)."), 12, 7),
        Cell(stat("Model age", [target(served(
            f"time() - max by ({q.MODEL_LABELS}) "
            f"(inferwatch_model_trained_timestamp_seconds{raw})"), MV)], "s",
            f"Time since training; red beyond {cfg.predictions.max_model_age} (a shadow "
            f"version left out, as InferwatchModelStale leaves it out)."
            + coloured_by_default(cfg, "predictions.max_model_age", "maximum age"),
            limit=duration_seconds(cfg.predictions.max_model_age)), 8, 5),
        Cell(stat("Serving since", [target(served(
            f"max by ({q.MODEL_LABELS}) (inferwatch_model_loaded_timestamp_seconds{raw}) * 1000"),
            MV)], "dateTimeFromNow", "When each version started serving (a shadow version "
            "serves nobody: it is left out)."), 8, 5),
        Cell(table("ML stack", [target(
            f"count by (package, package_version) (inferwatch_dependency_info"
            f"{model_sel(cfg, JOB, INSTANCE)})",
            instant=True, fmt="table")], "Versions of ML packages in the serving processes; "
            "a change is a deploy.", hide=("Time",)), 8, 5),
    ]
    return dashboard(cfg, "overview", "Model overview",
                     "Traffic, errors, latency and versions of the models inferwatch watches.",
                     [("Traffic and errors", traffic),
                       ("Expected bands (adaptive baselines)",
                        band_cells(cfg, ("traffic", "errors", "latency", "batch_size"))),
                       ("Latency and load", latency),
                       ("Streams", streams), ("Versions and deploys", versions),
                       ("Batch jobs (Pushgateway)", [Cell(_batch_runs(cfg), 24, 8)])])
