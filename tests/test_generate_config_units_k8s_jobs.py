"""Generator config, second pass over the Kubernetes keys and durations:

1. a duration written as a bare number (`rate: 10`, `for: 5`, `010`, `08`) is told at once
   that it needs a unit, instead of being asked to quote it and then told that the quoted
   number is no duration;
2. `kubernetes.model_job` / `exporter_job` padded with space are refused, as Pushgateway job
   names are; a job renamed without its selector moves the selector with it, where the rules
   kept selecting the default job and read nothing;
3. `kubernetes.exporter_path`: the exporter Pods' own metrics path;
4. `kubernetes.*_scrape.tls_cert` / `tls_key`: the client certificate of mTLS.

The manifests are checked against the Prometheus Operator's CRD schemas, as in
test_kubernetes_crds.py, and rule files with a derived selector against promtool.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from config_errors import error_for
from inferwatch.generate import _yaml, cli, render, rule_files
from inferwatch.generate import config_checks as check
from inferwatch.generate.config import DEFAULT, ConfigError, from_dict, load
from inferwatch.generate.config_schema import leaves
from inferwatch.generate.kubernetes import pod_monitor, service_monitor
from test_generate_edges_promtool import PROMTOOL
from test_generate_outputs import _nested
from test_kubernetes_crds import VALIDATORS


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "inferwatch.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value


def crd_errors(document: dict[str, Any]) -> list[str]:
    """The CRD schema's complaints about a manifest as kubectl reads the generated file."""
    read = yaml.safe_load(_yaml(document))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATORS[document["kind"]].iter_errors(read)]


def model_endpoint(cfg) -> dict[str, Any]:
    return yaml.safe_load(_yaml(service_monitor(cfg)))["spec"]["endpoints"][0]


def exporter_endpoint(cfg) -> dict[str, Any]:
    return yaml.safe_load(_yaml(pod_monitor(cfg)))["spec"]["podMetricsEndpoints"][0]


# --- 1. a duration needs a unit ----------------------------------------------------------------

# Every leaf holding a duration, with the shape a bare number takes there.
DURATION_CHECKS = (check.duration, check.duration_or_zero, check.grafana_refresh)
DURATION_KEYS = sorted(key for key, spec, _ in leaves()
                       if spec.metadata.get("check") in DURATION_CHECKS)


def _bare_unit_problem(error: ConfigError, key: str, count: int) -> None:
    """The error names `key` and says at once that the duration needs a unit, suggesting the
    number with one; it must not send the user to quote the number first."""
    assert error.key == key, error
    assert "needs a unit" in error.problem, error
    assert f"{count}m" in error.problem, error
    assert "quote" not in error.problem, error


@pytest.mark.parametrize(("data", "key", "count"), [
    ({"windows": {"rate": 10}}, "windows.rate", 10),
    ({"windows": {"rate": "10"}}, "windows.rate", 10),
    ({"windows": {"rate": "010"}}, "windows.rate", 10),
    ({"windows": {"rate": "08"}}, "windows.rate", 8),
    ({"alerts": {"InferwatchLatencyHigh": {"for": 5}}}, "alerts.InferwatchLatencyHigh.for", 5),
    ({"alerts": {"InferwatchLatencyHigh": {"for": "0"}}}, "alerts.InferwatchLatencyHigh.for", 0),
    ({"baselines": {"traffic": {"window": 20}}}, "baselines.traffic.window", 20),
    ({"dashboards": {"refresh": 30}}, "dashboards.refresh", 30),
    ({"pushgateway": {"jobs": {"nightly": 26}}}, "pushgateway.jobs.nightly", 26),
    ({"pushgateway": {"jobs": {"nightly": "26"}}}, "pushgateway.jobs", 26),
    ({"models": {"fr.aud": {"windows": {"no_traffic_lookback": 60}}}},
     "models.fr.aud.windows.no_traffic_lookback", 60),
    ({"models": {"fraud": {"alerts": {"InferwatchLatencyHigh": {"for": 3}}}}},
     "models.fraud.alerts.InferwatchLatencyHigh.for", 3),
])
def test_a_bare_number_where_a_duration_is_meant_is_told_it_needs_a_unit(
        data: dict[str, Any], key: str, count: int) -> None:
    """It read "must be a string ... quote it", and once quoted "must be a Prometheus
    duration": two rounds to learn that 10 needs its unit."""
    _bare_unit_problem(error_for(data), key, count)


def test_a_bare_number_in_a_list_of_durations_names_its_item() -> None:
    error = error_for({"baselines": {"seasonal_offsets": ["1w", 7]}})
    _bare_unit_problem(error, "baselines.seasonal_offsets", 7)
    assert error.problem.endswith("at [1]")


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(DURATION_KEYS), count=st.integers(0, 10**9),
       as_text=st.booleans(), zeros=st.integers(0, 2))
