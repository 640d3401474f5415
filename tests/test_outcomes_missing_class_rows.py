"""A classifier's batch in which some rows have no predicted class (pd.NA in an ``Int64``
column, None among labels, NaN among float labels of a declared classifier): the other
rows of the batch are judged, and each row without a class counts once as
``unsupported_prediction``, never as incorrect. One such row used to make the whole batch
one ``unsupported_prediction``, and no row of it was judged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch

ROWS = 1000


def _results(scraper) -> tuple[float, float]:
    return (scraper.total("inferwatch_outcomes_total", result="correct"),
            scraper.total("inferwatch_outcomes_total", result="incorrect"))


def _unmatched(scraper) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in scraper.samples()
            if s.name == "inferwatch_outcomes_unmatched_total" and s.value}


def _predict(scraper, predicted, request_id="batch-1", **options):
    wrapped = inferwatch.instrument(lambda x: predicted, name="m", version="1",
                                    registry=scraper.registry, **options)
    wrapped(np.zeros((3, 2)), request_id=request_id)
    return inferwatch.monitor("m", "1", registry=scraper.registry)


def _one_missing(labels: list, missing: object) -> list:
    return [*labels[:-1], missing]


# Each: what the classifier returns (its last row has no class), the labels as they come
# back (the last one other than the class it would have had: never judged), options.
_SHAPES = {
    "Int64 Series with pd.NA": (
        lambda: pd.Series(_one_missing([i % 3 for i in range(ROWS)], pd.NA), dtype="Int64"),
        [i % 3 for i in range(ROWS)], {}),
    "Int64 extension array with pd.NA": (
        lambda: pd.array(_one_missing([i % 3 for i in range(ROWS)], None), dtype="Int64"),
        [i % 3 for i in range(ROWS)], {}),
    "object ints with None": (
        lambda: np.array(_one_missing([i % 3 for i in range(ROWS)], None), dtype=object),
        [i % 3 for i in range(ROWS)], {}),
    "declared strings with None": (
        lambda: np.array(_one_missing(["spam", "ham"] * (ROWS // 2), None), dtype=object),
        ["spam", "ham"] * (ROWS // 2), {"classes": ("spam", "ham")}),
    "undeclared strings with None": (
        lambda: np.array(_one_missing(["spam", "ham"] * (ROWS // 2), None), dtype=object),
        ["spam", "ham"] * (ROWS // 2), {}),
    "pandas string Series with NA": (
        lambda: pd.Series(_one_missing(["spam", "ham"] * (ROWS // 2), None), dtype="string"),
        ["spam", "ham"] * (ROWS // 2), {"classes": ("spam", "ham")}),
    "Int64 ids past the class bound with pd.NA": (
        lambda: pd.Series(_one_missing([70_000 + i % 3 for i in range(ROWS)], pd.NA),
                          dtype="Int64"),
        [70_000 + i % 3 for i in range(ROWS)], {}),
    "polars integers with a null": (
        lambda: pl.Series(_one_missing([i % 3 for i in range(ROWS)], None)),
        [i % 3 for i in range(ROWS)], {}),
    "pyarrow integers with a null": (
        lambda: pa.array(_one_missing([70_000 + i % 3 for i in range(ROWS)], None)),
        [70_000 + i % 3 for i in range(ROWS)], {}),
    "a label output of pyarrow integers with a null, beside scores": (
        lambda: {"label": pa.array(_one_missing([i % 3 for i in range(ROWS)], None)),
                 "score": np.linspace(0.0, 1.0, ROWS)},
        [i % 3 for i in range(ROWS)], {}),
    "float classes with NaN, task=classification": (
        lambda: np.array(_one_missing([float(i % 2) for i in range(ROWS)], np.nan)),
        [i % 2 for i in range(ROWS)], {"task": "classification"}),
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_one_row_without_a_class_leaves_the_others_judged(scraper, shape):
    make, labels, options = _SHAPES[shape]
    mon = _predict(scraper, make(), **options)
    # Every row right but the first, which is wrong; the missing row's label is whatever.
    truth = list(labels)
    truth[0] = "ham" if isinstance(truth[0], str) and truth[0] == "spam" else \
        "spam" if isinstance(truth[0], str) else truth[0] + 1
    mon.record_outcome("batch-1", truth)
    assert _results(scraper) == (ROWS - 2, 1)
    assert _unmatched(scraper) == {"unsupported_prediction": 1}
    assert scraper.total("inferwatch_outcome_error_count") == 0  # labels, not values


def test_a_row_without_a_class_and_without_a_label_counts_once(scraper):
    mon = _predict(scraper, pd.array([1, None, 0, None, 0], dtype="Int64"))
    mon.record_outcome("batch-1", [1, None, None, 1, 1])
    assert _results(scraper) == (1, 1)
    assert _unmatched(scraper) == {"unsupported_prediction": 2, "missing_label": 1}


def test_one_label_for_the_batch_judges_every_row_with_a_class(scraper):
    mon = _predict(scraper, np.array([1, None, 0], dtype=object))
    mon.record_outcome("batch-1", 1)
    assert _results(scraper) == (1, 1)
    assert _unmatched(scraper) == {"unsupported_prediction": 1}


def test_a_batch_of_no_class_at_all_counts_each_row(scraper):
    mon = _predict(scraper, pd.array([None, None, None], dtype="Int64"))
    mon.record_outcome("batch-1", [1, 0, 1])
    assert _results(scraper) == (0, 0)
    assert _unmatched(scraper) == {"unsupported_prediction": 3}


def test_batches_of_one_drain_are_each_joined(scraper):
    """Several calls folded by one drain: each keeps its own rows."""
    results = iter([pd.array([1, None], dtype="Int64"), np.array([0, 1]),
                    np.array(["a", None, "b"], dtype=object)])
    wrapped = inferwatch.instrument(lambda x: next(results), name="m", version="1",
                                    registry=scraper.registry, classes=("a", "b"))
    for request_id in ("r-1", "r-2", "r-3"):
        wrapped(np.zeros((1, 2)), request_id=request_id)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    mon.record_outcome("r-1", [1, 1])
    mon.record_outcome("r-2", [0, 0])
    mon.record_outcome("r-3", ["a", "a", "a"])
    assert _results(scraper) == (3, 2)
    assert _unmatched(scraper) == {"unsupported_prediction": 2}


@pytest.mark.parametrize("make", [
    lambda: np.array([1.0, np.nan, 3.0]),
    lambda: pd.Series([1.0, None, 3.0], dtype="Float64"),  # pandas 2 joined none of it
    lambda: pl.Series([1.0, None, 3.0]),
    lambda: pa.array([1.0, None, 3.0]),
], ids=["numpy", "Float64", "polars", "pyarrow"])
def test_a_regressor_row_without_a_value_still_counts_missing_label(scraper, make):
    """The regressor's rule, unchanged: its row without a finite value is missing_label."""
    mon = _predict(scraper, make(), task="regression")
    mon.record_outcome("batch-1", [1.0, 2.0, 4.0])
    assert scraper.total("inferwatch_outcome_error_count") == 2
    assert _unmatched(scraper) == {"missing_label": 1}


