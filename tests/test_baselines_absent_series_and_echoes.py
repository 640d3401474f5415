"""Adaptive baselines against what the exporter does not expose and what the seasonal model
remembers, judged by the real promtool on generated rules: a feature never missing before,
a class a new version never predicts, and a change or an incident seen again a day later."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from test_baselines_history_gaps import _baseline_rules, _only, _run

STEP = 300.0  # scraped, and evaluated, every 5m as the baseline group is
HOUR = 3600.0
JOB = 'job="inferwatch-model"'


def _series(metric: str, **labels: str) -> str:
    inner = ", ".join([JOB] + [f"{key}={json.dumps(value)}" for key, value in labels.items()])
    return f"{metric}{{{inner}}}"


def _counter(rates: list[float], start: float = 0.0) -> str:
    """A counter's samples, one per step: `rates` are its per-second rates step by step."""
    values = [start]
    for rate in rates:
        values.append(values[-1] + rate * STEP)
    return " ".join(f"{value:.3f}" for value in values)


def _steps(hours: float) -> int:
    return int(hours * HOUR / STEP)


def _at(seconds: float) -> str:
    return f"{int(seconds // 60)}m"


def _firing(alert: str, at: float, **labels: str) -> dict[str, Any]:
    matchers = "".join(f', {key}="{value}"' for key, value in labels.items())
    return {"expr": f'group(ALERTS{{alertstate="firing", alertname="{alert}"{matchers}}})',
            "eval_time": _at(at), "exp_samples": [{"labels": "{}", "value": 1}]}


def _quiet(alert: str, start: float, end: float, every: float = 900) -> list[dict[str, Any]]:
    checks, t = [], start
    while t <= end:
        checks.append({"expr": f'ALERTS{{alertname="{alert}", alertstate="firing"}}',
                       "eval_time": _at(t), "exp_samples": []})
        t += every
    return checks


def _check(tmp_path: Path, cfg: dict[str, Any], series: dict[str, str],
           checks: list[dict[str, Any]]) -> None:
    names, groups = _baseline_rules(cfg, tmp_path)
    result = _run(tmp_path, names, groups, series, STEP, checks, evaluation="5m")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


# --- a feature that never counted a missing or out-of-range value ---------------------------

BEFORE, AFTER = 26.0, 3.0  # hours of history, then of the fault


@pytest.mark.integration
@pytest.mark.parametrize("key", ["missing", "out_of_range"])
@pytest.mark.parametrize("gauge", [
    ("inferwatch_feature_drift_observations", {}),
    # An exporter from before the observations gauge has the drift scores alone.
    ("inferwatch_feature_drift", {"method": "psi"}),
])
def test_a_feature_without_a_counter_reads_zero_and_pages_when_it_starts_counting(
        tmp_path: Path, key: str, gauge: tuple[str, dict[str, str]]) -> None:
    """The exporter creates inferwatch_feature_missing_total (and _out_of_range_total) at a
    feature's first such value. A feature clean for a day had no ratio at all, so no
    history: when 3% of its rows went missing its alert stayed blocked by the history
    guard until the fault itself was the baseline. Its ratio reads 0 while the model
    checks it (the drift gauges every feature of the reference has), and it pages."""
    counter = {"missing": "inferwatch_feature_missing_total",
               "out_of_range": "inferwatch_feature_out_of_range_total"}[key]
    alert = {"missing": "InferwatchMissingRateAnomaly",
             "out_of_range": "InferwatchOutOfRangeAnomaly"}[key]
    steps, fault = _steps(BEFORE + AFTER), _steps(BEFORE)
    base = {"model": "m", "model_version": "1", "instance": "m1:8000"}
    name, extra = gauge
    series = {
        _series("inferwatch_model_info", **base): f"1x{steps}",
        _series("inferwatch_requests_total", outcome="ok", **base): _counter([10.0] * steps),
        _series("inferwatch_batch_size_sum", **base): _counter([10.0] * steps),
        _series("inferwatch_batch_size_count", **base): _counter([10.0] * steps),
        # "clean" counts nothing for a day: no series, then 3% of rows from the fault on.
        _series(counter, feature="clean", **base):
            f"_x{fault} " + _counter([0.3] * (steps - fault), start=1),
        # "quiet" never counts anything.
    }
    for feature in ("clean", "quiet"):
        series[_series(name, feature=feature, **extra, **base)] = f"40x{steps}"
    value = f"model_feature:inferwatch_baseline_{key}:value_10m"
    checks = [
        {"expr": value, "eval_time": _at(20 * HOUR),
         "exp_samples": [{"labels": f'{value}{{model="m", feature="{feature}"}}', "value": 0}
                         for feature in ("clean", "quiet")]},
        _firing(alert, (BEFORE + AFTER) * HOUR - STEP, model="m", feature="clean"),
        {"expr": f'ALERTS{{alertname="{alert}", feature="quiet"}}',
         "eval_time": _at((BEFORE + AFTER) * HOUR - STEP), "exp_samples": []},
    ]
    _check(tmp_path, _only(key), series, checks)


