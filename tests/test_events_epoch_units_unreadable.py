"""`inferwatch events`: epoch units, negative times, unreadable files, bounded start of follow."""

from __future__ import annotations

import builtins
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_log_helpers import count_jsonl_reads, follow_until_caught_up
from inferwatch.cli import main
from inferwatch.core import timestamps
from inferwatch.events import jsonl
from inferwatch.events.cli import parse_time
from inferwatch.events.sinks import ReadStats


def run_cli(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(["events", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def write_lines(path: Path, events: list[dict]) -> None:
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))


# --- one epoch-unit rule, shared with record_outcome(at=) --------------------------------

@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False))
def test_a_number_is_read_as_epoch_seconds_reads_it(value):
    assert parse_time(repr(value)) == timestamps.epoch_seconds(value)


@pytest.mark.parametrize(("text", "seconds"), [
    ("1700000000", 1_700_000_000.0),
    ("1700000000000", 1_700_000_000.0),          # ms (Grafana links)
    ("1700000000000000", 1_700_000_000.0),       # us
    ("1700000000000000000", 1_700_000_000.0),    # ns (OpenTelemetry)
    ("-1700000000000", -1_700_000_000.0),
    ("99999999999", 99_999_999_999.0),           # just under the bound: seconds
    ("1e400", math.inf),                         # past every unit: as given
])
def test_epoch_units_are_told_by_size(text, seconds):
    assert parse_time(text) == seconds


def test_parse_time_follows_the_shared_epoch_rule(monkeypatch):
    # One rule for the library and the CLI: a change to it reaches both.
    monkeypatch.setattr(timestamps, "epoch_seconds", lambda value: value / 7)
    assert parse_time("700") == 100


# --- negative times given as a separate word ----------------------------------------------------

@pytest.fixture
def early_log(tmp_path) -> Path:
    path = tmp_path / "events.jsonl"
    write_lines(path, [{"ts": -5000.0, "request_id": "a"}, {"ts": -500.0, "request_id": "b"},
                       {"ts": 1.0, "request_id": "c"}])
    return path


@pytest.mark.parametrize(("flags", "ids"), [
    (["--since", "-1e3"], ["b", "c"]),
    (["--since", "-1.5e6", "--until", "-1e3"], ["a"]),  # -1.5e6 ms: -1500 s
    (["--until", "-5e2"], ["a", "b"]),
    (["--since", "-1000.0"], ["b", "c"]),
    (["--since", "-1e400", "--until", "-1E3"], ["a"]),
])
def test_a_negative_time_is_taken_as_a_separate_word(early_log, capsys, flags, ids):
    code, found, err = run_cli(capsys, "query", str(early_log), *flags)
    assert (code, err) == (0, "")
    assert [e["request_id"] for e in found] == ids


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(max_value=-1e-3, allow_nan=False, allow_infinity=True))
def test_since_as_a_word_means_what_since_with_equals_means(early_log, capsys, value):
    text = repr(value)
    joined = run_cli(capsys, "query", str(early_log), f"--since={text}")
    separate = run_cli(capsys, "query", str(early_log), "--since", text)
    assert separate == joined
    assert separate[0] == 0


