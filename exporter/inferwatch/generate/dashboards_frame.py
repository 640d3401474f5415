"""The dashboard around the panels: its variables, deploy annotations and JSON.

Every dashboard is framed alike (title, uid, tags, refresh, time range, the job, instance,
model and version variables); the dashboards themselves hand it only their panels.
"""

from __future__ import annotations

from typing import Any

from grafanalib import core as g

from inferwatch.generate import promql as q
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config
from inferwatch.generate.dashboards_queries import INSTANCE, JOB, MODEL, raw_sel
from inferwatch.generate.panels import (
    SCHEMA_VERSION,
    Cell,
    builtin_annotation,
    dashboard_json,
    datasource_variable,
    layout,
    prometheus_annotation,
    query_variable,
)
from inferwatch.generate.promql import exporter_sel, selector
from inferwatch.generate.rules_links import dashboard_uid


def _scrape_note(cfg: Config) -> str:
    return (f" Reads the model services' series matching {{{cfg.selectors.model}}} and the "
            f"exporter's matching {{{cfg.selectors.exporter}}}; set selectors.model and "
            f"selectors.exporter in the inferwatch config and regenerate to match your scrape "
            f"jobs.")


def output_variable(cfg: Config, histogram: str) -> dict[str, Any]:
    """The Output variable: one output (a class's probability, a regression's value) of the
    selected models' `histogram` at a time, for a heatmap that has room for one
    distribution. A classifier's outputs mirror each other (p(benign) = 1 - p(malignant)):
    added together they would draw every binary classifier symmetric about 0.5."""
    return query_variable("output", "Output", f"label_values({histogram}"
                          f"{selector(cfg.selectors.model, JOB, INSTANCE, MODEL)}, output)",
                          single=True)


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
    now, before = (f"max by (model, model_version) (inferwatch_model_info{raw_sel(cfg)}{offset})"
                   for offset in ("", " offset 5m"))
    # The versions that started or stopped serving in the last 5 minutes: a change in how
    # many versions serve misses the usual deploy, one version replacing another in place.
    changed = f"count by (model) (({now} unless {before}) or ({before} unless {now}))"
    return [
        builtin_annotation(),
        # The value is the load time itself, so the marker sits where the version started.
        prometheus_annotation(
            "Model loaded", f"max by ({q.MODEL_LABELS}) "
            f"(inferwatch_model_loaded_timestamp_seconds{raw_sel(cfg)}) * 1000", "blue",
            "{{model}} {{model_version}} loaded", "model,model_version", value_is_time=True),
        prometheus_annotation(
            "Versions serving changed", changed, "purple",
            "{{model}}: versions serving changed", "model"),
    ]


def dashboard(cfg: Config, key: str, title: str, description: str, panels: list[Cell] | Any,
              exporter: bool = False, annotations: list[dict[str, Any]] | None = None,
              variables: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """A dashboard as Grafana's JSON: `panels` laid out under the job, instance, model and
    version variables (and the exporter's with `exporter`, then `variables`), marked with
    the deploys or with `annotations`, titled, tagged and refreshed as the config's
    dashboards: section says."""
    d = cfg.dashboards
    dashboard = g.Dashboard(
        title=f"{d.title_prefix}{title}", description=description + _scrape_note(cfg),
        uid=dashboard_uid(cfg, key), tags=list(d.tags), refresh=d.refresh,
        time=g.Time(d.time_from, "now"), timezone="browser", schemaVersion=SCHEMA_VERSION,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, editable=True,
        panels=layout(panels),
        templating=g.Templating(list=[*_variables(cfg, exporter), *variables]),
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
