"""Tables called with request_id= (a multi-output classifier's labels, a multi-output
regressor's values): folded in slices, and joined by their first rows kept as arrays, exactly
as the general path folds and joins them, with the rows made Python objects only when an
outcome comes."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import huge_records, pending_calls, record_joins
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.outcome_sizes import sizeof
from test_outcomes_array_rows import (
    _assert_same_samples,
    judged_after_drain,
)

_CELLS = {
    "integers": st.integers(-5, 5) | st.sampled_from([70_000, -70_000, 2**40, 12]),
    "floats": st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf"), -0.0]),
    "text": st.sampled_from(["cat", "dog", "é", "", "bird", "x" * 300]) | st.text(max_size=4),
    "bools": st.booleans(),
}
_DTYPES = {"integers": [np.int64, np.int32, np.uint16], "floats": [np.float64, np.float32],
           "text": [str], "bools": [bool]}


class _Classifier:
    """A model naming one set of classes per output (scikit-learn's MultiOutputClassifier)."""

    classes_ = [np.array([0, 1, 2]), np.array([0, 1, 2])]

    def predict(self, x):
        return x


@st.composite
def _tables(draw):
    """Calls of tables of one kind and width, some longer than a slice (100 rows here) and
    than the tuple bound (50), some under a request id."""
    kind = draw(st.sampled_from(sorted(_CELLS)))
    dtype = draw(st.sampled_from(_DTYPES[kind]))
    width = draw(st.integers(2, 4))
    calls = []
    for number in range(draw(st.integers(1, 3))):
        pool = draw(st.lists(_CELLS[kind], min_size=1, max_size=6))
        if dtype is np.uint16:
            pool = [abs(cell) % 2**16 for cell in pool]
        rows = draw(st.integers(1, 260))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        table = rng.choice(np.array(pool), (rows, width)).astype(dtype)
        calls.append((table, draw(st.sampled_from([None, f"r-{number}"]))))
    return calls


def _run(calls, task: str, classifier: bool, cache_bytes: int, one_row: bool):
    def outcome(table):
        # A row's truth per row (some rows told wrong), or one row for the batch.
        truth = np.where((np.arange(table.shape[0]) % 3 == 0)[:, None], table, table[::-1])
        return truth[:1].tolist() if one_row else truth.tolist()

    return judged_after_drain(calls, _Classifier() if classifier else None, task,
                              cache_bytes, outcome)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(calls=_tables(), task=st.sampled_from(["auto", "classification", "regression"]),
       classifier=st.booleans(), cache_bytes=st.sampled_from([2048, 6000, 2**20]),
       one_row=st.booleans())
def test_tables_fold_and_join_as_the_general_path_does(monkeypatch, calls, task, classifier,
                                                       cache_bytes, one_row):
    """The table fold (slices of 100 rows, ArrayRows past 50 rows) against the general
    path, which makes every row a tuple of Python objects: the same series, the same rows
    kept for each id with the same bytes and whole count, the same outcomes judged."""
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 50)
    taken = []
    real = huge_records.fold_huge_table

    def counting(*args):
        folded = real(*args)
        taken.append(folded)
        return folded

    monkeypatch.setattr(huge_records, "fold_huge_table", counting)
    fast = _run(calls, task, classifier, cache_bytes, one_row)
    with monkeypatch.context() as patched:
        patched.setattr(huge_records, "fold_huge_table", lambda *args: False)
        general = _run(calls, task, classifier, cache_bytes, one_row)
    _assert_same_samples(fast[0], general[0])
    assert fast[1] == general[1]
    # The fold took every long table it reads as labels or values (not a classifier's
    # floats, which its task reads as probabilities).
    kind = calls[0][0].dtype.kind
    floats_as_classes = kind == "f" and (task == "classification" or (
        task == "auto" and classifier))
    long_tables = sum(table.shape[0] > 50 for table, request_id in calls
                      if request_id is not None)  # the others take the fast path
    assert sum(taken) == (0 if floats_as_classes else long_tables)


@pytest.mark.parametrize("table", [
    np.full((900, 3), ""), np.full((900, 2), True), np.zeros((900, 4), dtype=np.int8),
    np.zeros((900, 2)),
], ids=["empty-text", "true", "zero", "float"])
@pytest.mark.parametrize("task", ["auto", "regression"])
def test_a_table_of_the_shortest_cells_keeps_as_many_rows_as_the_general_path(
        monkeypatch, table, task):
    """Every cell the shortest a row can hold: the rows kept are exactly the rows the
    cache's bytes hold, none fewer (the fold's first cut assumes that row)."""
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 50)
    calls = [(table, "r-0")]
    fast = _run(calls, task, False, 2**16, False)  # a bound of a few hundred such rows
    monkeypatch.setattr(huge_records, "fold_huge_table", lambda *args: False)
    general = _run(calls, task, False, 2**16, False)
    _, _, size, whole = general[1]["r-0"]
    assert whole == 900 and 0.95 * 2**16 < size <= 2**16  # the bound, not the table, cut it
    assert fast[1] == general[1]
    _assert_same_samples(fast[0], general[0])


@pytest.mark.parametrize("columns", [
    (np.array([1, -20, 70_000]), np.array([0, 1, 2], dtype=np.uint8)),
    (np.array(["cat", "é", "x" * 300]), np.array([True, False, True])),
    (np.array([True, False, True]), np.array([False, False, True]), np.array(["", "a", "b"])),
])
def test_label_table_rows_read_as_the_tuples_of_their_labels(columns):
    rows = ArrayRows(columns, labels=True)
    expected = tuple(zip(*[[str(cell)[:256] for cell in column.tolist()]
                           for column in columns]))
    assert tuple(rows) == expected and rows == expected
    assert [rows[i] for i in range(len(rows))] == list(expected)
    assert tuple(rows[1:]) == expected[1:]
    assert rows.row_sizes().tolist() == [sizeof(row) for row in expected]
    assert rows.held_bytes() == sum(map(sizeof, expected))


def test_a_huge_label_table_under_one_request_id_lets_go_of_the_lock_between_slices():
    """A million rows of two text labels under one id: the longest wait for the monitor's
    lock is one slice's fold, not the whole table made tuples (2.7 s before), and the join
    keeps the first rows the cache holds, judged when their outcome comes."""
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry)
        rows = 8 * pending_calls.SLICE_ROWS
        table = np.column_stack([np.array(["cat", "dog", "bird"])[np.arange(rows) % 3],
                                 np.array(["x", "y"])[np.arange(rows) % 2]])
        model(table, request_id="batch-1")
        monitor = inferwatch.monitor("m", "1", registry=registry)
        holds = []
        real = monitor._drain_slice

        def counted(*args, **kwargs):
            holds.append(threading.get_ident())
            return real(*args, **kwargs)

        monitor._drain_slice = counted
        monitor.drain()
        assert len(holds) == 7  # every slice after the first folded in its own hold
        classes, values, _, _, whole = monitor.outcomes._pending["batch-1"]
        assert values is None and classes.__class__ is ArrayRows and whole == rows
        assert not any(np.shares_memory(column, table) for column in classes._columns)
        kept = len(classes)
        assert 0 < kept < rows
        assert tuple(classes[:3]) == (("cat", "x"), ("dog", "y"), ("bird", "x"))
        assert monitor.state.histograms["inferwatch_batch_size"][()].count == 1
        monitor.record_outcome("batch-1", table.tolist())
        correct = monitor.state.counters["inferwatch_outcomes_total"][("correct",)]
        assert correct == 2 * kept  # each output of each kept row judged
    finally:
        registry.close()
