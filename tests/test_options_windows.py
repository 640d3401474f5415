"""Rolling-window settings are checked when given: a window the sketches cannot index would
otherwise be accepted and fail every drain as an internal error."""

from __future__ import annotations

import math

import pytest

import inferwatch
from inferwatch.core.registry import Registry


@pytest.mark.parametrize(("option", "value", "named"), [
    ("window_seconds", 1e-320, "window_seconds / age_buckets"),
    ("window_seconds", 1e-9, "window_seconds / age_buckets"),
    ("window_seconds", math.inf, "window_seconds must be positive and finite"),
    ("age_buckets", 5000, "age_buckets must be at most 1000"),
    ("drift_window_seconds", math.inf, "drift_window_seconds must be positive and finite"),
    ("drift_window_seconds", 1e-9, "drift_window_seconds / drift_age_buckets"),
])
def test_a_window_no_sketch_can_index_is_refused_when_instrumenting(option, value, named):
    registry = Registry()
    try:
        with pytest.raises(ValueError, match=named):
            inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry,
                                  **{option: value})
    finally:
        registry.close()


def test_a_zero_bucket_count_is_named_once():
    registry = Registry()
    try:
        with pytest.raises(ValueError) as raised:
            inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry,
                                  drift_age_buckets=0)
        assert str(raised.value).count("drift_age_buckets must be at least 1") == 1
    finally:
        registry.close()


def test_the_narrowest_accepted_window_records_without_internal_errors():
    registry = Registry()
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry,
                                      window_seconds=1e-3, age_buckets=1000)
        model(1.0)
        registry.drain()
        state = registry.monitor("m", "1").state
        assert state.counters["inferwatch_requests_total"][("ok",)] == 1.0
        assert state.summaries["inferwatch_prediction"][("value",)].count == 1
    finally:
        registry.close()
