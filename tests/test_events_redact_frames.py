"""Redaction of frames without field names, feeds, pivots, renamed rows, split bodies, and
error text (docs/events.md, docs/security.md).

Values named by ``redact=`` / ``hash_fields=`` used to reach the log in clear when the input
was ``pd.DataFrame(X)`` or ``pl.DataFrame(X)`` (columns ``0, 1`` / ``column_0, column_1``), a
dict holding the matrix (``{"input": X}``), a frame whose columns axis is named (a pivot of
e-mails), a row of ``df.itertuples()`` whose field pandas renamed (``_1``), or a body in the
pandas / MLflow "split" form; and an error given as text was stored whole as the error's type.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from event_lines import SECRET, stored_event, written_line
from inferwatch.events import EventLog, fields, hash_value
from inferwatch.events.sinks import Encoder

SSN = 78051120
NAMES = ["ssn", "amount"]


def _named(value: object, names: list[str] = NAMES, field: str = "inputs") -> dict:
    """An event whose inputs have known column names, as an instrumented model's with a
    reference profile are handed to the log."""
    return fields.name_dense_columns({field: value}, names)


def _every_byte_written(directory: Path) -> bytes:
    """All the log's files, the SQLite write-ahead log included: nothing may hide in them."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


def _log_path(directory: Path, fmt: str) -> Path:
    return directory / ("events.db" if fmt == "sqlite" else "events.jsonl")


# --- frames with default column labels -----------------------------------------------------

DEFAULT_FRAMES = [
    pytest.param(lambda rows: pd.DataFrame(np.array(rows)), id="pandas"),
    pytest.param(lambda rows: pd.DataFrame(rows), id="pandas-rows"),
    pytest.param(lambda rows: pl.DataFrame(np.array(rows)), id="polars"),
    pytest.param(lambda rows: pl.DataFrame(rows, orient="row"), id="polars-rows"),
]


@pytest.mark.parametrize("frame", DEFAULT_FRAMES)
def test_a_default_labelled_frame_takes_the_reference_names(frame):
    value = frame([[SSN, 0.5], [SSN + 1, 2.5]])
    assert stored_event(_named(value), redact=["inputs.ssn"])["inputs"] == [
        {"amount": 0.5}, {"amount": 2.5}]
    hashed = stored_event(_named(value), hash_fields=["inputs.ssn"])["inputs"]
    assert [row["amount"] for row in hashed] == [0.5, 2.5]
    clear = stored_event(_named(value))["inputs"]
    assert [row["ssn"] for row in hashed] == [hash_value(SECRET, row["ssn"]) for row in clear]
    # As for a plain array, a column index reaches the column of that name.
    assert stored_event(_named(value), redact=["inputs.0"])["inputs"] == [
        {"amount": 0.5}, {"amount": 2.5}]


@pytest.mark.parametrize("frame", DEFAULT_FRAMES)
def test_a_default_labelled_frame_without_names_fails_closed(frame):
    value = frame([[SSN, 0.5]])
    for rule in ("inputs.ssn", "features.ssn", "inputs.user.ssn"):
        assert stored_event({"inputs": value}, redact=[rule])["inputs"] == {
            "dropped": "unstructured"}, rule
    assert stored_event({"inputs": value}, hash_fields=["inputs.ssn"])["inputs"].startswith(
        "hmac-sha256:")
    # Its columns are known by index, as a sparse matrix's are.
    assert stored_event({"inputs": value}, redact=["inputs.0"])["inputs"] == [{"1": 0.5}]


def test_a_frame_of_another_width_or_with_its_own_names_keeps_its_labels():
    wide = pd.DataFrame(np.array([[SSN, 0.5, 1.0]]))
    assert stored_event(_named(wide), redact=["inputs.ssn"])["inputs"] == \
        {"dropped": "unstructured"}
    own = pd.DataFrame({"ssn": [SSN], "amount": [0.5]})
    assert stored_event(_named(own), redact=["inputs.ssn"])["inputs"] == [{"amount": 0.5}]
    assert stored_event(_named(own)) == stored_event({"inputs": own})


