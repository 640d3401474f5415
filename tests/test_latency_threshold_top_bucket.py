"""Latency thresholds that no p99 can exceed: histogram_quantile never reports a quantile
above the top finite bucket of the latency histograms, so a threshold at or above it (30 s) is
refused, by the generator config naming its key and by instrument(objectives=...)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from config_errors import error_for, nested
from conftest import require_binary
from inferwatch import number_ranges
from inferwatch.catalogue import OBJECTIVE_CHECKS
from inferwatch.cli import main
from inferwatch.core.options import LATENCY_BUCKETS, Settings
from inferwatch.core.registry import Registry
from inferwatch.generate import config_checks
from inferwatch.generate.config import from_dict

LATENCY_THRESHOLDS = ("latency.p99_seconds", "latency.first_item_p99_seconds")
TOP = LATENCY_BUCKETS[-1]


def generate(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`inferwatch generate --config F --out D --rules-only` on `data`: status and stderr."""
    config = tmp_path / "inferwatch.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    capsys.readouterr()
    status = main(["generate", "--config", str(config), "--out", str(tmp_path / "out"),
                   "--rules-only"])
    return status, capsys.readouterr().err


def test_the_checks_top_bucket_is_the_instrumentations() -> None:
    assert number_ranges.TOP_LATENCY_BUCKET_SECONDS == TOP
    # The config and the objectives declared in code share the one check.
    assert OBJECTIVE_CHECKS["latency.p99_seconds"] is config_checks.latency_threshold


@pytest.mark.parametrize("key", LATENCY_THRESHOLDS)
@pytest.mark.parametrize("value", [TOP, 45, 60])
def test_generate_refuses_a_latency_threshold_no_p99_can_exceed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: float) -> None:
    status, err = generate(tmp_path, nested(key, value), capsys)
    assert status == 2
    assert f": {key}: " in err
    assert f"below {TOP:g}" in err and f"got {value!r}" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.yml"))


def test_a_models_latency_threshold_no_p99_can_exceed_is_refused_naming_the_model() -> None:
    # latency.first_item_p99_seconds is set at the top level only.
    key = "latency.p99_seconds"
    exc = error_for({"models": {"fraud": nested(key, 45)}})
    assert exc.key == f"models.fraud.{key}" and f"below {TOP:g}" in exc.problem


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(LATENCY_THRESHOLDS),
       value=st.floats(min_value=1e-6, max_value=1e5, allow_nan=False))
def test_a_latency_threshold_is_kept_exactly_when_a_p99_can_exceed_it(key: str,
                                                                     value: float) -> None:
    section, name = key.split(".")
    if value < TOP:
        assert getattr(getattr(from_dict(nested(key, value)), section), name) == value
    else:
        assert error_for(nested(key, value)).key == key


RULE_TEST = """
rule_files: [alerts/recording-rules.yml, alerts/alerting-rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Every call takes 90 s and every stream 100 s to its first item: all in +Inf.
      - series: 'inferwatch_request_duration_seconds_bucket{{{labels},le="{top}"}}'
        values: '0+0x40'
      - series: 'inferwatch_request_duration_seconds_bucket{{{labels},le="+Inf"}}'
        values: '0+60x40'
      - series: 'inferwatch_request_duration_seconds_count{{{labels}}}'
        values: '0+60x40'
      - series: 'inferwatch_requests_total{{{labels},outcome="ok"}}'
        values: '0+60x40'
      - series: 'inferwatch_stream_first_item_seconds_bucket{{{labels},le="{top}"}}'
        values: '0+0x40'
      - series: 'inferwatch_stream_first_item_seconds_bucket{{{labels},le="+Inf"}}'
        values: '0+60x40'
      - series: 'inferwatch_model_info{{{labels},role="primary",framework="x",task="generation"}}'
        values: '1x40'
    promql_expr_test:
      - expr: {p99}
        eval_time: 30m
        exp_samples:
          - labels: '{p99}{{model="llm",model_version="1"}}'
            value: {top}
      - expr: {first}
        eval_time: 30m
        exp_samples:
          - labels: '{first}{{model="llm",model_version="1"}}'
            value: {top}
      # Both alerts fire (their annotations are another test's business).
      - expr: count by (alertname) (ALERTS{{alertstate="firing",model="llm"}})
        eval_time: 30m
        exp_samples:
          - labels: '{{alertname="InferwatchLatencyHigh"}}'
            value: 1
          - labels: '{{alertname="InferwatchStreamFirstItemSlow"}}'
            value: 1
"""


def test_thresholds_just_below_the_top_bucket_fire_on_calls_slower_than_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The p99 the rules read is capped at the top bucket: thresholds just below it are the
    # largest that still fire when every call is slower.
    promtool = require_binary("promtool")
    below = TOP - 0.5
    status, err = generate(tmp_path, {"latency": {"p99_seconds": below,
                                                  "first_item_p99_seconds": below}}, capsys)
    assert status == 0, err
    labels = 'job="inferwatch-model",model="llm",model_version="1"'
    test = tmp_path / "out" / "latency_cap_test.yml"
    test.write_text(RULE_TEST.format(
        labels=labels, top=f"{TOP:.1f}", p99="model:inferwatch_request_duration_seconds:p99_5m",
        first="model:inferwatch_stream_first_item_seconds:p99_5m"), encoding="utf-8")
    done = subprocess.run([promtool, "test", "rules", test.name], cwd=test.parent,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the objective declared in code -----------------------------------------------------------

@pytest.mark.parametrize("key", ["latency_p99", "latency.p99_seconds"])
@pytest.mark.parametrize("value", [TOP, 45, 60])
def test_instrument_refuses_a_latency_objective_no_p99_can_exceed(key: str, value) -> None:
    registry = Registry()
    with pytest.raises(ValueError) as caught:
        inferwatch.instrument(lambda x: 0.5, name="m", registry=registry,
                              objectives={key: value})
    registry.close()
    message = str(caught.value)
    assert f"objectives: {key}" in message and f"got {value!r}" in message
    assert f"below {TOP:g}" in message


def test_a_latency_objective_below_the_top_bucket_is_kept() -> None:
    assert Settings(objectives={"latency_p99": 29.5}).objectives["latency.p99_seconds"] == 29.5


def test_a_model_with_longer_latency_buckets_may_declare_a_longer_objective() -> None:
    # Its histogram reaches past 30 s: a p99 of 60 s can be exceeded, and read, there.
    settings = Settings(latency_buckets=(1.0, 30.0, 120.0, 300.0), objectives={"latency_p99": 60})
    assert settings.objectives["latency.p99_seconds"] == 60
    with pytest.raises(ValueError, match="must be below 300"):
        Settings(latency_buckets=(1.0, 30.0, 120.0, 300.0), objectives={"latency_p99": 300})
