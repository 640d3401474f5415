"""Huge results that no slice reads as the whole is read (rows of dicts, text labels beside
scores, DataFrames of text): taken out of the drain's first hold of the monitor's lock,
read with the lock let go, and folded in a hold of their own, to the same series."""

from __future__ import annotations

import contextlib
import math
import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core import pending_calls
from test_outcomes_array_rows import _entries

_LABELS = ["cat", "dog", "bird", "é"]


def _series(scraper: Scraper) -> dict:
    """Every sample but the latencies (the calls' own durations, an outcome's delay) and
    the drain's faults."""
    return {(s.name, tuple(sorted(s.labels.items()))): "NaN" if s.value != s.value else s.value
            for s in scraper.samples()
            if not s.name.startswith(("inferwatch_request_duration", "inferwatch_internal",
                                      "inferwatch_drain", "inferwatch_outcome_delay"))}


def _result(kind: str, rows: int, rng: np.random.Generator) -> object:
    import pandas as pd

    labels = np.array(_LABELS)[rng.integers(0, len(_LABELS), rows)]
    scores = rng.random(rows)
    if kind == "rows of label dicts":  # a Hugging Face pipeline's answer
        return [{"label": label, "score": score}
                for label, score in zip(labels.tolist(), scores.tolist())]
    if kind == "rows of number dicts":  # to_dict("records") of a regressor's outputs
        return [{"price": price, "units": int(units)}
                for price, units in zip(scores.tolist(), rng.integers(0, 9, rows).tolist())]
    if kind == "probability maps":  # ONNX's ZipMap
        return [{0: p, 1: 1.0 - p} for p in scores.tolist()]
    if kind == "rows of lists":
        return [[p, 1.0 - p] for p in scores.tolist()]
    if kind == "text labels beside scores (a dict)":
        return {"label": labels, "score": scores}
    if kind == "text labels beside scores (a tuple)":
        return (labels, scores)
    if kind == "a DataFrame of text and scores":
        return pd.DataFrame({"label": labels, "score": scores})
    if kind == "a table of object labels":  # a MultiOutputClassifier fit on text columns
        table = np.empty((rows, 2), dtype=object)
        table[:, 0] = labels.astype(object)
        table[:, 1] = np.array(["x", None, "y"], dtype=object)[rng.integers(0, 3, rows)]
        return table
    if kind == "a polars DataFrame":
        import polars as pl

        return pl.DataFrame({"label": labels, "score": scores})
    raise AssertionError(kind)


_KINDS = ["rows of label dicts", "rows of number dicts", "probability maps", "rows of lists",
          "text labels beside scores (a dict)", "text labels beside scores (a tuple)",
          "a DataFrame of text and scores", "a polars DataFrame"]


def _one_kind_per_output(kinds: list[str], task: str) -> bool:
    """Whether the calls of `kinds` agree on what each output name holds. Under a declared
    classification, rows of lists are class probabilities named ``0`` and ``1``, where
    probability maps (rows of dicts) and a tuple's outputs are values of the same names: an
    output's sketch keeps the accuracy of the drain that first wrote it (README), and a
    call read apart is folded after the others, so such a mix reads apart otherwise."""
    return not (task == "classification" and "rows of lists" in kinds and {
        "probability maps", "text labels beside scores (a tuple)"} & set(kinds))


def _drained(calls: list, task: str, defer: bool, monkeypatch,
             cache_bytes: int | None = None) -> tuple:
    """(The series, the outcome cache's entries) after `calls` drained, the huge ones read
    apart or (`defer` False) in the first hold. With `cache_bytes`, each call is made under
    a request id, with a cache of that bound, and judged by an outcome once drained."""
    from inferwatch.core import drain_folds

    with monkeypatch.context() as patched:
        if not defer:
            patched.setattr(pending_calls, "unsliced_rows", lambda result: 0)
            patched.setattr(drain_folds, "unsliced_rows", lambda result: 0)
        scraper = Scraper(drain_interval=3600)
        try:
            kwargs = {} if task == "auto" else {"task": task}
            model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                          registry=scraper.registry,
                                          classes=_LABELS if task == "classification" else None,
                                          **kwargs)
            monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
            if cache_bytes is not None:
                monitor.configure(outcome_cache_bytes=cache_bytes)
            for number, result in enumerate(calls):
                if cache_bytes is None:
                    model(result)
                else:
                    model(result, request_id=f"r-{number}")
            monitor.drain()
            entries = _entries(monitor)
            if cache_bytes is not None:
                for number, _ in enumerate(calls):
                    monitor.record_outcome(f"r-{number}", _LABELS[number % 3])
            return _series(scraper), entries
        finally:
            scraper.registry.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=3),
       rows=st.lists(st.integers(1, 260), min_size=3, max_size=3),
       seed=st.integers(0, 2**16), task=st.sampled_from(["classification", "regression"]))