# --- a class the new version never predicts -------------------------------------------------


@pytest.mark.integration
def test_a_class_the_new_version_never_predicts_reads_zero_and_pages(tmp_path: Path) -> None:
    """Version 1 predicts class "1" for 20% of calls; version 2, deployed after a day,
    never does, so its counter for "1" is never created. The share of "1" vanished rather
    than fell to 0, class "0" going from 80% to 100% stayed inside its band, and the
    collapse went unseen. A class with a share within the baseline window reads 0."""
    history, after = _steps(26), _steps(2)
    steps = history + after
    series: dict[str, str] = {}
    for version, first, last, classes in (("1", 0, history, {"0": 8.0, "1": 2.0}),
                                          ("2", history, steps, {"0": 10.0})):
        base = {"model": "fraud", "model_version": version, "instance": "m1:8000"}
        before, during = f"_x{first} " if first else "", last - first
        after_it = f" _x{steps - last}" if steps > last else ""
        series[_series("inferwatch_model_info", **base)] = f"{before}1x{during - 1}{after_it}"
        series[_series("inferwatch_requests_total", outcome="ok", **base)] = (
            before + _counter([10.0] * (during - 1)) + after_it)
        for name, rate in classes.items():
            series[_series("inferwatch_predicted_class_total", **{"class": name}, **base)] = (
                before + _counter([rate] * (during - 1)) + after_it)
    value = "model_class:inferwatch_baseline_classes:value_10m"
    checks = [
        {"expr": f'{value}{{class="1"}}', "eval_time": _at(27 * HOUR),
         "exp_samples": [{"labels": f'{value}{{model="fraud", class="1"}}', "value": 0}]},
        _firing("InferwatchClassMixShift", 27 * HOUR + 55 * 60, model="fraud", **{"class": "1"}),
    ]
    _check(tmp_path, _only("classes"), series, checks)


# --- a change, or an incident, seen again the next day --------------------------------------


def _noisy_traffic(hours: float, rate: Any, seed: int) -> dict[str, str]:
    """One model's calls, `rate(hour)` calls per second with 2% noise."""
    noise = random.Random(seed)
    steps = _steps(hours)
    rates = [rate(i * STEP / HOUR) * (1 + noise.uniform(-0.02, 0.02)) for i in range(steps)]
    base = {"model": "m", "model_version": "1", "instance": "m1:8000"}
    return {_series("inferwatch_model_info", **base): f"1x{steps}",
            _series("inferwatch_requests_total", outcome="ok", **base): _counter(rates)}


@pytest.mark.integration
def test_a_launch_that_persists_pages_once_and_not_again_a_day_later(tmp_path: Path) -> None:
    """Traffic steps from 10 to 13 calls per second at 26h and stays there. It pages on
    the day, and becomes the baseline. The seasonal value (yesterday's 13) plus the
    residual's trailing mean (+3 against the day before) counted the step twice: from 51h
    the band sat around 16 and the model paged again for four hours."""
    alert = "InferwatchTrafficAnomaly"
    series = _noisy_traffic(56, lambda hour: 13.0 if hour >= 26 else 10.0, seed=2)
    checks = [_firing(alert, 27 * HOUR, model="m"), *_quiet(alert, 33 * HOUR, 56 * HOUR)]
    _check(tmp_path, _only("traffic"), series, checks)


@pytest.mark.integration
def test_an_incident_yesterday_is_not_todays_expectation(tmp_path: Path) -> None:
    """Traffic halves for one hour at 26h, then is normal again, and normal the next day.
    The seasonal value of 50h was the incident's hour: today's normal traffic sat above
    that band and paged. An hour whose alert was pending or firing is no profile."""
    alert = "InferwatchTrafficAnomaly"
    series = _noisy_traffic(53, lambda hour: 5.0 if 26 <= hour < 27 else 10.0, seed=1)
    checks = [_firing(alert, 27 * HOUR, model="m"), *_quiet(alert, 28 * HOUR, 53 * HOUR)]
    _check(tmp_path, _only("traffic"), series, checks)
