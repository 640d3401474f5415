"""DDSketch: relative accuracy against numpy, exact merges, round trips, bounded memory."""

from __future__ import annotations

import copy
import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferwatch.core import ddsketch as sketch_module
from inferwatch.core.ddsketch import DDSketch

# Enough bins for every finite double at alpha >= 0.5%: nothing collapses, so the accuracy
# bound must hold for any input.
NO_COLLAPSE_BINS = 1 << 18
QS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]
# Float rounding in log/exp may put a value on a bin boundary a hair beyond alpha.
SLACK = 1e-9

settings.register_profile("sketch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sketch")

any_floats = hnp.arrays(
    np.float64,
    st.integers(1, 300),
    elements=st.floats(allow_nan=False, allow_infinity=False),
)
# Signed values within 16 orders of magnitude per sign: inside the default 2048 bins.
bounded_floats = hnp.arrays(
    np.float64,
    st.integers(1, 300),
    elements=st.one_of(
        st.just(0.0),
        st.builds(
            lambda sign, exponent, mantissa: sign * mantissa * 10.0**exponent,
            st.sampled_from([-1.0, 1.0]),
            st.integers(-8, 7),
            st.floats(1.0, 9.999),
        ),
    ),
)


def reference(values: np.ndarray, sketch: DDSketch) -> np.ndarray:
    """Finite values with the ones too small to index set to zero, as the sketch counts them."""
    finite = values[np.isfinite(values)]
    return np.where(np.abs(finite) < sketch.min_indexable, 0.0, finite)


def assert_within_alpha(sketch: DDSketch, values: np.ndarray, qs: list[float]) -> None:
    expected = np.quantile(reference(values, sketch), qs, method="lower")
    got = sketch.quantiles(qs)
    alpha = sketch.relative_accuracy
    for q, want, have in zip(qs, expected, got):
        if want == 0.0:
            assert have == 0.0, (q, want, have)
        else:
            assert abs(have - want) <= alpha * abs(want) * (1 + SLACK), (q, want, have)


def sketch_of(values: np.ndarray, **kwargs: int | float) -> DDSketch:
    sketch = DDSketch(**kwargs)  # type: ignore[arg-type]
    sketch.add(values)
    return sketch


def bins_of(sketch: DDSketch) -> dict[str, object]:
    """The to_dict form without the float sum, which depends on the order of addition."""
    data = sketch.to_dict()
    del data["sum"]
    return data


def test_docstring_examples_run() -> None:
    result = doctest.testmod(sketch_module)
    assert result.attempted > 0
    assert result.failed == 0


@given(any_floats, st.sampled_from([0.005, 0.01, 0.05]))
def test_every_quantile_is_within_alpha_of_numpy_for_any_floats(
    values: np.ndarray, alpha: float
) -> None:
    sketch = sketch_of(values, relative_accuracy=alpha, max_bins=NO_COLLAPSE_BINS)
    assert sketch.count == values.size
    assert_within_alpha(sketch, values, QS)