# --- a feed: a mapping holding the matrix --------------------------------------------------

@pytest.mark.parametrize("field", ["inputs", "features"])
@pytest.mark.parametrize("matrix", [
    pytest.param(np.array([[SSN, 0.5]]), id="numpy"),
    pytest.param([[SSN, 0.5]], id="rows"),
    pytest.param(pd.DataFrame(np.array([[SSN, 0.5]])), id="pandas"),
])
def test_a_one_entry_feed_holding_the_matrix_takes_the_reference_names(field, matrix):
    stored = stored_event(_named({"input": matrix}, field=field), redact=["inputs.ssn"])
    assert stored[field] == {"input": [{"amount": 0.5}]}
    hashed = stored_event(_named({"input": matrix}, field=field), hash_fields=["features.ssn"])
    assert hashed[field]["input"][0]["ssn"] == hash_value(
        SECRET, stored_event(_named({"input": matrix}, field=field))[field]["input"][0]["ssn"])


def test_a_feed_without_names_fails_closed_where_the_path_names_no_key_of_it():
    for feed in ({"input": np.array([[SSN, 0.5]])}, {"a": [[SSN]], "b": [[0.5]]},
                 {"input": pd.DataFrame(np.array([[SSN, 0.5]]))},
                 {"input": pl.DataFrame(np.array([[SSN, 0.5]]))}):
        stored = stored_event({"inputs": feed}, redact=["inputs.ssn"])["inputs"]
        assert str(SSN) not in json.dumps(stored)
        assert set(stored) == set(feed)
        assert all(value == {"dropped": "unstructured"} for value in stored.values())
        hashed = stored_event({"inputs": feed}, hash_fields=["inputs.ssn"])["inputs"]
        assert all(value.startswith("hmac-sha256:") for value in hashed.values())


def test_named_values_of_a_mapping_are_left_alone():
    """Columns by name, a vector under a name, and a mapping with the named key are fields
    the path either names or does not: nothing is dropped for them."""
    columns = {"age": [30, 40], "income": [1.5, 2.5]}
    assert stored_event({"inputs": columns}, redact=["inputs.ssn"])["inputs"] == columns
    assert stored_event({"inputs": {"ssn": [[SSN]], "x": [[1]]}}, redact=["inputs.ssn"])[
        "inputs"] == {"x": [[1]]}
    # A one-entry mapping keyed by a reference name is a column, not a feed.
    assert stored_event(_named({"ssn": [SSN, SSN + 1]}), redact=["inputs.ssn"])["inputs"] == {}
    # The event's own fields are not a feed: a path naming a field it lacks drops nothing.
    event = {"prediction": [[0.3, 0.7]], "inputs": {"amount": 1.0}}
    assert stored_event(event, redact=["features.ssn", "ssn"])["prediction"] == [[0.3, 0.7]]


# --- a frame whose columns axis is named -----------------------------------------------------

LONG = pd.DataFrame({"day": ["mon", "mon"], "email": ["jane@example.org", "joe@example.org"],
                     "spend": [1.0, 2.0]})
PIVOTS = [
    pytest.param(lambda: LONG.pivot(index="day", columns="email", values="spend"), id="pivot"),
    pytest.param(lambda: LONG.set_index(["day", "email"])["spend"].unstack(), id="unstack"),
    pytest.param(lambda: pd.crosstab(LONG["day"], LONG["email"]), id="crosstab"),
    pytest.param(lambda: LONG.pivot_table(index="day", columns="email", values=["spend"]),
                 id="pivot-table-multiindex"),
]


@pytest.mark.parametrize("make", PIVOTS)
def test_a_frame_whose_columns_axis_a_path_names_is_dropped_or_hashed_whole(make):
    wide = make()
    assert stored_event({"inputs": wide}, redact=["inputs.email"])["inputs"] == {
        "dropped": "unstructured"}
    hashed = stored_event({"inputs": wide}, hash_fields=["features.email"])["inputs"]
    assert hashed == hash_value(SECRET, wide)
    assert "example.org" in json.dumps(stored_event({"inputs": wide}))  # no rule: as before


