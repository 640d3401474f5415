"""Pushing to a real Pushgateway: grouping keys any value can travel in, refusals that say why."""

from __future__ import annotations

import pytest

import inferwatch
from inferwatch.serving.pushgateway import PushError
from test_pushgateway import Gateway, gateway, refuse_counters  # noqa: F401 (the fixture)

# Each would be lost or mangled as a plain URL path segment: "." and ".." are dot-segments
# that HTTP clients and servers resolve away (the Pushgateway answers 301), and a "+"
# stands for a space only in a query string.
AWKWARD_VALUES = [".", "..", "a b", "x/y", "é+%2F", "tab\there"]


@pytest.mark.integration
@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_any_grouping_value_reaches_the_gateway_intact(gateway: Gateway, scraper,  # noqa: F811
                                                       value):
    registry = scraper.registry
    model = inferwatch.instrument(lambda x: 0.5, name=value, version="1", registry=registry)
    model([1.0])

    groups = inferwatch.push(gateway.address, value, registry=registry,
                             grouping_key={"shard": value}, timeout=10)

    assert groups == [{"job": value, "model": value, "shard": value}]
    assert gateway.value("inferwatch_requests_total", job=value, model=value, shard=value,
                         outcome="ok") == 1


@pytest.mark.integration
def test_a_push_the_gateway_refuses_says_why(gateway: Gateway, scraper):  # noqa: F811
    registry = scraper.registry
    model = inferwatch.instrument(lambda x: 0.5, name="churn", version="1", registry=registry)
    model([1.0])

    # Another job pushed a gauge of the same name: the gateway refuses the counter.
    refuse_counters(gateway.address)
    with pytest.raises(PushError) as refused:
        inferwatch.push(gateway.address, "nightly", registry=registry, timeout=10)

    message = str(refused.value)
    assert "400" in message
    assert "inconsistent with existing metrics" in message  # the gateway's own explanation
    assert "\n" not in message