@given(bounded_floats, st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_default_bins_are_exact_enough_within_sixteen_orders_of_magnitude(
    values: np.ndarray, qs: list[float]
) -> None:
    sketch = sketch_of(values)
    assert_within_alpha(sketch, values, qs)


@given(hnp.arrays(np.float64, st.integers(0, 100)))
def test_non_finite_values_are_ignored(values: np.ndarray) -> None:
    sketch = sketch_of(values, max_bins=NO_COLLAPSE_BINS)
    finite = values[np.isfinite(values)]
    assert sketch.count == finite.size
    if finite.size:
        assert_within_alpha(sketch, values, QS)
    else:
        assert sketch.is_empty
        assert all(math.isnan(v) for v in sketch.quantiles(QS))


def test_sum_is_of_finite_values_and_count_includes_zeros() -> None:
    sketch = sketch_of(np.array([1.5, -0.5, 0.0, -0.0, 5e-324, np.nan, np.inf, -np.inf]))
    assert sketch.count == 5
    assert sketch.sum == pytest.approx(1.0)
    # Zeros (and the subnormal, counted as zero) sit between the two signs.
    assert sketch.quantiles([0.25, 0.5, 0.75]) == [0.0, 0.0, 0.0]
    assert sketch.quantiles([0.0])[0] == pytest.approx(-0.5, rel=0.01)
    assert sketch.quantiles([1.0])[0] == pytest.approx(1.5, rel=0.01)


def test_empty_sketch_answers_nan() -> None:
    sketch = DDSketch()
    sketch.add([])
    assert sketch.is_empty and sketch.count == 0 and sketch.sum == 0.0
    assert all(math.isnan(v) for v in sketch.quantiles([0.0, 0.5, 1.0]))


def test_extreme_magnitudes_stay_finite() -> None:
    top = np.finfo(np.float64).max
    sketch = sketch_of(np.array([top, -top]), max_bins=NO_COLLAPSE_BINS)
    low, high = sketch.quantiles([0.0, 1.0])
    assert math.isfinite(low) and math.isfinite(high)
    assert high == pytest.approx(top, rel=0.01) and low == pytest.approx(-top, rel=0.01)


@pytest.mark.parametrize("qs", [[-0.1], [1.5], [math.nan], [0.5, 2.0]])
def test_quantiles_outside_unit_interval_are_rejected(qs: list[float]) -> None:
    with pytest.raises(ValueError, match="quantiles"):
        sketch_of(np.array([1.0])).quantiles(qs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"relative_accuracy": 0.0}, "relative_accuracy"),
        ({"relative_accuracy": 1.0}, "relative_accuracy"),
        ({"relative_accuracy": -0.01}, "relative_accuracy"),
        ({"relative_accuracy": 1e-300}, "relative_accuracy"),
        ({"relative_accuracy": math.nan}, "relative_accuracy"),
        ({"relative_accuracy": "0.01"}, "relative_accuracy"),
        ({"relative_accuracy": True}, "relative_accuracy"),
        ({"max_bins": 0}, "max_bins"),
        ({"max_bins": 2.5}, "max_bins"),
        ({"max_bins": True}, "max_bins"),
        ({"max_bins": 1 << 30}, "max_bins"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DDSketch(**kwargs)  # type: ignore[arg-type]


@given(any_floats, any_floats)
def test_merge_equals_a_sketch_of_the_concatenation(a: np.ndarray, b: np.ndarray) -> None:
    for max_bins in (NO_COLLAPSE_BINS, 64):
        merged = sketch_of(a, max_bins=max_bins)
        merged.merge(sketch_of(b, max_bins=max_bins))
        whole = sketch_of(np.concatenate([a, b]), max_bins=max_bins)
        assert bins_of(merged) == bins_of(whole)
        assert merged.quantiles(QS) == whole.quantiles(QS)
        with np.errstate(over="ignore"):
            magnitude = float(np.abs(a).sum() + np.abs(b).sum())
        if math.isfinite(magnitude):
            assert abs(merged.sum - whole.sum) <= 1e-9 * magnitude


@given(any_floats)
def test_collapsed_state_does_not_depend_on_insertion_order(values: np.ndarray) -> None:
    one_by_one = DDSketch(max_bins=32)
    for value in values[::-1]:
        one_by_one.add([value])
    assert bins_of(one_by_one) == bins_of(sketch_of(values, max_bins=32))


def test_merge_into_itself_doubles_every_count() -> None:
    sketch = sketch_of(np.array([-2.0, 0.0, 3.0, 3.0]))
    before = sketch.quantiles(QS)
    sketch.merge(sketch)
    assert sketch.count == 8 and sketch.sum == pytest.approx(8.0)
    assert sketch.quantiles(QS) == before


def test_merge_rejects_a_different_accuracy_or_type() -> None:
    with pytest.raises(ValueError, match="relative_accuracy"):
        DDSketch(relative_accuracy=0.01).merge(DDSketch(relative_accuracy=0.02))
    with pytest.raises(TypeError):
        DDSketch().merge([1.0])  # type: ignore[arg-type]


def test_copy_is_independent() -> None:
    original = sketch_of(np.array([1.0, -1.0]))
    duplicate = original.copy()
    duplicate.add(np.array([100.0, 200.0]))
    assert original.count == 2 and duplicate.count == 4
    assert original.quantiles([1.0])[0] == pytest.approx(1.0, rel=0.01)


@given(any_floats, st.sampled_from([8, 2048, NO_COLLAPSE_BINS]))
def test_to_dict_from_dict_round_trips_through_json(values: np.ndarray, max_bins: int) -> None:
    sketch = sketch_of(values, max_bins=max_bins)
    text = json.dumps(sketch.to_dict())
    restored = DDSketch.from_dict(json.loads(text))
    assert restored.to_dict() == sketch.to_dict() or math.isnan(sketch.sum)
    assert bins_of(restored) == bins_of(sketch)
    assert restored.quantiles(QS) == sketch.quantiles(QS)
    restored.add(values)
    sketch.add(values)
    assert bins_of(restored) == bins_of(sketch)


def test_to_dict_is_plain_json_types() -> None:
    data = sketch_of(np.array([1.0, -3.0, 0.0])).to_dict()

    def plain(node: object) -> bool:
        if isinstance(node, dict):
            return all(isinstance(k, str) and plain(v) for k, v in node.items())
        if isinstance(node, list):
            return all(plain(v) for v in node)
        return type(node) in (int, float, str)

    assert plain(data)
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def _valid() -> dict[str, object]:
    return sketch_of(np.array([0.5, 1.0, 2.0, -4.0, 0.0])).to_dict()


def _mutated(path: tuple[str, ...], value: object) -> dict[str, object]:
    data = copy.deepcopy(_valid())
    node: dict[str, object] = data
    for key in path[:-1]:
        node = node[key]  # type: ignore[assignment]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "dict"),
        ({}, "format"),
        (_mutated(("format",), 99), "format"),
        (_mutated(("relative_accuracy",), KeyError), "relative_accuracy"),
        (_mutated(("relative_accuracy",), 2.0), "relative_accuracy"),
        (_mutated(("max_bins",), -1), "max_bins"),
        (_mutated(("zero_count",), -1), "zero_count"),
        (_mutated(("zero_count",), 1.5), "zero_count"),
        (_mutated(("sum",), "1.0"), "sum"),
        (_mutated(("positive",), KeyError), "positive"),
        (_mutated(("positive",), [1, 2]), "positive"),
        (_mutated(("negative", "offset"), "3"), "offset"),
        (_mutated(("negative", "offset"), 10**9), "range"),
        (_mutated(("positive", "counts"), "1,2"), "counts"),
        (_mutated(("positive", "counts"), [1, -1, 1]), "counts"),
        (_mutated(("positive", "counts"), [1, 0.5, 1]), "counts"),
        (_mutated(("positive", "counts"), [1, True, 1]), "counts"),
        (_mutated(("positive", "counts"), [0, 1]), "counts"),
        (_mutated(("positive", "counts"), [1, 0]), "counts"),
        (_mutated(("positive", "counts"), [1, 2**63, 1]), "counts"),
        (_mutated(("positive", "counts"), [1] * 4096), "max_bins"),
        (_mutated(("positive", "counts"), [[1]]), "counts"),
    ],
)
def test_malformed_dict_raises_value_error_naming_the_problem(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DDSketch.from_dict(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@given(
    st.sampled_from(["format", "relative_accuracy", "max_bins", "zero_count", "sum",
                     "positive", "negative"]),
    st.sampled_from([None, "offset", "counts"]),
    json_values,
)
def test_any_corruption_either_loads_or_raises_value_error(
    field: str, inner: str | None, value: object
) -> None:
    data = _valid()
    if inner is not None and isinstance(data[field], dict):
        data[field][inner] = value  # type: ignore[index]
    else:
        data[field] = value
    try:
        loaded = DDSketch.from_dict(data)
    except ValueError:
        return
    # Whatever loads is a working sketch.
    assert loaded.count >= 0
    loaded.quantiles(QS)
    loaded.merge(loaded.copy())


def test_memory_is_bounded_for_a_million_values_over_twenty_orders_of_magnitude() -> None:
    rng = np.random.default_rng(7)
    sketch = DDSketch()
    cap = 2 * sketch.max_bins * np.dtype(np.int64).itemsize
    sizes = []
    all_values = []
    for _ in range(10):
        chunk = rng.choice([-1.0, 1.0], 100_000) * 10.0 ** rng.uniform(-10, 10, 100_000)
        all_values.append(chunk)
        sketch.add(chunk)
        sizes.append(sketch.nbytes)
    values = np.concatenate(all_values)
    assert sketch.count == 1_000_000
    assert max(sizes) <= cap
    # Once the range is covered, more data costs nothing.
    assert sizes[-1] == sizes[1]
    # The largest magnitudes keep their accuracy; the folded ones near zero read as the
    # smallest magnitude kept, never farther from zero than that.
    assert_within_alpha(sketch, values, [0.0, 0.01, 0.05, 0.95, 0.99, 1.0])
    alpha = sketch.relative_accuracy
    gamma = (1 + alpha) / (1 - alpha)
    for q in (0.47, 0.5, 0.53):
        exact = float(np.quantile(values, q, method="lower"))
        got = sketch.quantiles([q])[0]
        side = values[values < 0] if exact < 0 else values[values > 0]
        kept = float(np.abs(side).max()) * (1 + alpha) / gamma**(sketch.max_bins - 1)
        assert abs(exact) < kept / gamma
        assert abs(exact) <= abs(got) <= kept * (1 + SLACK)
        assert np.sign(got) == np.sign(exact)


def test_from_bins_equals_the_sketch_it_was_read_from():
    values = np.random.default_rng(5).normal(0, 10, 5000)
    source = DDSketch()
    source.add(values)
    data = source.to_dict()

    def run(store):
        return (store["offset"], np.asarray(store["counts"], dtype=np.int64)) \
            if store["counts"] else None

    rebuilt = DDSketch.from_bins(source.relative_accuracy, source.max_bins,
                                 positive=run(data["positive"]), negative=run(data["negative"]),
                                 zero_count=data["zero_count"], total=source.sum)
    qs = [0.01, 0.5, 0.9, 0.99]
    assert rebuilt.quantiles(qs) == source.quantiles(qs)
    assert rebuilt.count == source.count and rebuilt.sum == source.sum
    with pytest.raises(ValueError, match="non-negative"):
        DDSketch.from_bins(0.01, 2048, positive=(0, np.array([1, -1])))
    with pytest.raises(ValueError, match="non-negative"):
        DDSketch.from_bins(0.01, 2048, negative=(0, np.array([0.5])))
    wide = DDSketch.from_bins(0.01, 64, positive=(-10_000, np.ones(20_000, dtype=np.int64)))
    assert wide.nbytes <= 64 * 8 * 2 and wide.count == 20_000


@given(any_floats, st.sampled_from([8, 64, NO_COLLAPSE_BINS]),
       st.integers(1, 70))
def test_a_drains_few_values_land_in_the_bins_numpy_gives_them(values: np.ndarray,
                                                              max_bins: int,
                                                              chunk: int) -> None:
    """Small batches take the Python path, large ones numpy's: the bins are the same."""
    import inferwatch.core.ddsketch as module

    chunked = DDSketch(max_bins=max_bins)
    for start in range(0, len(values), chunk):
        chunked.add(values[start:start + chunk])
    saved = module._FEW_VALUES
    module._FEW_VALUES = 0  # numpy's path for every batch
    try:
        whole = DDSketch(max_bins=max_bins)
        for start in range(0, len(values), chunk):
            whole.add(values[start:start + chunk])
    finally:
        module._FEW_VALUES = saved
    assert bins_of(chunked) == bins_of(whole)
    assert chunked.count == whole.count
    assert chunked.sum == whole.sum or (math.isnan(chunked.sum) and math.isnan(whole.sum)) \
        or math.isclose(chunked.sum, whole.sum, rel_tol=1e-9, abs_tol=1e-9)


@given(st.lists(any_floats, min_size=1, max_size=5), st.sampled_from([8, 64, 2048]),
       st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_quantiles_of_many_sketches_are_those_of_their_merge(
    parts: list[np.ndarray], max_bins: int, qs: list[float]
) -> None:
    # merged_quantiles sums the bins in place of a merge; where the merge would fold bins
    # (few max_bins, wide values) it merges. Either way, the same floats.
    sketches = []
    for values in parts:
        sketch = DDSketch(0.01, max_bins)
        sketch.add(values)
        sketches.append(sketch)
    merged = DDSketch(0.01, max_bins)
    for sketch in sketches:
        merged.merge(sketch)

    expected = merged.quantiles(qs)

    assert np.array_equal(DDSketch.merged_quantiles(sketches, qs), expected, equal_nan=True)
    assert np.array_equal(DDSketch.merged_quantiles(sketches[:1], qs),
                          sketches[0].quantiles(qs), equal_nan=True)


def test_bin_values_are_remembered_as_numpy_computes_them() -> None:
    # A scrape reads the same bins again and again; the remembered values must be the very
    # floats the vectorised formula gives, or two paths to one quantile would disagree.
    sketch = DDSketch(0.02)
    values = np.random.default_rng(5).lognormal(sigma=3.0, size=5_000)
    sketch.add(values)
    first = sketch.quantiles(np.linspace(0.0, 1.0, 101))
    sketch_module._KEY_VALUES.clear()
    keys = np.arange(-200, 200, dtype=np.int64)
    direct = sketch._key_value(keys).tolist()

    assert sketch.quantiles(np.linspace(0.0, 1.0, 101)) == first
    assert [sketch._value_at((int(key), np.array([1]), 1), [0])[0] for key in keys] == direct


# --- small batches wait, then go in as one ---------------------------------------------------

_BATCHES = st.lists(
    st.tuples(
        st.sampled_from([0.0, 30.0, 130.0, 260.0, 1_000.0]),  # times in a few buckets
        st.one_of(st.integers(1, 40), st.sampled_from([0, 2047, 2048, 3000])).flatmap(
            lambda n: hnp.arrays(np.float64, n, elements=st.one_of(
                st.floats(-1e6, 1e6), st.just(0.0), st.just(float("nan")),
                st.just(float("inf")))))),
    min_size=1, max_size=90)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=_BATCHES, read_every=st.integers(1, 100), max_bins=st.sampled_from([8, 2048]))
def test_a_rolling_window_that_lets_small_batches_wait_reads_as_one_that_adds_them_at_once(
        batches, read_every, max_bins):
    """RollingSketch.add keeps small batches waiting (rolling_sketch.WAIT_MAX_VALUES and
    WAIT_MAX_BATCHES); whatever the sizes, buckets and reads in between, what any reader
    sees equals adding every batch to its bucket's sketch at once."""
    from inferwatch.core.rolling_sketch import RollingSketch

    rolling = RollingSketch(max_age_seconds=600, age_buckets=5, max_bins=max_bins)
    eager: dict[int, DDSketch] = {}
    for i, (now, values) in enumerate(batches):
        rolling.add(values, now)
        current = rolling.bucket_id(now)
        for old in [b for b in eager if b <= current - 5 or b > current + 5]:
            del eager[old]  # what the window drops as time moves on
        eager.setdefault(current, DDSketch(max_bins=max_bins)).add(values)
        if i % read_every == 0:
            assert rolling.quantiles([0.1, 0.5, 0.99], now) == _quantiles(eager, current)
    held = {bucket: sketch for bucket, sketch in rolling.to_dict()["buckets"]}
    assert sorted(held) == sorted(eager)
    for bucket, sketch in eager.items():
        expected = sketch.to_dict()
        assert {k: v for k, v in held[bucket].items() if k != "sum"} == \
            {k: v for k, v in expected.items() if k != "sum"}
        assert held[bucket]["sum"] == pytest.approx(expected["sum"], rel=1e-9, abs=1e-6,
                                                    nan_ok=True)


def _quantiles(buckets: dict[int, DDSketch], current: int) -> list[float]:
    merged = DDSketch(max_bins=next(iter(buckets.values())).max_bins)
    for bucket, sketch in buckets.items():
        if current - 5 < bucket <= current:
            merged.merge(sketch)
    return merged.quantiles([0.1, 0.5, 0.99])


def test_a_batch_that_waits_is_the_values_as_they_were_added():
    from inferwatch.core.rolling_sketch import RollingSketch

    rolling, values = RollingSketch(), np.array([1.0, 2.0, 3.0])
    rolling.add(values, now=0.0)
    values[:] = 1000.0  # the caller reuses its array before anything reads the window
    assert rolling.window(now=0.0).quantiles([1.0])[0] == pytest.approx(3.0, rel=0.02)
