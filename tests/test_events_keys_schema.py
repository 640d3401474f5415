"""Event log: keys that clean to one text, binary keys, tail across files, old SQLite
schemas, and events emitted after the exit flush."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from inferwatch.cli import main
from inferwatch.events import EventLog
from inferwatch.events.clean import clean
from inferwatch.events.dropped import DroppedEventsCollector, values_dropped_totals

SSN = "123-45-6789"
OTHER_SSN = "987-65-4321"


def _stored(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def _run_cli(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(["events", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


# --- keys that clean to the same text ------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(-10**6, 10**6), min_size=1, max_size=20), st.data())
def test_colliding_keys_are_counted_never_lost_silently(numbers, data):
    # A dict keyed by ids read from two sources: some ints, some their text.
    as_text = data.draw(st.sets(st.sampled_from(sorted(numbers))))
    raw: dict = {}
    for n in sorted(numbers):
        raw[n] = f"int-{n}"
        if n in as_text:
            raw[str(n)] = f"text-{n}"
    dropped: dict[str, int] = {}
    cleaned = clean(raw, dropped=dropped)
    assert isinstance(cleaned, dict)
    assert len(cleaned) + dropped.get("key_collision", 0) == len(raw)
    assert dropped.get("key_collision", 0) == len(as_text)
    # The first value under a key is the one kept, never replaced by a later one.
    assert all(cleaned[str(n)] == f"int-{n}" for n in numbers)


def test_a_control_character_collision_is_counted_in_the_exported_metric(tmp_path,
                                                                          make_log):
    before = values_dropped_totals().get("key_collision", 0)
    event_log = make_log(tmp_path / "events.jsonl")
    event_log.emit({"request_id": "r-1", "features": {"score": 0.9, "score\n": 0.1}})
    assert event_log.flush(60)
    assert values_dropped_totals()["key_collision"] == before + 1
    (line,) = _stored(tmp_path).splitlines()
    assert json.loads(line)["features"] == {"score": 0.9}
    registry = CollectorRegistry()
    registry.register(DroppedEventsCollector())
    text = generate_latest(registry).decode()
    assert 'inferwatch_event_values_dropped_total{reason="key_collision"}' in text


def test_a_bytes_key_beside_its_text_still_cannot_reach_the_disk(tmp_path, make_log):
    event_log = make_log(tmp_path / "events.jsonl", redact=["inputs.ssn"])
    event_log.emit({"request_id": "r-1",
                    "inputs": {b"ssn": SSN, "ssn": OTHER_SSN, "age": 41}})
    assert event_log.flush(60)
    stored = _stored(tmp_path)
    assert SSN.encode() not in stored and OTHER_SSN.encode() not in stored
    assert json.loads(stored.splitlines()[0])["inputs"] == {"age": 41}


# --- bytes keys ----------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=12))
@example(b"{}")  # text that reads as JSON: a key is compared as a key, never as a value
def test_a_bytes_key_is_its_text_or_a_binary_marker_never_its_repr(key):
    dropped: dict[str, int] = {}
    (stored,) = clean({key: 1}, dropped=dropped)  # type: ignore[misc]
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        assert stored == "<dropped binary: builtins.bytes>"
        assert dropped == {"binary": 1}
    else:
        (expected,) = clean({text: 1})  # type: ignore[misc]
        assert stored == expected
        assert dropped == {}
    assert not stored.startswith(("b'", 'b"'))


def test_a_binary_key_is_counted_as_a_binary_value_is(tmp_path, make_log):
    before = values_dropped_totals()["binary"]
    event_log = make_log(tmp_path / "events.jsonl")
    event_log.emit({"request_id": "r-1", "inputs": {b"\xff\xfeid": "x", "ok": b"\xff"}})
    assert event_log.flush(60)
    assert values_dropped_totals()["binary"] == before + 2
    (line,) = _stored(tmp_path).splitlines()
    assert b"\\\\x" not in line and b"b'" not in line
    assert json.loads(line)["inputs"] == {
        "<dropped binary: builtins.bytes>": "x",
        "ok": {"dropped": "binary", "type": "builtins.bytes"}}


def test_keep_unstructured_keeps_a_binary_key_as_it_keeps_a_binary_value():
    cleaned = clean({b"\xffk": b"\xffv"}, keep_unstructured=True)
    assert cleaned == {"\\xffk": "\\xffv"}


# --- tail across files ---------------------------------------------------------------------

def _write_file(directory: Path, start_ns: int, events: list[dict], mtime: float) -> None:
    path = directory / f"events.{start_ns:020d}.{os.getpid()}.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    os.utime(path, (mtime, mtime))


def test_tail_finds_the_newest_event_in_a_file_written_long_ago(tmp_path, capsys):
    now = time.time()
    # An older worker's file holds an event whose ts is ahead of its write (a clock ahead,
    # a scheduled event); the newest file holds events of now.
    _write_file(tmp_path, 1, [{"ts": now + 3600, "request_id": "ahead"}], mtime=now - 600)
    _write_file(tmp_path, 2, [{"ts": now + i, "request_id": f"now-{i}"} for i in range(3)],
                mtime=now + 5)
    code, events, err = _run_cli(capsys, "tail", str(tmp_path / "events.jsonl"), "-n", "2")
    assert code == 0, err
    assert [e["request_id"] for e in events] == ["now-2", "ahead"]
    code, events, err = _run_cli(capsys, "query", str(tmp_path / "events.jsonl"))
    assert [e["request_id"] for e in events][-1] == "ahead"


# --- an SQLite database made by an older schema --------------------------------------------

def _old_database(path: Path, columns: str, body: str = "body") -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE events (id INTEGER PRIMARY KEY, {columns})")
        db.execute(f"INSERT INTO events (ts, {body}) VALUES (?, ?)",
                   (1_700_000_000.0, '{"ts":1700000000.0,"request_id":"old"}'))
    db.close()


def test_an_older_table_is_migrated_and_written(tmp_path, make_log, capsys):
    path = tmp_path / "events.db"
    _old_database(path, "ts REAL NOT NULL, model TEXT, request_id TEXT, body TEXT NOT NULL")
    event_log = make_log(path)
    event_log.emit({"ts": time.time(), "model": "fraud", "model_version": "2",
                    "request_id": "new", "trace_id": "t-1", "error": ValueError("x")})
    assert event_log.flush(60)
    assert event_log.dropped_counts()["write_error"] == 0
    code, events, err = _run_cli(capsys, "query", str(path), "--errors")
    assert code == 0, err
    assert [e["request_id"] for e in events] == ["new"]
    code, events, err = _run_cli(capsys, "query", str(path))
    assert [e["request_id"] for e in events] == ["old", "new"]


def test_a_table_without_a_body_is_counted_and_named(tmp_path, make_log, caplog):
    path = tmp_path / "events.db"
    _old_database(path, "ts REAL NOT NULL, body_json TEXT", body="body_json")
    event_log = make_log(path)
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        event_log.emit({"request_id": "r-1"})  # never raises into the caller
        assert event_log.flush(60)
    assert event_log.dropped_counts()["write_error"] == 1
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"{path} is not an inferwatch event database" in message
    assert "body" in message


# --- events emitted after the exit flush ---------------------------------------------------

def test_an_event_from_an_earlier_atexit_hook_is_written(tmp_path):
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(f"""
        import atexit

        holder = []
        # Registered before inferwatch is imported: atexit runs it after inferwatch's flush.
        atexit.register(lambda: holder[0].emit({{"request_id": "at-exit"}}))

        from inferwatch.events import EventLog

        holder.append(EventLog({str(path)!r}))
        holder[0].emit({{"request_id": "during"}})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["request_id"] for line in _stored(tmp_path).splitlines()]
    assert sorted(ids) == ["at-exit", "during"]


# --- querying by model name -----------------------------------------------------------------

def test_query_by_model_finds_a_long_or_tabbed_name_as_the_code_gave_it(tmp_path, capsys):
    long_name = "ranker-" + "x" * 300  # generated names (hash suffixes) can be long
    for name in ("events.jsonl", "events.db"):
        path = tmp_path / name
        event_log = EventLog(path)
        event_log.emit({"model": long_name, "request_id": "long"})
        event_log.emit({"model": "fraud\tv2", "request_id": "tab"})
        event_log.emit({"model": "other", "request_id": "other"})
        event_log.close()
        for model, wanted in ((long_name, "long"), ("fraud\tv2", "tab")):
            code, events, err = _run_cli(capsys, "query", str(path), "--model", model)
            assert code == 0, err
            assert [e["request_id"] for e in events] == [wanted], (name, wanted)


def test_a_sample_rate_given_as_text_is_a_clear_configuration_error(tmp_path):
    with pytest.raises(ValueError, match=r"sample_rate: expected a number from 0 to 1, got '0.5'"):
        EventLog(tmp_path / "events.jsonl", sample_rate="0.5")  # type: ignore[arg-type]
