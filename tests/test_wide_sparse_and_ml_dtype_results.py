"""Results read as numpy that were once read wrongly.

A scipy.sparse result (an extreme multi-label tagger's predict, a recommender's item scores)
is read as the dense rows it holds; one whose dense form is too wide or too large (a
million columns holding a few hundred non-zeros) was once made dense in the drain, gigabytes
and most of a minute for a few kilobytes. It is now refused unread, its rows counted as
``bad_shape``. A numpy array of an ml_dtypes float (bfloat16, float8, what JAX and ONNX
hand back) was once counted ``unsupported_type`` row by row; it is read as float32, which
holds each of its values exactly.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.core import prediction_state, result_arrays
from recorded_samples import Samples, predicted_classes, recorded, sample

sp = pytest.importorskip("scipy.sparse")

_FEW = settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# What a result is recorded as: its values, classes, rows and invalid counts (not the
# call's latency or the timestamps, which differ between two recordings of one result).
_RECORDED = ("inferwatch_prediction", "inferwatch_predicted_class_total",
             "inferwatch_invalid_predictions_total", "inferwatch_batch_size",
             "inferwatch_series_overflow_total")


def recorded_prediction(result: object, **options: object) -> tuple[Samples, int]:
    return recorded(result, fault_kind="prediction", **options)


def what_is_recorded(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items()
            if key[0].startswith(_RECORDED) and not key[0].endswith("_created")}


class NeverDense(sp.csr_matrix):
    """A sparse result whose dense form must never be made: reading it so fails the test."""

    def toarray(self, *args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("a wide sparse result was made dense")

    todense = toarray


def wide_sparse(rows: int, width: int, nonzeros: int = 500, seed: int = 0) -> NeverDense:
    rng = np.random.default_rng(seed)
    return NeverDense((rng.random(nonzeros),
                       (rng.integers(0, rows, nonzeros), rng.integers(0, width, nonzeros))),
                      shape=(rows, width))


def _assert_refused(samples: Samples, faulted: int, rows: int) -> None:
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == rows
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="bad_shape") == rows
    assert not [key for key in samples if key[0] == "inferwatch_prediction_count"]
    assert not predicted_classes(samples)


def test_a_wide_sparse_result_is_refused_unread_as_bad_shape(caplog, monkeypatch):
    """100 rows of a million columns, 500 non-zeros: 6 KB that read densely would be 800 MB
    of float64 and a million outputs folded into ``__other__``."""
    # Told once per model version and process: earlier tests' model of this name was told.
    monkeypatch.setattr(prediction_state, "_TOLD_SPARSE_TOO_LARGE", set())
    scores = wide_sparse(100, 1_000_000)
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        samples, faulted = recorded_prediction(scores, calls=3)
    _assert_refused(samples, faulted, 300)
    told = [r.getMessage() for r in caplog.records if "scipy.sparse" in r.getMessage()]
    assert len(told) == 1, told  # once, not once a call or a drain
    assert "(100, 1000000)" in told[0] and 'reason="bad_shape"' in told[0]


@pytest.mark.parametrize("proba", [False, True])
def test_sparse_results_past_either_bound_are_refused(proba):
    """Past the column bound with one row, past the cell bound with few columns (a tall
    result: its dense form, not its width, is then what would not fit)."""
    samples, faulted = recorded_prediction(
        wide_sparse(1, result_arrays.MAX_SPARSE_RESULT_COLUMNS + 1, nonzeros=3), proba=proba)
    _assert_refused(samples, faulted, 1)
    tall_rows = result_arrays.MAX_SPARSE_RESULT_CELLS // 4 + 1
    samples, faulted = recorded_prediction(wide_sparse(tall_rows, 4), proba=proba)
    _assert_refused(samples, faulted, tall_rows)


def test_a_wide_sparse_output_among_named_outputs_is_refused_with_its_call():
    """A dict holding one wide sparse output: the call's rows count as bad_shape, not as an
    internal fault of the drain."""
    samples, faulted = recorded_prediction({"scores": wide_sparse(7, 2_000_000, nonzeros=20),
                                            "latency": np.ones(7)})
    _assert_refused(samples, faulted, 7)


def test_a_sparse_result_at_the_bounds_is_read_as_its_dense_rows():
    width = result_arrays.MAX_SPARSE_RESULT_COLUMNS
    at_width = sp.csr_matrix(([0.5, 0.25], ([0, 0], [3, width - 1])), shape=(1, width))
    samples, faulted = recorded_prediction(at_width, max_outputs=4)
    assert faulted == 0
    assert sample(samples, "inferwatch_batch_size_sum") == 1
    assert sample(samples, "inferwatch_invalid_predictions_total", reason="bad_shape") == 0
    assert sample(samples, "inferwatch_prediction_sum", output="3") == 0.5
    assert sample(samples, "inferwatch_prediction_count", output="__other__") == width - 4
    assert sample(samples, "inferwatch_prediction_sum", output="__other__") == 0.25


_DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.bool_])
_FORMATS = st.sampled_from(["csr", "csc", "coo"])


@_FEW
@given(rows=st.integers(1, 6), width=st.integers(1, 30), dtype=_DTYPES, fmt=_FORMATS,
       density=st.sampled_from([0.0, 0.2, 0.7]), proba=st.booleans(), seed=st.integers(0, 99))
def test_a_sparse_result_within_the_bounds_is_recorded_as_its_dense_form(
        rows, width, dtype, fmt, density, proba, seed):
    """Whatever it holds (scores, multi-label indicators, bools) and however wide up to the
    output cap and past it: what is recorded equals what its ``.toarray()`` records.
    Values are multiples of 1/8, so every sum is exact whatever the order of adding."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((rows, width)) < density,
                     rng.integers(1, 9, (rows, width)) / 8, 0.0).astype(dtype)
    result = sp.csr_matrix(dense).asformat(fmt)
    assert sp.issparse(result)
    as_sparse, sparse_faults = recorded_prediction(result, proba=proba, calls=2, max_outputs=5)
    as_dense, dense_faults = recorded_prediction(result.toarray(), proba=proba, calls=2,
                                                 max_outputs=5)
    assert sparse_faults == dense_faults
    assert what_is_recorded(as_sparse) == what_is_recorded(as_dense)


