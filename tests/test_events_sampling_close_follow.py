"""Event log, fourth pass: error events kept whatever their error value, events emitted
while the log closes, and following a log in bounded memory."""

from __future__ import annotations

import json
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from event_log_helpers import follow_from_end, stored_events, traced_peak
from inferwatch.cli import main
from inferwatch.events import EventLog, jsonl
from inferwatch.events import cli as events_cli

# --- sampling keeps every error event ----------------------------------------------------------

@pytest.mark.parametrize("error", [
    np.array(["ValueError", "bad input"]),
    pd.Series({"type": "ValueError"}),
    pd.DataFrame({"type": ["ValueError"]}),
], ids=["ndarray", "series", "dataframe"])
def test_an_error_with_no_truth_value_is_kept_under_sampling(tmp_path, error):
    path = tmp_path / "events.jsonl"
    event_log = EventLog(path, sample_rate=0.0)
    try:
        event_log.emit({"model": "fraud", "request_id": "r-err", "error": error})
        event_log.emit({"model": "fraud", "request_id": "r-ok"})  # sampled out
        assert event_log.flush(10)
        assert event_log.dropped_counts()["serialize_error"] == 0
        assert [e["request_id"] for e in stored_events(path)] == ["r-err"]
    finally:
        event_log.close()


_ERRORS = st.one_of(
    st.text(min_size=1), st.integers(), st.floats(allow_nan=True), st.just(True),
    st.lists(st.integers(), min_size=1), st.dictionaries(st.text(), st.integers(), min_size=1),
    hnp.arrays(dtype=st.sampled_from([np.int64, np.float64, np.bool_]),
               shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(error=_ERRORS)
def test_any_set_error_is_kept_and_never_counted_as_a_bad_event(tmp_path, error):
    event_log = EventLog(tmp_path / "events.jsonl", sample_rate=0.0)
    try:
        event_log._queue.clear()
        event_log.emit({"model": "m", "error": error})
        # Kept: queued for the writer or already taken by it, never dropped.
        assert event_log.dropped_counts()["serialize_error"] == 0
        assert event_log.flush(10)
        assert event_log.dropped_counts() == dict.fromkeys(event_log.dropped_counts(), 0)
    finally:
        event_log.close()


@pytest.mark.parametrize("error", [None, "", False])
def test_an_unset_error_is_sampled(tmp_path, error):
    path = tmp_path / "events.jsonl"
    event_log = EventLog(path, sample_rate=0.0)
    try:
        event_log.emit({"model": "m", "request_id": "r-1", "error": error})
        assert event_log.flush(10)
        assert stored_events(path) == []
    finally:
        event_log.close()


# --- emit racing close ----------------------------------------------------------------------------

class _CloseBeforeAppend(deque):
    """A queue whose first append of an event runs `close()` first: the emit checked the
    log open, then close() and its writer's last drain ran, then the append landed."""

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self.event_log = event_log
        self.fired = False

    def append(self, item) -> None:
        if isinstance(item, dict) and not self.fired:
            self.fired = True
            self.event_log.close(10)
            assert not self.event_log._thread.is_alive()
        super().append(item)


def test_an_event_emitted_while_the_log_closes_is_counted_not_stranded(tmp_path):
    event_log = EventLog(tmp_path / "events.jsonl")
    event_log._queue = _CloseBeforeAppend(event_log)
    event_log.emit({"model": "m", "request_id": "r-late"})
    assert event_log._queue.fired
    assert len(event_log._queue) == 0
    assert event_log.dropped_counts()["closed"] == 1
    assert event_log.flush(1)


def test_events_queued_when_the_writer_ends_are_counted_as_closed(tmp_path):
    """The writer's last look at the queue counts what an emit slipped in behind it."""
    event_log = EventLog(tmp_path / "events.jsonl")
    drained = threading.Event()
    original = event_log._drain

    def drain():
        result = original()
        if event_log._stopping and not result[0] and not result[1] and not drained.is_set():
            drained.set()
            # An emit that saw the log open lands after the writer's last (empty) drain.
            deque.append(event_log._queue, {"model": "m", "request_id": "r-late"})
        return result

    event_log._drain = drain
    event_log.close(10)
    assert drained.is_set()
    assert not event_log._thread.is_alive()
    assert len(event_log._queue) == 0
    assert event_log.dropped_counts()["closed"] == 1


# --- following in bounded memory --------------------------------------------------------------

def _append_rows(path: Path, first: int, count: int, size: int = 10_000) -> None:
    with path.open("ab") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"ts": 1_700_000_000.0 + i, "request_id": f"r-{i}",
                                "inputs": "x" * size}).encode() + b"\n")


