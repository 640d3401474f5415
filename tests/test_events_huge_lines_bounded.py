"""Event log, sixth pass: reading back a log with enormous lines in bounded memory and
bounded work, and a dead writer's queued events written without a further emit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_log_helpers import (
    THREADS_AT_EXIT,
    count_jsonl_reads,
    drain_dies_when_set,
    follow_from_end,
    follow_until_caught_up,
    kill_writer,
    run_python,
    stored_events,
    traced_peak,
    wait_for,
)
from inferwatch.cli import main
from inferwatch.events import jsonl
from inferwatch.events import log as log_module
from inferwatch.events.sinks import Query, ReadStats

HUGE = 12 << 20


def _run_measured(argv: list[str]) -> tuple[int, int]:
    """`inferwatch events ARGV`: its status and the peak of memory it allocated."""
    return traced_peak(lambda: main(["events", *argv]))


# --- tail -n and query over a file of one enormous line -----------------------------------------

@pytest.fixture
def small_line_bound(monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 2 << 20)


@pytest.mark.parametrize("action", [["tail", "-n", "5"], ["query"], ["query", "--limit", "1"]])
def test_reading_a_foreign_file_of_one_huge_line_holds_a_bounded_amount(
        tmp_path, capsysbinary, small_line_bound, action):
    # A data dump or a core file left at the log's path: one line far past any event.
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n')
        f.write(b'{"ts": 2.0, "inputs": "' + b"x" * HUGE + b'"}\n')
        f.write(b'{"ts": 3.0, "request_id": "r-3"}\n')
    code, peak = _run_measured([*action, str(path)])
    out, err = capsysbinary.readouterr()
    assert code == 0
    ids = [json.loads(line)["request_id"] for line in out.splitlines()]
    assert ids == (["r-1"] if "--limit" in action else ["r-1", "r-3"])
    assert b"skipped 1 unreadable lines" in err
    assert peak < 6_000_000, peak


@pytest.mark.parametrize("action", [["tail"], ["query"]])
def test_a_huge_unterminated_last_line_is_skipped_quietly_in_bounded_memory(
        tmp_path, capsysbinary, small_line_bound, action):
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n')
        f.write(b"z" * HUGE)  # a foreign writer still at it: no record yet
    code, peak = _run_measured([*action, str(path)])
    out, err = capsysbinary.readouterr()
    assert code == 0
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["r-1"]
    assert b"unreadable" not in err
    assert peak < 6_000_000, peak


def test_following_after_tail_starts_past_a_skipped_huge_line(tmp_path, small_line_bound):
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n')
        f.write(b"q" * HUGE + b"\n\n\n")
    offsets: dict = {}
    stats = ReadStats()
    lines, peak = traced_peak(lambda: jsonl.tail_jsonl(path, 3, stats, offsets))
    assert [json.loads(line)["request_id"] for line in lines] == ["r-1"]
    assert stats.unreadable == 1
    assert peak < 6_000_000, peak
    with path.open("ab") as f:
        f.write(b'{"ts": 4.0, "request_id": "r-4"}\n')
    new, _ = jsonl.follow_jsonl_batch(path, offsets, stats)
    assert [json.loads(line)["request_id"] for line in new] == ["r-4"]
    assert stats.unreadable == 1  # the huge line is not read (nor counted) again


def test_lines_right_at_the_bound_are_kept_and_one_past_it_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 100)
    path = tmp_path / "events.jsonl"

    def line(ts: float, size: int) -> bytes:
        head = b'{"ts": %d, "pad": "' % ts
        return head + b"p" * (size - len(head) - 2) + b'"}'

    at, past = line(1, 100), line(2, 101)
    assert (len(at), len(past)) == (100, 101)
    path.write_bytes(at + b"\n" + past + b"\n" + line(3, 50) + b"\n")
    stats = ReadStats()
    assert jsonl.tail_jsonl(path, 10, stats) == [at, line(3, 50)]
    assert stats.unreadable == 1


# --- following an unterminated line that keeps growing -----------------------------------------

def test_following_a_growing_unterminated_line_does_not_read_it_again_each_poll(
        tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"ts": 1.0, "request_id": "r-0"}\n')
    offsets, stats = follow_from_end(path)
    with path.open("ab") as f:
        f.write(b'{"ts": 2.0, "inputs": "' + b"g" * (8 << 20))
    counted = count_jsonl_reads(monkeypatch)
    assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
    per_poll = []
    for _ in range(5):
        with path.open("ab") as f:
            f.write(b"g" * 1000)
        counted.read_bytes = 0
        assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
        per_poll.append(counted.read_bytes)
    # About the first megabyte and what arrived since, not the whole 8 MiB line again.
    assert max(per_poll) < 2 << 20, per_poll
    with path.open("ab") as f:
        f.write(b'"}\n{"ts": 3.0, "request_id": "r-3"}\n')
    seen = follow_until_caught_up(path, offsets, stats, 10)
    assert [json.loads(line).get("request_id") for line in seen] == [None, "r-3"]
    assert len(json.loads(seen[0])["inputs"]) == (8 << 20) + 5000
    assert stats.unreadable == 0


def test_a_file_cut_back_while_a_line_was_unterminated_is_read_from_its_start(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    offsets, stats = follow_from_end(path)
    path.write_bytes(b"h" * (3 << 20))  # unterminated: looked through to its end
    assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
    # copytruncate, then new records, shorter than what was looked through
    with path.open("r+b") as f:
        f.truncate(0)
        f.write(b'{"ts": 5.0, "request_id": "r-5"}\n')
    lines, _ = jsonl.follow_jsonl_batch(path, offsets, stats)
    assert [json.loads(line)["request_id"] for line in lines] == ["r-5"]


# --- a dead writer's queue is written without waiting for another emit ---------------------------

def test_events_queued_while_a_restart_is_not_due_are_written_when_it_is(
        tmp_path, monkeypatch, make_log):
    monkeypatch.setattr(log_module, "RESTART_BACKOFF_SECONDS", (0.3,))
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    die = drain_dies_when_set(monkeypatch)
    kill_writer(event_log, die)
    event_log.emit({"request_id": "r-0"})  # the first restart is at once
    assert event_log.flush(10)
    kill_writer(event_log, die)
    for i in range(1, 4):
        event_log.emit({"request_id": f"r-{i}"})  # the next restart is not due yet
    # Nothing else is emitted or flushed: the events still get written.
    assert wait_for(lambda: len(stored_events(path)) == 4, 5.0), stored_events(path)
    assert [e["request_id"] for e in stored_events(path)] == ["r-0", "r-1", "r-2", "r-3"]
    assert event_log.dropped_counts() == dict.fromkeys(event_log.dropped_counts(), 0)


@pytest.mark.parametrize("at_exit", THREADS_AT_EXIT)
def test_the_exit_flush_writes_what_a_dead_writer_left_queued(tmp_path, at_exit):
    # A process that ends while its writer's restart is held back by the back-off.
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent(f"""
        import threading, time
        from inferwatch.events import EventLog
        from inferwatch.events import log as log_module

        class Interrupted(BaseException):
            pass

        event_log = EventLog({str(path)!r})
        real_drain = EventLog._drain
        die = threading.Event()

        def drain(self):
            if die.is_set():
                die.clear()
                raise Interrupted("dead")
            return real_drain(self)

        EventLog._drain = drain
        die.set(); event_log._wake.set()
        event_log._thread.join(10)
        assert not event_log._thread.is_alive()
        event_log._restart_at = time.monotonic() + 3600  # a restart far from due
        for i in range(5):
            event_log.emit({{"request_id": f"r-{{i}}"}})
        assert len(event_log._queue) == 5
    """) + THREADS_AT_EXIT[at_exit]
    run_python(script)
    assert [e["request_id"] for e in stored_events(path)] == [f"r-{i}" for i in range(5)]


# --- foreign lines with odd ts values ---------------------------------------------------------

_ODD_TS = st.one_of(
    st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(), st.booleans(), st.text(max_size=5),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ODD_TS, min_size=1, max_size=8))
def test_any_json_ts_is_read_back_by_tail_and_query_without_raising(stamps):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.jsonl"
        lines = [json.dumps({"ts": ts, "request_id": f"r-{i}"}).encode() for i, ts in
                 enumerate(stamps)]
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        stats = ReadStats()
        assert sorted(jsonl.tail_jsonl(path, len(lines), stats)) == sorted(lines)
        assert sorted(jsonl.query_jsonl(path, Query(), stats)) == sorted(lines)
        windowed = list(jsonl.query_jsonl(path, Query(since=-1e300, until=1e300), stats))
        offsets: dict = {}
        jsonl.tail_jsonl(path, 0, stats, offsets)
        with path.open("ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))
        assert sorted(jsonl.follow_jsonl(path, offsets, stats)) == sorted(lines)
        assert stats.unreadable == 0
    # An event without a time (NaN, text, none) is in no time window.
    expected = [line for line, ts in zip(lines, stamps) if isinstance(ts, (int, float))
                and ts == ts and -1e300 <= ts <= 1e300]
    assert sorted(windowed) == sorted(expected)


def test_a_huge_integer_ts_through_the_command_line(tmp_path, capsysbinary):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"ts": 1' + b"0" * 400 + b', "request_id": "late"}\n'
                     b'{"ts": 2.0, "request_id": "r-2"}\n')
    for action in (["tail"], ["query"], ["query", "--since", "1"]):
        assert main(["events", *action, str(path)]) == 0
        out, err = capsysbinary.readouterr()
        assert [json.loads(line)["request_id"] for line in out.splitlines()] == \
            ["r-2", "late"], action
        assert err == b""


# --- hostile entries beside the log -------------------------------------------------------------

def test_a_fifo_or_directory_named_like_a_log_file_is_not_read(tmp_path):
    path = tmp_path / "events.jsonl"
    (tmp_path / f"events.{1:020d}.1.jsonl").write_bytes(b'{"ts": 1.0, "request_id": "r-1"}\n')
    os.mkfifo(tmp_path / f"events.{2:020d}.2.jsonl")
    (tmp_path / f"events.{3:020d}.3.jsonl").mkdir()
    script = textwrap.dedent(f"""
        import sys
        from inferwatch.cli import main
        sys.exit(main(["events", "query", {str(path)!r}]))
    """)
    # In a child: a FIFO opened for reading blocks until a writer comes, for good.
    result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["request_id"] for line in result.stdout.splitlines()] == ["r-1"]
