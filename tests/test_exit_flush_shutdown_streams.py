"""The end of a process: `inferwatch.multiproc.shutdown()` (the lifespan recipe for uvicorn,
which re-raises SIGTERM after its shutdown, past Python's exit handlers) folds and flushes
the event log in every mode, and streams still open when a process ends are recorded as
cancelled before the last drain, publish and flush. Each case runs in a real process that
really exits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from event_log_helpers import stored_events
from family_samples import samples
from inferwatch.multiproc.store import SnapshotDirectory
from processes import serving_app

REQUESTS = 12


def read_events(path: Path) -> list[dict]:
    """Every event stored at `path`, a JSONL log or an SQLite database."""
    if path.suffix == ".db":
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path)) as connection:
            return [json.loads(body) for (body,) in connection.execute(
                "SELECT body FROM events ORDER BY id")]
    return stored_events(path)


def merged_total(directory: Path, **labels: str) -> float:
    """inferwatch_requests_total of every worker's snapshot merged, as a scrape serves it."""
    now = time.time()
    families = SnapshotDirectory(str(directory)).read_view(now).families(now)
    return sum(samples(families, "inferwatch_requests_total", **labels))


# --- uvicorn stopped by SIGTERM, the lifespan calling shutdown() ------------------------------

LIFESPAN_APP = """
import os

import inferwatch
import inferwatch.multiproc

model = inferwatch.instrument(lambda x: x * 2, name="scorer", version="1",
                              events=os.environ["APP_EVENTS"])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                inferwatch.multiproc.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/score":
        model(1.5)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.mark.integration
@pytest.mark.parametrize(("workers", "suffix", "multiproc"), [
    (1, "jsonl", False), (1, "db", False), (1, "jsonl", True), (2, "jsonl", True)])
def test_uvicorn_stopped_by_sigterm_writes_every_event_when_its_lifespan_calls_shutdown(
        tmp_path: Path, workers: int, suffix: str, multiproc: bool) -> None:
    """uvicorn re-raises SIGTERM once its lifespan has shut down, so no exit handler runs:
    the events of the calls still waiting for the background drain (all of them, a few
    seconds after they were made) were lost, in every mode, even with the documented
    lifespan recipe. shutdown() drained the calls for the multi-worker snapshot but never
    flushed the event log, and without a multi-worker directory it did nothing at all."""
    (tmp_path / "lifespan_app.py").write_text(LIFESPAN_APP)
    events = tmp_path / f"events.{suffix}"
    env = {"APP_EVENTS": str(events)}
    snapshots = tmp_path / "snapshots"
    if multiproc:
        snapshots.mkdir()
        env["INFERWATCH_MULTIPROC_DIR"] = str(snapshots)
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "lifespan_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    with serving_app(args, port, app_dir=tmp_path, log_dir=tmp_path, ready_path="/ready",
                     env=env) as url:
        for _ in range(REQUESTS):
            with urllib.request.urlopen(f"{url}/score", timeout=30) as response:
                assert response.status == 200
    # serving_app stopped it with SIGTERM and waited for it to exit.
    log = (tmp_path / "server.log").read_text()
    scored = [event for event in read_events(events) if event.get("model") == "scorer"]
    assert len(scored) == REQUESTS, log
    if multiproc:
        assert merged_total(snapshots, model="scorer", outcome="ok") == REQUESTS, log


# --- streams still open when the process ends ----------------------------------------------

OPEN_STREAMS = """
import asyncio, os, signal, sys

import inferwatch
import inferwatch.multiproc

events = os.environ["APP_EVENTS"]


def tokens(prompt):
    for i in range(10):
        yield f"tok{i} "


async def async_tokens(prompt):
    for i in range(10):
        yield f"tok{i} "
        await asyncio.sleep(0)


class SdkStream:  # an SDK's stream object: no generator
    def __init__(self):
        self.left = 5

    def __iter__(self):
        return self

    def __next__(self):
        if not self.left:
            raise StopIteration
        self.left -= 1
        return "chunk"


def model(name, fn, **options):
    return inferwatch.instrument(fn, name=name, version="1", events=events, **options)


# Each kept in a global, unfinished, until the interpreter ends.
HALF_READ = model("half_read", tokens)("hi")
next(HALF_READ)
NEVER_READ = model("never_read", tokens)("hi")
COUNTED = model("counted", tokens, count_tokens=lambda text: len(text.split()))("hi there")
next(COUNTED)
COUNTED_NEVER_READ = model("counted_never_read", tokens,
                           count_tokens=lambda text: len(text.split()))("hi there")