def test_a_named_columns_axis_no_path_names_is_redacted_by_its_labels():
    wide = LONG.pivot(index="day", columns="email", values="spend")
    assert stored_event({"inputs": wide}, redact=["inputs.jane@example.org"])["inputs"] == [
        {"joe@example.org": 2.0}]
    fields_frame = pd.DataFrame({"ssn": ["078-05-1120"], "age": [41]}).rename_axis(
        columns="field")
    assert stored_event({"inputs": fields_frame}, redact=["inputs.ssn"])["inputs"] == [{"age": 41}]


# --- a row renamed by itertuples -------------------------------------------------------------

def test_a_namedtuple_with_renamed_fields_fails_closed():
    frame = pd.DataFrame({"e-mail": ["joe@example.org"], "amount": [1.5]})
    row = next(frame.itertuples())
    assert row._fields == ("Index", "_1", "amount")
    for rules in ({"redact": ["inputs.e-mail"]}, {"hash_fields": ["inputs.e-mail"]}):
        assert "joe@" not in written_line({"inputs": row}, **rules)
        assert "joe@" not in written_line({"inputs": list(frame.itertuples())}, **rules)
    assert stored_event({"inputs": row}, redact=["inputs.e-mail"])["inputs"] == {
        "dropped": "unstructured"}
    # A field it kept by name is reached by name, and the rest stays.
    assert stored_event({"inputs": row}, redact=["inputs.amount"])["inputs"] == {
        "Index": 0, "_1": "joe@example.org"}
    # collections.namedtuple(rename=True) renames the same way.
    renamed = namedtuple("Row", ["class", "ssn"], rename=True)("a", "078-05-1120")
    assert stored_event({"inputs": renamed}, redact=["inputs.class"])["inputs"] == {
        "dropped": "unstructured"}
    # A namedtuple with its own names is a mapping of them, as before.
    plain = namedtuple("Row", ["email", "amount"])("joe@example.org", 1.5)
    assert stored_event({"inputs": plain}, redact=["inputs.email"])["inputs"] == {"amount": 1.5}


# --- the "split" form --------------------------------------------------------------------------

SPLIT_FRAME = pd.DataFrame({"ssn": ["078-05-1120", "219-09-9999"], "amount": [1.5, 2.5]})


@pytest.mark.parametrize("body", [
    pytest.param(lambda: SPLIT_FRAME.to_dict("split"), id="dict"),
    pytest.param(lambda: SPLIT_FRAME.to_json(orient="split"), id="json-text"),
    pytest.param(lambda: {"dataframe_split": SPLIT_FRAME.to_dict("split")}, id="mlflow"),
    pytest.param(lambda: json.dumps({"dataframe_split": SPLIT_FRAME.to_dict("split")}).encode(),
                 id="mlflow-bytes"),
    pytest.param(lambda: SPLIT_FRAME.to_dict("tight"), id="tight"),
])
def test_a_split_body_is_redacted_by_its_columns(body):
    stored = stored_event({"inputs": body()}, redact=["inputs.ssn"])
    text = json.dumps(stored)
    assert "078-05-1120" not in text and "219-09-9999" not in text
    assert "1.5" in text and "2.5" in text
    hashed = json.dumps(stored_event({"inputs": body()}, hash_fields=["features.ssn"]))
    assert hash_value(SECRET, "078-05-1120") in hashed
    assert "078-05-1120" not in hashed


def test_a_split_body_is_stored_as_its_records_and_a_malformed_one_fails_closed():
    assert stored_event({"inputs": SPLIT_FRAME.to_dict("split")}, redact=["inputs.ssn"])[
        "inputs"] == [{"amount": 1.5}, {"amount": 2.5}]
    assert stored_event({"inputs": SPLIT_FRAME.to_dict("split")}, redact=["inputs.0"])[
        "inputs"] == [{"amount": 1.5}, {"amount": 2.5}]
    ragged = {"columns": ["ssn", "amount"], "data": [["078-05-1120"]]}
    assert stored_event({"inputs": ragged}, redact=["inputs.ssn"])["inputs"] == {
        "dropped": "unstructured"}
    # A path naming a part of the form acts on that part, as on any mapping.
    assert stored_event({"inputs": SPLIT_FRAME.to_dict("split")}, redact=["inputs.index"])[
        "inputs"]["columns"] == ["ssn", "amount"]
    # Without a rule the body is stored as given.
    assert stored_event({"inputs": SPLIT_FRAME.to_dict("split")})["inputs"]["columns"] == [
        "ssn", "amount"]


