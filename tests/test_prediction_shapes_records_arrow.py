"""Result shapes users have that docs/shapes.md places: record arrays, pyarrow Tables,
(n, seq, k) outputs of a declared classifier, probability rows as a Series of lists, and
text where probabilities belong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.prediction_classes import class_labels
from inferwatch.core.predictions import normalize

_PROBABILITY_ROWS = st.integers(1, 12).flatmap(lambda n: st.lists(
    st.floats(0.01, 1.0), min_size=n, max_size=n)).map(
    lambda tops: np.array([[1.0 - t, t] for t in tops]))


class _Model:
    """A model answering every call with one fixed result."""

    def __init__(self, result: object) -> None:
        self.result = result

    def predict(self, x: object) -> object:
        return self.result

    def predict_proba(self, x: object) -> object:
        return self.result


# --- a numpy structured (record) array: one output per field ------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.integers(0, 9)), min_size=1, max_size=20))
def test_a_record_arrays_fields_are_named_outputs(rows):
    result = np.array(rows, dtype=[("score", "f8"), ("label", "i4")])
    for shaped in (result, result.view(np.recarray)):
        p = normalize(shaped)
        assert p.rows == len(rows)
        assert p.values["score"].tolist() == [score for score, _ in rows]
        assert class_labels(p.classes) == [str(label) for _, label in rows]
        assert p.invalid == {}


def test_a_model_returning_a_record_array_is_recorded_field_by_field(scraper):
    result = np.rec.fromrecords([(0.25, 1), (0.75, 0), (0.5, 1)], names="score,label")
    model = inferwatch.instrument(_Model(result), name="rec", version="1",
                                  registry=scraper.registry)
    model.predict(np.zeros((3, 2)))
    assert scraper.value("inferwatch_prediction_count", output="score") == 3
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "1"}) == 2
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


# --- a pyarrow Table: named by its columns, as a DataFrame is -----------------------------

@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(-100, 100)), st.integers(0, 5)),
                min_size=1, max_size=15))
def test_a_pyarrow_table_is_named_by_its_columns_with_its_types(rows):
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"price": pa.array([price for price, _ in rows], type=pa.float64()),
                      "tier": pa.array([t for _, t in rows], type=pa.int64())})
    p = normalize(table)
    assert set(p.values) == {"price"}
    assert p.values["price"].tolist() == [price for price, _ in rows if price is not None]
    assert class_labels(p.classes) == [str(t) for _, t in rows]
    assert p.rows == len(rows)
    assert p.invalid.get("nan", 0) == sum(price is None for price, _ in rows)


@settings(max_examples=30, deadline=None)
@given(_PROBABILITY_ROWS)
def test_a_pyarrow_probability_table_names_the_classes(matrix):
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"cat": matrix[:, 0], "dog": matrix[:, 1]})
    p = normalize(table, probabilities=True)
    assert p.probability_outputs == {"cat", "dog"}
    expected = np.where(matrix[:, 1] > matrix[:, 0], "dog", "cat").tolist()
    assert class_labels(p.classes) == expected


# --- (n, seq, k) with task="classification": values, as docs/shapes.md says ---------------

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_a_three_dimensional_output_of_a_declared_classifier_is_values(n, seq, k, seed):
    logits = np.random.default_rng(seed).normal(size=(n, seq, k))
    p = normalize(logits, task="classification")
    assert p.rows == n
    assert p.values["value"].tolist() == logits.reshape(-1).tolist()
    assert p.invalid == {}


def test_token_logits_of_a_declared_classifier_are_not_counted_unsupported(scraper):
    logits = np.full((2, 3, 4), 0.5)
    model = inferwatch.instrument(_Model(logits), name="tok", version="1", task="classification",
                                  registry=scraper.registry)
    model.predict(np.zeros((2, 3)))
    assert scraper.value("inferwatch_prediction_count", output="value") == 24
    assert scraper.total("inferwatch_invalid_predictions_total") == 0


# --- probability rows as a pandas Series of lists, or ragged lists ------------------------

@settings(max_examples=40, deadline=None)
@given(_PROBABILITY_ROWS, st.booleans())
def test_a_series_of_probability_rows_counts_every_row(matrix, as_arrays):
    rows = list(matrix) if as_arrays else matrix.tolist()
    p = normalize(pd.Series(rows), probabilities=True)
    assert p.rows == len(matrix)
    assert p.values["1"].tolist() == matrix[:, 1].tolist()
    assert class_labels(p.classes) == np.where(
        matrix[:, 1] > matrix[:, 0], "1", "0").tolist()


def test_ragged_probability_rows_count_each_row_as_unsupported(scraper):
    model = inferwatch.instrument(_Model([[0.2, 0.8], [1.0], [0.5, 0.5]]), name="ragged",
                                  version="1", registry=scraper.registry)
    model.predict_proba(np.zeros((3, 2)))
    assert scraper.value("inferwatch_batch_size_sum") == 3
    assert scraper.value("inferwatch_invalid_predictions_total",
                         reason="unsupported_type") == 3


# --- text where probabilities belong is not parsed into numbers ---------------------------

@settings(max_examples=30, deadline=None)
@given(_PROBABILITY_ROWS, st.sampled_from([str, object]))
def test_text_from_predict_proba_is_unsupported_not_probabilities(matrix, dtype):
    text = np.array(matrix.astype(str), dtype=dtype)
    p = normalize(text, probabilities=True)
    assert p.values == {}
    assert p.classes is None
    assert p.invalid == {"unsupported_type": len(matrix)}
    assert p.rows == len(matrix)
