"""JSON objects of arrays holding text beside numbers are joined in the drain, counting
what each alone counts.

``{"amount": [5.0], "channel": ["web"]}`` cannot be one float array, so each such input was
checked alone in the drain, about 53 us a call. The checker reads a list column value by
value, each as the object it is, so dicts of the same keys join by joining their lists:
6.4 us a call. Dicts it could read otherwise joined (ragged, empty, arrays, a key written
twice as text) are still checked alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import inferwatch
from input_checks import input_figures

_REFERENCE = inferwatch.Reference.from_data(pd.DataFrame({
    "amount": np.random.default_rng(2).uniform(0, 100, 300),
    "channel": np.random.default_rng(3).choice(["web", "app", "store"], 300)}))
_CELLS = st.one_of(st.floats(-10, 150), st.just(np.nan), st.none(), st.booleans(),
                   st.integers(0, 5), st.sampled_from(["web", "app", "kiosk", "7", "1.5"]))


@st.composite
def _dicts(draw) -> list[dict]:
    dicts = []
    for _ in range(draw(st.integers(1, 8))):
        keys = draw(st.sampled_from([["amount", "channel"], ["channel", "amount"],
                                     ["amount", "channel", "extra"], ["amount"],
                                     ["amount", 0, "0"]]))  # a key written twice as text
        rows = draw(st.integers(1, 3))
        columns = {key: draw(st.lists(_CELLS, min_size=rows, max_size=rows)) for key in keys}
        shape = draw(st.sampled_from(["lists", "lists", "ragged", "array", "column",
                                      "empty"]))
        if shape == "ragged":
            columns[keys[0]] = columns[keys[0]] + [1.0]
        elif shape == "array":
            columns[keys[0]] = np.array(columns[keys[0]], dtype=object)
        elif shape == "column":  # an (n, 1) array, as skl2onnx's feed per input gives
            columns["amount"] = np.arange(rows, dtype=float).reshape(-1, 1)
        elif shape == "empty":
            columns = {key: [] for key in keys}
        dicts.append(columns)
    return dicts


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_dicts())
# A ragged dict beside another of its keys: joined, its lists would shift the other's rows.
@example([{"amount": [5.0, 1.0], "channel": ["web"]}, {"amount": [7.0], "channel": ["app"]}])
def test_dicts_of_lists_checked_together_count_what_each_alone_counts(dicts):
    assert input_figures(dicts, False, _REFERENCE) == input_figures(dicts, True, _REFERENCE)


def test_a_text_category_beside_numbers_in_lists_is_checked(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCE)
    for _ in range(10):
        model({"amount": [5.0, 500.0], "channel": ["web", "kiosk"]})
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="amount") == 10
    assert scraper.value("inferwatch_feature_unseen_category_total", model="m",
                         feature="channel") == 10
    assert scraper.value("inferwatch_feature_drift_observations", model="m",
                         feature="channel") == 20


def test_dicts_naming_a_feature_twice_are_each_checked_alone():
    reference = inferwatch.Reference.from_data({"1": np.linspace(0, 10, 50),
                                                "channel": np.array(["web", "app"] * 25)})
    twice = [{1: [5.0], "1": [7.0], "channel": ["web"]},  # 1 and "1": one name, twice
             {1: [2.0], "1": [3.0], "channel": ["app"]}]
    assert input_figures(twice, False, reference) == input_figures(twice, True, reference)
