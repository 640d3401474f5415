"""More edges of the generator config: values Grafana, Prometheus and the Prometheus Operator
read differently from what the config let through, and selectors Prometheus accepts that the
config refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for
from conftest import require_binary
from inferwatch.generate import dashboards, kubernetes, render, rule_files
from inferwatch.generate.config import ConfigError, from_dict, load
from inferwatch.generate.rules import alerting_groups, recording_groups


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(text)
    return load(path)


def all_exprs(cfg: object) -> list[str]:
    groups = recording_groups(cfg) + alerting_groups(cfg)  # type: ignore[arg-type]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    for board in dashboards.render(cfg).values():  # type: ignore[arg-type]
        exprs.append(json.dumps(board))
    return exprs


def promtool_check_rules(cfg: object, out: Path) -> subprocess.CompletedProcess[str]:
    paths = []
    for relative, content in rule_files(render(cfg)).items():  # type: ignore[arg-type]
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        paths.append(str(path))
    return subprocess.run([require_binary("promtool"), "check", "rules", *paths],
                          capture_output=True, text=True, timeout=120, cwd=out)


# --- dashboards.refresh ------------------------------------------------------------------------


@pytest.mark.parametrize(("refresh", "words"), [
    ("1ms", "at least 5s"),
    ("0s", "at least 5s"),
    ("1s", "at least 5s"),
    ("4999ms", "at least 5s"),
    ("1h30m", "one number and one unit"),  # Grafana reads the 1h and drops the 30m
    ("fast", "one number and one unit"),
    ("", "one number and one unit"),
    ("30 s", "one number and one unit"),
    ("1M", "one number and one unit"),  # a month to Grafana, a minute nowhere
])
def test_refresh_grafana_cannot_use_is_refused(refresh: str, words: str) -> None:
    error = error_for({"dashboards": {"refresh": refresh}})
    assert error.key == "dashboards.refresh"
    assert words in error.problem
    assert repr(refresh) in error.problem


def test_refresh_below_grafana_minimum_is_refused_from_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "dashboards:\n  refresh: 1ms\n")
    assert str(caught.value).endswith("dashboards.refresh: must be at least 5s, Grafana's "
                                      "default min_refresh_interval, got '1ms'")


@given(count=st.integers(min_value=1, max_value=10_000),
       unit=st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
@settings(max_examples=60, deadline=None)
def test_refresh_is_accepted_exactly_from_five_seconds(count: int, unit: str) -> None:
    seconds = count * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    refresh = f"{count}{unit}"
    if seconds < 5:
        assert error_for({"dashboards": {"refresh": refresh}}).key == "dashboards.refresh"
    else:
        assert from_dict({"dashboards": {"refresh": refresh}}).dashboards.refresh == refresh


def test_an_accepted_refresh_is_offered_by_the_picker() -> None:
    cfg = from_dict({"dashboards": {"refresh": "2m"}})
    for board in dashboards.render(cfg).values():
        assert board["refresh"] == "2m"
        assert "2m" in board["timepicker"]["refresh_intervals"]


# --- dashboards.tags ---------------------------------------------------------------------------


@pytest.mark.parametrize("tags", [[""], ["ml", "  "], ["\t"]])
def test_empty_dashboard_tags_are_refused(tags: list[str]) -> None:
    error = error_for({"dashboards": {"tags": tags}})
    assert error.key == "dashboards.tags"
    assert "non-empty strings" in error.problem
    assert f"at [{len(tags) - 1}]" in error.problem


def test_dashboard_tags_that_are_not_a_list_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "dashboards:\n  tags: ml\n")
    assert caught.value.key == "dashboards.tags"


@given(st.lists(st.text(min_size=1).filter(lambda t: t.strip() and not any(
    0xD800 <= ord(c) <= 0xDFFF for c in t)), max_size=5))
@settings(max_examples=40, deadline=None)
def test_non_empty_dashboard_tags_reach_every_dashboard(tags: list[str]) -> None:
    cfg = from_dict({"dashboards": {"tags": tags}})
    assert cfg.dashboards.tags == tuple(tags)


# --- selectors as Prometheus reads them --------------------------------------------------------


@pytest.mark.parametrize("model", ['job="inferwatch-model",', 'job="inferwatch-model" , ',
                                   "job='inferwatch-model', namespace=~`ml-.*`,"])
def test_a_trailing_comma_prometheus_accepts_is_accepted(model: str, tmp_path: Path) -> None:
    cfg = from_dict({"selectors": {"model": model, "exporter": 'job="inferwatch-exporter",'},
                     "pushgateway": {"selector": 'job!="",'}})
    for expr in all_exprs(cfg):
        assert ",," not in expr.replace(" ", "")
        assert ",}" not in expr.replace(" ", "")
    result = promtool_check_rules(cfg, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@given(names=st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), min_size=1,
                      max_size=4),
       trailing=st.sampled_from(["", ",", " , ", ",\t"]))
@settings(max_examples=60, deadline=None)
def test_matchers_with_a_trailing_comma_join_into_one_valid_selector(names: list[str],
                                                                     trailing: str) -> None:
    model = ", ".join(f'{name}="v"' for name in names) + trailing
    cfg = from_dict({"selectors": {"model": model}})
    assert cfg.selectors.model == ", ".join(f'{name}="v"' for name in names)


@pytest.mark.parametrize("model", ['"service.name"="fraud"', "'k8s.ns'=~\"ml-.*\", job=\"m\"",
                                   '`a-b`!="x",', '"caf\\u00e9"="1"'])
def test_prometheus_3_quoted_label_names_are_accepted(model: str) -> None:
    cfg = from_dict({"selectors": {"model": model}})
    expected = model.strip().rstrip(",")
    assert cfg.selectors.model == expected
    recorded = [rule["expr"] for group in recording_groups(cfg) for rule in group["rules"]
                if "inferwatch_requests_total{" in rule["expr"]]
    assert recorded
    for expr in recorded:
        assert (f"inferwatch_requests_total{{{expected}, " in expr
                or f"inferwatch_requests_total{{{expected}}}" in expr)


@pytest.mark.parametrize(("model", "words"), [
    ('""="x"', "quoted label name is empty"),
    ('"service.name"', "PromQL label matchers"),  # Prometheus 3's metric-name form
    ('"bad\\q"="x"', "PromQL label matchers"),
    ('job="a",,', "PromQL label matchers"),
    (',job="a"', "PromQL label matchers"),
    (",", "PromQL label matchers"),
    ('"\\ud800"="x"', "not a valid character"),
    ('{job="x"}', "without the braces"),  # copied from a query
    (' {job="x", env="prod"}', "without the braces"),
])
def test_selectors_prometheus_refuses_stay_refused(model: str, words: str) -> None:
    error = error_for({"selectors": {"model": model}})
    assert error.key == "selectors.model"
    assert words in error.problem


# --- kubernetes monitors -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["model_match_labels", "exporter_match_labels"])
def test_an_empty_monitor_selector_is_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, f"kubernetes:\n  {key}: {{}}\n")
    assert caught.value.key == f"kubernetes.{key}"
    assert "every Service or Pod in the cluster" in caught.value.problem


def test_monitors_always_select_by_some_label() -> None:
    cfg = from_dict({"kubernetes": {"model_match_labels": {"team": "ml"},
                                    "exporter_match_labels": {"app": "x"}}})
    for monitor in (kubernetes.service_monitor(cfg), kubernetes.pod_monitor(cfg)):
        assert monitor["spec"]["namespaceSelector"] == {"any": True}
        assert monitor["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(("path", "words"), [
    ("/metrics?x=1", "without a query or fragment"),
    ("/metrics#top", "without a query or fragment"),
    ("/metrics?", "without a query or fragment"),
    ("/my metrics", "spaces or control characters"),
    ("/metrics\n", "spaces or control characters"),
    ("metrics", "must start with '/'"),
])
def test_a_monitor_path_prometheus_would_mangle_is_refused(path: str, words: str) -> None:
    error = error_for({"kubernetes": {"path": path}})
    assert error.key == "kubernetes.path"
    assert words in error.problem


@pytest.mark.parametrize("path", ["/metrics", "/federate/model", "/a%20b/metrics", "/"])
def test_plain_monitor_paths_reach_both_monitors(path: str) -> None:
    cfg = from_dict({"kubernetes": {"path": path}})
    assert kubernetes.service_monitor(cfg)["spec"]["endpoints"][0]["path"] == path
    assert kubernetes.pod_monitor(cfg)["spec"]["podMetricsEndpoints"][0]["path"] == path


# --- whitespace PromQL does not skip -----------------------------------------------------------


@pytest.mark.parametrize("space", ["\u00a0", "\x0c", "\x0b", "\u2003", "\x85", "\u3000"])
@pytest.mark.parametrize("key", ["selectors.model", "selectors.exporter",
                                 "pushgateway.selector"])
def test_whitespace_promql_refuses_is_refused_in_selectors(space: str, key: str) -> None:
    section, name = key.split(".")
    error = error_for({section: {name: f'job="a",{space}env="b"'}})
    assert error.key == key
    assert "PromQL label matchers" in error.problem


@pytest.mark.integration
def test_whitespace_promql_skips_loads_in_promtool(tmp_path: Path) -> None:
    cfg = from_dict({"selectors": {"model": ' job = "a" ,\n\tenv=~"b"\r, ',
                                   "exporter": '\tjob="e"'}})
    result = promtool_check_rules(cfg, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- pushgateway.jobs --------------------------------------------------------------------------


@pytest.mark.parametrize("job", ["", " "])
def test_an_empty_pushgateway_job_name_is_refused(job: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, f'pushgateway:\n  jobs:\n    "{job}": 26h\n')
    assert caught.value.key == "pushgateway.jobs"
    assert "empty job name" in caught.value.problem
