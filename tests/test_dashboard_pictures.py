"""The README's pictures of the dashboards (docs/images/*.svg): fresh, complete, well formed.

They are drawn from a live demo by ``make pictures`` (inferwatch.demo.snapshot), so their
data differs from run to run; what must not drift is what they show: each carries the
fingerprint of the dashboard layout it was drawn from, and a test fails when the committed
dashboards change without new pictures.
"""

from __future__ import annotations

import doctest
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_dashboards import panels
from inferwatch.demo import picture, snapshot
from inferwatch.demo.picture import Series, fingerprint, format_value, svg
from inferwatch.generate import dashboards as generated
from inferwatch.generate import panels as panel_helpers
from test_e2e import NEVER_DATA

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
SVG = "{http://www.w3.org/2000/svg}"


def _committed() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards")
                                                              .glob("*.json"))}


def _texts(tree: ET.Element) -> list[str]:
    return [t.text or "" for t in tree.iter(f"{SVG}text")]


@pytest.mark.parametrize("name", sorted(_committed()))
def test_each_picture_shows_the_committed_dashboard(name: str) -> None:
    dashboard = _committed()[name]
    path = IMAGES / f"{name}.svg"
    assert path.exists(), f"run `make pictures`: {path} is missing"
    tree = ET.parse(path).getroot()
    metadata = tree.find(f"{SVG}metadata")
    assert metadata is not None
    assert metadata.text == f"inferwatch-layout {fingerprint(dashboard)}", (
        f"{path.name} shows an older layout of {name}.json: run `make pictures`")
    texts = _texts(tree)
    for panel in panels(dashboard):
        assert panel["title"] in texts, panel["title"]


@pytest.mark.parametrize("name", sorted(_committed()))
def test_each_picture_was_filled_from_live_data(name: str) -> None:
    """Only the panels that the end-to-end test knows stay empty on this machine (no GPU,
    no internal fault, no cap reached, no regression model) show no data."""
    tree = ET.parse(IMAGES / f"{name}.svg").getroot()
    empty = {_texts(group)[0] for group in tree.iter(f"{SVG}g")
             if "no data" in _texts(group)}
    assert empty <= {panel for dashboard, panel in NEVER_DATA if dashboard == name}
    assert list(tree.iter(f"{SVG}polyline"))


def test_the_fingerprint_follows_titles_places_and_queries() -> None:
    dashboard = _committed()["model-overview"]
    before = fingerprint(dashboard)
    for change in (lambda p: p.update(title="Renamed"),
                   lambda p: p["gridPos"].update(w=p["gridPos"]["w"] - 1),
                   lambda p: p["targets"][0].update(expr="up")):
        changed = json.loads(json.dumps(dashboard))
        change(changed["panels"][1])
        assert fingerprint(changed) != before
    assert fingerprint(json.loads(json.dumps(dashboard))) == before


def _board(kind: str, title: str = "Panel") -> dict[str, Any]:
    return {"title": "Board", "panels": [
        {"id": 1, "type": "row", "title": "Row", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
        {"id": 2, "type": kind, "title": title, "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
         "fieldConfig": {"defaults": {"unit": "percentunit"}}}]}


def test_each_panel_type_is_drawn_from_its_series() -> None:
    three = [Series(f"s{i}", [(t, 0.1 * i + t / 100) for t in range(10)]) for i in range(3)]
    lines = ET.fromstring(svg(_board("timeseries"), {2: three}))
    assert len(list(lines.iter(f"{SVG}polyline"))) == 3
    assert "s0   s1   s2" in _texts(lines)
    stat = ET.fromstring(svg(_board("stat"), {2: [Series("a", [(0, 0.5), (1, 0.25)])]}))
    assert "25%" in _texts(stat)
    bars = ET.fromstring(svg(_board("bargauge"), {2: three}))
    assert {"s0", "s1", "s2"} <= set(_texts(bars))
    table = ET.fromstring(svg(_board("table"), {2: [Series("fraud 1.4.2", [(0, 1)])]}))
    assert "fraud 1.4.2" in _texts(table)
    empty = ET.fromstring(svg(_board("heatmap"), {2: []}))
    assert "no data" in _texts(empty)


@settings(max_examples=100, deadline=None)
@given(title=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                     max_size=30),
       values=st.lists(st.floats(allow_infinity=True), min_size=1, max_size=20),
       kind=st.sampled_from(["timeseries", "stat", "bargauge", "heatmap", "table",
                             "state-timeline"]))
def test_any_title_and_values_make_well_formed_svg(title: str, values: list[float],
                                                   kind: str) -> None:
    series = [Series(title, list(enumerate(values)))]
    tree = ET.fromstring(svg(_board(kind, title), {2: series}))
    assert title in _texts(tree)


def test_values_are_formatted_in_the_panel_unit() -> None:
    assert format_value(0.999, "percentunit") == "99.9%"
    assert format_value(1536, "bytes") == "1.54 kB"
    assert format_value(float("nan"), "s") == "NaN"


def test_grafana_variables_resolve_to_all() -> None:
    expr = ('sum(rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval])) '
            '/ scalar(y[$__range])')
    assert snapshot.grafana_expr(expr, 120, 2) == (
        'sum(rate(x{job=~".*", instance=~".*"}[30s])) / scalar(y[120s])')


@pytest.mark.parametrize("module", [picture, snapshot, generated, panel_helpers])
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
