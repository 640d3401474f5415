"""The two ways a sketch reads its quantiles' bins agree, and the checked quantiles a scrape
asks for are remembered without ever remembering a wrong one.

A run of few bins is searched in Python (``DDSketch._value_at``), a wider one with numpy's
cumsum and searchsorted; a window of positive values only takes its quantiles straight from
the positive bins. Each must give the floats the general path gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.core import ddsketch as sketch_module
from inferwatch.core.ddsketch import DDSketch

QS = (0.0, 0.01, 0.5, 0.9, 0.99, 1.0)


@st.composite
def runs_and_ranks(draw):
    """A run (first key, counts whose first and last are non-zero, total) and ranks in it."""
    inner = draw(st.lists(st.integers(0, 50), max_size=70))
    counts = [draw(st.integers(1, 50)), *inner]
    if inner:
        counts.append(draw(st.integers(1, 50)))
    total = sum(counts)
    ranks = draw(st.lists(st.integers(0, total - 1), min_size=1, max_size=8))
    return draw(st.integers(-2000, 2000)), np.array(counts, dtype=np.int64), total, ranks


@settings(max_examples=300, deadline=None)
@given(runs_and_ranks())
def test_a_run_searched_in_python_finds_the_keys_numpy_finds(monkeypatch_run) -> None:
    first, counts, total, ranks = monkeypatch_run
    sketch = DDSketch(0.01)
    original = sketch_module._PYTHON_RUN_MAX
    try:
        sketch_module._PYTHON_RUN_MAX = 1 << 30  # every run in Python
        in_python = sketch._value_at((first, counts, total), ranks)
        sketch_module._PYTHON_RUN_MAX = -1  # every run with numpy
        with_numpy = sketch._value_at((first, counts, total), ranks)
    finally:
        sketch_module._PYTHON_RUN_MAX = original
    assert in_python == with_numpy


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
       st.sampled_from([0.005, 0.01, 0.02]))
def test_quantiles_read_each_rank_in_its_own_bins(values, alpha):
    """Positive-only windows (read straight from the positive bins) and signed ones,
    against each quantile's rank looked up alone in the bins of its sign."""
    for data in (np.array(values), np.abs(np.array(values)) + 1.0):
        sketch = DDSketch(alpha)
        sketch.add(data)
        negatives, zeros = sketch._negative.total, sketch._zero_count
        last = sketch.count - 1
        expected = []
        for q in QS:
            rank = min(math.floor(q * last), last)
            if rank < negatives:
                run = (sketch._negative.min_key, sketch._negative.used(), negatives)
                expected.append(-sketch._value_at(run, [negatives - 1 - rank])[0])
            elif rank < negatives + zeros:
                expected.append(0.0)
            else:
                run = (sketch._positive.min_key, sketch._positive.used(), sketch._positive.total)
                expected.append(sketch._value_at(run, [rank - negatives - zeros])[0])
        assert sketch.quantiles(QS) == expected
        assert sketch.quantiles(list(QS)) == expected  # a list is checked, never remembered


def test_checked_quantiles_are_remembered_per_tuple_and_bounded() -> None:
    sketch = DDSketch()
    sketch.add(np.array([1.0, 2.0, 3.0]))
    sketch_module._WANTED.clear()
    assert sketch.quantiles((0.5, 1.0)) == sketch.quantiles([0.5, 1.0])
    assert (0.5, 1.0) in sketch_module._WANTED
    for i in range(sketch_module._WANTED_MAX + 5):
        sketch.quantiles((i / 1e4,))
    assert len(sketch_module._WANTED) <= sketch_module._WANTED_MAX


@pytest.mark.parametrize("qs, error", [
    ((1.5,), ValueError), ((math.nan,), ValueError), ((-0.1, 0.5), ValueError),
    (("a",), ValueError), (([0.5],), TypeError),
])
def test_bad_quantiles_raise_every_time_and_are_never_remembered(qs, error) -> None:
    sketch = DDSketch()
    sketch.add(np.array([1.0]))
    sketch_module._WANTED.clear()
    for _ in range(2):
        with pytest.raises(error):
            sketch.quantiles(qs)
        with pytest.raises(error):
            sketch.quantiles(list(qs))
    assert not sketch_module._WANTED
