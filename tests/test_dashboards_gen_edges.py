"""The generated dashboards as an SRE configures and opens them: baseline signals switched
off, models with their own windows, multi-output models, panels repeated per model, and
every query checked by promtool."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_binary
from inferwatch.generate import dashboards
from inferwatch.generate.config import DEFAULT, Config, from_dict
from inferwatch.generate.dashboards_queries import recorded
from promtool_cases import assert_promtool_passes
from test_dashboard_schema import schema_errors

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ("traffic", "errors", "latency", "batch_size", "predictions", "confidence",
           "classes", "missing", "out_of_range")
GRID = 24


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _titled(dashboard: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [p for p in _panels(dashboard) if p["title"].startswith(prefix)]
    assert len(found) == 1, [p["title"] for p in found]
    return found[0]


def _all_selected(expr: str) -> str:
    """The query as Grafana sends it with every variable at All."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", ".*", expr)


def _layout_problems(name: str, dashboard: dict[str, Any]) -> list[str]:
    """Overlapping cells, cells past the grid's edge, empty rows, and a panel repeated
    across sharing its line (Grafana draws such a panel 24 columns wide from its x)."""
    problems, taken = [], {}
    top = dashboard["panels"]
    for i, panel in enumerate(top):
        pos = panel["gridPos"]
        if pos["x"] + pos["w"] > GRID:
            problems.append(f"{name}: {panel['title']} runs past column {GRID}")
        if panel.get("repeat") and panel.get("repeatDirection", "h") == "h" and (
                pos["x"], pos["w"]) != (0, GRID):
            problems.append(f"{name}: {panel['title']} repeats across at {pos}")
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                if (x, y) in taken:
                    problems.append(f"{name}: {panel['title']} overlaps {taken[x, y]}")
                taken[x, y] = panel["title"]
        if panel["type"] == "row" and (i + 1 == len(top) or top[i + 1]["type"] == "row"):
            problems.append(f"{name}: row {panel['title']} is empty")
    ids = [p["id"] for p in _panels(dashboard)]
    if len(ids) != len(set(ids)):
        problems.append(f"{name}: panel ids repeat: {ids}")
    return problems


# --- layout: what Grafana draws ----------------------------------------------------------------


def test_a_panel_repeated_per_model_has_a_line_of_its_own() -> None:
    """Grafana 12 turns a panel repeated across into a 24-column grid item at its x: the band
    panels placed two to a line (the second at x=12) ran past the grid's edge and covered
    their neighbours, and Grafana pushed the layout around on load."""
    for name, dashboard in dashboards.render(DEFAULT).items():
        assert _layout_problems(name, dashboard) == []
    repeated = [p for d in dashboards.render(DEFAULT).values() for p in _panels(d)
                if p.get("repeat")]
    assert len(repeated) >= 8
    for panel in repeated:
        assert panel["gridPos"]["x"] == 0 and panel["gridPos"]["w"] == GRID, panel["title"]
        assert panel["maxPerRow"] == 2


