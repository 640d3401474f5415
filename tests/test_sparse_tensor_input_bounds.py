"""A sparse input is judged by its shape before any of it is made dense: one wider than the
reference counts ``wrong_width`` (as a scipy.sparse matrix always did), never an internal
fault, however many columns it has; one of the reference's width is checked a bounded block
of rows at a time, however many cells it would hold dense, and counts what the same rows
given dense count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import inferwatch
from conftest import Scraper
from inferwatch import faults
from inferwatch.core import result_arrays
from inferwatch.quality.checks import BatchChecker

# Past MAX_SPARSE_RESULT_COLUMNS (4,096): a one-hot input over a large vocabulary.
WIDE = 5000


class FakeDense:
    """A strided tensor as far as the checks read one."""

    layout = "torch.strided"

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape

    def detach(self) -> FakeDense:
        return self

    def cpu(self) -> FakeDense:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


class FakeSparseCoo:
    """What a torch sparse COO tensor offers (layout, shape, its indices and values, and
    ``to_dense``), for machines without torch; ``.numpy()`` refuses it, as torch does.
    Its entries are given unsorted, with a repeated one (torch sums repeats on coalesce)."""

    layout = "torch.sparse_coo"

    def __init__(self, dense: np.ndarray, entries: tuple | None = None) -> None:
        self.dense = dense
        self.shape = dense.shape
        self.dense_reads = [0]  # shared with its coalesced copy
        if entries is not None:
            self._index, self._values = entries
            return
        where = np.nonzero(dense)
        order = np.arange(len(where[0]))[::-1]
        index = np.array([axis[order] for axis in where], dtype=np.int64)
        values = dense[where][order]
        if values.size:  # the first entry twice, as halves
            index = np.concatenate([index, index[:, :1]], axis=1)
            values = np.concatenate([values, values[:1] / 2])
            values[0] /= 2
        self._index, self._values = index.reshape(dense.ndim, -1), values

    def detach(self) -> FakeSparseCoo:
        return self

    def cpu(self) -> FakeSparseCoo:
        return self

    def numpy(self) -> np.ndarray:
        raise TypeError("can't convert a sparse tensor to numpy; use to_dense() first")

    def to_dense(self) -> FakeDense:
        self.dense_reads[0] += 1
        return FakeDense(self.dense)

    def to_sparse_coo(self) -> FakeSparseCoo:
        return self

    def coalesce(self) -> FakeSparseCoo:
        keys = np.ravel_multi_index(tuple(self._index), self.shape)
        unique, inverse = np.unique(keys, return_inverse=True)
        index = np.array(np.unravel_index(unique, self.shape), dtype=np.int64)
        values = np.bincount(inverse.reshape(-1), weights=self._values, minlength=len(unique))
        coalesced = FakeSparseCoo(self.dense, (index.reshape(self.dense.ndim, -1),
                                               values.astype(self.dense.dtype)))
        coalesced.dense_reads = self.dense_reads  # one count for both
        return coalesced

    def indices(self) -> FakeDense:
        return FakeDense(self._index)

    def values(self) -> FakeDense:
        return FakeDense(self._values)


def _reference() -> inferwatch.Reference:
    return inferwatch.Reference.from_data(np.random.default_rng(0).normal(size=(300, 3)))


def _wide_inputs(kind: str) -> object:
    dense = np.zeros((4, WIDE), dtype=np.float32)
    dense[0, 7] = dense[3, WIDE - 1] = 1.0
    if kind == "scipy":
        return sp.csr_matrix(dense)
    if kind == "fake":
        return FakeSparseCoo(dense)
    torch = pytest.importorskip("torch")
    tensor = torch.tensor(dense)
    return tensor.to_sparse() if kind == "torch-coo" else tensor.to_sparse_csr()


@pytest.mark.parametrize("kind", [
    "scipy", "fake",
    pytest.param("torch-coo", marks=pytest.mark.torch),
    pytest.param("torch-csr", marks=pytest.mark.torch),
])
def test_a_sparse_input_wider_than_the_bound_counts_wrong_width_not_a_fault(kind):
    """A sparse tensor past 4,096 columns counted inferwatch_internal_errors_total
    {component="quality"} and no input error: its dense copy was refused before its width
    was compared with the reference's."""
    scraper = Scraper(drain_interval=3600)
    before = faults.internal_error_counts()
    try:
        model = inferwatch.instrument(lambda batch: np.zeros(batch.shape[0]), name="m",
                                      version="1", reference=_reference(),
                                      registry=scraper.registry)
        for _ in range(3):
            model(_wide_inputs(kind))
        assert scraper.value("inferwatch_input_errors_total", model="m",
                             reason="wrong_width") == 3
        assert faults.internal_error_counts().get("quality", 0) == before.get("quality", 0)
    finally:
        scraper.registry.close()


