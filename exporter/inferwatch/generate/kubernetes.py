"""Prometheus Operator manifests: the rules as a PrometheusRule, and the scrape monitors.

A ServiceMonitor scrapes the model Services, a PodMonitor the exporter Pods (usually a
DaemonSet without a Service). Both set the ``job`` label the rule selectors expect.

>>> from inferwatch.generate.config import DEFAULT
>>> prometheus_rule(DEFAULT)["kind"]
'PrometheusRule'
"""

from __future__ import annotations

from typing import Any

from inferwatch.generate.config import Config, duration_seconds
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


def _metadata(cfg: Config, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": cfg.kubernetes.namespace,
            "labels": dict(cfg.kubernetes.labels)}


def _endpoint(cfg: Config, job: str) -> dict[str, Any]:
    k = cfg.kubernetes
    return {
        "port": k.port,
        "path": k.path,
        "interval": k.scrape_interval,
        # The rules select on job; without this the operator names it after the Service/Pod.
        # Prometheus expands $1 and ${name} in a replacement: $$ keeps a $ in the job name.
        "relabelings": [{"action": "replace", "targetLabel": "job",
                         "replacement": job.replace("$", "$$")}],
    }


def _exporter_timeout(cfg: Config) -> str:
    """The exporter's scrape timeout: Prometheus' global one may be below what the exporter
    needs, and Prometheus refuses a timeout longer than the interval."""
    interval = cfg.kubernetes.scrape_interval
    if duration_seconds(interval) < duration_seconds(EXPORTER_SCRAPE_TIMEOUT):
        return interval
    return EXPORTER_SCRAPE_TIMEOUT


def prometheus_rule(cfg: Config) -> dict[str, Any]:
    """The recording and alerting rules wrapped in a PrometheusRule."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": _metadata(cfg, cfg.kubernetes.rule_name),
        "spec": {"groups": recording_groups(cfg) + alerting_groups(cfg)
                 + baseline_recording_groups(cfg) + baseline_alerting_groups(cfg)},
    }


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
            "endpoints": [_endpoint(cfg, k.model_job)],
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
            "podMetricsEndpoints": [{**_endpoint(cfg, k.exporter_job),
                                     "scrapeTimeout": _exporter_timeout(cfg)}],
        },
    }
