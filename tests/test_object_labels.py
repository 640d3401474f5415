"""Huge columns of text labels held as Python objects (an object array, as scikit-learn's
``predict`` returns for a model fit on a pandas text column; a list of str; a pandas Series of
text, of pandas' string dtype or of categories; an array of bytes): folded in slices and,
under request_id=, joined by their distinct labels, exactly as the general path folds and
joins them row by row; and never one long hold of the monitor's lock."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch.core import huge_records, pending_calls, record_joins
from inferwatch.core.array_rows import ArrayRows
from inferwatch.core.object_labels import text_label_rows
from test_huge_batches import CountingLock
from test_outcomes_array_rows import _assert_same_samples, _entries, _recorded

_TEXTS = ["cat", "dog", "é", "", "bird", "x" * 300, "猫"]
_MISSING = [None, float("nan"), pd.NA]


class _TextClassifier:
    """A model fit on text labels, some of which it declares (``classes_``)."""

    classes_ = np.array(["cat", "dog", "é"], dtype=object)

    def predict(self, x):
        return x


class _IntegerClassifier(_TextClassifier):
    """A model fit on integer labels, one past the small-integer bound."""

    classes_ = np.array([0, 1, 2, 70_000])


@st.composite
def _columns(draw):
    """A column of text labels in one of the containers models return them in, some rows
    missing, longer than the fast path's thresholds (50 rows, slices of 100)."""
    container = draw(st.sampled_from(["objects", "list", "Series", "string Series",
                                      "categories", "bytes", "pandas text",
                                      "string[pyarrow]", "polars", "pyarrow",
                                      *_NULLABLE]))
    if container in _NULLABLE:
        return draw(_nullable_columns(container))
    texts = draw(st.lists(st.sampled_from(_TEXTS) | st.text(max_size=3), min_size=1,
                          max_size=5))
    missing = [] if container == "bytes" else draw(
        st.lists(st.sampled_from([0, 1] if container == "list" else [0, 1, 2]), max_size=2))
    pool = texts + [_MISSING[index] for index in missing]
    rows = draw(st.integers(51, 260))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    cells = [pool[index] for index in rng.integers(0, len(pool), rows)]
    if container == "list":
        return cells
    if container == "bytes":
        return np.array([text.encode() for text in cells])
    if container == "objects":
        column = np.empty(rows, dtype=object)
        column[:] = cells
        return column
    if container == "string Series":
        return pd.Series(cells, dtype="string")
    if container == "categories":
        return pd.Series(cells, dtype="category")
    if container == "pandas text":  # pandas 3's own dtype for a column of text
        return pd.Series(cells)
    if container == "string[pyarrow]":
        return pd.Series(cells, dtype="string[pyarrow]")
    if container in ("polars", "pyarrow"):
        cells = [None if cell is None or cell is pd.NA or cell != cell else cell
                 for cell in cells]  # a null each: neither holds NaN in a text column
        return pl.Series(cells, dtype=pl.String) if container == "polars" else pa.array(cells)
    return pd.Series(cells, dtype=object, name="label")


# Columns of numbers or bools with missing rows, as pandas' masks, polars and pyarrow hold
# them: (family, library).
_NULLABLE = {"Int64": ("integers", "pandas"), "polars integers": ("integers", "polars"),
             "pyarrow integers": ("integers", "pyarrow"), "Float64": ("floats", "pandas"),
             "float64[pyarrow]": ("floats", "pandas"), "polars floats": ("floats", "polars"),
             "pyarrow floats": ("floats", "pyarrow"), "boolean": ("bools", "pandas"),
             "polars bools": ("bools", "polars"), "pyarrow bools": ("bools", "pyarrow")}


@st.composite
def _nullable_columns(draw, container: str):
    """A column of integer class labels (some past the small-integer bound, read as ids),
    of floats (values) or of bools, with missing rows or none."""
    family, library = _NULLABLE[container]
    cells = {"integers": st.integers(-3, 5) | st.sampled_from([70_000, 2**40]),
             "floats": st.floats(-1e6, 1e6), "bools": st.booleans()}[family]
    pool = draw(st.lists(cells, min_size=1, max_size=5))
    pool += [None] * draw(st.integers(0, 2))
    rows = draw(st.integers(51, 260))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    cells = [pool[index] for index in rng.integers(0, len(pool), rows)]
    if library == "pandas":
        dtype = container if container != "Int64" or family != "integers" else "Int64"
        return pd.Series(cells, dtype=dtype)
    if library == "polars":
        return pl.Series(cells, dtype={"integers": pl.Int64, "floats": pl.Float64,
                                       "bools": pl.Boolean}[family])
    return pa.array(cells, type={"integers": pa.int64(), "floats": pa.float64(),
                                 "bools": pa.bool_()}[family])


