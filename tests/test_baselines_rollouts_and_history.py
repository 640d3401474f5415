"""Adaptive baselines, judged by the real promtool on generated rules: ratios scraped out of
step, a rollout that changes the latency buckets, and how much history an alert needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import baseline_simulator as sim
from inferwatch.generate import render, rule_files
from inferwatch.generate.baselines import SIGNALS
from inferwatch.generate.config import from_dict

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
STEP = 300.0


def _only(*keys: str, **extra: Any) -> dict[str, Any]:
    """A config with only the baseline signals `keys` switched on (the run stays short)."""
    section: dict[str, Any] = {key: {"enabled": key in keys} for key in SIGNALS}
    for key, value in extra.items():
        section[key] = {**section[key], **value}
    return {"baselines": section}


def _baseline_rules(cfg_data: dict[str, Any], directory: Path) -> tuple[list[str], list[str]]:
    names = []
    for relative, text in rule_files(render(from_dict(cfg_data))).items():
        name = Path(relative).name
        if name.startswith("baseline-") and name.endswith(".yml"):
            (directory / name).write_text(text)
            names.append(name)
    ordered = sorted(names, key=lambda n: ("alerting" in n, n))
    groups = [g["name"] for name in ordered
              for g in yaml.safe_load((directory / name).read_text())["groups"]]
    return names, groups


def _promtool(directory: Path, cfg_data: dict[str, Any], series: dict[str, str],
              checks: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Every check over `series` scraped every 5m, the rules evaluated every 5m (as the
    baseline group is in production)."""
    names, groups = _baseline_rules(cfg_data, directory)
    test = {"rule_files": names, "evaluation_interval": "5m", "group_eval_order": groups,
            "tests": [{"interval": f"{int(STEP)}s",
                       "input_series": [{"series": s, "values": v} for s, v in series.items()],
                       "promql_expr_test": checks}]}
    path = directory / "case.yml"
    path.write_text(yaml.safe_dump(test, width=10**9))
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=300, cwd=directory)


def _at(seconds: float) -> str:
    return f"{int(seconds // 60)}m"


def _fires(alert: str, model: str, at: float) -> dict[str, Any]:
    firing = f'ALERTS{{alertstate="firing", alertname="{alert}", model="{model}"}}'
    return {"expr": f"group({firing})", "eval_time": _at(at),
            "exp_samples": [{"labels": "{}", "value": 1}]}


def _quiet(model: str, start: float, end: float, every: float = 1800) -> list[dict[str, Any]]:
    checks, t = [], start
    while t <= end:
        checks.append({"expr": f'ALERTS{{alertstate=~"firing|pending", model="{model}"}}',
                       "eval_time": _at(t), "exp_samples": []})
        t += every
    return checks


def _exists(expr: str, at: float) -> dict[str, Any]:
    return {"expr": f"count({expr})", "eval_time": _at(at),
            "exp_samples": [{"labels": "{}", "value": 1}]}


# --- a ratio scraped out of step ------------------------------------------------------------


@pytest.mark.integration
def test_a_missing_count_without_rows_does_not_blind_the_missing_rate_alert(
        tmp_path: Path) -> None:
    """At night the model takes no calls for half an hour, and one missing value is counted
    in a scrape whose rows were counted in an earlier one. The feature's ratio over that
    window is 1/0, +Inf: kept, it made the trailing mean Inf, and a sixfold rise of the
    missing rate five hours later went unseen for a day."""
    night = sim.DAY + 1 * sim.HOUR
    start = sim.DAY + 6 * sim.HOUR
    model = sim.Model("fraud", faults=(
        sim.Fault("quiet half hour", "", night, 0,
                  {"traffic": lambda hours: 0.0 if hours < 0.5 else 1.0}),
        sim.Fault("missing 0.5% -> 3%", "InferwatchMissingRateAnomaly", start, sim.HOUR,
                  {"missing": lambda _: 6.0}),
    ))
    series = sim.simulate(model, start + sim.HOUR + 600, STEP, seed=3)
    counter = sim.metric("inferwatch_feature_missing_total") + "{"
    amount = {k: v for k, v in series.items() if k.startswith(counter) and "amount" in k}
    series.update(sim.bump(amount, counter, night + 900, STEP))
    value = 'model_feature:inferwatch_baseline_missing:value_10m{feature="amount"}'
    checks = [
        *_quiet("fraud", sim.DAY, start - 600),
        # The window without rows is a gap, not an infinite rate.
        {"expr": f"{value} == +Inf", "eval_time": _at(night + 1200), "exp_samples": []},
        _fires("InferwatchMissingRateAnomaly", "fraud", start + sim.HOUR),
    ]
    result = _promtool(tmp_path, _only("missing"), series, checks)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


# --- a rollout with other latency buckets ---------------------------------------------------


NEW_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.075, 0.15, 0.3, 0.6, 1.2, 2.5, 5.0)


