"""EventLog: reliability requirement 10 and the non-blocking, never-raising request path."""

from __future__ import annotations

import contextlib
import doctest
import errno
import fcntl
import hmac
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

import inferwatch.events as events_pkg
from inferwatch.events import (
    REASONS,
    DroppedEventsCollector,
    EventLog,
    dropped_totals,
    hash_value,
    jsonl,
    log,
    redact,
    sinks,
    sqlite,
)
from inferwatch.events import clean as cleaning
from inferwatch.events import cli as events_cli
from inferwatch.events.clean import clean, clean_text
from inferwatch.events.dropped import values_dropped_totals
from inferwatch.events.jsonl import JsonlSink, event_files

SECRET = b"s3cret-key-for-tests-0123456789"


def read_events(path: Path) -> list[dict]:
    if path.suffix == ".db":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return [json.loads(body) for (body,) in conn.execute(
                "SELECT body FROM events ORDER BY id")]
    out = []
    for file in event_files(path):
        data = file.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{file} ends inside a record"
        out.extend(json.loads(line) for line in data.splitlines())
    return out


def all_bytes(directory: Path) -> bytes:
    # The link at the configured path would count its target's bytes twice.
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def dir_size(directory: Path) -> int:
    total = 0
    for p in directory.iterdir():
        if p.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            total += p.stat().st_size
    return total


def locked_dir_size(directory: Path, stem: str = "events") -> int:
    """The log's size seen between two writes: under the lock every writer takes."""
    lock = directory / f".{stem}.jsonl.lock"
    if not lock.exists():
        return dir_size(directory)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return dir_size(directory)
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["events.jsonl", "events.db"])
def test_redacted_fields_never_reach_disk(tmp_path, make_log, name):
    path = tmp_path / name
    event_log = make_log(path, redact=["inputs.ssn", "features.*.raw_address"],
                         hash_fields=["inputs.email", "user_id"], secret=SECRET)
    event_log.emit({"model": "fraud", "request_id": "r-1", "user_id": "U-4417-PLAIN",
                    "inputs": [{"ssn": "078-05-1120", "email": "jane.doe@example.org"},
                               {"ssn": "219-09-9999", "email": "john@example.org", "age": 40}],
                    "features": {"home": {"raw_address": "12 Secret Lane", "km": 3.5}},
                    "error": ValueError("cannot parse 078-05-1120")})
    assert event_log.flush(10)
    event_log.close()
    disk = all_bytes(tmp_path)
    for plain in [b"078-05-1120", b"219-09-9999", b"jane.doe@example.org", b"john@example.org",
                  b"U-4417-PLAIN", b"Secret Lane", b"cannot parse"]:
        assert plain not in disk
    (event,) = read_events(path)
    assert event["inputs"][0]["email"] == hash_value(SECRET, "jane.doe@example.org")
    digest = event["user_id"].removeprefix("hmac-sha256:")
    assert hmac.compare_digest(digest, hmac.new(SECRET, b"U-4417-PLAIN", "sha256").hexdigest())
    assert event["inputs"][1] == {"email": hash_value(SECRET, "john@example.org"), "age": 40}
    assert event["features"] == {"home": {"km": 3.5}}
    assert event["error"] == {"type": "ValueError"}


