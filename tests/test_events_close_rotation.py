"""Event log, third pass: a close() that times out on a stuck writer, a file emptied in place
and refilled past the follower's offset between two polls, and bounds too small to hold
an event."""

from __future__ import annotations

import json
import shutil
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_log_helpers import follow_cli, run_python, traced_peak
from inferwatch.cli import main
from inferwatch.events import EventLog
from inferwatch.events.jsonl import event_files

# --- close() while the writer is stuck ---------------------------------------------------------

# What a child's script runs to get its log's writer stuck in its first write (a hung NFS
# mount, say) with a short exit flush: `holder` is set up before it, the log made after it.
_STUCK_WRITE = textwrap.dedent("""
    from inferwatch.events import EventLog, log, log_lifetime
    from inferwatch.events.jsonl import JsonlSink

    log_lifetime.ATEXIT_FLUSH_SECONDS = 0.3
    entered, release = threading.Event(), threading.Event()
    real_write = JsonlSink.write

    def stuck_write(self, records):
        entered.set()
        release.wait()  # never set: the disk does not answer
        real_write(self, records)

    JsonlSink.write = stuck_write
""")


def test_events_queued_behind_a_stuck_writer_at_close_are_counted_at_exit(tmp_path):
    """close(timeout) gives up on a writer stuck in a write (a hung NFS mount, say): what it
    still holds must be waited for once more at exit, and counted as `closed` when it is
    never written, not lost without a trace."""
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent("""
        import atexit, json, threading

        holder = []

        def report():  # registered first, so it runs after inferwatch's exit flush
            print(json.dumps(holder[0].dropped_counts()))

        atexit.register(report)
    """) + _STUCK_WRITE + textwrap.dedent(f"""
        holder.append(EventLog({str(path)!r}))
        holder[0].emit({{"request_id": "in-flight"}})
        assert entered.wait(60)
        for i in range(3):
            holder[0].emit({{"request_id": f"queued-{{i}}"}})
        holder[0].close(timeout=0.05)
        assert holder[0]._thread.is_alive()
    """)
    done = run_python(script)
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["closed"] == 3


def test_a_log_whose_writer_ends_after_close_timed_out_is_flushed_by_its_writer(tmp_path):
    """The writer released after close() gave up still writes what was queued."""
    from inferwatch.events import log_lifetime
    from inferwatch.events.jsonl import JsonlSink

    entered, release = threading.Event(), threading.Event()
    real_write = JsonlSink.write

    def slow_write(self: JsonlSink, records: list) -> None:
        entered.set()
        assert release.wait(60)
        real_write(self, records)

    path = tmp_path / "events.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JsonlSink, "write", slow_write)
        event_log = EventLog(path)
        event_log.emit({"request_id": "a"})
        assert entered.wait(60)
        event_log.emit({"request_id": "b"})
        event_log.close(timeout=0.01)
        assert event_log in set(log_lifetime.live_logs)  # still owed a flush at exit
        release.set()
        event_log._thread.join(60)
    assert not event_log._thread.is_alive()
    assert event_log not in set(log_lifetime.live_logs)
    stored = [json.loads(line)["request_id"] for f in event_files(path)
              for line in f.read_bytes().splitlines()]
    assert stored == ["a", "b"]
    assert event_log.dropped_counts()["closed"] == 0


# --- a file emptied in place and refilled before the next poll --------------------------------

def _follow(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path,
            between_polls: list[Callable[[], None]]) -> tuple[list[str], str]:
    """`tail --follow`, running each step of `between_polls` in place of a wait."""
    code, out, err = follow_cli(monkeypatch, capsys, path, between_polls, "-n", "100")
    assert code == 0
    return [json.loads(line)["request_id"] for line in out.splitlines()], err


def _lines(ids: list[str], pad: int = 0) -> bytes:
    return b"".join(json.dumps({"ts": 1.0 + i, "request_id": rid, "pad": "x" * pad})
                    .encode() + b"\n" for i, rid in enumerate(ids))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=st.integers(1, 5), new=st.integers(1, 12), pad=st.integers(0, 80),
       partial=st.booleans())
def test_follow_reads_a_copytruncated_file_refilled_past_the_old_offset_from_its_start(
        tmp_path_factory, monkeypatch, capsys, old, new, pad, partial):
    directory = tmp_path_factory.mktemp("rotated")
    path = directory / "app.jsonl"
    old_ids = [f"old-{i}" for i in range(old)]
    path.write_bytes(_lines(old_ids))
    new_ids = [f"new-{i}" for i in range(new)]
    fresh = _lines(new_ids, pad)
    # Refilled past where the follower stopped, so that the old check (shorter than the
    # offset) alone does not see it.
    while len(fresh) <= path.stat().st_size:
        new_ids.append(f"new-{len(new_ids)}")
        fresh = _lines(new_ids, pad)

    def copytruncate_and_refill() -> None:
        shutil.copyfile(path, directory / "app.jsonl.1")  # logrotate copytruncate
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(fresh)
            if partial:
                f.write(b'{"ts": 99.0, "request_id": "in-prog')  # a write in progress

    ids, err = _follow(monkeypatch, capsys, path, [copytruncate_and_refill])
    # The rotated copy is a .jsonl.1 file: not part of this log, so only the path is read.
    assert ids == old_ids + new_ids
    assert "unreadable" not in err


def test_follow_keeps_reading_a_file_that_only_grows(tmp_path, monkeypatch, capsys):
    path = tmp_path / "app.jsonl"
    path.write_bytes(_lines(["a-0", "a-1"]))
    grow = [lambda i=i: path.open("ab").write(_lines([f"b-{i}"])) for i in range(4)]
    ids, err = _follow(monkeypatch, capsys, path, grow)
    assert ids == ["a-0", "a-1", "b-0", "b-1", "b-2", "b-3"]
    assert err == ""


