"""A huge result among many calls of one drain (a batch job's call amid a service's
traffic): cut into slices or read apart, the monitor's lock let go, as when it drains with
few calls beside it, and the same series as when everything is read in one hold."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core import pending_calls, record_joins
from test_huge_batches import CountingLock
from test_huge_batches_read_apart import (
    _KINDS,
    _LABELS,
    _result,
    _series,
    drained_with_reads_watched,
)
from test_outcomes_array_rows import _entries

SLICE = 100
# Kinds cut into slices rather than read apart; the table's rows past ARRAY_ROWS_FROM are
# kept for the outcome join as an array (so a request folds it apart from that many rows).
_SLICED = ["a list of labels", "a pandas text Series", "a table of two integer labels"]
JOIN_TUPLES = 50  # ARRAY_ROWS_FROM here: a table of 51 to 100 rows is past it, not a slice


def _call_result(kind: str, rows: int, rng: np.random.Generator) -> object:
    import pandas as pd

    if kind == "a list of labels":
        return np.array(_LABELS)[rng.integers(0, len(_LABELS), rows)].tolist()
    if kind == "a table of two integer labels":  # a MultiOutputClassifier's predict
        return rng.integers(0, 3, (rows, 2))
    if kind == "a pandas text Series":
        return pd.Series(np.array(_LABELS)[rng.integers(0, len(_LABELS), rows)],
                         dtype="string[pyarrow]")
    return _result(kind, rows, rng)


def _drained(results: list, slow: set[int], task: str, looked_at: float, monkeypatch,
             request_ids: bool) -> tuple[dict, list, int, list]:
    """(The series, the outcome cache's entries, the drain's holds of the lock, the
    classes of the rows the cache keeps for each call at `slow`, in call order) after one
    drain of calls returning `results`, those at `slow` taking 20 us or more, the others
    as long as a call of a function returning what it holds takes, with
    ``LOOKED_AT_SECONDS`` set to `looked_at`."""
    with monkeypatch.context() as patched:
        patched.setattr(pending_calls, "LOOKED_AT_SECONDS", looked_at)
        scraper = Scraper(drain_interval=3600)
        try:
            def model(index: int) -> object:
                if index in slow:
                    time.sleep(2e-5)  # at least that long: a batch's call
                return results[index]

            wrapped = inferwatch.instrument(
                model, name="m", version="1", registry=scraper.registry, task=task,
                classes=_LABELS if task == "classification" else None)
            monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
            if request_ids:
                monitor.configure(outcome_cache_bytes=2**22)
            for index in range(len(results)):
                if request_ids:
                    wrapped(index, request_id=f"r-{index}")
                else:
                    wrapped(index)
            monitor._lock = lock = CountingLock()
            monitor.drain()
            entries = _entries(monitor) if request_ids else []
            # A batch's rows past ARRAY_ROWS_FROM are kept as an array (ArrayRows), made
            # text when an outcome comes; read with the others, as tuples of text.
            pending = monitor.outcomes._pending
            kept = [tuple(type(part).__name__ for part in pending[f"r-{index}"][:2])
                    for index in sorted(slow) if request_ids and f"r-{index}" in pending]
            return _series(scraper), entries, lock.entered, kept
        finally:
            scraper.registry.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(_KINDS + _SLICED), min_size=1, max_size=2),
       huge_rows=st.lists(st.integers(JOIN_TUPLES + 1, 260), min_size=2, max_size=2),
       small=st.integers(pending_calls.SERIES_LOOKED_AT + 1, 30),
       seed=st.integers(0, 2**16), task=st.sampled_from(["classification", "regression"]),
       request_ids=st.booleans())
def test_huge_results_among_many_calls_fold_as_in_one_hold(
        monkeypatch, kinds, huge_rows, small, seed, task, request_ids):
    """Many calls of one to three rows, of each kind, with one or two huge ones among them:
    drained with the slow calls looked into, the huge ones take the holds of the lock
    they take in a drain of their own, their rows are kept for the outcome join as they
    are there (as an array past ARRAY_ROWS_FROM rows), and every series (and, under
    request ids, every row kept for an id) is what the drain makes of them all read in its
    first hold (no call looked into)."""
    pytest.importorskip("polars")
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", SLICE)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", JOIN_TUPLES)
    rng = np.random.default_rng(seed)
    results = [_call_result(kinds[i % len(kinds)], int(rng.integers(1, 4)), rng)
               for i in range(small)]
    slow = set()
    for kind, rows in zip(kinds, huge_rows):
        position = int(rng.integers(0, len(results) + 1))
        results.insert(position, _call_result(kind, rows, rng))
        slow = {i + (i >= position) for i in slow} | {position}
    looked = _drained(results, slow, task, pending_calls.LOOKED_AT_SECONDS, monkeypatch,
                      request_ids)
    whole = _drained(results, slow, task, math.inf, monkeypatch, request_ids)
    huge = [results[i] for i in sorted(slow)]
    alone = _drained(huge, set(range(len(huge))), task, math.inf, monkeypatch, request_ids)
    assert looked[2] == alone[2], "the huge results took other holds than alone in a drain"
    assert looked[3] == alone[3], "the huge results' rows were kept otherwise than alone"
    assert looked[1] == whole[1]
    assert looked[0].keys() == whole[0].keys()
    for key, value in looked[0].items():
        assert value == whole[0][key] or math.isclose(value, whole[0][key], rel_tol=1e-9), key


@pytest.mark.parametrize("request_id", [None, "batch-1"])
@pytest.mark.parametrize(("answers", "small"), [(30, "dict"), (30, "array"), (2, "array")])
def test_a_huge_result_among_many_calls_waits_for_no_reader(monkeypatch, request_id,
                                                            answers, small):
    """A pipeline's answer for 500 texts (slices of 100 rows) among one-row answers (30,
    or 2 beside arrays: a drain holding arrays looked at nothing else before), each call
    under a request id or none: read with the lock let go, so a reader takes the lock
    while it is read. Every call counts once, every row once."""

    monkeypatch.setattr(pending_calls, "SLICE_ROWS", SLICE)
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        huge = [{"label": _LABELS[i % 3], "score": 0.5} for i in range(500)]

        one_row = [{"label": "cat", "score": 0.9}] if small == "dict" else np.array(["cat"])

        def pipeline(texts: list) -> object:
            if len(texts) > 1:
                time.sleep(1e-3)
            return huge if len(texts) > 1 else one_row

        model = inferwatch.instrument(pipeline, name="m", version="1", registry=registry,
                                      classes=_LABELS)
        for number in range(answers):
            if request_id is None:
                model(["one text"])
            else:
                model(["one text"], request_id=f"r-{number}")
        model(["a text"] * 500, **({} if request_id is None else {"request_id": request_id}))
        monitor = inferwatch.monitor("m", "1", registry=registry)
        assert drained_with_reads_watched(monkeypatch, monitor, lambda result: result is huge) \
            == [True], "the lock was held while the answer was read"
        state = monitor.state
        assert state.counters["inferwatch_requests_total"][("ok",)] == answers + 1
        sizes = state.histograms["inferwatch_batch_size"][()]
        assert sizes.count == answers + 1 and sizes.sum == answers + 500
        assert sum(state.counters["inferwatch_predicted_class_total"].values()) == \
            answers + 500
    finally:
        registry.close()
