"""A huge batch under one request id: only the rows the ground-truth join can keep are read
and sized, and what it keeps is what sizing every row kept before."""

from __future__ import annotations

import itertools
import sys
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core import array_rows, outcome_sizes, record_joins
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.outcome_sizes import fitted_entry, row_bytes, sizeof
from inferwatch.core.outcomes import OutcomeJoiner
from inferwatch.core.prediction_classes import class_labels, labels_and_lengths
from inferwatch.core.registry import Registry


def _fitted_row_by_row(request_id: str, classes: tuple | None, values: tuple | None,
                       max_bytes: int) -> tuple:
    """What the join kept of a batch when every row was sized on its own: the reference."""
    rows = classes if classes is not None else values
    size = _row_by_row_entry_bytes(request_id, rows)
    if size <= max_bytes:
        return classes, values, size
    budget = max_bytes - (outcome_sizes.ENTRY_OVERHEAD_BYTES + sys.getsizeof(request_id)
                          + sys.getsizeof(()))
    costs = itertools.accumulate(sizeof(row) + outcome_sizes.TUPLE_SLOT_BYTES for row in rows)
    fit = max(1, sum(1 for _ in itertools.takewhile(lambda cost: cost <= budget, costs)))
    kept = rows[:fit]
    if classes is not None:
        return kept, None, _row_by_row_entry_bytes(request_id, kept)
    return None, kept, _row_by_row_entry_bytes(request_id, kept)


def _row_by_row_entry_bytes(request_id: str, rows: tuple) -> int:
    return (outcome_sizes.ENTRY_OVERHEAD_BYTES + sizeof(request_id) + sys.getsizeof(())
            + outcome_sizes.TUPLE_SLOT_BYTES * len(rows) + sum(map(sizeof, rows)))


_CELLS = [st.floats(allow_nan=False), st.text(max_size=6), st.none(), st.integers()]
# Rows of several outputs: a tuple a row, of one width, each column of one kind (or mixed).
_TUPLE_ROWS = st.integers(1, 4).flatmap(lambda width: st.tuples(
    *[st.sampled_from([*_CELLS, st.one_of(*_CELLS)]) for _ in range(width)]).flatmap(
        lambda kinds: st.lists(st.tuples(*kinds), min_size=1, max_size=300)))


_ROWS = st.one_of(
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=400),
    st.lists(st.text(max_size=12), min_size=1, max_size=400),  # ASCII or not
    st.lists(st.sampled_from(["fraud", "legit", "é"]), min_size=1, max_size=400),
    st.lists(st.one_of(st.floats(), st.text(max_size=5), st.none(), st.integers()),
             min_size=1, max_size=400),
    _TUPLE_ROWS,
    # Tuples of several widths: sized row by row.
    st.lists(st.tuples(st.floats(allow_nan=False)) | st.tuples(st.floats(allow_nan=False),
                                                               st.text(max_size=3)),
             min_size=1, max_size=100))


@settings(max_examples=300, deadline=None)
@given(rows=_ROWS, as_classes=st.booleans(), max_bytes=st.integers(1024, 30_000))
def test_a_batch_is_cut_where_sizing_every_row_cut_it(rows, as_classes, max_bytes):
    rows = tuple(rows)
    classes, values = (rows, None) if as_classes else (None, rows)
    assert fitted_entry("r-17", classes, values, max_bytes) == \
        _fitted_row_by_row("r-17", classes, values, max_bytes)


def test_a_huge_batch_under_one_request_id_converts_only_the_rows_the_join_keeps(
        monkeypatch):
    """A 10-million-row batch of labels called with request_id= made ten million Python
    strings and sized each of them in the drain, under the monitor's lock (7 s here); the
    join kept 578,519 of them. Then 578,519 in the drain (11 ms of its lock). Now the drain
    keeps a copy of those rows' array, and an outcome makes them text."""
    converted: list[tuple[str, int]] = []  # (the phase, labels made text)
    phase = ["drain"]
    real_labels = array_rows.labels_and_lengths

    def counting_labels(values):
        converted.append((phase[0], len(values)))
        return real_labels(values)

    monkeypatch.setattr(array_rows, "labels_and_lengths", counting_labels)
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry)
        labels = np.arange(2_000_000) % 3
        model(labels, request_id="batch-1")
        model(labels[10:20], request_id="batch-0")  # a short batch: its rows made text
        monitor = inferwatch.monitor("m", "1", registry=registry)
        monitor.drain()
        # As many as fit when each is a one-character label (the shortest there is here),
        # under its id: none is cut again, none made text.
        cap = monitor.outcomes.row_cap(row_bytes("0"), "batch-1")
        assert converted == [("drain", 10)]
        # The huge one fills the cache's bytes: the next prediction evicted it. Alone:
        model(labels, request_id="batch-1")
        monitor.drain()
        assert converted == [("drain", 10)]
        whole, kept = monitor.outcomes.kept_rows("batch-1")
        assert whole == 2_000_000
        # What sizing every row kept: the first rows that fit in the bound.
        expected = _fitted_row_by_row("batch-1", tuple(str(v) for v in labels[:cap + 100]),
                                      None, monitor.outcomes.max_bytes)[0]
        assert kept == len(expected) == cap
        phase[0] = "outcome"
        monitor.record_outcome("batch-1", labels.tolist())
        assert converted == [("drain", 10), ("outcome", cap)]
        phase[0] = "drain"
        assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == cap
        model(labels[:10], request_id="batch-2")
        monitor.drain()
        assert monitor.outcomes.kept_rows("batch-2") == (10, 10)
        assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 4
        monitor.record_outcome("batch-2", labels[:10].tolist())
        assert monitor.state.counters["inferwatch_outcomes_total"][("correct",)] == cap + 10
    finally:
        registry.close()