def test_any_bare_count_at_any_duration_key_gets_a_unit_that_is_a_duration(
        key: str, count: int, as_text: bool, zeros: int) -> None:
    value: Any = f"{'0' * zeros}{count}" if as_text else count
    error = error_for(_nested({key: value}))
    _bare_unit_problem(error, key, count)
    # The suggestion itself is a duration Prometheus reads (10**9 s is some 32 years).
    assert f"{count}s" in error.problem and check.duration_or_zero(f"{count}s") is None


@pytest.mark.parametrize("value", [-5, "-5", 1e400, "5 m", True])
def test_values_that_are_not_bare_counts_keep_their_own_problem(value: Any) -> None:
    error = error_for({"windows": {"rate": value}})
    assert error.key == "windows.rate"
    assert "needs a unit" not in error.problem


def test_a_count_past_pythons_digit_limit_is_still_told_it_needs_a_unit() -> None:
    """int() refuses text of more than 4300 digits: the hint must not raise instead."""
    error = error_for({"windows": {"rate": "9" * 5000}})
    assert error.key == "windows.rate" and "needs a unit" in error.problem


def test_a_fraction_is_told_each_unit_is_whole() -> None:
    error = error_for({"windows": {"rate": 1.5}})
    assert error.key == "windows.rate" and "needs a unit" in error.problem
    assert "1m30s" in error.problem and "whole number" in error.problem


def test_a_number_where_a_number_is_meant_is_untouched() -> None:
    assert from_dict({"latency": {"p99_seconds": 10}}).latency.p99_seconds == 10.0
    assert "needs a unit" not in error_for({"latency": {"p99_seconds": "10"}}).problem


@pytest.mark.parametrize(("text", "key", "shown"), [
    ("windows:\n  rate: 010\n", "windows.rate", ["octal number 8", "10m"]),
    ("windows:\n  rate: 1:30\n", "windows.rate", ["base-60 number 90", "1h30m", "1m30s"]),
    ("windows:\n  rate: 1:30:00\n", "windows.rate", ["base-60", "1h30m0s"]),
    ("alerts:\n  InferwatchLatencyHigh:\n    for: 010\n", "alerts.InferwatchLatencyHigh.for",
     ["octal", "10m"]),
    ("baselines:\n  seasonal_offsets: [1w, 010]\n", "baselines.seasonal_offsets[1]",
     ["octal", "10m"]),
    ("pushgateway:\n  jobs:\n    nightly.scoring: 026\n", "pushgateway.jobs.nightly.scoring",
     ["octal number 22", "26m"]),
    ("models:\n  fr.aud:\n    accuracy:\n      window: 010\n",
     "models.fr.aud.accuracy.window", ["octal", "10m"]),
    ("models:\n  fr.aud:\n    alerts:\n      InferwatchLatencyHigh: {for: 010}\n",
     "models.fr.aud.alerts.InferwatchLatencyHigh.for", ["octal", "10m"]),
])
def test_a_yaml_octal_or_base_60_duration_is_told_it_needs_a_unit(
        tmp_path: Path, text: str, key: str, shown: list[str]) -> None:
    """`rate: 010` read "write it without the leading 0, or quote it", which led into the bare
    number's chain of errors."""
    error = load_error(tmp_path, text)
    assert error.key == key, error
    assert "needs a unit" in error.problem, error
    assert "without the leading 0" not in error.problem and "quote" not in error.problem
    for words in shown:
        assert words in error.problem, error


@pytest.mark.parametrize("text", ["latency:\n  p99_seconds: 010\n",
                                  "windows:\n  rate: -010\n"])
def test_a_yaml_octal_elsewhere_keeps_its_hint(tmp_path: Path, text: str) -> None:
    error = load_error(tmp_path, text)
    assert "without the leading 0" in error.problem and "needs a unit" not in error.problem


