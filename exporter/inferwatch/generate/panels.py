"""Panel, variable and layout helpers, so each dashboard reads as a list of its panels.

Panels are grafanalib panels in the shape of the Grafana that the compose stack pins
(:data:`GRAFANA_VERSION`): each plugin's own ``options`` and ``fieldConfig``, and nothing
from the Grafana 6 panel model that grafanalib still writes. :func:`current_shape` is the
one place that drops those legacy and null keys; the helpers below set the options. Every
panel and query reads from the ``$datasource`` variable; ids and grid positions are assigned
by :func:`layout`, in order, so the output is stable.

>>> p = timeseries("Calls", [target("sum(up)", "up")], unit="reqps").to_json_data()
>>> p["datasource"]["uid"], p["pluginVersion"] == GRAFANA_VERSION, "span" in p
('${datasource}', True, False)
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

# The Grafana release the compose stack pins; every panel declares it as its pluginVersion,
# and tests/schema validates the dashboards against that release's own types.
GRAFANA_VERSION = "12.4.11"
# The dashboard schema version Grafana 12.4 writes, so it runs no migration on load.
SCHEMA_VERSION = 42
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

# What a panel and a Prometheus query hold in the current model; everything else that
# grafanalib writes (editable, error, height, span, minSpan, null cacheTimeout, interval,
# repeat, timeFrom, ..., and a query's metric, step and target) is legacy.
_PANEL_KEYS = ("collapsed", "datasource", "description", "fieldConfig", "gridPos", "id",
               "maxPerRow", "options", "panels", "pluginVersion", "repeat", "repeatDirection",
               "targets", "title", "transformations", "type")
_ROW_KEYS = ("collapsed", "gridPos", "id", "panels", "title", "type")
_TARGET_KEYS = ("datasource", "editorMode", "exemplar", "expr", "format", "instant",
                "legendFormat", "range", "refId")
# The buckets that carry exemplars (trace ids, see inferwatch.core.tracing): the only
# histogram whose queries ask Grafana for them. Grafana draws exemplars on time series and
# heatmaps only, and fetches them per query: asked on any other query, or on a second query
# of the same buckets in one panel, it would fetch nothing new.
EXEMPLAR_BUCKETS = "inferwatch_request_duration_seconds_bucket"
_EXEMPLAR_PANELS = ("timeseries", "heatmap")


def _plain(value: Any) -> Any:
    """grafanalib objects as plain JSON data."""
    return json.loads(json.dumps(value, cls=DashboardEncoder))


def current_shape(legacy: dict[str, Any]) -> dict[str, Any]:
    """A panel as grafanalib writes it, reduced to the keys of Grafana's current model.

    >>> current_shape({"type": "row", "title": "A", "span": None, "editable": True,
    ...                "panels": [], "collapsed": False, "datasource": None})
    {'collapsed': False, 'panels': [], 'title': 'A', 'type': 'row'}
    """
    data = _plain(legacy)
    keys = _ROW_KEYS if data.get("type") == "row" else _PANEL_KEYS
    panel = {key: data[key] for key in keys if data.get(key) is not None}
    if "targets" in panel:
        panel["targets"] = [{key: t[key] for key in _TARGET_KEYS if key in t}
                            for t in panel["targets"]]
    if not panel.get("transformations"):
        panel.pop("transformations", None)
    return panel


@attr.s
class CurrentPanel(g.Panel):
    """A panel of one plugin in the current model: its options and field config defaults."""

    type = attr.ib(default="timeseries", validator=attr.validators.instance_of(str))
    options = attr.ib(factory=dict, validator=attr.validators.instance_of(dict))
    defaults = attr.ib(factory=dict, validator=attr.validators.instance_of(dict))
    overrides = attr.ib(factory=list, validator=attr.validators.instance_of(list))
    repeat_over = attr.ib(default=None)  # a variable: one panel per selected value

    def to_json_data(self) -> dict[str, Any]:
        data = self.panel_json({"type": self.type, "pluginVersion": GRAFANA_VERSION,
                                "options": self.options})
        # Replaced rather than merged: grafanalib's field config defaults are legacy.
        data["fieldConfig"] = {"defaults": self.defaults, "overrides": self.overrides}
        if self.repeat_over:
            data.update(repeat=self.repeat_over, repeatDirection="h", maxPerRow=2)
        return current_shape(data)


@attr.s
class CurrentRow(g.RowPanel):
    """A row header in the current model (no targets, datasource or field config)."""

    def to_json_data(self) -> dict[str, Any]:
        return current_shape(super().to_json_data())


def target(expr: str, legend: str = "", instant: bool = False,
           fmt: str = "time_series") -> g.Target:
    """One Prometheus query of a panel (its refId is set by the panel helper)."""
    return g.Target(expr=expr, legendFormat=legend, instant=instant, format=fmt,
                    datasource=DATASOURCE)


def ref_id(index: int) -> str:
    """The refId Grafana gives a panel's query at `index`: A to Z, then AA, AB, ...

    >>> [ref_id(i) for i in (0, 25, 26, 27, 701, 702)]
    ['A', 'Z', 'AA', 'AB', 'ZZ', 'AAA']
    """
    # A panel may hold more than 26 queries (one per accuracy window in use).
    letters = string.ascii_uppercase
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, len(letters))
        name = letters[rest] + name
    return name


def _queries(targets: list[g.Target], kind: str = "") -> list[dict[str, Any]]:
    """The panel's queries as the current query editor stores a query typed as code; on a
    panel of kind `kind` that draws exemplars, the first range query of the latency buckets
    asks for them.

    >>> q = _queries([target(f"histogram_quantile(0.9, rate({EXEMPLAR_BUCKETS}[5m]))"),
    ...               target(f"histogram_quantile(0.5, rate({EXEMPLAR_BUCKETS}[5m]))")],
    ...              "timeseries")
    >>> [query.get("exemplar") for query in q]
    [True, None]
    >>> "exemplar" in _queries([target(f"rate({EXEMPLAR_BUCKETS}[5m])")], "stat")[0]
    False
    """
    queries = [{"datasource": t.datasource, "editorMode": "code", "expr": t.expr,
                "format": t.format, "instant": t.instant, "legendFormat": t.legendFormat,
                "range": not t.instant, "refId": t.refId or ref_id(i)}
               for i, t in enumerate(targets)]
    if kind in _EXEMPLAR_PANELS:
        query = next((q for q in queries if q["range"] and EXEMPLAR_BUCKETS in q["expr"]), None)
        if query is not None:
            query["exemplar"] = True
    return queries


def thresholds(*limits: tuple[str, float]) -> dict[str, Any]:
    """Absolute threshold steps: green below the first limit, then each (color, value)."""
    return {"mode": "absolute", "steps": [{"color": "green", "value": None}] + [
        # 12 significant digits hide float noise such as 1 - 0.999 = 0.0010000000000000009
        {"color": color, "value": float(f"{value:.12g}")} for color, value in limits]}


def _limit_steps(limit: float | None) -> dict[str, Any]:
    return thresholds(("red", limit)) if limit is not None else thresholds()


def _panel(kind: str, title: str, description: str, targets: list[g.Target],
           options: dict[str, Any], defaults: dict[str, Any],
           transformations: list[dict[str, Any]] | None = None) -> CurrentPanel:
    return CurrentPanel(type=kind, title=title, description=description or None,
                        dataSource=DATASOURCE, targets=_queries(targets, kind),
                        options=options,
                        defaults=defaults, transformations=transformations or [])


def _legend(shown: bool = True, calcs: tuple[str, ...] = (), table: bool = False
            ) -> dict[str, Any]:
    return {"calcs": list(calcs), "displayMode": "table" if table else "list",
            "placement": "bottom", "showLegend": shown}


def _reduce(calc: str) -> dict[str, Any]:
    return {"calcs": [calc], "fields": "", "values": False}


def timeseries(title: str, targets: list[g.Target], unit: str = "short",
               description: str = "", limit: float | None = None, stack: bool = False,
               max_value: int | None = None, signed: bool = False) -> CurrentPanel:
    """A time series panel; `limit` draws the alert threshold as a dashed red line.

    The axis starts at 0, so a spike of a rate or a latency is drawn from the ground up;
    `signed` values (model outputs, differences, budgets overspent) get an axis that follows
    them below zero instead, where a floor of 0 would cut them off.

    >>> timeseries("Calls", []).defaults["min"]
    0
    >>> "min" in timeseries("Prediction", [], signed=True).defaults
    False
    """
    custom = {
        "drawStyle": "line", "lineWidth": 1, "lineInterpolation": "linear",
        "fillOpacity": 10 if stack else 0, "gradientMode": "none", "showPoints": "never",
        "pointSize": 4, "spanNulls": False, "axisPlacement": "auto",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if limit is not None else "off"},
    }
    floor = {} if signed else {"min": 0}
    defaults = {"unit": unit, **floor, "color": {"mode": "palette-classic"},
                "thresholds": _limit_steps(limit), "custom": custom}
    if max_value is not None:
        defaults["max"] = max_value
    options = {"legend": _legend(calcs=("lastNotNull", "max"), table=True),
               "tooltip": {"mode": "multi", "sort": "desc"}}
    return _panel("timeseries", title, description, targets, options, defaults)


BAND_LOW, BAND_HIGH = "expected low", "expected high"


def band(title: str, value: g.Target, lower: g.Target, upper: g.Target, unit: str = "short",
         description: str = "", repeat_over: str = "model") -> CurrentPanel:
    """A signal with its expected band shaded behind it, one panel per value of a variable.

    The band's edges are drawn without lines; the upper edge fills down to the lower one.
    `lower` and `upper` must carry the legends :data:`BAND_LOW` and :data:`BAND_HIGH` (one
    band per panel: that is why the panel repeats per model).

    >>> p = band("Calls", target("v", "calls"), target("l", BAND_LOW), target("u", BAND_HIGH))
    >>> p.to_json_data()["fieldConfig"]["overrides"][1]["properties"][0]["value"]
    'expected low'
    """
    # A band may reach below zero (expected - k sigma): the axis follows the data.
    panel = timeseries(title, [value, lower, upper], unit, description, signed=True)
    edge = [{"id": "custom.lineWidth", "value": 0},
            {"id": "color", "value": {"mode": "fixed", "fixedColor": "#8AB8FF"}},
            {"id": "custom.hideFrom", "value": {"legend": False, "tooltip": False,
                                                "viz": False}}]
    overrides = [
        {"matcher": {"id": "byName", "options": BAND_LOW}, "properties": edge},
        {"matcher": {"id": "byName", "options": BAND_HIGH}, "properties": [
            {"id": "custom.fillBelowTo", "value": BAND_LOW},
            {"id": "custom.fillOpacity", "value": 25}, *edge]},
    ]
    return attr.evolve(panel, overrides=overrides, repeat_over=repeat_over)


def stat(title: str, targets: list[g.Target], unit: str = "short", description: str = "",
         limit: float | None = None, calc: str = "lastNotNull", floor: float | None = None
         ) -> CurrentPanel:
    """A single-value panel; `limit` turns the value red above it, `floor` red below it."""
    options = {"colorMode": "value", "graphMode": "area", "justifyMode": "auto",
               "orientation": "auto", "percentChangeColorMode": "standard",
               "reduceOptions": _reduce(calc), "showPercentChange": False, "textMode": "auto",
               "wideLayout": True}
    steps = _limit_steps(limit)
    if floor is not None:
        steps = {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                               {"color": "green", "value": floor}]}
    defaults = {"unit": unit, "noValue": "no data", "color": {"mode": "thresholds"},
                "thresholds": steps}
    return _panel("stat", title, description, targets, options, defaults)


def table(title: str, targets: list[g.Target], description: str = "",
          hide: tuple[str, ...] = ("Time", "Value")) -> CurrentPanel:
    """A table of instant query results, label columns only by default."""
    options = {"cellHeight": "sm", "frameIndex": 0, "showHeader": True}
    defaults = {"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "thresholds": thresholds()}
    organize = {"id": "organize", "options": {"excludeByName": {name: True for name in hide}}}
    return _panel("table", title, description, targets, options, defaults, [organize])


def joined_table(title: str, targets: list[g.Target],
                 columns: list[tuple[str, list[dict[str, Any]]]], description: str = "",
                 hide: tuple[str, ...] = ("Time",)) -> CurrentPanel:
    """Instant queries side by side, one row per label set: query i's value becomes the
    column named ``columns[i][0]``, with the field properties ``columns[i][1]``.

    >>> p = joined_table("T", [target("a", instant=True, fmt="table"),
    ...                        target("b", instant=True, fmt="table")],
    ...                  [("first", []), ("second", [])]).to_json_data()
    >>> [t["id"] for t in p["transformations"]]
    ['merge', 'organize']
    >>> p["transformations"][1]["options"]["renameByName"]
    {'Value #A': 'first', 'Value #B': 'second'}
    """
    panel = table(title, targets, description, hide)
    # Grafana names the value of each table query "Value #<refId>"; merge joins the queries'
    # rows on their equal label columns, so one row holds every value of a label set.
    values = {f"Value #{ref_id(i)}": name for i, (name, _) in enumerate(columns)}
    organize = {"id": "organize", "options": {
        "excludeByName": {name: True for name in hide}, "renameByName": values}}
    panel.transformations = [{"id": "merge", "options": {}}, organize]
    panel.overrides = [{"matcher": {"id": "byName", "options": name}, "properties": properties}
                       for name, properties in columns if properties]
    return panel


def matrix(title: str, query: g.Target, rows: str, columns: str, description: str = ""
           ) -> CurrentPanel:
    """A heatmap of two labels: one row per value of `rows`, one column per value of
    `columns`, each cell coloured by the instant value (Grafana's grouping-to-matrix)."""
    options = {"cellHeight": "sm", "frameIndex": 0, "showHeader": True}
    defaults = {"custom": {"align": "center", "inspect": False,
                           "cellOptions": {"type": "color-background", "mode": "gradient"}},
                "color": {"mode": "continuous-GrYlRd"}, "min": 0, "thresholds": thresholds()}
    grouping = {"id": "groupingToMatrix", "options": {
        "rowField": rows, "columnField": columns, "valueField": "Value",
        "emptyValue": "zero"}}
    # The matrix names its row header "<rows>\<columns>": plain cells, not coloured ones.
    header = {"matcher": {"id": "byName", "options": f"{rows}\\{columns}"},
              "properties": [{"id": "custom.cellOptions", "value": {"type": "auto"}}]}
    panel = _panel("table", title, description, [query], options, defaults, [grouping])
    panel.overrides = [header]
    return panel


def bargauge(title: str, targets: list[g.Target], unit: str = "short", description: str = "",
             limit: float | None = None, max_value: float | None = None) -> CurrentPanel:
    """Horizontal bars of the last values, one per series."""
    options = {"displayMode": "gradient", "legend": _legend(shown=False),
               "maxVizHeight": 300, "minVizHeight": 16, "minVizWidth": 8,
               "namePlacement": "auto", "orientation": "horizontal",
               "reduceOptions": _reduce("lastNotNull"), "showUnfilled": True,
               "sizing": "auto", "valueMode": "color"}
    defaults = {"unit": unit, "min": 0, "color": {"mode": "thresholds"},
                "thresholds": _limit_steps(limit)}
    if max_value is not None:
        defaults["max"] = max_value
    return _panel("bargauge", title, description, targets, options, defaults)


def heatmap(title: str, expr: str, unit: str, description: str = "",
            repeat_over: str | None = None) -> CurrentPanel:
    """A heatmap of pre-bucketed histogram data (``le`` buckets, no recalculation), one
    panel per selected value of the variable `repeat_over` if given."""
    options = {
        "calculate": False, "cellGap": 1,
        "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False,
                  "scale": "exponential", "scheme": "Oranges", "steps": 64},
        "exemplars": {"color": "rgba(255,0,255,0.7)"}, "filterValues": {"le": 1e-9},
        "legend": {"show": True}, "rowsFrame": {"layout": "auto"}, "selectionMode": "x",
        "showValue": "auto",
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
        "yAxis": {"axisPlacement": "left", "unit": unit},
    }
    defaults = {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
                           "scaleDistribution": {"type": "linear"}}}
    panel = _panel("heatmap", title, description, [target(expr, "{{le}}", fmt="heatmap")],
                   options, defaults)
    return attr.evolve(panel, repeat_over=repeat_over)