def test_a_result_read_apart_makes_the_series_a_read_in_the_first_hold_makes(
        monkeypatch, kinds, rows, seed, task):
    """Calls of each kind, some past a slice (100 rows here), drained with the huge ones
    read apart and with every one read in the first hold: the same series. (A declared
    task: one read apart is folded as if its call came last in its drain, which may tell
    a task="auto" model's task, or a label cap's order, as a later drain would.)"""
    pytest.importorskip("polars")
    assume(_one_kind_per_output(kinds, task))
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    rng = np.random.default_rng(seed)
    calls = [_result(kind, count, rng) for kind, count in zip(kinds, rows)]
    apart, _ = _drained(calls, task, True, monkeypatch)
    whole, _ = _drained(calls, task, False, monkeypatch)
    assert apart.keys() == whole.keys()
    for key, value in apart.items():
        assert value == whole[key] or math.isclose(value, whole[key], rel_tol=1e-9), key


@pytest.mark.parametrize("kind", _KINDS)
def test_each_kind_past_a_slice_is_read_apart(monkeypatch, kind):
    """Which results the first hold leaves out: every kind above once it is longer than a
    slice, none shorter."""
    pytest.importorskip("polars")
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    rng = np.random.default_rng(0)
    assert pending_calls.unsliced_rows(_result(kind, 101, rng)) == 101
    rest: list = []
    short = _result(kind, 100, rng)
    kept, _ = pending_calls.first_slices([short], False, rest, {type(short)}, defer=True)
    assert len(kept) == 1 and not rest
    long = _result(kind, 101, rng)
    kept, _ = pending_calls.first_slices([short, long], False, rest, {type(long)}, defer=True)
    assert kept == [short] or (len(kept) == 1 and kept[0] is short)
    assert [part.result is long for part in rest] == [True]


def drained_with_reads_watched(monkeypatch, monitor, watched_result) -> list[bool]:
    """Drain `monitor` while, at each read apart of a result `watched_result` picks, a
    reader thread takes the monitor's lock: for each such read, whether the reader took
    the lock during it (it cannot while the drain holds it: the read then waits 10 s for
    it in vain, and the reader takes it once the drain let go)."""
    from inferwatch.core.prediction_batch import PredictionBatch

    reading, took_lock = threading.Event(), threading.Event()

    def reader() -> None:
        reading.wait(30)
        with monitor._lock:  # blocks until the drain lets go, were it holding it
            took_lock.set()

    original = PredictionBatch.read_one
    taken_while_read: list[bool] = []

    def watched(self, result, probabilities):
        if watched_result(result):
            reading.set()
            taken_while_read.append(took_lock.wait(10))
        return original(self, result, probabilities)

    monkeypatch.setattr(PredictionBatch, "read_one", watched)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        monitor.drain()
    finally:
        reading.set()
        thread.join()
    return taken_while_read


def test_a_million_rows_of_dicts_wait_for_no_reader(monkeypatch):
    """A pipeline's answer for a million texts: read with the lock let go (about half a
    second of Python calls), so a scrape or a record_outcome caller waits for the fold of
    its columns, not for the read. The call counts once, its rows once."""

    registry = inferwatch.Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry,
                                      classes=_LABELS)
        rows = 1_000_000
        model([{"label": _LABELS[i % 3], "score": 0.5} for i in range(rows)])
        monitor = inferwatch.monitor("m", "1", registry=registry)
        assert drained_with_reads_watched(monkeypatch, monitor, lambda result: True) == \
            [True], "the lock was held while the rows were read"
        state = monitor.state
        assert state.counters["inferwatch_requests_total"][("ok",)] == 1
        sizes = state.histograms["inferwatch_batch_size"][()]
        assert sizes.count == 1 and sizes.sum == rows
        assert sum(state.counters["inferwatch_predicted_class_total"].values()) == rows
    finally:
        registry.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from([*_KINDS, "a table of object labels"]), min_size=1,
                     max_size=3),
       rows=st.lists(st.integers(1, 260), min_size=3, max_size=3),
       seed=st.integers(0, 2**16), task=st.sampled_from(["classification", "regression"]))
