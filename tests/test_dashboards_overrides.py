"""The generated dashboards with per-model overrides (`models:` entries), several models
selected, and configs with many of them: each panel shows what the model's own alert uses,
and the panels' queries, run by promtool as Grafana runs them, keep the models apart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import dashboards, panels
from inferwatch.generate.config import DEFAULT, Config, from_dict
from promtool_cases import assert_promtool_passes
from test_dashboard_schema import schema_errors


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _titled(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    found = [p for p in _panels(dashboard) if p.get("title") == title]
    titles = [p.get("title") for p in _panels(dashboard)]
    assert len(found) == 1, f"{title!r} not once in {titles}"
    return found[0]


def _all_selected(expr: str, range_: str = "1h") -> str:
    """A panel query as Grafana sends it with every variable at All."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", range_)
    return re.sub(r"\$\w+", ".*", expr)


def _limit(panel: dict[str, Any]) -> float:
    return panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]


def _series(name: str, model: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{job="inferwatch-model", instance="a:9", model="{model}", '
                      f'model_version="1"{extra}}}', "values": values}


def _schema_clean(cfg: Config, name: str) -> dict[str, Any]:
    """One dashboard of `cfg`, checked against Grafana's schema."""
    dashboard = dashboards.render(cfg)[name]
    assert schema_errors(dashboard) == [], name
    return dashboard


# --- burn rates: each model's own windows and factor -----------------------------------------

FRAUD_BURN = {"models": {"fraud": {"slo": {"fast_burn": {"long_window": "2h", "factor": 10}}}}}


def test_a_models_own_burn_windows_and_factor_get_their_own_panels() -> None:
    """fraud's fast-burn alert looks at 2h / 5m and fires above 10: the default panel
    (1h / 5m, 14.4) shows neither what its alert sees nor where it fires."""
    slo = _schema_clean(from_dict(FRAUD_BURN), "slo.json")
    default = _titled(slo, "Fast burn rate (1h / 5m)")
    own = _titled(slo, "Fast burn rate (2h / 5m): fraud")
    assert _limit(default) == 14.4 and _limit(own) == 10
    assert [re.findall(r"\[(\w+)\]", t["expr"])[0] for t in own["targets"]] == ["2h", "5m"]
    # The slow burn is not overridden: one panel, every model.
    slow = [p for p in _panels(slo) if p["title"].startswith("Slow burn rate")]
    assert [p["title"] for p in slow] == ["Slow burn rate (6h / 30m)"]
    assert "unless on (model) " not in slow[0]["targets"][0]["expr"]  # no model left out


def test_burn_panels_show_each_model_only_where_its_alert_judges_it(tmp_path: Path) -> None:
    """Two models failing alike: churn is judged by the default alert, fraud by its own
    copy; each panel draws exactly the models of its alert."""
    slo = dashboards.render(from_dict(FRAUD_BURN))["slo.json"]
    default = _titled(slo, "Fast burn rate (1h / 5m)")
    own = _titled(slo, "Fast burn rate (2h / 5m): fraud")
    series = []
    for model in ("fraud", "churn"):
        series += [
            _series("inferwatch_requests_total", model, "0+100x200", outcome="ok"),
            _series("inferwatch_requests_total", model, "0+5x200", outcome="error"),
            _series("inferwatch_model_info", model, "1x200"),
            {"series": f'model:inferwatch_objective:slo_availability{{model="{model}"}}',
             "values": "0.999x200"},
        ]
    checks = []
    for panel, model in ((default, "churn"), (own, "fraud")):
        for query in panel["targets"]:
            checks.append({"expr": f"count by (model) ({_all_selected(query['expr'])})",
                           "eval_time": "150m",
                           "exp_samples": [{"labels": f'{{model="{model}"}}', "value": 1}]})
    assert_promtool_passes(tmp_path, series, exprs=checks)


def test_overrides_with_the_same_burn_share_one_panel() -> None:
    cfg = from_dict({"models": {
        "fraud": {"slo": {"slow_burn": {"factor": 3}}},
        "ads-.*": {"slo": {"slow_burn": {"factor": 3}}},
        "churn": {"latency": {"p99_seconds": 1}}}})
    slo = _schema_clean(cfg, "slo.json")
    slow = [p["title"] for p in _panels(slo) if p["title"].startswith("Slow burn rate")]
    assert slow == ["Slow burn rate (6h / 30m)", "Slow burn rate (6h / 30m): fraud, ads-.*"]


@st.composite
def burn_overrides(draw: st.DrawFn) -> dict[str, Any]:
    windows = st.sampled_from([("1h", "5m"), ("2h", "10m"), ("6h", "30m"), ("3d", "6h")])
    models = {}
    for i in range(draw(st.integers(0, 6))):
        own: dict[str, Any] = {}
        for which in draw(st.sets(st.sampled_from(["fast_burn", "slow_burn"]))):
            long_window, short_window = draw(windows)
            own[which] = {"long_window": long_window, "short_window": short_window,
                          "factor": draw(st.sampled_from([2, 6, 14.4, 20]))}
        models[f"m{i}" if draw(st.booleans()) else f"m{i}-.*"] = {"slo": own}
    return models


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(burn_overrides())
def test_every_burn_alert_shape_has_a_panel_at_its_factor(models: dict[str, Any]) -> None:
    """Whatever the overrides, each (long window, short window, factor) a model's alert
    uses is drawn once, with that factor as the dashed line, and each overriding entry
    is named by exactly the panel of its own burn."""
    cfg = from_dict({"models": models})
    slo = _schema_clean(cfg, "slo.json")
    for which, title in (("fast_burn", "Fast"), ("slow_burn", "Slow")):
        default = getattr(cfg.slo, which)
        shapes = {(default.long_window, default.short_window, default.factor): ""}
        for pattern, own in models.items():
            burn = own["slo"].get(which)
            if burn is None:
                continue
            key = (burn["long_window"], burn["short_window"], float(burn["factor"]))
            if key[:2] == (default.long_window, default.short_window) and \
                    key[2] == default.factor:
                continue
            shapes[key] = f"{shapes[key]}, {pattern}" if shapes.get(key) else f": {pattern}"
        panels = {p["title"]: p for p in _panels(slo) if p["title"].startswith(title + " burn")}
        expected = {f"{title} burn rate ({long_} / {short}){named}": factor
                    for (long_, short, factor), named in shapes.items()}
        assert {t: _limit(p) for t, p in panels.items()} == expected


# --- latency: each model's own p99 threshold -------------------------------------------------

FRAUD_P99 = {"models": {"fraud": {"latency": {"p99_seconds": 0.25}}}}


def test_the_slo_latency_panel_draws_each_models_own_p99() -> None:
    """fraud pages above 0.25s: a panel with only the default 0.5s line shows its p99 at
    0.4s as fine while InferwatchLatencyHigh fires for it."""
    slo = _schema_clean(from_dict(FRAUD_P99), "slo.json")
    panel = _titled(slo, "p99 latency")
    objectives = [t for t in panel["targets"]
                  if "model:inferwatch_objective:latency_p99_seconds" in t["expr"]]
    assert len(objectives) == 1
    assert objectives[0]["legendFormat"] == "objective {{model}}"
    assert 'model=~"$model"' in objectives[0]["expr"]


def test_calls_within_use_each_models_own_p99_bucket(tmp_path: Path) -> None:
    """Half of fraud's calls take more than its own 0.25s: its latency SLO is 50%, not the
    90% within the default 0.5s; churn keeps the default."""
    slo = _schema_clean(from_dict(FRAUD_P99), "slo.json")
    panel = _titled(slo, "Calls within each model's p99 threshold over 30d")
    series = []
    for model in ("fraud", "churn"):
        name = "inferwatch_request_duration_seconds"
        series += [
            _series(f"{name}_bucket", model, "0+50x100", le="0.25"),
            _series(f"{name}_bucket", model, "0+90x100", le="0.5"),
            _series(f"{name}_bucket", model, "0+100x100", le="+Inf"),
            _series(f"{name}_count", model, "0+100x100"),
            _series("inferwatch_model_info", model, "1x100"),
        ]
    expr = f"round(100 * ({_all_selected(panel['targets'][0]['expr'])}))"
    assert_promtool_passes(tmp_path, series, exprs=[
        {"expr": expr, "eval_time": "90m", "exp_samples": [
            {"labels": '{model="fraud"}', "value": 50},
            {"labels": '{model="churn"}', "value": 90}]}])


def test_without_overrides_the_latency_slo_reads_the_one_bucket() -> None:
    slo = dashboards.render(DEFAULT)["slo.json"]
    panel = _titled(slo, "Calls within 0.5s over 30d")
    assert panel["targets"][0]["expr"].count("_bucket{") == 1
    assert " or " not in panel["targets"][0]["expr"]


# --- baseline bands ---------------------------------------------------------------------------


def test_out_of_range_values_have_their_band_panel() -> None:
    """InferwatchOutOfRangeAnomaly fires on its per-feature band: the dashboard drew the
    band of every other signal but not of this one."""
    quality = _schema_clean(DEFAULT, "model-quality.json")
    banded = [p for p in _panels(quality) if any(
        "inferwatch_baseline_out_of_range" in t["expr"] for t in p.get("targets", []))]
    assert [p["title"] for p in banded] == [
        "Out-of-range values per row and expected bands: $model"]
    panel = banded[0]
    assert panel["repeat"] == "model"
    assert [t["legendFormat"] for t in panel["targets"]] == [
        "{{feature}}", "low {{feature}}", "high {{feature}}"]
    assert "InferwatchOutOfRangeAnomaly" in panel["description"]
    off = dashboards.render(from_dict({"baselines": {"out_of_range": {"enabled": False}}}))
    assert "inferwatch_baseline_out_of_range" not in str(off["model-quality.json"])


# --- class mix ---------------------------------------------------------------------------------


def test_class_mix_keeps_same_named_classes_of_two_models_apart(tmp_path: Path) -> None:
    """fraud predicts class "1" 30% of the time, churn 50%: one merged bar "1" showed 33%,
    neither model's share."""
    quality = _schema_clean(DEFAULT, "model-quality.json")
    panel = _titled(quality, "Class mix")
    assert panel["targets"][0]["legendFormat"] == "{{model}} {{class}}"
    series = [
        _series("inferwatch_predicted_class_total", "fraud", "0+30x100", **{"class": "1"}),
        _series("inferwatch_predicted_class_total", "fraud", "0+70x100", **{"class": "0"}),
        _series("inferwatch_predicted_class_total", "churn", "0+10x100", **{"class": "1"}),
        _series("inferwatch_predicted_class_total", "churn", "0+10x100", **{"class": "0"}),
    ]
    expr = f"round(100 * ({_all_selected(panel['targets'][0]['expr'])}))"
    assert_promtool_passes(tmp_path, series, exprs=[
        {"expr": expr, "eval_time": "90m", "exp_samples": [
            {"labels": '{model="fraud", class="1"}', "value": 30},
            {"labels": '{model="fraud", class="0"}', "value": 70},
            {"labels": '{model="churn", class="1"}', "value": 50},
            {"labels": '{model="churn", class="0"}', "value": 50}]}])


# --- many queries in one panel -----------------------------------------------------------------


def test_thirty_models_with_their_own_accuracy_window_render() -> None:
    """The accuracy panel draws one query per accuracy window in use: with more than 26,
    `inferwatch generate` crashed with an IndexError instead of writing the dashboards."""
    models = {f"model-{i}": {"accuracy": {"window": f"{i + 2}h"}} for i in range(30)}
    quality = _schema_clean(from_dict({"models": models}), "model-quality.json")
    panel = next(p for p in _panels(quality) if p["title"].startswith("Accuracy ("))
    refs = [t["refId"] for t in panel["targets"]]
    assert len(refs) == 32 and len(set(refs)) == 32
    assert refs[:3] == ["A", "B", "C"] and refs[26:28] == ["AA", "AB"]


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_ref_ids_are_distinct_letters(a: int, b: int) -> None:
    ref_id = panels.ref_id
    assert re.fullmatch(r"[A-Z]+", ref_id(a))
    assert (ref_id(a) == ref_id(b)) == (a == b)
    # Grafana's own order: shorter names first, then alphabetical.
    assert (len(ref_id(a)), ref_id(a)) < (len(ref_id(a + 1)), ref_id(a + 1))