def _run(column, classifier: bool, cache_bytes: int, request_id: str | None,
         truth: list) -> tuple:
    scraper = Scraper(drain_interval=3600)
    try:
        if classifier:
            integers = any(isinstance(cell, int) for cell in _cells(column))
            model = inferwatch.instrument(_IntegerClassifier() if integers else
                                          _TextClassifier(), name="m", version="1",
                                          registry=scraper.registry).predict
        else:
            model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                          registry=scraper.registry)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor.configure(outcome_cache_bytes=cache_bytes)
        model(column) if request_id is None else model(column, request_id=request_id)
        monitor.drain()
        entries = _entries(monitor)
        kinds = {type(entry[0]) for entry in monitor.outcomes._pending.values()}
        if request_id is not None:
            monitor.record_outcome(request_id, truth)
        return _recorded(scraper), entries, kinds
    finally:
        scraper.registry.close()


def _cells(column) -> list:
    """The column's rows as Python objects (a result's label output's)."""
    if isinstance(column, (dict, pd.DataFrame)):
        column = column["label"]
    if isinstance(column, list):
        return column
    if isinstance(column, pa.Array):
        return column.to_pylist()
    return column.to_list() if isinstance(column, pl.Series) else column.tolist()


def _truth(column) -> list:
    """An outcome per row: most rows' own label, some another row's."""
    cells = _cells(column)
    cells = [cell.decode() if isinstance(cell, bytes) else cell for cell in cells]
    labels = [cell if isinstance(cell, (str, int)) else
              (cell if cell == cell else 0.0) if isinstance(cell, float) else "cat"
              for cell in cells]
    return [label if index % 4 else labels[-1 - index] for index, label in enumerate(labels)]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(column=_columns(), classifier=st.booleans(),
       cache_bytes=st.sampled_from([2048, 6000, 2**20]),
       request_id=st.sampled_from([None, "batch-1"]))
def test_text_objects_fold_and_join_as_the_general_path(monkeypatch, column, classifier,
                                                        cache_bytes, request_id):
    """Sliced by 100 rows with their first rows kept by distinct label, against the same
    column read whole, row by row: the same series, the same rows kept with the same bytes
    and whole count, the same outcomes judged."""
    _assert_as_general_path(monkeypatch, column, classifier, cache_bytes, request_id)


# Mostly missing rows in a small cache: a missing row (None) holds less than any label, so
# more rows fit than labels alone would let; the rows kept must still be the general path's.
_MOSTLY_MISSING = ["cat" if index % 5 == 0 else None for index in range(240)]


@pytest.mark.parametrize("column", [
    pd.Series(_MOSTLY_MISSING, dtype="category"),
    np.array(_MOSTLY_MISSING, dtype=object),
    _MOSTLY_MISSING,
    pd.Series(_MOSTLY_MISSING, dtype="string[pyarrow]"),
    pl.Series(_MOSTLY_MISSING, dtype=pl.String),
    pa.array(_MOSTLY_MISSING),
], ids=["categories", "objects", "list", "string[pyarrow]", "polars", "pyarrow"])
def test_mostly_missing_rows_keep_as_many_rows_as_the_general_path(monkeypatch, column):
    _assert_as_general_path(monkeypatch, column, False, 2048, "batch-1")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cells=st.lists(st.integers(-3, 5) | st.sampled_from([70_000, 2**40]), min_size=1,
                      max_size=4) |
       st.lists(st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf")]),
                min_size=1, max_size=4),
       rows=st.integers(51, 260), seed=st.integers(0, 2**16), classifier=st.booleans(),
       cache_bytes=st.sampled_from([2048, 2**20]),
       request_id=st.sampled_from([None, "batch-1"]))
def test_lists_of_numbers_fold_and_join_as_the_general_path(monkeypatch, cells, rows, seed,
                                                            classifier, cache_bytes,
                                                            request_id):
    """A list of ints or of floats past the thresholds is read as its int64 or float64
    array (sliced, its first rows kept as an array): as the list read whole."""
    column = [cells[index] for index in np.random.default_rng(seed).integers(0, len(cells),
                                                                            rows)]
    _assert_as_general_path(monkeypatch, column, classifier, cache_bytes, request_id)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(column=_columns() | st.sampled_from(["U", "int", "bool"]).flatmap(
           lambda kind: st.integers(51, 260).map(lambda rows: _numpy_labels(kind, rows))),
       container=st.sampled_from(["dict", "DataFrame"]), classifier=st.booleans(),
       cache_bytes=st.sampled_from([2048, 6000, 2**20]))
