"""Predictions given as Python's exact numbers (decimal.Decimal, fractions.Fraction) are
values, recorded as the same floats would be: a pricing model computing in Decimal had
every prediction counted as ``unsupported_type`` and none recorded."""

from __future__ import annotations

import math
import time
from decimal import Decimal
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry

INVALID = "inferwatch_invalid_predictions_total"


def _recorded(results: list) -> tuple[dict, dict, dict]:
    """(prediction summaries, invalid counts, requests) of a function returning `results`
    in turn, drained once."""
    registry = Registry(drain_interval=3600)
    try:
        answers = iter(results)
        predict = inferwatch.instrument(lambda x: next(answers), name="m", registry=registry)
        for _ in results:
            predict(None)
        monitor = registry.monitor("m")
        monitor.drain()
        state = monitor.state
        outputs = state.summaries.get("inferwatch_prediction", {})
        summaries = {labels: (summary.count, summary.sum,
                              tuple(summary.quantiles((0.5, 0.9), time.time())))
                     for labels, summary in outputs.items()}
        invalid = {labels: count for labels, count in state.counters.get(INVALID, {}).items()
                   if count}
        requests = dict(state.counters["inferwatch_requests_total"])
        return summaries, invalid, requests
    finally:
        registry.close()


def _as_floats(result: object) -> object:
    if isinstance(result, dict):
        return {key: _as_floats(value) for key, value in result.items()}
    if isinstance(result, list):
        return [_as_floats(value) for value in result]
    return float(result)


exact = st.one_of(
    st.decimals(min_value=-1e6, max_value=1e6, allow_nan=False, places=4),
    st.fractions(min_value=-1000, max_value=1000, max_denominator=1000),
)
shapes = st.one_of(
    exact,
    st.lists(exact, min_size=1, max_size=5),
    st.builds(lambda price, eta: {"price": price, "eta": eta}, exact, exact),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(shapes, min_size=1, max_size=20))
def test_exact_numbers_are_recorded_as_their_floats(results):
    # One shape per run of calls, as one model returns one shape.
    kind = type(results[0])
    results = [r for r in results if type(r) is kind and (
        not isinstance(r, list) or len(r) == len(results[0]))]
    assert _recorded(results) == _recorded([_as_floats(r) for r in results])


def test_a_decimal_price_is_a_value_not_an_unsupported_type():
    summaries, invalid, _ = _recorded([Decimal("12.50"), Decimal("9.99"), Decimal("20")])
    assert invalid == {}
    ((count, total, _),) = summaries.values()
    assert (count, total) == (3, pytest.approx(42.49))


def test_decimal_nan_and_infinity_are_counted_as_floats_are():
    results = [[Decimal("NaN"), Decimal("Infinity"), Decimal("sNaN"), Decimal("1.5")]]
    summaries, invalid, requests = _recorded(results)
    assert invalid == {("nan",): 2, ("inf",): 1}
    assert requests[("ok",)] == 1
    ((count, total, _),) = summaries.values()
    assert (count, total) == (1, 1.5)


def test_a_pandas_series_of_decimals_is_read_as_floats():
    series = pd.Series([Decimal("0.25"), Decimal("0.75"), None], dtype=object)
    summaries, invalid, _ = _recorded([series])
    assert invalid == {("nan",): 1}
    ((count, total, _),) = summaries.values()
    assert (count, total) == (2, 1.0)


def test_fractions_of_whole_numbers_stay_values():
    summaries, invalid, _ = _recorded([[Fraction(2), Fraction(1, 2)]])
    assert invalid == {}
    ((count, total, _),) = summaries.values()
    assert (count, math.isclose(total, 2.5)) == (2, True)
