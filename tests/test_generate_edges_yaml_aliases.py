"""Configs as users write them: YAML aliases and nesting, sections left empty, numbers where
text is meant, and settings whose wrong values only show up as broken links or silent scrapes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import cli, render
from inferwatch.generate.config import DEFAULT, ConfigError, from_dict, load
from inferwatch.generate.kubernetes import pod_monitor, service_monitor
from inferwatch.generate.rules import alerting_groups


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return load(path)


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return info.value


# --- YAML that parses but cannot be a config ---------------------------------------------


def test_an_alias_of_its_own_parent_is_a_config_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text("dashboards:\n  tags: &tags [inferwatch, *tags]\n")
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "dashboards.tags[1]" in err and "contains it" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(30)
def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    # Six levels of nine aliases: half a million strings from seven short lines.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 7)]
    text = "\n".join(lines) + "\ndashboards:\n  tags: *a6\n"
    exc = error_of(tmp_path, text)
    assert "aliases" in exc.problem, exc


@pytest.mark.parametrize("depth", [600, 3000])
def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path, depth: int, capsys) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text("models:\n  fraud: " + "[" * depth + "]" * depth + "\n")
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(config) in err, err


def test_aliases_and_merge_keys_users_write_still_load(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "models:\n"
                              "  fraud: &strict\n"
                              "    latency: {p99_seconds: 0.05}\n"
                              "  ranker: *strict\n"
                              "  scorer:\n"
                              "    <<: *strict\n"
                              "    accuracy: {min_ratio: 0.7}\n")
    assert cfg.models["ranker"].values == cfg.models["fraud"].values
    assert cfg.models["scorer"].values["accuracy.min_ratio"] == 0.7


# --- the top level and empty sections -----------------------------------------------------


@pytest.mark.parametrize("text, kind", [("[]", "list"), ("false", "bool"), ("0", "int"),
                                        ("''", "str"), ("no", "bool")])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str,
                                                      kind: str) -> None:
    exc = error_of(tmp_path, text + "\n")
    assert exc.key == "(top level)" and kind in exc.problem, exc


@pytest.mark.parametrize("text", ["", "# nothing changed yet\n", "{}\n", "---\n"])
def test_an_empty_document_keeps_the_defaults(tmp_path: Path, text: str) -> None:
    assert load_text(tmp_path, text) == DEFAULT


def test_sections_whose_keys_were_all_deleted_keep_their_defaults(tmp_path: Path) -> None:
    # What "delete what you do not change" in inferwatch.example.yaml leaves behind.
    cfg = load_text(tmp_path, "slo:\n"
                              "  # availability: 0.999\n"
                              "  fast_burn:\n"
                              "baselines:\n"
                              "  traffic:\n"
                              "alerts:\n"
                              "  # InferwatchLatencyHigh: {for: 5m}\n"
                              "pushgateway:\n"
                              "  jobs:\n"
                              "kubernetes:\n")
    assert cfg == DEFAULT


def test_an_empty_model_entry_or_section_loads(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "models:\n"
                              "  fraud:\n"
                              "  ranker:\n"
                              "    slo:\n"
                              "    latency: {p99_seconds: 2}\n")
    assert dict(cfg.models["fraud"].values) == {}
    assert dict(cfg.models["ranker"].values) == {"latency.p99_seconds": 2.0}


def test_an_empty_value_is_still_refused_where_it_would_drop_a_default(tmp_path: Path) -> None:
    # Empty labels would take the label the operator selects on off every manifest.
    exc = error_of(tmp_path, "kubernetes:\n  labels:\n")
    assert exc.key == "kubernetes.labels", exc
    exc = error_of(tmp_path, "slo:\n  availability:\n")
    assert exc.key == "slo.availability", exc


# --- numbers and booleans where text is meant ----------------------------------------------


def _quote_hint(exc: ConfigError) -> None:
    assert "quote it" in exc.problem, exc


@pytest.mark.parametrize("text, key, shown", [
    ("models:\n  1.10: {latency: {p99_seconds: 1}}\n", "models.1.1", "float 1.1"),
    ("kubernetes:\n  labels: {version: 1.10}\n", "kubernetes.labels.version", "float 1.1"),
    ("kubernetes:\n  labels: {canary: yes}\n", "kubernetes.labels.canary", "bool True"),
    ("kubernetes:\n  model_job: 2024\n", "kubernetes.model_job", "int 2024"),
    ("baselines:\n  latency_quantiles: ['0.5', 0.99]\n", "baselines.latency_quantiles",
     "float 0.99"),
    ("dashboards:\n  tags: [ml, on]\n", "dashboards.tags", "bool True"),
])
def test_a_number_where_text_is_meant_says_to_quote_it(tmp_path: Path, text: str, key: str,
                                                      shown: str) -> None:
    exc = error_of(tmp_path, text)
    assert exc.key == key and shown in exc.problem, exc
    _quote_hint(exc)


def test_a_list_error_names_the_item(tmp_path: Path) -> None:
    exc = error_of(tmp_path, "baselines:\n  features: [age, income, 7]\n")
    assert exc.key == "baselines.features" and "[2]" in exc.problem, exc


_NOT_TEXT = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                      st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_NOT_TEXT, where=st.sampled_from(["tags", "features", "labels"]))
def test_any_scalar_where_text_is_meant_is_named(value: object, where: str) -> None:
    data = {"tags": {"dashboards": {"tags": ["ok", value]}},
            "features": {"baselines": {"features": [value]}},
            "labels": {"kubernetes": {"labels": {"team": value}}}}[where]
    # Through YAML, as a user's file would reach the loader.
    parsed = yaml.safe_load(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        from_dict(parsed)
    assert repr(value) in info.value.problem or repr(float(value)) in info.value.problem
    _quote_hint(info.value)


# --- settings that break links or scrapes without an error -------------------------------


@pytest.mark.parametrize("url", ["https://grafana.example.com/?orgId=2",
                                 "https://grafana.example.com/#/home",
                                 "https://grafana.example.com?orgId=1"])
def test_a_grafana_url_with_a_query_or_fragment_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict({"links": {"grafana_url": url}})
    assert info.value.key == "links.grafana_url" and "query or fragment" in info.value.problem


@settings(max_examples=40, deadline=None)
@given(path=st.lists(st.text("abcxyz019-_.~", min_size=1, max_size=8), max_size=3),
       slash=st.booleans())
def test_every_accepted_grafana_url_gives_working_dashboard_links(path: list[str],
                                                                   slash: bool) -> None:
    base = "https://grafana.example.com" + "".join(f"/{p}" for p in path) + ("/" if slash else "")
    cfg = from_dict({"links": {"grafana_url": base}})
    for group in alerting_groups(cfg):
        for rule in group["rules"]:
            link = rule["annotations"]["dashboard_url"]
            assert link.startswith(base.rstrip("/") + "/d/"), link
            assert link.count("?") <= 1 and "#" not in link, link


@pytest.mark.parametrize("port", ["Metrics", "http metrics", "8080", "x" * 16, "-metrics",
                                  "metrics-", "web--metrics", "metrics_port"])
def test_a_port_kubernetes_could_never_name_is_refused(port: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict({"kubernetes": {"port": port}})
    assert info.value.key == "kubernetes.port" and repr(port) in info.value.problem


@pytest.mark.parametrize("port", ["metrics", "http-metrics", "web", "m", "p8080",
                                  "a23456789012345"])
def test_a_valid_port_name_reaches_both_monitors(port: str) -> None:
    cfg = from_dict({"kubernetes": {"port": port}})
    assert service_monitor(cfg)["spec"]["endpoints"][0]["port"] == port
    assert pod_monitor(cfg)["spec"]["podMetricsEndpoints"][0]["port"] == port
    assert f"port: {port}\n" in render(cfg)["alerts/kubernetes/servicemonitor.yaml"]