@given(st.text(min_size=8, max_size=30, alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789"))
@settings(max_examples=20, deadline=None)
def test_any_dropped_value_is_absent_from_every_file(secret_value):
    directory = Path(tempfile.mkdtemp())
    try:
        event_log = EventLog(directory / "events.jsonl", redact=["inputs.token"])
        for i in range(3):
            event_log.emit({"request_id": f"r{i}", "inputs": {"token": secret_value, "i": i}})
        event_log.close()
        assert secret_value.encode() not in all_bytes(directory)
        assert [e["inputs"] for e in read_events(directory / "events.jsonl")] == [
            {"i": 0}, {"i": 1}, {"i": 2}]
    finally:
        shutil.rmtree(directory)


hostile_text = st.text(
    alphabet=st.sampled_from("ab\r\n\x00\x1b\x85\u2028\u2029\x0b\x0c\t\"\\{}é😀") | st.characters(),
    max_size=40)


@given(st.lists(st.tuples(hostile_text, hostile_text), min_size=1, max_size=8))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_control_characters_in_inputs_never_split_a_record(pairs):
    directory = Path(tempfile.mkdtemp())
    try:
        event_log = EventLog(directory / "events.jsonl")
        for key, value in pairs:
            event_log.emit({"request_id": value, "inputs": {key: value, "text": [value]},
                            "action": key})
        event_log.close()
        data = all_bytes(directory)
        text = data.decode("utf-8")
        lines = text.splitlines()  # splits on \r, \x85, \u2028 ... as plain-text tools may
        assert len(lines) == len(pairs) == data.count(b"\n")
        for line, (key, value) in zip(lines, pairs):
            event = json.loads(line)
            # An id is kept as text; other text is stored as cleaning gives it (text that
            # holds JSON, "[]" say, as its parsed value).
            assert event["request_id"] == clean_text(value)
            assert event["inputs"]["text"] == [clean(value)]
            assert event["action"] == clean(key)
    finally:
        shutil.rmtree(directory)


def test_total_size_stays_under_the_bound(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    bound = 64 * 1024
    event_log = make_log(path, max_bytes=bound, rotate_bytes=8 * 1024, max_event_bytes=2048,
                         queue_size=100_000)
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], locked_dir_size(tmp_path))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(5000):  # about 20 times the bound
            event_log.emit({"request_id": f"r-{i}", "inputs": {"text": "x" * 200}})
        assert event_log.flush(30)
    finally:
        stop.set()
        watcher.join()
    assert 0 < peak[0] <= bound and dir_size(tmp_path) <= bound
    kept = read_events(path)
    assert kept[-1]["request_id"] == "r-4999"  # the newest survive, the oldest went first
    ids = [int(e["request_id"][2:]) for e in kept]
    assert ids == list(range(ids[0], 5000))
    assert all(p.stat().st_size <= 8 * 1024 for p in event_files(path))
    assert event_log.dropped_counts() == dict.fromkeys(REASONS, 0)


def _block_writes(monkeypatch, sink_class):
    entered, release = threading.Event(), threading.Event()
    real_write = sink_class.write

    def slow_write(self, records):
        entered.set()
        release.wait()
        return real_write(self, records)

    monkeypatch.setattr(sink_class, "write", slow_write)
    return entered, release


def test_a_stalled_sink_never_blocks_emit(tmp_path, make_log, monkeypatch):
    entered, release = _block_writes(monkeypatch, JsonlSink)
    event_log = make_log(tmp_path / "events.jsonl", queue_size=100)
    event_log.emit({"request_id": "first"})
    assert entered.wait(10)  # the writer is now stuck inside write()
    for i in range(107):  # would hang here, and time out, if emit waited for the writer
        event_log.emit({"request_id": f"r-{i}"})
    assert event_log.dropped_counts()["queue_full"] == 7
    release.set()
    assert event_log.flush(10)
    assert len(read_events(tmp_path / "events.jsonl")) == 101


def test_emit_never_raises_on_bad_events(tmp_path, make_log):
    event_log = make_log(tmp_path / "events.jsonl", sample_rate=0.5)

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    event_log.emit(42)  # type: ignore[arg-type]
    event_log.emit(None)  # type: ignore[arg-type]
    event_log.emit({"inputs": Unprintable(), "error": "E"})
    assert event_log.flush(10)
    assert event_log.dropped_counts()["serialize_error"] == 2
    # An input with no JSON form costs only that value: the event is kept, with a marker.
    stored = read_events(tmp_path / "events.jsonl")
    assert [e["inputs"]["dropped"] for e in stored] == ["unsupported_type"]


def test_sampling_keeps_every_error(tmp_path, make_log):
    event_log = make_log(tmp_path / "events.jsonl", sample_rate=0.2, queue_size=100_000)
    for i in range(4000):
        event_log.emit({"request_id": f"ok-{i}"})
        if i % 10 == 0:
            event_log.emit({"request_id": f"err-{i}", "error": {"type": "ValueError"}})
    assert event_log.flush(30)
    kept = read_events(tmp_path / "events.jsonl")
    errors = [e for e in kept if e["request_id"].startswith("err-")]
    assert len(errors) == 400
    ok = len(kept) - len(errors)
    assert 560 < ok < 1040  # Binomial(4000, 0.2): mean 800, sd 25, so 9.6 sd either side


def test_sample_rate_zero_logs_only_errors(tmp_path, make_log):
    event_log = make_log(tmp_path / "events.jsonl", sample_rate=0.0)
    event_log.emit({"request_id": "ok"})
    event_log.emit({"request_id": "bad", "error": KeyError("k")})
    assert event_log.flush(10)
    assert [e["request_id"] for e in read_events(tmp_path / "events.jsonl")] == ["bad"]


def _writes_fail_for(directory: Path, monkeypatch, after_bytes: int = 0):
    """os.write to files under `directory` stores `after_bytes` then fails with ENOSPC."""
    real_write = os.write
    budget = [after_bytes]

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(str(directory)):
            return real_write(fd, data)
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data)[: budget[0]])
        budget[0] -= n
        return n

    monkeypatch.setattr(jsonl.os, "write", write)
    return budget