def test_a_negative_word_that_is_no_time_is_refused_by_name(early_log, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["events", "query", str(early_log), "--until", "-2h"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--until" in err and "'-2h' is not a time" in err


def test_a_flag_after_since_is_still_a_missing_value(early_log, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["events", "query", str(early_log), "--since", "--errors"])
    assert exit_info.value.code == 2
    assert "--since: expected one argument" in capsys.readouterr().err


# --- a file the reader may not open ---------------------------------------------------------------

@pytest.fixture
def permissions(monkeypatch):
    """Opening a file without read permission fails as it does for a user other than root
    (the tests may run as root, who reads everything): PermissionError, from open()."""
    real_open = builtins.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if "r" in mode and not os.stat(file).st_mode & (stat.S_IRUSR | stat.S_IRGRP
                                                        | stat.S_IROTH):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(jsonl, "open", guarded_open, raising=False)


def two_workers(tmp_path: Path) -> tuple[Path, Path]:
    """A log written by two workers; the second one's file has mode 0000."""
    path = tmp_path / "events.jsonl"
    mine = tmp_path / "events.00000000000000000001.100.jsonl"
    theirs = tmp_path / "events.00000000000000000002.200.jsonl"
    write_lines(mine, [{"ts": 1.0, "request_id": "r-1"}, {"ts": 3.0, "request_id": "r-3"}])
    write_lines(theirs, [{"ts": 2.0, "request_id": "r-2"}])
    theirs.chmod(0)
    return path, theirs


@pytest.mark.parametrize("action", [["query"], ["tail", "-n", "5"], ["tail", "-n", "0"]])
def test_an_unreadable_file_is_skipped_and_named(tmp_path, capsys, permissions, action):
    path, theirs = two_workers(tmp_path)
    code, found, err = run_cli(capsys, action[0], str(path), *action[1:])
    assert code == 0
    expected = [] if action[-1] == "0" else ["r-1", "r-3"]
    assert [e["request_id"] for e in found] == expected
    assert f"skipped unreadable file {theirs}: Permission denied" in err


def test_a_log_of_only_unreadable_files_is_an_error(tmp_path, capsys, permissions):
    path, theirs = two_workers(tmp_path)
    (tmp_path / "events.00000000000000000001.100.jsonl").chmod(0)
    code, found, err = run_cli(capsys, "query", str(path))
    assert (code, found) == (2, [])
    assert str(theirs) in err and "cannot read" in err


def test_following_skips_an_unreadable_file_and_reads_it_once_it_may(
        tmp_path, permissions):
    path, theirs = two_workers(tmp_path)
    offsets: dict = {}
    stats = ReadStats()
    assert [json.loads(line)["request_id"] for line in
            jsonl.tail_jsonl(path, 5, stats, offsets)] == ["r-1", "r-3"]
    assert list(stats.unreadable_files) == [theirs]
    assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
    theirs.chmod(0o600)
    lines, _ = jsonl.follow_jsonl_batch(path, offsets, stats)
    assert [json.loads(line)["request_id"] for line in lines] == ["r-2"]


# --- the start of `tail -n 0 --follow` past a huge unterminated last line ------------------------

def test_starting_to_follow_does_not_read_a_huge_last_line_back_in_full(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 100_000)
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n')
        f.write(b"z" * (4 << 20))  # a foreign writer, no newline for megabytes
    counted = count_jsonl_reads(monkeypatch)
    offsets: dict = {}
    stats = ReadStats()
    assert jsonl.tail_jsonl(path, 0, stats, offsets) == []
    assert counted.read_bytes < 300_000, counted.read_bytes
    assert jsonl.follow_jsonl_batch(path, offsets, stats)[0] == []
    with path.open("ab") as f:
        f.write(b"zz\n" + b'{"ts": 5.0, "request_id": "r-5"}\n')
    seen = follow_until_caught_up(path, offsets, stats, 10)
    # The over-long line is counted, never printed in part; what follows it is printed.
    assert [json.loads(line)["request_id"] for line in seen] == ["r-5"]
    assert stats.unreadable == 1


def test_starting_to_follow_after_a_short_unterminated_line_prints_it_whole(tmp_path):
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        f.write(b'{"ts": 1.0, "request_id": "r-1"}\n{"ts": 2.0, "request_id": "r-')
    offsets: dict = {}
    stats = ReadStats()
    assert jsonl.tail_jsonl(path, 0, stats, offsets) == []
    with path.open("ab") as f:
        f.write(b'2"}\n')
    lines = jsonl.follow_jsonl(path, offsets, stats)
    assert [json.loads(line)["request_id"] for line in lines] == ["r-2"]
    assert stats.unreadable == 0


# --- a query over more files than the process may hold open ------------------------------------

_LOW_FILE_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from inferwatch.cli import main
sys.exit(main(["events", "query", sys.argv[1], "--model", "fraud"]))
"""


def test_a_query_over_more_files_than_may_be_open_prints_every_match(tmp_path):
    # Many restarts and a small rotate_bytes leave hundreds of files, each with a match.
    for i in range(150):
        write_lines(tmp_path / f"events.{i + 1:020d}.{1000 + i}.jsonl",
                    [{"ts": float(i), "model": "fraud", "request_id": f"r-{i}"},
                     {"ts": float(i) + 0.5, "model": "churn"}])
    done = subprocess.run([sys.executable, "-c", _LOW_FILE_LIMIT, str(tmp_path / "events.jsonl")],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    ids = [json.loads(line)["request_id"] for line in done.stdout.splitlines()]
    assert ids == [f"r-{i}" for i in range(150)]


def test_a_file_replaced_after_it_was_read_is_not_printed_from_the_new_one(
        tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "_MAX_OPEN_FILES", 1)
    first = tmp_path / "events.00000000000000000001.1.jsonl"
    second = tmp_path / "events.00000000000000000002.2.jsonl"
    write_lines(first, [{"ts": 1.0, "request_id": "r-1"}])
    write_lines(second, [{"ts": 2.0, "request_id": "r-2"}])
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    from inferwatch.events.sinks import Query

    stats = ReadStats()
    lines = jsonl.query_jsonl(tmp_path / "events.jsonl", Query(), stats)
    assert json.loads(next(lines))["request_id"] == "r-1"
    # Another file takes the second one's name (a copy restored over it, say).
    write_lines(tmp_path / "new", [{"ts": 9.0, "request_id": "imposter"}])
    os.replace(tmp_path / "new", second)
    assert list(lines) == []
