"""Edges of the rolling windows, the status page's history and the row containers that feed
the data-quality checks: what ML services hand them (tensors of every kind, sparse
matrices, odd dtypes) and the clocks they run on."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch import faults
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)
NAMES = ["a", "b", "c", "d"]
REF = Reference.from_data(RNG.normal(size=(2000, 4)), feature_names=NAMES)


def _same_counts(result, other) -> None:
    assert result.rows == other.rows
    assert result.missing.tolist() == other.missing.tolist()
    assert result.out_of_range.tolist() == other.out_of_range.tolist()
    assert result.flat_bin_counts.tolist() == other.flat_bin_counts.tolist()
    assert result.input_errors == other.input_errors


# --- tensors the numpy bridge refuses (plain_arrays.tensor_array) ----------------------------

def _sparse_coo(values: np.ndarray):
    return torch.tensor(values).to_sparse()


def _sparse_csr(values: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.tensor(values).to_sparse_csr()


def _negated(values: np.ndarray):
    # torch's lazy negation: the imaginary part of a conjugate view carries the negative bit
    return torch.tensor(values.astype(np.complex64) * -1j).conj().imag


def _quantized(values: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates its quantized dtypes
        return torch.quantize_per_tensor(torch.tensor(values, dtype=torch.float32), 0.125, 0,
                                         torch.qint32)


TENSOR_KINDS = {"sparse_coo": _sparse_coo, "sparse_csr": _sparse_csr, "negated": _negated,
                "quantized": _quantized}

prediction_matrices = st.lists(
    st.lists(st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.5, 2.0, 8.0]), min_size=3, max_size=3),
    min_size=2, max_size=12).map(lambda rows: np.array(rows, dtype=np.float32))


@pytest.mark.parametrize("kind", list(TENSOR_KINDS))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix=prediction_matrices)
def test_a_tensor_numpy_refuses_as_it_is_is_recorded_as_its_values(kind, matrix):
    """A model returning a sparse, quantized or lazily negated tensor gets its predictions
    recorded as the dense tensor's would be, not lost to an internal fault."""
    scraper = Scraper()
    try:
        _check_tensor_kind(scraper, kind, matrix)
    finally:
        scraper.registry.close()


def _check_tensor_kind(scraper: Scraper, kind: str, matrix: np.ndarray) -> None:
    before = faults.internal_error_counts().get("prediction", 0)
    name = f"m-{kind}"
    wrapped = inferwatch.instrument(lambda x: TENSOR_KINDS[kind](matrix), name=name,
                                    version="1", task="regression", registry=scraper.registry)
    wrapped(None)
    dense = inferwatch.instrument(lambda x: torch.tensor(matrix), name=name, version="2",
                                  task="regression", registry=scraper.registry)
    dense(None)
    assert faults.internal_error_counts().get("prediction", 0) == before
    rows, width = matrix.shape
    assert scraper.value("inferwatch_batch_size_sum", model=name, model_version="1") == rows
    for j in range(width):
        labels = {"model": name, "output": str(j)}
        assert scraper.value("inferwatch_prediction_count", model_version="1", **labels) == rows
        assert scraper.value("inferwatch_prediction_sum", model_version="1", **labels) == \
            scraper.value("inferwatch_prediction_sum", model_version="2", **labels)


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "quantized"])
def test_a_sparse_or_quantized_tensor_batch_is_checked_as_its_dense_rows(kind):
    X = RNG.normal(0.0, 1.5, size=(64, 4)).astype(np.float32)
    X[RNG.random(X.shape) < 0.3] = 0.0
    before = faults.internal_error_counts().get("quality", 0)
    checker = BatchChecker(REF)
    batch = TENSOR_KINDS[kind](X)
    dense = batch.dequantize() if kind == "quantized" else batch.to_dense()
    _same_counts(checker.check(batch), checker.check(dense.numpy()))
    assert checker.check(batch).rows == 64
    assert faults.internal_error_counts().get("quality", 0) == before


# --- masked arrays of times (plain_arrays.plain_array) ---------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["datetime64[ns]", "datetime64[s]", "timedelta64[ns]", "timedelta64[ms]"]),
       st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=8))
def test_a_masked_array_of_times_counts_as_the_times_with_nat_where_masked(unit, mask):
    """Masked entries are missing; the rest are times (a wrong type for numeric features),
    whatever the unit: never integers that count as in or out of range."""
    mask = np.array(mask)
    times = (np.arange(mask.size).reshape(mask.shape) * 10**9).astype(unit)
    with_nat = times.copy()
    with_nat[mask] = np.array("NaT", dtype=times.dtype)
    checker = BatchChecker(REF)
    masked = checker.check(np.ma.masked_array(times, mask=mask))
    _same_counts(masked, checker.check(with_nat))
    assert masked.missing.tolist() == mask.sum(axis=0).tolist()
    assert masked.out_of_range.tolist() == [0, 0, 0, 0]
    assert masked.input_errors == ({"wrong_type": int((~mask).sum())} if (~mask).any() else {})


# --- the rolling window against a model of its documented buckets -----------------------------

WINDOWS = [(1e-3, 1000), (1.0, 1), (600.0, 5), (3600.0, 1000), (86_400.0, 7)]
QS = [0.0, 0.25, 0.5, 0.9, 0.99, 1.0]
_steps = st.one_of(
    st.floats(-2.0, 2.0),  # within a bucket or two, backwards too (NTP)
    st.sampled_from([-3600.0, -30.0, 0.0, 3.5 * 3600.0, 86_400.0]),  # steps and idle gaps
)
# Magnitudes within 12 orders: what the default 2048 bins keep exact to 1% (wider ranges
# fold their lowest bins, as documented and tested in test_sketch).
_values = st.lists(st.one_of(st.floats(-1e6, 1e6).map(lambda x: 0.0 if abs(x) < 1e-6 else x),
                             st.sampled_from([-0.0, 1e6, -1e6, np.nan, np.inf, -np.inf])),
                   max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(WINDOWS),
       st.lists(st.tuples(_steps, st.booleans(), _values, st.booleans()), max_size=30))
def test_the_window_reads_what_its_buckets_hold_whatever_the_clock_does(window, ops):
    """Each add lands in the epoch-aligned bucket of its time; a read at `now` sees the
    buckets in (current - age_buckets, current] and nothing else, within the sketch's 1%."""
    from inferwatch.core.rolling_sketch import RollingSketch

    max_age, age_buckets = window
    scale = max_age / 600.0
    rolling = RollingSketch(max_age, age_buckets)
    model: dict[int, list[float]] = {}
    now = 1_700_000_000.0
    for step, read, values, burst in ops:
        now += step * scale
        current = rolling.bucket_id(now)
        for bucket in [b for b in model if not current - age_buckets < b <= current + age_buckets]:
            del model[bucket]
        if read:
            inside = [v for b, vs in model.items() if b <= current for v in vs]
            assert rolling.window(now).count == len(inside)
            got = rolling.quantiles(QS, now)
            if not inside:
                assert all(np.isnan(got))
                continue
            for want, have in zip(np.quantile(inside, QS, method="lower"), got):
                assert abs(have - want) <= 0.01 * abs(want) * (1 + 1e-9)
        else:
            batch = values * (100 if burst else 1)
            rolling.add(np.array(batch, dtype=np.float64), now=now)
            model.setdefault(current, []).extend(v for v in batch if np.isfinite(v))
    assert len(rolling.bucket_ids) <= 2 * age_buckets
