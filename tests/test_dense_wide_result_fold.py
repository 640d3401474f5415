"""A dense matrix of values wider than ``max_outputs`` (an LM's logits over its vocabulary, a
recommender's scores per item): the columns past the cap are read in one pass as the one
output ``__other__``, never an output, a fold and a chunk per column, and
``inferwatch_series_overflow_total`` counts them by number. What is recorded is what the
column-by-column reading records, checked against it on small matrices."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import inferwatch
from conftest import Scraper
from inferwatch import faults
from inferwatch.core import prediction_batch
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.predictions import normalize

COMPARED = ("inferwatch_prediction", "inferwatch_invalid_predictions_total",
            "inferwatch_series_overflow_total")


def column_by_column(*args, output_cap=None, **options):
    """normalize as it read a matrix before: an output per column, whatever the cap."""
    return normalize(*args, **options)


def recorded(scraper: Scraper) -> dict[tuple, float]:
    text = scraper.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith(COMPARED) and not sample.name.endswith("_created")}


def play(drains: list[list[object]], max_outputs: int, raised_to: int | None,
         reference: bool) -> dict[tuple, float]:
    scraper = Scraper(drain_interval=3600)
    try:
        returned = iter([result for drain in drains for result in drain])
        model = inferwatch.instrument(lambda x: next(returned), name="wide", version="1",
                                      registry=scraper.registry, max_outputs=max_outputs)
        patch = mock.patch.object(prediction_batch, "normalize", column_by_column) \
            if reference else mock.patch.object(prediction_batch, "normalize", normalize)
        with patch:
            for number, drain in enumerate(drains):
                for _ in drain:
                    model(0)
                scraper.registry.drain()
                if number == 0 and raised_to is not None:
                    scraper.registry.monitor("wide", "1").configure(max_outputs=raised_to)
            return recorded(scraper)
    finally:
        scraper.registry.close()


cells = st.one_of(st.sampled_from([0.0, -1.5, 2.25, 1e300, np.nan, np.inf, -np.inf]),
                  st.floats(-1e6, 1e6, width=32))


@st.composite
def matrices(draw) -> np.ndarray:
    rows, width = draw(st.integers(1, 4)), draw(st.integers(2, 12))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    values = draw(st.lists(cells, min_size=rows * width, max_size=rows * width))
    with np.errstate(over="ignore"):
        return np.array(values, dtype=np.float64).astype(dtype).reshape(rows, width)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(drains=st.lists(st.lists(matrices(), min_size=1, max_size=3), min_size=1, max_size=3),
       named=st.lists(st.sampled_from(["x", "3", "7", "11"]), unique=True, max_size=3),
       max_outputs=st.integers(1, 6), raised_to=st.none() | st.integers(1, 14))
def test_folded_columns_record_what_an_output_per_column_records(drains, named, max_outputs,
                                                                  raised_to):
    if named:
        # Outputs named as columns are, admitted a drain before: they take the cap's room,
        # and a column of that name stays an output of its own. (One such output folded by
        # name is counted again when a matrix's columns past the cap are counted.)
        drains = [[{name: np.array([1.0]) for name in named[:max_outputs]}], *drains]
    before = play(drains, max_outputs, raised_to, reference=True)
    after = play(drains, max_outputs, raised_to, reference=False)
    assert before.keys() == after.keys()
    for key, value in before.items():
        if math.isnan(value):  # a quantile of no values
            assert math.isnan(after[key]), key
        elif key[0].endswith("_sum"):
            # Calls of other widths in one drain join __other__'s values in another order.
            assert math.isclose(after[key], value, rel_tol=1e-12, abs_tol=1e-9), key
        else:
            assert after[key] == value, key


def test_a_wide_matrix_costs_no_fold_per_column():
    width, max_outputs = 70_000, 20  # more columns than a cap remembers by name
    scraper = Scraper(drain_interval=3600)
    folded_names: list[int] = []
    fold_many = LabelCap.fold_many

    def counting(cap, values):
        folded_names.append(len(values))
        return fold_many(cap, values)

    logits = np.zeros((3, width), dtype=np.float32)
    logits[:, -1] = np.nan
    try:
        model = inferwatch.instrument(lambda x: logits, name="lm", version="1",
                                      registry=scraper.registry, max_outputs=max_outputs)
        overflow = []
        with mock.patch.object(LabelCap, "fold_many", counting):
            for _ in range(2):
                model(0)
                scraper.registry.drain()
                overflow.append(scraper.value("inferwatch_series_overflow_total",
                                              metric="inferwatch_prediction"))
        assert max(folded_names) <= max_outputs + 1
        # Each folded column once, by number, however many drains fold it again.
        assert overflow == [width - max_outputs] * 2
        other = {"model": "lm", "output": "__other__"}
        assert scraper.value("inferwatch_prediction_count", **other) == \
            2 * 3 * (width - max_outputs - 1)
        assert scraper.value("inferwatch_invalid_predictions_total", model="lm",
                             reason="nan") == 2 * 3
        assert scraper.value("inferwatch_prediction_count", model="lm", output="19") == 6
        assert scraper.value("inferwatch_prediction_count", model="lm", output="20") is None
    finally:
        scraper.registry.close()


def test_columns_admitted_before_keep_their_outputs():
    cap = LabelCap(3)
    assert cap.fold_many(["value", "41", "0"]) == ["value", "41", "0"]
    prediction = normalize(np.arange(100.0).reshape(2, 50), output_cap=cap)
    assert [name for name in prediction.values if name != "__other__"] == ["0", "1", "2", "41"]
    assert prediction.values["41"].tolist() == [41.0, 91.0]
    folded = prediction.values["__other__"]
    assert folded.size == 2 * 46 and 41.0 not in folded and 3.0 in folded
    # Columns 1 and 2 get no room (the cap is full), the other 46 fold by number.
    assert cap.fold_many(list(prediction.values)) == ["0", "__other__", "__other__", "41",
                                                        "__other__"]
    assert cap.overflowed == 46 + 2


class SparseTensor:
    """What a sparse torch tensor offers (torch may not be installed): .numpy() refuses it,
    so it is made dense first."""

    layout = "torch.sparse_coo"

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.made_dense = False

    def detach(self):
        return self

    def cpu(self):
        return self

    def to_dense(self):
        self.made_dense = True
        return DenseTensor(np.zeros(self.shape, dtype=np.float32))


class DenseTensor(SparseTensor):
    layout = "torch.strided"

    def __init__(self, values: np.ndarray) -> None:
        super().__init__(values.shape)
        self.values = values

    def numpy(self) -> np.ndarray:
        return self.values


def test_a_wide_sparse_tensor_is_refused_not_made_dense():
    scraper = Scraper(drain_interval=3600)
    wide, narrow = SparseTensor((3, 1_000_000)), SparseTensor((2, 4))
    faults_before = sum(faults.internal_error_counts().values())  # process-wide counts
    try:
        model = inferwatch.instrument(lambda x: x, name="tagger", version="1",
                                      registry=scraper.registry)
        model(wide)
        scraper.registry.drain()
        assert not wide.made_dense
        assert scraper.value("inferwatch_invalid_predictions_total", model="tagger",
                             reason="bad_shape") == 3
        model(narrow)
        scraper.registry.drain()
        assert narrow.made_dense
        assert scraper.value("inferwatch_prediction_count", model="tagger", output="3") == 2
        assert sum(faults.internal_error_counts().values()) == faults_before
    finally:
        scraper.registry.close()


def test_a_wide_sparse_torch_tensor_counts_as_bad_shape():
    torch = pytest.importorskip("torch")
    indices = torch.tensor([[0, 1], [5, 900_000]])
    wide = torch.sparse_coo_tensor(indices, torch.tensor([1.0, 2.0]), (2, 1_000_000))
    scraper = Scraper(drain_interval=3600)
    faults_before = sum(faults.internal_error_counts().values())  # process-wide counts
    try:
        model = inferwatch.instrument(lambda x: wide, name="tagger", version="1",
                                      registry=scraper.registry)
        model(0)
        scraper.registry.drain()
        assert scraper.value("inferwatch_invalid_predictions_total", model="tagger",
                             reason="bad_shape") == 2
        assert sum(faults.internal_error_counts().values()) == faults_before
    finally:
        scraper.registry.close()
