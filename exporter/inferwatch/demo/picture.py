"""A picture of a dashboard without Grafana: its layout on the 24-column grid, as SVG.

Each panel is drawn at its grid position with its title and type, and filled with the query
results it is given: lines for time series, bands for state timelines, the last value for a
stat, bars for a bar gauge, cells for a heatmap, rows for a table. The SVG carries a
fingerprint of the layout (:func:`fingerprint`), so a test can tell when the committed
pictures no longer show the committed dashboards.

>>> board = {"title": "T", "panels": [{"id": 1, "type": "stat", "title": "Calls",
...          "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}, "fieldConfig": {"defaults":
...          {"unit": "percentunit"}}}]}
>>> picture = svg(board, {1: [Series("a", [(0.0, 0.25)])]})
>>> "Calls" in picture and "25%" in picture and fingerprint(board) in picture
True
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

COLUMN = 50  # pixels per grid column (24 columns: 1200 px)
ROW = 30  # pixels per grid row
TITLE = 20  # pixels of a panel's title bar
PALETTE = ("#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#b877d9", "#f2495c", "#8ab8ff",
           "#ff9830", "#96d98d", "#ca95e5")


@dataclass(frozen=True)
class Series:
    """One query result series: its legend and (unix time, value) points."""

    legend: str
    points: list[tuple[float, float]] = field(default_factory=list)


def fingerprint(dashboard: dict[str, Any]) -> str:
    """A hash of what the picture shows: panel titles, types, places and queries."""
    shown = [(p.get("title"), p.get("type"), p.get("gridPos"),
              [t.get("expr") for t in p.get("targets", [])]) for p in _panels(dashboard)]
    return hashlib.sha256(json.dumps([dashboard.get("title"), shown],
                                     sort_keys=True).encode()).hexdigest()[:16]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def svg(dashboard: dict[str, Any], data: dict[int, list[Series]]) -> str:
    """The dashboard as an SVG document, each panel filled from ``data[panel id]``."""
    panels = _panels(dashboard)
    height = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=1) * ROW
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{24 * COLUMN}" '
             f'height="{height + 40}" font-family="sans-serif" font-size="11">',
             f"<metadata>inferwatch-layout {fingerprint(dashboard)}</metadata>",
             '<rect width="100%" height="100%" fill="#111217"/>',
             _text(8, 26, dashboard.get("title", ""), 16, "#d8d9da", bold=True)]
    for panel in panels:
        parts.append(_panel(panel, data.get(panel.get("id"), [])))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _text(x: float, y: float, text: str, size: int = 11, color: str = "#ccccdc",
          bold: bool = False, anchor: str = "start") -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{color}"{weight} '
            f'text-anchor="{anchor}">{escape(text)}</text>')


def _panel(panel: dict[str, Any], series: list[Series]) -> str:
    pos = panel["gridPos"]
    x, y = pos["x"] * COLUMN + 2, pos["y"] * ROW + 40
    w, h = pos["w"] * COLUMN - 4, pos["h"] * ROW - 4
    kind = panel["type"]
    if kind == "row":
        return _text(x + 4, y + 18, panel.get("title", ""), 14, "#d8d9da", bold=True)
    box = (x + 6, y + TITLE + 4, w - 12, h - TITLE - 10)
    draw = {"timeseries": _lines, "state-timeline": _bands, "stat": _stat,
            "bargauge": _bars, "heatmap": _cells, "table": _rows}.get(kind, _nothing)
    if any(t.get("id") == "groupingToMatrix" for t in panel.get("transformations", [])):
        draw = _matrix
    body = draw(box, series, panel) if series else _text(
        box[0] + box[2] / 2, box[1] + box[3] / 2, "no data", 12, "#8e8e8e", anchor="middle")
    return "\n".join([
        f'<g><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181b1f" '
        f'stroke="#2c3235"/>',
        _text(x + 6, y + 15, panel.get("title", ""), 12, "#d8d9da", bold=True),
        _text(x + w - 6, y + 15, kind, 9, "#6e6e78", anchor="end"), body, "</g>"])


def _nothing(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    return ""


def _unit(panel: dict[str, Any]) -> str:
    return panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")


def format_value(value: float, unit: str) -> str:
    """A value as the panel's unit shows it, short.

    >>> format_value(0.0123, "percentunit"), format_value(2.5e9, "bytes"), format_value(3, "s")
    ('1.23%', '2.5 GB', '3 s')
    """
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{_number(value * 100)}%"
    suffix = {"s": " s", "bytes": " B", "reqps": " req/s", "celsius": " °C", "watt": " W",
              "joule": " J"}.get(unit, "")
    for factor, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= factor and unit in ("bytes", "short", "reqps", "joule", "watt"):
            return f"{value / factor:.3g}{prefix}{suffix.strip() or ''}".rstrip()
    return f"{_number(value)}{suffix}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) and abs(value) >= 1000 else f"{value:.3g}"


def _age(seconds: float) -> str:
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.3g} {name} ago"
    return f"{seconds:.0f} s ago"


def _color(panel: dict[str, Any], value: float) -> str:
    """The color of the threshold step a value falls in, as Grafana picks it."""
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get(
        "steps", [])
    color = steps[0]["color"] if steps else "green"
    for step in steps[1:]:
        if math.isfinite(value) and value >= step["value"]:
            color = step["color"]
    return {"green": PALETTE[0], "red": "#f2495c"}.get(color, color)


def _drawable(value: float) -> bool:
    # Beyond this a difference of two values overflows; such points are left out.
    return math.isfinite(value) and abs(value) < 1e300


def _range(series: list[Series]) -> tuple[float, float, float, float]:
    """Time span and value span of the series (the value span includes 0, never empty)."""
    points = [p for s in series for p in s.points if _drawable(p[1])]
    if not points:
        return 0.0, 1.0, 0.0, 1.0
    times = [t for t, _ in points]
    values = [v for _, v in points]
    low, high = min(0.0, min(values)), max(0.0, max(values))
    if not high > low:
        high = low + max(abs(low), 1.0)
    return min(times), max(times), low, high


def _lines(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    x, y, w, h = box
    t0, t1, low, high = _range(series)
    span = (t1 - t0) or 1.0
    parts = [_text(x, y + 8, format_value(high, _unit(panel)), 9, "#8e8e8e"),
             _text(x, y + h - 16, format_value(low, _unit(panel)), 9, "#8e8e8e")]
    for i, s in enumerate(series[:10]):
        coords = " ".join(f"{x + (t - t0) / span * w:.1f},"
                          f"{y + h - 14 - (v - low) / (high - low) * (h - 24):.1f}"
                          for t, v in s.points if _drawable(v))
        if coords:
            parts.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                         f'stroke-width="1.5" points="{coords}"/>')
    legend = "   ".join(s.legend for s in series[:4])
    parts.append(_text(x, y + h, legend[:int(w / 6)], 9, "#8e8e8e"))
    return "\n".join(parts)


def _bands(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    x, y, w, h = box
    t0, t1, _, _ = _range(series)
    span = (t1 - t0) or 1.0
    lanes = series[:6]
    lane = h / max(len(lanes), 1)
    parts = []
    for i, s in enumerate(lanes):
        top = y + i * lane
        for (t, v), (t_next, _) in zip(s.points, [*s.points[1:], (t1, 0.0)]):
            color = "#73bf69" if v >= 1 else "#f2495c"
            parts.append(f'<rect x="{x + (t - t0) / span * w:.1f}" y="{top:.1f}" '
                         f'width="{max((t_next - t) / span * w, 1):.1f}" '
                         f'height="{lane * 0.8:.1f}" fill="{color}"/>')
        parts.append(_text(x + 2, top + lane * 0.5, s.legend[:40], 9, "#111217"))
    return "\n".join(parts)


def _last(s: Series) -> float:
    return s.points[-1][1] if s.points else math.nan


def _stat(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    x, y, w, h = box
    shown = series[:3]
    cell = w / len(shown)
    parts = []
    for i, s in enumerate(shown):
        value = _last(s)
        shown_value = (_age(s.points[-1][0] - value / 1000) if _unit(panel) == "dateTimeFromNow"
                       else format_value(value, _unit(panel)))
        parts.append(_text(x + cell * (i + 0.5), y + h * 0.6, shown_value,
                           min(26, int(h * 0.5)), _color(panel, value), bold=True,
                           anchor="middle"))
    return "\n".join(parts)


def _bars(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    x, y, w, h = box
    shown = series[:8]
    top = max([_last(s) for s in shown if _drawable(_last(s))] + [1e-12])
    top = panel.get("fieldConfig", {}).get("defaults", {}).get("max", top) or 1.0
    lane = h / len(shown)
    parts = []
    for i, s in enumerate(shown):
        value = _last(s) if _drawable(_last(s)) else 0.0
        parts.append(_text(x, y + i * lane + lane * 0.6, s.legend[:28], 9))
        parts.append(f'<rect x="{x + w * 0.45:.1f}" y="{y + i * lane + lane * 0.2:.1f}" '
                     f'width="{max(value / top, 0) * w * 0.4:.1f}" height="{lane * 0.6:.1f}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(_text(x + w, y + i * lane + lane * 0.6,
                           format_value(value, _unit(panel)), 9, anchor="end"))
    return "\n".join(parts)


def _cells(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    x, y, w, h = box
    rows = _per_bucket(sorted(series, key=lambda s: _bound(s.legend)))
    t0, t1, _, high = _range(rows)
    span = (t1 - t0) or 1.0
    columns = max(len(s.points) for s in rows)
    cell_w, cell_h = w / max(columns, 1), h / len(rows)
    parts = []
    for r, s in enumerate(rows):
        for t, v in s.points:
            if v > 0 and _drawable(v):
                shade = 0.15 + 0.85 * v / high
                parts.append(f'<rect x="{x + (t - t0) / span * (w - cell_w):.1f}" '
                             f'y="{y + h - (r + 1) * cell_h:.1f}" width="{cell_w:.1f}" '
                             f'height="{cell_h:.1f}" fill="#ff780a" '
                             f'fill-opacity="{shade:.2f}"/>')
    return "\n".join(parts)


def _per_bucket(cumulative: list[Series]) -> list[Series]:
    # `le` buckets count everything below their bound; a heatmap shows each bucket's own.
    rows, below = [], {}
    for s in cumulative:
        own = [(t, v - below.get(t, 0.0)) for t, v in s.points]
        below = dict(s.points)
        rows.append(Series(s.legend, own))
    return rows


def _bound(legend: str) -> float:
    try:
        return float(legend)
    except ValueError:
        return math.inf


def _rows(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    x, y, w, h = box
    lines = [s.legend for s in series[: max(int(h / 14), 1)]]
    return "\n".join(_text(x, y + 12 + 14 * i, line[:int(w / 6)], 10)
                     for i, line in enumerate(lines))


def _matrix(box: tuple[float, ...], series: list[Series], panel: dict[str, Any]) -> str:
    """A table grouped to a matrix: row and column values from each legend ("row x column"),
    cells shaded by value."""
    x, y, w, h = box
    cells = {}
    for s in series:
        row, _, column = s.legend.partition(" x ")
        cells[(row, column)] = _last(s)
    rows = sorted({r for r, _ in cells})
    columns = sorted({c for _, c in cells})
    high = max((v for v in cells.values() if _drawable(v)), default=0.0) or 1.0
    cell_w, cell_h = w / (len(columns) + 1), min(h / (len(rows) + 1), 40.0)
    parts = [_text(x + (j + 1.5) * cell_w, y + cell_h * 0.6, c[:12], 10, anchor="middle")
             for j, c in enumerate(columns)]
    for i, r in enumerate(rows):
        top = y + (i + 1) * cell_h
        parts.append(_text(x + 4, top + cell_h * 0.6, r[:12], 10))
        for j, c in enumerate(columns):
            value = cells.get((r, c), 0.0)
            shade = 0.1 + 0.9 * value / high if _drawable(value) else 0.0
            left = x + (j + 1) * cell_w
            parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{cell_w - 2:.1f}" '
                         f'height="{cell_h - 2:.1f}" fill="#ff780a" '
                         f'fill-opacity="{shade:.2f}"/>')
            parts.append(_text(left + cell_w / 2, top + cell_h * 0.6,
                               format_value(value, "short"), 10, anchor="middle"))
    return "\n".join(parts)
