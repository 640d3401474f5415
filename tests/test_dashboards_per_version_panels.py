"""Dashboard panels that read as what the alerts judge: per version during a canary, the
replica a drift alert needs, the features a drift alert leaves out, and MIG devices apart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from inferwatch.generate import dashboards
from inferwatch.generate.config import DEFAULT, Config, from_dict
from promtool_cases import assert_promtool_passes, write_generated_rules
from test_dashboard_schema import schema_errors
from test_generated_rules_and_panels import _selected

OVERVIEW, QUALITY = "model-overview.json", "model-quality.json"
SHADOW, RESOURCES = "champion-challenger.json", "resources.json"
JOB = 'job="inferwatch-model"'
EXPORTER = 'job="inferwatch-exporter"'


def _panel(cfg: Config, file: str, title: str) -> dict[str, Any]:
    dashboard = dashboards.render(cfg)[file]
    assert schema_errors(dashboard) == []
    found = [p for p in dashboard["panels"] if p.get("title") == title]
    assert len(found) == 1, [p.get("title") for p in dashboard["panels"]]
    return found[0]


def _series(name: str, model: str, version: str, values: str, instance: str = "a:9",
            job: str = JOB, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{job}, instance="{instance}", model="{model}", '
                      f'model_version="{version}"{extra}}}', "values": values}


def _labels(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _check(expr: str, samples: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
    return {"expr": _selected(expr.replace("$__rate_interval", "5m")), "eval_time": "10m",
            "exp_samples": [{"labels": _labels(**labels), "value": value}
                            for labels, value in samples]}


# --- 1. drift window rows: the replica the alert needs ----------------------------------------


def test_drift_window_rows_show_the_replica_the_drift_alert_judges(tmp_path: Path) -> None:
    """Replica a has 5000 rows, b was just started with 10: the drift alert still fires from
    a, but the panel drew the version at 10, far below the dashed minimum."""
    panel = _panel(DEFAULT, QUALITY, "Drift window rows")
    drawn = panel["targets"][0]["expr"]
    series = [
        _series("inferwatch_model_info", "fraud", "1", "1x60"),
        _series("inferwatch_model_info", "fraud", "1", "1x60", instance="b:9"),
        _series("inferwatch_drift_window_observations", "fraud", "1", "5000x60"),
        _series("inferwatch_drift_window_observations", "fraud", "1", "10x60", instance="b:9"),
        _series("inferwatch_feature_drift", "fraud", "1", "0.9x60", feature="age",
                method="psi"),
        _series("inferwatch_feature_drift_observations", "fraud", "1", "5000x60",
                feature="age"),
    ]
    assert_promtool_passes(
        tmp_path, series, rule_files=write_generated_rules(DEFAULT, tmp_path), exprs=[
            _check(drawn, [({"model": "fraud", "model_version": "1"}, 5000)]),
            # The alert the panel describes does fire on the same data.
            {"expr": 'count(ALERTS{alertname="InferwatchFeatureDrift", alertstate="firing"})',
             "eval_time": "45m", "exp_samples": [{"labels": "{}", "value": 1}]}])
    assert "one replica" in panel["description"]


# --- 2. worst feature drift by version leaves the sparse features out -------------------------


def _worst_drift(cfg: Config) -> str:
    # The first query: the others draw the drift alerts' thresholds.
    query = _panel(cfg, SHADOW, f"Worst feature drift by version ({cfg.drift.method})"
                   )["targets"][0]
    return query["expr"]


# Each example runs promtool: no shrinking, whose many runs would add nothing to a failure
# that names its inputs.
@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minimum=st.integers(2, 5000), dense=st.floats(0, 0.5), sparse=st.floats(0.6, 10))
def test_worst_feature_drift_leaves_out_the_features_too_sparse_for_the_alert(
        tmp_path_factory: Any, minimum: int, dense: float, sparse: float) -> None:
    """A feature with a handful of values drifts wildly from them: its drift set the worst
    line of the version while InferwatchFeatureDrift left the feature out."""
    cfg = from_dict({"drift": {"min_observations": minimum}})
    series = [
        _series("inferwatch_drift_window_observations", "fraud", "2", f"{minimum}x20"),
        _series("inferwatch_feature_drift", "fraud", "2", f"{dense}x20", feature="age",
                method="psi"),
        _series("inferwatch_feature_drift", "fraud", "2", f"{sparse}x20", feature="income",
                method="psi"),
        _series("inferwatch_feature_drift_observations", "fraud", "2", f"{minimum}x20",
                feature="age"),
        _series("inferwatch_feature_drift_observations", "fraud", "2", f"{minimum - 1}x20",
                feature="income"),
    ]
    assert_promtool_passes(tmp_path_factory.mktemp("worst"), series, exprs=[
        _check(_worst_drift(cfg), [({"model": "fraud", "model_version": "2"}, dense)])])


def test_worst_feature_drift_follows_each_models_own_minimum(tmp_path: Path) -> None:
    """ads has its own minimum of 50: its 60 values are judged and drawn; fraud keeps the
    default 1000, so its 60 values are left out as its alert leaves them out."""
    cfg = from_dict({"models": {"ads": {"drift": {"min_observations": 50}}}})
    series = [_series("inferwatch_model_info", m, "1", "1x20") for m in ("ads", "fraud")]
    for model in ("ads", "fraud"):
        series += [
            _series("inferwatch_drift_window_observations", model, "1", "5000x20"),
            _series("inferwatch_feature_drift", model, "1", "0.1x20", feature="age",
                    method="psi"),
            _series("inferwatch_feature_drift", model, "1", "3x20", feature="income",
                    method="psi"),
            _series("inferwatch_feature_drift_observations", model, "1", "5000x20",
                    feature="age"),
            _series("inferwatch_feature_drift_observations", model, "1", "60x20",
                    feature="income"),
        ]
    assert_promtool_passes(tmp_path, series, rule_files=write_generated_rules(cfg, tmp_path),
                           exprs=[_check(_worst_drift(cfg), [
                               ({"model": "ads", "model_version": "1"}, 3),
                               ({"model": "fraud", "model_version": "1"}, 0.1)])])


def test_worst_feature_drift_keeps_every_feature_of_a_target_without_the_count(
        tmp_path: Path) -> None:
    """An older release exports no per-feature count: nothing is left out, as the alert."""
    series = [
        _series("inferwatch_feature_drift", "fraud", "1", "0.1x20", feature="age",
                method="psi"),
        _series("inferwatch_feature_drift", "fraud", "1", "0.8x20", feature="income",
                method="psi"),
    ]
    assert_promtool_passes(tmp_path, series, exprs=[
        _check(_worst_drift(DEFAULT), [({"model": "fraud", "model_version": "1"}, 0.8)])])


# --- 3. overview and quality panels per version -----------------------------------------------

CANARY = [
    _series("inferwatch_errors_total", "fraud", "1", "0+60x20", error_type="ValueError"),
    _series("inferwatch_errors_total", "fraud", "2", "0+600x20", instance="b:9",
            error_type="ValueError"),
    _series("inferwatch_batch_size_sum", "fraud", "1", "0+600x20"),
    _series("inferwatch_batch_size_count", "fraud", "1", "0+60x20"),
    _series("inferwatch_batch_size_sum", "fraud", "2", "0+60x20", instance="b:9"),
    _series("inferwatch_batch_size_count", "fraud", "2", "0+60x20", instance="b:9"),
    _series("inferwatch_requests_in_flight", "fraud", "1", "3x20"),
    _series("inferwatch_requests_in_flight", "fraud", "2", "5x20"),
    _series("inferwatch_outcome_delay_seconds_bucket", "fraud", "1", "0+60x20", le="10"),
    _series("inferwatch_outcome_delay_seconds_bucket", "fraud", "1", "0+60x20", le="+Inf"),
    _series("inferwatch_outcome_delay_seconds_bucket", "fraud", "2", "0+0x20", le="10",
            instance="b:9"),
    _series("inferwatch_outcome_delay_seconds_bucket", "fraud", "2", "0+60x20", le="100",
            instance="b:9"),
    _series("inferwatch_outcome_delay_seconds_bucket", "fraud", "2", "0+60x20", le="+Inf",
            instance="b:9"),
    _series("inferwatch_input_errors_total", "fraud", "2", "0+60x20", instance="b:9",
            reason="missing_column"),
]
V1, V2 = {"model": "fraud", "model_version": "1"}, {"model": "fraud", "model_version": "2"}


def test_overview_errors_batch_size_and_in_flight_are_per_version(tmp_path: Path) -> None:
    """A canary failing 10 calls a second beside a stable version failing 1: the Errors by
    type panel drew one line of 11 for the model, and Batch size a mean of both versions."""
    errors = _panel(DEFAULT, OVERVIEW, "Errors by type")["targets"][0]
    batch = _panel(DEFAULT, OVERVIEW, "Batch size")["targets"]
    flight = _panel(DEFAULT, OVERVIEW, "In-flight calls")["targets"][0]
    for query in (errors, *batch, flight):
        assert "{{model_version}}" in query["legendFormat"], query
    assert_promtool_passes(tmp_path, CANARY, exprs=[
        _check(errors["expr"], [({**V1, "error_type": "ValueError"}, 1),
                                ({**V2, "error_type": "ValueError"}, 10)]),
        _check(batch[0]["expr"], [(V1, 10), (V2, 1)]),
        _check(flight["expr"], [({**V1, "instance": "a:9"}, 3),
                                ({**V2, "instance": "a:9"}, 5)]),
    ])


def test_quality_counters_and_label_delay_are_per_version(tmp_path: Path) -> None:
    """A canary whose outcomes arrive late and whose inputs miss a column: the model-wide
    lines blended both into the stable version's, with no version in the legend."""
    delay = _panel(DEFAULT, QUALITY, "Label delay")["targets"][0]
    inputs = _panel(DEFAULT, QUALITY, "Input errors")["targets"][0]
    for title in ("Invalid predictions by reason", "Actions taken", "Unseen categories",
                  "Input errors", "Outcomes by result", "Label delay", "Regression error",
                  "Unmatched outcomes"):
        for query in _panel(DEFAULT, QUALITY, title)["targets"]:
            assert "{{model_version}}" in query["legendFormat"], title
            assert re.search(r"by \(model, model_version\b", query["expr"]), title
    assert_promtool_passes(tmp_path, CANARY, exprs=[
        _check(delay["expr"], [(V1, 5), (V2, 55)]),
        _check(inputs["expr"], [({**V2, "reason": "missing_column"}, 1)]),
    ])