# --- error text --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_error_text_is_not_stored_as_the_error_type(tmp_path, make_log, fmt):
    message = "invalid ssn 078-05-1120 for customer jane@example.org"
    log = make_log(_log_path(tmp_path, fmt))
    log.emit({"ts": 1.0, "model": "m", "error": message})
    log.emit({"ts": 2.0, "model": "m", "error": "requests.exceptions.Timeout"})
    log.emit({"ts": 3.0, "model": "m", "error": {"type": "bad value 078-05-1120"}})
    assert log.flush(10)
    assert b"078-05-1120" not in _every_byte_written(tmp_path)
    if fmt == "sqlite":
        with sqlite3.connect(tmp_path / "events.db") as db:
            assert [error for (error,) in db.execute("SELECT error FROM events ORDER BY ts")] \
                == ["Error", "requests.exceptions.Timeout", "Error"]


def test_error_text_is_kept_as_the_message_when_messages_are_kept():
    message = "invalid ssn 078-05-1120"
    kept = Encoder(error_messages=True).encode({"ts": 1.0, "error": message}, now=1.0)
    assert json.loads(kept.line)["error"] == {"type": "Error", "message": message}
    assert kept.error == "Error"
    for name in ("TimeoutError", "db.errors.Deadlock", "E1234"):
        record = Encoder(error_messages=True).encode({"ts": 1.0, "error": name}, now=1.0)
        assert json.loads(record.line)["error"] == {"type": name}


# --- through an instrumented model ----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_an_instrumented_model_never_writes_the_column_of_a_frame_or_feed(
        scraper, tmp_path, make_log, fmt):
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.integers(10**7, 10**8, 300), rng.random(300)])
    reference = inferwatch.Reference.from_data(train, feature_names=NAMES)
    log = make_log(_log_path(tmp_path, fmt), redact=["inputs.ssn"])

    def run(feed):
        matrix = next(iter(feed.values())) if isinstance(feed, dict) else feed
        return np.zeros(len(matrix))

    model = inferwatch.instrument(run, name=f"frames-{fmt}", version="1", reference=reference,
                                  events=log, registry=scraper.registry)
    calls = [pd.DataFrame(np.array([[SSN + 1, 0.7]])), pl.DataFrame(np.array([[SSN + 2, 0.7]])),
             {"input": np.array([[SSN + 3, 0.7]])}]
    for call in calls:
        model(call)
    monitor = inferwatch.monitor(f"frames-{fmt}", registry=scraper.registry)
    with monitor.request(request_id="r1") as request:
        request.features({"input": np.array([[SSN + 4, 0.7]])})
    scraper.registry.drain()
    assert log.flush(10)
    written = _every_byte_written(tmp_path)
    for k in range(1, 5):
        assert str(SSN + k).encode() not in written, k
    assert written.count(b'"amount"') >= 4


# --- a column named as a part of the "split" form ---------------------------------------------

_SPLIT_PART_NAMES = ["data", "DATA", "index", "columns", "column_names", "index_names"]
_SPLIT_BODIES = {
    "split": lambda frame: frame.to_dict("split"),
    "split-text": lambda frame: frame.to_json(orient="split"),
    "mlflow-split": lambda frame: json.dumps({"dataframe_split": frame.to_dict("split")}),
    "mlflow-split-dict": lambda frame: {"dataframe_split": frame.to_dict("split")},
}