@pytest.mark.integration
def test_a_rollout_with_other_latency_buckets_keeps_the_latency_value_and_stays_quiet(
        tmp_path: Path) -> None:
    """Version 2 ships with latency buckets of its own and takes half of the calls for two
    hours, with the same latencies as version 1. Buckets summed across the versions are not
    cumulative (version 1's le="0.05" next to version 2's le="0.04"), and the quantile of the
    merged buckets jumped for the whole rollout: the recorded p99 must stay the p99 the
    model serves (about 0.2 s), and no latency alert may fire."""
    rollout = 8 * sim.HOUR
    seconds = rollout + 2 * sim.HOUR
    v1 = sim.Model("ranker", blip_chance=0.0, diurnal_amplitude=0.0, faults=(
        sim.Fault("half the calls go to version 2", "", rollout, 0,
                  {"traffic": lambda _: 0.5}),))
    series = sim.simulate(v1, seconds, STEP, seed=5)
    times = np.arange(0, seconds + STEP / 2, STEP)
    calls = np.where(times >= rollout,
                     np.random.default_rng(6).poisson(v1.calls_per_second * 0.5 * STEP,
                                                      len(times)), -1)
    series.update(sim.latency_histogram("ranker", "2", calls, v1.latency_median,
                                        v1.latency_spread, NEW_BUCKETS, seed=7))
    cfg = _only("latency", latency={"min_history": "2h", "baseline_window": "4h",
                                    "baseline_offset": "30m"})
    checks: list[dict[str, Any]] = []
    value = "model:inferwatch_baseline_latency:value_10m"
    for t in np.arange(rollout + 600, seconds + 1, 1200):
        checks += [
            _exists(f'{value}{{quantile="0.99"}}', t),
            {"expr": f'{value}{{quantile="0.99"}} > 0.3 or {value}{{quantile="0.99"}} < 0.13',
             "eval_time": _at(t), "exp_samples": []},
            {"expr": f'{value}{{quantile="0.5"}} > 0.065 or {value}{{quantile="0.5"}} < 0.038',
             "eval_time": _at(t), "exp_samples": []},
        ]
    checks += _quiet("ranker", 3 * sim.HOUR, seconds, every=1200)
    result = _promtool(tmp_path, cfg, series, checks)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


# --- how much history an alert needs --------------------------------------------------------


# (signals switched on, the fault, its short value and a level it reaches): a model-level
# signal counts its own values, a per-feature one the model's calls per second.
CANARY_FAULTS = {
    "predictions": (("predictions",), {"prediction_shift": lambda _: 1.15},
                    'model_output:inferwatch_baseline_predictions:value_10m{quantile="0.5"}',
                    0.4),
    "missing": (("missing", "traffic"), {"missing": lambda _: 6.0},
                'model_feature:inferwatch_baseline_missing:value_10m{feature="amount"}', 0.02),
}


@pytest.mark.integration
@pytest.mark.parametrize("signal", sorted(CANARY_FAULTS))
def test_an_hour_long_canary_yesterday_is_not_a_day_of_history(tmp_path: Path,
                                                               signal: str) -> None:
    """A model that ran as a one-hour canary yesterday at ten, and returns today at ten with
    other predictions (or six times the missing values of one feature). Its value was
    recorded a day ago, so the old guard let the alert judge today's values against a band
    made of twelve samples: it paged."""
    keys, changes, value, level = CANARY_FAULTS[signal]
    start = sim.DAY + 10 * sim.HOUR
    model = sim.Model("canary", diurnal_amplitude=0.0, faults=(
        sim.Fault("other values", "", start, 0, changes),))
    end = start + 2 * sim.HOUR
    series = sim.simulate(model, end, STEP, seed=8)
    series = sim.with_gap(series, 0, 10 * sim.HOUR, STEP, "canary")
    series = sim.with_gap(series, 11 * sim.HOUR, start, STEP, "canary")
    checks = [_exists(f"{value} > {level}", start + sim.HOUR),
              *_quiet("canary", start, end, 600)]
    result = _promtool(tmp_path, _only(*keys), series, checks)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.integration
def test_a_model_quiet_every_night_still_pages_on_a_shift(tmp_path: Path) -> None:
    """A model that takes no calls from eleven at night to seven in the morning (its
    rolling quantiles NaN, its values gaps) has a third of each day without a value: the
    history guard must still count its day as history, and its shift the next morning
    must fire."""
    start = sim.DAY + 9 * sim.HOUR
    model = sim.Model("office", faults=(
        sim.Fault("prediction p50 0.3 -> 0.45", "InferwatchPredictionShift", start, sim.HOUR,
                  {"prediction_shift": lambda _: 1.15}),))
    series = sim.simulate(model, start + sim.HOUR + 600, STEP, seed=9)
    series = sim.quiet_hours(series, "office", 0, 7 * sim.HOUR, STEP)
    series = sim.quiet_hours(series, "office", 23 * sim.HOUR, sim.DAY, STEP)
    checks = [*_quiet("office", 8 * sim.HOUR, start - 600),
              _fires("InferwatchPredictionShift", "office", start + sim.HOUR)]
    result = _promtool(tmp_path, _only("predictions"), series, checks)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
