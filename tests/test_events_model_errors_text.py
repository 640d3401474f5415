"""``model_errors`` holds exception types only (docs/events.md), as ``error`` does: an entry
given as text names a type only when it reads as one (a dotted identifier); other text, which
may quote user data as exception messages do, is stored as the type ``"Error"``, with or
without ``error_messages``. Before, such text reached the log in clear."""

from __future__ import annotations

import contextlib
import enum
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferwatch.events.clean import clean_text
from inferwatch.events.sinks import Encoder, is_type_name

SSN = "078-05-1120"


def _log_path(directory: Path, fmt: str) -> Path:
    return directory / ("events.db" if fmt == "sqlite" else "events.jsonl")


def _every_byte_written(directory: Path) -> bytes:
    """All the log's files, the SQLite write-ahead log included: nothing may hide in them."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


def _stored_bodies(path: Path, fmt: str) -> list[dict]:
    if fmt == "sqlite":
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute("SELECT body FROM events ORDER BY ts").fetchall()
        return [json.loads(body) for (body,) in rows]
    return [json.loads(line) for line in path.read_bytes().splitlines() if line]


def _stored_model_errors(model_errors: object, **options: object) -> object:
    record = Encoder(**options).encode({"ts": 1.0, "model_errors": model_errors}, now=1.0)
    return json.loads(record.line)["model_errors"]


class Code(enum.Enum):
    TIMEOUT = "timeout"


@pytest.mark.parametrize("error_messages", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_model_error_text_is_stored_as_the_type_error(tmp_path, make_log, fmt, error_messages):
    path = _log_path(tmp_path, fmt)
    log = make_log(path, error_messages=error_messages)
    log.emit({"ts": 1.0, "model": "m", "request_id": "text",
              "model_errors": [f"bad ssn {SSN}", "TimeoutError", "db.errors.Deadlock"]})
    log.emit({"ts": 2.0, "model": "m", "request_id": "exceptions",
              "model_errors": [ValueError(f"bad ssn {SSN}"), KeyError, {"type": SSN}]})
    log.emit({"ts": 3.0, "model": "m", "request_id": "array",
              "model_errors": np.array([f"no user {SSN}", "ValueError"])})
    log.emit({"ts": 4.0, "model": "m", "request_id": "series",
              "model_errors": pd.Series([f"no user {SSN}"])})
    log.emit({"ts": 5.0, "model": "m", "request_id": "one text", "model_errors": f"bad {SSN}"})
    assert log.flush(30)
    assert SSN.encode() not in _every_byte_written(tmp_path)
    stored = {event["request_id"]: event["model_errors"] for event in _stored_bodies(path, fmt)}
    assert stored == {
        "text": ["Error", "TimeoutError", "db.errors.Deadlock"],
        "exceptions": ["ValueError", "KeyError", "Error"],
        "array": ["Error", "ValueError"],
        "series": ["Error"],
        "one text": ["Error"],
    }
    assert log.dropped_counts()["serialize_error"] == 0


def test_type_names_are_kept_as_given():
    names = ["ValueError", "requests.exceptions.Timeout", "outer.<locals>.Inner", "E1234"]
    assert _stored_model_errors(names) == names
    assert _stored_model_errors(("KeyError",)) == ["KeyError"]
    assert _stored_model_errors("KeyError") == ["KeyError"]
    assert _stored_model_errors([Code.TIMEOUT]) == ["Code.TIMEOUT"]
    assert _stored_model_errors(np.array(["ValueError", "KeyError"])) == ["ValueError", "KeyError"]


def test_entries_that_name_no_type_are_errors_never_their_text():
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    encoder = Encoder()
    entries = [1, None, b"bad " + SSN.encode(), [SSN], object(), {"type": Unprintable()}]
    record = encoder.encode({"ts": 1.0, "model_errors": entries}, now=1.0)
    assert json.loads(record.line)["model_errors"] == ["Error"] * 6
    assert SSN.encode() not in record.line
    assert encoder.values_dropped.get("conversion_error") == 1


def test_model_errors_that_cannot_be_read_are_still_a_failed_call():
    class Broken:
        def __len__(self) -> int:
            return 2

        def __iter__(self):
            yield "ValueError"
            raise RuntimeError(f"bad {SSN}")

    encoder = Encoder()
    record = encoder.encode({"ts": 1.0, "model_errors": Broken()}, now=1.0)
    assert json.loads(record.line)["model_errors"] == ["Error"]
    assert encoder.values_dropped.get("conversion_error") == 1


@pytest.mark.parametrize("empty", [None, [], ()])
def test_model_errors_naming_no_failure_are_left_as_given(empty):
    assert _stored_model_errors(empty) == (list(empty) if empty is not None else None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5), st.booleans())
def test_every_stored_entry_is_a_type_name(texts, error_messages):
    stored = _stored_model_errors(texts, error_messages=error_messages)
    assert len(stored) == len(texts)
    for given_text, kept in zip(texts, stored):
        assert is_type_name(kept)
        name = clean_text(given_text)
        assert kept == (name if name and is_type_name(name) else "Error")
