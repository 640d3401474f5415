"""The generated dashboards with `models:` entries: each panel scoped to, or saying, what each
model's own alert uses (accuracy windows, band widths, the colours of stat panels)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import dashboards
from inferwatch.generate.config import DEFAULT, Config, from_dict
from promtool_cases import assert_promtool_passes
from test_dashboard_schema import schema_errors


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _titled(dashboard: dict[str, Any], start: str) -> dict[str, Any]:
    found = [p for p in _panels(dashboard) if p.get("title", "").startswith(start)]
    assert len(found) == 1, [p.get("title") for p in _panels(dashboard)]
    return found[0]


def _schema_clean(cfg: Config, name: str) -> dict[str, Any]:
    dashboard = dashboards.render(cfg)[name]
    assert schema_errors(dashboard) == [], name
    return dashboard


def _all_selected(expr: str) -> str:
    """A panel query as Grafana sends it with every variable at All."""
    return re.sub(r"\$\w+", ".*", expr.replace("$__rate_interval", "5m"))


def _series(name: str, model: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{job="inferwatch-model", instance="a:9", model="{model}", '
                      f'model_version="1"{extra}}}', "values": values}


# --- accuracy: each window only for the models judged over it ---------------------------------

ADS_6H = {"models": {"ads-.*": {"accuracy": {"window": "6h"}}}}


def _accuracy_queries(cfg: Config) -> dict[str, str]:
    panel = _titled(_schema_clean(cfg, "model-quality.json"), "Accuracy (")
    return {re.findall(r"\[(\w+)\]", t["expr"])[0]: t["expr"] for t in panel["targets"]
            if not t["legendFormat"].startswith("objective")}


def test_each_accuracy_window_draws_only_the_models_its_alert_judges(tmp_path: Path) -> None:
    """ads-x is judged over 6h, churn over the default 1h: the panel drew both models over
    both windows, four lines of which two are read by no alert."""
    queries = _accuracy_queries(from_dict(ADS_6H))
    assert sorted(queries) == ["1h", "6h"]
    series = []
    for model in ("ads-x", "churn"):
        series += [
            _series("inferwatch_outcomes_total", model, "0+8x500", result="correct"),
            _series("inferwatch_outcomes_total", model, "0+2x500", result="wrong"),
            _series("inferwatch_model_info", model, "1x500"),
        ]
    checks = [{"expr": f"count by (model) ({_all_selected(queries[window])})",
               "eval_time": "7h", "exp_samples": [{"labels": f'{{model="{model}"}}', "value": 1}]}
              for window, model in (("1h", "churn"), ("6h", "ads-x"))]
    assert_promtool_passes(tmp_path, series, exprs=checks)


@st.composite
def accuracy_overrides(draw: st.DrawFn) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for i in range(draw(st.integers(0, 5))):
        own: dict[str, Any] = {}
        if draw(st.booleans()):
            own["accuracy"] = {"window": draw(st.sampled_from(["1h", "2h", "6h", "1d"]))}
        if draw(st.booleans()):
            own["latency"] = {"p99_seconds": 0.25}
        models[f"m{i}" if draw(st.booleans()) else f"m{i}-.*"] = own
    return models


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accuracy_overrides())
def test_every_accuracy_query_names_exactly_the_entries_judged_over_it(
        models: dict[str, Any]) -> None:
    """Whatever the entries, a model's entry is kept in by its own window's query and left
    out of every other one; the default window's query leaves out every entry with another
    window, and nothing else is scoped when no entry moves the window."""
    cfg = from_dict({"models": models})
    queries = _accuracy_queries(cfg)
    own = {pattern: entry.get("accuracy", {}).get("window", "1h")
           for pattern, entry in models.items()}
    moved = {pattern: window for pattern, window in own.items() if window != "1h"}
    assert set(queries) == {"1h", *moved.values()}
    for window, expr in queries.items():
        for pattern, entry_window in moved.items():
            matcher = f'model="{pattern}"' if pattern.isalnum() else f'model=~"{pattern}"'
            scoped = expr.split(") and on (model) ", 1)[-1] if " and on " in expr else ""
            left_out = expr.split(") unless on (model) ", 1)[-1] if " unless on " in expr else ""
            if window == entry_window:
                assert matcher in scoped, (window, pattern, expr)
            elif window == "1h":
                assert matcher in left_out, (window, pattern, expr)
            else:
                assert matcher not in expr, (window, pattern, expr)
        if not moved:
            assert " and on " not in expr and " unless on " not in expr


# --- band descriptions: each model's own k -----------------------------------------------------


def test_band_descriptions_say_the_k_each_model_uses() -> None:
    """fraud's traffic band is 6 sigma wide (its alert and the drawn edges agree), yet the
    description said "expected +- 3 sigma" to whoever looks at fraud's panel."""
    cfg = from_dict({"models": {"fraud": {"baselines": {"traffic": {"k": 6},
                                                        "missing": {"k": 5}}}}})
    overview = _schema_clean(cfg, "model-overview.json")
    quality = _schema_clean(cfg, "model-quality.json")
    traffic = _titled(overview, "Calls per second and expected band")
    missing = _titled(quality, "Missing values per row and expected bands")
    errors = _titled(overview, "Error ratio and expected band")
    for panel in (traffic, missing):
        assert "+- 3 sigma" not in panel["description"], panel["description"]
        assert "each model's own" in panel["description"]
        assert "by default 3" in panel["description"]
        # The edges drawn are each model's own: what the description now says.
        assert "model:inferwatch_objective:baselines_" in panel["targets"][2]["expr"]
    assert "+- 3 sigma" in errors["description"]
    default = _titled(dashboards.render(DEFAULT)["model-overview.json"],
                      "Calls per second and expected band")
    assert "+- 3 sigma" in default["description"]
    assert "each model's own" not in default["description"]


