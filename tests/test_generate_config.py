"""The generator config: defaults, YAML loading, and errors that name the key."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for
from inferwatch.generate import cli
from inferwatch.generate.alert_names import ALERT_NAMES
from inferwatch.generate.config import DEFAULT, ConfigError, from_dict, load
from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import leaves
from inferwatch.generate.rules_alerts import ALERTS

ROOT = Path(__file__).resolve().parents[1]



def test_overrides_keep_the_other_defaults() -> None:
    cfg = from_dict({"slo": {"slow_burn": {"factor": 3}}, "gpu": {"temperature_celsius": 80}})
    assert cfg.slo.slow_burn.factor == 3.0
    # the rest of the section keeps its own default, not the fast burn's
    assert cfg.slo.slow_burn.long_window == "6h"
    assert cfg.slo.fast_burn == DEFAULT.slo.fast_burn
    assert cfg.gpu.temperature_celsius == 80.0
    assert cfg.gpu.memory_used_ratio == DEFAULT.gpu.memory_used_ratio


def test_empty_and_missing_config_are_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing to override\n")
    assert load(empty) == DEFAULT
    assert load(None) == DEFAULT
    assert from_dict({}) == DEFAULT


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"latncy": {}}, "latncy", "unknown key"),
    ({"latency": {"p99": 1}}, "latency.p99", "unknown key"),
    ({"slo": {"fast_burn": {"windw": "1h"}}}, "slo.fast_burn.windw", "unknown key"),
    ({"latency": {"p99_seconds": "fast"}}, "latency.p99_seconds", "must be a number"),
    ({"latency": {"p99_seconds": True}}, "latency.p99_seconds", "must be a number"),
    ({"latency": {"p99_seconds": float("inf")}}, "latency.p99_seconds", "finite"),
    ({"drift": {"min_observations": 10.5}}, "drift.min_observations", "must be an integer"),
    ({"drift": {"min_observations": 0}}, "drift.min_observations", "more than zero"),
    ({"slo": {"availability": 1.5}}, "slo.availability", "between 0 and 1"),
    ({"slo": {"availability": 1}}, "slo.availability", "between 0 and 1"),
    ({"data_quality": {"missing_ratio": -0.1}}, "data_quality.missing_ratio", "between 0 and 1"),
    ({"gpu": {"temperature_celsius": 0}}, "gpu.temperature_celsius", "more than zero"),
    ({"windows": {"rate": "5 minutes"}}, "windows.rate", "Prometheus duration"),
    ({"windows": {"rate": "0m"}}, "windows.rate", "more than zero"),
    ({"windows": {"rate": 5}}, "windows.rate", "must be a string"),
    ({"drift": {"method": "kl"}}, "drift.method", "one of psi, js, ks"),
    ({"selectors": {"model": "{job=\"m\"}"}}, "selectors.model", "label matchers"),
    ({"selectors": {"model": ""}}, "selectors.model", "label matchers"),
    ({"selectors": "job=\"m\""}, "selectors", "must be a mapping"),
    ({"links": {"runbook_url": "https://x/{alert}"}}, "links.runbook_url", "{anchor}"),
    ({"links": {"runbook_url": "https://x/runbooks"}}, "links.runbook_url", "{anchor}"),
    ({"links": {"grafana_url": "grafana:3000"}}, "links.grafana_url", "http(s) URL"),
    ({"kubernetes": {"namespace": "Monitoring"}}, "kubernetes.namespace", "Kubernetes name"),
    ({"kubernetes": {"labels": {"team": 1}}}, "kubernetes.labels.team", "strings"),
    ({"kubernetes": {"labels": {"bad key!": "x"}}}, "kubernetes.labels", "label name"),
    ({"dashboards": {"tags": ["a", 2]}}, "dashboards.tags", "list of strings"),
    ({"dashboards": {"uid_prefix": "has space"}}, "dashboards.uid_prefix", "letters"),
    ({"alerts": {"InferwatchNope": {"severity": "warning"}}}, "alerts.InferwatchNope",
     "unknown alert"),
    ({"alerts": {"InferwatchGpuLost": {"severity": "page"}}},
     "alerts.InferwatchGpuLost.severity", "one of critical"),
    ({"alerts": {"InferwatchGpuLost": {"for": "soon"}}}, "alerts.InferwatchGpuLost.for",
     "Prometheus duration"),
    ({"alerts": {"InferwatchGpuLost": {"fore": "5m"}}}, "alerts.InferwatchGpuLost.fore",
     "unknown key"),
    ({"slo": {"fast_burn": {"short_window": "2h"}}}, "slo.fast_burn.short_window", "shorter"),
    ({"slo": {"availability": 0.5, "fast_burn": {"factor": 14.4}}}, "slo.fast_burn.factor",
     "never fire"),
    ([1, 2], "(top level)", "must be a mapping"),
    ({"models": [1]}, "models", "must be a mapping"),
    ({"models": {"fraud": 1}}, "models.fraud", "must be a mapping"),
    ({"models": {"fraud": {"latncy": {}}}}, "models.fraud.latncy", "unknown key"),
    ({"models": {"fraud": {"latency": {"p99": 1}}}}, "models.fraud.latency.p99", "unknown key"),
    ({"models": {"fraud": {"gpu": {"temperature_celsius": 80}}}}, "models.fraud.gpu",
     "not a per-model setting"),
    ({"models": {"fraud": {"drift": {"method": "js"}}}}, "models.fraud.drift.method",
     "not a per-model setting"),
    ({"models": {"fraud": {"windows": {"rate": "1m"}}}}, "models.fraud.windows.rate",
     "not a per-model setting"),
    ({"models": {"fraud": {"latency": {"p99_seconds": -1}}}},
     "models.fraud.latency.p99_seconds", "more than zero"),
    ({"models": {"fraud": {"accuracy": {"window": "soon"}}}}, "models.fraud.accuracy.window",
     "Prometheus duration"),
    ({"models": {"fraud": {"slo": {"availability": 0.5}}}}, "models.fraud.slo.fast_burn.factor",
     "never fire"),
    ({"models": {"fraud": {"alerts": {"InferwatchNope": {}}}}},
     "models.fraud.alerts.InferwatchNope", "unknown alert"),
    ({"models": {"fraud": {"alerts": {"InferwatchGpuLost": {"for": "1m"}}}}},
     "models.fraud.alerts.InferwatchGpuLost", "not judged per model"),
    ({"models": {"fraud": {"alerts": {"InferwatchLatencyHigh": {"severity": "page"}}}}},
     "models.fraud.alerts.InferwatchLatencyHigh.severity", "one of critical"),
    ({"models": {"fr(": {}}}, "models.fr(", "not a valid regex"),
    ({"models": {"(?!fraud).*": {}}}, "models.(?!fraud).*", "RE2"),
    ({"models": {"": {}}}, "models.", "non-empty"),
    ({"models": {"fr.*": {}, "fraud": {}}}, "models.fraud", "never applies"),
])
def test_invalid_values_name_their_key(data: object, key: str, words: str) -> None:
    error = error_for(data)
    assert error.key == key
    assert words in str(error)
    assert str(error).startswith(f"{key}: ")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("latency:\n  p99_seconds: -1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: latency\.p99_seconds: must be more"):
        load(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("latency: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: \(file\): is not valid YAML"):
        load(broken)
    with pytest.raises(ConfigError, match=r"missing\.yaml: \(file\): cannot be read"):
        load(tmp_path / "missing.yaml")


def test_alert_overrides_apply_to_their_alert_only() -> None:
    cfg = from_dict({"alerts": {"InferwatchLatencyHigh": {"severity": "critical",
                                                          "for": "3m"}}})
    from inferwatch.generate.rules import alerting_groups

    rules = {r["alert"]: r for g in alerting_groups(cfg) for r in g["rules"]}
    assert rules["InferwatchLatencyHigh"]["labels"]["severity"] == "critical"
    assert rules["InferwatchLatencyHigh"]["for"] == "3m"
    defaults = {a.name: a for a in ALERTS}
    for name, rule in rules.items():
        if name != "InferwatchLatencyHigh":
            assert rule["for"] == defaults[name].for_
            assert rule["labels"]["severity"] == defaults[name].severity


def test_duration_seconds() -> None:
    assert duration_seconds("30d") == 30 * 86400
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("250ms") == 0.25


def test_example_config_lists_every_key_with_its_default() -> None:
    example = ROOT / "inferwatch.example.yaml"
    assert load(example) == DEFAULT
    data = yaml.safe_load(example.read_text())
    for key, _, _ in leaves():
        node = data
        for part in key.split("."):
            assert part in node, f"inferwatch.example.yaml lacks {key}"
            node = node[part]


def test_configuration_reference_documents_every_key_and_alert() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for key, _, value in leaves():
        if key == "alerts":
            continue
        assert f"`{key}`" in doc, f"docs/configuration.md lacks {key}"
        shown = repr(value) if isinstance(value, float) else str(value)
        if isinstance(value, Mapping):
            shown = json.dumps(dict(value))
        elif isinstance(value, tuple):
            shown = json.dumps(list(value))
        elif isinstance(value, bool):
            shown = json.dumps(value)  # written as YAML spells it
        assert shown.replace("|", "\\|") in doc, f"docs/configuration.md lacks the default of {key}"
    for name in ALERT_NAMES:
        assert f"`{name}`" in doc


# Values a user might write anywhere in the file: the loader must either accept them or
# raise ConfigError, never anything else.
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                     st.sampled_from(["5m", "1h", "psi", "critical", 'job="x"', "0.5"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
_sections = st.sampled_from([key.split(".")[0] for key, _, _ in leaves()])
_fields = st.sampled_from([key.split(".")[-1] for key, _, _ in leaves()] + ["for", "severity"])


_section_bodies = st.one_of(
    _values, st.dictionaries(st.one_of(_fields, st.sampled_from(sorted(ALERT_NAMES))),
                             _values, max_size=4))
_patterns = st.one_of(st.sampled_from(["fraud", "fr.*", "rec-[0-9]+", "(", "a\\1", ""]),
                      st.text(max_size=6))
_model_bodies = st.dictionaries(
    st.sampled_from(["latency", "slo", "accuracy", "drift", "windows", "alerts", "gpu", "x"]),
    _section_bodies, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_sections, _section_bodies, max_size=4),
       st.one_of(st.none(), _values, st.dictionaries(_patterns, _model_bodies, max_size=3)))
def test_any_input_loads_or_names_a_key(data: dict, models: object) -> None:
    if models is not None:
        data = {**data, "models": models}
    try:
        cfg = from_dict(data)
    except ConfigError as exc:
        assert exc.key
        assert str(exc).startswith(exc.key)
        return
    from inferwatch.generate.rules import alerting_groups, recording_groups

    assert recording_groups(cfg) and alerting_groups(cfg)


def test_cli_reports_a_bad_config_with_status_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "inferwatch.yaml"
    bad.write_text(textwrap.dedent("""\
        drift:
          feature_threshold: high
    """))
    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    status = cli.run(parser.parse_args(["--config", str(bad), "--out", str(tmp_path)]))
    assert status == 2
    err = capsys.readouterr().err
    assert "inferwatch.yaml: drift.feature_threshold: must be a number" in err
    assert not (tmp_path / "dashboards").exists()


def test_cli_writes_then_checks(tmp_path: Path) -> None:
    good = tmp_path / "inferwatch.yaml"
    good.write_text("latency:\n  p99_seconds: 0.25\n")
    out = tmp_path / "out"
    run = [sys.executable, "-m", "inferwatch.cli", "generate", "--config", str(good),
           "--out", str(out)]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    assert "> 0.25" in (out / "alerts" / "alerting-rules.yml").read_text()
    assert subprocess.run([*run, "--check"], capture_output=True, timeout=120).returncode == 0
    (out / "dashboards" / "resources.json").write_text("{}\n")
    stale = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1
    assert "resources.json" in stale.stderr


def test_loading_the_generators_does_not_load_grafanalib_or_yaml() -> None:
    # Only rendering pays for grafanalib and the YAML parser.
    code = textwrap.dedent("""
        import sys
        import inferwatch
        before = set(sys.modules)
        import inferwatch.generate, inferwatch.generate.cli, inferwatch.generate.config
        from inferwatch.generate.config import DEFAULT
        new = set(sys.modules) - before
        heavy = sorted(m for m in new if m.split(".")[0] in ("grafanalib", "yaml", "attr"))
        print(",".join(heavy))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == ""


