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
from inferwatch.core import drain_folds, huge_records, pending_calls, record_joins
from inferwatch.core.array_rows import ArrayRows, label_lengths, labels_length
from inferwatch.core.outcome_sizes import sizeof

# The series one call of labels or values feeds (its durations aside).
_SERIES = ("inferwatch_requests_total", "inferwatch_batch_size",
           "inferwatch_predicted_class_total", "inferwatch_prediction",
           "inferwatch_invalid_predictions_total", "inferwatch_outcomes_total",
           "inferwatch_outcome_error", "inferwatch_outcomes_unmatched_total")


class _Classifier:
    """A model naming its classes, among them one past the small-integer bound."""

    classes_ = np.array([0, 1, 2, 70_000])

    def predict(self, x):
        return x


class _TextClassifier(_Classifier):
    """A model fit on text labels (scikit-learn's ``classes_`` of strings)."""

    classes_ = np.array(["cat", "dog", "é"])


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
_TEXTS = st.sampled_from(["cat", "dog", "é", "", "bird", "x" * 300]) | st.text(max_size=4)
_VALUES = st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf"), -0.0])


@st.composite
def _batches(draw):
    """Calls of one kind of array (labels of one integer dtype, text or bool labels, or
    floats; rows or (n, 1) columns), some longer than a slice and than the tuple bound,
    some under a request id."""
    kind = draw(st.sampled_from(["integers", "floats", "text", "bools"]))
    dtype = draw(st.sampled_from({"integers": [np.int64, np.int32, np.uint16],
                                  "floats": [np.float64, np.float32], "text": [str],
                                  "bools": [bool]}[kind]))
    cells = {"integers": _LABELS, "floats": _VALUES, "text": _TEXTS,
             "bools": st.booleans()}[kind]
    column = draw(st.booleans())  # each call an (n, 1) column (a Keras model's) or rows
    calls = []
    for number in range(draw(st.integers(1, 4))):
        # Rows drawn from a few values (so that long arrays are drawn as often as short).
        pool = draw(st.lists(cells, min_size=1, max_size=6))
        if dtype is np.uint16:
            pool = [abs(cell) % 2**16 for cell in pool]
        # One row as often as any other count: a service's calls (every call one row)
        # join in a pass of their own.
        rows = draw(st.just(1) | st.integers(1, 260))
        array = np.random.default_rng(draw(st.integers(0, 2**16))).choice(np.array(pool), rows)
        array = array.astype(dtype)
        calls.append((array.reshape(-1, 1) if column else array,
                      draw(st.sampled_from([None, f"r-{number}"]))))
    return calls


def _run(calls, task: str, classifier: bool, cache_bytes: int, outcome):
    text = any(array.dtype.kind == "U" for array, _ in calls)
    model = (_TextClassifier() if text else _Classifier()) if classifier else None
    return judged_after_drain(calls, model, task, cache_bytes, outcome)


def judged_after_drain(calls, model: object | None, task: str, cache_bytes: int,
                       outcome, options: dict | None = None) -> tuple[dict, list]:
    """(The series, the outcome cache's entries) after `calls` ((result, request id or
    None) each) went through `model`'s instrumented ``predict`` (None: a function giving
    its input back; `options` for instrument() besides `task`) under a cache of
    `cache_bytes`, were drained, and each call made under an id was judged by
    ``outcome(result)``."""
    scraper = Scraper(drain_interval=3600)
    try:
        kwargs = {**(options or {}), **({} if task == "auto" else {"task": task})}
        if model is not None:
            call = inferwatch.instrument(model, name="m", version="1",
                                         registry=scraper.registry, **kwargs).predict
        else:
            call = inferwatch.instrument(lambda x: x, name="m", version="1",
                                         registry=scraper.registry, **kwargs)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor.configure(outcome_cache_bytes=cache_bytes)
        make_calls(call, calls)
        monitor.drain()
        entries = _entries(monitor)
        judge_calls(monitor, calls, outcome)
        return _recorded(scraper), entries
    finally:
        scraper.registry.close()


def make_calls(call, calls) -> None:
    """`call` each of `calls`' results, with its request id where it has one."""
    for result, request_id in calls:
        if request_id is None:
            call(result)
        else:
            call(result, request_id=request_id)


def judge_calls(monitor, calls, outcome) -> None:
    """Report ``outcome(result)`` for each of `calls` made under a request id."""
    for result, request_id in calls:
        if request_id is not None:
            monitor.record_outcome(request_id, outcome(result))


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
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 50)

    def outcome(array):  # a label per row, or one for the whole batch
        truth = np.where(np.arange(array.shape[0]) % 3 == 0, array, array[::-1])
        return truth[:1].tolist() if one_label else truth.tolist()

    fast = _run(calls, task, classifier, cache_bytes, outcome)
    with monkeypatch.context() as patched:
        patched.setattr(drain_folds, "_fold_plain_arrays", lambda *args, **kwargs: False)
        general = _run(calls, task, classifier, cache_bytes, outcome)
    _assert_same_samples(fast[0], general[0])
    assert fast[1] == general[1]


