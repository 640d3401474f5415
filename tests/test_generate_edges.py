"""Edges of `inferwatch generate` as an SRE meets them: user text inside alert templates,
quantile spellings the exporter never writes, and errors that stay on one line."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from inferwatch.generate import cli, render, rule_files
from inferwatch.generate.config import ConfigError, from_dict, load
from inferwatch.generate.rules import alerting_groups, baseline_recording_groups

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool_check_rules(cfg: Any) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` over every rule file rendered from `cfg`."""
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for relative, content in rule_files(render(cfg)).items():
            path = Path(directory) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            paths.append(str(path))
        return subprocess.run([PROMTOOL, "check", "rules", *paths], capture_output=True,
                              text=True, timeout=120)


# --- user text inside Prometheus' alert templates ---------------------------------------------

# Prometheus expands every alert label and annotation as a Go template, so text a user wrote
# there must not open an action of its own.
_TEMPLATE_TEXT = st.sampled_from(["{{", "{{ end }}", "{{ $x }}", "{{b", "a{{{b", "}}{{", "{{-"])


@pytest.mark.integration
@settings(max_examples=12, deadline=None)
@given(_TEMPLATE_TEXT, st.sampled_from(["model", "exporter", "pushgateway", "job", "pattern"]))
def test_template_delimiters_in_user_text_pass_promtool(text: str, where: str) -> None:
    quoted = json.dumps(text)
    data: dict[str, Any] = {
        "model": {"selectors": {"model": f"job={quoted}"}},
        "exporter": {"selectors": {"exporter": f"job={quoted}"}},
        "pushgateway": {"pushgateway": {"selector": f"job={quoted}"}},
        "job": {"pushgateway": {"jobs": {f"nightly{text}": "26h"}}},
        # A pattern that reshapes an alert gets its own copy, labelled with the pattern.
        "pattern": {"models": {f"fraud{text}": {"accuracy": {"window": "2h"}}}},
    }[where]
    cfg = from_dict(data)
    result = promtool_check_rules(cfg)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_model_pattern_label_expands_to_the_pattern_itself() -> None:
    """Go's template engine turns the escaped label back into what the user wrote."""
    cfg = from_dict({"models": {"fraud{{b": {"accuracy": {"window": "2h"}}}})
    labels = [rule["labels"]["model_override"] for group in alerting_groups(cfg)
              for rule in group["rules"] if "model_override" in rule["labels"]]
    assert labels
    expanded = {re.sub(r'\{\{ "((?:[^"\\]|\\.)*)" \}\}', lambda m: json.loads(f'"{m[1]}"'),
                       label) for label in labels}
    assert expanded == {"fraud{{b"}


# --- quantile spellings -----------------------------------------------------------------------


def _selected_quantiles(cfg: Any, metric: str) -> str:
    """The regex the baseline rules select `metric`'s quantile label with."""
    for group in baseline_recording_groups(cfg):
        for rule in group["rules"]:
            found = re.search(re.escape(metric) + r'\{[^}]*quantile=~"((?:[^"\\]|\\.)*)"',
                              rule["expr"])
            if found:
                return json.loads(f'"{found[1]}"')
    raise AssertionError(f"no baseline rule selects {metric}")


_SPELLINGS = st.floats(0.001, 0.999).flatmap(lambda q: st.sampled_from([
    repr(q), f"{q:.3f}", f"{q:.2f}0", f"{q:.3f}".lstrip("0"), f"{q:e}", f"{q * 100:.0f}e-2",
])).filter(lambda text: 0 < float(text) < 1)


@settings(max_examples=60, deadline=None)
@given(_SPELLINGS, st.sampled_from([("prediction_quantiles", "inferwatch_prediction"),
                                    ("confidence_quantiles", "inferwatch_prediction_confidence")]))
def test_an_accepted_quantile_selects_the_label_the_exporter_writes(
        spelling: str, listed: tuple[str, str]) -> None:
    key, metric = listed
    try:
        cfg = from_dict({"baselines": {key: [spelling]}})
    except ConfigError as exc:
        assert exc.key == f"baselines.{key}"
        assert floatToGoString(float(spelling)) in exc.problem  # says how to write it
        return
    label = floatToGoString(float(spelling))  # what inferwatch exposes in `quantile`
    assert re.fullmatch(_selected_quantiles(cfg, metric), label), (spelling, label)


