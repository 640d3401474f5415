"""The rules through the real promtool: they load, every alert fires when it should and
stays quiet when it should, and every PromQL expression we generate parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate import render, rules
from inferwatch.generate.config import DEFAULT, from_dict, load
from inferwatch.generate.promql import objective
from inferwatch.generate.rules_alerts import ALERTS
from promtool_cases import assert_promtool_passes, write_generated_rules

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
# Grafana's own variables, replaced by what they expand to so Prometheus' parser sees PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def check_rules(*paths: Path) -> None:
    result = promtool("check", "rules", *map(str, paths))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_committed_rule_files_pass_promtool_check() -> None:
    files = sorted((ROOT / "alerts").glob("*.yml"))
    assert [f.name for f in files] == ["alerting-rules.yml", "baseline-alerting-rules.yml",
                                       "baseline-recording-rules.yml", "recording-rules.yml"]
    check_rules(*files)


def test_every_alert_fires_and_stays_quiet_in_promtool_tests() -> None:
    """Each committed test file in a promtool of its own, two at a time: promtool evaluates
    on one core, and the other core is often idle while the rest of the suite waits on a
    server."""
    from concurrent.futures import ThreadPoolExecutor

    assert TESTS
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda path: promtool("test", "rules", str(path)), TESTS))
    failed = [f"{path.name}:\n{result.stdout}{result.stderr}"
              for path, result in zip(TESTS, results) if result.returncode != 0]
    assert not failed, "\n".join(failed)
    assert all("SUCCESS" in result.stdout for result in results)


def _cases_naming(path: Path, alerts: set[str]) -> dict[str, Any]:
    """The promtool test file at `path` with only its cases that check one of `alerts`."""
    test = yaml.safe_load(path.read_text())
    test["tests"] = [case for case in test["tests"]
                     if {check["alertname"] for check in case.get("alert_rule_test", [])} & alerts]
    assert test["tests"], f"{path.name} has no case of {sorted(alerts)}"
    return test


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert.name for alert in ALERTS}
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a quiet case"
    assert (firing | quiet) <= names, "tests name alerts that do not exist"


def test_promtool_tests_fail_against_other_thresholds(tmp_path: Path) -> None:
    """The unit tests check the generated rules, not something that always passes."""
    cfg = from_dict({"latency": {"p99_seconds": 2}, "gpu": {"temperature_celsius": 95}})
    for relative, text in render(cfg).items():
        if relative.startswith("alerts/") and relative.endswith(".yml"):
            (tmp_path / Path(relative).name).write_text(text)
    tests = tmp_path / "tests"
    tests.mkdir()
    # Only the cases of the two alerts whose thresholds changed: the other cases read the
    # same rules as the committed files, which the test above runs in full.
    changed = {"InferwatchLatencyHigh", "InferwatchGpuTemperatureHigh"}
    for name in ("availability.yml", "resources.yml"):
        (tests / name).write_text(yaml.safe_dump(_cases_naming(ROOT / "alerts" / "tests" / name,
                                                               changed), sort_keys=False))
    result = promtool("test", "rules", str(tests / "availability.yml"),
                      str(tests / "resources.yml"))
    assert result.returncode != 0
    assert "InferwatchLatencyHigh" in result.stdout + result.stderr
    assert "InferwatchGpuTemperatureHigh" in result.stdout + result.stderr


def test_rules_from_a_config_with_every_value_changed_pass_promtool(tmp_path: Path) -> None:
    from test_generate_outputs import (
        ALERT_SENTINELS,
        MODEL_ALERT_SENTINELS,
        MODEL_PATTERN,
        MODEL_SENTINELS,
        SENTINELS,
        _nested,
    )

    models = {"fraud": {"latency": {"p99_seconds": 0.05}},
              MODEL_PATTERN: {**_nested(MODEL_SENTINELS), "alerts": MODEL_ALERT_SENTINELS},
              'odd "name"': {"accuracy": {"min_ratio": 0.5}}}
    cfg = from_dict({**_nested(SENTINELS), "alerts": ALERT_SENTINELS, "models": models})
    check_rules(*(tmp_path / name for name in write_generated_rules(cfg, tmp_path)))


def test_prometheus_rule_manifest_groups_pass_promtool(tmp_path: Path) -> None:
    manifest = yaml.safe_load(render(DEFAULT)["alerts/kubernetes/prometheusrule.yaml"])
    path = tmp_path / "from-manifest.yml"
    path.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    check_rules(path)


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    from test_generate_outputs import dashboard_expressions

    dashboards = {path: json.loads(text) for path, text in render(DEFAULT).items()
                  if path.endswith(".json")}
    exprs = dashboard_expressions(dashboards)
    assert len(exprs) > 50
    rules = []
    for number, expr in enumerate(exprs):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert not re.search(r"\$__\w+", expr), f"unexpanded Grafana variable in {expr}"
        rules.append({"record": f"dashboard:expression:n{number}", "expr": expr})
    path = tmp_path / "dashboard-expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    check_rules(path)


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The parse checks above can fail."""
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "a:b:c", "expr": "sum by (model (rate(x[5m]))"}]}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode != 0