def test_a_row_whose_signals_are_all_switched_off_is_left_out() -> None:
    """`enabled: false` on every baseline signal drops their panels; the row header
    'Expected bands (adaptive baselines)' stood alone, over nothing."""
    cfg = from_dict({"baselines": {key: {"enabled": False} for key in SIGNALS}})
    rendered = dashboards.render(cfg)
    for name, dashboard in rendered.items():
        assert _layout_problems(name, dashboard) == []
        assert schema_errors(dashboard) == []
        rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
        assert not any("Expected bands" in r for r in rows), (name, rows)
    # The other rows and their panels keep their order and ids from 1.
    overview = rendered["model-overview.json"]
    assert [p["id"] for p in overview["panels"]] == list(range(1, len(overview["panels"]) + 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enabled=st.lists(st.booleans(), min_size=len(SIGNALS), max_size=len(SIGNALS)),
       seasonal=st.booleans())
def test_any_choice_of_baseline_signals_lays_out_cleanly(enabled: list[bool],
                                                         seasonal: bool) -> None:
    cfg = from_dict({"baselines": {key: {"enabled": on, "seasonal": seasonal}
                                   for key, on in zip(SIGNALS, enabled, strict=True)}})
    for name, dashboard in dashboards.render(cfg).items():
        assert _layout_problems(name, dashboard) == []


# --- queries: what Prometheus answers ----------------------------------------------------------


def test_each_output_of_a_multi_output_model_keeps_its_own_band(tmp_path: Path) -> None:
    """A regressor with two outputs, `price` near 100 and `units` near 1; `units` jumps to
    50 and InferwatchPredictionShift fires for it. One shaded band per model drew the max of
    the outputs (100) inside the envelope of both bands ([0.7, 103]): the panel showed
    nothing wrong. Each output must keep its own value and band edges."""
    panel = _titled(dashboards.render(DEFAULT)["model-quality.json"], "Prediction p50 ")
    value, lower, upper = (_all_selected(t["expr"]) for t in panel["targets"])
    base = 'model_output:inferwatch_baseline_predictions:{}{{model="m", output="{}", ' \
           'quantile="0.5"}}'
    series = []
    for output, val, expected, sigma in (("price", "100", "100", "1"),
                                         ("units", "50", "1", "0.1")):
        series += [{"series": base.format("value_10m", output), "values": f"{val}x5"},
                   {"series": base.format("expected", output), "values": f"{expected}x5"},
                   {"series": base.format("sigma", output), "values": f"{sigma}x5"}]
    labels = '{{model="m", output="{}", quantile="0.5"}}'
    edge = '{{model="m", output="{}", quantile="0.5"}}'
    assert_promtool_passes(tmp_path, series, exprs=[
        {"expr": value, "eval_time": "3m", "exp_samples": [
            {"labels": "model_output:inferwatch_baseline_predictions:value_10m"
                       + labels.format("price"), "value": 100},
            {"labels": "model_output:inferwatch_baseline_predictions:value_10m"
                       + labels.format("units"), "value": 50}]},
        {"expr": upper, "eval_time": "3m", "exp_samples": [
            {"labels": edge.format("price"), "value": 103},
            {"labels": edge.format("units"), "value": 1.3}]},
        {"expr": lower, "eval_time": "3m", "exp_samples": [
            {"labels": edge.format("price"), "value": 97},
            {"labels": edge.format("units"), "value": 0.7}]},
    ])
    legends = [t["legendFormat"] for t in panel["targets"]]
    assert all("{{output}}" in legend for legend in legends), legends
    assert panel["repeat"] == "model"


def test_a_model_judged_over_its_own_accuracy_window_shows_that_accuracy() -> None:
    """`models: {recommender-.*: {accuracy: {window: 6h}}}`: InferwatchAccuracyDrop judges
    those models over 6h, yet the Accuracy panel drew only the 1h accuracy next to their
    own objective line, a value their alert never compares with."""
    cfg = from_dict({"models": {"recommender-.*": {"accuracy": {"min_ratio": 0.6,
                                                                "window": "6h"}}}})
    panel = _titled(dashboards.render(cfg)["model-quality.json"], "Accuracy (")
    exprs = [t["expr"] for t in panel["targets"]]
    for window in ("1h", "6h"):
        rule = recorded(cfg, f"model:inferwatch_outcomes:accuracy_rate{window}")
        assert any(rule in expr for expr in exprs), window
        assert f"[{window}]" in rule
    assert panel["title"] == "Accuracy (1h, 6h)"
    legends = [t["legendFormat"] for t in panel["targets"]]
    assert len(set(legends)) == len(legends), legends
    # Without overrides the panel is unchanged: one window, one line per version.
    default = _titled(dashboards.render(DEFAULT)["model-quality.json"], "Accuracy (")
    assert default["title"] == "Accuracy (1h)"
    assert [t["legendFormat"] for t in default["targets"]] == [
        "{{model}} {{model_version}}", "objective {{model}} {{model_version}}"]


# Configs an SRE writes: several matchers, regex overrides, every signal off, odd titles.
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "selectors": {"selectors": {"model": 'job="a", cluster=~"eu-.*"',
                                "exporter": 'job="b", cluster=~"eu-.*", team!="x"'}},
    "overrides": {"models": {
        "fraud": {"slo": {"availability": 0.9995}, "latency": {"p99_seconds": 0.05},
                  "baselines": {"traffic": {"k": 6}}},
        "recommender-.*": {"accuracy": {"min_ratio": 0.6, "window": "6h"},
                           "slo": {"fast_burn": {"long_window": "2h"}}}}},
    "signals off": {"baselines": {key: {"enabled": False} for key in SIGNALS}},
    "titles": {"dashboards": {"title_prefix": 'Ops "ML" $env {{x}} \\ é ',
                              "uid_prefix": "a" * 30, "tags": ["ml", "prod"]},
               "latency": {"p99_seconds": 0.25}},
}


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for query in panel.get("targets", []):
            yield panel["title"], query["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            yield annotation["name"], annotation["target"]["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
            assert found, variable["query"]["query"]
            yield variable["name"], found.group(1)


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_every_query_of_every_dashboard_parses(case: str, tmp_path: Path) -> None:
    """Every panel, annotation and variable query, with its variables at All, wrapped in a
    recording rule for promtool; and every dashboard passes Grafana's schema, lays out
    cleanly and keeps its uid within Grafana's 40 characters."""
    cfg: Config = from_dict(CONFIGS[case])
    rules = []
    for name, dashboard in dashboards.render(cfg).items():
        assert schema_errors(dashboard) == [], name
        assert _layout_problems(name, dashboard) == []
        assert len(dashboard["uid"]) <= 40
        for i, (title, expr) in enumerate(_queries(dashboard)):
            rules.append({"record": f"check:{name.removesuffix('.json').replace('-', '_')}:{i}",
                          "expr": _all_selected(expr), "labels": {"panel": title}})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = subprocess.run([require_binary("promtool"), "check", "rules", "--lint=none",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_json_is_byte_identical_across_runs() -> None:
    """Two runs with different hash seeds write the same bytes (a committed file is
    checked against a fresh one)."""
    code = ("import json; from inferwatch.generate import dashboards; "
            "from inferwatch.generate.config import from_dict; "
            f"cfg = from_dict({CONFIGS['overrides']!r}); "
            "print(json.dumps(dashboards.render(cfg), indent=2, sort_keys=True))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=120, cwd=ROOT,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1
