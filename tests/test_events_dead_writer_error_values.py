"""Event log, fifth pass: a writer that survives (or is replaced after) a fault of its own,
error values that say "no error", and following a log with one enormous line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_log_helpers import (
    Interrupted,
    drain_dies_when_set,
    follow_from_end,
    follow_until_caught_up,
    kill_writer,
    stored_events,
    traced_peak,
    wait_for,
)
from inferwatch import faults
from inferwatch.events import EventLog, jsonl
from inferwatch.events.jsonl import JsonlSink
from inferwatch.events.sinks import Encoder, Query

# --- the writer outlives a fault of its own -----------------------------------------------------

def test_a_sink_write_raising_past_except_exception_costs_one_batch_not_the_log(
        tmp_path, monkeypatch, make_log):
    path = tmp_path / "events.jsonl"
    real_write = JsonlSink.write
    calls = {"n": 0}

    def write_once_failing(self, records):
        calls["n"] += 1
        if calls["n"] == 1:
            raise Interrupted("cancelled mid-write")
        return real_write(self, records)

    monkeypatch.setattr(JsonlSink, "write", write_once_failing)
    before = faults.internal_error_counts().get("events", 0)
    event_log = make_log(path)
    event_log.emit({"request_id": "lost"})
    assert event_log.flush(10)
    for i in range(5):
        event_log.emit({"request_id": f"r-{i}"})
    assert event_log.flush(10)
    assert [e["request_id"] for e in stored_events(path)] == [f"r-{i}" for i in range(5)]
    assert event_log.dropped_counts()["write_error"] == 1
    assert faults.internal_error_counts().get("events", 0) == before + 1


class _CancelledMapping(Mapping):
    """A lazily computed feature mapping whose computation was cancelled."""

    def __getitem__(self, key: str) -> int:
        raise asyncio.CancelledError

    def __iter__(self) -> Iterator[str]:
        raise asyncio.CancelledError

    def __len__(self) -> int:
        raise asyncio.CancelledError

    def items(self):  # type: ignore[override]
        raise asyncio.CancelledError


def test_an_event_raising_cancelled_error_does_not_stop_later_events(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    event_log.emit({"request_id": "r-bad", "features": _CancelledMapping()})
    assert event_log.flush(10)
    event_log.emit({"request_id": "r-after"})
    assert event_log.flush(10)
    assert "r-after" in [e["request_id"] for e in stored_events(path)]
    assert event_log._thread.is_alive()


def test_a_dead_writer_is_replaced_by_the_next_emit(tmp_path, monkeypatch, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    kill_writer(event_log, drain_dies_when_set(monkeypatch))
    for i in range(3):
        event_log.emit({"request_id": f"r-{i}"})
    assert event_log.flush(10)
    assert [e["request_id"] for e in stored_events(path)] == ["r-0", "r-1", "r-2"]
    assert event_log.dropped_counts() == dict.fromkeys(event_log.dropped_counts(), 0)


def test_a_writer_that_keeps_dying_is_not_restarted_in_a_storm(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    event_log = EventLog(path, queue_size=100)
    starts = {"n": 0}

    def drain(self):
        starts["n"] += 1
        raise Interrupted("always")

    monkeypatch.setattr(EventLog, "_drain", drain)
    event_log._wake.set()
    assert wait_for(lambda: not event_log._thread.is_alive())
    for i in range(2_000):
        event_log.emit({"request_id": f"r-{i}"})
        if i % 100 == 0:
            # let a restarted writer die again before the next emits
            wait_for(lambda: not event_log._thread.is_alive(), 2.0)
    assert starts["n"] <= 3
    # The queue bound still holds, and the overflow is counted.
    assert len(event_log._queue) <= 100
    assert event_log.dropped_counts()["queue_full"] >= 1_900
    event_log.close(1)
    # What the dead writer left queued is lost, and counted as such at close.
    assert not event_log._queue
    counts = event_log.dropped_counts()
    assert counts["queue_full"] + counts["closed"] + counts["write_error"] == 2_000


def test_close_counts_what_a_dead_writer_left_queued(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    event_log = EventLog(path)
    monkeypatch.setattr(EventLog, "_drain", lambda self: (_ for _ in ()).throw(
        Interrupted("dead")))
    event_log._wake.set()
    assert wait_for(lambda: not event_log._thread.is_alive())
    event_log._restart_at = float("inf")  # no restart due: the events stay queued
    for i in range(7):
        event_log.emit({"request_id": f"r-{i}"})
    event_log.close(1)
    assert event_log.dropped_counts()["closed"] == 7


# --- what "no error" is -------------------------------------------------------------------------

@pytest.mark.parametrize("error", [0, 0.0, "", b"", [], {}, (), np.int64(0), np.bool_(False),
                                   np.float32(0.0)],
                         ids=["int", "float", "str", "bytes", "list", "dict", "tuple",
                              "np.int64", "np.bool_", "np.float32"])
def test_a_zero_or_empty_error_is_no_error(tmp_path, make_log, error):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=0.0)
    event_log.emit({"model": "m", "request_id": "r-sampled", "error": error})
    assert event_log.flush(10)
    assert stored_events(path) == []  # sampled like any event without an error
    stored = make_log(tmp_path / "all.jsonl")
    stored.emit({"model": "m", "request_id": "r-kept", "error": error})
    assert stored.flush(10)
    [event] = stored_events(tmp_path / "all.jsonl")
    assert event.get("error") is None
    assert not Query(errors_only=True).matches(event)


@pytest.mark.parametrize("error", [1, -1, float("nan"), "ValueError", [0], {"type": "E"},
                                   np.int64(3), np.array([]), np.array(0),
                                   pd.Series([], dtype=float), pd.DataFrame(), ValueError("x")],
                         ids=["1", "-1", "nan", "str", "[0]", "dict", "np.int64",
                              "empty-array", "0d-array", "empty-series", "empty-frame", "exc"])
def test_anything_else_is_an_error_and_kept_under_sampling(tmp_path, make_log, error):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=0.0)
    event_log.emit({"model": "m", "request_id": "r-err", "error": error})
    assert event_log.flush(10)
    assert [e["request_id"] for e in stored_events(path)] == ["r-err"]


_NO_ERROR = st.one_of(st.none(), st.just(False), st.just(0), st.just(0.0), st.just(-0.0),
                      st.just(""), st.just(b""), st.just([]), st.just({}), st.just(()))
_SET_ERROR = st.one_of(st.just(True), st.integers().filter(bool),
                       st.floats(allow_nan=True).filter(lambda x: x != 0),
                       st.text(min_size=1), st.lists(st.integers(), min_size=1, max_size=2))


@settings(max_examples=60, deadline=None)
@given(error=_NO_ERROR, other=_SET_ERROR)
def test_the_stored_error_and_its_column_say_whether_the_call_failed(error, other):
    encoder = Encoder(max_event_bytes=4096)
    unset = encoder.encode({"ts": 1.0, "error": error})
    assert json.loads(unset.line)["error"] is None
    assert unset.error is None
    assert not Query(errors_only=True).matches(json.loads(unset.line))
    failed = encoder.encode({"ts": 1.0, "error": other})
    assert json.loads(failed.line)["error"]["type"]
    assert failed.error is not None
    assert Query(errors_only=True).matches(json.loads(failed.line))


# --- following a log with one enormous line -----------------------------------------------------

def test_following_skips_a_line_too_long_to_hold_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 2 << 20, raising=False)
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-0"}\n')
    offsets, stats = follow_from_end(path)
    with path.open("ab") as f:
        f.write(b'{"ts": 2.0, "inputs": "' + b"x" * (12 << 20) + b'"}\n')
        f.write(b'{"ts": 3.0, "request_id": "r-2"}\n')
    seen, peak = traced_peak(lambda: follow_until_caught_up(path, offsets, stats, 100))
    assert [json.loads(line)["request_id"] for line in seen] == ["r-2"]
    assert stats.unreadable == 1
    assert peak < 6_000_000, peak


def test_following_a_growing_line_waits_for_its_end_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 2 << 20, raising=False)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"ts": 1.0, "request_id": "r-0"}\n')
    offsets, stats = follow_from_end(path)
    with path.open("ab") as f:
        f.write(b"y" * (12 << 20))  # no newline yet: a foreign writer still at it
    (lines, _), peak = traced_peak(lambda: jsonl.follow_jsonl_batch(path, offsets, stats))
    assert lines == []
    assert peak < 6_000_000, peak
    with path.open("ab") as f:
        f.write(b"\n" + b'{"ts": 3.0, "request_id": "r-3"}\n')
    seen = follow_until_caught_up(path, offsets, stats, 100)
    assert [json.loads(line)["request_id"] for line in seen] == ["r-3"]
    assert stats.unreadable == 1


def test_an_error_type_of_control_characters_alone_is_still_named(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    event_log.emit({"request_id": "r-1", "error": {"type": "\x1b\x07"}})
    assert event_log.flush(10)
    [event] = stored_events(path)
    assert event["error"] == {"type": "Error"}
