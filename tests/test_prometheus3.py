"""What the generated rules and dashboards rely on that changed in Prometheus 3.0.

The compose stack pins Prometheus 3; the tests run the 2.x that Debian ships. The 3.0
migration guide lists what behaves differently, and each point the bundle touches is
guarded here so the same files work on both:

- scrape protocol negotiation: 3.x sends a new Accept header and refuses a scrape whose
  Content-Type it does not know (unless ``fallback_scrape_protocol`` is set);
- classic histogram ``le`` and summary ``quantile`` values are normalised to floats on
  ingestion, so ``le="1"`` becomes ``le="1.0"``: an exact match on either can miss;
- regex ``.`` now matches newlines;
- metric and label names may be UTF-8, and then need quoting in PromQL;
- ``holt_winters`` is renamed ``double_exponential_smoothing`` (behind a feature flag).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from e2e_dashboards import panels
from inferwatch.catalogue import CATALOGUE, MODEL_LABELS
from inferwatch.generate import dashboards, rules
from inferwatch.generate.config import DEFAULT, from_dict
from inferwatch.serving.exposition import render

# What Prometheus sends when scraping, by version (scrape_protocols at their defaults).
ACCEPT = {
    "2.x": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
           "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "3.x": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
           "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
           "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
}
# Content types Prometheus 3 parses without a fallback protocol.
KNOWN_TYPES = {("application/openmetrics-text", "1.0.0"), ("application/openmetrics-text", "0.0.1"),
               ("text/plain", "0.0.4"), ("text/plain", "1.0.0")}
LEGACY_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LEGACY_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _all_expressions(cfg: Any = DEFAULT) -> list[str]:
    exprs = [rule["expr"] for group in rules.recording_groups(cfg) + rules.alerting_groups(cfg)
             for rule in group["rules"]]
    for dashboard in dashboards.render(cfg).values():
        exprs += [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
        exprs += [a["target"]["expr"] for a in dashboard["annotations"]["list"]
                  if "target" in a]
    return exprs


@pytest.mark.parametrize("version", sorted(ACCEPT))
def test_metrics_answer_each_versions_accept_header_with_a_type_it_parses(version: str
                                                                          ) -> None:
    registry = CollectorRegistry()
    Counter("inferwatch_requests", "Calls.", ["model"], registry=registry).labels("m").inc()
    Histogram("inferwatch_request_duration_seconds", "Latency.", registry=registry,
              buckets=(0.5, 1)).observe(0.7)
    body, headers = render(registry, accept=ACCEPT[version], accept_encoding=None)
    media, *params = [part.strip() for part in headers["Content-Type"].split(";")]
    fields = dict(p.split("=", 1) for p in params)
    assert (media, fields.get("version")) in KNOWN_TYPES
    assert media == "application/openmetrics-text"
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    assert families == {"inferwatch_requests", "inferwatch_request_duration_seconds"}


def test_no_query_matches_a_bucket_or_quantile_bound_exactly() -> None:
    """`le` and `quantile` values change spelling on 3.x; only regex matchers that accept
    both spellings (or +Inf, which does not change) are safe."""
    exact = re.compile(r'\b(le|quantile)\s*(=|!=)\s*"([^"]*)"')
    found = [(m.group(0), expr) for expr in _all_expressions() for m in exact.finditer(expr)
             if m.group(3) != "+Inf"]
    assert found == []


def _bound_regex(p99: float) -> re.Pattern[str]:
    slo = dashboards.render(from_dict({"latency": {"p99_seconds": p99}}))["slo.json"]
    exprs = [t["expr"] for p in panels(slo) for t in p.get("targets", [])]
    [promql_string] = {m for e in exprs for m in re.findall(r'le=~"((?:[^"\\]|\\.)*)"', e)}
    # A PromQL string literal unescaped, then anchored as Prometheus anchors every regex.
    return re.compile(promql_string.encode().decode("unicode_escape"))


@pytest.mark.parametrize(("p99", "matches", "misses"), [
    (1.0, ["1", "1.0", "1.00"], ["10", "1.5", "0.1", "11.0"]),
    (0.25, ["0.25"], ["0.255", "0x25", "0.2", "10.25"]),
    (2.5, ["2.5"], ["2x5", "25", "2.51"]),
])
def test_the_latency_slo_matches_its_bucket_in_either_spelling(
        p99: float, matches: list[str], misses: list[str]) -> None:
    bound = _bound_regex(p99)
    assert [v for v in matches if not bound.fullmatch(v)] == []
    assert [v for v in misses if bound.fullmatch(v)] == []


def test_no_negative_regex_relies_on_dot_stopping_at_newlines() -> None:
    negative = re.compile(r'!~\s*"([^"]*)"')
    found = [m.group(0) for expr in _all_expressions() for m in negative.finditer(expr)
             if re.search(r"(?<!\\)\.", m.group(1))]
    assert found == []


def test_every_name_needs_no_quoting_on_either_version() -> None:
    names = set(CATALOGUE) | {rule["record"] for group in rules.recording_groups(DEFAULT)
                                 for rule in group["rules"]}
    assert [n for n in names if not LEGACY_METRIC_NAME.match(n)] == []
    labels = set(MODEL_LABELS) | {label for spec in CATALOGUE.values() for label in spec.labels}
    labels |= {label for group in rules.alerting_groups(DEFAULT) for rule in group["rules"]
               for label in (*rule["labels"], *rule["annotations"])}
    assert [n for n in labels if not LEGACY_LABEL_NAME.match(n)] == []
    # No query quotes a name, the 3.x-only syntax a 2.x server rejects.
    assert [e for e in _all_expressions() if re.search(r'\{\s*"', e)] == []


def test_no_function_that_3x_renamed_or_removed() -> None:
    assert [e for e in _all_expressions() if "holt_winters" in e] == []


def test_compose_prometheus_config_needs_no_fallback_protocol() -> None:
    """Every scrape target is inferwatch's or Prometheus' own, which send a known type."""
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "compose" / "prometheus"
                             / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs <= {"inferwatch-model", "inferwatch-exporter", "prometheus", "alertmanager",
                    "pushgateway"}