@pytest.mark.parametrize("spelling", [".9", "0.90", "9e-1", "0.5000"])
def test_a_quantile_spelled_unlike_its_label_names_its_key(spelling: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"baselines": {"prediction_quantiles": [spelling]}})
    assert caught.value.key == "baselines.prediction_quantiles"
    assert repr(floatToGoString(float(spelling))) in caught.value.problem


# --- errors on one line -----------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


@pytest.mark.parametrize("text", [
    "latency: {p99_seconds: 1\n",
    "latency:\n  p99_seconds: [1\n",
    "latency:\n p99_seconds: 1\n  x: 2\n",
    "a: b: c\n",
    "latency:\n\tp99_seconds: 1\n",
])
def test_yaml_that_does_not_parse_is_one_line_naming_where(tmp_path: Path, capsys,
                                                           text: str) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text(text)
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"inferwatch generate: invalid config: {config}: (file): is not "
                          f"valid YAML")
    assert re.search(r"line \d+, column \d+", err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pattern", ["fraud\nranker", "fr\r.*", "a\tb\x00"])
def test_a_model_key_with_control_characters_is_named_on_one_line(tmp_path: Path, capsys,
                                                                  pattern: str) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text(json.dumps({"models": {pattern: {"latency": {"p99_seconds": "fast"}}}}))
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert caught.value.key == f"models.{pattern}.latency.p99_seconds"  # the key itself
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\r" not in err, err
    assert f"models.{repr(pattern)[1:-1]}.latency.p99_seconds: must be a number" in err


# --- text that is not Unicode -----------------------------------------------------------------

# YAML's "\ud800" escape makes a lone surrogate: no UTF-8 file can hold it, and PyYAML writes
# it back as an escape that promtool refuses to read.
_SURROGATES = st.builds(lambda before, code, after: f"{before}{chr(code)}{after}",
                        st.text("ab", max_size=2), st.integers(0xD800, 0xDFFF),
                        st.text("ab", max_size=2))


@settings(max_examples=30, deadline=None)
@given(_SURROGATES, st.sampled_from(["model", "selector", "feature", "title", "job", "tag"]))
def test_a_lone_surrogate_is_refused_naming_its_key(text: str, where: str) -> None:
    data, key = {
        "model": ({"models": {text: {"latency": {"p99_seconds": 2}}}}, f"models.{text}"),
        "selector": ({"selectors": {"model": f'job="{text}"'}}, "selectors.model"),
        "feature": ({"baselines": {"features": [text]}}, "baselines.features"),
        "title": ({"dashboards": {"title_prefix": text}}, "dashboards.title_prefix"),
        "job": ({"pushgateway": {"jobs": {text: "26h"}}}, f"pushgateway.jobs.{text}"),
        "tag": ({"dashboards": {"tags": ["ml", text]}}, "dashboards.tags"),
    }[where]
    with pytest.raises(ConfigError) as caught:
        from_dict(data)
    assert caught.value.key == key
    assert "surrogate" in caught.value.problem


@pytest.mark.integration
def test_a_surrogate_escape_in_the_yaml_file_is_a_config_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text('models:\n  "fraud\\ud800": {latency: {p99_seconds: 2}}\n')
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "models.fraud\\ud800: holds the lone surrogate" in err, err
    err.encode("utf-8")  # printable on any UTF-8 terminal
    assert not (tmp_path / "out").exists()


# --- numbers YAML reads as text ---------------------------------------------------------------


@pytest.mark.parametrize(("written", "hint"), [("1e-3", "1.0e-3"), ("5E+2", "5.0E+2"),
                                               ("2e3", "2.0e3")])
def test_exponent_without_a_dot_says_how_to_write_it(tmp_path: Path, written: str,
                                                     hint: str) -> None:
    """YAML 1.1 (PyYAML) reads 1e-3 as a string; the error says what to write instead."""
    config = tmp_path / "inferwatch.yaml"
    config.write_text(f"latency:\n  p99_seconds: {written}\n")
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert caught.value.key == "latency.p99_seconds"
    assert hint in caught.value.problem