# --- 4. MIG devices apart in the GPU memory panels --------------------------------------------


def _gpu(name: str, values: str, **mig: str) -> dict[str, str]:
    labels = "".join(f', {k}="{v}"' for k, v in mig.items())
    return {"series": f'{name}{{{EXPORTER}, instance="e:9", gpu="0", uuid="GPU-1"{labels}}}',
            "values": values}


def test_gpu_memory_panels_tell_mig_devices_apart(tmp_path: Path) -> None:
    """A MIG-enabled GPU and its two MIG devices: every line was named "e:9 gpu 0", so the
    full device could not be told from the whole GPU or its sibling."""
    used = _panel(DEFAULT, RESOURCES, "GPU memory")["targets"]
    legends = {t["legendFormat"] for t in used}
    assert all("{{device}}" in legend for legend in legends), legends
    mig = [("1", "0"), ("2", "0")]
    series = [_gpu("inferwatch_gpu_memory_used_bytes", "40x20"),
              *(_gpu("inferwatch_gpu_memory_used_bytes", "10x20", gpu_instance=g,
                     compute_instance=c) for g, c in mig)]
    whole = {"instance": "e:9", "gpu": "0", "uuid": "GPU-1", "job": "inferwatch-exporter"}
    assert_promtool_passes(tmp_path, series, exprs=[_check(used[0]["expr"], [
        ({"__name__": "inferwatch_gpu_memory_used_bytes", **whole, "device": "0"}, 40),
        *(({"__name__": "inferwatch_gpu_memory_used_bytes", **whole, "gpu_instance": g,
            "compute_instance": c, "device": f"0/{g}/{c}"}, 10) for g, c in mig)])])
    ratio = _panel(DEFAULT, RESOURCES, "GPU memory used")["targets"][0]
    assert "{{device}}" in ratio["legendFormat"]


