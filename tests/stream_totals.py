"""Helpers of the stream tests: a streaming model's outcomes and items, the hypothesis
settings its property tests share, and the async iterator object its SDK streams build on."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import HealthCheck, settings

from inferwatch.core.registry import Registry

# Each example runs a model's stream to its end, some in threads: fewer, and no deadline.
STREAM_EXAMPLES = settings(max_examples=25, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.function_scoped_fixture])


def stream_outcomes(registry: Registry, model: str = "gen") -> dict[tuple, float]:
    """The model's non-zero `inferwatch_requests_total` by outcome, once drained."""
    registry.drain()
    mon = registry.monitor(model, "1")
    return {k: v for k, v in mon.state.counters["inferwatch_requests_total"].items() if v}


def stream_items(registry: Registry, model: str = "gen", *, drain: bool = True) -> float:
    """The sum of the model's `inferwatch_stream_items`: how many items its streams gave
    (drained first unless told not to, for a test that reads between drains)."""
    if drain:
        registry.drain()
    histogram = registry.monitor(model, "1").state.histograms.get("inferwatch_stream_items")
    return 0.0 if not histogram else histogram[()].sum


class AsyncItems:
    """An async iterator object (no async generator) over `items`, as an SDK's async stream
    is: a test's stream subclasses it and adds what that stream has besides."""

    def __init__(self, items: Iterable) -> None:
        self.rest = iter(items)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return next(self.rest)
        except StopIteration:
            raise StopAsyncIteration from None
