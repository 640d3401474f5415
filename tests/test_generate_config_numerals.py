"""The generator config read the way users write it: YAML 1.1 number and date surprises,
durations in other scripts' digits, sections left empty or given the wrong empty value, and
selectors the rules cannot hold."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.generate import cli, render, rule_files
from inferwatch.generate.config import DEFAULT, ConfigError, from_dict, load

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
FIXTURE_OK = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return load(path)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'inferwatch.yaml'}: ")
    return caught.value


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def rules(cfg: object) -> dict[str, str]:
    return rule_files(render(cfg))  # type: ignore[arg-type]


def promtool_check(cfg: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    paths = []
    for relative, content in rules(cfg).items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        paths.append(str(path))
    return subprocess.run([PROMTOOL, "check", "rules", *paths], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


# --- durations: ASCII digits only --------------------------------------------------------------

NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())
DURATION_KEYS = [
    ("windows", "rate"), ("windows", "no_traffic_lookback"), ("accuracy", "window"),
    ("predictions", "max_model_age"), ("kubernetes", "scrape_interval"), ("gpu", "xid_window"),
]


@given(digit=NON_ASCII_DIGITS, unit=st.sampled_from(["s", "m", "h", "d", "w", "y", "ms"]),
       where=st.sampled_from(DURATION_KEYS))
@settings(max_examples=80, deadline=None)
def test_a_duration_in_other_digits_is_refused_naming_its_key(digit: str, unit: str,
                                                                where: tuple[str, str]) -> None:
    """Python reads "\uff15m" as 5 minutes; PromQL refuses it, and every rule file failed to
    load."""
    section, key = where
    written = f"{digit}{unit}"
    with pytest.raises(ConfigError) as caught:
        from_dict({section: {key: written}})
    assert caught.value.key == f"{section}.{key}"
    assert "Prometheus duration" in caught.value.problem


@given(digit=NON_ASCII_DIGITS)
@settings(max_examples=30, deadline=None)
def test_other_digits_are_refused_in_every_duration_form(digit: str) -> None:
    for data, key in (
        ({"alerts": {"InferwatchLatencyHigh": {"for": f"1{digit}m"}}},
         "alerts.InferwatchLatencyHigh.for"),
        ({"models": {"fraud": {"accuracy": {"window": f"{digit}h"}}}},
         "models.fraud.accuracy.window"),
        ({"baselines": {"seasonal_offsets": [f"{digit}w"]}}, "baselines.seasonal_offsets"),
        ({"pushgateway": {"jobs": {"nightly": f"2{digit}h"}}}, "pushgateway.jobs"),
    ):
        with pytest.raises(ConfigError) as caught:
            from_dict(data)
        assert caught.value.key == key


@pytest.mark.integration
def test_durations_in_every_accepted_form_load_in_promtool(tmp_path: Path) -> None:
    cfg = from_dict({"windows": {"rate": "4m59s999ms", "no_traffic_lookback": "1h30m"},
                     "accuracy": {"window": "90m"},
                     "models": {"fraud": {"accuracy": {"window": "1d2h"}}},
                     "alerts": {"InferwatchLatencyHigh": {"for": "0s"}}})
    result = promtool_check(cfg, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- YAML 1.1 numbers: octal and base 60 ---------------------------------------------------------


@given(number=st.integers(8, 10**6), zeros=st.integers(1, 3))
@FIXTURE_OK
def test_a_leading_zero_octal_count_is_refused_with_its_line(tmp_path: Path, number: int,
                                                              zeros: int) -> None:
    """PyYAML reads `min_observations: 0100` as 64: the count silently became another one."""
    written = "0" * zeros + str(number)
    if not set(str(number)) <= set("01234567"):
        return  # 089 is not octal: YAML reads it as text, refused as "must be an integer"
    error = load_error(tmp_path, f"drift:\n  min_observations: {written}\n")
    assert error.key == "drift.min_observations"
    assert "octal" in error.problem and "line 2" in error.problem
    assert written in error.problem


def test_octal_under_models_and_in_lists_is_named_by_its_dotted_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, "models:\n  fraud:\n    accuracy: {min_outcomes: 010}\n")
    assert error.key == "models.fraud.accuracy.min_outcomes"
    assert "line 3" in error.problem
    error = load_error(tmp_path, "baselines:\n  features: [age, 0755]\n")
    assert error.key == "baselines.features[1]"


@pytest.mark.parametrize(("written", "key"), [
    ("latency:\n  p99_seconds: 1:30.5\n", "latency.p99_seconds"),
    ("accuracy:\n  min_outcomes: 1:00\n", "accuracy.min_outcomes"),
    ("kubernetes:\n  scrape_interval: 1:30\n", "kubernetes.scrape_interval"),
])
def test_a_base_60_number_is_refused_naming_what_yaml_made_of_it(tmp_path: Path, written: str,
                                                                 key: str) -> None:
    error = load_error(tmp_path, written)
    assert error.key == key
    assert "base-60" in error.problem and "line 2" in error.problem


@pytest.mark.parametrize("written", ["07", "0", "1_000", "0x10", "'010'"])
def test_numbers_that_read_the_same_either_way_are_not_refused_as_octal(tmp_path: Path,
                                                                         written: str) -> None:
    try:
        load_text(tmp_path, f"drift:\n  min_observations: {written}\n")
    except ConfigError as exc:
        assert "octal" not in exc.problem and "base-60" not in exc.problem


def test_the_cli_exits_2_on_an_octal_count(tmp_path: Path, capsys) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text("accuracy:\n  min_outcomes: 0100\n")
    assert run_cli("--config", str(config), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "accuracy.min_outcomes" in err and "octal" in err
    assert not (tmp_path / "out").exists()


# --- exponents YAML 1.1 reads as text ------------------------------------------------------------


@given(whole=st.integers(1, 999), fraction=st.one_of(st.none(), st.integers(0, 99)),
       exponent=st.integers(-30, 30), unsigned=st.booleans(), upper=st.booleans())
@settings(max_examples=100, deadline=None)
def test_the_hint_for_a_number_read_as_text_is_yaml_that_reads_as_a_number(
        whole: int, fraction: int | None, exponent: int, unsigned: bool, upper: bool) -> None:
    mantissa = f"{whole}" if fraction is None else f"{whole}.{fraction}"
    sign = "" if unsigned and exponent >= 0 else ("-" if exponent < 0 else "+")
    written = f"{mantissa}{'E' if upper else 'e'}{sign}{abs(exponent)}"
    value = yaml.safe_load(f"x: {written}")["x"]
    if not isinstance(value, str):
        return  # YAML read it as a number: nothing to hint
    with pytest.raises(ConfigError) as caught:
        from_dict({"latency": {"p99_seconds": value}})
    hint = caught.value.problem.rsplit("write ", 1)[1].rstrip(")")
    suggested = yaml.safe_load(f"x: {hint}")["x"]
    assert isinstance(suggested, float), caught.value.problem
    assert suggested == pytest.approx(float(written))


# --- dates where text is meant -------------------------------------------------------------------


@pytest.mark.parametrize(("written", "key", "shown"), [
    ("dashboards:\n  time_from: 2026-01-31\n", "dashboards.time_from", "2026-01-31"),
    ("dashboards:\n  title_prefix: 2026-01-31\n", "dashboards.title_prefix", "2026-01-31"),
    ("dashboards:\n  tags: [ml, 2026-01-31]\n", "dashboards.tags", "2026-01-31"),
    ("models:\n  2026-01-31: {}\n", "models.2026-01-31", "2026-01-31"),
])
def test_an_unquoted_date_where_text_is_meant_says_to_quote_it(tmp_path: Path, written: str,
                                                               key: str, shown: str) -> None:
    error = load_error(tmp_path, written)
    assert error.key == key
    assert "quote it" in error.problem
    assert shown in error.problem and "datetime" not in error.problem


def test_the_quoted_date_loads(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "dashboards:\n  time_from: '2026-01-31'\n")
    assert cfg.dashboards.time_from == "2026-01-31"  # type: ignore[attr-defined]


# --- sections left empty, and empty values of the wrong kind -------------------------------------


def test_an_alert_override_left_empty_keeps_the_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "alerts:\n  InferwatchLatencyHigh:\n"
                              "    # severity: critical\n    # for: 2m\n"
                              "models:\n  fraud:\n    latency: {p99_seconds: 0.05}\n"
                              "    alerts:\n      InferwatchLatencyHigh:\n")
    assert rules(cfg) == rules(from_dict({"models": {"fraud": {"latency": {"p99_seconds": 0.05}}}}))


def test_an_alert_override_left_empty_still_names_a_real_alert(tmp_path: Path) -> None:
    error = load_error(tmp_path, "alerts:\n  InferwatchLatencyHihg:\n")
    assert error.key == "alerts.InferwatchLatencyHihg"


@pytest.mark.parametrize(("data", "key"), [
    ({"models": []}, "models"),
    ({"models": False}, "models"),
    ({"models": ""}, "models"),
    ({"models": {"fraud": {"alerts": []}}}, "models.fraud.alerts"),
    ({"models": {"fraud": {"alerts": False}}}, "models.fraud.alerts"),
])
def test_models_or_alerts_given_a_falsy_non_mapping_are_refused(data: dict, key: str) -> None:
    """`models: []` silently dropped every override, where `alerts: []` was refused."""
    with pytest.raises(ConfigError) as caught:
        from_dict(data)
    assert caught.value.key == key
    assert "must be a mapping" in caught.value.problem


def test_an_empty_models_section_is_still_every_default() -> None:
    assert from_dict({"models": None}) == DEFAULT
    assert from_dict({"models": {"fraud": {"alerts": None}}}).models["fraud"].alerts == {}


# --- selectors: the rules set the metric name themselves -----------------------------------------


@pytest.mark.parametrize("key", ["model", "exporter"])
@pytest.mark.parametrize("matcher", ['__name__=~"inferwatch_.*"', '"__name__"!=""',
                                     "job=\"x\", __name__!~`up`"])
def test_a_metric_name_matcher_in_a_selector_is_refused(key: str, matcher: str) -> None:
    """Every rule writes a metric name before the braces: PromQL refuses a second one, so the
    whole rule file failed to load in Prometheus."""
    with pytest.raises(ConfigError) as caught:
        from_dict({"selectors": {key: matcher}})
    assert caught.value.key == f"selectors.{key}"
    assert "metric name" in caught.value.problem


def test_a_metric_name_matcher_in_the_pushgateway_selector_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"pushgateway": {"selector": '__name__="push_time_seconds"'}})
    assert caught.value.key == "pushgateway.selector"


@pytest.mark.integration
def test_selectors_naming_other_labels_still_load_in_promtool(tmp_path: Path) -> None:
    cfg = from_dict({"selectors": {"model": 'job="inferwatch-model", name__="x", '
                                            'team=~"__name__|ml"'}})
    result = promtool_check(cfg, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