def test_failing_writes_are_cut_back_counted_and_retried(tmp_path, make_log, monkeypatch):
    monkeypatch.setattr(log, "BACKOFF_SECONDS", (0.01,))
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    event_log.emit({"request_id": "before"})
    assert event_log.flush(10)
    budget = _writes_fail_for(tmp_path, monkeypatch, after_bytes=30)  # half a record fits
    for i in range(50):
        event_log.emit({"request_id": f"lost-{i}", "inputs": {"x": "y" * 40}})
    assert event_log.flush(10)
    assert event_log.dropped_counts()["write_error"] == 50
    assert [e["request_id"] for e in read_events(path)] == ["before"]  # no torn record
    budget[0] = 10**9  # space is back
    while not any(e["request_id"] == "after" for e in read_events(path)):
        event_log.emit({"request_id": "after"})
        assert event_log.flush(10)
    assert read_events(path)[0]["request_id"] == "before"


def _tiny_tmpfs(directory: Path) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                             str(directory)], capture_output=True)
    return result.returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if not _tiny_tmpfs(mount_point):
        pytest.skip("needs root to mount a 256 KiB tmpfs (the fault-injection test covers "
                    "the same path)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("name", ["events.jsonl", "events.db"])
def test_a_full_disk_never_breaks_emit(full_disk, make_log, monkeypatch, name):
    monkeypatch.setattr(log, "BACKOFF_SECONDS", (0.01,))
    path = full_disk / name
    event_log = make_log(path, max_bytes=50 * 1024 * 1024, rotate_bytes=1024 * 1024,
                         queue_size=100_000)
    payload = "z" * 1000
    for burst in range(100):  # about 2 MB for a 256 KiB file system
        for i in range(20):
            event = {"request_id": f"r-{burst}-{i}", "inputs": {"p": payload}}
            assert event_log.emit(event) is None
        assert event_log.flush(60)
    dropped = event_log.dropped_counts()
    assert dropped["write_error"] > 0 and dropped["queue_full"] == 0
    kept = read_events(path)  # every stored record is whole
    assert 0 < len(kept) < 2000 and len(kept) + dropped["write_error"] == 2000
    if name.endswith(".db"):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_several_processes_lose_and_tear_nothing(tmp_path, make_log):
    import multiprocessing

    for name in ("events.jsonl", "events.db"):
        path = tmp_path / name
        event_log = make_log(path, queue_size=100_000)
        event_log.emit({"request_id": "parent-before-fork"})  # must not be written twice
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_worker, args=(event_log, w, 400)) for w in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        event_log.emit({"request_id": "parent-after-fork"})
        assert event_log.flush(10)
        ids = sorted(e["request_id"] for e in read_events(path))
        expected = sorted([f"w{w}-{i}" for w in range(3) for i in range(400)]
                          + ["parent-before-fork", "parent-after-fork"])
        assert ids == expected
    pids = {f.name.split(".")[2] for f in event_files(tmp_path / "events.jsonl")}
    assert len(pids) == 4  # one file set per process


def _worker(event_log: EventLog, worker: int, count: int) -> None:
    for i in range(count):
        event_log.emit({"request_id": f"w{worker}-{i}", "inputs": {"v": "x" * (i % 300)}})
    flushed = event_log.flush(30)
    dropped = event_log.dropped_counts()
    ok = flushed and dropped == dict.fromkeys(REASONS, 0)
    if not ok:  # say why in the test output: the parent sees only the exit code
        os.write(2, f"worker {worker}: flushed={flushed} dropped={dropped}\n".encode())
    os._exit(0 if ok else 1)


def test_several_processes_share_one_size_bound(tmp_path, make_log):
    import multiprocessing

    bound = 96 * 1024
    event_log = make_log(tmp_path / "events.jsonl", max_bytes=bound, rotate_bytes=8192,
                         max_event_bytes=2048, queue_size=100_000)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(event_log, w, 1500)) for w in range(3)]
    for worker in workers:
        worker.start()
    peak = 0
    while any(worker.is_alive() for worker in workers):
        peak = max(peak, locked_dir_size(tmp_path))
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    assert peak <= bound and dir_size(tmp_path) <= bound
    assert len(read_events(tmp_path / "events.jsonl")) > 0