def test_generate_prints_the_unit_hint_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "inferwatch.yaml"
    config.write_text("windows:\n  rate: 10\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "out"
    assert cli.run(parser.parse_args(["--config", str(config), "--out", str(out)])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "windows.rate: " in err and "needs a unit" in err
    assert not out.exists()


# --- 2. job names ------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["model", "exporter"])
@pytest.mark.parametrize("job", [" ml ", "ml ", "\tml", "ml\n"])
def test_a_job_name_padded_with_space_is_refused(side: str, job: str) -> None:
    """The monitor would label its targets " ml ", which a selector job="ml" never matches."""
    error = error_for({"kubernetes": {f"{side}_job": job}})
    assert error.key == f"kubernetes.{side}_job"
    assert "space at its start or end" in error.problem and repr(job.strip()) in error.problem


@pytest.mark.parametrize("job", ["", "   "])
def test_an_empty_job_name_is_still_refused(job: str) -> None:
    error = error_for({"kubernetes": {"exporter_job": job}})
    assert error.key == "kubernetes.exporter_job" and "empty" in error.problem


def test_a_job_renamed_alone_moves_its_selector_with_it() -> None:
    """It kept selecting job="inferwatch-model": the alerts read no series of the targets
    the ServiceMonitor labels ml, silently."""
    cfg = from_dict({"kubernetes": {"model_job": "ml"}})
    assert cfg.selectors.model == 'job="ml"'
    assert cfg.selectors.exporter == DEFAULT.selectors.exporter
    rules = "\n".join(rule_files(render(cfg)).values())
    assert 'job="ml"' in rules and 'job="inferwatch-model"' not in rules
    assert 'job="inferwatch-exporter"' in rules
    cfg = from_dict({"kubernetes": {"exporter_job": "gpu"}})
    assert cfg.selectors.exporter == 'job="gpu"' and cfg.selectors.model == DEFAULT.selectors.model


def test_a_selector_the_file_sets_is_kept_and_still_checked() -> None:
    cfg = from_dict({"selectors": {"model": 'cluster="a"'}, "kubernetes": {"model_job": "ml"}})
    assert cfg.selectors.model == 'cluster="a"'
    error = error_for({"selectors": {"model": 'job="x"'}, "kubernetes": {"model_job": "ml"}})
    assert error.key == "selectors.model"
    # Only the job set: nothing derived, as before.
    assert from_dict({"selectors": {"model": 'job="x"'}}).selectors.model == 'job="x"'
    assert from_dict({"kubernetes": {"model_job": "inferwatch-model"}}) == DEFAULT


_JOBS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda job: job == job.strip() and job.strip())


@settings(max_examples=150, deadline=None)
@given(job=_JOBS, side=st.sampled_from(["model", "exporter"]))
def test_any_accepted_job_gets_a_selector_that_selects_exactly_it(job: str, side: str) -> None:
    cfg = from_dict({"kubernetes": {f"{side}_job": job}})
    selector = getattr(cfg.selectors, side)
    assert check.selector(selector) is None
    name, op, value, _, _ = check.label_matcher(selector, 0)
    assert (name, op, value) == ("job", "=", job)


@pytest.mark.integration
def test_rules_with_a_derived_selector_of_an_odd_job_load_in_promtool() -> None:
    cfg = from_dict({"kubernetes": {"model_job": 'ml "serving" \\ é\n$1',
                                    "exporter_job": "gpu`{}`"}})
    with tempfile.TemporaryDirectory() as directory:
        paths = []
        for relative, content in rule_files(render(cfg)).items():
            path = Path(directory) / Path(relative).name
            path.write_text(content, encoding="utf-8")
            paths.append(str(path))
        result = subprocess.run([PROMTOOL, "check", "rules", "--lint-fatal", *paths],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


# --- 3. exporter_path --------------------------------------------------------------------------


def test_the_exporter_path_may_differ_from_the_model_servers_path() -> None:
    cfg = from_dict({"kubernetes": {"path": "/internal/metrics", "exporter_path": "/metrics"}})
    assert model_endpoint(cfg)["path"] == "/internal/metrics"
    assert exporter_endpoint(cfg)["path"] == "/metrics"
    assert crd_errors(service_monitor(cfg)) == [] and crd_errors(pod_monitor(cfg)) == []


def test_without_exporter_path_both_monitors_use_path() -> None:
    cfg = from_dict({"kubernetes": {"path": "/m"}})
    assert model_endpoint(cfg)["path"] == exporter_endpoint(cfg)["path"] == "/m"
    assert from_dict({"kubernetes": {"exporter_path": None}}) == DEFAULT
    assert exporter_endpoint(DEFAULT)["path"] == "/metrics"


@pytest.mark.parametrize(("path", "words"), [
    ("metrics", "must start with '/'"), ("/metrics?x=1", "without a query"),
    ("/me trics", "without spaces"), (8080, "must be a string")])
def test_a_bad_exporter_path_is_refused(path: Any, words: str) -> None:
    error = error_for({"kubernetes": {"exporter_path": path}})
    assert error.key == "kubernetes.exporter_path" and words in error.problem


# --- 4. client certificates (mTLS) -------------------------------------------------------------

CERT = {"secret": "scrape-client", "key": "tls.crt"}
KEY = {"secret": "scrape-client", "key": "tls.key"}


@pytest.mark.parametrize("side", ["model_scrape", "exporter_scrape"])
def test_a_client_certificate_reaches_the_monitor_and_its_crd(side: str) -> None:
    cfg = from_dict({"kubernetes": {side: {"scheme": "https", "tls_cert": CERT, "tls_key": KEY,
                                           "tls_server_name": "exporter.monitoring.svc"}}})
    endpoint, other = ((model_endpoint(cfg), exporter_endpoint(cfg)) if side == "model_scrape"
                       else (exporter_endpoint(cfg), model_endpoint(cfg)))
    assert endpoint["tlsConfig"] == {
        "cert": {"secret": {"name": "scrape-client", "key": "tls.crt"}},
        "keySecret": {"name": "scrape-client", "key": "tls.key"},
        "serverName": "exporter.monitoring.svc"}
    assert "tlsConfig" not in other
    assert crd_errors(service_monitor(cfg)) == [] and crd_errors(pod_monitor(cfg)) == []


def test_a_client_certificate_may_come_from_a_configmap() -> None:
    cfg = from_dict({"kubernetes": {"model_scrape": {
        "scheme": "https", "tls_cert": {"config_map": "client-cert", "key": "cert.pem"},
        "tls_key": KEY}}})
    assert model_endpoint(cfg)["tlsConfig"]["cert"] == {
        "configMap": {"name": "client-cert", "key": "cert.pem"}}
    assert crd_errors(service_monitor(cfg)) == []


@pytest.mark.parametrize(("scrape", "key", "words"), [
    ({"scheme": "https", "tls_cert": CERT}, "tls_key", "together with tls_cert"),
    ({"scheme": "https", "tls_key": KEY}, "tls_cert", "together with tls_key"),
    ({"tls_cert": CERT, "tls_key": KEY}, "tls_cert", "scheme is http"),
    ({"tls_key": KEY}, "tls_key", "scheme is http"),
    ({"scheme": "https", "tls_cert": CERT, "tls_key": {"config_map": "c", "key": "k"}},
     "tls_key", "{secret: NAME, key: KEY}"),
    ({"scheme": "https", "tls_cert": {"secret": "Client_Cert", "key": "k"}, "tls_key": KEY},
     "tls_cert", "Kubernetes object name"),
    ({"scheme": "https", "tls_cert": "scrape-client", "tls_key": KEY}, "tls_cert",
     "must be a mapping"),
])
def test_a_client_certificate_that_cannot_work_is_refused(scrape: dict, key: str,
                                                          words: str) -> None:
    error = error_for({"kubernetes": {"exporter_scrape": scrape}})
    assert error.key == f"kubernetes.exporter_scrape.{key}", error
    assert words in error.problem


_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}",
                       fullmatch=True)
