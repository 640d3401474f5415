"""Helpers the event-log tests (tests/test_event*.py) share: writing and reading back a log,
a writer made to die on demand, following a log through `inferwatch events tail --follow`
with no real waits, and the memory a read takes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import pytest

from inferwatch.cli import main
from inferwatch.events import EventLog, jsonl
from inferwatch.events import cli as events_cli
from inferwatch.events.sinks import ReadStats

T = TypeVar("T")


# --- writing and reading back -------------------------------------------------------------------

def write_events(path: Path, ids: list[str]) -> None:
    """Opens a log at `path`, emits one event per request id, waits until they are written
    and closes it again."""
    event_log = EventLog(path)
    for request_id in ids:
        event_log.emit({"request_id": request_id})
    assert event_log.flush(60)
    event_log.close()


def write_jsonl_files(directory: Path, files: list[list[float]]) -> list[bytes]:
    """The log's files, each with its times in the given order; every line in the order a
    query prints them (by time, then file, then place in the file)."""
    keyed = []
    for number, times in enumerate(files):
        lines = [json.dumps({"ts": ts, "model": "m", "n": number, "i": i}).encode()
                 for i, ts in enumerate(times)]
        (directory / f"events.{number + 1:020d}.1.jsonl").write_bytes(
            b"".join(line + b"\n" for line in lines))
        keyed += [((ts, number, i), line) for i, (ts, line) in enumerate(zip(times, lines))]
    return [line for _, line in sorted(keyed)]


def stored_events(path: Path) -> list[dict]:
    """Every event in the JSONL log at `path`, across its files, blank lines passed over."""
    return [json.loads(line) for file in jsonl.event_files(path)
            for line in file.read_bytes().splitlines() if line]


# --- the writer thread --------------------------------------------------------------------------

def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Whether `condition()` came true within `timeout` seconds (polled every 10 ms); unlike
    waiting.wait_until it does not fail the test, for callers that only want to let time
    pass until something holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


class Interrupted(BaseException):
    """What no ``except Exception`` catches, as gevent's GreenletExit or trio's Cancelled."""


def drain_dies_when_set(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Patches ``EventLog._drain`` to raise `Interrupted` (a bug outside the batch) once each
    time the returned event is set; see `kill_writer`."""
    real_drain = EventLog._drain
    die = threading.Event()

    def drain(self: EventLog) -> None:
        if die.is_set():
            die.clear()
            raise Interrupted("a bug outside the batch")
        return real_drain(self)

    monkeypatch.setattr(EventLog, "_drain", drain)
    return die


def kill_writer(event_log: EventLog, die: threading.Event) -> None:
    """Ends the writer thread of `event_log` through the `die` of `drain_dies_when_set`."""
    die.set()
    event_log._wake.set()
    assert wait_for(lambda: not event_log._thread.is_alive())


# Appended to a script: from its exit on, no thread can be started, as in Python 3.12 once
# the interpreter shuts down ("can't create new thread at interpreter shutdown"). Registered
# last, this exit hook runs before inferwatch's own.
NO_THREADS_AT_EXIT = """
import atexit as _atexit, threading as _threading

def _refuse_threads():
    def start(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")
    _threading.Thread.start = start

_atexit.register(_refuse_threads)
"""
THREADS_AT_EXIT = {"threads": "", "no threads (3.12)": NO_THREADS_AT_EXIT}


def run_python(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`script` run in a fresh interpreter (its own exit flush, its own threads); fails the
    test with its stderr unless it exits 0."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


# --- following ----------------------------------------------------------------------------------

def follow_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
               path: Path, between_polls: list[Callable[[], None]],
               *flags: str) -> tuple[int, str, str]:
    """`inferwatch events tail PATH FLAGS --follow`: its status, stdout and stderr, each step
    of `between_polls` run in place of a poll's wait and Ctrl-C after the last."""
    steps = iter(between_polls)

    def sleep(_seconds: float) -> None:
        step = next(steps, None)
        if step is None:
            raise KeyboardInterrupt  # what ends --follow for a user
        step()

    monkeypatch.setattr(events_cli, "time", types.SimpleNamespace(sleep=sleep, time=time.time))
    code = main(["events", "tail", str(path), *flags, "--follow"])
    out, err = capsys.readouterr()
    return code, out, err


def follow_from_end(path: Path) -> tuple[dict, ReadStats]:
    """The offsets and read counts of a follower started at the end of the JSONL log at
    `path`, as `tail -n 0 --follow` starts."""
    offsets: dict = {}
    stats = ReadStats()
    jsonl.tail_jsonl(path, 0, stats, offsets)
    return offsets, stats


def follow_until_caught_up(path: Path, offsets: dict, stats: ReadStats,
                           polls: int) -> list[bytes]:
    """The lines of `follow_jsonl_batch` polls, until one is no longer behind or after
    `polls` of them."""
    seen: list[bytes] = []
    for _ in range(polls):
        lines, behind = jsonl.follow_jsonl_batch(path, offsets, stats)
        seen += lines
        if not behind:
            break
    return seen


class CountingFile(io.FileIO):
    """A file that adds every byte read from it to the class's `read_bytes`."""

    read_bytes = 0

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = super().readinto(buffer)
        CountingFile.read_bytes += n or 0
        return n

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        CountingFile.read_bytes += len(data or b"")
        return data


def count_jsonl_reads(monkeypatch: pytest.MonkeyPatch) -> type[CountingFile]:
    """Makes the JSONL reader open every file as a `CountingFile`, its count at 0."""
    monkeypatch.setattr(jsonl, "open", lambda p, mode="rb": io.BufferedReader(CountingFile(p)),
                        raising=False)
    CountingFile.read_bytes = 0
    return CountingFile


# --- memory -------------------------------------------------------------------------------------

def traced_peak(action: Callable[[], T]) -> tuple[T, int]:
    """What `action()` returns, and the peak bytes Python allocated while it ran."""
    tracemalloc.start()
    try:
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def peak_bytes_reading(read: Callable[[], Iterable[bytes]]) -> tuple[int, int]:
    """(lines read, peak bytes Python allocated to get them and read them one at a time)."""
    return traced_peak(lambda: sum(1 for _ in read()))