OVERRIDES = ROOT / "alerts" / "tests" / "overrides"


def _failing_alerts(output: str) -> set[tuple[str, str]]:
    """(alert name, model) of every alert promtool expected but did not get, or the reverse."""
    found = set()
    # One block per failing case; two cases of one alert can fail back to back.
    for block in re.split(r"\n\s*alertname: ", "\n" + output)[1:]:
        name = block.split(",", 1)[0]
        expected, _, got = block.partition("got:[")
        # An alert differs by its labels, or only by annotations the case expects (another
        # threshold in the text); a case that expects none shows them empty.
        wanted, fired = ({labels: text.strip().rstrip(",") for labels, text in
                          re.findall(r"Labels:\{(.*?)\}\n\s*(?:Annotations:(.*))?", part)}
                         for part in (expected, got))
        differing = set(wanted) ^ set(fired)
        differing.update(labels for labels, text in wanted.items()
                         if text not in ("", "{}") and fired.get(labels, text) != text)
        for labels in differing:
            found.update((name, model) for model in re.findall(r'model="([^"]*)"', labels))
    return found


@pytest.mark.parametrize("key", ["latency.p99_seconds", "accuracy.min_ratio",
                                 "slo.availability", "drift.feature_threshold"])
def test_changing_one_models_objective_changes_only_that_model(tmp_path: Path, key: str) -> None:
    """Mutation: fraud loses one objective; only fraud's alerts of that family change."""
    data = yaml.safe_load((OVERRIDES / "inferwatch.yaml").read_text())
    section, name = key.split(".")
    del data["models"]["fraud"][section][name]
    rules = tmp_path / "overrides" / "alerts"
    rules.mkdir(parents=True)
    write_generated_rules(from_dict(data), rules)
    shutil.copy(ROOT / "alerts" / "tests" / "overrides.yml", tmp_path / "overrides.yml")
    result = promtool("test", "rules", str(tmp_path / "overrides.yml"))
    assert result.returncode != 0, "the override test cannot tell fraud's objective apart"
    failing = _failing_alerts(result.stdout + result.stderr)
    assert failing, result.stdout
    assert {model for _, model in failing} == {"fraud"}, failing


def test_a_model_override_changes_that_model_only_in_prometheus_terms(tmp_path: Path) -> None:
    """The committed override rules are a fresh render of their config and pass promtool."""
    cfg = load(OVERRIDES / "inferwatch.yaml")
    for relative, text in render(cfg).items():
        if relative.startswith("alerts/") and relative.count("/") == 1:
            assert (OVERRIDES / relative).read_text() == text, (
                f"run `make generate`: {OVERRIDES / relative} is stale")
    check_rules(*sorted((OVERRIDES / "alerts").glob("*.yml")))


_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                 max_size=12).filter(lambda n: n.strip() and not set(n) & set(".^$*+?{}[]\\|()"))


@settings(max_examples=20, deadline=None)
@given(st.dictionaries(_names, st.floats(0.001, 29.9, allow_nan=False), min_size=1, max_size=5),
       st.sampled_from(["", "rest-.*"]))