def test_sqlite_stays_under_its_bound(tmp_path, make_log):
    bound = 512 * 1024
    event_log = make_log(tmp_path / "events.db", max_bytes=bound, queue_size=100_000)
    for i in range(4000):  # about 5 MB of events
        event_log.emit({"model": "m", "request_id": f"r-{i}", "inputs": {"t": "q" * 1000}})
    assert event_log.flush(60)
    assert dir_size(tmp_path) <= bound
    ids = [int(e["request_id"][2:]) for e in read_events(tmp_path / "events.db")]
    assert ids == list(range(ids[0], 4000)) and len(ids) > 100


def test_events_queued_at_exit_are_written(tmp_path):
    script = (
        "import sys; from inferwatch.events import EventLog\n"
        "log = EventLog(sys.argv[1])\n"
        "for i in range(500): log.emit({'request_id': str(i)})\n"
    )
    path = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    assert [e["request_id"] for e in read_events(path)] == [str(i) for i in range(500)]


def test_files_are_private(tmp_path, make_log):
    for name in ("a.jsonl", "b.db"):
        event_log = make_log(tmp_path / "logs" / name)
        event_log.emit({"request_id": "r"})
        assert event_log.flush(10)
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700
    for file in (tmp_path / "logs").iterdir():
        assert file.stat().st_mode & 0o077 == 0, file


def test_close_then_emit_counts_closed(tmp_path):
    event_log = EventLog(tmp_path / "events.jsonl")
    event_log.emit({"request_id": "kept"})
    event_log.close()
    event_log.close()
    event_log.emit({"request_id": "late"})
    assert event_log.dropped_counts()["closed"] == 1
    assert [e["request_id"] for e in read_events(tmp_path / "events.jsonl")] == ["kept"]


