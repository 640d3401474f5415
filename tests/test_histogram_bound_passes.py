"""A large batch's histogram counts skip the bounds outside the batch's range: the counts
stay those of one pass per bound, whatever the values (nan, inf, ties at a bound)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.core.options import VALUE_BUCKETS
from inferwatch.core.state import HistogramState, _at_or_below_each

values_strategy = st.lists(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from([-1.0, 0.0, -0.0, 0.1, 1.0, 1000.0])),
    min_size=1, max_size=200)
bounds_strategy = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64),
                           min_size=1, max_size=12, unique=True).map(sorted)


@given(values_strategy, bounds_strategy)
def test_counts_equal_one_pass_per_bound(values: list[float], bounds: list[float]) -> None:
    array = np.asarray(values, dtype=np.float64)
    expected = [int(np.count_nonzero(array <= bound)) for bound in bounds]
    assert _at_or_below_each(array, bounds).tolist() == expected


def test_a_large_batch_of_scores_is_counted_as_numpy_would() -> None:
    """Above the size that counts per bound: scores in [0, 1), with a nan among them."""
    rng = np.random.default_rng(7)
    for values in (rng.random(20_000), np.append(rng.random(20_000), np.nan),
                   np.append(rng.random(20_000), [np.inf, -np.inf, 0.0, 1.0])):
        histogram = HistogramState(np.asarray(VALUE_BUCKETS))
        histogram.observe(values)
        index = np.searchsorted(np.asarray(VALUE_BUCKETS), values, side="left")
        index[np.isnan(values)] = len(VALUE_BUCKETS)
        expected = np.bincount(index, minlength=len(VALUE_BUCKETS) + 1)
        assert histogram.counts.tolist() == expected.tolist()
