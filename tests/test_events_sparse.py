"""scipy.sparse inputs in the event log: each row's non-zero entries by column, never dense.

Every test reads what the real EventLog wrote (JSON lines, and SQLite where both apply).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.events import EventLog, hash_value
from inferwatch.events.dropped import values_dropped_totals
from inferwatch.events.jsonl import event_files

SINKS = ["events.jsonl", "events.db"]
SECRET = b"s3cret-key-for-tests-0123456789"
FORMATS = ["csr", "csc", "coo", "bsr", "lil", "dok", "dia"]
# A row of 4 columns and its logged form: the non-zero entries, by column index.
ROW = [[0.0, 1.5, 0.0, 2.0]]
ROW_LOGGED = {"1": 1.5, "3": 2.0}
BATCH = [[0.0, 1.5, 0.0, 2.0],
         [0.0, 0.0, 0.0, 0.0],
         [3.0, 0.0, -4.0, 0.0]]
BATCH_LOGGED = [{"1": 1.5, "3": 2.0}, {}, {"0": 3.0, "2": -4.0}]
# Wider than any dense array could be: a densified copy of one row would need 8 TB.
HUGE_WIDTH = 10 ** 12


def read_events(path: Path) -> list[dict]:
    if path.suffix == ".db":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return [json.loads(body) for (body,) in conn.execute(
                "SELECT body FROM events ORDER BY id")]
    return [json.loads(line) for file in event_files(path)
            for line in file.read_text().splitlines()]


def by_request(path: Path) -> dict[str, dict]:
    return {event["request_id"]: event for event in read_events(path)}


def sparse(rows: list[list[float]], fmt: str, kind: str = "matrix") -> object:
    """`rows` as a scipy.sparse matrix (``kind="matrix"``) or array of format `fmt`."""
    return getattr(sp, f"{fmt}_{kind}")(np.array(rows))


def wide_row(columns: list[int]) -> sp.csr_matrix:
    """One row of HUGE_WIDTH columns holding 1.0, 2.0, ... at `columns`."""
    data = np.arange(1.0, len(columns) + 1.0)
    return sp.csr_matrix((data, np.array(columns, dtype=np.int64),
                          np.array([0, len(columns)], dtype=np.int64)), shape=(1, HUGE_WIDTH))


class Model:
    """A classifier whose predict takes what a TfidfVectorizer or OneHotEncoder gives."""

    def predict(self, X):
        return np.zeros(X.shape[0])


@pytest.fixture
def instrumented(scraper, tmp_path):
    """An instrumented Model logging to `tmp_path / name`, and a reader of what it wrote."""
    logs: list[EventLog] = []

    def make(name: str):
        path = tmp_path / name
        model = inferwatch.instrument(Model(), name="tfidf", version="1", events=str(path),
                                      registry=scraper.registry)
        log = inferwatch.monitor("tfidf", "1", registry=scraper.registry).events
        logs.append(log)

        def written() -> dict[str, dict]:
            scraper.registry.drain()
            assert log.flush(10)
            return by_request(path)

        return model, written

    yield make
    for log in logs:
        log.close()


@pytest.mark.parametrize("sink", SINKS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_one_sparse_row_is_logged_as_its_non_zero_entries(instrumented, sink, kind, fmt):
    model, written = instrumented(sink)
    model.predict(sparse(ROW, fmt, kind), request_id="r-1")
    assert written()["r-1"]["inputs"] == [ROW_LOGGED]


@pytest.mark.parametrize("sink", SINKS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_sparse_batch_logs_one_mapping_per_row_in_row_order(instrumented, sink, kind, fmt):
    model, written = instrumented(sink)
    model.predict(sparse(BATCH, fmt, kind), request_id="r-1")
    assert written()["r-1"]["inputs"] == BATCH_LOGGED


@pytest.mark.parametrize("sink", SINKS)
def test_sparse_rows_line_up_with_the_rows_of_the_same_batch_given_dense(instrumented, sink):
    model, written = instrumented(sink)
    dense = np.random.default_rng(7).random((6, 9)) * (np.arange(54).reshape(6, 9) % 4 == 0)
    model.predict(dense, request_id="dense")
    model.predict(sp.csr_matrix(dense), request_id="sparse")
    events = written()
    dense_rows, sparse_rows = events["dense"]["inputs"], events["sparse"]["inputs"]
    assert len(sparse_rows) == len(dense_rows) == 6
    for dense_row, sparse_row in zip(dense_rows, sparse_rows):
        assert sparse_row == {str(j): v for j, v in enumerate(dense_row) if v != 0}


@pytest.mark.parametrize("sink", SINKS)
def test_empty_rows_and_an_all_zero_matrix_log_empty_mappings(instrumented, sink):
    model, written = instrumented(sink)
    model.predict(sp.csr_matrix((3, 5)), request_id="zeros")
    model.predict(sp.csr_matrix([[0.0, 0.0], [0.0, 7.0], [0.0, 0.0]]), request_id="middle")
    events = written()
    assert events["zeros"]["inputs"] == [{}, {}, {}]
    assert events["middle"]["inputs"] == [{}, {"1": 7.0}, {}]


@pytest.mark.parametrize("sink", SINKS)
def test_explicit_zeros_are_left_out_and_duplicates_summed_without_changing_the_input(
        instrumented, sink):
    model, written = instrumented(sink)
    # Row 0 stores an explicit zero at column 0 and column 2 twice (1.0 + 0.5); row 1 stores
    # column 1 twice, cancelling to zero.
    matrix = sp.csr_matrix((np.array([0.0, 1.0, 0.5, 2.0, -2.0]),
                            np.array([0, 2, 2, 1, 1]), np.array([0, 3, 5])), shape=(2, 3))
    stored = (matrix.data.copy(), matrix.indices.copy(), matrix.indptr.copy())
    model.predict(matrix, request_id="r-1")
    coo = sp.coo_array((np.array([0.0, 4.0]), (np.array([0, 0]), np.array([1, 3]))),
                       shape=(1, 4))
    model.predict(coo, request_id="r-2")
    events = written()
    assert events["r-1"]["inputs"] == [{"2": 1.5}, {}]
    assert events["r-2"]["inputs"] == [{"3": 4.0}]
    for before, after in zip(stored, (matrix.data, matrix.indices, matrix.indptr)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("sink", SINKS)
def test_integer_and_boolean_entries_keep_their_json_type(instrumented, sink):
    model, written = instrumented(sink)
    model.predict(sp.csr_matrix(np.array([[0, 3, 0, -1]], dtype=np.int64)), request_id="int")
    model.predict(sp.csr_matrix(np.array([[False, True]])), request_id="bool")
    events = written()
    assert events["int"]["inputs"] == [{"1": 3, "3": -1}]
    assert events["bool"]["inputs"] == [{"1": True}]


@pytest.mark.parametrize("sink", SINKS)
def test_a_wide_row_is_logged_by_column_without_being_made_dense(instrumented, sink):
    model, written = instrumented(sink)
    model.predict(wide_row([0, 5, HUGE_WIDTH - 1]), request_id="r-1")
    assert written()["r-1"]["inputs"] == [{"0": 1.0, "5": 2.0, str(HUGE_WIDTH - 1): 3.0}]


@pytest.mark.parametrize("sink", SINKS)
def test_a_row_with_more_entries_than_the_cap_allows_becomes_a_marker(make_log, tmp_path,
                                                                      sink):
    path = tmp_path / sink
    log = make_log(path, max_event_bytes=4096)
    crowded = wide_row(list(range(0, HUGE_WIDTH, HUGE_WIDTH // 1000)))
    log.emit({"request_id": "one-row", "inputs": crowded})
    batch = sp.vstack([wide_row([7]), crowded], format="csr")
    log.emit({"request_id": "in-a-batch", "inputs": batch})
    log.emit({"request_id": "fits", "inputs": wide_row([7])})
    assert log.flush(10)
    events = by_request(path)
    assert events["one-row"]["inputs"] == {"truncated": "sparse", "nnz": 1000,
                                           "shape": [1, HUGE_WIDTH], "dtype": "float64"}
    assert events["in-a-batch"]["inputs"] == {"truncated": "sparse", "nnz": 1001,
                                              "shape": [2, HUGE_WIDTH], "dtype": "float64"}
    assert events["fits"]["inputs"] == [{"7": 1.0}]
    assert all(len(json.dumps(e, separators=(",", ":"))) <= 4096 for e in events.values())


@pytest.mark.parametrize("sink", SINKS)
def test_redaction_rules_name_a_column_of_every_row(make_log, tmp_path, sink):
    path = tmp_path / sink
    log = make_log(path, redact=["inputs.3"], hash_fields=["inputs.1"], secret=SECRET)
    log.emit({"request_id": "r-1", "inputs": sparse(BATCH, "csr")})
    assert log.flush(10)
    (event,) = read_events(path)
    assert event["inputs"] == [{"1": hash_value(SECRET, 1.5)}, {},
                               {"0": 3.0, "2": -4.0}]


@pytest.mark.parametrize("sink", SINKS)
def test_sparse_inputs_and_features_of_a_request_are_logged(scraper, make_log, tmp_path, sink):
    path = tmp_path / sink
    log = make_log(path)
    mon = inferwatch.monitor("tfidf", "1", registry=scraper.registry).configure(events=log)
    with mon.request(request_id="r-1") as r:
        r.inputs(sparse(ROW, "coo", "array"))
        r.features(sparse(BATCH, "csc"))
        r.prediction([0, 1, 0])
    mon.drain()
    assert log.flush(10)
    event = by_request(path)["r-1"]
    assert event["inputs"] == [ROW_LOGGED]
    assert event["features"] == BATCH_LOGGED


@pytest.mark.parametrize("sink", SINKS)
def test_a_one_dimensional_sparse_array_is_one_mapping(make_log, tmp_path, sink):
    path = tmp_path / sink
    log = make_log(path)
    log.emit({"request_id": "r-1", "inputs": sp.coo_array(np.array([0.0, 1.5, 0.0, 2.0]))})
    assert log.flush(10)
    assert by_request(path)["r-1"]["inputs"] == ROW_LOGGED


def test_a_sparse_matrix_that_fails_to_convert_is_dropped_and_counted(make_log, tmp_path):
    class Broken(sp.csr_matrix):
        def tocsr(self, copy=False):
            raise RuntimeError("corrupt matrix")

    path = tmp_path / "events.jsonl"
    log = make_log(path)
    before = values_dropped_totals()["conversion_error"]
    log.emit({"request_id": "r-1", "inputs": Broken(np.array(ROW))})
    assert log.flush(10)
    assert by_request(path)["r-1"]["inputs"] == {
        "dropped": "conversion_error", "type": f"{__name__}.{Broken.__qualname__}"}
    assert values_dropped_totals()["conversion_error"] == before + 1


def test_a_sparse_array_of_more_than_two_dimensions_stays_a_counted_drop(make_log, tmp_path):
    # Unchanged behaviour, kept as a guard: an n-D sparse array has no rows to log.
    path = tmp_path / "events.jsonl"
    log = make_log(path)
    before = values_dropped_totals()["unsupported_type"]
    cube = sp.coo_array(np.arange(8.0).reshape(2, 2, 2))
    log.emit({"request_id": "r-1", "inputs": cube})
    assert log.flush(10)
    assert by_request(path)["r-1"]["inputs"] == {
        "dropped": "unsupported_type", "type": "scipy.sparse._coo.coo_array"}
    assert values_dropped_totals()["unsupported_type"] == before + 1


@st.composite
def sparse_matrices(draw) -> tuple[object, np.ndarray]:
    """A small sparse matrix of any format, with explicit zeros and duplicate entries
    (halves and small ints, so sums are exact), and the dense rows it stands for."""
    rows, columns = draw(st.integers(1, 5)), draw(st.integers(1, 8))
    entries = draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1),
                                      st.integers(-4, 4)), max_size=3 * rows * columns))
    dtype = draw(st.sampled_from([np.float64, np.int64]))
    scale = 0.5 if dtype is np.float64 else 1
    data = np.array([value * scale for _, _, value in entries], dtype=dtype)
    coordinates = (np.array([r for r, _, _ in entries], dtype=np.int64),
                   np.array([c for _, c, _ in entries], dtype=np.int64))
    kind = draw(st.sampled_from(["matrix", "array"]))
    coo = getattr(sp, f"coo_{kind}")((data, coordinates), shape=(rows, columns))
    return coo.asformat(draw(st.sampled_from(FORMATS))), coo.toarray()


@given(sparse_matrices())
@settings(max_examples=60, deadline=None)
def test_each_logged_row_is_the_rows_non_zero_entries(case):
    matrix, dense = case
    directory = Path(tempfile.mkdtemp())
    try:
        log = EventLog(directory / "events.jsonl")
        log.emit({"request_id": "r-1", "inputs": matrix})
        log.close()
        (event,) = read_events(directory / "events.jsonl")
        assert event["inputs"] == [{str(j): value for j, value in enumerate(row.tolist())
                                    if value != 0} for row in dense]
    finally:
        shutil.rmtree(directory)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's own on making the test tensors
@pytest.mark.parametrize("layout", ["coo", "csr", "csc", "coo uncoalesced"])
@settings(max_examples=25, deadline=None)
@given(dense=st.lists(st.lists(st.sampled_from([0.0, 0.0, 1.5, -2.0, 3.25]), min_size=3,
                               max_size=3), min_size=1, max_size=5))
def test_a_sparse_torch_tensor_is_logged_as_the_scipy_matrix_of_its_rows(tmp_path_factory,
                                                                         layout, dense):
    """A sparse tensor's whole event was dropped as ``conversion_error`` (COO) or its inputs
    (CSR): it is now logged by column, as the same rows in a scipy.sparse matrix are."""
    torch = pytest.importorskip("torch")
    from inferwatch.core.registry import Registry

    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(Model(), name="tfidf", version="1", events=str(path),
                                  registry=registry)
    tensor = torch.tensor(dense)
    if layout == "coo uncoalesced":  # one entry given twice, summed as scipy sums it
        indices = torch.tensor([[0, 0], [1, 1]])
        tensor = torch.sparse_coo_tensor(indices, torch.tensor([1.0, 2.0]), (1, 3))
        dense = [[0.0, 3.0, 0.0]]
    else:
        tensor = {"coo": tensor.to_sparse, "csr": tensor.to_sparse_csr,
                  "csc": tensor.to_sparse_csc}[layout]()
    before = tensor.clone() if tensor.is_sparse else None
    model.predict(tensor, request_id="tensor")
    model.predict(sp.csr_matrix(np.array(dense)), request_id="scipy")
    registry.drain()
    log = inferwatch.monitor("tfidf", "1", registry=registry).events
    assert log.flush(10)
    events = by_request(path)
    log.close()
    registry.close()
    assert events["tensor"]["inputs"] == events["scipy"]["inputs"]
    if before is not None:  # the caller's tensor is read, never coalesced in place
        assert tensor.is_coalesced() == before.is_coalesced()
