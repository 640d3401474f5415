"""Objectives declared in code judge each serving version by its own value, model-wide alerts
by the strictest version's, and a `models:` entry's alert settings still reach a model that
vanished: through the generated rules on the real promtool."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate.promql import objective
from test_rules_semantics_edges import RUNBOOK, promtool_test

pytestmark = pytest.mark.integration

LABELS = 'job="inferwatch-model", instance="m:%s", model="%s", model_version="%s"'
FROM_CODE = {"objectives": {"from_code": True}}


def version_objective(key: str) -> str:
    """The recording rule of every serving version's own value of an objective."""
    return "model_version:inferwatch_objective:" + key.replace(".", "_")


def _serving(model: str, version: str, minutes: int = 40) -> list[tuple[str, str]]:
    """A primary version serving 100 calls a minute, 5 of them failing, all between 0.5 s
    and 1 s (p99 about 0.9 s)."""
    labels = LABELS % (version, model, version)
    series = [(f'inferwatch_model_info{{{labels}, role="primary"}}', f"1x{minutes}"),
              (f'inferwatch_requests_total{{{labels}, outcome="ok"}}', f"0+95x{minutes}"),
              (f'inferwatch_requests_total{{{labels}, outcome="error"}}', f"0+5x{minutes}")]
    for le, per_minute in (("0.5", 0), ("1", 100), ("+Inf", 100)):
        series.append((f'inferwatch_request_duration_seconds_bucket{{{labels}, le="{le}"}}',
                       f"0+{per_minute}x{minutes}"))
    return series


def _declares(model: str, version: str, key: str, value: float) -> tuple[str, str]:
    labels = LABELS % (version, model, version)
    return (f'inferwatch_model_objective{{{labels}, objective="{key}"}}', f"{value}x40")


def _firing(alert: str, labels: dict[str, str], severity: str = "warning") -> dict:
    """A firing alert by its labels (its annotations are not compared)."""
    text = ", ".join(f'{k}="{v}"' for k, v in sorted(
        {"alertname": alert, "alertstate": "firing", "severity": severity, **labels}.items()))
    return {"labels": f"ALERTS{{{text}}}", "value": 1}


def _alerts(alert: str, eval_time: str, firing: list[dict]) -> dict:
    """Exactly `firing` of `alert` fire at `eval_time`."""
    return {"expr": f'ALERTS{{alertname="{alert}", alertstate="firing"}}',
            "eval_time": eval_time, "exp_samples": firing}


def test_a_canary_is_judged_by_its_own_latency_objective_and_the_stable_by_its_own(
        tmp_path: Path) -> None:
    """stable 1.0 declares a 50 ms p99, the 5% canary 2.0 declares 2 s while it is tried out;
    both run at 0.9 s. The stable version pages; the canary does not. Combined per model
    (the larger value), the canary's 2 s silenced the stable version's alert."""
    series = [*_serving("fraud", "1.0"), *_serving("fraud", "2.0"),
              _declares("fraud", "1.0", "latency.p99_seconds", 0.05),
              _declares("fraud", "2.0", "latency.p99_seconds", 2)]
    key = version_objective("latency.p99_seconds")
    exprs = [{"expr": key, "eval_time": "30m", "exp_samples": [
        {"labels": f'{key}{{model="fraud", model_version="1.0"}}', "value": 0.05},
        {"labels": f'{key}{{model="fraud", model_version="2.0"}}', "value": 2}]}]
    alerts = [_alerts("InferwatchLatencyHigh", "30m", [
        _firing("InferwatchLatencyHigh", {"model": "fraud", "model_version": "1.0"})])]
    promtool_test(tmp_path, FROM_CODE, series, exprs=[*alerts, *exprs])