def state_timeline(title: str, targets: list[g.Target], description: str = "",
                   mappings: list[dict[str, Any]] | None = None) -> CurrentPanel:
    """A state timeline, one lane per series."""
    options = {"alignValue": "left", "legend": _legend(), "mergeValues": True,
               "rowHeight": 0.9, "showValue": "auto",
               "tooltip": {"mode": "single", "sort": "none"}}
    defaults = {"custom": {"fillOpacity": 70, "lineWidth": 0},
                "color": {"mode": "thresholds"}, "thresholds": thresholds(),
                "mappings": mappings or []}
    return _panel("state-timeline", title, description, targets, options, defaults)


def up_down_mappings(up: str = "up", down: str = "down") -> list[dict[str, Any]]:
    """Value mappings that show 1 / 0 as green / red words."""
    return [{"type": "value", "options": {
        "0": {"text": down, "color": "red", "index": 0},
        "1": {"text": up, "color": "green", "index": 1}}}]


@dataclass(frozen=True)
class Cell:
    """A panel with its grid width and height."""

    panel: g.Panel
    width: int = 12
    height: int = 8


def layout(sections: list[tuple[str, list[Cell]]]) -> list[g.Panel]:
    """Place rows and panels left to right, top to bottom; number them from 1."""
    placed: list[g.Panel] = []
    y = 0
    for title, cells in sections:
        if not cells:
            # A row whose panels are all switched off (every baseline signal disabled) would
            # stand as an empty header.
            continue
        placed.append(_place(CurrentRow(title=title), len(placed) + 1, 0, y, GRID_WIDTH, 1))
        y += 1
        x, line_height = 0, 0
        for cell in cells:
            width = cell.width
            if getattr(cell.panel, "repeat_over", None):
                # Grafana lays a panel repeated across out on a line of its own, 24 columns
                # wide from its x (the copies share it, maxPerRow to a line): placed beside
                # another panel it would overlap it and run past the grid's edge.
                width = GRID_WIDTH
            if x + width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            placed.append(_place(cell.panel, len(placed) + 1, x, y, width, cell.height))
            x += width
            line_height = max(line_height, cell.height)
        y += line_height
    return placed