def test_follow_ended_by_ctrl_c_reports_the_unreadable_lines_it_skipped(tmp_path, monkeypatch,
                                                                        capsys):
    path = tmp_path / "app.jsonl"
    path.write_bytes(_lines(["a-0"]))

    def append_garbage() -> None:
        with path.open("ab") as f:
            f.write(b"not json at all\n" + _lines(["b-0"]) + b"[1, 2]\n")

    ids, err = _follow(monkeypatch, capsys, path, [append_garbage])
    assert ids == ["a-0", "b-0"]
    assert "skipped 2 unreadable lines" in err


# --- bounds too small to hold an event ----------------------------------------------------------

@pytest.mark.parametrize("max_bytes", [1, 10, 100, 1000, 2559])
def test_a_max_bytes_too_small_for_any_event_is_refused_naming_the_minimum(tmp_path,
                                                                           max_bytes):
    with pytest.raises(ValueError, match=r"^max_bytes: .*at least 2560 bytes"):
        EventLog(tmp_path / "events.jsonl", max_bytes=max_bytes)


@pytest.mark.parametrize(("kwargs", "option"), [
    ({"rotate_bytes": 100}, "rotate_bytes"),
    ({"max_event_bytes": 50}, "max_event_bytes"),
    ({"max_bytes": 1000, "rotate_bytes": 1000, "max_event_bytes": 200}, "max_event_bytes"),
])
def test_an_explicit_bound_too_small_for_any_event_is_refused_by_name(tmp_path, kwargs,
                                                                      option):
    with pytest.raises(ValueError, match=rf"^{option}: .*at least 256"):
        EventLog(tmp_path / "events.jsonl", **kwargs)


def test_the_smallest_accepted_bound_stores_an_ordinary_event(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, max_bytes=2560)
    event = {"ts": 1_764_633_036.123456, "model": "fraud-detector", "model_version": "v12",
             "request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "prediction": 1}
    event_log.emit(event)
    assert event_log.flush(10)
    assert event_log.dropped_counts()["too_large"] == 0
    stored = [json.loads(line) for f in event_files(path) for line in f.read_bytes().splitlines()]
    assert [e["request_id"] for e in stored] == [event["request_id"]]


# --- tail of a large file ----------------------------------------------------------------------

def test_tail_of_a_large_file_holds_only_the_lines_it_prints(tmp_path, capsys):
    """A regular file at the configured path is never rotated: `tail -n 2` of it must not
    read all of it into memory."""
    path = tmp_path / "events.jsonl"
    row = {"model": "fraud", "inputs": "x" * 10_000}
    with path.open("wb") as f:
        for i in range(3_000):  # about 30 MB
            f.write(json.dumps({"ts": 1_700_000_000.0 + i, "request_id": f"r-{i}", **row})
                    .encode() + b"\n")
    code, peak = traced_peak(lambda: main(["events", "tail", str(path), "-n", "2"]))
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["r-2998", "r-2999"]
    assert peak < 5_000_000, peak


def test_tail_keeps_the_newest_by_ts_across_files_and_equal_times(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    for rid, ts in [("a", 5.0), ("b", 1.0), ("c", 5.0), ("d", 3.0), ("e", 5.0)]:
        event_log = EventLog(path)
        event_log.emit({"ts": ts, "request_id": rid})
        assert event_log.flush(10)
        event_log.close()
    code = main(["events", "tail", str(path), "-n", "3"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert sorted(json.loads(line)["request_id"] for line in out.splitlines()) == ["a", "c", "e"]


def test_a_child_forked_after_close_timed_out_does_not_count_the_parents_queue(tmp_path):
    path = tmp_path / "events.jsonl"
    script = textwrap.dedent("""
        import atexit, json, os, sys, threading, warnings

        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        holder = []

        def report():  # runs after inferwatch's exit flush, in parent and child alike
            print(json.dumps([holder[1], holder[0].dropped_counts()]), flush=True)

        atexit.register(report)
    """) + _STUCK_WRITE + textwrap.dedent(f"""
        holder.extend([EventLog({str(path)!r}), "parent"])
        holder[0].emit({{"request_id": "in-flight"}})
        assert entered.wait(60)
        for i in range(3):
            holder[0].emit({{"request_id": f"queued-{{i}}"}})
        holder[0].close(timeout=0.05)
        pid = os.fork()
        if pid == 0:
            holder[1] = "child"
            sys.exit(0)
        os.waitpid(pid, 0)
    """)
    done = run_python(script)
    reports = dict(json.loads(line) for line in done.stdout.strip().splitlines())
    assert reports["parent"]["closed"] == 3
    assert reports["child"]["closed"] == 0


# --- a secret that is neither text nor bytes ---------------------------------------------------

@pytest.mark.parametrize("secret", [12345678901234567890, 16, 3.25e20, ["a"] * 16])
def test_a_secret_that_is_not_text_or_bytes_is_refused_by_name(tmp_path, secret):
    # `secret: 12345678901234567890` in YAML is a number, not text.
    with pytest.raises(ValueError, match=r"^secret: expected text or bytes, got "):
        EventLog(tmp_path / "events.jsonl", hash_fields=["inputs.email"], secret=secret)


def test_hash_value_refuses_a_number_as_its_secret():
    from inferwatch.events import hash_value

    # bytes(16) would be sixteen zero bytes: a hash that matches no stored one, silently.
    with pytest.raises(ValueError, match="secret"):
        hash_value(16, "jane@example.org")  # type: ignore[arg-type]
