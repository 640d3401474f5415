"""A JSONL query without --limit holds a bounded number of matches in memory, whatever the
size of the log, and still prints every match once, oldest first."""

from __future__ import annotations

import pytest

from event_log_helpers import peak_bytes_reading, write_jsonl_files
from inferwatch.events import query_matches
from inferwatch.events.jsonl import query_jsonl
from inferwatch.events.sinks import Query, ReadStats


@pytest.mark.parametrize(("spill", "runs"), [(1, 2), (2, 3), (3, 2), (7, 32), (1000, 2)])
def test_matches_kept_in_sorted_runs_print_in_order(tmp_path, monkeypatch, spill, runs):
    monkeypatch.setattr(query_matches, "_SPILL_MATCHES", spill, raising=False)
    monkeypatch.setattr(query_matches, "_MAX_RUNS", runs, raising=False)
    monkeypatch.setattr(query_matches, "_RUN_READ", 2, raising=False)
    files = [[3.0, 1.0, 3.0, 2.0, 1.0], [1.0, 1.0, 2.0, 4.0], [], [0.5, 3.0, 3.0, 3.0, 9.0],
             [2.0, 0.5, 2.0], [float(i % 4) for i in range(17)]]
    expected = write_jsonl_files(tmp_path, files)
    got = list(query_jsonl(tmp_path / "events.jsonl", Query(), ReadStats()))
    assert got == expected


def _peak(directory, rows: int) -> int:
    start = 1_700_000_000.0
    for old in directory.glob("events.*"):
        old.unlink()
    # Two files in time order, interleaved, and one out of order.
    write_jsonl_files(directory, [[start + i for i in range(0, rows, 2)],
                           [start + i for i in range(1, rows, 2)],
                           [start - i for i in range(rows // 4)]])
    count, peak = peak_bytes_reading(
        lambda: query_jsonl(directory / "events.jsonl", Query(), ReadStats()))
    assert count == rows + rows // 4
    return peak


def test_query_memory_does_not_grow_with_the_matches(tmp_path, monkeypatch):
    monkeypatch.setattr(query_matches, "_SPILL_MATCHES", 1024, raising=False)
    monkeypatch.setattr(query_matches, "_MAX_RUNS", 4, raising=False)
    small, large = _peak(tmp_path, 10_000), _peak(tmp_path, 60_000)
    # Holding every match took 24 bytes each: 1.5 MB more for the larger log.
    assert large - small < 300_000, (small, large)
