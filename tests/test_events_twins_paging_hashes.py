"""Event log contract edges (docs/events.md): a redaction rule with ``*`` reaches the same
key in the twin field, a query pages through an SQLite log by index seeks and through a
JSONL log in memory that does not grow with each match, and ``hash_value`` finds the hash
of a value the log cleaned or bounded before hashing it."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from event_log_helpers import peak_bytes_reading, write_jsonl_files
from inferwatch.events import hash_value
from inferwatch.events import sqlite as sqlite_module
from inferwatch.events.jsonl import query_jsonl
from inferwatch.events.redact import Redaction
from inferwatch.events.sinks import Encoder, Query, ReadStats, Record
from inferwatch.events.sqlite import SqliteSink, query_sqlite
from test_monitor_events import _read as read_events

SECRET = "s" * 32
TWIN = {"inputs": "features", "features": "inputs"}

# A few keys, so that generated paths and generated data name the same fields often.
_key = st.sampled_from(["a", "b", "email"])
_data = st.recursive(
    st.sampled_from(["SECRET-1", "SECRET-2", 7]),
    lambda inner: st.one_of(st.dictionaries(_key, inner, max_size=3),
                            st.lists(inner, max_size=2)),
    max_leaves=12)
_rest = st.lists(st.one_of(_key, st.just("*")), min_size=1, max_size=3).filter(
    lambda rest: rest != ["*"])  # `inputs.*` is every key at once: documented as kept


def _stored(policy: Redaction, event: dict) -> dict:
    return json.loads(Encoder(policy).encode(event, now=1.0).line)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["inputs", "features"]), rest=_rest, data=_data,
       hashed=st.booleans())
def test_a_rule_with_wildcards_reaches_the_same_key_in_the_twin_field(field, rest, data,
                                                                       hashed):
    """Whichever field the values were handed over in, a rule naming them under the other
    one leaves on disk exactly what the same rule written for that field leaves."""
    twin = TWIN[field]
    option = "hash_fields" if hashed else "drop"
    extra = {"secret": SECRET} if hashed else {}
    on_field = Redaction(**{option: [".".join([field, *rest])]}, **extra)
    on_twin = Redaction(**{option: [".".join([twin, *rest])]}, **extra)
    event = {"request_id": "r", twin: data}
    assert _stored(on_field, event) == _stored(on_twin, event)


def test_every_key_at_once_and_the_whole_field_stay_as_written():
    data = {"email": "SECRET-1", "age": 3}
    for rule in ("inputs.*", "inputs"):
        stored = _stored(Redaction(drop=[rule]), {"inputs": data, "features": data})
        assert stored["features"] == data


def test_a_wildcard_rule_on_features_keeps_the_value_out_of_an_instrumented_call_log(
        scraper, tmp_path, make_log):
    log = make_log(tmp_path / "events.jsonl", redact=["features.*.raw_address"])
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", events=log,
                                 registry=scraper.registry)
    model({"applicant": {"raw_address": "1 Secret Lane", "age": 41}})
    scraper.registry.drain()
    assert log.flush(10)
    (event,) = read_events(tmp_path)
    assert event["inputs"] == {"applicant": {"age": 41}}
    assert "Secret Lane" not in "".join(p.read_text() for p in tmp_path.glob("events.*"))


# --- SQLite paging -----------------------------------------------------------------

def _sqlite_log(path, times: list[float]) -> list[tuple[float, int]]:
    sink = SqliteSink(path, max_bytes=1 << 30)
    sink.write([Record(ts, "m" if i % 2 else "n", None, f"r{i}", None,
                       None if i % 3 else "ValueError", json.dumps({"ts": ts, "i": i}).encode())
                for i, ts in enumerate(times)])
    sink.close()
    # Row ids are 1.. in insertion order.
    return sorted((ts, i + 1) for i, ts in enumerate(times))


@pytest.mark.parametrize("model", [None, "m"])
def test_sqlite_pages_keep_order_across_equal_times(tmp_path, monkeypatch, model):
    """Pages of 3 rows over runs of equal times longer than a page, written out of time
    order: every row once, by (ts, id)."""
    monkeypatch.setattr(sqlite_module, "QUERY_PAGE_ROWS", 3)
    times = [5.0] * 7 + [2.0] * 4 + [5.0, 9.0, 2.0] * 3 + [1.0] + [9.0] * 5
    expected = _sqlite_log(tmp_path / "events.db", times)
    if model is not None:
        expected = [(ts, rowid) for ts, rowid in expected if (rowid - 1) % 2]
    lines = list(query_sqlite(tmp_path / "events.db", Query(model=model)))
    assert [(json.loads(line)["ts"], json.loads(line)["i"] + 1) for line in lines] == expected
    limited = list(query_sqlite(tmp_path / "events.db", Query(model=model, limit=8)))
    assert limited == lines[:8]


@pytest.mark.parametrize("query", [Query(), Query(model="m"), Query(errors_only=True),
                                   Query(since=0.0, until=1e12)])
def test_each_later_sqlite_page_is_an_index_seek(tmp_path, monkeypatch, query):
    """A later page starts where the last one ended by seeking the time index: no scan of
    the rows before it, and no sort (a query quadratic in the log's rows)."""
    monkeypatch.setattr(sqlite_module, "QUERY_PAGE_ROWS", 2)
    path = tmp_path / "events.db"
    _sqlite_log(path, [float(t % 4) for t in range(10)])
    statements: list[tuple[str, tuple]] = []
    reader = sqlite_module._reader

    class Recorded:
        """The reader's connection, recording each statement with its parameters: planned
        with literal values, SQLite may seek where it cannot with bound ones."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, params=()):
            statements.append((sql, tuple(params)))
            return self._conn.execute(sql, params)

        def __getattr__(self, name: str):
            return getattr(self._conn, name)

    monkeypatch.setattr(sqlite_module, "_reader", lambda p: Recorded(reader(p)))
    pages = list(query_sqlite(path, query))
    assert len(pages) > 2
    later = [(sql, params) for sql, params in statements
             if sql.startswith("SELECT ts, id, body") and " id > " in sql]
    assert later
    conn = sqlite3.connect(path)
    for sql, params in later:
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert plan.startswith("SEARCH events USING INDEX") and "ts>?" in plan, plan
        assert "TEMP B-TREE" not in plan and "OR" not in plan, plan
    conn.close()


# --- JSONL query memory ------------------------------------------------------------

@pytest.mark.parametrize("limit", [None, 0, 1, 5, 1000])
def test_a_jsonl_query_merges_files_in_time_order(tmp_path, limit):
    files = [[3.0, 1.0, 3.0, 2.0, 1.0], [1.0, 1.0, 2.0, 4.0], [], [0.5, 3.0, 3.0, 3.0, 9.0],
             [2.0, 0.5, 2.0]]
    expected = write_jsonl_files(tmp_path, files)
    got = list(query_jsonl(tmp_path / "events.jsonl", Query(limit=limit), ReadStats()))
    assert got == (expected if limit is None else expected[:limit])


def _peak_bytes(path, query: Query) -> tuple[int, int]:
    return peak_bytes_reading(lambda: query_jsonl(path, query, ReadStats()))


def test_jsonl_query_memory_does_not_grow_by_an_object_per_match(tmp_path):
    rows = 40_000
    start = 1_700_000_000.0
    # Two files written in time order, interleaved, and a small one out of order.
    write_jsonl_files(tmp_path, [[start + i for i in range(0, rows, 2)],
                          [start + i for i in range(1, rows, 2)],
                          [start - i for i in range(500)]])
    path = tmp_path / "events.jsonl"
    count, peak = _peak_bytes(path, Query(limit=1))
    assert count == 1 and peak < 1 << 20  # a list of every match was ~5 MB
    count, peak = _peak_bytes(path, Query(model="m", limit=10))
    assert count == 10 and peak < 1 << 20
    count, peak = _peak_bytes(path, Query())
    # Packed arrays: 24 bytes a match, where a tuple each took ~130.
    assert count == rows + 500 and peak < rows * 40


# --- hash_value finds what the log stored ------------------------------------------

@pytest.mark.parametrize("value", [
    '{"street": "1 Main St", "zip": "12345"}',  # JSON text is stored parsed
    ' ["jane@example.org", {"b": 1, "a": 2}]',
    "jane@example.org\r\n",
    "Jane\tDoe",
    "\ufeff{\"a\": \"x\ty\"}",
    "plain",
    b'{"k": "v"}',
])
def test_hash_value_finds_a_string_the_log_cleaned_before_hashing(tmp_path, make_log, value):
    log = make_log(tmp_path / "events.jsonl", hash_fields=["inputs.email"], secret=SECRET)
    log.emit({"request_id": "r", "inputs": {"email": value}})
    assert log.flush(10)
    (event,) = read_events(tmp_path)
    assert event["inputs"]["email"] == hash_value(SECRET, value)


def test_hash_value_finds_an_array_over_the_logs_bound_given_that_bound(tmp_path, make_log):
    array = np.arange(2000, dtype=np.float64)  # 16 KB
    log = make_log(tmp_path / "events.jsonl", hash_fields=["inputs.x"], secret=SECRET,
                   max_event_bytes=4096)
    log.emit({"request_id": "r", "inputs": {"x": array, "y": array[:10]}})
    assert log.flush(10)
    (event,) = read_events(tmp_path)
    assert event["inputs"]["x"] == hash_value(SECRET, array, max_event_bytes=4096)
    assert event["inputs"]["x"] != hash_value(SECRET, array)  # hashed whole under 64 KiB


def test_hash_value_finds_a_long_request_id_however_it_was_handed_over(
        scraper, tmp_path, make_log):
    long_id = "req-" + "x" * 2000
    log = make_log(tmp_path / "events.jsonl", hash_fields=["request_id"], secret=SECRET)
    model = inferwatch.instrument(lambda x: 1, name="m", version="1", events=log,
                                 registry=scraper.registry)
    with inferwatch.monitor("m", "1", registry=scraper.registry).request(request_id=long_id):
        model([[1.0]])
    log.emit({"model": "direct", "request_id": long_id})
    scraper.registry.drain()
    assert log.flush(10)
    stored = {e["model"]: e["request_id"] for e in read_events(tmp_path)}
    assert stored["m"] == stored["direct"]
    assert stored == {"m": hash_value(SECRET, long_id, request_id=True),
                      "direct": hash_value(SECRET, long_id, request_id=True)}
    assert hash_value(SECRET, "r-17", request_id=True) == hash_value(SECRET, "r-17")
