"""Batches called with request_id= whose rows wait for their outcome as arrays (ArrayRows):
folded and joined exactly as the general path folds and joins them, with the rows made
Python objects only when an outcome comes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core import drain_folds, pending_calls
from inferwatch.core.array_rows import ArrayRows, label_lengths, labels_length
from inferwatch.core.outcomes import _sizeof

# The series one call of labels or values feeds (its durations aside).
_SERIES = ("inferwatch_requests_total", "inferwatch_batch_size",
           "inferwatch_predicted_class_total", "inferwatch_prediction",
           "inferwatch_invalid_predictions_total", "inferwatch_outcomes_total",
           "inferwatch_outcome_errors", "inferwatch_outcomes_unmatched_total")


class _Classifier:
    """A model naming its classes, among them one past the small-integer bound."""

    classes_ = np.array([0, 1, 2, 70_000])

    def predict(self, x):
        return x


def _recorded(scraper: Scraper) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): "NaN" if s.value != s.value else s.value
            for s in scraper.samples() if s.name.startswith(_SERIES)}


def _entries(monitor) -> dict:
    """What the cache holds for each id: (classes, values) as the text of tuples (so that NaN
    equals NaN, and -0.0 is not 0.0), bytes, whole rows."""
    return {request_id: (None if classes is None else repr(tuple(classes)),
                         None if values is None else repr(tuple(values)), size, rows)
            for request_id, (classes, values, _, size, rows)
            in monitor.outcomes._pending.items()}


_LABELS = st.integers(-5, 5) | st.sampled_from([70_000, -70_000, 2**40, 12])
_VALUES = st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf"), -0.0])


@st.composite
def _batches(draw):
    """Calls of one kind of 1-D array (labels of one integer dtype, or floats), some longer
    than a slice and than the tuple bound, some under a request id."""
    integers = draw(st.booleans())
    dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16] if integers else
                                 [np.float64, np.float32]))
    calls = []
    for number in range(draw(st.integers(1, 4))):
        # Rows drawn from a few values (so that long arrays are drawn as often as short).
        pool = draw(st.lists(_LABELS if integers else _VALUES, min_size=1, max_size=6))
        if dtype is np.uint16:
            pool = [abs(cell) % 2**16 for cell in pool]
        rows = draw(st.integers(1, 260))
        array = np.random.default_rng(draw(st.integers(0, 2**16))).choice(np.array(pool), rows)
        calls.append((array.astype(dtype), draw(st.sampled_from([None, f"r-{number}"]))))
    return calls


def _run(calls, task: str, classifier: bool, cache_bytes: int, outcome):
    scraper = Scraper(drain_interval=3600)
    try:
        kwargs = {} if task == "auto" else {"task": task}
        if classifier:
            model = inferwatch.instrument(_Classifier(), name="m", version="1",
                                          registry=scraper.registry, **kwargs).predict
        else:
            model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                          registry=scraper.registry, **kwargs)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor.configure(outcome_cache_bytes=cache_bytes)
        for array, request_id in calls:
            if request_id is None:
                model(array)
            else:
                model(array, request_id=request_id)
        monitor.drain()
        entries = _entries(monitor)
        for array, request_id in calls:
            if request_id is not None:
                monitor.record_outcome(request_id, outcome(array))
        return _recorded(scraper), entries
    finally:
        scraper.registry.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_batches(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 6000, 2**20]),
       one_label=st.booleans())
def test_batches_join_as_the_general_path_joins_them(monkeypatch, calls, task, classifier,
                                                     cache_bytes, one_label):
    """The one-array fold (slices of 100 rows, ArrayRows past 50 rows) against the general
    path, which normalises record by record: the same series, the same rows kept for each
    id with the same bytes and whole count, the same outcomes judged."""
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    monkeypatch.setattr(drain_folds, "ARRAY_ROWS_FROM", 50)

    def outcome(array):  # a label per row, or one for the whole batch
        truth = np.where(np.arange(array.shape[0]) % 3 == 0, array, array[::-1])
        return truth[:1].tolist() if one_label else truth.tolist()

    fast = _run(calls, task, classifier, cache_bytes, outcome)
    with monkeypatch.context() as patched:
        patched.setattr(drain_folds, "_fold_plain_arrays", lambda *args, **kwargs: False)
        general = _run(calls, task, classifier, cache_bytes, outcome)
    # The same series; a sum to the last few bits (the slices are summed in turn).
    assert fast[0].keys() == general[0].keys()
    for key, value in fast[0].items():
        other = general[0][key]
        assert value == other or math.isclose(value, other, rel_tol=1e-12), key
    assert fast[1] == general[1]


def test_a_huge_batch_keeps_its_rows_as_an_array_until_an_outcome_comes():
    """A 2-million-row batch of labels under one id: the drain keeps a copy of its first
    rows (never the call's own array), which an outcome reads as text."""
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                      registry=scraper.registry)
        labels = np.arange(2_000_000) % 3
        model(labels, request_id="batch-1")
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor.drain()
        classes, values, _, size, rows = monitor.outcomes._pending["batch-1"]
        assert values is None and classes.__class__ is ArrayRows and rows == 2_000_000
        assert not any(np.shares_memory(column, labels) for column in classes._columns)
        kept = len(classes)
        assert tuple(classes) == tuple(str(v) for v in labels[:kept].tolist())
        assert size <= monitor.outcomes.max_bytes
        monitor.record_outcome("batch-1", labels.tolist())
        assert scraper.value("inferwatch_outcomes_total", result="correct") == kept
    finally:
        scraper.registry.close()


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_label_lengths_are_the_lengths_of_the_labels_text(values):
    array = np.array(values, dtype=np.int64)
    assert label_lengths(array).tolist() == [len(str(v)) for v in values]
    assert labels_length(array) == sum(len(str(v)) for v in values)
    rows = ArrayRows((array,), labels=True)
    assert rows.row_sizes().tolist() == [_sizeof(str(v)) for v in values]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_label_lengths_of_unsigned_labels(values):
    array = np.array(values, dtype=np.uint64)
    assert label_lengths(array).tolist() == [len(str(v)) for v in values]
    assert labels_length(array) == sum(len(str(v)) for v in values)


@pytest.mark.parametrize("columns, labels", [
    ((np.array([0.5, -1.0, 3.25]),), False),
    ((np.array([0.5, 2.0]), np.array([10.0, 20.0]), np.array([1.0, 0.0])), False),
    ((np.array([3, -12, 70_000]),), True),
])
def test_array_rows_read_as_the_tuple_of_their_rows(columns, labels):
    rows = ArrayRows(columns, labels=labels)
    as_tuple = tuple(rows)
    assert rows == as_tuple and len(rows) == len(as_tuple)
    assert [rows[i] for i in range(len(rows))] == list(as_tuple)
    assert tuple(rows[1:]) == as_tuple[1:]
    assert rows.row_sizes().tolist() == [_sizeof(row) for row in as_tuple]
    assert rows.held_bytes() == sum(map(_sizeof, as_tuple)) == rows[:].held_bytes()