def test_a_call_of_nan_beside_a_sliced_batch_keeps_its_batch_size(monkeypatch):
    """A one-row call of NaN is normalised apart from the stacked calls; its batch size
    must stay in call order, which the drain corrects the sliced call's size by (it once
    took the NaN call's 1 for the slice's whole 101, and the slice kept its 100)."""
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    calls = [(np.array([[np.nan]]), "r-0"), (np.zeros((101, 1)), "r-1")]
    fast = _run(calls, "auto", False, 2048, lambda array: array.tolist())
    with monkeypatch.context() as patched:
        patched.setattr(drain_folds, "_fold_plain_arrays", lambda *args, **kwargs: False)
        general = _run(calls, "auto", False, 2048, lambda array: array.tolist())
    _assert_same_samples(fast[0], general[0])
    sizes = {dict(labels)["le"]: value for (name, labels), value in fast[0].items()
             if name == "inferwatch_batch_size_bucket"}
    assert sizes["1.0"] == 1 and sizes["64.0"] == 1 and sizes["128.0"] == 2


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
    assert rows.row_sizes().tolist() == [sizeof(str(v)) for v in values]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_label_lengths_of_unsigned_labels(values):
    array = np.array(values, dtype=np.uint64)
    assert label_lengths(array).tolist() == [len(str(v)) for v in values]
    assert labels_length(array) == sum(len(str(v)) for v in values)


@pytest.mark.parametrize("columns, kind", [
    ((np.array([0.5, -1.0, 3.25]),), {}),
    ((np.array([0.5, 2.0]), np.array([10.0, 20.0]), np.array([1.0, 0.0])), {}),
    ((np.array([3, -12, 70_000]),), {"labels": True}),
    ((np.array([2, -1, 0, 1, 1], dtype=np.int8),), {"names": ["no", "yes", "é"]}),
    ((np.arange(-1, 11) % 11 - 1,), {"names": [f"c{i}" for i in range(10)]}),  # bincount
])
def test_array_rows_read_as_the_tuple_of_their_rows(columns, kind):
    rows = ArrayRows(columns, **kind)
    as_tuple = tuple(rows)
    assert rows == as_tuple and len(rows) == len(as_tuple)
    assert [rows[i] for i in range(len(rows))] == list(as_tuple)
    assert tuple(rows[1:]) == as_tuple[1:]
    assert rows.row_sizes().tolist() == [sizeof(row) for row in as_tuple]
    assert rows.held_bytes() == sum(map(sizeof, as_tuple)) == rows[:].held_bytes()


def _sliced_then_whole(monkeypatch, make_model, call, truth, values: bool) -> list:
    """(samples, cache entries, kinds of the kept rows, kept rows) after `call` on the
    model `make_model` makes, with results sliced by 100 rows (their first rows kept as
    arrays), then read whole (the general path), each followed by the outcome `truth`."""
    recorded = []
    for slice_rows in (100, 10**6):
        monkeypatch.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        scraper = Scraper(drain_interval=3600)
        try:
            model = make_model(scraper.registry)
            monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
            call(model)
            monitor.drain()
            entries = _entries(monitor)
            kinds = {type(entry[1 if values else 0])
                     for entry in monitor.outcomes._pending.values()}
            kept = monitor.outcomes.kept_rows("batch-1")
            monitor.record_outcome("batch-1", truth)
            recorded.append((_recorded(scraper), entries, kinds, kept))
        finally:
            scraper.registry.close()
    return recorded


def _assert_same_samples(sliced: dict, whole: dict) -> None:
    """The same series; a sum to the last few bits (the slices are summed in turn)."""
    assert sliced.keys() == whole.keys()
    for key, value in sliced.items():
        assert value == whole[key] or math.isclose(value, whole[key], rel_tol=1e-9), key


@st.composite
def _float_outputs(draw):
    """A result of one to three float outputs, 101 to 450 rows, some cells NaN or
    infinite, in each container a model returns them in."""
    import pandas as pd

    rows = draw(st.integers(101, 450))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    columns = []
    for _ in range(draw(st.integers(1, 3))):
        column = rng.normal(size=rows).astype(draw(st.sampled_from([np.float64, np.float32])))
        for special in draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=2)):
            column[rng.random(rows) < 0.05] = special
        columns.append(column)
    names = [f"out{i}" for i in range(len(columns))]
    container = draw(st.sampled_from(["dict", "tuple", "list", "DataFrame"]))
    result = pd.DataFrame(dict(zip(names, columns))) if container == "DataFrame" else \
        dict(zip(names, columns)) if container == "dict" else \
        tuple(columns) if container == "tuple" else columns
    return result, rows, len(columns)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drawn=_float_outputs(), task=st.sampled_from(["auto", "regression"]),
       cache_bytes=st.sampled_from([2048, 8192]))
