"""Calls whose every result is an array without columns (shape (n, 0): a multi-output model
asked for no outputs, a feature selector that kept none) land in the drain like any other."""

from __future__ import annotations

import numpy as np
import pytest

import inferwatch
from inferwatch import faults


@pytest.mark.parametrize("shape", [(3, 0), (1, 0), (2, 0, 4), (2, 4, 0)])
def test_a_drain_of_arrays_without_columns_records_every_call(shape) -> None:
    from conftest import Scraper

    class Model:
        def predict(self, x: object) -> np.ndarray:
            return np.zeros(shape)

    scraper = Scraper(drain_interval=3600)
    before = faults.internal_error_counts().get("drain", 0)
    try:
        model = inferwatch.instrument(Model(), name="m", version="1",
                                      registry=scraper.registry)
        for _ in range(5):
            assert model.predict(None).shape == shape
        samples = scraper.samples()
    finally:
        scraper.registry.close()
    assert faults.internal_error_counts().get("drain", 0) == before
    calls = sum(s.value for s in samples if s.name == "inferwatch_requests_total")
    assert calls == 5
    rows = sum(s.value for s in samples if s.name == "inferwatch_batch_size_sum")
    assert rows == 5 * shape[0]