def _place(panel: g.Panel, panel_id: int, x: int, y: int, w: int, h: int) -> g.Panel:
    return attr.evolve(panel, id=panel_id, gridPos=g.GridPos(h=h, w=w, x=x, y=y))


def datasource_variable(default: str) -> dict[str, Any]:
    """The ``datasource`` variable every panel reads from."""
    return {
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus", "current": {"selected": True, "text": default, "value": default},
        "hide": 0, "refresh": 1, "regex": "", "options": [], "includeAll": False,
        "multi": False,
    }


def query_variable(name: str, label: str, query: str, single: bool = False
                   ) -> dict[str, Any]:
    """A multi-select label_values variable with an All option matching every value, or
    with `single` one value at a time (Grafana selects the first until the user picks one).

    >>> v = query_variable("output", "Output", "label_values(m, output)", single=True)
    >>> v["multi"], v["includeAll"], "allValue" in v, "current" in v
    (False, False, False, False)
    """
    variable = {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        # qryType 1: a label_values query, as the Prometheus variable editor stores it.
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-"
                  "VariableQuery"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
        "hide": 0, "regex": "", "options": [],
    }
    if single:
        # No stored selection: Grafana takes the first value of those found.
        del variable["allValue"], variable["current"]
        variable.update(includeAll=False, multi=False)
    return variable


