"""The model-wide objective is the strictest serving version's own value, a models: entry's
alert `for` is held to the same window as the top-level one, `generate --check` reports a
generated file a write would delete, and a duration the rules sum from two settings stays
within what Prometheus parses."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from inferwatch.generate import cli, render, rule_files
from inferwatch.generate.config import ConfigError, from_dict
from inferwatch.generate.promql import objective
from test_rules_semantics_edges import PROMTOOL, promtool_test

LABELS = 'job="inferwatch-model", instance="m:%s", model="%s", model_version="%s"'
FROM_CODE = {"objectives": {"from_code": True}}
MAX_VERSIONS, AVAILABILITY, P99 = "predictions.max_versions", "slo.availability", \
    "latency.p99_seconds"


def _version(version: str, per_minute: int, minutes: int = 90,
             role: str = "primary") -> list[tuple[str, str]]:
    """A version of fraud exporting its info for `minutes`, serving `per_minute` calls."""
    labels = LABELS % (version, "fraud", version)
    return [(f'inferwatch_model_info{{{labels}, role="{role}"}}', f"1x{minutes}"),
            (f'inferwatch_requests_total{{{labels}, outcome="ok"}}',
             f"0+{per_minute}x{minutes}")]


def _declares(version: str, key: str, value: float) -> tuple[str, str]:
    labels = LABELS % (version, "fraud", version)
    return (f'inferwatch_model_objective{{{labels}, objective="{key}"}}', f"{value}x90")


def _model_wide(eval_time: str, **values: float) -> list[dict]:
    keys = {"max_versions": MAX_VERSIONS, "availability": AVAILABILITY, "p99": P99}
    return [{"expr": objective(keys[name]), "eval_time": eval_time, "exp_samples": [
        {"labels": f'{objective(keys[name])}{{model="fraud"}}', "value": value}]}
        for name, value in values.items()]


def _too_many(eval_time: str, firing: bool) -> dict:
    labels = ('ALERTS{alertname="InferwatchTooManyVersionsServing", alertstate="firing", '
              'model="fraud", severity="warning"}')
    return {"expr": 'ALERTS{alertname="InferwatchTooManyVersionsServing", '
                    'alertstate="firing"}',
            "eval_time": eval_time, "exp_samples": [{"labels": labels, "value": 1}] if firing
            else []}


@pytest.mark.integration
def test_a_version_declaring_nothing_takes_part_with_the_configs_value(tmp_path: Path) -> None:
    """Stable 1.0 declares nothing (the config holds it to 1 version and 99.9%); canary 2.0
    declares 3 versions and 99%. The strictest is the config's: the stuck rollout is reported.
    `declared or configured` per model let the canary's laxer values stand for the model."""
    series = [*_version("1.0", 100), *_version("2.0", 5),
              _declares("2.0", MAX_VERSIONS, 3), _declares("2.0", AVAILABILITY, 0.99)]
    promtool_test(tmp_path, FROM_CODE, series, exprs=[
        *_model_wide("30m", max_versions=1, availability=0.999), _too_many("80m", True)])


@pytest.mark.integration
def test_a_versions_models_entry_takes_part_where_it_declares_nothing(tmp_path: Path) -> None:
    """fraud's entry allows 2 versions and a 0.3 s p99; 2.0 declares 5 versions and a 2 s
    p99. The model is held to the entry's 2 and 0.3 s, which 1.0 stands for."""
    config = {**FROM_CODE, "models": {"fraud": {"predictions": {"max_versions": 2},
                                                "latency": {"p99_seconds": 0.3}}}}
    series = [*_version("1.0", 100), *_version("2.0", 5),
              _declares("2.0", MAX_VERSIONS, 5), _declares("2.0", P99, 2)]
    promtool_test(tmp_path, config, series,
                  exprs=_model_wide("30m", max_versions=2, p99=0.3))


@pytest.mark.integration
def test_a_retired_version_does_not_pin_the_model_wide_objective(tmp_path: Path) -> None:
    """1.0 was swapped out in a process that still exports its info and its declared 50 ms
    p99, its calls flat since; 2.0 serves and declares 2 s and 3 versions. The model is held
    to 2.0's values: a retired version's (declared or the config's) no longer takes part."""
    series = [*_version("1.0", 0), *_version("2.0", 100), _declares("1.0", P99, 0.05),
              _declares("2.0", P99, 2), _declares("2.0", MAX_VERSIONS, 3)]
    promtool_test(tmp_path, FROM_CODE, series,
                  exprs=_model_wide("40m", max_versions=3, p99=2))


@pytest.mark.integration
def test_a_model_that_served_nothing_lately_is_held_to_its_strictest_version(
        tmp_path: Path) -> None:
    """No version called within windows.versions_serving (a quiet night): every version the
    model still exports takes part, the one that declares nothing with the config's 1."""
    series = [*_version("1.0", 0), *_version("2.0", 0), _declares("2.0", MAX_VERSIONS, 3)]
    promtool_test(tmp_path, FROM_CODE, series, exprs=_model_wide("40m", max_versions=1))


@pytest.mark.integration
def test_a_shadow_declaring_nothing_does_not_tighten_the_model(tmp_path: Path) -> None:
    """The primary 2.0 declares 3 versions; a shadow challenger serving beside it declares
    nothing. The shadow takes no part: the config's 1 would page the primary's rollout."""
    series = [*_version("2.0", 100), *_version("9.9", 100, role="shadow"),
              _declares("2.0", MAX_VERSIONS, 3)]
    promtool_test(tmp_path, FROM_CODE, series, exprs=_model_wide("30m", max_versions=3))