def test_a_request_read_apart_is_counted_and_joined_as_in_the_first_hold(
        monkeypatch, kinds, rows, seed, task):
    """The same calls under request ids: the same series, the same rows kept for each id,
    the same outcomes judged (a declared task, and a cache large enough that no entry is
    evicted: one read apart is folded and remembered after its drain's other calls)."""
    pytest.importorskip("polars")
    assume(_one_kind_per_output(kinds, task))
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    rng = np.random.default_rng(seed)
    calls = [_result(kind, count, rng) for kind, count in zip(kinds, rows)]
    apart = _drained(calls, task, True, monkeypatch, cache_bytes=2**22)
    whole = _drained(calls, task, False, monkeypatch, cache_bytes=2**22)
    assert apart[1] == whole[1]
    assert apart[0].keys() == whole[0].keys()
    for key, value in apart[0].items():
        assert value == whole[0][key] or math.isclose(value, whole[0][key], rel_tol=1e-9), key


@contextlib.contextmanager
def _read_held_apart(monkeypatch, request_id: str | None = None):
    """A monitor whose drain, on a thread of its own, reads a call of 500 label dicts apart
    (past a slice of 100 rows) and holds there until `release` is set: yields (monitor,
    release, that drain's thread)."""
    from inferwatch.core.prediction_batch import PredictionBatch

    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    registry = inferwatch.Registry(drain_interval=3600)
    reading, release = threading.Event(), threading.Event()
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry,
                                      classes=_LABELS)
        monitor = inferwatch.monitor("m", "1", registry=registry)
        rows = [{"label": "cat", "score": 0.9}] * 500
        if request_id is None:
            model(rows)
        else:
            model(rows, request_id=request_id)
        read_one = PredictionBatch.read_one

        def held_read(self, result, probabilities):
            reading.set()
            release.wait(30)
            return read_one(self, result, probabilities)

        monkeypatch.setattr(PredictionBatch, "read_one", held_read)
        drain = threading.Thread(target=monitor.drain)
        drain.start()
        assert reading.wait(30)
        yield monitor, release, drain
    finally:
        release.set()
        registry.close()


def test_an_outcome_waits_for_its_prediction_read_apart(monkeypatch):
    """An outcome recorded while another thread's drain reads its huge prediction apart
    (its call taken, its join not yet made) waits for that read, and is judged: never an
    unknown id."""
    from inferwatch.core.monitor_drain import MonitorDrain

    waiting = threading.Event()
    wait_for = MonitorDrain._wait_for_apart_folds

    def watched_wait(self):
        waiting.set()
        return wait_for(self)

    monkeypatch.setattr(MonitorDrain, "_wait_for_apart_folds", watched_wait)
    with _read_held_apart(monkeypatch, request_id="batch-1") as (monitor, release, drain):
        outcome = threading.Thread(target=monitor.record_outcome, args=("batch-1", "cat"))
        outcome.start()
        assert waiting.wait(30), "the outcome's drain did not wait for the read apart"
        release.set()
        drain.join(30)
        outcome.join(30)
        counters = monitor.state.counters
        assert counters["inferwatch_outcomes_total"][("correct",)] == 500
        assert ("unknown_id",) not in counters.get("inferwatch_outcomes_unmatched_total", {})


def test_a_scrape_does_not_wait_for_a_read_apart(monkeypatch):
    """A drain with a budget (a scrape's) returns while another drain reads a huge result
    apart: it shows the call counted, and its rows at the next scrape."""
    with _read_held_apart(monkeypatch) as (monitor, release, drain):
        monitor.drain(budget=0.05)  # returns with the read still held
        counters = monitor.state.counters
        assert counters["inferwatch_requests_total"][("ok",)] == 1
        assert "inferwatch_predicted_class_total" not in counters
        release.set()
        drain.join(30)
        assert monitor.state.counters["inferwatch_predicted_class_total"][("cat",)] == 500


def test_a_first_drain_of_one_huge_result_read_apart_tells_the_task(monkeypatch):
    """A task="auto" model whose first call is a huge result read apart: its task is told
    by that result's fold, as by any first predictions."""
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=registry,
                                      classes=_LABELS)
        model([{"label": "dog", "score": 0.7}] * 300)
        monitor = inferwatch.monitor("m", "1", registry=registry)
        monitor.drain()
        assert monitor.state.info["task"] == "classification"
        assert monitor.state.counters["inferwatch_predicted_class_total"][("dog",)] == 300
    finally:
        registry.close()


def test_a_drain_inside_the_monitor_lock_does_not_wait_for_reads_apart(monkeypatch):
    """A drain reached by a thread that holds the monitor's lock itself returns at once
    while another drain reads apart (that read's fold needs the lock: waiting would hang
    both)."""
    from inferwatch.core.monitor_drain import MonitorDrain

    waited: list = []
    monkeypatch.setattr(MonitorDrain, "_wait_for_apart_folds",
                        lambda self: waited.append(self))
    with _read_held_apart(monkeypatch) as (monitor, release, drain):
        with monitor._lock:
            monitor.drain()
            assert monitor._apart_folds == 1 and not waited
        monitor.drain()  # the same drain outside the lock waits (here: is told to)
        assert waited == [monitor]
        release.set()
        drain.join(30)
        assert monitor._apart_folds == 0
        assert monitor.state.counters["inferwatch_predicted_class_total"][("cat",)] == 500


