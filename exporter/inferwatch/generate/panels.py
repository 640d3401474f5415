"""Panel, variable and layout helpers, so each dashboard reads as a list of its panels.

Every panel and query reads from the ``$datasource`` variable; ids and grid positions are
assigned by :func:`layout`, in order, so the output is stable.

>>> p = timeseries("Calls", [target("sum(up)", "up")], unit="reqps")
>>> p.to_json_data()["datasource"]["uid"]
'${datasource}'
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib import core as g

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24


def target(expr: str, legend: str = "", instant: bool = False,
           fmt: str = "time_series") -> g.Target:
    """One Prometheus query of a panel (its refId is set by the panel helper)."""
    return g.Target(expr=expr, legendFormat=legend, instant=instant, format=fmt,
                    datasource=DATASOURCE, intervalFactor=1)


def _with_ref_ids(targets: list[g.Target]) -> list[g.Target]:
    letters = string.ascii_uppercase
    return [t if t.refId else attr.evolve(t, refId=letters[i]) for i, t in enumerate(targets)]


def thresholds(*limits: tuple[str, float]) -> list[dict[str, Any]]:
    """Threshold steps: green below the first limit, then each (color, value) in order."""
    return [{"color": "green", "value": None}] + [
        # 12 significant digits hide float noise such as 1 - 0.999 = 0.0010000000000000009
        {"color": color, "value": float(f"{value:.12g}")} for color, value in limits
    ]


def _threshold_line(limit: float | None) -> dict[str, Any]:
    if limit is None:
        return {}
    return {"thresholds": thresholds(("red", limit)), "thresholdsStyleMode": "dashed"}


def timeseries(title: str, targets: list[g.Target], unit: str = "short",
               description: str = "", limit: float | None = None, stack: bool = False,
               max_value: int | None = None) -> g.TimeSeries:
    """A time series panel; `limit` draws the alert threshold as a dashed red line."""
    return g.TimeSeries(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_with_ref_ids(targets), unit=unit, fillOpacity=10 if stack else 0,
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none"},
        legendDisplayMode="table", legendPlacement="bottom", legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi", valueMin=0, valueMax=max_value, **_threshold_line(limit),
    )


def stat(title: str, targets: list[g.Target], unit: str = "short", description: str = "",
         limit: float | None = None, calc: str = "lastNotNull") -> g.Stat:
    """A single-value panel; `limit` turns the value red above it."""
    steps = thresholds(("red", limit)) if limit is not None else thresholds()
    return g.Stat(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_with_ref_ids(targets), format=unit, reduceCalc=calc, graphMode="area",
        color={"mode": "thresholds"},
        colorMode="value", noValue="no data", thresholds="",
        extraJson={"fieldConfig": {"defaults": {"thresholds": {"mode": "absolute",
                                                               "steps": steps}}}},
    )


def table(title: str, targets: list[g.Target], description: str = "",
          hide: tuple[str, ...] = ("Time", "Value")) -> g.Table:
    """A table of instant query results, label columns only by default."""
    return g.Table(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_with_ref_ids(targets),
        transformations=[{"id": "organize", "options": {
            "excludeByName": {name: True for name in hide}}}],
    )


def bargauge(title: str, targets: list[g.Target], unit: str = "short", description: str = "",
             limit: float | None = None, max_value: float | None = None) -> g.BarGauge:
    """Horizontal bars of the last values, one per series."""
    steps = thresholds(("red", limit)) if limit is not None else thresholds()
    return g.BarGauge(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_with_ref_ids(targets), displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT,
        orientation=g.ORIENTATION_HORIZONTAL, format=unit, thresholds=steps,
        max=max_value, min=0, calc="lastNotNull",
        extraJson={
            "fieldConfig": {"defaults": {
                "unit": unit, "min": 0, "max": max_value,
                "thresholds": {"mode": "absolute", "steps": steps}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False},
                        "showUnfilled": True},
        },
    )


def heatmap(title: str, expr: str, unit: str, description: str = "") -> g.Heatmap:
    """A heatmap of pre-bucketed histogram data (``le`` buckets, no recalculation)."""
    return g.Heatmap(
        title=title, description=description, dataSource=DATASOURCE, dataFormat="tsbuckets",
        targets=_with_ref_ids([target(expr, "{{le}}", fmt="heatmap")]),
        extraJson={"options": {
            "calculate": False, "cellGap": 1, "yAxis": {"unit": unit, "axisPlacement": "left"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "rowsFrame": {"layout": "auto"}, "tooltip": {"show": True, "yHistogram": True},
            "legend": {"show": True}}},
    )


def state_timeline(title: str, targets: list[g.Target], description: str = "",
                   mappings: list[dict[str, Any]] | None = None) -> g.StateTimeline:
    """A state timeline, one lane per series."""
    return g.StateTimeline(
        title=title, description=description, dataSource=DATASOURCE,
        targets=_with_ref_ids(targets), mappings=mappings or [],
    )


def up_down_mappings(up: str = "up", down: str = "down") -> list[dict[str, Any]]:
    """Value mappings that show 1 / 0 as green / red words."""
    return [{"type": "value", "options": {
        "0": {"text": down, "color": "red", "index": 0},
        "1": {"text": up, "color": "green", "index": 1}}}]


def row(title: str) -> g.RowPanel:
    """A row header."""
    return g.RowPanel(title=title)


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
        placed.append(_place(row(title), len(placed) + 1, 0, y, GRID_WIDTH, 1))
        y += 1
        x, line_height = 0, 0
        for cell in cells:
            if x + cell.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            placed.append(_place(cell.panel, len(placed) + 1, x, y, cell.width, cell.height))
            x += cell.width
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


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-select label_values variable with an All option matching every value."""
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "definition": query, "query": {"query": query, "refId": f"{name}-query"},
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
        "hide": 0, "regex": "", "options": [],
    }


def dashboard_json(dashboard: g.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data, without the keys the current schema dropped."""
    import json

    from grafanalib._gen import DashboardEncoder

    data = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    for legacy in ("rows", "hideControls", "sharedCrosshair", "style"):
        data.pop(legacy, None)
    return data
