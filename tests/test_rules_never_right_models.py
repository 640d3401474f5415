"""Generated alerting and recording rules on series users really produce, through the real
promtool: models that are never right, shadows that beat a champion that never is, and the
other cases where an alert must fire (or stay quiet) as its runbook says."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_rules_semantics_edges import promtool_test, quiet

pytestmark = pytest.mark.integration

MODEL = 'job="inferwatch-model", instance="m1:8000"'
RUNBOOK = "https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md"
READS = (' Reads series matching {job="inferwatch-model"} (selectors.model in the inferwatch '
         "config; regenerate the rules after changing it).")


def annotations(alert: str, dashboard: str, summary: str, description: str) -> dict[str, str]:
    return {"summary": summary, "description": description + READS,
            "runbook_url": f"{RUNBOOK}#{alert.lower()}",
            "dashboard_url": f"http://localhost:3000/d/inferwatch-{dashboard}?var-model=fraud"}


def _series(name: str, labels: str, values: str) -> tuple[str, str]:
    return f"{name}{{{MODEL}, {labels}}}", values


# --- ratios whose numerator has no series yet -------------------------------------------------


def test_accuracy_drop_fires_for_a_model_that_is_never_right(tmp_path: Path) -> None:
    """The exporter counts `result="correct"` only once a prediction was right: a model that
    is wrong on every outcome has no such series, and its accuracy must read 0, not nothing."""
    series = [_series("inferwatch_model_info", 'model="fraud", model_version="1"', "1+0x150"),
              _series("inferwatch_outcomes_total",
                      'model="fraud", model_version="1", result="incorrect"', "0+10x150")]
    promtool_test(tmp_path, {}, series, alerts=[{
        "eval_time": "140m", "alertname": "InferwatchAccuracyDrop",
        "exp_alerts": [{"exp_labels": {"severity": "warning", "model": "fraud",
                                       "model_version": "1"},
                        "exp_annotations": annotations(
                            "InferwatchAccuracyDrop", "quality", "Accuracy of fraud 1 dropped",
                            "fraud 1 was right in 0% of the outcomes of the last 1h, below 0.9 "
                            "(windows of at least 100 outcomes).")}]}],
        exprs=[{"expr": "model:inferwatch_outcomes:accuracy_rate1h", "eval_time": "140m",
                "exp_samples": [{"labels": 'model:inferwatch_outcomes:accuracy_rate1h'
                                           '{model="fraud", model_version="1"}',
                                 "value": 0}]}])


def test_accuracy_drop_stays_quiet_for_a_model_that_is_always_right(tmp_path: Path) -> None:
    series = [_series("inferwatch_model_info", 'model="fraud", model_version="1"', "1+0x150"),
              _series("inferwatch_outcomes_total",
                      'model="fraud", model_version="1", result="correct"', "0+10x150")]
    promtool_test(tmp_path, {}, series, alerts=quiet("InferwatchAccuracyDrop", "140m"),
                  exprs=[{"expr": "model:inferwatch_outcomes:accuracy_rate1h",
                          "eval_time": "140m",
                          "exp_samples": [{"labels": 'model:inferwatch_outcomes:accuracy_rate1h'
                                                     '{model="fraud", model_version="1"}',
                                           "value": 1}]}])


def test_shadow_better_fires_when_the_champion_is_never_right(tmp_path: Path) -> None:
    """Every shared outcome: the champion wrong, the shadow right. The champion has no
    `champion_result="correct"` series at all, and that is the clearest case for promotion."""
    labels = 'model="fraud", model_version="2", champion_version="1"'
    series = [_series("inferwatch_model_info", 'model="fraud", model_version="2", role="shadow"',
                      "1+0x420"),
              _series("inferwatch_shadow_outcomes_total",
                      f'{labels}, champion_result="incorrect", shadow_result="correct"',
                      "0+10x420")]
    promtool_test(tmp_path, {}, series, alerts=[{
        "eval_time": "400m", "alertname": "InferwatchShadowBetter",
        "exp_alerts": [{"exp_labels": {"severity": "info", "model": "fraud",
                                       "model_version": "2", "champion_version": "1"},
                        "exp_annotations": annotations(
                            "InferwatchShadowBetter", "shadow",
                            "Shadow model fraud 2 is right more often than fraud 1",
                            "On the outcomes both saw over 6h (at least 200), shadow model "
                            "fraud 2 was right 100% more often than its champion fraud 1 "
                            "(threshold 0.01): a candidate for promotion.")}]}])
