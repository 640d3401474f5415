"""Every kind of result ``bench_result_kinds`` times is drained without a fault of
inferwatch's own, plain and under ``request_id=``: each call counted, each call's rows in
the batch sizes. The benchmark's table is only worth reading if every row of it was a
drain that worked."""

from __future__ import annotations

import pytest
from benchmarks.bench_result_kinds import _kinds, model_of

import inferwatch
from inferwatch import faults
from inferwatch.core.registry import Registry

CALLS = 5


@pytest.mark.parametrize("request_ids", [False, True], ids=["plain", "request_id"])
@pytest.mark.parametrize("kind", sorted(_kinds()))
def test_every_kind_of_result_drains_without_a_fault(kind, request_ids):
    make, options = _kinds()[kind]
    result = make()
    model, method, options = model_of(result, options)
    registry = Registry(drain_interval=3600)
    before = faults.internal_error_counts()
    try:
        call = getattr(inferwatch.instrument(model, name="kind", version="1",
                                             registry=registry, **options), method)
        for i in range(CALLS):
            if request_ids:
                assert call(i, request_id=f"r{i}") is result
            else:
                assert call(i) is result
        monitor = registry.monitor("kind", "1")
        monitor.drain()
        state = monitor.state
        assert state.counters["inferwatch_requests_total"][("ok",)] == CALLS
        sizes = state.histograms["inferwatch_batch_size"][()]
        assert sizes.count == CALLS
        assert sizes.sum >= CALLS  # a row each at least: none of these results is empty
    finally:
        registry.close()
    assert faults.internal_error_counts() == before
