"""A bare number given as a model's input is one row of one value, whatever its type."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.quality.reference import Reference

REFERENCE = Reference.from_data({"x": np.linspace(-1.0, 1.0, 101)})
QUALITY = ("inferwatch_input_errors_total", "inferwatch_feature_out_of_range_total",
           "inferwatch_feature_missing_total", "inferwatch_drift_window_observations")


def _quality_after(value: object) -> dict[tuple, float]:
    from conftest import Scraper

    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                      registry=scraper.registry, reference=REFERENCE)
        assert model(value) == 0.5
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for s in scraper.samples() if s.name in QUALITY}
    finally:
        scraper.registry.close()


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.integers(-(2**53), 2**53)))
def test_a_python_number_counts_as_the_numpy_scalar_of_it_does(value: float | int) -> None:
    as_numpy = np.float64(value) if isinstance(value, float) else np.int64(value)
    python, numpy = _quality_after(value), _quality_after(as_numpy)
    assert python == numpy
    if isinstance(value, float) and math.isinf(value):  # a cell error of its own
        assert any(name == "inferwatch_input_errors_total" and ("reason", "non_finite") in labels
                   for name, labels in python), python
    else:
        assert not any(name == "inferwatch_input_errors_total" for name, _ in python), python


def test_an_out_of_range_number_is_one_row_out_of_range() -> None:
    samples = _quality_after(5.0)
    assert samples[("inferwatch_feature_out_of_range_total",
                    (("feature", "x"), ("model", "m"), ("model_version", "1")))] == 1.0
    assert samples[("inferwatch_drift_window_observations",
                    (("model", "m"), ("model_version", "1")))] == 1.0