def prometheus_annotation(name: str, expr: str, color: str, title: str, tags: str,
                          text: str = "", value_is_time: bool = False) -> dict[str, Any]:
    """An annotation from a Prometheus query, in the shape the current editor stores.

    The query and its step go in ``target``; title, tags and text stay at the top level,
    where the Prometheus data source reads them.
    """
    annotation = {"name": name, "datasource": DATASOURCE, "enable": True, "iconColor": color,
                  "target": {"datasource": DATASOURCE, "expr": expr, "interval": "60s",
                             "refId": "Anno"},
                  "titleFormat": title, "tagKeys": tags, "textFormat": text}
    if value_is_time:
        annotation["useValueForTime"] = True
    return annotation


def builtin_annotation() -> dict[str, Any]:
    """Grafana's own annotations and alerts, which every dashboard carries."""
    return {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}


# Dashboard keys of the Grafana 6 model that grafanalib still writes.
_LEGACY_DASHBOARD_KEYS = ("__inputs", "rows", "hideControls", "sharedCrosshair", "style",
                          "gnetId")


def dashboard_json(dashboard: g.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data in the current model."""
    data = _plain(dashboard.to_json_data())
    for legacy in _LEGACY_DASHBOARD_KEYS:
        data.pop(legacy, None)
    data["timepicker"] = {"refresh_intervals": data["timepicker"]["refresh_intervals"]}
    return data
