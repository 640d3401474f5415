"""Kubernetes manifests for secured and side-by-side deployments.

- /metrics served with TLS and basic auth (a web config, docs/security.md): the monitors
  must say https, which CA and server name to verify, and where the credentials are.
- The model servers and the exporter rarely share a port name (`http` vs `metrics`).
- Two configs generated into one namespace must not replace each other's objects.
- The costly adaptive-baseline groups may go into a PrometheusRule of their own.

Every manifest is checked against the Prometheus Operator's CRD schemas, as in
test_kubernetes_crds.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.generate import _yaml, render
from inferwatch.generate.config import DEFAULT, ConfigError, from_dict
from inferwatch.generate.kubernetes import (
    baseline_prometheus_rule,
    pod_monitor,
    prometheus_rule,
    service_monitor,
)
from inferwatch.generate.rules import (
    alerting_groups,
    baseline_alerting_groups,
    baseline_recording_groups,
    recording_groups,
)
from test_kubernetes_crds import VALIDATORS

SECURED = {"scheme": "https",
           "tls_ca": {"secret": "inferwatch-tls", "key": "ca.crt"},
           "tls_server_name": "inferwatch-exporter.monitoring.svc",
           "basic_auth_username": {"secret": "scrape-auth", "key": "username"},
           "basic_auth_password": {"secret": "scrape-auth", "key": "password"}}


def _through_yaml(document: dict[str, Any]) -> dict[str, Any]:
    """A manifest as kubectl reads the generated file: through the generator's own dumper."""
    return yaml.safe_load(_yaml(document))


def _errors(document: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATORS[document["kind"]].iter_errors(_through_yaml(document))]


def _kubernetes(**section: Any):
    return from_dict({"kubernetes": section})


def _exporter_endpoint(cfg) -> dict[str, Any]:
    return _through_yaml(pod_monitor(cfg))["spec"]["podMetricsEndpoints"][0]


def _model_endpoint(cfg) -> dict[str, Any]:
    return _through_yaml(service_monitor(cfg))["spec"]["endpoints"][0]


def _problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        from_dict(data)
    return str(caught.value)


# --- 1. TLS and basic auth --------------------------------------------------------------------


def test_a_secured_exporter_is_scraped_over_https_with_its_ca_and_credentials() -> None:
    cfg = _kubernetes(exporter_scrape=SECURED)
    endpoint = _exporter_endpoint(cfg)
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "inferwatch-tls", "key": "ca.crt"}},
        "serverName": "inferwatch-exporter.monitoring.svc"}
    assert endpoint["basicAuth"] == {"username": {"name": "scrape-auth", "key": "username"},
                                     "password": {"name": "scrape-auth", "key": "password"}}
    # The model servers keep their own settings: plain HTTP here.
    model = _model_endpoint(cfg)
    assert not {"scheme", "tlsConfig", "basicAuth"} & set(model)
    assert _errors(pod_monitor(cfg)) == [] and _errors(service_monitor(cfg)) == []


def test_a_secured_model_server_gets_a_configmap_ca_or_skips_verification() -> None:
    cfg = _kubernetes(model_scrape={"scheme": "https",
                                    "tls_ca": {"config_map": "serving-ca", "key": "ca.pem"}})
    assert _model_endpoint(cfg)["tlsConfig"] == {
        "ca": {"configMap": {"name": "serving-ca", "key": "ca.pem"}}}
    assert "tlsConfig" not in _exporter_endpoint(cfg)
    assert _errors(service_monitor(cfg)) == []
    cfg = _kubernetes(model_scrape={"scheme": "https", "tls_insecure_skip_verify": True})
    assert _model_endpoint(cfg)["tlsConfig"] == {"insecureSkipVerify": True}
    assert _errors(service_monitor(cfg)) == []
    # https alone verifies against Prometheus' own CAs: no tlsConfig needed.
    endpoint = _model_endpoint(_kubernetes(model_scrape={"scheme": "https"}))
    assert endpoint["scheme"] == "https" and "tlsConfig" not in endpoint


def test_basic_auth_over_plain_http_is_allowed() -> None:
    """node_exporter's web config checks basic auth without TLS too (behind a mesh that
    encrypts, say)."""
    cfg = _kubernetes(model_scrape={key: SECURED[key] for key in
                                    ("basic_auth_username", "basic_auth_password")})
    endpoint = _model_endpoint(cfg)
    assert "scheme" not in endpoint and endpoint["basicAuth"]["password"]["key"] == "password"
    assert _errors(service_monitor(cfg)) == []


