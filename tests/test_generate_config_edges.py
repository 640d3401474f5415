"""Edges of the generator config: what Prometheus, RE2, YAML and Kubernetes accept, and the
outputs built from such values."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from config_errors import error_for
from inferwatch.generate import cli, dashboards, render, rule_files
from inferwatch.generate.config import ConfigError, from_dict, load
from inferwatch.generate.promql import percent, quoted
from inferwatch.generate.re2 import Unsupported, matches, python_regex
from inferwatch.generate.rules import alerting_groups, recording_groups
from promtool_cases import assert_promtool_passes

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"



def load_text(tmp_path: Path, text: str | bytes) -> object:
    path = tmp_path / "inferwatch.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return load(path)


def rules_text(cfg: object) -> str:
    return json.dumps([recording_groups(cfg), alerting_groups(cfg)])  # type: ignore[arg-type]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def write_rules(cfg: object, out: Path) -> list[Path]:
    paths = []
    for relative, content in rule_files(render(cfg)).items():  # type: ignore[arg-type]
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        paths.append(path)
    return paths


def assert_promtool_loads(cfg: object, tmp_path: Path) -> None:
    result = promtool("check", "rules", *map(str, write_rules(cfg, tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("data", "key", "words"), [
    # Prometheus' duration grammar: units largest first, each once, within int64 nanoseconds.
    ({"windows": {"rate": "30s1m"}}, "windows.rate", "largest first"),
    ({"windows": {"rate": "5m5m"}}, "windows.rate", "each once"),
    ({"windows": {"rate": "5m\n"}}, "windows.rate", "Prometheus duration"),
    ({"windows": {"no_traffic_lookback": "1000y"}}, "windows.no_traffic_lookback", "292y"),
    ({"windows": {"no_traffic_lookback": "9" * 5000 + "s"}}, "windows.no_traffic_lookback",
     "292y"),
    ({"kubernetes": {"scrape_interval": "15s1m"}}, "kubernetes.scrape_interval",
     "largest first"),
    ({"alerts": {"InferwatchGpuLost": {"for": "1m1h"}}}, "alerts.InferwatchGpuLost.for",
     "largest first"),
    ({"baselines": {"traffic": {"window": "0s"}}}, "baselines.traffic.window", "more than zero"),
    # Python and RE2 read these differently, or RE2 refuses them.
    ({"models": {"fr.*+": {}}}, "models.fr.*+", "possessive"),
    ({"models": {"(?>fr).*": {}}}, "models.(?>fr).*", "atomic"),
    ({"models": {"(?x)fr": {}}}, "models.(?x)fr", "flag x"),
    ({"models": {"[[:letters:]]+": {}}}, "models.[[:letters:]]+", "unknown character class"),
    ({"models": {"a{1001}": {}}}, "models.a{1001}", "1000"),
    ({"models": {"\\Qfr.": {}}}, "models.\\Qfr.", "\\E"),
    # Selectors are PromQL: its string escapes, and RE2 in =~ and !~.
    ({"selectors": {"model": 'job="a\\q"'}}, "selectors.model", "label matchers"),
    ({"selectors": {"model": 'job=~"("'}}, "selectors.model", "not a valid regex"),
    ({"selectors": {"exporter": 'job!~"(?!x)"'}}, "selectors.exporter", "lookaround"),
    ({"selectors": {"model": 'job="\\777"'}}, "selectors.model", "escape"),
    ({"pushgateway": {"selector": 'job="a",,'}}, "pushgateway.selector", "label matchers"),
    # Kubernetes label values and names.
    ({"kubernetes": {"labels": {"release": "kube prometheus stack!"}}}, "kubernetes.labels",
     "label value"),
    ({"kubernetes": {"labels": {"release": "x" * 64}}}, "kubernetes.labels", "label value"),
    ({"kubernetes": {"labels": {"release": "-x"}}}, "kubernetes.labels", "label value"),
    ({"kubernetes": {"model_match_labels": {"team": "ml\n"}}}, "kubernetes.model_match_labels",
     "label value"),
    ({"kubernetes": {"exporter_match_labels": {"x" * 64: "a"}}},
     "kubernetes.exporter_match_labels", "label name"),
    ({"kubernetes": {"labels": {"Example.com/team": "a"}}}, "kubernetes.labels", "label name"),
    # Quantiles: one series each, so each once.
    ({"baselines": {"latency_quantiles": ["0.5", "0.5"]}}, "baselines.latency_quantiles",
     "twice"),
    ({"baselines": {"prediction_quantiles": ["0.9", "0.90"]}},
     "baselines.prediction_quantiles", "twice"),
    ({"baselines": {"latency_quantiles": []}}, "baselines.latency_quantiles",
     "at least one quantile"),
    ({"baselines": {"prediction_quantiles": []}}, "baselines.prediction_quantiles",
     "at least one quantile"),
    ({"baselines": {"confidence_quantiles": []}}, "baselines.confidence_quantiles",
     "at least one quantile"),
    # Integers beyond any float.
    ({"latency": {"p99_seconds": 10**400}}, "latency.p99_seconds", "finite number"),
    ({"drift": {"min_observations": 10**400}}, "drift.min_observations", "finite number"),
])
def test_values_prometheus_would_refuse_name_their_key(data: object, key: str,
                                                       words: str) -> None:
    error = error_for(data)
    assert error.key == key
    assert words in error.problem
    assert str(error).startswith(f"{key}: ")
    assert "\n" not in str(error)


# --- durations -------------------------------------------------------------------------------


def test_zero_waits_and_offsets_are_allowed_where_prometheus_allows_them() -> None:
    cfg = from_dict({
        "alerts": {"InferwatchGpuXidErrors": {"for": "0s"}},
        "models": {"fraud": {"alerts": {"InferwatchLatencyHigh": {"for": "0m"}}}},
        "baselines": {"traffic": {"baseline_offset": "0s", "min_history": "0s"}},
    })
    alerts = [rule for group in alerting_groups(cfg) for rule in group["rules"]]
    assert {"InferwatchGpuXidErrors": "0s"}.items() <= {
        rule["alert"]: rule["for"] for rule in alerts}.items()
    assert any(rule["alert"] == "InferwatchLatencyHigh" and rule["for"] == "0m"
               for rule in alerts)
    # Prometheus 2 refuses `offset 0s`, so a zero offset is left out.
    rules = "".join(rule_files(render(cfg)).values())
    assert "offset 0s" not in rules
    assert "avg_over_time(model:inferwatch_baseline_traffic:value_10m[1d])" in rules
    assert "count_over_time(model:inferwatch_baseline_traffic:value_10m[10m]) > 0" in rules


@pytest.mark.parametrize("duration", ["1y2w3d4h5m6s7ms", "292y", "106751d", "1h30m", "90m"])
def test_durations_prometheus_parses_are_accepted(duration: str) -> None:
    assert from_dict({"windows": {"no_traffic_lookback": duration}})


@pytest.mark.integration
def test_zero_durations_load_in_promtool(tmp_path: Path) -> None:
    cfg = from_dict({"alerts": {"InferwatchLatencyHigh": {"for": "0m"}},
                     "baselines": {"latency": {"baseline_offset": "0s", "min_history": "0s"}}})
    assert_promtool_loads(cfg, tmp_path)


# --- duplicate YAML keys ---------------------------------------------------------------------


def test_a_section_given_twice_is_refused_with_its_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "models:\n  fraud: {latency: {p99_seconds: 0.05}}\n"
                            "models:\n  ranker: {latency: {p99_seconds: 2}}\n")
    assert caught.value.key == "models"
    assert "lines 1 and 3" in caught.value.problem
    assert str(caught.value).startswith(f"{tmp_path / 'inferwatch.yaml'}: models: ")


def test_a_nested_key_given_twice_is_named_by_its_dotted_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "latency:\n  p99_seconds: 0.1\n  p99_seconds: 0.2\n")
    assert caught.value.key == "latency.p99_seconds"
    assert "lines 2 and 3" in caught.value.problem


def test_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "models:\n  fraud: &fraud {latency: {p99_seconds: 0.3}}\n"
                              "  ranker:\n    <<: *fraud\n    slo: {availability: 0.99}\n")
    assert cfg.models["ranker"].values["latency.p99_seconds"] == 0.3  # type: ignore[attr-defined]


# --- files and the command line --------------------------------------------------------------


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(file\): is not UTF-8 text"):
        load_text(tmp_path, b"latency:\n  p99_seconds: 0.1 # \xff\n")


def test_an_integer_beyond_pythons_parsing_limit_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(file\): is not valid YAML"):
        load_text(tmp_path, "latency:\n  p99_seconds: " + "1" * 5000 + "\n")


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_an_out_directory_that_cannot_be_made_is_reported(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_cli("--out", str(blocker / "sub")) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferwatch generate: cannot write ")
    assert "Not a directory" in err and "Traceback" not in err


def test_check_calls_a_file_that_is_not_utf8_stale(tmp_path: Path, capsys) -> None:
    assert run_cli("--out", str(tmp_path), "--rules-only") == 0
    (tmp_path / "alerts" / "recording-rules.yml").write_bytes(b"\xff\n")
    assert run_cli("--out", str(tmp_path), "--rules-only", "--check") == 1
    assert "stale: " in capsys.readouterr().err


# --- dashboards ------------------------------------------------------------------------------


@pytest.mark.parametrize("exporter", ['job="inferwatch"',
                                      'job="inferwatch", container="exporter"'])
def test_model_and_exporter_series_are_each_narrowed_by_their_own_variables(
        exporter: str) -> None:
    """One scrape job for everything: the model panels must not filter on the exporter's
    variable (undefined on most dashboards, so the panels would stay empty), nor the
    exporter's series on the model variables."""
    cfg = from_dict({"selectors": {"model": 'job="inferwatch"', "exporter": exporter}})
    exporter_narrowed = 0
    for name, dashboard in dashboards.render(cfg).items():
        variables = {variable["name"] for variable in dashboard["templating"]["list"]}
        text = json.dumps(dashboard).replace('\\"', '"')
        if "exporter_instance" not in variables:
            assert "$exporter_instance" not in text, name
        for selector in re.findall(r"\{[^{}]*\}", text):
            assert not ("$exporter_instance" in selector and "$model" in selector), selector
            assert not ('container="exporter"' in selector and "$model" in selector), selector
            exporter_narrowed += "$exporter_instance" in selector
    assert exporter_narrowed


