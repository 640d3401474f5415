"""InferwatchRegressionErrorRise: a regression model's live mean absolute error against its
reference's, through the real promtool, the config that sets its bounds, the quality
dashboard's bound line and the status page's flag, which must judge as the rule does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config_errors import error_for
from inferwatch.core.state import ModelState
from inferwatch.generate.config import from_dict
from inferwatch.generate.dashboards_quality import model_quality
from inferwatch.report.flags import FIRING, NO_DATA, OK, Thresholds
from inferwatch.report.live import from_state
from promtool_cases import assert_promtool_passes, write_generated_rules

ALERT = "InferwatchRegressionErrorRise"
EVAL = "80m"


def _regressor(model: str, *, per_minute: int, error: float, validated: float | None,
               version: str = "1", instance: str = "a:1") -> list[dict[str, str]]:
    """The series of a regression model joining `per_minute` outcomes a minute, each off by
    `error`, validated at `validated` (None: its reference holds no validation error)."""
    labels = (f'job="inferwatch-model", instance="{instance}", model="{model}", '
              f'model_version="{version}"')
    series = [
        {"series": f"inferwatch_model_info{{{labels}, task=\"regression\"}}",
         "values": "1x90"},
        {"series": f"inferwatch_outcome_error_count{{{labels}}}",
         "values": f"0+{per_minute}x90"},
        {"series": f"inferwatch_outcome_error_sum{{{labels}}}",
         "values": f"0+{per_minute * error:g}x90"},
    ]
    if validated is not None:
        series.append({"series": f"inferwatch_reference_validation{{{labels}, "
                                 f"metric=\"mean_absolute_error\"}}",
                       "values": f"{validated:g}x90"})
    return series


def _firing(tmp_path: Path, config: dict[str, Any], series: list[dict[str, str]],
            expected: list[dict[str, Any]]) -> None:
    """`expected` alerts of the rules generated from `config` at EVAL: their labels through
    ALERTS, and where a case gives annotations (of every alert: promtool compares all of
    them), those too."""
    rules = write_generated_rules(from_dict(config), tmp_path,
                                  only=("recording-rules.yml", "alerting-rules.yml"))
    firing = [{"labels": "ALERTS{" + ", ".join(
        f'{name}="{value}"' for name, value in sorted(
            {**alert["exp_labels"], "alertname": ALERT, "alertstate": "firing"}.items()))
        + "}", "value": 1} for alert in expected]
    checked = [alert for alert in expected if "exp_annotations" in alert]
    alerts = [{"eval_time": EVAL, "alertname": ALERT, "exp_alerts": checked}] if checked else []
    assert_promtool_passes(tmp_path, series, rule_files=rules, alerts=alerts, exprs=[
        {"eval_time": EVAL, "expr": f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}',
         "exp_samples": firing}])


def _fires(model: str, version: str = "1", **annotations: str) -> dict[str, Any]:
    alert: dict[str, Any] = {"exp_labels": {"severity": "warning", "model": model,
                                            "model_version": version}}
    if annotations:
        alert["exp_annotations"] = annotations
    return alert


# --- the rule, through promtool -------------------------------------------------------------

def test_ten_times_the_reference_error_fires_and_the_ratio_comes_from_the_config(
        tmp_path: Path) -> None:
    series = _regressor("eta", per_minute=100, error=4.0, validated=0.4)
    _firing(tmp_path, {}, series, [_fires("eta")])
    _firing(tmp_path, {"accuracy": {"max_error_ratio": 20}}, series, [])


def test_the_ceiling_judges_models_without_a_reference_and_below_the_ratio(
        tmp_path: Path) -> None:
    # max_error 2.5: a model without a validation error off by 4 pages; one off by 2 does
    # not; one validated at 2.0 (bound 3.0 by the ratio) off by 2.8 pages on the ceiling.
    series = [*_regressor("price", per_minute=100, error=4.0, validated=None),
              *_regressor("rent", per_minute=100, error=2.0, validated=None, instance="a:2"),
              *_regressor("eta", per_minute=100, error=2.8, validated=2.0, instance="a:3")]
    bound = (" over the outcomes of the last 1h, above its bound ({}ceiling 2.5; windows of "
             "at least 100 outcomes).")
    note = (' Reads series matching {job="inferwatch-model"} (selectors.model in the '
            "inferwatch config; regenerate the rules after changing it).")
    def annotations(model: str, error: str, validation: str) -> dict[str, str]:
        return {"description": f"{model} 1 was off by {error} on average (mean absolute "
                               f"error){bound.format(validation)}{note}",
                "summary": f"Mean absolute error of {model} 1 rose",
                "runbook_url": "https://github.com/inferwatch/inferwatch/blob/main/docs/"
                               "runbooks.md#inferwatchregressionerrorrise",
                "dashboard_url": f"http://localhost:3000/d/inferwatch-quality?var-model={model}"}

    _firing(tmp_path, {"accuracy": {"max_error": 2.5}}, series, [
        _fires("eta", **annotations("eta", "2.8", "1.5x its validation error of 2; ")),
        _fires("price", **annotations("price", "4", ""))])


def test_each_models_own_ratio_and_ceiling(tmp_path: Path) -> None:
    # eta may reach 20x its reference; price has a ceiling of its own, rent has none.
    config = {"models": {"eta": {"accuracy": {"max_error_ratio": 20}},
                         "price": {"accuracy": {"max_error": 3}}}}
    series = [*_regressor("eta", per_minute=100, error=4.0, validated=0.4),
              *_regressor("taxi", per_minute=100, error=4.0, validated=0.4, instance="a:2"),
              *_regressor("price", per_minute=100, error=4.0, validated=None, instance="a:3"),
              *_regressor("rent", per_minute=100, error=4.0, validated=None, instance="a:4")]
    _firing(tmp_path, config, series, [_fires("price"), _fires("taxi")])


def test_a_models_own_minimum_of_outcomes(tmp_path: Path) -> None:
    series = _regressor("eta", per_minute=1, error=4.0, validated=0.4)
    _firing(tmp_path, {}, series, [])
    _firing(tmp_path, {"models": {"eta": {"accuracy": {"min_outcomes": 30}}}}, series,
            [_fires("eta")])


def test_a_shadow_version_never_fires(tmp_path: Path) -> None:
    series = _regressor("eta", per_minute=100, error=4.0, validated=0.4, version="2")
    series[0] = {"series": series[0]["series"].replace('task="regression"',
                                                       'task="regression", role="shadow"'),
                 "values": "1x90"}
    _firing(tmp_path, {}, series, [])


# --- the config -----------------------------------------------------------------------------

@pytest.mark.parametrize("data, key, problem", [
    ({"accuracy": {"max_error_ratio": 1}}, "accuracy.max_error_ratio", "must be more than 1"),
    ({"accuracy": {"max_error_ratio": 0.5}}, "accuracy.max_error_ratio", "must be more than 1"),
    ({"accuracy": {"max_error": 0}}, "accuracy.max_error", "must be more than zero"),
    ({"accuracy": {"max_error": -1}}, "accuracy.max_error", "must be more than zero"),
    ({"models": {"eta": {"accuracy": {"max_error_ratio": 1}}}},
     "models.eta.accuracy.max_error_ratio", "must be more than 1"),
    ({"models": {"eta": {"accuracy": {"max_error": None}}}}, "models.eta.accuracy.max_error",
     "must be a number here"),
])
def test_bounds_that_cannot_work_are_refused_by_their_key(data: dict[str, Any], key: str,
                                                          problem: str) -> None:
    refused = error_for(data)
    assert (refused.key, refused.problem.startswith(problem)) == (key, True), str(refused)


def test_the_bounds_are_accepted_at_the_top_and_per_model() -> None:
    cfg = from_dict({"accuracy": {"max_error_ratio": 1.01, "max_error": 0.5},
                     "models": {"eta": {"accuracy": {"max_error_ratio": 3, "max_error": 2}}}})
    assert (cfg.accuracy.max_error_ratio, cfg.accuracy.max_error) == (1.01, 0.5)
    assert dict(cfg.models["eta"].values) == {"accuracy.max_error_ratio": 3.0,
                                              "accuracy.max_error": 2.0}


def test_the_ratio_error_says_what_it_needs() -> None:
    message = str(error_for({"accuracy": {"max_error_ratio": 1}}))
    assert message == ("accuracy.max_error_ratio: must be more than 1 (a factor of the "
                       "reference value), got 1.0")


# --- the dashboard --------------------------------------------------------------------------

def _regression_panel(data: dict[str, Any]) -> dict[str, Any]:
    pending = list(model_quality(from_dict(data))["panels"])
    while pending:
        panel = pending.pop(0)
        pending[:0] = panel.get("panels", [])
        if panel["title"] == "Regression error":
            return panel
    raise AssertionError("no Regression error panel")


def test_the_regression_panel_draws_the_mean_and_the_alerts_bound() -> None:
    panel = _regression_panel({"accuracy": {"max_error_ratio": 1.75, "max_error": 6.5}})
    legends = [t["legendFormat"] for t in panel["targets"]]
    assert legends[2:] == ["mean {{model}} {{model_version}} over 1h",
                           "bound {{model}} {{model_version}}"]
    mean, bound = (t["expr"] for t in panel["targets"][2:])
    assert "rate(inferwatch_outcome_error_sum" in mean
    assert "rate(inferwatch_outcome_error_count" in mean
    assert 'metric="mean_absolute_error"' in bound
    assert "* 1.75" in bound and "+ 6.5" in bound
    assert "1.75" in panel["description"] and "6.5" in panel["description"]


# --- the status page judges as the rule does ------------------------------------------------

def _flag(state: ModelState, config: dict[str, Any]) -> Any:
    thresholds = Thresholds.for_model(state.model, from_dict(config))
    report = from_state(state, None, 100.0, thresholds=thresholds)
    return {flag.alert: flag for flag in report.flags}.get(ALERT)


def _state(validated: float | None, errors: list[float]) -> ModelState:
    # A young process: its counts since it started are the window's, as rate() reads them.
    state = ModelState("eta", "1", loaded_at=0.0)
    if validated is not None:
        state.validation = {"mean_absolute_error": validated}
    if errors:
        state.histogram("inferwatch_outcome_error", (), (0.1, 1.0, 10.0)).observe(
            np.asarray(errors, dtype=float))
    return state


@given(validated=st.one_of(st.none(), st.floats(0.01, 100)),
       error=st.floats(0, 1000), outcomes=st.integers(0, 300),
       ratio=st.floats(1.01, 10), ceiling=st.one_of(st.none(), st.floats(0.01, 1000)))
def test_the_flag_judges_as_the_rule(validated: float | None, error: float, outcomes: int,
                                     ratio: float, ceiling: float | None) -> None:
    config: dict[str, Any] = {"accuracy": {"max_error_ratio": ratio}}
    if ceiling is not None:
        config["accuracy"]["max_error"] = ceiling
    flag = _flag(_state(validated, [error] * outcomes), config)
    bounds = ([validated * ratio] if validated is not None else []) + (
        [ceiling] if ceiling is not None else [])
    if not bounds:
        assert flag is None  # the rule has no bound to compare with: quiet, no flag
        return
    if outcomes == 0 and validated is None:
        assert flag is None  # nothing joined, no reference: no series for the rule
        return
    assert flag is not None
    assert flag.threshold == pytest.approx(min(bounds))
    if outcomes < 100:
        assert flag.state == NO_DATA, flag.detail
        return
    # The mean of the errors summed in floating point, as the exporter's _sum and the rule's
    # rate(sum) / rate(count) read it: an error equal to the bound may sum a hair above it.
    assert flag.value == pytest.approx(error)
    assert flag.state == (FIRING if flag.value > min(bounds) else OK), flag.detail


def test_a_classifier_has_no_regression_flag() -> None:
    state = ModelState("fraud", "1", loaded_at=0.0)
    state.validation = {"accuracy": 0.97}
    state.inc("inferwatch_outcomes_total", ("correct",), 500)
    assert _flag(state, {"accuracy": {"max_error": 1}}) is None


def test_a_window_the_ring_keeps_no_errors_of_is_no_data() -> None:
    """A process older than the window: the ring's sample at the window's start holds no
    error totals, so the page says so rather than read the errors since the start."""
    from inferwatch.core.history import History

    state = _state(0.4, [4.0] * 500)
    state.loaded_at = 0.0
    history = History(interval_seconds=10, span_seconds=4 * 3600)
    history.record([state], now=3 * 3600.0)
    thresholds = Thresholds.for_model("eta", from_dict({}))
    report = from_state(state, history, 5 * 3600.0 - 60, thresholds=thresholds)
    flag = {f.alert: f for f in report.flags}[ALERT]
    assert flag.state == NO_DATA, flag.detail
    if "inferwatch_outcome_error_sum" in history.samples(state.key)[0].totals:
        assert "on 0 outcomes" in flag.detail  # none joined since the sample
    else:
        assert "keeps no error totals: see Prometheus" in flag.detail