@pytest.mark.parametrize(("scrape", "key", "words"), [
    ({"schema": "https"}, "kubernetes.exporter_scrape.schema", "unknown key"),
    ({"scheme": "HTTPS"}, "kubernetes.exporter_scrape.scheme", "must be one of http, https"),
    ({"scheme": "https", "tls_insecure_skip_verify": "yes"},
     "kubernetes.exporter_scrape.tls_insecure_skip_verify", "must be true or false"),
    ({"scheme": "https", "tls_ca": "inferwatch-tls"}, "kubernetes.exporter_scrape.tls_ca",
     "must be a mapping"),
    ({"scheme": "https", "tls_ca": {"secret": "inferwatch-tls"}},
     "kubernetes.exporter_scrape.tls_ca", "{secret: NAME, key: KEY} or {config_map: NAME, key"),
    ({"scheme": "https", "tls_ca": {"secret": "a", "config_map": "b", "key": "ca.crt"}},
     "kubernetes.exporter_scrape.tls_ca", "{secret: NAME, key: KEY} or {config_map: NAME, key"),
    ({"scheme": "https", "tls_ca": {"secret": "Inferwatch_TLS", "key": "ca.crt"}},
     "kubernetes.exporter_scrape.tls_ca", "Kubernetes object name"),
    ({"scheme": "https", "tls_ca": {"secret": "tls", "key": "ca crt"}},
     "kubernetes.exporter_scrape.tls_ca", "key of the secret"),
    ({"scheme": "https", "tls_ca": {"secret": "tls", "key": 1}},
     "kubernetes.exporter_scrape.tls_ca.key", "must be strings"),
    ({"basic_auth_username": {"config_map": "auth", "key": "user"},
      "basic_auth_password": {"secret": "auth", "key": "password"}},
     "kubernetes.exporter_scrape.basic_auth_username", "{secret: NAME, key: KEY}"),
    ({"scheme": "https", "tls_server_name": "exporter .svc"},
     "kubernetes.exporter_scrape.tls_server_name", "DNS name"),
    ({"scheme": "https", "tls_server_name": 7},
     "kubernetes.exporter_scrape.tls_server_name", "must be a string"),
    # Prometheus reads no TLS setting for an http target: it would silently do nothing.
    ({"tls_ca": {"secret": "inferwatch-tls", "key": "ca.crt"}},
     "kubernetes.exporter_scrape.tls_ca", "scheme is http"),
    ({"tls_insecure_skip_verify": True},
     "kubernetes.exporter_scrape.tls_insecure_skip_verify", "scheme is http"),
    ({"tls_server_name": "exporter.svc"},
     "kubernetes.exporter_scrape.tls_server_name", "scheme is http"),
    ({"basic_auth_username": {"secret": "auth", "key": "user"}},
     "kubernetes.exporter_scrape.basic_auth_password", "together with basic_auth_username"),
    ({"basic_auth_password": {"secret": "auth", "key": "password"}},
     "kubernetes.exporter_scrape.basic_auth_username", "together with basic_auth_password"),
], ids=lambda value: repr(value)[:40])
def test_bad_scrape_settings_are_refused_by_key(scrape: dict, key: str, words: str) -> None:
    problem = _problem({"kubernetes": {"exporter_scrape": scrape}})
    assert problem.startswith(f"{key}: "), problem
    assert words in problem, problem


def test_an_empty_scrape_section_keeps_the_defaults() -> None:
    assert from_dict({"kubernetes": {"model_scrape": None, "exporter_scrape": {}}}) == DEFAULT


_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}",
                       fullmatch=True)
# Kubernetes refuses '.', '..' and keys starting with '..' as data keys (and so does the
# config): an accepted key is any other.
_KEYS = st.from_regex(r"[-._a-zA-Z0-9]{1,30}", fullmatch=True).filter(
    lambda key: key != "." and not key.startswith(".."))
_REFS = st.builds(lambda kind, name, key: {kind: name, "key": key},
                  st.sampled_from(["secret", "config_map"]), _NAMES, _KEYS)
_SECRETS = st.builds(lambda name, key: {"secret": name, "key": key}, _NAMES, _KEYS)


@settings(max_examples=60, deadline=None)
@given(which=st.sampled_from(["model_scrape", "exporter_scrape"]), ca=_REFS,
       server=st.one_of(st.none(), _NAMES.filter(lambda name: len(name) < 64)),
       skip=st.booleans(), user=_SECRETS, password=_SECRETS)
