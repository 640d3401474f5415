"""A finer `relative_accuracy` keeps the span a value sketch covers (about 17.8 decades),
so quantiles of an ordinary spread stay within the accuracy asked for instead of folding."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.state import value_bins
from inferwatch.core.unit_sketch import PROBABILITY_MAX_BINS


@pytest.mark.parametrize("accuracy", [0.01, 0.001, 0.0001])
def test_quantiles_of_five_decades_are_within_the_accuracy(accuracy):
    values = np.random.default_rng(0).lognormal(0.0, 1.5, 5000)  # about 0.005 to 360
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda rows: values, name="m", version="1",
                                      registry=registry, relative_accuracy=accuracy,
                                      quantiles=(0.01, 0.5, 0.99))
        model(np.zeros((5000, 1)))
        registry.drain()
        state = registry.existing_monitor("m", "1").state
        (summary,) = state.summaries["inferwatch_prediction"].values()
        got = summary.quantiles([0.01, 0.5, 0.99], now=time.time())
    finally:
        registry.close()
    exact = np.sort(values)
    for q, value in zip((0.01, 0.5, 0.99), got):
        truth = exact[int(q * (len(exact) - 1))]
        assert abs(value - truth) <= accuracy * truth * 1.0001 + 1e-12, (q, value, truth)


@given(st.floats(min_value=1e-7, max_value=0.999, allow_nan=False))
@settings(max_examples=200, deadline=None)
def test_the_bin_budget_keeps_the_span_and_its_bounds(accuracy):
    bins = value_bins(accuracy)
    assert 2048 <= bins <= 1 << 20 and bins != PROBABILITY_MAX_BINS
    decades = bins * np.log10((1 + accuracy) / (1 - accuracy))
    assert decades >= 17.7 or bins == 1 << 20