def _read_in_pieces(poll: Callable[[], list]) -> tuple[int, str]:
    """Polls (200 at most) until one brings no line: how many lines came, and the request id
    of the last, holding one poll's lines at a time."""
    seen = 0
    last = ""
    for _ in range(200):
        lines = poll()
        if not lines:
            break
        seen += len(lines)
        last = json.loads(lines[-1])["request_id"]
        del lines
    return seen, last


def test_following_a_burst_reads_it_in_bounded_pieces(tmp_path):
    path = tmp_path / "events.jsonl"
    _append_rows(path, 0, 1)
    offsets, stats = follow_from_end(path)
    _append_rows(path, 1, 3_000)  # about 30 MB between two polls
    (seen, last), peak = traced_peak(
        lambda: _read_in_pieces(lambda: jsonl.follow_jsonl(path, offsets, stats)))
    assert (seen, last) == (3_000, "r-3000")
    assert peak < 8_000_000, peak


def test_following_a_file_emptied_and_refilled_reads_it_in_bounded_pieces(tmp_path):
    path = tmp_path / "events.jsonl"
    _append_rows(path, 0, 5)
    offsets, stats = follow_from_end(path)
    with path.open("r+b") as f:
        f.truncate(0)  # copytruncate
    _append_rows(path, 100, 2_000)
    lines, peak = traced_peak(lambda: jsonl.follow_jsonl(path, offsets, stats))
    assert json.loads(lines[0])["request_id"] == "r-100"
    assert peak < 8_000_000, peak


def test_follow_prints_a_backlog_and_a_line_longer_than_a_read_without_waiting(
        tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.jsonl"
    _append_rows(path, 0, 1, size=10)
    sleeps: list[float] = []

    def grow() -> None:
        _append_rows(path, 1, 300)  # about 3 MB: several reads
        _append_rows(path, 301, 1, size=3 << 20)  # one line of 3 MiB

    steps = iter([grow])

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        step = next(steps, None)
        if step is None:
            raise KeyboardInterrupt  # how a user ends --follow
        step()

    monkeypatch.setattr(events_cli, "time", types.SimpleNamespace(sleep=sleep, time=time.time))
    code = main(["events", "tail", str(path), "-n", "1", "--follow"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    ids = [json.loads(line)["request_id"] for line in out.splitlines()]
    assert ids == [f"r-{i}" for i in range(302)]
    assert len(sleeps) == 2  # one wait before the burst, one after it was all printed


def test_following_an_sqlite_log_reads_a_burst_in_bounded_pieces(tmp_path):
    from inferwatch.events import sqlite

    path = tmp_path / "events.db"
    event_log = EventLog(path, max_bytes=200 << 20, max_event_bytes=32 << 10)
    try:
        event_log.emit({"request_id": "r-0"})
        assert event_log.flush(30)
        lines, cursor = sqlite.follow_sqlite(path, 0)
        assert len(lines) == 1
        for i in range(1, 1_501):  # about 15 MB between two polls
            event_log.emit({"request_id": f"r-{i}", "inputs": {"text": "x" * 10_000}})
        assert event_log.flush(60)
        assert event_log.dropped_counts() == dict.fromkeys(event_log.dropped_counts(), 0)
    finally:
        event_log.close()

    def poll() -> list[str]:
        nonlocal cursor
        lines, cursor = sqlite.follow_sqlite(path, cursor)
        return lines

    (seen, last), peak = traced_peak(lambda: _read_in_pieces(poll))
    assert (seen, last) == (1_500, "r-1500")
    assert peak < 8_000_000, peak
