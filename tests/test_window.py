"""RollingSketch: epoch-aligned buckets, expiry, merges across workers, round trips."""

from __future__ import annotations

import copy
import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.core import rolling_sketch as window_module
from inferwatch.core.ddsketch import DDSketch
from inferwatch.core.rolling_sketch import RollingSketch

settings.register_profile("window", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("window")

MAX_AGE = 600.0
AGE_BUCKETS = 5
WIDTH = MAX_AGE / AGE_BUCKETS
START = 1_700_000_040.0  # 14_166_667 buckets of 120 s after the epoch: aligned
QS = [0.0, 0.1, 0.5, 0.9, 0.99, 1.0]

# (value, seconds after START) pairs spread over three windows. Magnitudes span 12 orders,
# inside what the default 2048 bins keep exact to 1% (collapsing is tested in test_sketch).
observations = st.lists(
    st.tuples(
        st.floats(-1e6, 1e6).map(lambda x: 0.0 if abs(x) < 1e-6 else x),
        st.floats(0.0, 3 * MAX_AGE, allow_nan=False),
    ),
    max_size=80,
)


def bins_of(rolling: RollingSketch, now: float) -> dict[str, object]:
    data = rolling.window(now).to_dict()
    del data["sum"]  # float addition order differs between merged and direct feeding
    return data


def feed(rolling: RollingSketch, pairs: list[tuple[float, float]]) -> None:
    for value, offset in sorted(pairs, key=lambda pair: pair[1]):
        rolling.add([value], now=START + offset)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(window_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_bucket_ids_are_aligned_to_the_epoch() -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    assert rolling.bucket_id(START) == START // WIDTH
    assert rolling.bucket_id(START + WIDTH - 1e-3) == rolling.bucket_id(START)
    assert rolling.bucket_id(START + WIDTH) == rolling.bucket_id(START) + 1


def test_values_expire_when_their_bucket_leaves_the_window() -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    rolling.add(np.array([1.0, 2.0, 3.0]), now=START + 5.0)
    rolling.add(np.array([100.0]), now=START + WIDTH)
    # The first bucket holds START..START+WIDTH; it stays for age_buckets bucket widths.
    assert rolling.window(START + MAX_AGE - 1e-3).count == 4
    expired_first = rolling.window(START + MAX_AGE)
    assert expired_first.count == 1
    assert expired_first.quantiles([0.5])[0] == pytest.approx(100.0, rel=0.01)
    assert rolling.window(START + MAX_AGE + WIDTH).count == 0
    assert rolling.bucket_ids == []
    assert all(math.isnan(v) for v in rolling.quantiles(QS, now=START + 10 * MAX_AGE))


def test_expired_buckets_are_dropped_so_memory_stays_bounded() -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    rng = np.random.default_rng(3)
    sizes = []
    for minute in range(24 * 60):
        rolling.add(rng.lognormal(size=50), now=START + 60.0 * minute)
        assert len(rolling.bucket_ids) <= AGE_BUCKETS
        sizes.append(rolling.nbytes)
    assert max(sizes) <= AGE_BUCKETS * 2 * 2048 * 8
    assert rolling.window(START + 60.0 * 24 * 60).count <= 50 * MAX_AGE / 60


def test_a_clock_stepped_back_drops_buckets_from_the_future() -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    rolling.add([1.0], now=START + 10 * MAX_AGE)
    rolling.add([2.0], now=START)
    assert rolling.bucket_ids == [rolling.bucket_id(START)]
    assert rolling.window(START).count == 1


def test_a_bucket_slightly_ahead_is_kept_but_counted_only_once_its_time_comes() -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    rolling.add([1.0], now=START + WIDTH)
    assert rolling.window(START).count == 0
    assert rolling.window(START + WIDTH).count == 1


def latest(*pair_lists: list[tuple[float, float]]) -> float:
    return max((offset for pairs in pair_lists for _, offset in pairs), default=0.0)


@given(observations, st.floats(0.0, MAX_AGE))
def test_window_quantiles_are_within_alpha_of_numpy_over_the_same_window(
    pairs: list[tuple[float, float]], later: float
) -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    feed(rolling, pairs)
    now = START + latest(pairs) + later
    current = rolling.bucket_id(now)
    inside = np.array(
        [v for v, t in pairs if current - AGE_BUCKETS < rolling.bucket_id(START + t) <= current]
    )
    got = rolling.quantiles(QS, now=now)
    if inside.size == 0:
        assert all(math.isnan(v) for v in got)
        return
    expected = np.quantile(inside, QS, method="lower")
    for want, have in zip(expected, got):
        if want == 0.0:
            assert have == 0.0
        else:
            assert abs(have - want) <= 0.01 * abs(want) * (1 + 1e-9)


@given(observations, observations, st.floats(0.0, MAX_AGE))
def test_merging_two_workers_equals_one_fed_with_everything(
    first: list[tuple[float, float]], second: list[tuple[float, float]], later: float
) -> None:
    worker_a, worker_b, single = (RollingSketch(MAX_AGE, AGE_BUCKETS) for _ in range(3))
    feed(worker_a, first)
    feed(worker_b, second)
    feed(single, first + second)
    worker_a.merge(worker_b)
    now = START + latest(first, second) + later
    assert bins_of(worker_a, now) == bins_of(single, now)
    assert worker_a.quantiles(QS, now) == single.quantiles(QS, now)
    assert worker_a.bucket_ids == single.bucket_ids


def test_merge_copies_buckets_so_the_source_stays_independent() -> None:
    a, b = RollingSketch(), RollingSketch()
    b.add([1.0], now=START)
    a.merge(b)
    a.add([2.0], now=START)
    assert b.window(START).count == 1 and a.window(START).count == 2


@pytest.mark.parametrize(
    "other",
    [
        RollingSketch(max_age_seconds=300.0),
        RollingSketch(age_buckets=10),
        RollingSketch(relative_accuracy=0.02),
        RollingSketch(max_bins=512),
    ],
)
def test_merge_rejects_a_different_config(other: RollingSketch) -> None:
    with pytest.raises(ValueError, match="different"):
        RollingSketch().merge(other)


def test_merge_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        RollingSketch().merge(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_age_seconds": 0}, "max_age_seconds"),
        ({"max_age_seconds": -5.0}, "max_age_seconds"),
        ({"max_age_seconds": math.inf}, "max_age_seconds"),
        ({"max_age_seconds": "600"}, "max_age_seconds"),
        ({"age_buckets": 0}, "age_buckets"),
        ({"age_buckets": 2.0}, "age_buckets"),
        ({"age_buckets": 10**6}, "age_buckets"),
        ({"relative_accuracy": 1.5}, "relative_accuracy"),
        ({"max_bins": 0}, "max_bins"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RollingSketch(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [math.nan, math.inf])
def test_a_non_finite_time_is_rejected(now: float) -> None:
    with pytest.raises(ValueError, match="now"):
        RollingSketch().add([1.0], now=now)


@given(observations)
def test_to_dict_from_dict_round_trips_through_json(pairs: list[tuple[float, float]]) -> None:
    rolling = RollingSketch(MAX_AGE, AGE_BUCKETS)
    feed(rolling, pairs)
    restored = RollingSketch.from_dict(json.loads(json.dumps(rolling.to_dict())))
    assert restored.to_dict() == rolling.to_dict()
    now = START + 3 * MAX_AGE
    assert restored.quantiles(QS, now) == rolling.quantiles(QS, now)


def _valid() -> dict[str, object]:
    rolling = RollingSketch()
    rolling.add([1.0, 2.0], now=START)
    rolling.add([3.0], now=START + WIDTH)
    return rolling.to_dict()


def _with(key: str, value: object) -> dict[str, object]:
    data = copy.deepcopy(_valid())
    if value is KeyError:
        del data[key]
    else:
        data[key] = value
    return data


def _bucket_sketch_with(key: str, value: object) -> dict[str, object]:
    data = copy.deepcopy(_valid())
    data["buckets"][0][1][key] = value  # type: ignore[index]
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("buckets", "dict"),
        (_with("format", 2), "format"),
        (_with("age_buckets", KeyError), "age_buckets"),
        (_with("max_age_seconds", -1.0), "max_age_seconds"),
        (_with("buckets", {"1": {}}), "buckets"),
        (_with("buckets", [[1]]), "pair"),
        (_with("buckets", [["1", _valid()["buckets"][0][1]]]), "id"),  # type: ignore[index]
        (_with("buckets", [_valid()["buckets"][0]] * 2), "twice"),  # type: ignore[index]
        (_bucket_sketch_with("max_bins", 512), "different"),
        (_bucket_sketch_with("zero_count", -3), "zero_count"),
    ],
)
def test_malformed_dict_raises_value_error_naming_the_problem(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RollingSketch.from_dict(data)


def test_put_holds_a_sketch_of_the_same_configuration():
    rolling = RollingSketch(max_age_seconds=600, age_buckets=5)
    sketch = DDSketch()
    sketch.add([1.0, 2.0, 3.0])
    rolling.put(rolling.bucket_id(1_000.0), sketch)
    assert rolling.window(1_000.0).count == 3
    with pytest.raises(ValueError, match="relative_accuracy and max_bins"):
        rolling.put(0, DDSketch(relative_accuracy=0.02))