def test_each_model_gets_its_own_objective_in_promtool(thresholds: dict[str, float],
                                                       regex: str) -> None:
    """Any model names (quotes, spaces, unicode): promtool evaluates each one's own value."""
    import tempfile

    models: dict[str, Any] = {name: {"latency": {"p99_seconds": value}}
                              for name, value in thresholds.items()}
    if regex:
        models[regex] = {"latency": {"p99_seconds": 23}}
    cfg = from_dict({"models": models})
    served = [*thresholds, "rest-a", "other"]
    expected = {name: thresholds.get(name, 23 if regex and name == "rest-a" else 0.5)
                for name in served}

    def quoted(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    series = [{"series": f'inferwatch_model_info{{job="inferwatch-model", '
                         f'model={quoted(name)}}}', "values": "1x5"} for name in served]
    key = objective("latency.p99_seconds")
    checks = [{"expr": f"{key}{{model={quoted(name)}}}", "eval_time": "2m",
               "exp_samples": [{"labels": f"{key}{{model={quoted(name)}}}", "value": value}]}
              for name, value in expected.items()]
    with tempfile.TemporaryDirectory() as directory:
        names = write_generated_rules(cfg, Path(directory), ["recording-rules.yml"])
        assert_promtool_passes(Path(directory), series, exprs=checks, rule_files=names)


def test_every_alert_says_which_scrape_job_it_reads_and_follows_a_renamed_job() -> None:
    renamed = from_dict({"selectors": {"model": 'job="ml-serving"', "exporter": 'job="ml-gpu"'}})
    for cfg in (DEFAULT, renamed):
        selectors = {cfg.selectors.model, cfg.selectors.exporter, cfg.pushgateway.selector}
        for group in [*rules.alerting_groups(cfg), *rules.baseline_alerting_groups(cfg)]:
            for rule in group["rules"]:
                note = re.search(r"Reads series matching (.*) \((.*) in the inferwatch config",
                                 rule["annotations"]["description"])
                assert note, rule["alert"]
                named = re.findall(r"\{(.*?)\}(?: and |$)", note.group(1))
                assert named and set(named) <= selectors, (rule["alert"], named)
                assert all(m in rule["expr"] or _recorded_from(cfg, rule["expr"], m)
                           for m in named), rule["alert"]
    assert "ml-serving" not in str(rules.alerting_groups(DEFAULT))


def _recorded_from(cfg, expr: str, matcher: str) -> bool:
    """Whether `expr` reads `matcher` through recorded series, a baseline's included (it
    records from recorded series in turn)."""
    recorded = [r for group in [*rules.recording_groups(cfg),
                                *rules.baseline_recording_groups(cfg)] for r in group["rules"]]
    read, pending = expr, [expr]
    while pending:
        text = pending.pop()
        for rule in recorded:
            if rule["record"] in text and rule["expr"] not in read:
                read += "\n" + rule["expr"]
                pending.append(rule["expr"])
    return matcher in read


def test_objectives_in_code_win_over_the_config_which_wins_over_the_default(
        tmp_path: Path) -> None:
    """Every combination: neither, config only, code only, both (code wins), two versions
    declaring different values (each version its own, the model-wide value the stricter),
    and the switch off (code ignored), judged by promtool on the objective series and on the
    alert's expression."""
    config = {"models": {"configured": {"latency": {"p99_seconds": 0.3}},
                         "both": {"latency": {"p99_seconds": 0.3}}}}
    declared = {"declared": {"1": 0.45}, "both": {"1": 0.6}, "two-versions": {"1": 0.2, "2": 0.7}}
    served = ["plain", "configured", "declared", "both", "two-versions"]
    # two-versions: the model-wide objective is the stricter declared value (0.2), and each
    # version's alert its own: version 1 (0.2) fires, version 2 (0.7) does not.
    cases = {True: {"plain": 0.5, "configured": 0.3, "declared": 0.45, "both": 0.6,
                    "two-versions": 0.2},
             False: {"plain": 0.5, "configured": 0.3, "declared": 0.5, "both": 0.3,
                     "two-versions": 0.5}}
    p99 = 0.4975  # every model: 100 calls a minute between 0.25 s and 0.5 s
    series = []
    for name in served:
        for version in declared.get(name, {"1": None}):
            labels = (f'job="inferwatch-model", instance="m:1", model="{name}", '
                      f'model_version="{version}"')
            series.append({"series": f"inferwatch_model_info{{{labels}}}", "values": "1x40"})
            for le, per_minute in (("0.25", 0), ("0.5", 100), ("+Inf", 100)):
                series.append({"series": f'inferwatch_request_duration_seconds_bucket'
                                         f'{{{labels}, le="{le}"}}',
                               "values": f"0+{per_minute}x40"})
            value = declared.get(name, {}).get(version)
            if value is not None:
                series.append({"series": f'inferwatch_model_objective{{{labels}, '
                                         f'objective="latency.p99_seconds"}}',
                               "values": f"{value}x40"})
    for from_code, expected in cases.items():
        cfg = from_dict({**config, "objectives": {"from_code": from_code}})
        [alert] = [rule for group in rules.alerting_groups(cfg) for rule in group["rules"]
                   if rule["alert"] == "InferwatchLatencyHigh"]
        firing = [{"labels": f'{{model="{name}", model_version="1"}}', "value": 1}
                  for name, limit in expected.items() if p99 > limit]
        assert 0 < len(firing) < len(served)  # the case tells the models apart
        key = objective("latency.p99_seconds")
        checks = [*({"expr": f'{key}{{model="{name}"}}', "eval_time": "20m",
                     "exp_samples": [{"labels": f'{key}{{model="{name}"}}', "value": limit}]}
                    for name, limit in expected.items()),
                  {"expr": f"count by (model, model_version) ({alert['expr']})",
                   "eval_time": "20m", "exp_samples": firing}]
        # The directory's name, in promtool's output, tells the two cases apart.
        directory = tmp_path / f"from_code_{from_code}"
        directory.mkdir()
        names = write_generated_rules(cfg, directory, ["recording-rules.yml"])
        assert_promtool_passes(directory, series, exprs=checks, rule_files=names)