def test_a_huge_result_of_float_outputs_joins_as_whole(monkeypatch, drawn, task,
                                                       cache_bytes):
    """Several float outputs past a slice, under one request id: their first rows wait as
    arrays (a tuple of floats a row, an infinity read as NaN), holding what the result read
    whole holds, and an outcome judges them alike."""
    result, rows, width = drawn
    truth = np.random.default_rng(1).normal(size=(rows, width))
    (sliced, sliced_entries, sliced_kinds, kept), (whole, whole_entries, _, _) = \
        _sliced_then_whole(monkeypatch, lambda registry: inferwatch.instrument(
            lambda x: result, name="m", version="1", task=task,
            outcome_cache_bytes=cache_bytes, registry=registry),
            lambda model: model(None, request_id="batch-1"),
            truth.tolist() if width > 1 else truth[:, 0].tolist(), values=True)
    assert sliced_entries == whole_entries
    _assert_same_samples(sliced, whole)
    # Rows past what the cache keeps: the kept ones waited as arrays.
    assert kept[0] == rows and sliced_kinds == ({ArrayRows} if kept[1] < rows else {tuple})


@st.composite
def _probability_matrices(draw):
    """A predict_proba matrix past a slice: rows of probabilities, with ties, rows just
    outside [0, 1] (clipped onto it), scores far outside it, NaN or infinite rows."""
    rows = draw(st.integers(101, 400))
    width = draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    proba = rng.dirichlet(np.ones(width), size=rows)
    for kind in draw(st.lists(st.sampled_from(["tie", "near", "scores", "nan", "inf"]),
                              max_size=3)):
        chosen = rng.random(rows) < 0.1
        if kind == "tie":
            proba[chosen] = 1.0 / width
        elif kind == "near":  # 1 + 1e-12 beside 1.0: clipped, the first column wins
            proba[chosen, 0] = 1.0
            proba[chosen, 1] = 1.0 + 1e-12
        elif kind == "scores":
            proba[chosen] *= -3.0
        else:
            proba[chosen, rng.integers(0, width)] = np.nan if kind == "nan" else np.inf
    if draw(st.booleans()):
        proba = proba.astype(np.float32)
    names = draw(st.sampled_from([None, "numbers", "text"]))
    classes = None if names is None else np.arange(width) if names == "numbers" else \
        np.array(["no", "maybe-not", "yes", "é"][:width])
    return proba, classes


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drawn=_probability_matrices(), cache_bytes=st.sampled_from([2048, 6000, 2**20]))
def test_a_huge_probability_matrix_joins_its_top_classes_as_whole(monkeypatch, drawn,
                                                                  cache_bytes):
    """predict_proba past a slice under one request id: each kept row's top class waits
    as its column's index and is made text on the outcome, holding what the matrix read
    whole holds (same rows, same bytes), and judged alike."""
    proba, classes = drawn

    class Classifier:
        def predict_proba(self, x):
            return proba

    if classes is not None:
        Classifier.classes_ = classes
    truth = np.asarray(classes if classes is not None else np.arange(proba.shape[1]))[
        np.arange(proba.shape[0]) % proba.shape[1]].tolist()
    (sliced, sliced_entries, kinds, _), (whole, whole_entries, _, _) = _sliced_then_whole(
        monkeypatch, lambda registry: inferwatch.instrument(
            Classifier(), name="m", version="1", outcome_cache_bytes=cache_bytes,
            registry=registry),
        lambda model: model.predict_proba(None, request_id="batch-1"), truth, values=False)
    assert sliced_entries == whole_entries
    assert kinds == {ArrayRows}
    _assert_same_samples(sliced, whole)


def test_a_huge_probability_matrix_is_joined_with_the_lock_let_go(monkeypatch):
    """The top column of each row a cache keeps of a huge predict_proba matrix (580,000
    rows: 10 ms) is read in no hold of the monitor's lock, where a scrape or a
    record_outcome caller would wait for it; the entry and its judgement are the same."""
    proba = np.random.default_rng(7).dirichlet([1.0, 1.0, 1.0], 3 * pending_calls.SLICE_ROWS)

    class Classifier:
        classes_ = np.array(["no", "maybe", "yes"])

        def predict_proba(self, x):
            return proba

    held: list[bool] = []
    read = huge_records.top_classes

    def watched(*args):
        held.append(monitor._lock._is_owned())
        return read(*args)

    monkeypatch.setattr(huge_records, "top_classes", watched)
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(Classifier(), name="m", version="1",
                                      registry=scraper.registry)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        model.predict_proba(None, request_id="batch-1")
        monitor.drain()
        assert held == [False]
        kept = monitor.outcomes.kept_rows("batch-1")
        assert kept[0] == proba.shape[0] and kept[1] > pending_calls.SLICE_ROWS
        truth = Classifier.classes_[proba.argmax(axis=1)].tolist()
        monitor.record_outcome("batch-1", truth)
        assert scraper.value("inferwatch_outcomes_total", result="correct") == kept[1]
        assert scraper.value("inferwatch_batch_size_sum") == proba.shape[0]
    finally:
        scraper.registry.close()
