"""More edges of the numeric core: sketches of other accuracies read together, worker and
snapshot files whose numbers pass the float or int64 range, counts past 2**53, and rolling
windows too narrow to index time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.core.ddsketch import DDSketch
from inferwatch.core.rolling_sketch import RollingSketch

settings.register_profile("sketch_edges2", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sketch_edges2")

QS = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0]
START = 1_700_000_040.0
MAX_TOTAL_COUNT = 1 << 61  # what from_dict admits

positive_values = hnp.arrays(np.float64, st.integers(1, 50),
                             elements=st.floats(1e-3, 1e6, allow_nan=False))


def sketch_of(values: np.ndarray, accuracy: float) -> DDSketch:
    sketch = DDSketch(relative_accuracy=accuracy)
    sketch.add(values)
    return sketch


# --- sketches of different accuracies never mix ----------------------------------------------

@given(positive_values, positive_values, st.sampled_from([(0.01, 0.05), (0.002, 0.01),
                                                          (0.05, 0.01)]))
def test_quantiles_of_sketches_of_other_accuracies_are_refused_as_merges_are(
        mine: np.ndarray, theirs: np.ndarray, accuracies: tuple[float, float]) -> None:
    # A worker configured with another relative_accuracy: its bin keys stand for other
    # values, so reading them together would give quantiles off by far more than alpha.
    first, second = sketch_of(mine, accuracies[0]), sketch_of(theirs, accuracies[1])
    with pytest.raises(ValueError, match="relative_accuracy"):
        first.copy().merge(second)
    with pytest.raises(ValueError, match="relative_accuracy"):
        DDSketch.merged_quantiles([first, second], QS)


def test_quantiles_of_no_sketches_read_nan_like_an_empty_one() -> None:
    assert np.isnan(DDSketch.merged_quantiles([], QS)).all()
    with pytest.raises(ValueError, match="quantiles must be in"):
        DDSketch.merged_quantiles([], [1.5])


# --- snapshot files with numbers past the float range ----------------------------------------

@pytest.mark.parametrize(("field", "text"), [("sum", "1" + "0" * 400),
                                             ("relative_accuracy", "1" + "0" * 400),
                                             ("relative_accuracy", "-" + "9" * 400)])
def test_a_snapshot_sketch_with_an_integer_past_the_float_range_is_a_value_error(
        field: str, text: str) -> None:
    sketch = DDSketch()
    sketch.add([1.0, 2.0])
    # JSON reads a long integer literal as a Python int, which float() cannot hold.
    data = json.loads(json.dumps(sketch.to_dict()).replace(
        f'"{field}": {json.dumps(sketch.to_dict()[field])}', f'"{field}": {text}'))
    assert isinstance(data[field], int)
    with pytest.raises(ValueError, match=field):
        DDSketch.from_dict(data)


def test_a_snapshot_window_with_an_age_past_the_float_range_is_a_value_error() -> None:
    rolling = RollingSketch()
    rolling.add([1.0], now=START)
    data = json.loads(json.dumps(rolling.to_dict()).replace('"max_age_seconds": 600.0',
                                                            '"max_age_seconds": 1' + "0" * 400))
    with pytest.raises(ValueError, match="max_age_seconds"):
        RollingSketch.from_dict(data)


# --- worker bins past int64 ------------------------------------------------------------------

big_counts = st.lists(st.one_of(st.integers(0, 10), st.integers(1 << 59, (1 << 63) - 1)),
                      min_size=1, max_size=6)


@given(big_counts, st.integers(0, (1 << 63) - 1))
def test_worker_bins_past_two_to_the_61_are_refused_never_read_as_negative_values(
        counts: list[int], zeros: int) -> None:
    # The multi-worker merge sums every worker's int64 bins into one run (a crafted or
    # corrupted snapshot file can hold any count): a sum past 2**63 wrapped negative, and a
    # sketch of positive values then read negative quantiles and a negative count.
    run = np.array(counts, dtype=np.int64)
    if not run.any():
        run[-1] = 1
    try:
        sketch = DDSketch.from_bins(0.01, 2048, positive=(0, run), zero_count=zeros)
    except ValueError as exc:
        assert "count" in str(exc)
        assert int(sum(run.tolist())) + zeros > MAX_TOTAL_COUNT or run.max() > MAX_TOTAL_COUNT
        return
    assert sketch.count == int(sum(run.tolist())) + zeros <= MAX_TOTAL_COUNT
    assert all(q >= 0.0 for q in sketch.quantiles(QS))


def test_unsigned_worker_bins_past_int64_are_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        DDSketch.from_bins(0.01, 2048, positive=(0, np.array([1 << 63], dtype=np.uint64)))


# --- counts past 2**53 -----------------------------------------------------------------------

@given(st.integers(1 << 54, 1 << 59), st.integers(1 << 54, 1 << 59),
       st.floats(1.0, 1e6), st.floats(1.01, 1e3))
def test_the_largest_value_of_a_huge_count_is_read_within_alpha(
        low_count: int, high_count: int, low: float, ratio: float) -> None:
    # A long-lived merged series restored from a snapshot: floor(q * (count - 1)) in floats
    # rounded up to count, and the maximum read the empty bin above the largest value.
    template = DDSketch()
    template.add([low, low * ratio])
    data = template.to_dict()
    counts = data["positive"]["counts"]
    if len(counts) == 1:
        counts[0] = low_count + high_count
    else:
        counts[0], counts[-1] = low_count, high_count
    sketch = DDSketch.from_dict(data)
    top = max(low, low * ratio)
    have = sketch.quantiles([1.0])[0]
    assert abs(have - top) <= 0.01 * top * (1 + 1e-9), (have, top)


# --- rolling windows too narrow to index time -------------------------------------------------

@pytest.mark.parametrize(("max_age", "buckets"), [(5e-324, 5), (1e-300, 1), (4e-6, 5)])
def test_a_window_too_narrow_to_index_time_is_refused_when_made(max_age: float,
                                                                  buckets: int) -> None:
    # Before, it was made and every add divided by zero (ZeroDivisionError) or overflowed
    # the bucket id (OverflowError) in the drain, naming no setting.
    with pytest.raises(ValueError, match="max_age_seconds"):
        RollingSketch(max_age_seconds=max_age, age_buckets=buckets)


def test_the_narrowest_window_allowed_still_adds_and_reads() -> None:
    rolling = RollingSketch(max_age_seconds=5e-6, age_buckets=5)
    rolling.add([1.0, 2.0, 3.0], now=START)
    assert rolling.window(now=START).count == 3


def test_a_time_past_the_float_range_is_a_value_error() -> None:
    rolling = RollingSketch()
    with pytest.raises(ValueError, match="now must be a finite time"):
        rolling.add([1.0], now=10 ** 400)
    with pytest.raises(ValueError, match="now must be a finite time"):
        rolling.quantiles([0.5], now=10 ** 400)


# --- memory that does not depend on what files say --------------------------------------------

def test_reading_sketches_of_many_accuracies_keeps_the_value_memo_bounded() -> None:
    # Worker snapshot files each name their sketches' accuracy: a directory of stale or
    # crafted files with ever new accuracies must not grow the process's memory scrape after
    # scrape. Quantiles stay right whatever the memo holds.
    from inferwatch.core import ddsketch as sketch_module

    for i in range(300):
        accuracy = 0.01 + i * 1e-5
        sketch = DDSketch.from_dict({**sketch_of(np.array([1.0, 10.0]), 0.01).to_dict(),
                                     "relative_accuracy": accuracy})
        sketch.quantiles([0.5, 1.0])
    assert len(sketch_module._KEY_VALUES) <= 64
    check = sketch_of(np.array([3.0, 30.0]), 0.01)
    assert abs(check.quantiles([1.0])[0] - 30.0) <= 0.01 * 30.0