def test_a_disabled_signal_needs_no_quantiles() -> None:
    cfg = from_dict({"baselines": {"latency_quantiles": [], "latency": {"enabled": False},
                                   "confidence_quantiles": [],
                                   "confidence": {"enabled": False}}})
    assert "dashboards/model-overview.json" in render(cfg)


# --- model regexes: Python's re reads them as Prometheus' RE2 does ---------------------------


def test_a_regex_leaves_out_the_earlier_names_re2_matches() -> None:
    cfg = from_dict({"models": {
        "fraud": {"alerts": {"InferwatchLatencyHigh": {"for": "1m", "severity": "critical"}}},
        "[[:alpha:]]+": {"alerts": {"InferwatchLatencyHigh": {"for": "2m"}}},
    }})
    assert cfg.models["[[:alpha:]]+"].earlier == ("fraud",)
    # The regex's copy takes its tag off the models the earlier name keeps.
    assert '\\"model_override\\", \\"\\", \\"model\\", \\"fraud\\"' in rules_text(cfg)


def test_a_name_may_follow_a_regex_re2_does_not_match_it_with() -> None:
    # RE2's \w is ASCII: mod\w+ does not match modèle, so modèle's entry applies.
    cfg = from_dict({"models": {"mod\\w+": {"latency": {"p99_seconds": 1}},
                                "modèle": {"latency": {"p99_seconds": 2}}}})
    assert list(cfg.models) == ["mod\\w+", "modèle"]
    assert error_for({"models": {"mod\\w+": {}, "model_2": {}}}).key == "models.model_2"


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("[[:alpha:]]+", "fraud", True), ("[[:alpha:]]+", "fraud2", False),
    ("[[:^digit:]]+", "ab", True), ("[^[:alpha:]]", "é", True),
    ("\\w+", "modèle", False), ("\\d+", "١٢", False), ("a\\sb", "a\u00a0b", False),
    (".\\bx", "éx", True), ("\\B", "", True), ("(?i)k", "\u212a", True),
    ("a{,2}", "a{,2}", True), ("a{01}", "a", False), ("\\Qa.b\\E", "a.b", True),
    ("\\Qa.b\\E", "axb", False), ("\\x{e9}", "é", True), ("\\141", "a", True),
    # Prometheus 3 matches with (?s:...): a dot takes a newline too.
    ("x.y", "x\ny", True),
])
def test_re2_semantics_in_python(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


@pytest.mark.parametrize("pattern", [
    "fr.*+", "fr++", "fr?+", "f{2}+", "(?>fr)", "(?=fr)", "(?<!x)fr", "(fr)\\1", "(?P<a>x)(?P=a)",
    "(?(1)a|b)", "(?#note)fr", "(?x)f r", "(?a)fr", "\\Z", "[\\b]", "\\u00e9",
    "(?P<é>x)", "[[:nope:]]", "a{1001}", "\\Qopen",
])
def test_syntax_re2_lacks_or_reads_differently_is_refused(pattern: str) -> None:
    with pytest.raises(Unsupported):
        python_regex(pattern)


@pytest.mark.integration
def test_a_model_is_judged_by_one_alert_when_a_later_regex_matches_it(tmp_path: Path) -> None:
    cfg = from_dict({"models": {
        "fraud": {"alerts": {"InferwatchLatencyHigh": {"for": "1m", "severity": "critical"}}},
        "[[:alpha:]]+": {"alerts": {"InferwatchLatencyHigh": {"for": "2m"}}},
    }})
    files = [path.relative_to(tmp_path) for path in write_rules(cfg, tmp_path)]
    series = [{"series": 'inferwatch_model_info{job="inferwatch-model", instance="i", '
                         'model="fraud", model_version="1"}', "values": "1x30"},
              {"series": 'model:inferwatch_request_duration_seconds:p99_5m{model="fraud", '
                         'model_version="1"}', "values": "0.9x30"}]
    assert_promtool_passes(tmp_path, series, rule_files=files, exprs=[{
        "expr": 'count by (model, severity) (ALERTS{alertname="InferwatchLatencyHigh", '
                'alertstate="firing"})',
        "eval_time": "10m",
        "exp_samples": [{"labels": '{model="fraud", severity="critical"}', "value": 1}]}])


@pytest.mark.integration
def test_patterns_and_selectors_the_checks_accept_load_in_promtool(tmp_path: Path) -> None:
    patterns = ["[[:alpha:]]+", "mod\\w+", "a{,2}", "\\Qa.b\\E", "(?i)fr.*", "x\\bz", "\\x{e9}"]
    cfg = from_dict({
        "selectors": {"model": "job='inferwatch-model', namespace=~`ml-.*`",
                      "exporter": 'job=~"inferwatch-(exporter|gpu)", instance!~"\\\\d+"'},
        "models": {pattern: {"alerts": {"InferwatchLatencyHigh": {"for": f"{i + 1}m"}}}
                   for i, pattern in enumerate(patterns)},
    })
    assert_promtool_loads(cfg, tmp_path)


def test_selectors_take_every_promql_string_form() -> None:
    cfg = from_dict({"selectors": {"model": "job='m', env=`prod`, team=\"a\\\"b\\u00e9\""}})
    assert "job='m', env=`prod`" in rules_text(cfg)


# --- names with control characters -----------------------------------------------------------


def test_promql_strings_escape_control_characters() -> None:
    assert quoted('a"b\\c\nd\te\x07\x00') == '"a\\"b\\\\c\\nd\\te\\a\\x00"'


def test_model_names_with_control_characters_are_escaped_in_the_rules() -> None:
    cfg = from_dict({"models": {"new\nline": {"latency": {"p99_seconds": 0.2}},
                                "nul\abell": {"latency": {"p99_seconds": 0.3}},
                                "tab\t.*": {"alerts": {"InferwatchLatencyHigh": {"for": "1m"}}}},
                     "pushgateway": {"jobs": {"night\nly": "26h"}},
                     "baselines": {"features": ["a\rb"]}})
    files = rule_files(render(cfg))
    exprs = [rule["expr"] for text in files.values()
             for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]
    strings = [s for expr in exprs for s in re.findall(r'"(?:[^"\\]|\\.)*"', expr, re.DOTALL)]
    assert all("\n" not in s and "\a" not in s for s in strings)
    joined = "\n".join(exprs)
    for escaped in ('"new\\nline"', '"nul\\abell"', '"tab\\t.*"', '"night\\nly"', '"a\\rb"'):
        assert escaped in joined, escaped


@pytest.mark.integration
def test_model_names_with_control_characters_load_in_promtool(tmp_path: Path) -> None:
    cfg = from_dict({"models": {"new\nline": {"latency": {"p99_seconds": 0.2}},
                                "nul\abell": {"slo": {"availability": 0.99}}}})
    assert_promtool_loads(cfg, tmp_path)


# --- alert text ------------------------------------------------------------------------------


def test_an_availability_just_below_one_is_not_written_as_100_percent() -> None:
    cfg = from_dict({"slo": {"availability": 0.999999999999}})
    text = rules_text(cfg)
    assert "the 99.9999999999% availability SLO" in text
    assert "the 100% availability SLO" not in text
    assert percent(0.999) == "99.9" and percent(0.9) == "90"