# --- stat panels coloured by the default objective ---------------------------------------------

STATS = (("slo.json", "Availability over 30d", "slo"),
         ("model-overview.json", "Error ratio", "slo"),
         ("model-overview.json", "p99 latency", "latency"),
         ("model-overview.json", "Model age", "predictions"))


def _stat(cfg: Config, name: str, title: str) -> dict[str, Any]:
    found = [p for p in _panels(dashboards.render(cfg)[name])
             if p.get("title") == title and p["type"] == "stat"]
    assert len(found) == 1, title
    return found[0]


def test_stats_coloured_by_the_default_say_so_when_a_model_has_its_own() -> None:
    """fraud's SLO is 0.9995, its p99 0.05s, its age limit 7d: the stat panels turn red or
    green at the defaults only, so 99.93% showed green while fraud's budget burned."""
    cfg = from_dict({"models": {"fraud": {"slo": {"availability": 0.9995},
                                          "latency": {"p99_seconds": 0.05},
                                          "predictions": {"max_model_age": "7d"}}}})
    for name, title, _ in STATS:
        described = _stat(cfg, name, title)["description"]
        assert "Coloured against the default" in described, (title, described)
        assert "its own objective" in described
        assert "Coloured" not in _stat(DEFAULT, name, title)["description"], title
    # Only the stats whose objective some model overrides.
    only_latency = from_dict({"models": {"fraud": {"latency": {"p99_seconds": 0.05}}}})
    for name, title, section in STATS:
        described = _stat(only_latency, name, title)["description"]
        assert ("Coloured against the default" in described) == (section == "latency"), title


# --- drift window rows: each model's own minimum -----------------------------------------------


def test_drift_window_rows_draw_each_models_own_minimum(tmp_path: Path) -> None:
    """fraud's drift alerts need 5,000 rows: its window of 2,000 sat above the default
    dashed line (1,000), looking ready, while its alerts could not fire."""
    cfg = from_dict({"models": {"fraud": {"drift": {"min_observations": 5000}}}})
    panel = _titled(_schema_clean(cfg, "model-quality.json"), "Drift window rows")
    objectives = [t for t in panel["targets"] if t["legendFormat"] == "objective {{model}}"]
    assert len(objectives) == 1
    assert "own minimum" in panel["description"]
    series = [
        _series("inferwatch_model_info", "fraud", "1x20"),
        _series("inferwatch_model_info", "churn", "1x20"),
        {"series": 'model:inferwatch_objective:drift_min_observations{model="fraud"}',
         "values": "5000x20"},
        {"series": 'model:inferwatch_objective:drift_min_observations{model="churn"}',
         "values": "1000x20"},
    ]
    assert_promtool_passes(tmp_path, series, exprs=[
        {"expr": _all_selected(objectives[0]["expr"]), "eval_time": "10m", "exp_samples": [
            {"labels": '{model="fraud"}', "value": 5000},
            {"labels": '{model="churn"}', "value": 1000}]}])