def test_the_config_is_frozen_all_the_way_down() -> None:
    """No default can be changed in place and leak into every later config."""
    loaded = from_dict({"kubernetes": {"labels": {"team": "ml"}}, "dashboards": {"tags": ["a"]},
                        "alerts": {"InferwatchGpuLost": {"for": "2m"}}})
    for cfg in (DEFAULT, loaded):
        for key, _, value in leaves(cfg):
            assert not isinstance(value, (list, dict, set)), f"{key} is mutable: {value!r}"
            if isinstance(value, Mapping):
                with pytest.raises(TypeError):
                    value["x"] = "y"  # type: ignore[index]
    assert loaded.dashboards.tags == ("a",)
    assert DEFAULT.kubernetes.labels == {"app.kubernetes.io/part-of": "inferwatch"}


def test_the_alert_names_are_the_rule_table() -> None:
    assert tuple(alert.name for alert in ALERTS) == ALERT_NAMES


def test_model_overrides_keep_their_order_and_the_defaults() -> None:
    cfg = from_dict({"models": {"fraud": {"latency": {"p99_seconds": 0.05}},
                                "rec-.*": {"accuracy": {"window": "2h"}}}})
    assert list(cfg.models) == ["fraud", "rec-.*"]
    assert cfg.models["fraud"].values == {"latency.p99_seconds": 0.05}
    assert cfg.models["rec-.*"].earlier == ()  # no plain name it could also match
    # the top level is untouched by a model's values
    assert cfg.latency == DEFAULT.latency and cfg.accuracy == DEFAULT.accuracy
    assert from_dict({"models": None}) == DEFAULT


def test_objectives_for_many_models_add_no_alert_rule() -> None:
    """The rule count stays bounded: objectives are data; only reshaping overrides copy."""
    from inferwatch.generate.rules import alerting_groups, recording_groups

    def counts(data: dict) -> tuple[int, int]:
        cfg = from_dict(data)
        return (sum(len(g["rules"]) for g in alerting_groups(cfg)),
                sum(len(g["rules"]) for g in recording_groups(cfg)))

    base = counts({})
    objectives = {f"model-{i}": {"latency": {"p99_seconds": 0.01 * (i + 1)},
                                 "accuracy": {"min_ratio": 0.5 + i / 400},
                                 "slo": {"availability": 0.99}} for i in range(100)}
    assert counts({"models": objectives}) == base
    reshaped = {f"model-{i}": {"alerts": {"InferwatchLatencyHigh": {"for": f"{i + 11}m"}}}
                for i in range(100)}
    alerts, recording = counts({"models": reshaped})
    assert (alerts, recording) == (base[0] + 100, base[1])
