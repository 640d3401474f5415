"""`inferwatch events` edges: a line nested too deep for the JSON decoder is one unreadable line.

The writer never nests deeper than 32 levels, but a directory of ``.jsonl`` files, a
restored backup or a damaged disk can hand the reader anything. Python's decoder raises
RecursionError (not ValueError) on deep nesting; that must cost the line, not the command.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.cli import main
from inferwatch.events.jsonl import event_files
from inferwatch.events.sinks import Query, ReadStats, query_events

DEPTH = 100_000


def _write(make_log, path, count: int) -> None:
    event_log = make_log(path)
    for i in range(count):
        event_log.emit({"ts": 1_700_000_000.0 + i, "model": "fraud", "request_id": f"r-{i}"})
    assert event_log.flush(60)


def _append_deep_line(path) -> None:
    (file,) = event_files(path)
    with open(file, "ab") as f:
        f.write(b'{"ts": 1700000000.5, "model": "fraud", "x": ' + b"[" * DEPTH
                + b"]" * DEPTH + b"}\n")


@pytest.mark.parametrize("action", [["tail", "-n", "5"], ["query", "--model", "fraud"]])
def test_a_deeply_nested_line_is_skipped_and_reported(tmp_path, make_log, capsys, action):
    path = tmp_path / "events.jsonl"
    _write(make_log, path, 3)
    _append_deep_line(path)
    code = main(["events", action[0], str(path), *action[1:]])
    out, err = capsys.readouterr()
    assert code == 0
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["r-0", "r-1",
                                                                             "r-2"]
    assert "skipped 1 unreadable lines" in err


@given(depth=st.integers(min_value=1, max_value=50_000),
       opener=st.sampled_from([b"[", b'{"a":']))
def test_any_nesting_depth_reads_or_counts(tmp_path_factory, depth, opener):
    directory = tmp_path_factory.mktemp("deep")
    closer = b"]" if opener == b"[" else b"}"
    (directory / "foreign.jsonl").write_bytes(
        b'{"ts": 1, "x": ' + opener * depth + b"1" + closer * depth + b"}\n{\"ts\": 2}\n")
    stats = ReadStats()
    lines = list(query_events(directory, Query(), stats=stats))
    assert lines[-1] == b'{"ts": 2}'
    assert len(lines) + stats.unreadable == 2
