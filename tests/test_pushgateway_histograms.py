"""A pushed histogram keeps its _count and _sum, read back from a real Pushgateway.

/metrics leaves both out where a bucket bound is negative (OpenMetrics forbids a _sum that
could be negative); a push goes out as text, where it is legal, and a gateway given no
_count and _sum would expose them as 0 beside a +Inf bucket holding every value.
"""

from __future__ import annotations

import pytest

import inferwatch
from inferwatch.core.registry import Registry
from test_pushgateway import gateway  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("values", [[0.5, 2.0, 7.0], [-3.0, -0.25, 0.5, 9.0]])
def test_a_pushed_histogram_counts_and_sums_every_value(gateway, values):  # noqa: F811
    registry = Registry()
    try:
        feed = iter(values)
        model = inferwatch.instrument(lambda x: next(feed), name="eta", version="7",
                                      registry=registry)
        for _ in values:
            model(1.0)
        registry.drain()
        inferwatch.push(gateway.address, "nightly", registry=registry)
    finally:
        registry.close()
    labels = {"job": "nightly", "model": "eta", "output": "value"}
    every = gateway.value("inferwatch_prediction_value_bucket", le="+Inf", **labels)
    assert every == len(values)
    assert gateway.value("inferwatch_prediction_value_count", **labels) == len(values)
    assert gateway.value("inferwatch_prediction_value_sum", **labels) == pytest.approx(sum(values))


def test_metrics_still_leave_out_a_sum_that_could_be_negative():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    from inferwatch.serving.bridge import InferwatchCollector

    registry = Registry()
    try:
        model = inferwatch.instrument(lambda x: -2.0, name="eta", version="7",
                                      registry=registry)
        model(1.0)
        registry.drain()
        source = CollectorRegistry()
        source.register(InferwatchCollector(registry))
        for text in (generate_latest(source).decode(), openmetrics(source).decode()):
            assert "inferwatch_prediction_value_sum" not in text
            assert "inferwatch_prediction_value_count" not in text
            assert "inferwatch_prediction_value_bucket" in text
    finally:
        registry.close()
