"""The checker's vectorised pass over a numeric 2-D batch (BatchChecker._numeric_block)
counts what a per-feature reading of the same values counts: missing values, values out of
the reference's range, non-finite values, and each value's drift bin (the number of a
feature's edges at or below it), for references of few bins and of more edges than one byte
counts, across block boundaries."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference

FEATURES = 4


def _expected(reference: Reference, batch: np.ndarray) -> tuple[list, list, int, list]:
    """Missing, out of range, non-finite and flat bin counts, one feature at a time."""
    missing, out_of_range, non_finite, bins = [], [], 0, []
    for j, name in enumerate(reference.feature_names):
        profile = reference.features[name]
        column = batch[:, j].astype(np.float64)
        present = column[~np.isnan(column)]
        missing.append(int(len(column) - len(present)))
        out_of_range.append(int(((present < profile.min) | (present > profile.max)).sum()))
        non_finite += int(np.isinf(present).sum())
        bins += np.bincount(np.searchsorted(np.asarray(profile.edges), present, side="right"),
                            minlength=profile.n_bins).tolist()
    return missing, out_of_range, non_finite, bins


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bins=st.sampled_from([1, 3, 10, 255, 256, 300]),
       rows=st.sampled_from([1, 2, 7, 2048, 2049]),
       dtype=st.sampled_from(["<f8", "<i8"]),
       seed=st.integers(0, 2**16), special=st.floats(0.0, 0.3))
def test_numeric_block_counts_what_a_per_feature_reading_counts(bins, rows, dtype, seed,
                                                               special):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(3000, FEATURES)) * 10
    data[:, 1] = rng.integers(0, 5, 3000)  # few distinct values: repeated edges, ties
    reference = Reference.from_data(data, bins=bins)
    batch = rng.normal(size=(rows, FEATURES)) * 15
    batch[:, 1] = rng.integers(-1, 7, rows)  # values on the edges themselves
    if dtype == "<f8":
        batch[rng.random(batch.shape) < special] = np.nan
        batch[rng.random(batch.shape) < special / 3] = np.inf
        batch[rng.random(batch.shape) < special / 3] = -np.inf
    else:
        batch = batch.astype(dtype)
    result = BatchChecker(reference).check(batch)
    missing, out_of_range, non_finite, flat_bins = _expected(reference, batch)
    assert result.rows == rows
    assert result.missing.tolist() == missing
    assert result.out_of_range.tolist() == out_of_range
    assert result.input_errors == ({"non_finite": non_finite} if non_finite else {})
    assert result.flat_bin_counts.tolist() == flat_bins


def test_a_reference_of_more_edges_than_a_byte_counts_bins_the_top_values():
    """300 bins: a value above every edge is in the last bin, not one 256 below it."""
    reference = Reference.from_data(np.arange(3000.0).reshape(-1, 1), bins=300)
    edges = reference.features[reference.feature_names[0]].edges
    assert len(edges) >= 256
    result = BatchChecker(reference).check(np.array([[1e9], [-1e9], [edges[255]]]))
    counts = result.flat_bin_counts
    assert counts[len(edges)] == 1 and counts[0] == 1 and counts[256] == 1
