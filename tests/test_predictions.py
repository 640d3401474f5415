"""Prediction shapes models really return, each recorded row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import inferwatch
from inferwatch.core.predictions import normalize


@pytest.mark.parametrize(
    ("result", "rows", "total"),
    [
        (0.25, 1, 0.25),
        (np.float32(0.5), 1, 0.5),
        (np.float64(2.0), 1, 2.0),
        (np.array([0.1, 0.2, 0.3]), 3, 0.6),
        ([1.5, 2.5], 2, 4.0),
        (pd.Series([1.0, 2.0, 3.0]), 3, 6.0),
        (np.array([[1.0], [2.0]]), 2, 3.0),
    ],
)
def test_score_shapes(scraper, result, rows, total):
    wrapped = inferwatch.instrument(lambda x: result, name="m", version="1", task="regression",
                                    registry=scraper.registry)
    wrapped(None)
    assert scraper.value("inferwatch_batch_size_sum", model="m") == rows
    assert scraper.value("inferwatch_prediction_count", model="m", output="value") == rows
    assert scraper.value("inferwatch_prediction_sum", model="m",
                         output="value") == pytest.approx(total)


def test_dict_of_named_outputs_and_dataframe(scraper):
    outputs = {"price": np.array([10.0, 20.0]), "eta_seconds": [60.0, 120.0]}
    frame = pd.DataFrame({"price": [30.0], "eta_seconds": [30.0]})
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    wrapped(outputs)
    wrapped(frame)
    assert scraper.value("inferwatch_prediction_sum", output="price") == 60.0
    assert scraper.value("inferwatch_prediction_sum", output="eta_seconds") == 210.0
    assert scraper.value("inferwatch_batch_size_sum") == 3


def test_probability_matrix_gives_classes_confidence_and_columns(scraper):
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    mon = inferwatch.monitor("clf", "1", registry=scraper.registry)
    with mon.request() as r:
        r.prediction(proba)
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "0"}) == 1
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "2"}) == 1
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 1
    assert scraper.value("inferwatch_prediction_confidence_sum") == pytest.approx(2.0)
    assert scraper.value("inferwatch_prediction_sum", output="2") == pytest.approx(1.2)


def test_class_label_arrays_and_scalars(scraper):
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", classes=["cat", "dog"],
                                    registry=scraper.registry)
    wrapped(np.array(["cat", "dog", "cat"]))
    wrapped("dog")
    wrapped(np.array([1, 0, 1]))
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "cat"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "dog"}) == 2
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 2
    assert scraper.value("inferwatch_batch_size_count") == 3


def test_invalid_predictions_counted_by_reason(scraper):
    wrapped = inferwatch.instrument(lambda x: x, name="m", version="1", output_range=(0.0, 1.0),
                                    registry=scraper.registry)
    wrapped(np.array([0.5, np.nan, np.inf, -np.inf, 1.5, -0.1]))
    assert scraper.value("inferwatch_invalid_predictions_total", reason="nan") == 1
    assert scraper.value("inferwatch_invalid_predictions_total", reason="inf") == 2
    assert scraper.value("inferwatch_invalid_predictions_total", reason="out_of_range") == 2
    # Non-finite values never reach the quantiles.
    assert scraper.value("inferwatch_prediction_count", output="value") == 3


def test_probabilities_that_do_not_sum_to_one_are_invalid():
    p = normalize(np.array([[0.9, 0.9], [0.5, 0.5], [-0.1, 1.1]]), probabilities=True)
    assert p.invalid == {"probability_out_of_range": 1, "probability_sum": 1}


def test_batch_of_10000_rows_records_every_row(scraper):
    batch = np.random.default_rng(1).random(10_000)
    wrapped = inferwatch.instrument(lambda x: batch, name="m", version="1",
                                    registry=scraper.registry)
    wrapped(None)
    assert scraper.value("inferwatch_prediction_count", output="value") == 10_000
    assert scraper.value("inferwatch_prediction", output="value", quantile="0.9") == \
        pytest.approx(np.quantile(batch, 0.9, method="lower"), rel=0.01)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
def test_any_numeric_array_is_normalised_without_error(array):
    prediction = normalize(array)
    assert prediction.rows >= 0
    recorded = sum(v.size for v in prediction.values.values())
    classes = 0 if prediction.classes is None else prediction.classes.size
    invalid = sum(prediction.invalid.values())
    assert recorded + classes + invalid >= min(array.size, 1) or array.size == 0
