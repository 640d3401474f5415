"""Edge cases of the generated Grafana dashboards: what a user sees with several models
selected, odd but legal config values, and the panels' queries run as Grafana runs them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferwatch.generate import dashboards
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.generate.config_checks import duration_seconds
from promtool_cases import assert_promtool_passes


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _band_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _panels(dashboard) if "expected band" in p.get("title", "")]


def test_every_band_panel_repeats_per_selected_model() -> None:
    """Class shares and missing values per row carry legends naming only the class or the
    feature: without one panel per model, two selected models' lines and band edges share
    the same names, and the panel title lists both models."""
    rendered = dashboards.render(DEFAULT)
    bands = [p for name in ("model-overview.json", "model-quality.json")
             for p in _band_panels(rendered[name])]
    titles = {p["title"] for p in bands}
    assert "Class shares and expected bands: $model" in titles
    assert "Missing values per row and expected bands: $model" in titles
    for panel in bands:
        assert panel["title"].endswith(": $model"), panel["title"]
        assert panel.get("repeat") == "model", panel["title"]
        assert panel.get("repeatDirection") == "h", panel["title"]


@pytest.mark.parametrize("refresh", ["2m", "20s", "10m", "1d", "3d", "5s"])
def test_the_configured_refresh_is_one_the_refresh_picker_offers(refresh: str) -> None:
    """Grafana keeps the refresh in the URL and, on reload or from a shared link, replaces
    one its picker does not list by the first interval (5s): a dashboard set to refresh
    every 2m would then query Prometheus every 5s."""
    cfg = from_dict({"dashboards": {"refresh": refresh}})
    for name, dashboard in dashboards.render(cfg).items():
        intervals = dashboard["timepicker"]["refresh_intervals"]
        assert dashboard["refresh"] == refresh
        assert refresh in intervals, name
        seconds = [duration_seconds(i) for i in intervals]
        assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds), intervals


def test_the_default_refresh_keeps_grafanas_default_intervals() -> None:
    for dashboard in dashboards.render(DEFAULT).values():
        assert dashboard["timepicker"]["refresh_intervals"] == [
            "5s", "10s", "30s", "1m", "5m", "15m", "30m", "1h", "2h", "1d"]


# --- annotations, evaluated by promtool as Prometheus evaluates them ----------------------

SERIES = 'inferwatch_model_info{job="inferwatch-model", instance="a:9", model="%s", ' \
         'model_version="%s"}'


def _annotation(name: str, title: str) -> str:
    found = [a for a in dashboards.render(DEFAULT)[name]["annotations"]["list"]
             if a.get("name") == title]
    assert len(found) == 1, title
    # Every variable at All, as Grafana sends it.
    return re.sub(r"\$\w+", ".*", found[0]["target"]["expr"])


def test_a_version_replaced_in_place_marks_versions_serving_changed(tmp_path: Path) -> None:
    """The usual deploy: one replica, version 1 replaced by version 2. The number of versions
    serving stays 1, yet the versions serving changed; a model left alone is never marked."""
    expr = _annotation("model-overview.json", "Versions serving changed")
    series = [
        {"series": SERIES % ("fraud", "1"), "values": "1x20 stale"},
        {"series": SERIES % ("fraud", "2"), "values": "_x21 1x40"},
        {"series": SERIES % ("churn", "7"), "values": "1x60"},
    ]
    assert_promtool_passes(tmp_path, series, exprs=[
        {"expr": expr, "eval_time": "22m", "exp_samples": [
            {"labels": '{model="fraud"}', "value": 2}]},
        {"expr": expr, "eval_time": "15m", "exp_samples": []},
        {"expr": expr, "eval_time": "40m", "exp_samples": []},
    ])


def test_shares_stacked_to_one_are_stacked_per_model() -> None:
    """A stacked panel of shares with its axis fixed at 100%: two selected models stack to
    200%, and everything of the second model is drawn above the axis maximum."""
    checked = 0
    for name, dashboard in dashboards.render(DEFAULT).items():
        for panel in _panels(dashboard):
            defaults = panel.get("fieldConfig", {}).get("defaults", {})
            stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
            if stacked and defaults.get("max") is not None:
                assert panel.get("repeat") == "model", f"{name}: {panel['title']}"
                checked += 1
    assert checked >= 1
