"""The generated dashboards against Grafana's own types, for the Grafana the compose stack pins.

tests/schema/grafana-dashboard.schema.json is converted from the TypeScript types of the npm
package @grafana/schema at that version (tests/schema/build.sh; see its README), with each
panel plugin's options and field config joined in, so a legacy, misspelt, null or missing
option fails here instead of being quietly migrated, or dropped, by Grafana on load. The
official Python SDK, grafana-foundation-sdk, must load every dashboard too.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, ValidationError

from e2e_dashboards import panels
from inferwatch.catalogue import CATALOGUE
from inferwatch.generate import dashboards as generated
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.panels import GRAFANA_VERSION, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "tests" / "schema"
SCHEMA = json.loads((SCHEMA_DIR / "grafana-dashboard.schema.json").read_text())
VALIDATOR = Draft7Validator(SCHEMA)


def schema_errors(dashboard: dict[str, Any]) -> list[str]:
    """Every violation as 'path: message', following a panel into the branch of its type."""
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                  for error in VALIDATOR.iter_errors(dashboard) for e in _leaves(error))


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    # A panel is one of several panel types (anyOf): report the branches whose `type`
    # matched, not every plugin the panel is not.
    if not error.context:
        yield error
        return
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    matching = [b for b in branches.values()
                if not any(list(e.relative_path) == ["type"] for e in b)]
    for branch in matching or branches.values():
        for sub in branch:
            yield from _leaves(sub)


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    return generated.render(DEFAULT)


# --- the schema itself ------------------------------------------------------------------------


def test_the_schema_is_for_the_grafana_that_compose_pins() -> None:
    Draft7Validator.check_schema(SCHEMA)
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    image = compose["services"]["grafana"]["image"]
    lock = json.loads((SCHEMA_DIR / "package-lock.json").read_text())
    package = json.loads((SCHEMA_DIR / "package.json").read_text())
    assert image == f"grafana/grafana:{GRAFANA_VERSION}"
    assert SCHEMA["x-grafana-version"] == GRAFANA_VERSION
    assert SCHEMA["x-source"]["version"] == GRAFANA_VERSION
    assert package["devDependencies"]["@grafana/schema"] == GRAFANA_VERSION
    installed = lock["packages"]["node_modules/@grafana/schema"]
    assert installed["version"] == GRAFANA_VERSION
    assert SCHEMA["x-source"]["integrity"] == installed["integrity"]


# --- the generated dashboards -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(generated.DASHBOARDS))
def test_every_dashboard_passes_grafanas_schema(name: str,
                                                rendered: dict[str, dict[str, Any]]) -> None:
    assert schema_errors(rendered[name]) == []


def test_committed_dashboards_pass_grafanas_schema() -> None:
    files = sorted((ROOT / "dashboards").glob("*.json"))
    assert [f.name for f in files] == sorted(generated.DASHBOARDS)
    for path in files:
        assert schema_errors(json.loads(path.read_text())) == [], path.name


def test_every_panel_declares_the_pinned_grafana(rendered: dict[str, dict[str, Any]]) -> None:
    for dashboard in rendered.values():
        assert dashboard["schemaVersion"] == SCHEMA_VERSION
        for panel in panels(dashboard):
            if panel["type"] != "row":
                assert panel["pluginVersion"] == GRAFANA_VERSION, panel["title"]


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
_VALUE = st.text("abcxyz-_. /*+?", min_size=1, max_size=10)


def _is_regex(value: str) -> bool:
    """Whether Prometheus would take `value` as a regex (the config refuses what it would not)."""
    from inferwatch.generate.re2 import Unsupported, python_regex

    try:
        python_regex(value)
    except Unsupported:
        return False
    return True


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """Config files a user might write: any titles, tags and data source names, selectors
    with any value, any thresholds."""
    value = draw(_VALUE.filter(_is_regex))
    method = draw(st.sampled_from(["psi", "js", "ks"]))
    # js and ks are distances in [0, 1]: a threshold of 1 or more is refused (never fires).
    threshold = draw(st.floats(0, 10) if method == "psi" else st.floats(0, 0.99))
    return {
        "selectors": {"model": f'job=~"{value}", env!="dev"',
                      "exporter": f'job="{draw(_VALUE)}"'},
        "dashboards": {"title_prefix": draw(_TEXT),
                       "tags": draw(st.lists(_TEXT.filter(str.strip), max_size=3)),
                       "datasource": draw(_TEXT.filter(str.strip))},
        "slo": {"availability": draw(st.floats(0.95, 0.99999))},
        # Below 30 s, the top finite latency bucket (a p99 is never read above it).
        "latency": {"p99_seconds": draw(st.floats(0.001, 30, exclude_max=True))},
        "drift": {"method": method, "feature_threshold": threshold},
        "gpu": {"memory_used_ratio": draw(st.floats(0, 1, exclude_max=True))},
    }


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_config_renders_dashboards_that_pass_the_schema(data: dict[str, Any]) -> None:
    for name, dashboard in generated.render(from_dict(data)).items():
        assert schema_errors(dashboard) == [], name


# --- the schema catches what grafanalib writes unmodified --------------------------------------


def _first(dashboard: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in panels(dashboard) if p["type"] == kind)


def _grafanalib_panel(kind: str) -> dict[str, Any]:
    """What grafanalib 0.7 writes for a panel of `kind`, before current_shape."""
    from grafanalib import core as g

    from inferwatch.generate.panels import DATASOURCE, _plain

    cls = {"heatmap": g.Heatmap, "bargauge": g.BarGauge, "table": g.Table, "stat": g.Stat,
           "timeseries": g.TimeSeries, "state-timeline": g.StateTimeline}[kind]
    target = g.Target(expr="up", refId="A", datasource=DATASOURCE)
    return _plain(cls(title="legacy", dataSource=DATASOURCE, targets=[target], id=99,
                      gridPos=g.GridPos(h=8, w=12, x=0, y=99)))


def _replace(dashboard: dict[str, Any], kind: str) -> None:
    panel = _first(dashboard, kind)
    panel.clear()
    panel.update(_grafanalib_panel(kind))


def _set(kind: str, key: str, value: Any):
    return lambda d: _first(d, kind).__setitem__(key, value)


def _drop_option(kind: str, *path: str):
    def mutate(d: dict[str, Any]) -> None:
        options = _first(d, kind)["options"]
        for key in path[:-1]:
            options = options[key]
        del options[path[-1]]
    return mutate


def _legacy_annotation(d: dict[str, Any]) -> None:
    annotation = next(a for a in d["annotations"]["list"] if "target" in a)
    annotation["expr"] = annotation.pop("target")["expr"]
    annotation["step"] = "60s"


LEGACY = {
    "null interval": _set("timeseries", "interval", None),
    "null timeFrom": _set("stat", "timeFrom", None),
    "null row datasource": _set("row", "datasource", None),
    "span": _set("timeseries", "span", 12),
    "editable": _set("stat", "editable", True),
    "targets on a row": _set("row", "targets", []),
    "grafanalib heatmap": lambda d: _replace(d, "heatmap"),
    "grafanalib bar gauge": lambda d: _replace(d, "bargauge"),
    "grafanalib table": lambda d: _replace(d, "table"),
    "grafanalib stat": lambda d: _replace(d, "stat"),
    "grafanalib time series": lambda d: _replace(d, "timeseries"),
    "grafanalib state timeline": lambda d: _replace(d, "state-timeline"),
    "annotation expr at the top level": _legacy_annotation,
    "legend without showLegend": _drop_option("timeseries", "legend", "showLegend"),
    "stat without wideLayout": _drop_option("stat", "wideLayout"),
    "table without frameIndex": _drop_option("table", "frameIndex"),
    "a query's legacy step": lambda d: _first(d, "timeseries")["targets"][0].update(step=10),
    "the graph panel": _set("timeseries", "type", "graph"),
}


@pytest.mark.parametrize("mutation", sorted(LEGACY))
def test_the_schema_rejects_each_legacy_shape(mutation: str,
                                              rendered: dict[str, dict[str, Any]]) -> None:
    name = ("model-quality.json" if "heatmap" in mutation or "bar gauge" in mutation
            else "resources.json" if "state timeline" in mutation else "model-overview.json")
    dashboard = copy.deepcopy(rendered[name])
    LEGACY[mutation](dashboard)
    assert schema_errors(dashboard) != []


# --- the official SDK -------------------------------------------------------------------------


def test_the_foundation_sdk_loads_every_dashboard_with_typed_panels(
        rendered: dict[str, dict[str, Any]]) -> None:
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import dashboard as sdk

    register_default_plugins()
    for name, data in rendered.items():
        loaded = sdk.Dashboard.from_json(json.loads(json.dumps(data)))
        ours = [p for p in panels(data) if p["type"] != "row"]
        theirs = [p for p in loaded.panels if isinstance(p, sdk.Panel)]
        assert len(theirs) == len(ours), name
        for mine, typed in zip(ours, theirs):
            plugin = mine["type"].replace("-", "")
            # Options and queries decode into the plugin's and Prometheus' own models.
            assert type(typed.options).__module__.endswith(f".models.{plugin}"), mine["title"]
            assert {type(t).__module__ for t in typed.targets} == {
                "grafana_foundation_sdk.models.prometheus"}, mine["title"]
        assert loaded.to_json()["uid"] == data["uid"]


# --- every query follows the variables --------------------------------------------------------

_SELECTOR = re.compile(r"([\w:]*)\{([^{}]*)\}")
_MODEL_VARIABLES = ('job=~"$job"', 'instance=~"$instance"')
_PER_MODEL_VARIABLES = ('model=~"$model"', 'model_version=~"$model_version"')


def _queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in panels(dashboard):
        for query in panel.get("targets", []):
            yield query["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            yield annotation["target"]["expr"]


def test_every_query_carries_the_selected_variables(rendered: dict[str, dict[str, Any]]) -> None:
    """Every model series is narrowed by job, instance and (when per model) model and
    version; every exporter series by the exporter instance; ALERTS and the per-model
    objectives by the model."""
    checked = 0
    for name, dashboard in rendered.items():
        for expr in _queries(dashboard):
            selectors = _SELECTOR.findall(expr)
            assert selectors, f"{name}: a query that selects nothing: {expr}"
            for metric, matchers in selectors:
                if (metric == "ALERTS" or metric.startswith("model:inferwatch_objective:")
                        or ":inferwatch_baseline_" in metric):
                    # Alerts and objectives come from the rules, not a scrape: no job.
                    assert 'model=~"$model"' in matchers, expr
                elif DEFAULT.selectors.model in matchers:
                    wanted = _MODEL_VARIABLES
                    if CATALOGUE[metric.removesuffix("_bucket").removesuffix("_count")
                                 .removesuffix("_sum") if metric not in CATALOGUE
                                 else metric].per_model:
                        wanted += _PER_MODEL_VARIABLES
                    assert all(w in matchers for w in wanted), f"{name}: {metric}{{{matchers}}}"
                elif matchers.startswith(DEFAULT.pushgateway.selector):
                    # A batch job's pushed groups: its job is no scrape job and it runs on
                    # no instance, so the query follows the Model variable alone.
                    assert 'model=~"$model"' in expr, f"{name}: {expr}"
                else:
                    assert DEFAULT.selectors.exporter in matchers, f"{name}: {expr}"
                    assert 'instance=~"$exporter_instance"' in matchers, f"{name}: {expr}"
                checked += 1
    assert checked > 80


def test_recorded_panels_run_the_rules_own_expression() -> None:
    """A panel showing a recording rule runs the rule's text with the variables added, so
    with every variable at All it computes what the rule and its alerts see."""
    from inferwatch.generate.dashboards_queries import recorded
    from inferwatch.generate.rules import recording_groups

    for group in recording_groups(DEFAULT):
        for rule in group["rules"]:
            narrowed = recorded(DEFAULT, rule["record"])
            all_selected = re.sub(r', \w+=~"\$\w+"', "", narrowed)
            assert all_selected == rule["expr"]
            assert narrowed != rule["expr"]