def test_a_label_output_beside_scores_joins_as_the_general_path(monkeypatch, column,
                                                                container, classifier,
                                                                cache_bytes):
    """``{"label": labels, "score": scores}`` (or such a DataFrame) past the thresholds
    under a request id: joined by its first rows' labels, read at C speed, as the general
    path reads the label output row by row."""
    def result_of(labels):
        cells = _cells(labels)
        scores = np.linspace(0.0, 1.0, len(cells))
        if container == "dict":
            return {"label": labels, "score": scores}
        if isinstance(labels, (pl.Series, pa.Array)):
            labels = cells  # a pandas frame of the same labels
        return pd.DataFrame({"label": labels, "score": scores})

    truth = _truth(column)
    runs = []
    for slice_rows, array_rows in ((100, 50), (10**6, 10**6)):
        monkeypatch.setattr(pending_calls, "SLICE_ROWS", slice_rows)
        monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", array_rows)
        runs.append(_run(result_of(_rebuilt(column)), classifier, cache_bytes, "batch-1",
                         truth))
    (fast, fast_entries, _), (general, general_entries, _) = runs
    _assert_same_samples(fast, general)
    assert fast_entries == general_entries


def _numpy_labels(kind: str, rows: int) -> np.ndarray:
    """A numpy column of text, integer or bool labels."""
    index = np.arange(rows)
    return {"U": np.array(["cat", "dog", "é"])[index % 3], "int": index % 4 - 1,
            "bool": index % 3 == 0}[kind]


def _rebuilt(column):
    """The same column made of new text objects. ``sys.getsizeof`` of a non-ASCII str grows
    once some C code has asked for its UTF-8 form (numpy 1's conversion to a text array
    does), and the examples reuse text: each path sizes text that no earlier run touched."""
    cells = [cell.encode().decode() if isinstance(cell, str) else cell
             for cell in _cells(column)]
    if isinstance(column, list):
        return cells
    if isinstance(column, np.ndarray):
        if column.dtype.kind != "O":
            return column.copy()
        rebuilt = np.empty(len(cells), dtype=object)
        rebuilt[:] = cells
        return rebuilt
    if isinstance(column, pd.Series):
        return pd.Series(cells, dtype=column.dtype, name=column.name)
    return pl.Series(cells, dtype=column.dtype) if isinstance(column, pl.Series) else \
        pa.array(cells, type=column.type)


def _assert_as_general_path(monkeypatch, column, classifier: bool, cache_bytes: int,
                            request_id: str | None) -> None:
    truth = _truth(column)
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 50)
    fast = _run(_rebuilt(column), classifier, cache_bytes, request_id, truth)
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 10**6)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 10**6)
    general = _run(_rebuilt(column), classifier, cache_bytes, request_id, truth)
    _assert_same_samples(fast[0], general[0])
    assert fast[1] == general[1]
    cells = _cells(column)
    longest = max((len(cell) for cell in cells if isinstance(cell, (str, bytes))), default=0)
    # A list holding NaN is no column of text (to_array reads it as it reads any list).
    text_list = not isinstance(column, list) or all(isinstance(cell, (str, type(None)))
                                                     for cell in column)
    if request_id is not None and fast[1][request_id][0] is not None and longest <= 256 \
            and text_list:
        assert fast[2] == {ArrayRows}  # waited as label indices, made text on the outcome


@pytest.mark.parametrize("labels", [
    np.array(["cat", 1], dtype=object),  # a number: no text column
    np.array([None, float("nan")], dtype=object),  # no label at all: nothing to join
    ["cat", "dog", ["a"]],  # unhashable
])
def test_what_is_not_text_labels_is_left_to_the_general_path(labels):
    assert text_label_rows(labels, lambda least: 10) is None


def test_kept_rows_hold_only_the_labels_they_use():
    """The rows past the cap are never read: their labels are not kept alive by the entry."""
    labels = np.array(["cat", "dog", None] * 10 + ["wolf"] * 10, dtype=object)
    rows = text_label_rows(labels, lambda least: 30)
    assert len(rows) == 30 and set(rows._names) == {"cat", "dog"}
    assert tuple(rows) == tuple(labels[:30])