_ML_DTYPE_NAMES = ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz",
                   "float8_e5m2", "float8_e5m2fnuz", "float6_e2m3fn", "float4_e2m1fn")
# Exactly representable in every one of those dtypes, the narrowest (float4_e2m1fn) included.
_NARROW_VALUES = st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, -1.0, -0.5]),
                          min_size=1, max_size=8)


def _ml_dtypes() -> list[np.dtype]:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return [np.dtype(getattr(ml_dtypes, name)) for name in _ML_DTYPE_NAMES
            if hasattr(ml_dtypes, name)]


@_FEW
@given(values=_NARROW_VALUES, calls=st.integers(1, 3), which=st.integers(0, 7))
def test_ml_dtypes_float_results_are_recorded_as_their_float32_values(values, calls, which):
    """A 1-D array, named outputs and an (n, k) matrix of bfloat16 or float8 values are
    recorded as the same float32 values are, none counted unsupported_type."""
    dtypes = _ml_dtypes()
    dtype = dtypes[which % len(dtypes)]
    narrow = np.array(values, dtype=dtype)
    assert narrow.astype(np.float32).tolist() == values
    wide = narrow.astype(np.float32)
    for shaped in (lambda a: a, lambda a: {"score": a}, lambda a: np.stack([a, a], axis=1),
                   lambda a: (a, a)):
        as_narrow, narrow_faults = recorded_prediction(shaped(narrow), calls=calls)
        as_wide, _ = recorded_prediction(shaped(wide), calls=calls)
        assert narrow_faults == 0
        assert sample(as_narrow, "inferwatch_invalid_predictions_total",
                      reason="unsupported_type") == 0
        assert what_is_recorded(as_narrow) == what_is_recorded(as_wide)


def test_ml_dtypes_class_probabilities_are_read_as_float32():
    """A bfloat16 predict_proba matrix: each row's class and confidence, as float32's."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    proba = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]], dtype=ml_dtypes.bfloat16)
    as_narrow, faulted = recorded_prediction(proba, proba=True, calls=2)
    as_wide, _ = recorded_prediction(proba.astype(np.float32), proba=True, calls=2)
    assert faulted == 0
    assert predicted_classes(as_narrow) == {"1": 2.0, "0": 4.0}
    assert what_is_recorded(as_narrow) == what_is_recorded(as_wide)
    masked = np.ma.masked_array(proba[:, 0], mask=[False, True, False])
    as_narrow, faulted = recorded_prediction(masked, task="regression")
    assert faulted == 0
    assert sample(as_narrow, "inferwatch_prediction_sum", output="value") == 1.25
    assert sample(as_narrow, "inferwatch_invalid_predictions_total", reason="nan") == 1


def test_a_structured_array_is_still_read_by_its_fields():
    """Its dtype's kind is ``V`` too, but it has fields: named outputs, never one float."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rows = np.array([(0.5, 1), (0.25, 0)],
                    dtype=[("score", ml_dtypes.bfloat16), ("label", np.int64)])
    samples, faulted = recorded_prediction(rows)
    assert faulted == 0
    assert sample(samples, "inferwatch_prediction_sum", output="score") == 0.75
    assert predicted_classes(samples) == {"1": 1.0, "0": 1.0}


def test_a_shadow_comparing_wide_sparse_results_counts_no_fault():
    import scipy.sparse as sp

    import inferwatch
    from inferwatch import faults
    from inferwatch.core.registry import Registry

    class Tagger:
        def predict(self, rows):
            n = len(rows)
            return sp.csr_matrix((np.ones(n), (np.arange(n), np.arange(n) * 7)),
                                 shape=(n, 1_000_000))

    registry = Registry(drain_interval=3600)
    try:
        champion = inferwatch.instrument(Tagger(), name="tagger", version="1", registry=registry)
        handle = inferwatch.shadow(champion, Tagger(), version="2", registry=registry,
                                   timeout=60.0)
        before = faults.internal_error_counts().get("shadow", 0)
        for _ in range(3):
            champion.predict(np.zeros((100, 2)))
        assert handle.flush(60)
        registry.drain()
        counters = handle.monitor.state.counters
        assert sum(counters["inferwatch_shadow_sampled_total"].values()) == 3
        # Refused by design on both sides (bad_shape), so incomparable: not a fault.
        assert sum(counters.get("inferwatch_shadow_compared_total", {}).values()) == 0
        assert faults.internal_error_counts().get("shadow", 0) == before
        handle.close()
    finally:
        registry.close()