def test_a_child_forked_during_a_read_apart_does_not_wait_for_it(monkeypatch):
    """A process forked while a thread of its parent reads a huge result apart: that thread
    is not in the child, and a drain there that must see every call folded returns at once
    instead of waiting for it."""
    from inferwatch.core.monitor_drain import MonitorDrain

    if not hasattr(os, "fork"):
        pytest.skip("fork")
    with _read_held_apart(monkeypatch) as (monitor, release, drain):
        assert monitor._apart_folds == 1
        child = os.fork()
        if child == 0:  # the child: no thread reads there
            waited = []
            MonitorDrain._wait_for_apart_folds = lambda self: waited.append(self)
            monitor.drain()
            os._exit(0 if monitor._apart_folds == 0 and not waited else 1)
        _, status = os.waitpid(child, 0)
        release.set()
        drain.join(30)
        assert os.waitstatus_to_exitcode(status) == 0


class _MultiOutputClassifier:
    """scikit-learn's MultiOutputClassifier: one probability matrix per output."""

    classes_ = [np.array([0, 1]), np.array(["a", "b", "c"])]

    def __init__(self, result: list) -> None:
        self.result = result

    def predict_proba(self, x):
        return self.result


def _per_output(matrices: list, request_id: str | None, slice_rows: int, task: str,
                monkeypatch) -> tuple:
    """The series and outcome entries after one predict_proba call of `matrices`, drained
    with slices of `slice_rows` rows, then an outcome per row."""
    with monkeypatch.context() as patched:
        patched.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        scraper = Scraper(drain_interval=3600)
        try:
            kwargs = {} if task == "auto" else {"task": task}
            model = inferwatch.instrument(_MultiOutputClassifier(matrices), name="m",
                                          version="1", registry=scraper.registry, **kwargs)
            monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
            if request_id is None:
                model.predict_proba(None)
            else:
                model.predict_proba(None, request_id=request_id)
            monitor.drain()
            entries = _entries(monitor)
            if request_id is not None:
                truth = [[int(row % 2), "abc"[row % 3]] for row in range(len(matrices[0]))]
                monitor.record_outcome(request_id, truth)
            return _series(scraper), entries
        finally:
            scraper.registry.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.integers(1, 350), seed=st.integers(0, 2**16),
       request_id=st.sampled_from([None, "batch-1"]), missing=st.booleans(),
       task=st.sampled_from(["auto", "classification"]))
def test_per_output_probability_matrices_fold_as_when_read_in_one_hold(
        monkeypatch, rows, seed, request_id, missing, task):
    """A MultiOutputClassifier's predict_proba: sliced past 100 rows on the fast path, read
    apart under a request id, against the same call read whole in the first hold: the
    same series, the same rows kept, the same outcomes judged."""
    rng = np.random.default_rng(seed)
    matrices = [rng.dirichlet(np.ones(2), rows), rng.dirichlet(np.ones(3), rows)]
    if missing:
        matrices[1][rng.integers(0, rows)] = np.nan  # a row without probabilities
    parts = _per_output(matrices, request_id, 100, task, monkeypatch)
    whole = _per_output(matrices, request_id, 10**9, task, monkeypatch)
    assert parts[1] == whole[1]
    assert parts[0].keys() == whole[0].keys()
    for key, value in parts[0].items():
        assert value == whole[0][key] or math.isclose(value, whole[0][key], rel_tol=1e-9), key


def test_per_output_probability_matrices_past_a_slice_are_cut_or_read_apart(monkeypatch):
    """Which way each goes: a matrix per output is cut into slices on the fast path; rows of
    probability dicts (ONNX's ZipMap) are read apart."""
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    matrices = [np.full((250, 2), 0.5), np.full((250, 3), 1 / 3)]
    rest: list = []
    kept, whole = pending_calls.first_slices([matrices], True, rest, {list}, defer=True)
    assert [m.shape for m in kept[0]] == [(100, 2), (100, 3)] and whole == {0: 250}
    assert [[m.shape[0] for m in piece] for piece in rest[0].slices] == [[100, 100], [50, 50]]
    assert rest[0].probabilities is True
    zipmap = [{0: 0.5, 1: 0.5}] * 250
    rest = []
    kept, whole = pending_calls.first_slices([zipmap], True, rest, {list}, defer=True)
    assert kept == [] and whole == {} and rest[0].result is zipmap
