"""`inferwatch events tail|query`: filters, ordering, following, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inferwatch.cli import main
from inferwatch.events import EventLog, hash_value
from inferwatch.events.cli import parse_time

T0 = 1_700_000_000.0


def write_log(path: Path, events: list[dict], **kwargs) -> None:
    event_log = EventLog(path, **kwargs)
    for event in events:
        event_log.emit(event)
    event_log.close()


def sample_events() -> list[dict]:
    events = []
    for i in range(30):
        event = {"ts": T0 + i * 60, "model": "fraud" if i % 2 else "churn",
                 "model_version": "1", "request_id": f"r-{i}", "probabilities": [0.3, 0.7]}
        if i % 7 == 0:
            event["error"] = {"type": "ValueError"}
        events.append(event)
    return events


@pytest.fixture(params=["events.jsonl", "events.db"])
def log_path(request, tmp_path) -> Path:
    path = tmp_path / request.param
    write_log(path, sample_events())
    return path


def run_cli(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(["events", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_query_by_request_id(log_path, capsys):
    code, found, _ = run_cli(capsys, "query", str(log_path), "--request-id", "r-7")
    assert code == 0 and [e["request_id"] for e in found] == ["r-7"]


def test_query_by_model_time_range_and_errors(log_path, capsys):
    code, found, _ = run_cli(capsys, "query", str(log_path), "--model", "churn",
                             "--since", str(T0 + 600), "--until", str(T0 + 1200))
    assert code == 0
    assert [e["request_id"] for e in found] == ["r-10", "r-12", "r-14", "r-16", "r-18", "r-20"]
    _, errors, _ = run_cli(capsys, "query", str(log_path), "--errors")
    assert [e["request_id"] for e in errors] == ["r-0", "r-7", "r-14", "r-21", "r-28"]
    _, limited, _ = run_cli(capsys, "query", str(log_path), "--errors", "--limit", "2",
                            "--since", "2023-11-14T22:13:20Z")
    assert [e["request_id"] for e in limited] == ["r-0", "r-7"]


def test_tail_prints_the_latest_oldest_first(log_path, capsys):
    code, found, _ = run_cli(capsys, "tail", str(log_path), "-n", "3")
    assert code == 0 and [e["request_id"] for e in found] == ["r-27", "r-28", "r-29"]
    _, none, _ = run_cli(capsys, "tail", str(log_path), "-n", "0")
    assert none == []


def test_tail_merges_the_files_of_several_processes(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    events = sample_events()
    write_log(path, events[1::2])  # two writers, two files, interleaved times
    write_log(path, events[0::2])
    assert len(list(tmp_path.glob("events.*.jsonl"))) == 2
    _, found, _ = run_cli(capsys, "tail", str(path), "-n", "4")
    assert [e["request_id"] for e in found] == ["r-26", "r-27", "r-28", "r-29"]
    _, everything, _ = run_cli(capsys, "query", str(tmp_path))  # a directory works too
    assert [e["request_id"] for e in everything] == [f"r-{i}" for i in range(30)]


def test_a_torn_last_line_is_skipped_and_reported(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    write_log(path, sample_events()[:3])
    (file,) = tmp_path.glob("events.*.jsonl")
    with open(file, "ab") as f:
        f.write(b'{"ts": 1, "garbage\n{"half": ')
    code, found, err = run_cli(capsys, "query", str(path))
    assert code == 0 and len(found) == 3
    assert "skipped 1 unreadable lines" in err


@pytest.mark.parametrize(("argv", "flag"), [
    (["query", "x.jsonl", "--since", "yesterday"], "--since"),
    (["query", "x.jsonl", "--until", "12:00 tomorrow"], "--until"),
    (["query", "x.jsonl", "--limit", "-3"], "--limit"),
    (["tail", "x.jsonl", "-n", "many"], "-n/--lines"),
    (["query", "x.jsonl", "--format", "csv"], "--format"),
])
def test_bad_arguments_name_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["events", *argv])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_since_after_until_is_refused(log_path, capsys):
    code = main(["events", "query", str(log_path), "--since", str(T0 + 10),
                 "--until", str(T0)])
    assert code == 2 and "--since is later than --until" in capsys.readouterr().err


def test_missing_log_and_unknown_suffix(tmp_path, capsys):
    assert main(["events", "tail", str(tmp_path / "none.jsonl")]) == 2
    assert "no event log at" in capsys.readouterr().err
    assert main(["events", "tail", str(tmp_path / "events.txt")]) == 2
    assert "use --format" in capsys.readouterr().err


@pytest.mark.parametrize("action", [["tail"], ["query", "--errors"]])
def test_a_directory_without_a_log_is_no_event_log(tmp_path, capsys, action):
    # A mistyped or empty directory looked like a healthy log without events: nothing
    # printed, status 0.
    empty = tmp_path / "logs"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an event log\n")
    assert main(["events", *action, str(empty)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"no event log at {empty}")


def _foreign_databases(tmp_path: Path) -> list[Path]:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:  # SQLite, but some other application's
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("plain text, not a database at all\n" * 100)
    return [other, not_sqlite]


@pytest.mark.parametrize("action", [["tail"], ["tail", "-n", "3"], ["query"],
                                    ["query", "--request-id", "r-1"]])
def test_a_db_that_is_not_an_event_log_is_one_line(tmp_path, capsys, action):
    for path in _foreign_databases(tmp_path):
        assert main(["events", action[0], str(path), *action[1:]]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"{path} is not an inferwatch event log" in err


def test_parse_time_forms():
    assert parse_time("1700000000") == T0
    assert parse_time("2023-11-14T22:13:20") == T0  # no offset: UTC
    assert parse_time("2023-11-15T00:13:20+02:00") == T0
    assert parse_time("90s", now=T0) == T0 - 90
    assert parse_time("1.5d", now=T0) == T0 - 1.5 * 86400


@pytest.mark.integration
@pytest.mark.parametrize("name", ["events.jsonl", "events.db"])
def test_follow_prints_new_events_from_the_installed_command(tmp_path, name):
    path = tmp_path / name
    write_log(path, sample_events()[:5])
    command = Path(sys.executable).parent / "inferwatch"
    proc = subprocess.Popen([str(command), "events", "tail", str(path), "-n", "2", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline())["request_id"] for _ in range(2)]
        assert first == ["r-3", "r-4"]
        write_log(path, [{"ts": time.time(), "request_id": f"new-{i}"} for i in range(3)])
        later = [json.loads(proc.stdout.readline())["request_id"] for _ in range(3)]
        assert later == ["new-0", "new-1", "new-2"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_log_configured_as_a_directory_is_read_back(tmp_path, capsys):
    directory = tmp_path / "logs"
    directory.mkdir()
    write_log(directory, sample_events()[:3])
    assert [p.name for p in tmp_path.iterdir()] == ["logs"]  # nothing written beside it
    for path in (directory, directory / "events.jsonl"):
        _, found, _ = run_cli(capsys, "tail", str(path))
        assert [e["request_id"] for e in found] == ["r-0", "r-1", "r-2"]


@pytest.mark.parametrize("action", ["tail", "query"])
def test_a_regular_file_at_the_configured_path_is_read_with_the_log(tmp_path, capsys, action):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"ts": T0 - 1, "request_id": "older"}) + "\n")
    write_log(path, sample_events()[:3])
    assert not path.is_symlink()
    _, found, _ = run_cli(capsys, action, str(path))
    assert [e["request_id"] for e in found] == ["older", "r-0", "r-1", "r-2"]
    (own,) = tmp_path.glob("events.*.jsonl")
    _, alone, _ = run_cli(capsys, action, str(own))  # one of the log's files: only that one
    assert [e["request_id"] for e in alone] == ["r-0", "r-1", "r-2"]


LONG_ID = "tenant-42/session-" + "0123456789abcdef" * 70  # 1,138 characters


def test_query_finds_a_long_request_id(tmp_path, capsys):
    for name in ("events.jsonl", "events.db"):
        path = tmp_path / name
        twin = LONG_ID[:-1] + "X"  # the same first 1,137 characters
        write_log(path, [{"ts": T0, "request_id": LONG_ID}, {"ts": T0 + 1, "request_id": twin},
                         {"ts": T0 + 2, "request_id": LONG_ID, "outcome": 1}])
        _, found, _ = run_cli(capsys, "query", str(path), "--request-id", LONG_ID)
        assert [e["ts"] for e in found] == [T0, T0 + 2]


def test_query_by_hash_value_of_a_long_request_id(tmp_path, capsys):
    secret = "0123456789abcdef0123"
    twin = LONG_ID[:256] + "-another-request"
    for name in ("events.jsonl", "events.db"):
        path = tmp_path / name
        write_log(path, [{"ts": T0, "request_id": LONG_ID}, {"ts": T0 + 1, "request_id": twin}],
                  hash_fields=["request_id"], secret=secret)
        _, found, _ = run_cli(capsys, "query", str(path), "--request-id",
                              hash_value(secret, LONG_ID, request_id=True))
        assert [e["ts"] for e in found] == [T0]
