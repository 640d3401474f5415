"""xgboost inputs checked as the rows they hold: a DMatrix in its own float32, and a
QuantileDMatrix, which holds only bins, not checked at all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inferwatch
from inferwatch import faults
from inferwatch.quality.checks import BatchChecker
from inferwatch.quality.reference import Reference

xgb = pytest.importorskip("xgboost")


def _training_frame(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))


def test_training_rows_in_a_dmatrix_are_in_range():
    frame = _training_frame()
    checker = BatchChecker(Reference.from_data(frame))
    # Each column's extremes: the rows that sit exactly on the reference's bounds.
    extremes = sorted({int(frame[c].idxmin()) for c in frame} |
                      {int(frame[c].idxmax()) for c in frame})
    rows = frame.iloc[extremes]
    by_dmatrix = checker.check(xgb.DMatrix(rows))
    by_frame = checker.check(rows.astype(np.float32))
    assert by_frame.out_of_range.tolist() == [0, 0, 0, 0]
    assert by_dmatrix.out_of_range.tolist() == by_frame.out_of_range.tolist()
    assert by_dmatrix.flat_bin_counts.tolist() == by_frame.flat_bin_counts.tolist()


def test_a_dmatrix_with_absent_entries_reads_them_as_missing():
    frame = _training_frame(50)
    checker = BatchChecker(Reference.from_data(frame))
    rows = frame.iloc[:5].copy()
    rows.iloc[0, 1] = np.nan
    result = checker.check(xgb.DMatrix(rows))
    assert result.missing.tolist() == [0, 1, 0, 0]
    assert result.out_of_range.tolist() == [0, 0, 0, 0]


def test_a_quantile_dmatrix_is_not_checked_on_its_bins(scraper):
    frame = _training_frame()
    labels = (frame["a"] > 0).astype(int)
    train = xgb.QuantileDMatrix(frame, label=labels)
    booster = xgb.train({"objective": "binary:logistic"}, train, 5)
    wrapped = inferwatch.instrument(booster, name="churn", version="1",
                                    registry=scraper.registry,
                                    reference=inferwatch.Reference.from_data(frame))
    before = faults.internal_error_counts().get("quality", 0)
    batch = xgb.QuantileDMatrix(frame.iloc[:500], ref=train)
    scores = wrapped.predict(batch)
    assert np.array_equal(scores, booster.predict(batch))
    # Its get_data() holds bin cut values, not the rows: reading them would call in-range
    # training rows out of range. Nothing is checked, and that is inferwatch's shortfall.
    assert scraper.total("inferwatch_feature_out_of_range_total") == 0
    assert scraper.total("inferwatch_input_errors_total") == 0
    assert faults.internal_error_counts().get("quality", 0) - before == 1
    assert scraper.total("inferwatch_drift_window_observations") == 0
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
