"""A pandas Series labelled by feature names is one row, read by its labels.

``df.iloc[i]`` or ``pd.Series(payload)`` is a row whose labels are the features, as a
dict's keys are. It was read as the array of its values, by position: a Series in another
order than the reference counted one feature's out-of-range value against another, and one
with an extra entry was a ``wrong_width`` instead of an ``extra_column``. It is now read as
the row dict it is, and joins the drain's other rows (7 us a call, where each was checked
alone at 63 us). A Series labelled by numbers (its rows) is read as before.
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
    "age": np.random.default_rng(4).uniform(18, 90, 300),
    "channel": np.random.default_rng(3).choice(["web", "app", "store"], 300)}))
_VALUES = {"amount": st.one_of(st.floats(-10, 150), st.none()),
           "age": st.one_of(st.floats(0, 120), st.just(np.nan)),
           "channel": st.one_of(st.sampled_from(["web", "app", "kiosk"]), st.none()),
           "extra": st.floats(0, 1)}


@st.composite
def _rows(draw) -> list[dict]:
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        keys = draw(st.permutations(["amount", "age", "channel"]))
        keys = keys[:draw(st.integers(2, 3))] + (["extra"] if draw(st.booleans()) else [])
        rows.append({key: draw(_VALUES[key]) for key in keys})
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows(), st.booleans())
def test_a_series_labelled_by_features_counts_what_its_row_dict_counts(rows, alone):
    series = [pd.Series(row, dtype=object) for row in rows]
    assert input_figures(series, alone, _REFERENCE) == \
        input_figures(rows, alone, _REFERENCE)


def test_a_series_in_another_order_counts_each_value_against_its_own_feature(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCE)
    model(pd.Series({"channel": "web", "age": 30.0, "amount": 500.0}))
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="amount") == 1
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="age") in (None, 0)
    assert scraper.total("inferwatch_input_errors_total", model="m") == 0


def test_a_series_labelled_by_its_rows_is_still_read_by_position(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=_REFERENCE)
    model(pd.Series([500.0, 30.0, "web"], dtype=object))  # 0, 1, 2: positions
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="amount") == 1


def test_a_column_indexed_by_ids_is_still_a_column_of_a_one_feature_model(scraper):
    reference = inferwatch.Reference.from_data({"amount": np.linspace(0, 100, 50)})
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry, reference=reference)
    model(pd.Series([5.0, 500.0, 7.0], index=["c-1", "c-2", "c-3"]))  # customers' amounts
    assert scraper.value("inferwatch_feature_out_of_range_total", model="m",
                         feature="amount") == 1
    assert scraper.value("inferwatch_feature_drift_observations", model="m",
                         feature="amount") == 3


def test_the_batch_checker_reads_a_series_by_its_labels():
    from inferwatch.quality.checks import BatchChecker

    result = BatchChecker(_REFERENCE).check(pd.Series({"age": 30.0, "amount": 500.0,
                                                       "channel": "web"}))
    names = _REFERENCE.feature_names
    assert dict(zip(names, result.out_of_range.tolist())) == {"amount": 1, "age": 0,
                                                              "channel": 0}