def test_a_canary_with_a_stricter_availability_does_not_page_the_stable_version(
        tmp_path: Path) -> None:
    """Both versions fail 5% of their calls. The stable version declares 99% availability
    (a fast-burn limit of 14.4%), the canary 99.99% (0.144%): only the canary burns its
    budget. Combined per model (the larger value), the stable version paged as well."""
    series = [*_serving("fraud", "1.0", 90), *_serving("fraud", "2.0", 90),
              _declares("fraud", "1.0", "slo.availability", 0.99),
              _declares("fraud", "2.0", "slo.availability", 0.9999)]
    series = [(name, values.replace("x40", "x90")) for name, values in series]
    alerts = [_alerts("InferwatchErrorBudgetBurnFast", "80m", [
        _firing("InferwatchErrorBudgetBurnFast", {"model": "fraud", "model_version": "2.0"},
                "critical")])]
    promtool_test(tmp_path, FROM_CODE, series, exprs=alerts)


def test_a_model_wide_alert_takes_the_strictest_version(tmp_path: Path) -> None:
    """Two versions serve; one declares at most 1 version at once, the other 3. The model-wide
    objective is the stricter 1 (and the stricter of the latency and availability values the
    dashboards draw), so the stuck rollout is reported."""
    series = [*_serving("fraud", "1.0", 90), *_serving("fraud", "2.0", 90),
              _declares("fraud", "1.0", "predictions.max_versions", 1),
              _declares("fraud", "2.0", "predictions.max_versions", 3),
              _declares("fraud", "1.0", "latency.p99_seconds", 0.05),
              _declares("fraud", "2.0", "latency.p99_seconds", 2),
              _declares("fraud", "1.0", "slo.availability", 0.99),
              _declares("fraud", "2.0", "slo.availability", 0.9999)]
    series = [(name, values.replace("x40", "x90")) for name, values in series]
    exprs = [{"expr": objective(key), "eval_time": "30m", "exp_samples": [
        {"labels": f'{objective(key)}{{model="fraud"}}', "value": value}]}
        for key, value in (("predictions.max_versions", 1), ("latency.p99_seconds", 0.05),
                           ("slo.availability", 0.9999))]
    alerts = [_alerts("InferwatchTooManyVersionsServing", "80m", [
        _firing("InferwatchTooManyVersionsServing", {"model": "fraud"})])]
    promtool_test(tmp_path, FROM_CODE, series, exprs=[*alerts, *exprs])


def test_a_version_that_declares_nothing_is_judged_by_the_config(tmp_path: Path) -> None:
    """Only the canary declares a (laxer) p99; the stable version is held to its models:
    entry's 0.2 s and pages at 0.9 s, and the alert text names that 0.2 s."""
    config = {**FROM_CODE, "models": {"fraud": {"latency": {"p99_seconds": 0.2}}}}
    series = [*_serving("fraud", "1.0"), *_serving("fraud", "2.0"),
              _declares("fraud", "2.0", "latency.p99_seconds", 2)]
    key = version_objective("latency.p99_seconds")
    exprs = [{"expr": key, "eval_time": "30m", "exp_samples": [
        {"labels": f'{key}{{model="fraud", model_version="1.0"}}', "value": 0.2},
        {"labels": f'{key}{{model="fraud", model_version="2.0"}}', "value": 2}]}]
    alerts = [{"alertname": "InferwatchLatencyHigh", "eval_time": "30m", "exp_alerts": [{
        "exp_labels": {"alertname": "InferwatchLatencyHigh", "severity": "warning",
                       "model": "fraud", "model_version": "1.0"},
        "exp_annotations": {
            "summary": "Model fraud 1.0 p99 latency is high",
            "description": "p99 latency of fraud 1.0 is 995ms over 5m, above the threshold "
                           "of 0.2s. Reads series matching {job=\"inferwatch-model\"} "
                           "(selectors.model in the inferwatch config; regenerate the rules "
                           "after changing it).",
            "runbook_url": f"{RUNBOOK}#inferwatchlatencyhigh",
            "dashboard_url": "http://localhost:3000/d/inferwatch-overview?var-model=fraud"},
    }]}]
    promtool_test(tmp_path, config, series, alerts, exprs)


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([0.01, 0.05, 0.25, 0.5, 1.5, 3.0]), min_size=2, max_size=3))
def test_every_version_keeps_its_own_declared_latency(tmp_path: Path,
                                                      declared: list[float]) -> None:
    versions = [f"{n}.0" for n in range(1, len(declared) + 1)]
    directory = tmp_path / "-".join(map(str, declared))
    directory.mkdir(exist_ok=True)
    series = [s for version in versions for s in _serving("fraud", version)]
    series += [_declares("fraud", version, "latency.p99_seconds", value)
               for version, value in zip(versions, declared, strict=True)]
    key = version_objective("latency.p99_seconds")
    exprs = [{"expr": key, "eval_time": "30m", "exp_samples": [
        {"labels": f'{key}{{model="fraud", model_version="{version}"}}', "value": value}
        for version, value in zip(versions, declared, strict=True)]},
        {"expr": objective("latency.p99_seconds"), "eval_time": "30m", "exp_samples": [
            {"labels": f'{objective("latency.p99_seconds")}{{model="fraud"}}',
             "value": min(declared)}]}]
    alerts = [_alerts("InferwatchLatencyHigh", "30m", [
        _firing("InferwatchLatencyHigh", {"model": "fraud", "model_version": version})
        for version, value in zip(versions, declared, strict=True) if value < 0.9])]
    promtool_test(directory, FROM_CODE, series, exprs=[*alerts, *exprs])


