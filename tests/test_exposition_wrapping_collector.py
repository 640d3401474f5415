"""A user's collector that wraps a registry holding inferwatch's collector (adding a label,
keeping some names, passing families through) is served by inferwatch's /metrics as
prometheus_client serves it: every inferwatch series there, nothing in their place."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import metrics_response

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class WithRegion:
    """Every family of `inner` copied with region="eu" on each sample."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self.inner = inner

    def collect(self):
        for family in self.inner.collect():
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                copy.add_sample(sample.name, {**sample.labels, "region": "eu"}, sample.value,
                                sample.timestamp, sample.exemplar)
            yield copy


class OnlyInferwatch:
    """The families of `inner` whose name starts with inferwatch_, as they are."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self.inner = inner

    def collect(self):
        return (f for f in self.inner.collect() if f.name.startswith("inferwatch_"))


class PassThrough:
    def __init__(self, inner: CollectorRegistry) -> None:
        self.inner = inner

    def collect(self):
        yield from self.inner.collect()


@pytest.fixture
def registry():
    monitors = Registry(drain_interval=3600)
    inner = CollectorRegistry()
    Counter("app_logins", "Logins.", registry=inner).inc()
    inner.register(InferwatchCollector(monitors, events_dropped=dict))
    model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1", registry=monitors)
    for _ in range(3):
        model(1.0)
    monitors.drain()
    yield inner
    monitors.close()


def _samples(families) -> set[tuple]:
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in families for s in family.samples
            if not s.name.endswith("_created")}


@pytest.mark.parametrize("wrapper", [WithRegion, OnlyInferwatch, PassThrough])
@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_a_wrapping_collector_is_served_as_prometheus_client_serves_it(registry, wrapper,
                                                                      accept):
    collector = wrapper(registry)
    status, body, _ = metrics_response(collector, accept, None)
    assert status == 200
    if accept is None:
        served = list(parse_text(body.decode()))
        expected = list(parse_text(generate_latest(collector).decode()))
    else:
        served = list(parse_om(body.decode()))
        expected = list(parse_om(generate_openmetrics(collector).decode()))
    assert "prerendered" not in {family.name for family in served}
    requests = [s for s in _samples(served) if s[0] == "inferwatch_requests_total"]
    assert requests and sum(value for *_, value in requests) == 3
    if wrapper is WithRegion:
        assert all(("region", "eu") in labels for _, labels, _ in _samples(served))
    # The same samples as prometheus_client writes for the collector; the process-level
    # gauges read the clock, so they are compared by name and labels only.
    assert {s[:2] for s in _samples(served)} == {s[:2] for s in _samples(expected)}
    assert {s for s in _samples(served) if "requests" in s[0]} == \
        {s for s in _samples(expected) if "requests" in s[0]}


def test_a_failing_collector_gets_a_500_even_when_logging_raises(monkeypatch):
    import logging

    from inferwatch.serving import exposition

    class Broken:
        def collect(self):
            raise RuntimeError("broken collector")

    class RaisingFilter(logging.Filter):
        def filter(self, record):
            raise AttributeError("'LogRecord' object has no attribute 'request_id'")

    logger = logging.getLogger(exposition.__name__)
    raising = RaisingFilter()
    logger.addFilter(raising)
    monkeypatch.setattr(exposition, "_last_failure_logged",
                        -exposition.FAILURE_LOG_INTERVAL_SECONDS - 1e9)
    try:
        status, body, _ = metrics_response(Broken(), None, None)
    finally:
        logger.removeFilter(raising)
    assert status == 500 and b"RuntimeError" in body
