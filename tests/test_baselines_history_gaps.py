"""Adaptive baselines on odd but real histories: gaps, restarts, new series, judged by the
real promtool on generated rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import baseline_simulator as sim
from inferwatch.generate import render, rule_files
from inferwatch.generate.baselines import SIGNALS
from inferwatch.generate.config import from_dict

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _only(*keys: str, **extra: Any) -> dict[str, Any]:
    """A config with only the baseline signals `keys` switched on (the run stays short)."""
    section: dict[str, Any] = {key: {"enabled": key in keys} for key in SIGNALS}
    for key, value in extra.items():
        section[key] = {**section[key], **value} if key in SIGNALS else value
    return {"baselines": section}


def _baseline_rules(cfg_data: dict[str, Any], directory: Path) -> tuple[list[str], list[str]]:
    """The baseline rule files of `cfg_data` in `directory`, and their group order."""
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


def _run(directory: Path, names: list[str], groups: list[str], series: dict[str, str],
         step: float, checks: list[dict[str, Any]],
         evaluation: str = "10m") -> subprocess.CompletedProcess[str]:
    test = {"rule_files": names, "evaluation_interval": evaluation, "group_eval_order": groups,
            "tests": [{"interval": f"{int(step)}s",
                       "input_series": [{"series": s, "values": v} for s, v in series.items()],
                       "promql_expr_test": checks}]}
    path = directory / "case.yml"
    path.write_text(yaml.safe_dump(test, width=10**9))
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=300, cwd=directory)


def _quiet(model: str, start: float, end: float, every: float = 1800) -> list[dict[str, Any]]:
    """Checks that no alert of `model` fires from `start` to `end`."""
    checks, t = [], start
    while t <= end:
        checks.append({"expr": f'ALERTS{{alertstate="firing", model="{model}"}}',
                       "eval_time": f"{int(t // 60)}m", "exp_samples": []})
        t += every
    return checks


# --- a gap a day ago --------------------------------------------------------------------------


@pytest.mark.integration
def test_an_outage_yesterday_does_not_page_at_the_same_hour_today(tmp_path: Path) -> None:
    """A model down for two hours at yesterday's peak has no seasonal value at today's peak.
    Its expected value then falls back to the day's trailing mean, which must come with the
    value's own (diurnal) deviation: with the residual's small one the band sat far under a
    normal peak, and a healthy model paged for the hours its outage had yesterday. (The
    default min_history of 1d happens to hide this: the value a day ago is missing too. A
    shorter one, or a week's seasonal offset alone, does not.)"""
    step = 300.0
    seconds = 2 * sim.DAY + 16 * sim.HOUR
    series = sim.simulate(sim.Model("recovered"), seconds, step, seed=7)
    series = sim.with_gap(series, sim.DAY + 13 * sim.HOUR, sim.DAY + 15 * sim.HOUR, step)
    names, groups = _baseline_rules(
        _only("traffic", traffic={"min_history": "6h"}), tmp_path)
    result = _run(tmp_path, names, groups, series, step,
                  _quiet("recovered", sim.DAY + 15 * sim.HOUR, seconds))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


# --- an idle replica ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(("key", "changes"), [
    ("predictions", {"prediction_shift": lambda _: 1.15}),
    ("confidence", {"confidence": lambda _: 0.8}),
])
def test_an_idle_replica_does_not_blind_the_rolling_quantile_baselines(
        tmp_path: Path, key: str, changes: dict[str, Any]) -> None:
    """A replica that takes no calls (a standby, one just scaled up, the old version
    draining) exposes NaN rolling quantiles. The model's value is the mean over its
    replicas: one NaN made it NaN, dropped as a gap, and the shift of the replicas that
    serve went unseen for as long as the idle one stayed."""
    step = 300.0
    start = sim.DAY + 2 * sim.HOUR
    alert = SIGNALS[key].alert
    fault = sim.Fault("shift", alert, start, sim.HOUR, changes)
    serving = sim.simulate(sim.Model("fraud", faults=(fault,)), start + 2 * sim.HOUR, step,
                           seed=2)
    series = sim.idle_replica(serving, "fraud")
    names, groups = _baseline_rules(_only(key), tmp_path)
    firing = f'ALERTS{{alertstate="firing", alertname="{alert}", model="fraud"}}'
    checks = [*_quiet("fraud", sim.HOUR, start),
              {"expr": f"group({firing})", "eval_time": f"{int((start + sim.HOUR) // 60)}m",
               "exp_samples": [{"labels": "{}", "value": 1}]}]
    result = _run(tmp_path, names, groups, series, step, checks)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