def test_a_batch_with_a_missing_row_takes_the_memory_of_a_whole_batch():
    """The row without a class is kept as None: no more than a label would take."""
    from inferwatch.core.outcome_sizes import entry_bytes

    whole = entry_bytes("r-1", ("1",) * 64, None)
    assert entry_bytes("r-1", ("1",) * 63 + (None,), None) <= whole


# --- random batches with random missing rows -----------------------------------------------------

def _missing_of(kind: str) -> object:
    return {"Int64": pd.NA, "object": None, "str": None, "float": np.nan}[kind]


def _container(kind: str, cells: list) -> object:
    if kind == "Int64":
        return pd.Series(cells, dtype="Int64")
    if kind == "float":
        return np.array(cells, dtype=np.float64)
    return np.array(cells, dtype=object)


def _label_of(kind: str, k: int) -> object:
    return ("abc"[k] if kind == "str" else float(k) if kind == "float" else k)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["Int64", "object", "str", "float"]),
       rows=st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 2)),
                               st.one_of(st.none(), st.integers(0, 2))),
                     min_size=1, max_size=40),
       one_label=st.booleans())
def test_every_row_is_judged_or_counted_unmatched(kind, rows, one_label):
    """correct + incorrect == rows with both a prediction and a label; unmatched == rows
    missing either, each once."""
    from conftest import Scraper

    if one_label:  # one label for the whole batch judges every row as its own would
        label = rows[0][1]
        rows = [(p, label) for p, _ in rows]
    scraper = Scraper(drain_interval=3600)
    try:
        options = {"task": "classification"} if kind == "float" else \
            {"classes": ("a", "b", "c")} if kind == "str" else {}
        predicted = [_missing_of(kind) if p is None else _label_of(kind, p) for p, _ in rows]
        mon = _predict(scraper, _container(kind, predicted), **options)
        truth = [None if t is None else _label_of(kind, t) for _, t in rows]
        mon.record_outcome("batch-1", truth[0] if one_label else truth)
        judged = [(p, t) for p, t in rows if p is not None and t is not None]
        correct = sum(1 for p, t in judged if p == t)
        assert _results(scraper) == (correct, len(judged) - correct)
        unmatched = _unmatched(scraper)
        assert sum(unmatched.values()) == len(rows) - len(judged)
        assert unmatched.get("unsupported_prediction", 0) == sum(1 for p, _ in rows if p is None)
    finally:
        scraper.registry.close()
