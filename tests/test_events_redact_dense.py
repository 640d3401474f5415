"""Redaction of plain arrays and of Series labelled by an identifier (docs/events.md).

A numpy array or a list of rows used to be written as bare numbers: ``redact=["inputs.ssn"]``
and ``hash_fields=["inputs.ssn"]`` reached none of its columns, even when the model's
reference profile named them, and ``inputs.0`` worked for a scipy.sparse matrix only. A
pandas Series of a frame indexed by e-mail was written as ``{e-mail: value}``: no path
reached the addresses. Now a dense input whose column names are known is logged as row
records by those names; ``inputs.<column index>`` reaches a column of a plain array; a path
meeting numbers with no names drops (or hashes) the whole field, counted as
``unstructured``; and a Series labelled by a named index is logged as the rows of
``reset_index()``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from event_lines import SECRET, stored_event, written_line
from inferwatch.events import fields, hash_value
from inferwatch.events.dropped import values_dropped_totals
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder

SSN = 78051120
NAMES = ["ssn", "amount"]


def _named(value: object, names: list[str] = NAMES) -> dict:
    """An event whose inputs have known column names, as an instrumented model's with a
    reference profile are handed to the log."""
    return fields.name_dense_columns({"inputs": value}, names)


def _every_byte_written(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


# --- known column names --------------------------------------------------------------------

@pytest.mark.parametrize("inputs", [
    pytest.param(np.array([[SSN, 1.5], [SSN + 1, 2.5]]), id="numpy"),
    pytest.param([[SSN, 1.5], [SSN + 1, 2.5]], id="list-of-rows"),
    pytest.param([(SSN, 1.5), (SSN + 1, 2.5)], id="list-of-tuples"),
    pytest.param([np.array([SSN, 1.5]), np.array([SSN + 1, 2.5])], id="list-of-arrays"),
    pytest.param(sp.csr_matrix([[SSN, 1.5], [SSN + 1, 2.5]]), id="sparse"),
])
def test_a_dense_input_with_known_names_is_redacted_and_hashed_by_column_name(inputs):
    assert stored_event(_named(inputs), redact=["inputs.ssn"])["inputs"] == [
        {"amount": 1.5}, {"amount": 2.5}]
    hashed = stored_event(_named(inputs), hash_fields=["inputs.ssn"])["inputs"]
    assert [row["amount"] for row in hashed] == [1.5, 2.5]
    assert [row["ssn"] for row in hashed] == [
        hash_value(SECRET, row["ssn"]) for row in stored_event(_named(inputs))["inputs"]]
    # A column named by its index still reaches it, as it reaches a sparse matrix's.
    assert stored_event(_named(inputs), redact=["inputs.0"])["inputs"] == [
        {"amount": 1.5}, {"amount": 2.5}]
    # The features' rule reaches the same column in the inputs (and the reverse).
    assert stored_event(_named(inputs), redact=["features.ssn"])["inputs"] == [
        {"amount": 1.5}, {"amount": 2.5}]


def test_one_row_and_one_column_are_read_as_the_input_checks_read_them():
    one_row = stored_event(_named(np.array([SSN, 1.5])), redact=["inputs.ssn"])
    assert one_row["inputs"] == [{"amount": 1.5}]
    one_column = stored_event(_named(np.array([SSN, SSN + 1]), ["ssn"]), hash_fields=["inputs.ssn"])
    assert one_column["inputs"] == [{"ssn": hash_value(SECRET, SSN)},
                                    {"ssn": hash_value(SECRET, SSN + 1)}]


def test_an_input_of_another_width_or_kind_is_logged_as_it_would_be_unwrapped():
    for value in (np.array([[1.0, 2.0, 3.0]]), {"ssn": 1}, pd.DataFrame({"a": [1]}), "text"):
        assert stored_event(_named(value)) == stored_event({"inputs": value})
    # Another width, under a path naming a column, fails closed (see below).
    assert stored_event(_named(np.array([[SSN, 1.0, 2.0]])), redact=["inputs.ssn"])[
        "inputs"] == {"dropped": "unstructured"}


def test_an_array_too_large_for_an_event_keeps_its_truncation_marker():
    big = np.zeros((1000, 2))
    stored = Encoder(Redaction(drop=["inputs.ssn"]), max_event_bytes=4096).encode(
        _named(big), now=1.0)
    assert json.loads(stored.line)["inputs"]["truncated"] == "array"


def test_an_instrumented_model_with_named_reference_never_writes_the_column(
        scraper, tmp_path, make_log):
    """Whether the monitor hands the log the reference's names or not, the SSN column of a
    numpy or list input never reaches the disk: by name, or dropped with the whole field."""
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.integers(10**7, 10**8, 300), rng.normal(size=300)])
    reference = inferwatch.Reference.from_data(
        train, feature_names=NAMES, predictions=rng.dirichlet([2, 2], 300))

    class Classifier:
        def predict_proba(self, X):
            return np.tile([[0.3, 0.7]], (len(X), 1))

    for index, (call, rules) in enumerate([
            (np.array([[SSN, 1.0]]), {"redact": ["inputs.ssn"]}),
            ([[SSN, 1.0]], {"redact": ["inputs.ssn"]}),
            (np.array([[SSN, 1.0]]), {"hash_fields": ["inputs.ssn"], "secret": SECRET})]):
        directory = tmp_path / str(index)
        directory.mkdir()
        log = make_log(directory / "events.jsonl", **rules)
        model = inferwatch.instrument(Classifier(), name=f"m{index}", version="1",
                                      reference=reference, events=log,
                                      registry=scraper.registry)
        model.predict_proba(call)
        scraper.registry.drain()
        assert log.flush(10)
        written = _every_byte_written(directory)
        assert str(SSN).encode() not in written
        assert b'"inputs"' in written


# --- no names: a column index, or the whole field --------------------------------------------

@pytest.mark.parametrize("inputs", [np.array([[SSN, 1.5], [SSN + 1, 2.5]]),
                                    [[SSN, 1.5], [SSN + 1, 2.5]]], ids=["numpy", "list"])
def test_a_column_index_reaches_a_plain_array_as_it_reaches_a_sparse_matrix(inputs):
    dropped = stored_event({"inputs": inputs}, redact=["inputs.0"])["inputs"]
    assert dropped == [{"1": 1.5}, {"1": 2.5}]
    assert dropped == stored_event({"inputs": sp.csr_matrix(inputs)}, redact=["inputs.0"])["inputs"]
    hashed = stored_event({"inputs": inputs}, hash_fields=["inputs.0"])["inputs"]
    assert hashed[1]["0"] == hash_value(SECRET, float(SSN + 1) if isinstance(
        inputs, np.ndarray) else SSN + 1)
    assert hashed[1]["1"] == 2.5
    # Text cells are columns too.
    text = np.array([["078-05-1120", "x"]])
    assert stored_event({"inputs": text}, redact=["inputs.0"])["inputs"] == [{"1": "x"}]


@pytest.mark.parametrize("inputs", [
    pytest.param(np.array([[SSN, 1.0]]), id="numpy"),
    pytest.param([[SSN, 1.0]], id="list-of-rows"),
    pytest.param(np.array([SSN, 1.0]), id="one-row"),
    pytest.param(np.array([[[SSN, 1.0]]]), id="3-d"),
    pytest.param(SSN, id="number"),
    pytest.param([{"amount": 1.0}, [SSN]], id="records-and-a-row"),
])
def test_a_path_meeting_numbers_with_no_names_drops_or_hashes_the_field_whole(inputs):
    before = values_dropped_totals()["unstructured"]
    dropped = stored_event({"inputs": inputs, "request_id": "r"}, redact=["inputs.ssn"])
    assert dropped["inputs"] == {"dropped": "unstructured"}
    assert dropped["request_id"] == "r"
    hashed = stored_event({"inputs": inputs}, hash_fields=["inputs.ssn"])["inputs"]
    assert hashed == hash_value(SECRET, inputs)
    # A path naming a key further down, or by a wildcard under the field, fails closed too.
    for rule in ("inputs.*.ssn", "inputs.*", "inputs.user.ssn", "features.ssn"):
        assert stored_event({"inputs": inputs}, redact=[rule])["inputs"] == {
            "dropped": "unstructured"}, rule
    # A single row is no column: a number alone may as well be a column of them.
    if isinstance(inputs, (int, np.ndarray)) and np.ndim(inputs) != 2:
        assert stored_event({"inputs": inputs}, redact=["inputs.0"])["inputs"] == {
            "dropped": "unstructured"}
    # Counted in the log's values-dropped totals, as text dropped whole is.
    with_log_counts: dict[str, int] = {}
    Redaction(drop=["inputs.ssn"]).apply({"inputs": [[SSN]]}, with_log_counts)
    assert with_log_counts == {"unstructured": 1}
    assert values_dropped_totals()["unstructured"] == before  # Encoder alone counts nothing


def test_the_written_log_counts_a_field_dropped_whole(tmp_path, make_log):
    before = values_dropped_totals()["unstructured"]
    log = make_log(tmp_path / "events.jsonl", redact=["inputs.ssn"])
    log.emit({"ts": 1.0, "inputs": np.array([[SSN, 1.0]])})
    assert log.flush(10)
    assert str(SSN).encode() not in _every_byte_written(tmp_path)
    assert values_dropped_totals()["unstructured"] == before + 1


def test_numbers_met_only_through_a_wildcard_or_outside_the_path_are_kept():
    event = {"inputs": {"ssn": "1", "scores": [0.1, 0.2]}, "probabilities": [[0.3, 0.7]]}
    stored = stored_event(event, redact=["*.ssn", "inputs.ssn"])
    assert stored["inputs"] == {"scores": [0.1, 0.2]}
    assert stored["probabilities"] == [[0.3, 0.7]]
    # Records are named: a path missing from them leaves them alone.
    records = [{"amount": 1.0}, {"amount": 2.0}]
    assert stored_event({"inputs": records}, redact=["inputs.ssn"])["inputs"] == records


# --- a Series labelled by an identifier ------------------------------------------------------

FRAME = pd.DataFrame({"ssn": ["078-05-1120", "219-09-9999"],
                      "email": ["a@example.com", "b@example.com"], "score": [0.1, 0.9]})


def test_a_series_labelled_by_a_named_index_is_stored_as_the_rows_of_reset_index():
    column = FRAME.set_index("email")["score"]
    assert stored_event({"inputs": column})["inputs"] == [
        {"email": "a@example.com", "score": 0.1}, {"email": "b@example.com", "score": 0.9}]
    hashed = stored_event({"inputs": column}, hash_fields=["inputs.email"])["inputs"]
    assert hashed == [{"email": hash_value(SECRET, "a@example.com"), "score": 0.1},
                      {"email": hash_value(SECRET, "b@example.com"), "score": 0.9}]
    by_ssn = stored_event({"inputs": FRAME.set_index("ssn")["score"]}, redact=["inputs.ssn"])
    assert by_ssn["inputs"] == [{"score": 0.1}, {"score": 0.9}]
    # Unnamed, its values are the column 0, as reset_index() names them.
    unnamed = FRAME.set_index("ssn")["score"].rename(None)
    assert stored_event({"inputs": unnamed}, redact=["inputs.ssn"])["inputs"] == [
        {"0": 0.1}, {"0": 0.9}]


def test_a_row_of_a_frame_with_a_named_columns_axis_is_still_redacted_by_its_fields():
    """``iterrows`` labels a row by the frame's columns: named (after ``pivot``), the row's
    index is named too, and its labels are fields a path names."""
    frame = FRAME.set_index("email")
    frame.columns.name = "field"
    _, row = next(frame.iterrows())
    assert row.index.name == "field"
    stored = stored_event({"inputs": row}, redact=["inputs.ssn"])["inputs"]
    assert "078-05-1120" not in json.dumps(stored)
    assert {"field": "score", "a@example.com": 0.1} in stored
    hashed = stored_event({"inputs": row}, hash_fields=["features.ssn"])["inputs"]
    assert {"field": "ssn", "a@example.com": hash_value(SECRET, "078-05-1120")} in hashed


def test_a_series_labelled_by_an_unnamed_index_fails_closed_under_a_path_it_lacks():
    """Its labels may be field names (a row) or the values of an unnamed index (e-mails):
    a path naming neither a label nor the Series drops the whole field."""
    column = FRAME.set_index("email")["score"]
    column.index.name = None
    for rules in ({"redact": ["inputs.email"]}, {"hash_fields": ["inputs.email"]}):
        stored = stored_event({"inputs": column}, **rules)
        assert "@example.com" not in json.dumps(stored)
    assert stored_event({"inputs": column}, redact=["inputs.email"])["inputs"] == {
        "dropped": "unstructured"}
    # A path naming a label or the Series' name reaches its values, as before.
    row = pd.Series({"ssn": "078-05-1120", "age": 41})
    assert stored_event({"inputs": row}, redact=["inputs.ssn"])["inputs"] == {"age": 41}
    assert stored_event({"inputs": column}, redact=["inputs.score"])["inputs"] == {}


@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_an_identifier_index_never_reaches_disk_through_the_log(tmp_path, make_log, fmt):
    log = make_log(tmp_path / f"events.{'db' if fmt == 'sqlite' else 'jsonl'}",
                   hash_fields=["inputs.email"], redact=["inputs.ssn"], secret=SECRET)
    log.emit({"ts": 1.0, "inputs": FRAME.set_index("email")["score"]})
    log.emit({"ts": 2.0, "inputs": FRAME.set_index("ssn")["score"]})
    assert log.flush(10)
    written = _every_byte_written(tmp_path)
    assert b"@example.com" not in written and b"078-05" not in written
    if fmt == "sqlite":
        with sqlite3.connect(tmp_path / "events.db") as db:
            bodies = [json.loads(body) for (body,) in
                      db.execute("SELECT body FROM events ORDER BY ts")]
        assert bodies[0]["inputs"][0]["email"] == hash_value(SECRET, "a@example.com")
        assert bodies[1]["inputs"] == [{"score": 0.1}, {"score": 0.9}]


# --- property ------------------------------------------------------------------------------

_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_", min_size=1, max_size=6)
# A redacted cell holds nine digits that no other cell, key or hash in the line spells.
_secret_cell = st.integers(10**8, 10**9 - 1)
_other_cell = st.one_of(st.integers(0, 999), st.sampled_from([0.25, 0.5, 1.75]),
                        st.sampled_from(["a", "bc"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_redacted_column_of_a_dense_input_never_reaches_the_written_line(data):
    width = data.draw(st.integers(1, 4), label="width")
    names = data.draw(st.lists(_name, min_size=width, max_size=width,
                               unique_by=str.lower), label="names")
    column = data.draw(st.integers(0, width - 1), label="redacted column")
    n_rows = data.draw(st.integers(1, 4), label="rows")
    rows = [[data.draw(_secret_cell) if j == column else data.draw(_other_cell)
             for j in range(width)] for _ in range(n_rows)]
    secrets = [str(row[column]) for row in rows]
    container = data.draw(st.sampled_from(
        ["numpy", "numpy-object", "list", "tuples", "one-row", "sparse"]), label="container")
    numeric = all(not isinstance(cell, str) for row in rows for cell in row)
    if container == "sparse" and not numeric:
        container = "numpy"
    if container == "numpy":
        value: object = np.array(rows) if numeric else np.array(rows, dtype=object)
    elif container == "numpy-object":
        value = np.array(rows, dtype=object)
    elif container == "list":
        value = rows
    elif container == "tuples":
        value = [tuple(row) for row in rows]
    elif container == "one-row":
        value = np.array(rows[0], dtype=object)
        secrets = secrets[:1]
    else:
        value = sp.csr_matrix(np.array(rows, dtype=float))
    known = data.draw(st.booleans(), label="names known")
    by = data.draw(st.sampled_from(["name", "index", "twin"]), label="path by")
    key = str(column) if by == "index" else data.draw(st.sampled_from(
        [names[column], names[column].upper()]))
    path = f"{'features' if by == 'twin' else 'inputs'}.{key}"
    hashed = data.draw(st.booleans(), label="hashed")
    event = {"ts": 1.0, "request_id": "r", "inputs": value}
    if known:
        fields.name_dense_columns(event, names)
    line = written_line(event, **({"hash_fields": [path]} if hashed else {"redact": [path]}))
    for secret in secrets:
        assert secret not in line
    # Only the redacted column is lost where its name or index can be read.
    if known or (by == "index" and container not in ("one-row",)):
        stored = json.loads(line)["inputs"]
        assert isinstance(stored, list) and len(stored) == len(secrets)


def test_a_sparse_matrix_fails_closed_under_a_path_naming_a_column_by_name():
    """Its rows are keyed by column index: no name can reach a column of it."""
    matrix = sp.csr_matrix([[SSN, 1.0]])
    assert stored_event({"inputs": matrix}, redact=["inputs.ssn"])["inputs"] == {
        "dropped": "unstructured"}
    assert stored_event({"inputs": matrix}, hash_fields=["inputs.ssn"])["inputs"] == hash_value(
        SECRET, matrix)
    assert stored_event({"inputs": matrix}, redact=["inputs.0"])["inputs"] == [{"1": 1.0}]
    assert stored_event({"inputs": matrix}, redact=["inputs.*"])["inputs"] == [{}]
