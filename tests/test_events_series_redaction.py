"""A model called with one column (``model.predict(df["comment"])``) is redacted by the
column's name, as the same column given as a one-column DataFrame is.

A pandas Series used to be stored as a mapping of its index to its values, its name
dropped: ``redact=["inputs.comment"]`` reached nothing and the text was written whole.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.events import EventLog, hash_value
from inferwatch.events.clean import clean
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder

SECRET = b"k" * 32


def _stored_events(directory: Path, fmt: str) -> list[dict]:
    if fmt == "sqlite":
        with sqlite3.connect(directory / "events.db") as db:
            return [json.loads(body) for (body,) in db.execute("SELECT body FROM events")]
    return [json.loads(line) for path in sorted(directory.glob("events.*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]


def _every_byte_written(directory: Path) -> bytes:
    """All the log's files, the SQLite write-ahead log included: nothing may hide in them."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


def _log(directory: Path, fmt: str, **options: object) -> EventLog:
    name = "events.db" if fmt == "sqlite" else "events.jsonl"
    return EventLog(directory / name, **options)


class _TextModel:
    classes_ = ["ok", "spam"]

    def predict(self, texts: object) -> list[str]:
        return ["ok" for _ in texts]


COMMENTS = ["call me at 555-0100, Jane Doe", "my ssn is 078-05-1120"]


@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
@pytest.mark.parametrize("column", [
    pytest.param(lambda df: df["comment"], id="pandas-series"),
    pytest.param(lambda df: df[df["user"] > 0]["comment"], id="pandas-series-filtered-rows"),
    pytest.param(lambda df: df.set_index("user")["comment"], id="pandas-series-int-index"),
    pytest.param(lambda df: df.set_index("handle")["comment"], id="pandas-series-text-index"),
    pytest.param(lambda df: pl.from_pandas(df)["comment"], id="polars-series"),
    pytest.param(lambda df: df[["comment"]], id="one-column-dataframe"),
])
def test_a_model_called_with_one_column_is_redacted_by_its_name(tmp_path, fmt, column):
    log = _log(tmp_path, fmt, redact=["inputs.comment"])
    model = inferwatch.instrument(_TextModel(), name="spam", version="1", events=log)
    df = pd.DataFrame({"user": [1, 2], "handle": ["jane", "joe"], "comment": COMMENTS})
    called_with = column(df)
    model.predict(called_with)
    log.close()
    written = _every_byte_written(tmp_path)
    assert b"078-05-1120" not in written and b"Jane Doe" not in written
    (event,) = _stored_events(tmp_path, fmt)
    if getattr(called_with, "index", None) is not None and called_with.index.name == "handle":
        # A named index is a field of its own (`inputs.handle`), kept: no path names it.
        assert event["inputs"] == [{"handle": "jane"}, {"handle": "joe"}], event["inputs"]
        return
    # Nor are the row labels left behind as keys of emptied values.
    assert b"jane" not in written
    # Redacted by name, as a one-column DataFrame is: no value dropped wholesale as text.
    assert event["inputs"] in ([{}, {}], {}), event["inputs"]


def test_a_named_series_is_stored_as_rows_of_its_column():
    series = pd.Series(["a", "b"], name="comment")
    assert clean(series) == [{"comment": "a"}, {"comment": "b"}]
    assert clean(series.iloc[1:]) == [{"comment": "b"}]
    assert clean(pl.Series("comment", ["a", "b"])) == [{"comment": "a"}, {"comment": "b"}]
    multi = pd.DataFrame([["a", 1]], columns=pd.MultiIndex.from_tuples(
        [("user", "comment"), ("user", "age")]))
    assert clean(multi[("user", "comment")]) == [{"user.comment": "a"}]


def test_an_unnamed_column_fails_closed_under_a_path_naming_a_field():
    """No name to match: its text is dropped whole under any path into the field, as a
    list's or an unnamed polars Series' is."""
    encoder = Encoder(Redaction(drop=["inputs.comment"]))
    for column in (pd.Series(COMMENTS), pd.Series(COMMENTS, index=[7, 9]),
                   pl.Series(COMMENTS)):
        line = encoder.encode({"model": "m", "inputs": column}).line.decode()
        assert "078-05-1120" not in line
        assert json.loads(line)["inputs"] == [{"dropped": "unstructured"}] * 2


def test_a_row_read_from_a_frame_is_still_redacted_by_its_fields():
    """A row (``iterrows``, ``df.loc``) is a Series too: its labels are field names and its
    name is the row's label, which a path may name as well. Both reach its values."""
    df = pd.DataFrame({"ssn": ["078-05-1120"], "age": [41]}, index=["jane"])
    _, row = next(df.iterrows())
    by_field = Encoder(Redaction(drop=["inputs.ssn"])).encode({"model": "m", "inputs": row})
    assert json.loads(by_field.line)["inputs"] == {"age": 41}
    by_name = Encoder(Redaction(drop=["inputs.jane"])).encode({"model": "m", "inputs": row})
    assert json.loads(by_name.line)["inputs"] == {}
    unnamed = Encoder(Redaction(drop=["inputs.ssn"])).encode(
        {"model": "m", "inputs": pd.Series({"ssn": "078-05-1120", "age": 41})})
    assert json.loads(unnamed.line)["inputs"] == {"age": 41}