def test_every_accepted_secured_endpoint_matches_its_crd(which: str, ca: dict, server: Any,
                                                         skip: bool, user: dict,
                                                         password: dict) -> None:
    cfg = _kubernetes(**{which: {"scheme": "https", "tls_ca": ca, "tls_server_name": server,
                                 "tls_insecure_skip_verify": skip,
                                 "basic_auth_username": user, "basic_auth_password": password}})
    for document in (service_monitor(cfg), pod_monitor(cfg)):
        assert _errors(document) == []
    endpoint = _model_endpoint(cfg) if which == "model_scrape" else _exporter_endpoint(cfg)
    kind, name = next((k, v) for k, v in ca.items() if k != "key")
    # Through the dumper and back: a key such as `1e3` or `y` stays the text it was.
    assert endpoint["tlsConfig"]["ca"] == {
        {"secret": "secret", "config_map": "configMap"}[kind]: {"name": name, "key": ca["key"]}}
    assert endpoint["tlsConfig"].get("serverName") == server
    assert endpoint["tlsConfig"].get("insecureSkipVerify", False) is skip
    assert endpoint["basicAuth"] == {
        "username": {"name": user["secret"], "key": user["key"]},
        "password": {"name": password["secret"], "key": password["key"]}}


_ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                              st.sampled_from(["https", "http", "secret", "config_map", "key"])),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
                        st.sampled_from(["secret", "config_map", "key", "name"]), inner,
                        max_size=3)), max_leaves=6)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["scheme", "tls_ca", "tls_server_name",
                                        "tls_insecure_skip_verify", "basic_auth_username",
                                        "basic_auth_password"]), _ANY, max_size=4))
def test_any_scrape_section_is_either_refused_by_key_or_valid(scrape: dict) -> None:
    try:
        cfg = _kubernetes(exporter_scrape=scrape)
    except ConfigError as exc:
        assert exc.key.startswith("kubernetes.exporter_scrape")
        return
    assert _errors(pod_monitor(cfg)) == []


# --- 2. one port name per monitor -------------------------------------------------------------


def test_the_exporter_port_may_differ_from_the_model_servers_port() -> None:
    """Models mounting /metrics in their app serve it on the app's port (`http`); the
    exporter DaemonSet names its own (`metrics`)."""
    cfg = _kubernetes(port="http", exporter_port="metrics")
    assert _model_endpoint(cfg)["port"] == "http"
    assert _exporter_endpoint(cfg)["port"] == "metrics"
    assert _errors(service_monitor(cfg)) == [] and _errors(pod_monitor(cfg)) == []


def test_without_exporter_port_both_monitors_use_port_as_before() -> None:
    cfg = _kubernetes(port="web")
    assert _model_endpoint(cfg)["port"] == _exporter_endpoint(cfg)["port"] == "web"
    assert _model_endpoint(DEFAULT)["port"] == _exporter_endpoint(DEFAULT)["port"] == "metrics"


def test_a_bad_exporter_port_is_refused() -> None:
    assert _problem({"kubernetes": {"exporter_port": "Metrics_Port"}}).startswith(
        "kubernetes.exporter_port: must be the name of a container / Service port")


# --- 3. object names --------------------------------------------------------------------------


def _identities(cfg) -> set[tuple[str, str, str]]:
    documents = [service_monitor(cfg), pod_monitor(cfg), prometheus_rule(cfg)]
    extra = baseline_prometheus_rule(cfg)
    documents += [extra] if extra else []
    return {(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in documents}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.from_regex(r"[a-z]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True).filter(
    lambda name: not name.endswith("-costly")), min_size=2, max_size=2, unique=True),
    st.booleans())
def test_two_configs_in_one_namespace_name_their_objects_apart(names: list[str],
                                                               split: bool) -> None:
    """Every object name derives from kubernetes.rule_name (and baseline_rule_name), so two
    configs with their own rule names never replace each other's objects."""
    configs = [_kubernetes(rule_name=name, **({"baseline_rule_name": f"{name}-costly"}
                                              if split else {})) for name in names]
    first, second = (_identities(cfg) for cfg in configs)
    assert len(first) == len(second) == (4 if split else 3)
    assert not first & second


def test_the_default_names_are_unchanged() -> None:
    assert _identities(DEFAULT) == {("ServiceMonitor", "monitoring", "inferwatch-model"),
                                    ("PodMonitor", "monitoring", "inferwatch-exporter"),
                                    ("PrometheusRule", "monitoring", "inferwatch")}