@pytest.mark.parametrize("hashed", [False, True], ids=["redact", "hash"])
@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
@pytest.mark.parametrize("body", sorted(_SPLIT_BODIES))
@pytest.mark.parametrize("column", _SPLIT_PART_NAMES)
def test_a_secret_column_named_as_a_part_of_the_split_form_is_redacted(tmp_path, column, body,
                                                                       fmt, hashed):
    """A "split" body names its parts ``columns``, ``data``, ``index``: a frame's column of
    one of those names (any case) is still the field a rule names, and its cells never
    reach the log (they once did: the rule was taken to name the body's part, and an
    MLflow ``dataframe_split`` body was then left whole)."""
    frame = pd.DataFrame([[0.5, SSN + 1, "a"], [0.25, SSN + 2, "b"]],
                         columns=["amount", column, "kind"])
    written = _written(tmp_path, fmt, f"inputs.{column.lower()}", hashed,
                       _SPLIT_BODIES[body](frame))
    assert str(SSN + 1).encode() not in written and str(SSN + 2).encode() not in written
    assert b"amount" in written  # the other columns are kept


def _written(directory: Path, fmt: str, path: str, hashed: bool, inputs: object) -> bytes:
    """Every byte a log of `fmt` whose one rule (`path` redacted, or hashed) wrote of an
    event holding `inputs`."""
    rules = {"hash_fields": [path], "secret": SECRET} if hashed else {"redact": [path]}
    log = EventLog(_log_path(directory, fmt), **rules)
    try:
        log.emit({"ts": 1.0, "request_id": "r", "inputs": inputs})
        assert log.flush(10)
    finally:
        log.close()
    return _every_byte_written(directory)


# --- records one level down: MLflow's envelopes, a frame by row ---------------------------------

_ENVELOPES = {
    "mlflow dataframe_records": lambda frame: {"dataframe_records": frame.to_dict("records")},
    "mlflow instances": lambda frame: {"instances": frame.to_dict("records")},
    "mlflow inputs (columns)": lambda frame: {"inputs": frame.to_dict("list")},
    "mlflow records as text": lambda frame: json.dumps(
        {"dataframe_records": frame.to_dict("records")}),
    "to_dict('index')": lambda frame: frame.to_dict("index"),
    "records under a feed's key": lambda frame: {"rows": frame.to_dict("records")},
    "records two levels down": lambda frame: {
        "request": {"body": {"dataframe_records": frame.to_dict("records")}}},
    "KServe / Triton named tensors": lambda frame: {"inputs": [
        {"name": name, "shape": [len(frame)], "datatype": "BYTES", "data": values}
        for name, values in frame.to_dict("list").items()]},
    "Seldon ndarray": lambda frame: {"data": {"names": list(frame.columns),
                                              "ndarray": frame.values.tolist()}},
    "Seldon tensor": lambda frame: {"data": {"names": list(frame.columns), "tensor": {
        "shape": list(frame.shape), "values": frame.values.ravel().tolist()}}},
}


@pytest.mark.parametrize("hashed", [False, True], ids=["redact", "hash"])
@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
@pytest.mark.parametrize("envelope", sorted(_ENVELOPES))
def test_a_secret_column_of_records_one_level_down_is_redacted(tmp_path, envelope, fmt, hashed):
    """A serving API wraps the rows it is sent (MLflow's ``dataframe_records``,
    ``instances``, ``inputs``; KServe's named tensors; Seldon's ``names`` beside its rows):
    a path naming a column reaches its cells through the envelope, as it does through
    MLflow's ``dataframe_split`` (they were written in clear)."""
    frame = pd.DataFrame([[0.5, SSN + 1, "a"], [0.25, SSN + 2, "b"]],
                         columns=["amount", "ssn", "kind"])
    written = _written(tmp_path, fmt, "inputs.ssn", hashed, _ENVELOPES[envelope](frame))
    assert str(SSN + 1).encode() not in written and str(SSN + 2).encode() not in written
    assert b"amount" in written and b"0.25" in written  # the other columns are kept


# --- property ----------------------------------------------------------------------------------

# Names of the "split" form's own parts among them: a column may be called "data".
_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_", min_size=1, max_size=6) | \
    st.sampled_from(["data", "Index", "columns", "column_names"])
