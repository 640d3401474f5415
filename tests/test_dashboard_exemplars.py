"""The latency panels ask Grafana for the exemplars (trace ids) inferwatch exposes.

No query carried ``"exemplar": true``, so Grafana never fetched the exemplars on
``inferwatch_request_duration_seconds``, and a slow request's trace was one click away only
in principle. The latency time series and heatmap now ask for them, once per panel, on the
query that reads the histogram's buckets; and nowhere else (Grafana fetches exemplars per
query, and shows them only on time series and heatmaps).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from e2e_dashboards import panels
from inferwatch.generate import dashboards as generated
from inferwatch.generate.config import DEFAULT, from_dict
from test_dashboard_schema import configs, schema_errors

ROOT = Path(__file__).resolve().parents[1]
# The histogram inferwatch puts exemplars on (core/monitor_drain.py), and their label
# (core/render.py, core/encode.py).
EXEMPLAR_BUCKETS = "inferwatch_request_duration_seconds_bucket"
EXEMPLAR_LABEL = "trace_id"
# Where each dashboard shows request latency over time.
LATENCY_PANELS = {
    ("champion-challenger.json", "p99 latency by version"),
    ("model-overview.json", "Latency quantiles"),
    ("model-overview.json", "Latency distribution"),
    ("slo.json", "p99 latency"),
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    return generated.render(DEFAULT)


def _asking(dashboards: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """The queries that ask for exemplars, by (dashboard, panel title)."""
    found: dict[tuple[str, str], list[dict]] = {}
    for name, dashboard in dashboards.items():
        for panel in panels(dashboard):
            asking = [t for t in panel.get("targets", []) if t.get("exemplar")]
            if asking:
                found[(name, panel["title"])] = asking
    return found


def _check_exemplar_queries(dashboards: dict[str, dict[str, Any]]) -> None:
    """Every time series and heatmap that reads the latency buckets over a range asks for
    exemplars on exactly its first such query; no other query asks."""
    for name, dashboard in dashboards.items():
        for panel in panels(dashboard):
            targets = panel.get("targets", [])
            reading = [t for t in targets if t["range"] and EXEMPLAR_BUCKETS in t["expr"]]
            asking = [t for t in targets if "exemplar" in t]
            where = (name, panel["title"])
            if panel["type"] in ("timeseries", "heatmap") and reading:
                assert asking == reading[:1], where
                assert asking[0]["exemplar"] is True, where
            else:
                assert asking == [], where


def test_every_latency_panel_asks_for_exemplars_once(rendered):
    asking = _asking(rendered)
    assert set(asking) == LATENCY_PANELS
    assert all(len(queries) == 1 for queries in asking.values())
    _check_exemplar_queries(rendered)


def test_no_query_of_another_histogram_or_an_instant_asks_for_exemplars(rendered):
    for queries in _asking(rendered).values():
        for query in queries:
            assert EXEMPLAR_BUCKETS in query["expr"] and not query["instant"]
            # The metric whose buckets carry the trace ids, not a recording rule over it
            # (a recorded series has no exemplars).
            assert re.search(rf"\b{EXEMPLAR_BUCKETS}\{{", query["expr"]), query["expr"]


def test_the_committed_dashboards_ask_for_exemplars_and_pass_the_schema():
    committed = {path.name: json.loads(path.read_text())
                 for path in sorted((ROOT / "dashboards").glob("*.json"))}
    assert set(_asking(committed)) == LATENCY_PANELS
    _check_exemplar_queries(committed)
    for name, dashboard in committed.items():
        assert schema_errors(dashboard) == [], name


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_config_keeps_the_exemplar_queries(data: dict[str, Any]) -> None:
    dashboards = generated.render(from_dict(data))
    assert {panel for _, panel in _asking(dashboards)} == {p for _, p in LATENCY_PANELS}
    _check_exemplar_queries(dashboards)


def test_the_documented_trace_link_names_the_exemplar_label():
    """The datasource provisioning the docs show links the exemplar label inferwatch writes
    to a tracing datasource; a label of another name would link nothing."""
    text = (ROOT / "docs" / "tracing.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    linked = [yaml.safe_load(block) for block in blocks if "exemplarTraceIdDestinations" in block]
    assert linked, "docs/tracing.md shows no exemplarTraceIdDestinations"
    for config in linked:
        (source,) = [s for s in config["datasources"] if s["type"] == "prometheus"]
        destinations = source["jsonData"]["exemplarTraceIdDestinations"]
        assert destinations and all(d["name"] == EXEMPLAR_LABEL for d in destinations)
        assert all(d.get("datasourceUid") or d.get("url") for d in destinations)
