"""JSON lines retention and reading order after the wall clock steps back.

A step back leaves the files written before it with mtimes ahead of the clock: setting
them an hour ahead is what a step back of an hour leaves on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from inferwatch.events import jsonl
from inferwatch.events.jsonl import JsonlSink, event_files
from inferwatch.events.sinks import Query, ReadStats, Record

STEP_S = 3600


def _record(n: int, ts: float | None = None, writer: str = "w") -> Record:
    line = json.dumps({"ts": n if ts is None else ts, "n": n, "writer": writer,
                       "pad": "x" * 60}, separators=(",", ":")).encode()
    return Record(float(n), "m", None, f"r-{n}", None, None, line)


def _step_clock_back(base: Path, seconds: float = STEP_S) -> None:
    for file in event_files(base):
        st = file.stat()
        os.utime(file, (st.st_atime + seconds, st.st_mtime + seconds))


def _kept(base: Path) -> list[dict]:
    return [json.loads(line) for file in event_files(base)
            for line in file.read_text().splitlines()]


def test_retention_after_a_step_back_keeps_the_newest_events(tmp_path):
    base = tmp_path / "events.jsonl"
    sink = JsonlSink(base, max_bytes=4000, rotate_bytes=1000)
    line_bytes = len(_record(0).line) + 1
    for n in range(40):
        sink.write([_record(n)])
    _step_clock_back(base)
    for n in range(40, 80):
        sink.write([_record(n)])
        kept = sorted(event["n"] for event in _kept(base))
        # What retention keeps is always the newest events, never a gap before them.
        assert kept == list(range(kept[0], n + 1)), kept
    sink.close()
    # Whole files go, so up to a file less than the bound is kept; everything written
    # after the step fits in that.
    assert len(kept) * line_bytes > 4000 - 1000 - line_bytes
    assert sum(file.stat().st_size for file in event_files(base)) <= 4000


def test_files_written_before_a_step_back_are_read_first(tmp_path):
    base = tmp_path / "events.jsonl"
    sink = JsonlSink(base, max_bytes=1 << 20, rotate_bytes=200)
    # Equal times: the order of the files is all that orders the events.
    for n in range(6):
        sink.write([_record(n, ts=1.0)])
    _step_clock_back(base)
    for n in range(6, 12):
        sink.write([_record(n, ts=1.0)])
    sink.close()
    assert len(event_files(base)) > 4
    assert [event["n"] for event in _kept(base)] == list(range(12))
    printed = [json.loads(line)["n"] for line in jsonl.query_jsonl(base, Query(), ReadStats())]
    assert printed == list(range(12))


def test_an_mtime_just_ahead_of_the_clock_still_reads_as_written_now(tmp_path):
    # A file server's clock a little ahead of this host's: its files are the newest.
    now = time.time()
    older = tmp_path / f"events.{time.time_ns() - 10**10:020d}.1.jsonl"
    newer = tmp_path / f"events.{time.time_ns():020d}.2.jsonl"
    for path, mtime in ((older, now - 10), (newer, now + 1)):
        path.write_bytes(_record(0).line + b"\n")
        os.utime(path, (mtime, mtime))
    assert event_files(tmp_path / "events.jsonl") == [older, newer]
    sink = JsonlSink(tmp_path / "events.jsonl", max_bytes=2 * older.stat().st_size + 10,
                     rotate_bytes=1000)
    sink.write([_record(1)])
    sink.close()
    assert not older.exists()
    assert newer.exists()


_WRITER = """
import json, sys
from pathlib import Path
from inferwatch.events.jsonl import JsonlSink
from inferwatch.events.sinks import Record

base, writer, first, last = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sink = JsonlSink(base, max_bytes=6000, rotate_bytes=1000)
for n in range(first, last):
    line = json.dumps({"ts": n, "n": n, "writer": writer, "pad": "x" * 60},
                      separators=(",", ":")).encode()
    sink.write([Record(float(n), "m", None, f"r-{n}", None, None, line)])
sink.close()
"""


def _run_writers(base: Path, first: int, last: int) -> None:
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(base), name,
                                 str(first), str(last)], stderr=subprocess.PIPE)
               for name in ("a", "b")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()


def test_several_processes_keep_what_they_wrote_after_a_step_back(tmp_path):
    base = tmp_path / "events.jsonl"
    _run_writers(base, 0, 60)
    _step_clock_back(base)
    # Together, what the two write after the step fits in the bound: retention
    # may only take what was written before it.
    _run_writers(base, 60, 85)
    assert sum(file.stat().st_size for file in event_files(base)) <= 6000
    events = _kept(base)
    for name in ("a", "b"):
        kept = [event["n"] for event in events if event["writer"] == name]
        before = [n for n in kept if n < 60]
        assert [n for n in kept if n >= 60] == list(range(60, 85)), (name, kept)
        # Of what each wrote before the step, the oldest went first.
        assert before == list(range(60 - len(before), 60)), (name, kept)
    assert any(event["n"] < 60 for event in events)  # retention took only what it needed