_KEYS = st.from_regex(r"[-._a-zA-Z0-9]{1,30}", fullmatch=True).filter(
    lambda key: key != "." and not key.startswith(".."))
_REFS = st.builds(lambda kind, name, key: {kind: name, "key": key},
                  st.sampled_from(["secret", "config_map"]), _NAMES, _KEYS)
_SECRETS = st.builds(lambda name, key: {"secret": name, "key": key}, _NAMES, _KEYS)


@settings(max_examples=60, deadline=None)
@given(side=st.sampled_from(["model_scrape", "exporter_scrape"]), cert=_REFS, key=_SECRETS,
       ca=st.one_of(st.just({}), _REFS))
def test_every_accepted_client_certificate_matches_its_crd(side: str, cert: dict, key: dict,
                                                           ca: dict) -> None:
    cfg = from_dict({"kubernetes": {side: {"scheme": "https", "tls_cert": cert, "tls_key": key,
                                           "tls_ca": ca}}})
    assert crd_errors(service_monitor(cfg)) == [] and crd_errors(pod_monitor(cfg)) == []
    endpoint = model_endpoint(cfg) if side == "model_scrape" else exporter_endpoint(cfg)
    kind, name = next((k, v) for k, v in cert.items() if k != "key")
    # Through the dumper and back: a key such as `1e3` or `y` stays the text it was.
    assert endpoint["tlsConfig"]["cert"] == {
        {"secret": "secret", "config_map": "configMap"}[kind]: {"name": name,
                                                                "key": cert["key"]}}
    assert endpoint["tlsConfig"]["keySecret"] == {"name": key["secret"], "key": key["key"]}


_ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                              st.sampled_from(["https", "http", "secret", "config_map", "key"])),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
                        st.sampled_from(["secret", "config_map", "key", "name"]), inner,
                        max_size=3)), max_leaves=6)


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({"scheme": st.sampled_from(["https", "http"])}, optional={
    "tls_cert": st.one_of(_ANY, _REFS), "tls_key": st.one_of(_ANY, _SECRETS)}))
def test_any_client_certificate_section_is_refused_by_key_or_valid(scrape: dict) -> None:
    try:
        cfg = from_dict({"kubernetes": {"model_scrape": scrape}})
    except ConfigError as exc:
        assert exc.key.startswith("kubernetes.model_scrape"), exc
        return
    assert crd_errors(service_monitor(cfg)) == []
    tls = model_endpoint(cfg).get("tlsConfig", {})
    assert ("cert" in tls) == ("keySecret" in tls) == bool(scrape.get("tls_cert"))