# --- 4. the adaptive baselines in a PrometheusRule of their own ------------------------------


def test_the_baseline_groups_can_go_into_a_prometheusrule_of_their_own() -> None:
    cfg = _kubernetes(baseline_rule_name="inferwatch-baselines")
    main, baselines = prometheus_rule(cfg), baseline_prometheus_rule(cfg)
    assert main["metadata"]["name"] == "inferwatch"
    assert baselines["metadata"] == {**main["metadata"], "name": "inferwatch-baselines"}
    assert main["spec"]["groups"] == recording_groups(cfg) + alerting_groups(cfg)
    assert baselines["spec"]["groups"] == (baseline_recording_groups(cfg)
                                           + baseline_alerting_groups(cfg))
    assert baselines["spec"]["groups"], "the default config has baseline groups"
    # Split or not, the same groups reach the cluster.
    assert (main["spec"]["groups"] + baselines["spec"]["groups"]
            == prometheus_rule(DEFAULT)["spec"]["groups"])
    assert _errors(main) == [] and _errors(baselines) == []


def test_by_default_the_baselines_stay_in_the_one_prometheusrule() -> None:
    assert baseline_prometheus_rule(DEFAULT) is None
    names = [group["name"] for group in prometheus_rule(DEFAULT)["spec"]["groups"]]
    assert {g["name"] for g in baseline_recording_groups(DEFAULT)} <= set(names)


def test_switched_off_baselines_leave_an_empty_rule_that_replaces_the_old_one() -> None:
    """`kubectl apply` does not delete an object whose file is gone: an empty rule of the same
    name replaces the baseline rules once applied."""
    signals = ("traffic", "errors", "latency", "predictions", "classes", "confidence",
               "missing", "out_of_range", "batch_size")
    cfg = from_dict({"kubernetes": {"baseline_rule_name": "costly"},
                     "baselines": {signal: {"enabled": False} for signal in signals}})
    assert baseline_prometheus_rule(cfg)["spec"]["groups"] == []
    assert _errors(baseline_prometheus_rule(cfg)) == []


def test_the_split_is_written_as_its_own_file() -> None:
    files = render(_kubernetes(baseline_rule_name="inferwatch-baselines"))
    main = yaml.safe_load(files["alerts/kubernetes/prometheusrule.yaml"])
    baselines = yaml.safe_load(files["alerts/kubernetes/prometheusrule-baselines.yaml"])
    assert baselines["metadata"]["name"] == "inferwatch-baselines"
    assert (main["spec"]["groups"] + baselines["spec"]["groups"]
            == yaml.safe_load(render(DEFAULT)["alerts/kubernetes/prometheusrule.yaml"])
            ["spec"]["groups"])
    assert "alerts/kubernetes/prometheusrule-baselines.yaml" not in render(DEFAULT)


@pytest.mark.parametrize(("section", "words"), [
    ({"baseline_rule_name": "inferwatch"}, "must differ from kubernetes.rule_name"),
    ({"rule_name": "ml", "baseline_rule_name": "ml"}, "must differ from kubernetes.rule_name"),
    ({"baseline_rule_name": "Costly_Rules"}, "must be a Kubernetes name"),
])
def test_a_baseline_rule_name_that_cannot_work_is_refused(section: dict, words: str) -> None:
    problem = _problem({"kubernetes": section})
    assert problem.startswith("kubernetes.baseline_rule_name: ") and words in problem, problem


def test_a_baseline_rule_file_left_out_by_the_config_is_removed(tmp_path: Path) -> None:
    # Written under one config, left behind under the next: `kubectl apply -f` on the
    # directory loaded the baseline groups twice, once from each PrometheusRule.
    from inferwatch.generate import write

    split = tmp_path / "alerts/kubernetes/prometheusrule-baselines.yaml"
    write(tmp_path, _kubernetes(baseline_rule_name="inferwatch-baselines"))
    assert split.is_file()
    write(tmp_path, DEFAULT)
    assert not split.exists()
    assert (tmp_path / "alerts/kubernetes/prometheusrule.yaml").is_file()


def test_a_file_of_the_users_own_under_that_name_stays(tmp_path: Path) -> None:
    from inferwatch.generate import write

    own = tmp_path / "alerts/kubernetes/prometheusrule-baselines.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("# my own rules\n", encoding="utf-8")
    write(tmp_path, DEFAULT)
    assert own.read_text(encoding="utf-8") == "# my own rules\n"
