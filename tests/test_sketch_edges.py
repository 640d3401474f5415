"""Edges of the rolling quantiles: the sketches against numpy on the data users have (signs,
zero, subnormals, 1e-300..1e300, bin boundaries, heavy tails, probabilities, big integers,
non-finite values), windows under clock jumps, merges across workers, bounded memory, round
trips, and the status page's ring of totals when the wall clock steps."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.core.ddsketch import DDSketch
from inferwatch.core.history import FEATURE_INTERVAL_SECONDS, History
from inferwatch.core.rolling_sketch import RollingSketch
from inferwatch.core.state import ModelState, SummarySettings, SummaryState
from inferwatch.core.unit_sketch import ABSOLUTE_ERROR, from_sketch, to_sketch

settings.register_profile("sketch_edges", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sketch_edges")

QS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]
NO_COLLAPSE_BINS = 1 << 18  # every finite double at alpha >= 0.5%: nothing folds
SLACK = 1e-9  # log/exp rounding on a bin boundary
START = 1_700_000_040.0
HOUR = 3600.0
FLOAT_MAX = float(np.finfo(np.float64).max)


def exact(values: np.ndarray, sketch: DDSketch, qs: list[float]) -> np.ndarray:
    """numpy's quantiles of what the sketch counts: finite values, those too small to index
    as zero (the documented behaviour for subnormals)."""
    finite = values[np.isfinite(values)]
    finite = np.where(np.abs(finite) < sketch.min_indexable, 0.0, finite)
    return np.quantile(finite, qs, method="lower")


def assert_within_alpha(sketch: DDSketch, values: np.ndarray, qs: list[float] = QS) -> None:
    alpha = sketch.relative_accuracy
    for q, want, have in zip(qs, exact(values, sketch, qs), sketch.quantiles(qs)):
        if want == 0.0:
            assert have == 0.0, (q, want, have)
        else:
            assert abs(have - want) <= alpha * abs(want) * (1 + SLACK), (q, want, have)


def sketch_of(values: np.ndarray | list[float], **kwargs: float) -> DDSketch:
    sketch = DDSketch(**kwargs)  # type: ignore[arg-type]
    sketch.add(values)
    return sketch


def bins(sketch: DDSketch) -> dict[str, object]:
    data = sketch.to_dict()
    del data["sum"]  # float addition order differs between paths
    return data


special = st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300,
                           -1e-300, 1e300, -1e300, FLOAT_MAX, -FLOAT_MAX, 1.0, -1.0,
                           float(2**53 + 1), float(2**63), math.nan, math.inf, -math.inf])
user_floats = hnp.arrays(np.float64, st.integers(1, 300),
                         elements=st.one_of(st.floats(allow_subnormal=True), special))


# --- DDSketch against numpy -----------------------------------------------------------------

@given(user_floats, st.sampled_from([0.005, 0.01, 0.05]))
def test_any_user_floats_are_within_alpha_and_non_finite_ones_are_ignored(
        values: np.ndarray, alpha: float) -> None:
    sketch = sketch_of(values, relative_accuracy=alpha, max_bins=NO_COLLAPSE_BINS)
    finite = values[np.isfinite(values)]
    assert sketch.count == finite.size
    if finite.size:
        assert_within_alpha(sketch, values)
    else:
        assert all(math.isnan(v) for v in sketch.quantiles(QS))


@given(st.integers(-40, 40), st.integers(1, 100), st.sampled_from([0.002, 0.01, 0.05]))
def test_values_on_bin_boundaries_are_within_alpha(start: int, n: int, alpha: float) -> None:
    gamma = (1 + alpha) / (1 - alpha)
    edges = gamma ** np.arange(start, start + n, dtype=np.float64)
    values = np.concatenate([edges, -edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf)])
    assert_within_alpha(sketch_of(values, relative_accuracy=alpha), values)


@given(st.floats(-1e300, 1e300), st.integers(1, 500))
def test_all_equal_values_and_a_single_value(value: float, n: int) -> None:
    values = np.full(n, value)
    sketch = sketch_of(values)
    assert_within_alpha(sketch, values)
    assert len(set(sketch.quantiles(QS))) == 1


@given(st.integers(0, 2**32), st.sampled_from([0.5, 1.0, 1.5, 3.0]))
def test_heavy_tails_with_default_bins(seed: int, shape: float) -> None:
    rng = np.random.default_rng(seed)
    values = rng.pareto(shape, 5000) * rng.choice([-1.0, 1.0], 5000)
    sketch = sketch_of(values)
    # Pareto with small shapes can exceed the default bins' 17 decades only below 1e-12.
    spread = np.abs(values[values != 0])
    if spread.max() / spread.min() < 1e15:
        assert_within_alpha(sketch, values)


@given(st.lists(st.integers(2**53, 2**64 - 1), min_size=1, max_size=100))
def test_integers_above_two_to_the_53(ints: list[int]) -> None:
    as_floats = np.array([float(i) for i in ints])
    assert_within_alpha(sketch_of(ints), as_floats)
    assert_within_alpha(sketch_of(np.array(ints, dtype=np.uint64)), as_floats)
    assert_within_alpha(sketch_of([-i for i in ints]), -as_floats)


@given(hnp.arrays(np.float64, st.integers(1, 300),
                  elements=st.one_of(st.floats(1e-300, 1e-250), st.floats(1e250, 1e300),
                                     st.just(0.0))),
       st.booleans())
def test_spreads_past_the_bin_cap_fold_only_the_smallest_and_memory_stays_bounded(
        values: np.ndarray, negate: bool) -> None:
    sign = -1.0 if negate else 1.0
    sketch = sketch_of(sign * values)
    assert sketch.nbytes <= 2 * sketch.max_bins * 8
    assert sketch.count == values.size
    alpha = sketch.relative_accuracy
    gamma = (1 + alpha) / (1 - alpha)
    largest = float(values.max())
    kept = largest / gamma ** (sketch.max_bins - 1)  # below this, bins fold together
    for want, have in zip(np.quantile(sign * values, QS, method="lower"), sketch.quantiles(QS)):
        want, have = abs(want), abs(have)
        if want == 0.0:
            assert have == 0.0
        elif want >= kept * gamma:
            assert abs(have - want) <= alpha * want * (1 + SLACK)
        else:  # folded up into the lowest kept bin: never below the value, never past it
            assert want <= have <= kept * gamma * (1 + alpha)


@pytest.mark.parametrize("alpha", [0.001, 0.002, 0.02, 0.1, 0.5, 0.9])
def test_the_top_bin_reads_the_float_maximum_without_an_overflow_warning(alpha: float) -> None:
    sketch = sketch_of([FLOAT_MAX, -FLOAT_MAX], relative_accuracy=alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = sketch.quantiles([0.0, 1.0])
    assert high == FLOAT_MAX and low == -FLOAT_MAX


@given(st.integers(1, 300), st.integers(0, 2**32))
def test_one_value_at_a_time_gives_the_bins_of_one_batch(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice([0.0, -0.0, 5e-324, 1e-300, 1e300, -1e300, math.nan, math.inf, -7.5,
                         3.25, 2.0**60], size=n)
    one_by_one = DDSketch()
    for value in values:
        one_by_one.add([value])
    assert bins(one_by_one) == bins(sketch_of(values))


# --- merges ---------------------------------------------------------------------------------

@given(st.lists(user_floats, min_size=1, max_size=5), st.sampled_from([16, 2048]))
def test_a_merge_of_workers_is_the_sketch_of_their_union(parts: list[np.ndarray],
                                                         max_bins: int) -> None:
    workers = [sketch_of(part, max_bins=max_bins) for part in parts]
    merged = DDSketch(max_bins=max_bins)
    for worker in workers:
        merged.merge(worker)
    union = sketch_of(np.concatenate(parts), max_bins=max_bins)
    assert bins(merged) == bins(union)
    if union.count:
        assert DDSketch.merged_quantiles(workers, QS) == union.quantiles(QS)


def test_merging_empty_sketches_keeps_an_empty_sketch_that_reads_nan() -> None:
    merged = DDSketch()
    merged.merge(DDSketch())
    merged.merge(sketch_of([math.nan, math.inf]))
    assert merged.count == 0 and merged.sum == 0.0
    assert all(math.isnan(v) for v in merged.quantiles(QS))
    assert all(math.isnan(v) for v in DDSketch.merged_quantiles([DDSketch(), DDSketch()], QS))
    full = sketch_of([1.0, 2.0])
    full.merge(DDSketch())
    assert bins(full) == bins(sketch_of([1.0, 2.0]))


def test_sketches_of_other_parameters_do_not_merge() -> None:
    with pytest.raises(ValueError, match="relative_accuracy"):
        DDSketch(0.01).merge(DDSketch(0.02))
    a = RollingSketch(600, 5)
    for other in (RollingSketch(600, 6), RollingSketch(300, 5), RollingSketch(600, 5, 0.02),
                  RollingSketch(600, 5, 0.01, 4096)):
        with pytest.raises(ValueError, match="different"):
            a.merge(other)


@given(user_floats)
def test_round_trip_through_json(values: np.ndarray) -> None:
    sketch = sketch_of(values)
    back = DDSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert bins(back) == bins(sketch)
    assert back.quantiles(QS) == sketch.quantiles(QS) or sketch.count == 0


# --- probabilities --------------------------------------------------------------------------

probabilities = hnp.arrays(np.float64, st.integers(1, 300), elements=st.one_of(
    st.floats(0.0, 1.0), st.floats(0.4999, 0.5001), st.floats(1 - 1e-6, 1.0),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 5e-324, float(np.nextafter(1.0, 0.0)),
                     float(np.nextafter(0.5, 1.0)), float(np.nextafter(0.5, 0.0))])))


@given(probabilities, st.lists(st.sampled_from([math.nan, math.inf, -math.inf, -0.5, 1.5]),
                               max_size=5))
def test_probability_quantiles_are_within_the_absolute_error(values: np.ndarray,
                                                             invalid: list[float]) -> None:
    summary = SummaryState(SummarySettings(), probabilities=True)
    observed = np.concatenate([values, np.array(invalid)])
    summary.observe(observed, START)
    # As documented: nan is left out of the sketch, values outside [0, 1] are clipped.
    counted = np.clip(observed[~np.isnan(observed)], 0.0, 1.0)
    for q, have in zip(QS, summary.quantiles(QS, START)):
        want = float(np.quantile(counted, q, method="lower"))
        assert abs(have - want) <= ABSOLUTE_ERROR + 1e-12, (q, want, have)
    assert summary.count == observed.size


def test_zero_and_one_come_back_as_zero_and_nearly_one() -> None:
    assert from_sketch(to_sketch(np.array([0.0, -0.0, 1.0]))).tolist() == [0.0, 0.0,
                                                                            1 - 1e-9]


# --- windows --------------------------------------------------------------------------------

def test_a_clock_jumping_forward_by_hours_leaves_an_empty_window_that_reads_nan() -> None:
    rolling = RollingSketch(600, 5)
    rolling.add(np.arange(1.0, 101.0), now=START)
    later = START + 5 * HOUR
    assert rolling.window(later).count == 0
    assert all(math.isnan(v) for v in rolling.quantiles(QS, later))
    rolling.add([7.0], now=later)
    assert rolling.quantiles([0.5], later) == sketch_of([7.0]).quantiles([0.5])
    assert len(rolling.bucket_ids) == 1


def test_a_clock_stepped_back_by_hours_shows_only_what_came_after_the_step() -> None:
    rolling = RollingSketch(600, 5)
    rolling.add([1000.0] * 50, now=START + 2 * HOUR)
    rolling.add([1.0, 2.0, 3.0], now=START)
    assert rolling.window(START).count == 3
    assert rolling.quantiles([1.0], START) == sketch_of([3.0]).quantiles([1.0])
    assert rolling.window(START + 2 * HOUR).count == 0  # the old future does not come back


operations = st.lists(st.tuples(st.sampled_from(["add", "add_many", "read"]),
                                st.floats(-3 * HOUR, 3 * HOUR), st.integers(0, 40)),
                      max_size=40)


@given(operations, st.integers(0, 2**32))
def test_a_window_under_any_clock_equals_a_plain_model_of_it(ops: list, seed: int) -> None:
    """Buckets by epoch-aligned id; dropped once a bucket is a window behind or ahead of the
    time of an add or a read; a read counts the buckets up to its own."""
    rng = np.random.default_rng(seed)
    rolling = RollingSketch(600, 5)
    model: dict[int, list[float]] = {}
    now = START
    for kind, step, n in ops:
        now += step
        current = math.floor(now / 120.0)
        for bucket in [b for b in model if b <= current - 5 or b > current + 5]:
            del model[bucket]
        if kind == "read":
            inside = [v for bucket, vs in model.items() if bucket <= current for v in vs]
            assert rolling.window(now).count == len(inside)
            got = rolling.quantiles(QS, now)
            if not inside:
                assert all(math.isnan(v) for v in got)
                continue
            for want, have in zip(np.quantile(inside, QS, method="lower"), got):
                assert abs(have - want) <= 0.01 * abs(want) * (1 + SLACK)
            continue
        values = rng.lognormal(0.0, 3.0, n if kind == "add" else 3000)
        rolling.add(values, now)
        model.setdefault(current, []).extend(values.tolist())
        assert len(rolling.bucket_ids) <= 2 * rolling.age_buckets


@given(st.lists(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(0.0, 1800.0)),
                         max_size=30), min_size=1, max_size=4))
def test_merged_worker_windows_equal_one_window_of_everything(workers: list) -> None:
    merged = RollingSketch(600, 5)
    everything = RollingSketch(600, 5)
    for pairs in workers:
        worker = RollingSketch(600, 5)
        for value, offset in sorted(pairs, key=lambda pair: pair[1]):
            worker.add([value], now=START + offset)
        merged.merge(worker)
    for value, offset in sorted((p for pairs in workers for p in pairs), key=lambda p: p[1]):
        everything.add([value], now=START + offset)
    now = START + 1800.0
    assert bins(merged.window(now)) == bins(everything.window(now))
    back = RollingSketch.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert bins(back.window(now)) == bins(merged.window(now))


# --- the status page's ring of totals (history.py) ------------------------------------------

def _state_with(requests: float) -> ModelState:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    return state


def _run_drain(history: History, start: float, seconds: float, step: float,
               requests: list[float]) -> float:
    """The background drain's rounds every `step` seconds: a sample when one is due."""
    now = start
    while now < start + seconds:
        requests[0] += 1.0
        if history.due(now):
            history.record([_state_with(requests[0])], now)
        now += step
    return now