def test_row_cap_bounds_every_entry_the_cache_can_keep():
    joiner = OutcomeJoiner(max_bytes=4096)
    cap = joiner.row_cap()
    # Rows of the smallest object there is: one more than the cap would not fit.
    _, values, size = fitted_entry("r", None, (None,) * (cap + 50), 4096)
    assert len(values) <= cap and size <= 4096


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 3000), widest=st.integers(1, 2000), negative=st.booleans(),
       floats=st.booleans(), id_chars=st.integers(1, 300),
       cache_bytes=st.integers(2048, 40_000), step=st.sampled_from([1, 7]),
       as_array=st.booleans())
def test_a_batch_with_request_id_keeps_the_rows_sizing_every_row_keeps(
        rows, widest, negative, floats, id_chars, cache_bytes, step, as_array):
    """The drain caps a batch before converting it, by its shortest label and its id: the
    rows it keeps are still exactly those that sizing every row keeps, whatever the mix of
    label widths, signs and id lengths; kept as tuples, or (`as_array`) as the array a
    batch of more than ``ARRAY_ROWS_FROM`` rows keeps until its outcome."""
    registry = Registry(drain_interval=3600)
    bound = mock.patch.object(record_joins, "ARRAY_ROWS_FROM", 0 if as_array else 10**9)
    try:
        bound.start()
        model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry)
        monitor = inferwatch.monitor("m", "1", registry=registry)
        monitor.configure(outcome_cache_bytes=cache_bytes)
        batch = np.arange(rows) % (widest + 1)
        batch = (batch - widest // 2 if negative else batch + 7) * step  # 7: past a table
        if floats:
            batch = batch / 4.0
        request_id = "r" * id_chars
        model(batch, request_id=request_id)
        monitor.drain()
        cells = tuple(batch.tolist()) if floats else tuple(str(v) for v in batch.tolist())
        classes, values = (None, cells) if floats else (cells, None)
        expected = _fitted_row_by_row(request_id, classes, values, cache_bytes)
        kept = len(expected[0] if expected[0] is not None else expected[1])
        assert monitor.outcomes.kept_rows(request_id) == (rows, kept)
        # Its bytes, read off the array, are what sizing every row finds.
        entry = monitor.outcomes._pending[request_id]
        assert entry[3] == expected[2]
        assert (entry[0] if entry[0] is not None else entry[1]) == \
            (expected[0] if expected[0] is not None else expected[1])
        assert type(entry[0] if entry[0] is not None else entry[1]) is \
            (ArrayRows if as_array else tuple)
    finally:
        bound.stop()
        registry.close()


_INTEGER_DTYPES = st.sampled_from([np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint16, np.uint32, np.uint64])


@settings(max_examples=200, deadline=None)
@given(dtype=_INTEGER_DTYPES, data=st.data())
def test_integer_labels_read_as_text_by_a_table_or_a_sort_alike(dtype, data):
    """Labels of a small range are written by a table of their values, wider ones by a
    sort: either way each row's text is str() of its value, and its length likewise."""
    info = np.iinfo(dtype)
    low = data.draw(st.integers(int(info.min), int(info.max)))
    span = data.draw(st.sampled_from([1, 7, 4095, 4096, 5000, 2**40]))
    high = min(int(info.max), low + span)
    values = data.draw(st.lists(st.integers(low, high), min_size=65, max_size=300))
    labels = np.array(values, dtype=dtype)
    assert class_labels(labels) == [str(v) for v in values]
    texts, lengths = labels_and_lengths(labels)
    assert texts == [str(v) for v in values]
    if lengths is not None:
        assert lengths.tolist() == [len(str(v)) for v in values]
    else:  # only a range too wide for a table
        assert max(values) - min(values) >= 4096 or max(values) > 2**63 - 1
