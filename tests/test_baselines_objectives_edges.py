"""Edges of the adaptive baselines, the per-model objectives and the PromQL helpers, judged by
the real promtool on generated rules and hand-written series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate import render, rule_files, rules
from inferwatch.generate.baselines import duration_text
from inferwatch.generate.config import from_dict
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.promql import objective

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _write(cfg_data: dict[str, Any], directory: Path) -> list[Path]:
    paths = []
    for relative, text in rule_files(render(from_dict(cfg_data))).items():
        if relative.startswith("alerts/") and relative.endswith(".yml"):
            path = directory / Path(relative).name
            path.write_text(text)
            paths.append(path)
    return paths


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _alert_expr(cfg_data: dict[str, Any], name: str) -> str:
    [expr] = [rule["expr"] for group in rules.alerting_groups(from_dict(cfg_data))
              for rule in group["rules"] if rule.get("alert") == name]
    return expr


def _run_exprs(directory: Path, cfg_data: dict[str, Any], series: list[dict[str, str]],
               checks: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    names = [path.name for path in _write(cfg_data, directory)]
    test = {"rule_files": [n for n in names if n == "recording-rules.yml"],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}]}
    path = directory / "test.yml"
    path.write_text(yaml.safe_dump(test, allow_unicode=True))
    return _promtool("test", "rules", str(path))


def _latency_series(model: str, version: str, extra: str = "") -> list[dict[str, str]]:
    """A serving version whose p99 is 0.9 s: 100 calls a minute between 0.5 s and 1 s."""
    labels = f'job="inferwatch-model", instance="m:1", model="{model}", model_version="{version}"'
    series = [{"series": f"inferwatch_model_info{{{labels}{extra}}}", "values": "1x40"}]
    for le, per_minute in (("0.5", 0), ("1", 100), ("+Inf", 100)):
        series.append({"series": f'inferwatch_request_duration_seconds_bucket{{{labels}, '
                                 f'le="{le}"}}', "values": f"0+{per_minute}x40"})
    return series


def _declared(model: str, version: str, key: str, value: str) -> dict[str, str]:
    labels = f'job="inferwatch-model", instance="m:1", model="{model}", model_version="{version}"'
    return {"series": f'inferwatch_model_objective{{{labels}, objective="{key}"}}',
            "values": " ".join([value] * 41)}


# --- objectives declared in code ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("declared", ["NaN", "-1", "+Inf"])
def test_a_declared_objective_that_is_no_number_falls_back_to_the_config(
        tmp_path: Path, declared: str) -> None:
    """instrument() accepts only finite numbers >= 0; a NaN, negative or infinite value that
    still reaches Prometheus (a corrupt multiprocess snapshot, another client) must not win
    over the config: NaN made every comparison false, silencing a model at p99 0.9 s whose
    own limit is 0.5 s. A good declaration of another model keeps counting."""
    cfg = {"objectives": {"from_code": True},
           "models": {"broken": {"latency": {"p99_seconds": 0.4}}}}
    series = [*_latency_series("broken", "1"), *_latency_series("lax", "1"),
              _declared("broken", "1", "latency.p99_seconds", declared),
              _declared("lax", "1", "latency.p99_seconds", "2")]
    key = objective("latency.p99_seconds")
    alert = _alert_expr(cfg, "InferwatchLatencyHigh")
    checks = [
        {"expr": f'{key}{{model="broken"}}', "eval_time": "20m",
         "exp_samples": [{"labels": f'{key}{{model="broken"}}', "value": 0.4}]},
        {"expr": f'{key}{{model="lax"}}', "eval_time": "20m",
         "exp_samples": [{"labels": f'{key}{{model="lax"}}', "value": 2}]},
        {"expr": f"count by (model, model_version) ({alert})", "eval_time": "20m",
         "exp_samples": [{"labels": '{model="broken", model_version="1"}', "value": 1}]},
    ]
    result = _run_exprs(tmp_path, cfg, series, checks)
    assert result.returncode == 0, result.stdout + result.stderr


# --- durations ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30 * 86_400_000))
def test_a_duration_keeps_every_millisecond(millis: int) -> None:
    """The offsets the baselines compute (half a window, a seasonal offset less half its
    window) are written back as Prometheus durations without losing a part: rounded to whole
    seconds, half of 1s was 0s, which Prometheus refuses as an offset."""
    text = duration_text(millis / 1000)
    assert text != "0s"
    assert round(duration_seconds(text) * 1000) == millis


@pytest.mark.integration
def test_sub_second_and_odd_second_windows_render_rules_promtool_accepts(
        tmp_path: Path) -> None:
    # The windows read values recorded once per evaluation interval: it is as short as they.
    cfg = {"baselines": {"evaluation_interval": "500ms",
                         "seasonal_window": "1s", "seasonal_offsets": ["1s"],
                         "errors": {"window": "500ms", "baseline_window": "1s",
                                    "baseline_offset": "0s"},
                         "latency": {"window": "1s", "baseline_window": "3s",
                                     "baseline_offset": "0s"}}}
    result = _promtool("check", "rules", *map(str, _write(cfg, tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = (tmp_path / "baseline-recording-rules.yml").read_text()
    # The seasonal window stays centred on its offset: 1s ago, from 1.5s to 0.5s ago.
    assert "[1s] offset 500ms)" in recorded
    # The residual covers half the baseline window: 1.5 s of 3 s, not 2 s.
    assert "offset 1s500ms" in recorded