_OTHER_KINDS = {
    "int": st.integers(0, 999),
    "float": st.sampled_from([0.25, 0.5, 1.75]),
    "text": st.sampled_from(["a", "bc"]),
}
CONTAINERS = ["pandas-named", "pandas-default", "polars-named", "polars-default",
              "split", "split-text", "mlflow-split", "feed-numpy", "feed-frame",
              "mlflow-records", "mlflow-columns", "index-orient"]


class _Logs:
    """One JSONL and one SQLite log for every example, in a directory of their own."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="inferwatch-frames-"))
        self.opened: dict[tuple, EventLog] = {}

    def log(self, fmt: str, path: str, hashed: bool) -> EventLog:
        key = (fmt, path, hashed)
        if key not in self.opened:
            directory = self.directory / f"{len(self.opened)}"
            directory.mkdir()
            rules = {"hash_fields": [path], "secret": SECRET} if hashed else {"redact": [path]}
            self.opened[key] = EventLog(_log_path(directory, fmt), **rules)
        return self.opened[key]

    def close(self) -> None:
        for log in self.opened.values():
            log.close()


@pytest.fixture(scope="module")
def logs():
    opened = _Logs()
    yield opened
    opened.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_named_secret_column_of_any_frame_never_reaches_the_written_bytes(logs, data):
    width = data.draw(st.integers(1, 4), label="width")
    names = data.draw(st.lists(_name, min_size=width, max_size=width, unique_by=str.lower),
                      label="names")
    column = data.draw(st.integers(0, width - 1), label="secret column")
    n_rows = data.draw(st.integers(1, 3), label="rows")
    secret_text = data.draw(st.booleans(), label="secret as text")
    kinds = [data.draw(st.sampled_from(sorted(_OTHER_KINDS))) for _ in range(width)]
    base = data.draw(st.integers(10**8, 10**9 - n_rows - 1), label="secret base")
    rows = [[(f"s-{base + i}" if secret_text else base + i) if j == column
             else data.draw(_OTHER_KINDS[kinds[j]]) for j in range(width)]
            for i in range(n_rows)]
    secrets = [str(base + i).encode() for i in range(n_rows)]
    container = data.draw(st.sampled_from(CONTAINERS), label="container")
    named = pd.DataFrame(rows, columns=names)
    if container == "pandas-named":
        value: object = named
    elif container == "pandas-default":
        value = pd.DataFrame(rows)
    elif container == "polars-named":
        value = pl.DataFrame(rows, schema=names, orient="row")
    elif container == "polars-default":
        value = pl.DataFrame(rows, orient="row")
    elif container == "split":
        value = named.to_dict("split")
    elif container == "split-text":
        value = named.to_json(orient="split")
    elif container == "mlflow-split":
        value = json.dumps({"dataframe_split": named.to_dict("split")})
    elif container == "mlflow-records":
        value = {"dataframe_records": named.to_dict("records")}
    elif container == "mlflow-columns":
        value = {"inputs": named.to_dict("list")}
    elif container == "index-orient":
        value = named.to_dict("index")
    elif container == "feed-numpy":
        value = {"input": np.array(rows, dtype=object)}
    else:
        value = {"input": pd.DataFrame(rows)}
    known = data.draw(st.booleans(), label="reference names known")
    field = data.draw(st.sampled_from(["inputs", "features"]), label="field")
    key = data.draw(st.sampled_from([names[column], names[column].upper()]), label="key")
    path = f"{data.draw(st.sampled_from(['inputs', 'features']), label='rule field')}.{key}"
    hashed = data.draw(st.booleans(), label="hashed")
    fmt = data.draw(st.sampled_from(["jsonl", "sqlite"]), label="format")
    event = {"ts": 1.0, "request_id": "r", field: value}
    if known:
        fields.name_dense_columns(event, names)
    log = logs.log(fmt, path, hashed)
    log.emit(event)
    assert log.flush(10)
    written = _every_byte_written(log.path.parent)
    for secret in secrets:
        assert secret not in written