def test_accuracy_by_version_draws_a_version_that_is_never_right(tmp_path: Path) -> None:
    """A canary wrong on every outcome has no `result="correct"` series: a plain ratio drew
    no line at all for the very case the panel is for. It is drawn at 0."""
    panel = _panel(DEFAULT, SHADOW, f"Accuracy by version ({DEFAULT.accuracy.window})")
    drawn = panel["targets"][0]["expr"]
    series = [
        _series("inferwatch_model_info", "fraud", "1", "1x60"),
        _series("inferwatch_model_info", "fraud", "2", "1x60"),
        _series("inferwatch_outcomes_total", "fraud", "1", "0+2x60", result="correct"),
        _series("inferwatch_outcomes_total", "fraud", "1", "0+2x60", result="incorrect"),
        _series("inferwatch_outcomes_total", "fraud", "2", "0+2x60", result="incorrect"),
    ]
    assert_promtool_passes(
        tmp_path, series, rule_files=write_generated_rules(DEFAULT, tmp_path), exprs=[{
            "expr": _selected(drawn.replace("$__rate_interval", "5m")), "eval_time": "59m",
            "exp_samples": [
                {"labels": _labels(model="fraud", model_version="1"), "value": 0.5},
                {"labels": _labels(model="fraud", model_version="2"), "value": 0}]}])