SDK = model("sdk", lambda prompt: SdkStream())("hi")
next(SDK)
ASYNC_NEVER_READ = model("async_never_read", async_tokens)("hi")
loop = asyncio.new_event_loop()  # closed without shutdown_asyncgens(): the stream stays open
ASYNC_HALF_READ = model("async_half_read", async_tokens)("hi")
loop.run_until_complete(ASYNC_HALF_READ.__anext__())
loop.close()
CLOSED = model("closed", tokens)("hi")
next(CLOSED)
CLOSED.close()  # ended by its consumer: recorded once, never again at exit
DONE = model("done", tokens)("hi")
list(DONE)

if sys.argv[1] == "shutdown_then_sigterm":  # what uvicorn does after the lifespan
    inferwatch.multiproc.shutdown()
    inferwatch.multiproc.shutdown()  # idempotent
    os.kill(os.getpid(), signal.SIGTERM)
elif sys.argv[1] == "fork":
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a child that exits through the exit handlers: the streams are not its
    os.waitpid(pid, 0)
print("exiting", flush=True)
"""

STREAMS = {"half_read": 1, "never_read": 0, "counted": 1, "counted_never_read": 0, "sdk": 1,
           "async_never_read": 0, "async_half_read": 1}


@pytest.mark.parametrize(("ending", "multiproc"), [
    ("exit", False), ("exit", True), ("shutdown_then_sigterm", False),
    ("shutdown_then_sigterm", True), ("fork", True)])
def test_streams_open_when_the_process_ends_are_recorded_as_cancelled(
        tmp_path: Path, ending: str, multiproc: bool) -> None:
    """A stream still open and referenced when the interpreter ended (a generator half read
    or never read, a token-counted one, an SDK stream's proxy, an async stream whose loop
    closed) was collected after the exit's drain, publish and flush had run: recorded
    nowhere, though a stream dropped unfinished counts as cancelled. A forked child that
    exits leaves its parent's streams to its parent."""
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "APP_EVENTS": str(events)}
    env.pop("INFERWATCH_MULTIPROC_DIR", None)
    snapshots = tmp_path / "snapshots"
    if multiproc:
        snapshots.mkdir()
        env["INFERWATCH_MULTIPROC_DIR"] = str(snapshots)
    result = subprocess.run([sys.executable, "-c", OPEN_STREAMS, ending], capture_output=True,
                            text=True, timeout=120, env=env)
    expected_rc = -signal.SIGTERM if ending == "shutdown_then_sigterm" else 0
    assert result.returncode == expected_rc, result.stderr
    stored = read_events(events)
    for name, items in STREAMS.items():
        mine = [event for event in stored if event["model"] == name]
        assert [event["stream"]["outcome"] for event in mine] == ["cancelled"], (name, stored)
        assert mine[0]["stream"].get("items", 0) == items, (name, mine)
        if multiproc:
            assert merged_total(snapshots, model=name, outcome="cancelled") == 1, name
            assert merged_total(snapshots, model=name) == 1, name
    # Ended before the exit, each once, as they ended.
    assert [event["stream"]["outcome"] for event in stored if event["model"] == "closed"] == \
        ["cancelled"]
    assert [event["stream"]["outcome"] for event in stored if event["model"] == "done"] == ["ok"]
    if multiproc:
        assert merged_total(snapshots, model="closed") == 1
        assert merged_total(snapshots, model="done", outcome="ok") == 1


# --- shutdown() in a process that goes on ----------------------------------------------------

GOES_ON = """
import os, sys
from pathlib import Path

import inferwatch
import inferwatch.multiproc
from inferwatch.events.jsonl import event_files

model = inferwatch.instrument(lambda x: x + 1, name="scorer", version="1",
                              events=os.environ["APP_EVENTS"])
for i in range(3):
    model(i)
inferwatch.multiproc.shutdown()
print(sum(len(file.read_bytes().splitlines()) for file in event_files(Path(sys.argv[1]))),
      flush=True)
for i in range(4):
    model(i)
"""


def test_shutdown_writes_the_events_so_far_and_later_ones_still_reach_the_exit_flush(
        tmp_path: Path) -> None:
    """shutdown() flushes the events of the calls made so far at once (none of them had been
    drained yet); a process that goes on after it still has its later events written by the
    exit flush."""
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "APP_EVENTS": str(events)}
    env.pop("INFERWATCH_MULTIPROC_DIR", None)
    result = subprocess.run([sys.executable, "-c", GOES_ON, str(events)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3"]
    assert len(read_events(events)) == 7