TOO_MANY = "InferwatchTooManyVersionsServing"


@pytest.mark.parametrize("pattern", ["fraud", "fr.*"])
def test_a_models_entry_for_as_short_as_versions_serving_is_refused(pattern: str) -> None:
    """The same `for` refused at the top level (every rollout would fire it) was accepted
    in a models: entry, whose copy of the alert then waited only that long."""
    with pytest.raises(ConfigError) as refused:
        from_dict({"models": {pattern: {"alerts": {TOO_MANY: {"for": "10m"}}}}})
    assert refused.value.key == f"models.{pattern}.alerts.{TOO_MANY}.for"
    assert "10m must be longer than windows.versions_serving (15m)" in refused.value.problem


def test_a_models_entry_for_is_judged_against_the_top_level_window() -> None:
    config = {"windows": {"versions_serving": "30m"},
              "models": {"fraud": {"alerts": {TOO_MANY: {"for": "20m"}}}}}
    with pytest.raises(ConfigError) as refused:
        from_dict(config)
    assert refused.value.key == f"models.fraud.alerts.{TOO_MANY}.for"
    config["models"]["fraud"]["alerts"][TOO_MANY]["for"] = "45m"
    assert from_dict(config).models["fraud"].alerts[TOO_MANY].for_ == "45m"


def test_a_models_entry_setting_only_the_severity_keeps_the_top_level_for() -> None:
    cfg = from_dict({"alerts": {TOO_MANY: {"for": "2h"}},
                     "models": {"fraud": {"alerts": {TOO_MANY: {"severity": "critical"}}}}})
    assert cfg.models["fraud"].alerts[TOO_MANY].severity == "critical"


def _generate(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


BASELINE_RULE = "alerts/kubernetes/prometheusrule-baselines.yaml"


def test_check_reports_a_generated_file_a_write_would_delete(tmp_path: Path, capsys) -> None:
    """A PrometheusRule of the baselines generated by an earlier config (back from a merge or
    an older checkout): `kubectl apply` loads the baseline alerts twice, and --check passed."""
    with_rule, plain = tmp_path / "with.yaml", tmp_path / "plain.yaml"
    with_rule.write_text("kubernetes: {baseline_rule_name: inferwatch-baselines}\n")
    plain.write_text("")
    assert _generate("--config", str(with_rule), "--out", str(tmp_path / "old")) == 0
    out = tmp_path / "out"
    assert _generate("--config", str(plain), "--out", str(out)) == 0
    left = out / BASELINE_RULE
    left.write_bytes((tmp_path / "old" / BASELINE_RULE).read_bytes())
    capsys.readouterr()
    assert _generate("--config", str(plain), "--out", str(out), "--check") == 1
    assert f"left over: {left}" in capsys.readouterr().err
    # --rules-only neither writes nor deletes the manifests, so it does not judge them.
    assert _generate("--config", str(plain), "--out", str(out), "--check", "--rules-only") == 0
    assert _generate("--config", str(plain), "--out", str(out)) == 0
    assert not left.exists()
    assert _generate("--config", str(plain), "--out", str(out), "--check") == 0


def test_check_leaves_a_users_own_file_under_that_name_alone(tmp_path: Path) -> None:
    """A file without the generator's header is the user's: a write keeps it, so does --check."""
    assert _generate("--out", str(tmp_path)) == 0
    own = tmp_path / BASELINE_RULE
    own.write_text("# my own rule\n")
    assert _generate("--out", str(tmp_path), "--check") == 0
    assert _generate("--out", str(tmp_path)) == 0
    assert own.read_text() == "# my own rule\n"


@pytest.mark.parametrize(("window", "offset"), [("200y", "200y"), ("292y", "147y")])
def test_a_residual_lag_beyond_prometheus_longest_duration_is_refused(window: str,
                                                                       offset: str) -> None:
    """Each accepted alone, half the window plus the offset made an offset promtool refuses
    ("duration out of range"), and every baseline rule file failed to load."""
    with pytest.raises(ConfigError) as refused:
        from_dict({"baselines": {"traffic": {"baseline_window": window,
                                             "baseline_offset": offset}}})
    assert refused.value.key == "baselines.traffic.baseline_offset"
    assert f"{offset} plus half of baselines.traffic.baseline_window ({window})" in \
        refused.value.problem


def test_a_disabled_signal_writes_no_residual_lag_and_is_not_refused() -> None:
    from_dict({"baselines": {"traffic": {"enabled": False, "baseline_window": "200y",
                                         "baseline_offset": "200y"}}})


@pytest.mark.integration
def test_the_longest_residual_lag_accepted_is_one_promtool_parses(tmp_path: Path) -> None:
    """146y plus half of 292y is 292y, within Prometheus' range: accepted, and loaded."""
    cfg = from_dict({"baselines": {"traffic": {"baseline_window": "292y",
                                               "baseline_offset": "146y"}}})
    path = tmp_path / "baseline-recording-rules.yml"
    path.write_text(rule_files(render(cfg))["alerts/baseline-recording-rules.yml"])
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "offset 106580d" in path.read_text()
