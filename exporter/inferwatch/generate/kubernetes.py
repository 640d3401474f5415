"""Prometheus Operator manifests: the rules as a PrometheusRule, and the scrape monitors.

A ServiceMonitor scrapes the model Services, a PodMonitor the exporter Pods (usually a
DaemonSet without a Service). Both set the ``job`` label the rule selectors expect, and each
reaches its targets with its own port, path, TLS (client certificates included) and basic
auth settings. The adaptive-baseline groups may go into a PrometheusRule of their own
(``kubernetes.baseline_rule_name``).

>>> from inferwatch.generate.config import DEFAULT
>>> prometheus_rule(DEFAULT)["kind"]
'PrometheusRule'
"""

from __future__ import annotations

from typing import Any

from inferwatch.generate.config_checks import duration_seconds
from inferwatch.generate.config_schema import Config, Scrape
from inferwatch.generate.rules import (
    alerting_groups,
    baseline_alerting_groups,
    baseline_recording_groups,
    recording_groups,
)

API_VERSION = "monitoring.coreos.com/v1"

# The exporter answers within its --scrape.timeout (5 s by default) plus one second, so
# Prometheus must wait longer than that (docs/exporter.md); the compose stack waits 10 s too.
EXPORTER_SCRAPE_TIMEOUT = "10s"

# The config's snake_case kinds of a CA or certificate source, as SafeTLSConfig names them.
_CA_SOURCES = {"secret": "secret", "config_map": "configMap"}


def _metadata(cfg: Config, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": cfg.kubernetes.namespace,
            "labels": dict(cfg.kubernetes.labels)}


def _endpoint(cfg: Config, job: str, port: str, path: str, scrape: Scrape) -> dict[str, Any]:
    k = cfg.kubernetes
    return {
        "port": port,
        "path": path,
        "interval": k.scrape_interval,
        # The rules select on job; without this the operator names it after the Service/Pod.
        # Prometheus expands $1 and ${name} in a replacement: $$ keeps a $ in the job name.
        "relabelings": [{"action": "replace", "targetLabel": "job",
                         "replacement": job.replace("$", "$$")}],
        **_security(scrape),
    }


def _security(scrape: Scrape) -> dict[str, Any]:
    """The endpoint fields for a web config's TLS and basic auth; none for plain HTTP, so the
    default manifests stay as they were."""
    fields: dict[str, Any] = {}
    if scrape.scheme != "http":
        fields["scheme"] = scrape.scheme
    tls: dict[str, Any] = {}
    if scrape.tls_ca:
        tls["ca"] = _secret_or_config_map(scrape.tls_ca)
    if scrape.tls_cert:
        # The client certificate of mTLS; the config refuses it without its key.
        tls["cert"] = _secret_or_config_map(scrape.tls_cert)
        tls["keySecret"] = _selector(scrape.tls_key, "secret")
    if scrape.tls_server_name is not None:
        tls["serverName"] = scrape.tls_server_name
    if scrape.tls_insecure_skip_verify:
        tls["insecureSkipVerify"] = True
    if tls:
        fields["tlsConfig"] = tls
    if scrape.basic_auth_username:
        fields["basicAuth"] = {"username": _selector(scrape.basic_auth_username, "secret"),
                               "password": _selector(scrape.basic_auth_password, "secret")}
    return fields


def _secret_or_config_map(ref: Any) -> dict[str, Any]:
    """A SecretOrConfigMap from the config's {secret|config_map: NAME, key: KEY}."""
    kind = "secret" if "secret" in ref else "config_map"
    return {_CA_SOURCES[kind]: _selector(ref, kind)}


def _selector(ref: Any, kind: str) -> dict[str, str]:
    """A SecretKeySelector / ConfigMapKeySelector from the config's {kind: NAME, key: KEY}."""
    return {"name": ref[kind], "key": ref["key"]}


def _exporter_port(cfg: Config) -> str:
    """The exporter Pods' port: a model serving /metrics from its app uses the app's port
    (often `http`), while the exporter DaemonSet names its own."""
    k = cfg.kubernetes
    return k.port if k.exporter_port is None else k.exporter_port


def _exporter_path(cfg: Config) -> str:
    """The exporter Pods' metrics path: a model app may serve its metrics under a path of its
    own (/internal/metrics), while the exporter serves /metrics."""
    k = cfg.kubernetes
    return k.path if k.exporter_path is None else k.exporter_path


def _exporter_timeout(cfg: Config) -> str:
    """The exporter's scrape timeout: Prometheus' global one may be below what the exporter
    needs, and Prometheus refuses a timeout longer than the interval."""
    interval = cfg.kubernetes.scrape_interval
    if duration_seconds(interval) < duration_seconds(EXPORTER_SCRAPE_TIMEOUT):
        return interval
    return EXPORTER_SCRAPE_TIMEOUT


def _rule(cfg: Config, name: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "PrometheusRule",
            "metadata": _metadata(cfg, name), "spec": {"groups": groups}}


def prometheus_rule(cfg: Config) -> dict[str, Any]:
    """The recording and alerting rules wrapped in a PrometheusRule, the adaptive-baseline
    groups included unless they have a PrometheusRule of their own."""
    groups = recording_groups(cfg) + alerting_groups(cfg)
    if cfg.kubernetes.baseline_rule_name is None:
        groups += baseline_recording_groups(cfg) + baseline_alerting_groups(cfg)
    return _rule(cfg, cfg.kubernetes.rule_name, groups)


def baseline_prometheus_rule(cfg: Config) -> dict[str, Any] | None:
    """The adaptive-baseline groups in a PrometheusRule of their own, so they can be applied
    (or left out) apart; None where ``kubernetes.baseline_rule_name`` is unset.

    It is written even with every signal switched off: `kubectl apply` never deletes an
    object whose file is gone, so an empty rule is what replaces the baseline rules applied
    before.

    >>> from inferwatch.generate.config import DEFAULT
    >>> baseline_prometheus_rule(DEFAULT) is None
    True
    """
    name = cfg.kubernetes.baseline_rule_name
    if name is None:
        return None
    return _rule(cfg, name, baseline_recording_groups(cfg) + baseline_alerting_groups(cfg))


def service_monitor(cfg: Config) -> dict[str, Any]:
    """A ServiceMonitor scraping the model Services in every namespace."""
    k = cfg.kubernetes
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": _metadata(cfg, f"{k.rule_name}-model"),
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": dict(k.model_match_labels)},
            "endpoints": [_endpoint(cfg, k.model_job, k.port, k.path, k.model_scrape)],
        },
    }


def pod_monitor(cfg: Config) -> dict[str, Any]:
    """A PodMonitor scraping the standalone exporter Pods in every namespace."""
    k = cfg.kubernetes
    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": _metadata(cfg, f"{k.rule_name}-exporter"),
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": dict(k.exporter_match_labels)},
            "podMetricsEndpoints": [{**_endpoint(cfg, k.exporter_job, _exporter_port(cfg),
                                                 _exporter_path(cfg), k.exporter_scrape),
                                     "scrapeTimeout": _exporter_timeout(cfg)}],
        },
    }