def test_a_column_with_text_labels_is_reached_by_its_name_and_hashed_per_value():
    """Labelled by text, a Series may be a row (labels are fields) or a column of a frame
    indexed by name (its name is the field): a path naming either reaches the values."""
    column = pd.DataFrame({"comment": COMMENTS}, index=["jane", "joe"])["comment"]
    policy = Redaction(hash_fields=["inputs.comment"], secret=SECRET)
    stored = json.loads(Encoder(policy).encode({"model": "m", "inputs": column}).line)
    assert stored["inputs"] == {"jane": hash_value(SECRET, COMMENTS[0]),
                                "joe": hash_value(SECRET, COMMENTS[1])}
    inside = Redaction(drop=["inputs.comment.text"])
    assert json.loads(Encoder(inside).encode({"model": "m", "inputs": column}).line)[
        "inputs"] == {"jane": {"dropped": "unstructured"}, "joe": {"dropped": "unstructured"}}
    # Its twin in the features, and a path through every key, reach it too.
    for rules in (["features.comment"], ["inputs.*"]):
        stored = json.loads(Encoder(Redaction(drop=rules)).encode(
            {"model": "m", "inputs": column}).line)
        assert stored["inputs"] == {}


def test_a_rule_naming_a_column_wins_over_one_for_every_field_as_for_a_dataframe():
    rules = Redaction(drop=["inputs.*"], hash_fields=["inputs.comment"], secret=SECRET)
    hashed = [hash_value(SECRET, text) for text in COMMENTS]
    frame = pd.DataFrame({"comment": COMMENTS}, index=["jane", "joe"])
    for inputs, expected in ((frame, [{"comment": h} for h in hashed]),
                             (frame["comment"], dict(zip(["jane", "joe"], hashed)))):
        stored = json.loads(Encoder(rules).encode({"model": "m", "inputs": inputs}).line)
        assert stored["inputs"] == expected
    # A row's fields are still spared by the rule naming one of them.
    _, row = next(pd.DataFrame({"comment": COMMENTS[:1], "age": [41]}, index=["jane"])
                  .iterrows())
    stored = json.loads(Encoder(rules).encode({"model": "m", "inputs": row}).line)
    assert stored["inputs"] == {"comment": hashed[0]}


def test_a_named_column_is_hashed_row_by_row():
    policy = Redaction(hash_fields=["inputs.comment"], secret=SECRET)
    stored = json.loads(Encoder(policy).encode(
        {"model": "m", "inputs": pd.Series(COMMENTS, name="comment")}).line)
    assert stored["inputs"] == [{"comment": hash_value(SECRET, text)} for text in COMMENTS]


column_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_ -]{0,11}", fullmatch=True)


@st.composite
def named_text_columns(draw):
    """A named pandas Series of strings, each holding a unique token, under some index."""
    name = draw(column_names)
    tokens = [f"tok{draw(st.uuids()).hex}" for _ in range(draw(st.integers(1, 5)))]
    texts = [draw(st.text(max_size=12)) + token + draw(st.text(max_size=4))
             for token in tokens]
    index = draw(st.sampled_from(["range", "ints", "text", "dates"]))
    labels = {"range": None,
              "ints": [10 * i + 3 for i in range(len(texts))],
              "text": [f"row{i}" for i in range(len(texts))],
              "dates": pd.date_range("2026-01-01", periods=len(texts), freq="D")}[index]
    dtype = draw(st.sampled_from([object, "string"]))
    return pd.Series(texts, index=labels, name=name, dtype=dtype), tokens


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(named_text_columns(), st.sampled_from(["jsonl", "sqlite"]),
       st.sampled_from(["redact", "hash_fields"]),
       st.sampled_from(["inputs", "features"]), st.booleans())
def test_a_named_text_series_never_leaves_its_values_in_the_log(column_and_tokens, fmt,
                                                                 rule, where, as_cased):
    column, tokens = column_and_tokens
    name = str(column.name)
    # Case and surrounding space as a reader sees the name: the same field.
    path_name = name.strip().upper() if as_cased else name
    options: dict[str, object] = {rule: [f"{where}.{path_name}"]}
    if rule == "hash_fields":
        options["secret"] = SECRET
    with tempfile.TemporaryDirectory() as directory:
        log = _log(Path(directory), fmt, **options)
        # The path names the raw input or its twin, the features: both are reached.
        log.emit({"model": "m", "request_id": "r-1", "inputs": column,
                  "features": column.copy()})
        log.close()
        written = _every_byte_written(Path(directory))
        for token in tokens:
            assert token.encode() not in written
        (event,) = _stored_events(Path(directory), fmt)
        assert event["request_id"] == "r-1"