def test_dropped_events_are_exported(tmp_path):
    before = dropped_totals()["closed"]
    event_log = EventLog(tmp_path / "events.jsonl")
    event_log.close()
    event_log.emit({})
    event_log.emit({})
    registry = CollectorRegistry()
    registry.register(DroppedEventsCollector())
    text = generate_latest(registry).decode()
    assert f'inferwatch_events_dropped_total{{reason="closed"}} {before + 2}.0' in text
    assert "# TYPE inferwatch_events_dropped_total counter" in text
    assert 'reason="queue_full"' in text


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sample_rate": 1.5}, "sample_rate"),
    ({"max_bytes": 0}, "max_bytes"),
    ({"queue_size": -1}, "queue_size"),
    ({"rotate_bytes": 2048, "max_bytes": 1024}, "rotate_bytes"),
    ({"rotate_bytes": 0}, "rotate_bytes"),
    ({"max_event_bytes": 10 << 20, "rotate_bytes": 1 << 20}, "max_event_bytes"),
    ({"hash_fields": ["user"]}, "hash_fields needs a secret"),
    ({"format": "csv"}, "format"),
])
def test_bad_configuration_names_the_option(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.delenv(log.SECRET_ENV, raising=False)
    with pytest.raises(ValueError, match=message):
        EventLog(tmp_path / "events.jsonl", **kwargs)


def test_small_sqlite_bound_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        EventLog(tmp_path / "events.db", max_bytes=100_000, rotate_bytes=65536)


def test_secret_from_the_environment(tmp_path, make_log, monkeypatch):
    monkeypatch.setenv(log.SECRET_ENV, "environment-secret-0123")
    event_log = make_log(tmp_path / "events.jsonl", hash_fields=["user"])
    event_log.emit({"user": "bob"})
    assert event_log.flush(10)
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["user"] == hash_value("environment-secret-0123", "bob")


@pytest.mark.parametrize("module", [events_pkg, log, cleaning, redact, sinks, jsonl,
                                    sqlite, events_cli])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- the configured path works with ordinary tools --------------------------------------------

def test_the_configured_path_links_to_the_newest_file(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, rotate_bytes=1024, max_bytes=1 << 20)
    for i in range(40):
        event_log.emit({"request_id": f"r-{i}", "inputs": {"text": "x" * 60}})
    assert event_log.flush(10)
    files = event_files(path)
    assert len(files) > 3  # several rotations happened
    assert path.is_symlink() and path.resolve() == files[-1].resolve()
    assert os.readlink(path) == files[-1].name  # relative: the directory may move
    assert b'"request_id":"r-39"' in path.read_bytes()
    assert event_files(tmp_path) == files  # the link is not read twice
    assert [e["request_id"] for e in read_events(path)] == [f"r-{i}" for i in range(40)]


def test_a_regular_file_at_the_configured_path_is_never_replaced(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    path.write_text("the user's own notes\n")
    event_log = make_log(path)
    event_log.emit({"request_id": "r-1"})
    assert event_log.flush(10)
    assert not path.is_symlink() and path.read_text() == "the user's own notes\n"


@pytest.mark.integration
def test_tail_F_on_the_configured_path_follows_rotations(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, rotate_bytes=2048, max_bytes=1 << 20)
    event_log.emit({"request_id": "batch-0-0"})
    assert event_log.flush(10)
    tail = subprocess.Popen(["tail", "-F", "-n", "+1", "-s", "0.2", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout],
                     daemon=True).start()
    seen: set[str] = set()

    def wait_for(request_id: str) -> None:
        deadline = time.monotonic() + 60  # a safety net only: the condition ends the wait
        while request_id not in seen:
            assert time.monotonic() < deadline, f"tail -F never printed {request_id}"
            try:
                seen.add(json.loads(lines.get(timeout=1))["request_id"])
            except queue.Empty:
                continue

    try:
        wait_for("batch-0-0")
        # Each event is over half a file: every one starts a new file and moves the link.
        # The next is written once tail has printed this one (tail -F, like any reader
        # of a renamed log, only promises what was written before the name moved on).
        for batch in range(1, 8):
            event_log.emit({"request_id": f"batch-{batch}-0", "inputs": "y" * 1200})
            assert event_log.flush(10)
            wait_for(f"batch-{batch}-0")
        assert len(event_files(path)) >= 7  # the link moved at least six times
    finally:
        tail.kill()
        tail.wait()


@pytest.mark.parametrize("name", ["logs", "logs.jsonl"])
def test_a_directory_sink_writes_inside_it(tmp_path, make_log, name):
    directory = tmp_path / name
    directory.mkdir()
    event_log = make_log(directory)
    event_log.emit({"request_id": "r-1"})
    assert event_log.flush(10)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    (file,) = event_files(directory)
    assert file.parent == directory and (directory / "events.jsonl").resolve() == file
    shutil.rmtree(directory)  # decided once: made again, never written beside
    deadline = time.monotonic() + 60  # a safety net only: the condition ends the wait
    while not directory.is_dir():  # the write that finds it gone fails, a retry makes it
        assert time.monotonic() < deadline, "the directory was never made again"
        event_log.emit({"request_id": "r-2"})
        assert event_log.flush(10)
        time.sleep(0.05)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert {e["request_id"] for e in read_events(directory)} == {"r-2"}


def test_odd_values_cost_nothing_but_themselves(tmp_path, make_log):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str")

    event_log = make_log(tmp_path / "events.jsonl")
    before = values_dropped_totals()
    event_log.emit({"request_id": "a", "inputs": {"x": np.longdouble(1.5)}})
    event_log.emit({"request_id": "b", "inputs": {"x": 10 ** 5000}})
    event_log.emit({"request_id": "c", "error": Unprintable()})
    assert event_log.flush(10)
    assert sum(event_log.dropped_counts().values()) == 0
    stored = {e["request_id"]: e for e in read_events(tmp_path / "events.jsonl")}
    assert stored["a"]["inputs"] == {"x": 1.5}
    assert stored["b"]["inputs"] == {"x": {"truncated": "int", "bits": 16610}}
    assert stored["c"]["error"] == {"type": Unprintable.__qualname__}
    assert values_dropped_totals() == before


def test_a_removed_directory_is_made_again_by_the_next_write_without_losing_it(
        tmp_path, make_log):
    directory = tmp_path / "logs"
    event_log = make_log(directory / "events.jsonl")
    dropped = dropped_totals().get("write_error", 0.0)
    event_log.emit({"request_id": "r-1"})
    assert event_log.flush(10)
    shutil.rmtree(directory)
    event_log.emit({"request_id": "r-2"})
    assert event_log.flush(10)
    assert [e["request_id"] for e in read_events(directory / "events.jsonl")] == ["r-2"]
    assert dropped_totals().get("write_error", 0.0) == dropped
