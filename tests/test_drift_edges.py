"""Drift scores and data-quality counts on edge data, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from inferwatch import faults
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.drift import js_distance, ks_distance, psi
from inferwatch.quality.reference import Reference

# Reference fractions with empty bins, subnormal and huge (unnormalised) weights.
_WEIGHTS = st.lists(st.one_of(st.just(0.0), st.floats(1e-320, 1e300)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_psi_js_and_ks_equal_numpy_and_scipy(data):
    p = np.array(data.draw(_WEIGHTS))
    q = np.array(data.draw(st.lists(st.integers(0, 2**62), min_size=len(p), max_size=len(p))),
                 dtype=np.int64)
    p_total, q_total = p.sum(), q.astype(np.float64).sum()
    if not (0 < p_total < np.inf) or q_total == 0:
        assert math.isnan(psi(p, q)) and math.isnan(js_distance(p, q))
        assert math.isnan(ks_distance(p, q))
        return
    ps, qs = p / p_total, q / q_total
    pe, qe = np.maximum(ps, 1e-4), np.maximum(qs, 1e-4)
    assert psi(p, q) == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)), rel=1e-9, abs=1e-12)
    assert js_distance(p, q) == pytest.approx(_jensen_shannon(ps, qs), abs=1e-7)
    if ps[ps > 0].min() > 1e-300 and (qs == 0).sum() + (qs > 1e-300).sum() == len(qs):
        # scipy agrees where no share is subnormal (there its ratios overflow to inf).
        with np.errstate(invalid="ignore"):
            scipy_js = float(np.nan_to_num(jensenshannon(ps, qs, base=2)))  # sqrt(-0.0)
        assert js_distance(p, q) == pytest.approx(scipy_js, abs=1e-7)
    gap = np.max(np.abs(np.cumsum(ps) - np.cumsum(qs)))
    assert ks_distance(p, q) == pytest.approx(gap, abs=1e-12)
    assert ks_distance(p, q, ordered=False) == pytest.approx(0.5 * np.abs(ps - qs).sum(),
                                                             abs=1e-12)


def _jensen_shannon(ps: np.ndarray, qs: np.ndarray) -> float:
    """The JS distance (base 2) of two share vectors: each share over the mixture is at most
    2, so no ratio overflows whatever the magnitudes (taken as 2 x share over the sum: half
    a subnormal share underflows to 0)."""
    both = ps + qs

    def divergence(shares: np.ndarray) -> float:
        held = shares > 0
        return float(np.sum(shares[held] * np.log2(2 * shares[held] / both[held])))

    return math.sqrt(max(0.0, (divergence(ps) + divergence(qs)) / 2))


_CELL = st.one_of(st.none(), st.just(float("nan")), st.just(math.inf), st.just(-math.inf),
                  st.just(-0.0), st.just(5e-324), st.floats(allow_nan=False),
                  st.integers(-2**70, 2**70), st.booleans())


def _number(v):
    if v is None or (isinstance(v, float) and v != v):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=8),
       st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=30),
       st.permutations(["a", "b", "c"]))
def test_counts_are_exact_in_any_container_and_column_order(cells, train, order):
    train = np.array(train)
    ref = Reference.from_data({"a": train, "b": train[::-1] * 2,
                               "c": np.full(len(train), train[0])})  # c is constant
    rows = [dict(zip("abc", r)) for r in cells]
    missing, out_of_range, non_finite, bins = [], [], 0, []
    for name in ref.feature_names:
        profile = ref.features[name]
        values = [_number(r[name]) for r in rows]
        present = np.array([v for v in values if v is not None], dtype=np.float64)
        missing.append(len(values) - len(present))
        out_of_range.append(int(((present < profile.min) | (present > profile.max)).sum()))
        non_finite += int(np.isinf(present).sum())
        bins += np.bincount(np.searchsorted(np.array(profile.edges), present, side="right"),
                            minlength=profile.n_bins).tolist()
    checker = BatchChecker(ref)
    for batch in ([{k: r[k] for k in order} for r in rows],
                  pd.DataFrame({k: pd.Series([r[k] for r in rows], dtype=object) for k in order}),
                  {k: [r[k] for r in rows] for k in order}):
        before = faults.internal_error_counts()
        result = checker.check(batch)
        assert result.rows == len(rows)
        assert result.missing.tolist() == missing
        assert result.out_of_range.tolist() == out_of_range
        assert result.flat_bin_counts.tolist() == bins
        assert result.input_errors == ({"non_finite": non_finite} if non_finite else {})
        assert faults.internal_error_counts() == before


# --- categories without text ------------------------------------------------------------

def test_a_categorical_integer_past_the_text_digit_limit_is_an_unseen_category():
    ref = Reference.from_data({"code": ["a", "b"] * 5, "x": np.arange(10.0)},
                              categorical=["code"])
    before = faults.internal_error_counts()
    result = BatchChecker(ref).check([{"code": 10**5000, "x": 1.0}, {"code": "a", "x": 2.0}])
    assert result.rows == 2
    assert result.unseen_category.tolist() == [1, 0]
    assert result.bin_counts[0].tolist() == [1, 0, 1]
    assert faults.internal_error_counts() == before


# --- one prediction -----------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 1.0), st.sampled_from(["yes", "no", "maybe"]))
def test_one_prediction_given_as_scalars_is_binned_like_a_one_row_array(score, label):
    rng = np.random.default_rng(1)
    two = Reference.from_data(np.zeros((100, 1)), predictions={
        "score": rng.random(100), "label": rng.choice(["yes", "no"], 100)})
    checker = BatchChecker(two)
    as_arrays = checker.check_predictions({"score": np.array([score]),
                                           "label": np.array([label])})
    as_scalars = checker.check_predictions({"score": score, "label": label})
    assert {k: v.tolist() for k, v in as_scalars.items()} == \
        {k: v.tolist() for k, v in as_arrays.items()}
    assert all(v.sum() == 1 for v in as_scalars.values())

    one = Reference.from_data(np.zeros((100, 1)), predictions=rng.random(100))
    expected = BatchChecker(one).check_predictions(np.array([score]))["value"].tolist()
    for given_as in (score, np.float64(score), np.array(score)):
        assert BatchChecker(one).check_predictions(given_as)["value"].tolist() == expected


def test_one_row_of_a_probability_matrix_is_one_prediction():
    rng = np.random.default_rng(2)
    proba = rng.dirichlet([1, 1], 200)
    ref = Reference.from_data(np.zeros((200, 1)), predictions=proba)
    checker = BatchChecker(ref)
    row = np.array([0.3, 0.7])
    got = {k: v.tolist() for k, v in checker.check_predictions(row).items()}
    assert got == {k: v.tolist() for k, v in checker.check_predictions(row[None, :]).items()}
    assert all(sum(v) == 1 for v in got.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(st.tuples(st.integers(0, 3), st.sampled_from([3, 4]), st.booleans()),
                      min_size=1, max_size=8),
       keyword=st.booleans())
def test_each_empty_or_wrongly_wide_call_counts_once_whatever_its_drain_holds(calls, keyword):
    """empty_batch and wrong_width count calls: joined in one drain, the same calls must
    count what each one checked alone counts (they counted once, or not at all)."""
    import scipy.sparse as sp

    import inferwatch
    from inferwatch.core.registry import Registry

    reference = Reference.from_data(np.random.default_rng(0).normal(size=(50, 3)))
    registry = Registry(drain_interval=3600)
    try:
        wrapped = inferwatch.instrument(lambda x, flag=None: 0.5, name="m", version="1",
                                        reference=reference, registry=registry)
        expected: dict[tuple[str], float] = {}
        for rows, width, sparse in calls:
            x = np.ones((rows, width))
            x = sp.csr_matrix(x) if sparse else x
            wrapped(x, flag=1) if keyword else wrapped(x)
            for reason, count in BatchChecker(reference).check(x).input_errors.items():
                expected[(reason,)] = expected.get((reason,), 0.0) + count
        registry.drain()
        counted = registry.monitor("m", "1").state.counters.get(
            "inferwatch_input_errors_total", {})
        assert {k: v for k, v in counted.items() if v} == expected
    finally:
        registry.close()


def test_a_subnormal_reference_share_does_not_read_as_the_whole_js_distance():
    """Half the smallest subnormal share is 0: a mixture computed as (p + q) / 2 left that
    bin's ratio infinite, and the distance read 1.0 for shares that mostly agree."""
    shares = np.array([0.0, 675.0, 1e-320, 675.0])
    counts = np.array([0, 0, 0, 1])
    expected = _jensen_shannon(shares / shares.sum(), counts / counts.sum())
    assert 0.5 < expected < 0.6
    assert js_distance(shares, counts) == pytest.approx(expected, abs=1e-9)