def _figures(scraper: Scraper, name: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if k not in ("model", "model_version")))): s.value
            for s in scraper.samples() if s.labels.get("model") == name and (
                "drift" in s.name or "feature_" in s.name
                or s.name == "inferwatch_input_errors_total")}


def _tall_rows() -> np.ndarray:
    """Rows of the reference's width past MAX_SPARSE_RESULT_CELLS dense (4,194,304)."""
    rows = np.random.default_rng(1).normal(size=(1_400_001, 3))
    rows[rows < 0.3] = 0.0
    rows[::7, 1] = 50.0  # out of range
    return rows


@pytest.mark.parametrize("kind", ["fake", pytest.param("torch-coo", marks=pytest.mark.torch)])
def test_a_sparse_tensor_of_the_reference_width_past_the_bound_is_checked(kind):
    """Its rows were never checked (an internal fault instead): they now count as the same
    rows given dense do, and fill the drift window."""
    rows = _tall_rows()
    if kind == "fake":
        sparse: object = FakeSparseCoo(rows)
    else:
        torch = pytest.importorskip("torch")
        sparse = torch.tensor(rows).to_sparse()
    scraper = Scraper(drain_interval=3600)
    before = faults.internal_error_counts()
    try:
        reference = _reference()
        for name, handed in (("sparse", sparse), ("dense", rows)):
            model = inferwatch.instrument(lambda batch: np.zeros(batch.shape[0]), name=name,
                                          version="1", reference=reference,
                                          registry=scraper.registry)
            model(handed)
        scraper.registry.drain()
        assert faults.internal_error_counts().get("quality", 0) == before.get("quality", 0)
        assert scraper.value("inferwatch_drift_window_observations",
                             model="sparse") == len(rows)
        sparse_figures = _figures(scraper, "sparse")
        assert sparse_figures[("inferwatch_feature_out_of_range_total",
                               (("feature", "x1"),))] >= len(rows) // 7
        assert sparse_figures == pytest.approx(_figures(scraper, "dense"))
    finally:
        scraper.registry.close()
    if kind == "fake":
        assert sparse.dense_reads == [0]  # never made dense whole


_VALUES = st.one_of(st.just(0.0), st.floats(-1e6, 1e6, allow_nan=False), st.just(np.nan),
                    st.just(np.inf))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dense=st.integers(1, 4).flatmap(lambda width: arrays(
           np.float64, st.tuples(st.integers(0, 40), st.just(width)), elements=_VALUES)),
       cells=st.integers(1, 50), pending=st.integers(1, 30))
def test_a_sparse_tensor_counts_what_its_dense_rows_count(monkeypatch, dense, cells, pending):
    """Whatever the rows, the bound and the rows per pending batch: the counts of a sparse
    tensor are those of its dense rows, or wrong_width when its width is not the reference's
    (3), and never a fault."""
    monkeypatch.setattr(result_arrays, "MAX_SPARSE_RESULT_CELLS", cells)
    checker = BatchChecker(_reference(), max_pending_rows=pending)
    before = faults.internal_error_counts()
    sparse_result = checker.check(FakeSparseCoo(dense))
    dense_result = checker.check(dense)
    assert faults.internal_error_counts() == before
    assert sparse_result.input_errors == dense_result.input_errors
    assert sparse_result.rows == dense_result.rows
    for counts in ("missing", "out_of_range", "unseen_category"):
        assert getattr(sparse_result, counts).tolist() == getattr(dense_result, counts).tolist()
    assert sparse_result.flat_bin_counts.tolist() == dense_result.flat_bin_counts.tolist()


@pytest.mark.torch
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dense=st.integers(1, 4).flatmap(lambda width: arrays(
           np.float32, st.tuples(st.integers(0, 30), st.just(width)),
           elements=st.one_of(st.just(0.0), st.floats(-1e6, 1e6, width=32,
                                                      allow_nan=False)))),
       layout=st.sampled_from(["coo", "csr", "csc"]), cells=st.integers(1, 50))
def test_a_torch_sparse_tensor_counts_what_its_dense_rows_count(monkeypatch, dense, layout,
                                                                cells):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(result_arrays, "MAX_SPARSE_RESULT_CELLS", cells)
    tensor = torch.tensor(dense)
    sparse = {"coo": tensor.to_sparse, "csr": tensor.to_sparse_csr,
              "csc": tensor.to_sparse_csc}[layout]()
    checker = BatchChecker(_reference())
    before = faults.internal_error_counts()
    sparse_result, dense_result = checker.check(sparse), checker.check(dense)
    assert faults.internal_error_counts() == before
    assert sparse_result.input_errors == dense_result.input_errors
    assert sparse_result.rows == dense_result.rows
    assert sparse_result.out_of_range.tolist() == dense_result.out_of_range.tolist()
    assert sparse_result.flat_bin_counts.tolist() == dense_result.flat_bin_counts.tolist()