@pytest.mark.parametrize("make", [
    lambda labels: labels.astype(object),
    lambda labels: labels.tolist(),
    lambda labels: pd.Series(labels.astype(object)),
    lambda labels: pd.Series(labels, dtype="category"),
    lambda labels: labels.astype("S"),
    lambda labels: pd.Series(labels.tolist()),
    lambda labels: pl.Series(labels),
    lambda labels: pa.chunked_array([labels[:len(labels) // 2], labels[len(labels) // 2:]]),
    lambda labels: labels,
], ids=["objects", "list", "Series", "categories", "bytes", "pandas text", "polars",
        "pyarrow", "numpy text"])
@pytest.mark.parametrize("request_id", [None, "batch-1"])
def test_a_huge_text_column_is_folded_a_slice_per_hold(make, request_id):
    """Four slices of labels: the drain holds the lock once per slice, never once for the
    whole batch: on the fast path the first slice comes with the call; under request_id the
    call is counted in a hold of its own, and the rows are read (are they text labels?) and
    joined with the lock let go, then wait by label."""
    labels = np.array(["cat", "dog", "bird"])[np.arange(3 * pending_calls.SLICE_ROWS + 7) % 3]
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                      registry=scraper.registry)
        column = make(labels)
        model(column) if request_id is None else model(column, request_id=request_id)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        monitor._lock = lock = CountingLock()
        monitor.drain()
        slices = math.ceil(labels.size / pending_calls.SLICE_ROWS)
        assert lock.entered == (slices if request_id is None else 1 + slices)
        assert scraper.value("inferwatch_batch_size_sum") == labels.size
        assert scraper.value("inferwatch_batch_size_count") == 1
        if request_id is not None:
            classes = monitor.outcomes._pending[request_id][0]
            assert classes.__class__ is ArrayRows and classes[:3] == ("cat", "dog", "bird")
            kept = monitor.outcomes.kept_rows(request_id)[1]
            monitor.record_outcome(request_id, labels.tolist())
            # Four slices of labels fit under the outcome's byte bound, so every row is kept
            # and judged (a table past the bound is cut: test_outcomes_huge_tables).
            assert kept == labels.size
            assert scraper.value("inferwatch_outcomes_total", result="correct") == kept
    finally:
        scraper.registry.close()


@pytest.mark.parametrize("make, reader", [
    (lambda labels: labels.astype(object), "text_label_rows"),
    (lambda labels: pd.Series(labels.tolist()), "arrow_label_rows"),
    (lambda labels: pd.Series(labels, dtype="category"), "category_label_rows"),
    (lambda labels: pl.Series(labels), "arrow_label_rows"),
    (lambda labels: pa.array(labels), "arrow_label_rows"),
    (lambda labels: labels, "huge_records.text_array_rows"),
], ids=["objects", "pandas text", "categories", "polars", "pyarrow", "numpy text"])
def test_a_huge_column_is_read_for_its_join_with_the_lock_let_go(monkeypatch, make, reader):
    """Telling whether a column holds labels alone reads every row (20 ms for two million
    objects), and so does sizing the rows its outcome keeps (numpy text: 20 ms for 580,000
    rows): under request_id that read, and the join made of it, run with no hold of the
    monitor's lock, in which a scrape or a record_outcome caller would wait."""
    labels = np.array(["cat", "dog", "bird"])[np.arange(3 * pending_calls.SLICE_ROWS) % 3]
    held: list[bool] = []
    scraper = Scraper(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda x: x, name="m", version="1",
                                      registry=scraper.registry)
        monitor = inferwatch.monitor("m", "1", registry=scraper.registry)
        module, name = (huge_records, reader.split(".")[1]) if "." in reader else \
            (record_joins, reader)
        read = getattr(module, name)

        def watched(*args):
            held.append(monitor._lock._is_owned())
            return read(*args)

        monkeypatch.setattr(module, name, watched)
        model(make(labels), request_id="batch-1")
        monitor.drain()
        assert held == [False]
        assert monitor.outcomes._pending["batch-1"][0][:3] == ("cat", "dog", "bird")
        kept = monitor.outcomes.kept_rows("batch-1")[1]
        monitor.record_outcome("batch-1", labels.tolist())
        assert scraper.value("inferwatch_outcomes_total", result="correct") == kept > 0
        assert scraper.value("inferwatch_batch_size_sum") == labels.size
    finally:
        scraper.registry.close()


@pytest.mark.parametrize("odd", [7, ["a"], "x" * 300], ids=["number", "unhashable",
                                                              "long text"])
@pytest.mark.parametrize("request_id", [None, "batch-1"])
def test_objects_that_are_not_text_labels_alone_fold_as_the_general_path(monkeypatch, odd,
                                                                          request_id):
    """A column read with the lock let go that turns out to hold something besides text
    labels (a number, a list, a label longer than 256 characters) is read whole there, as
    the general path reads it."""
    column = np.empty(240, dtype=object)
    column[:] = [odd if index == 130 else ("cat", "dog", None)[index % 3]
                 for index in range(240)]
    truth = _truth(column)
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 100)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 50)
    fast = _run(column.copy(), False, 2**20, request_id, truth)
    monkeypatch.setattr(pending_calls, "SLICE_ROWS", 10**6)
    monkeypatch.setattr(record_joins, "ARRAY_ROWS_FROM", 10**6)
    general = _run(column.copy(), False, 2**20, request_id, truth)
    _assert_same_samples(fast[0], general[0])
    assert fast[1] == general[1]
    if request_id is not None and not isinstance(odd, list):
        # Joined by its labels, as the general path joins it (a list among them: no join).
        assert fast[1][request_id][0] is not None