def test_history_keeps_sampling_after_the_clock_steps_back() -> None:
    history = History(interval_seconds=10, span_seconds=4200)
    requests = [0.0]
    now = _run_drain(history, START, 600, 1.0, requests)
    stepped = now - HOUR  # NTP steps the wall clock back an hour
    end = _run_drain(history, stepped, 300, 1.0, requests)
    recent = [s for s in history.samples(("fraud", "1")) if stepped <= s.at < end]
    assert len(recent) >= 29  # one every 10 s, not none for an hour
    assert sum(s.features is not None for s in recent) >= 4  # and feature counts once a minute


def test_history_reads_windows_in_time_order_after_the_clock_steps_back() -> None:
    history = History(interval_seconds=10, span_seconds=4200)
    requests = [0.0]
    now = _run_drain(history, START, 600, 1.0, requests)
    stepped = now - HOUR
    now = _run_drain(history, stepped, 300, 1.0, requests)
    ats = [s.at for s in history.samples(("fraud", "1"))]
    assert ats == sorted(ats)
    base = history.before(("fraud", "1"), now - 60)
    assert base is not None and now - 70 <= base.at <= now - 60
    assert requests[0] - base.totals["requests"] <= 71  # a minute of calls, not since start


def test_history_takes_feature_counts_again_after_the_clock_steps_back() -> None:
    history = History(interval_seconds=10, span_seconds=4200)
    history.record([_state_with(1.0)], START)
    history.record([_state_with(2.0)], START - HOUR)
    assert history.samples(("fraud", "1"))[-1].features is not None
    later = START - HOUR + FEATURE_INTERVAL_SECONDS / 2
    history.record([_state_with(3.0)], later)
    assert history.samples(("fraud", "1"))[-1].features is None  # still once a minute