def test_a_models_entry_for_no_traffic_still_applies_to_a_model_that_vanished(
        tmp_path: Path) -> None:
    """fraud's entry makes InferwatchNoTraffic critical after 20m. Every replica of fraud is
    gone at 60m (scaled to zero): its info series went with it. The alert still comes from
    fraud's own copy, critical and labelled with the entry; ranker, without an entry, gets
    the default. The copy was scoped by the current info series, so fraud fell back to the
    default rule's warning."""
    config = {"models": {"fraud": {"alerts": {
        "InferwatchNoTraffic": {"for": "20m", "severity": "critical"}}}}}
    series = [(name, values.replace("x40", "x60"))
              for model in ("fraud", "ranker") for name, values in _serving(model, "1", 60)]
    alerts = [_alerts("InferwatchNoTraffic", "100m", [
        _firing("InferwatchNoTraffic", {"model": "fraud", "model_override": "fraud"},
                "critical"),
        _firing("InferwatchNoTraffic", {"model": "ranker"})])]
    promtool_test(tmp_path, config, series, exprs=alerts)


def test_a_declared_value_outside_its_keys_range_is_left_to_the_config(tmp_path: Path) -> None:
    """An availability written as a percentage (99.95, from a client older than the check in
    instrument()) made the fast-burn limit negative and paged a model failing 5% of its
    calls as if the budget were gone. The rules keep only what the key's range allows, and a
    fraction of a count is left out as well: the config's values judge both versions."""
    series = [*_serving("fraud", "1.0", 90),
              _declares("fraud", "1.0", "slo.availability", 99.95),
              _declares("fraud", "1.0", "predictions.max_versions", 0.5),
              _declares("fraud", "1.0", "latency.p99_seconds", 2)]
    series = [(name, values.replace("x40", "x90")) for name, values in series]
    exprs = [{"expr": version_objective(key), "eval_time": "30m", "exp_samples": [
        {"labels": f'{version_objective(key)}{{model="fraud", model_version="1.0"}}',
         "value": value}]}
        for key, value in (("slo.availability", 0.999), ("predictions.max_versions", 1),
                           ("latency.p99_seconds", 2))]
    alerts = [_alerts("InferwatchErrorBudgetBurnFast", "80m", [
        _firing("InferwatchErrorBudgetBurnFast", {"model": "fraud", "model_version": "1.0"},
                "critical")])]
    promtool_test(tmp_path, FROM_CODE, series, exprs=[*alerts, *exprs])
