"""Inputs as arrays of Python objects are stacked in the drain, counting what each alone
counts.

A text category beside numbers cannot be a float array: a service building its rows with
numpy makes an object array (``np.array([[5.0, "web"]], dtype=object)``). Each such input
was checked alone in the drain, about 54 us a call, where a float array's rows are stacked
with the drain's others (0.35 us). Arrays of objects keep each cell's object when stacked,
so they are now stacked too: 1.1 us a call. Every count and the drift window must be what
checking each call alone gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from input_checks import input_figures

_REFERENCE = inferwatch.Reference.from_data(pd.DataFrame({
    "amount": np.random.default_rng(2).uniform(0, 100, 300),
    "channel": np.random.default_rng(3).choice(["web", "app", "store"], 300)}))
_CELLS = st.one_of(st.floats(-10, 150), st.just(np.nan), st.none(), st.booleans(),
                   st.integers(0, 5), st.sampled_from(["web", "app", "store", "kiosk", "7"]))


@st.composite
def _inputs(draw) -> list[np.ndarray]:
    inputs = []
    for _ in range(draw(st.integers(1, 8))):
        shape = draw(st.sampled_from(["rows", "row", "wide", "floats"]))
        width = 3 if shape == "wide" else 2
        rows = 1 if shape == "row" else draw(st.integers(1, 3))
        if shape == "floats":
            cells = draw(st.lists(st.lists(st.floats(-10, 150), min_size=2, max_size=2),
                                  min_size=rows, max_size=rows))
            inputs.append(np.array(cells))
            continue
        cells = draw(st.lists(st.lists(_CELLS, min_size=width, max_size=width),
                              min_size=rows, max_size=rows))
        array = np.empty((rows, width), dtype=object)
        for i, row in enumerate(cells):
            for j, cell in enumerate(row):
                array[i, j] = cell
        inputs.append(array[0] if shape == "row" else array)
    return inputs


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs())
def test_object_arrays_checked_together_count_what_each_alone_counts(inputs):
    assert input_figures(inputs, False, _REFERENCE) == input_figures(inputs, True, _REFERENCE)


def test_a_text_category_beside_numbers_in_an_object_array_is_checked(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCE)
    for _ in range(10):
        model(np.array([[5.0, "web"], [500.0, "kiosk"]], dtype=object))
        model(np.array([None, "app"], dtype=object))  # one row
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="amount") == 10
    assert scraper.value("inferwatch_feature_unseen_category_total", model="m",
                         feature="channel") == 10
    assert scraper.value("inferwatch_feature_missing_total", model="m", feature="amount") == 10
    assert scraper.value("inferwatch_feature_drift_observations", model="m",
                         feature="channel") == 30
