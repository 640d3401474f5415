"""Prediction event log: what emit() costs the caller, and how fast the writer drains.

- caller side: ``EventLog.emit`` against the naive prometheus_client wrapper (two
  ``perf_counter`` calls, ``Histogram.observe``, ``Counter.inc``), timed alternately;
- writer: events per second through encoding (cleaning, redaction, size bound) and the
  JSONL and SQLite sinks, against the plain synchronous way of logging the same event
  (``json.dumps`` to a ``logging`` file handler; ``json.dumps`` and an SQLite insert into a
  table with the same indexes);
- where the writer's time goes: encoding against ``json.dumps``, and the SQLite sink's
  bounded write against a plain insert of the same lines.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram

from inferwatch.events import EventLog

from .common import Row, alternate, fmt_seconds, per_call

EMIT_TARGET = 0.4  # about 1 us against a naive wrapper of about 2.5 us
WRITER_TARGET = 2.0  # cleaning + redaction + bounds cost at most twice a bare json.dumps log


def _event(i: int) -> dict:
    return {
        "ts": time.time(), "model": "fraud", "model_version": "1.4.2",
        "request_id": f"r-{i}", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "inputs": {"amount": 129.5, "country": "FR", "email": "jane@example.org",
                   "note": "line one\nline two"},
        "features": {f"f{k}": k * 0.5 for k in range(20)},
        "stages": {"preprocess": 0.0004, "inference": 0.0021, "postprocess": 0.0001},
        "prediction": 1, "probabilities": [0.08, 0.92], "action": "blocked",
    }


def _naive_wrapper() -> tuple[object, object]:
    registry = CollectorRegistry()
    latency = Histogram("bench_latency_seconds", "latency", ["model"], registry=registry)
    calls = Counter("bench_calls_total", "calls", ["model"], registry=registry)
    return latency.labels("fraud"), calls.labels("fraud")


def _emit_cost(directory: Path, calls: int, rounds: int) -> Row:
    event_log = EventLog(directory / "emit.jsonl", queue_size=calls + 10,
                         redact=["inputs.email"])
    event = _event(0)
    histogram, counter = _naive_wrapper()
    perf = time.perf_counter

    def naive() -> None:
        start = perf()
        histogram.observe(perf() - start)  # type: ignore[attr-defined]
        counter.inc()  # type: ignore[attr-defined]

    def emit_trial() -> float:
        seconds = per_call(lambda: event_log.emit(event), calls)
        event_log.flush(60)  # drain outside the timed part so the queue never fills
        return seconds

    def naive_trial() -> float:
        return per_call(naive, calls)

    def empty_trial() -> float:
        return per_call(lambda: None, calls)

    try:
        emit_seconds, naive_seconds = alternate(emit_trial, naive_trial, rounds)
        floor = statistics.median(empty_trial() for _ in range(rounds))
    finally:
        event_log.close()
    added, baseline = max(emit_seconds - floor, 0.0), max(naive_seconds - floor, 1e-12)
    ratio = added / baseline
    return Row("emit(): cost on the caller", fmt_seconds(added),
               f"{fmt_seconds(baseline)} (naive prometheus_client wrapper)", ratio,
               f"<= {EMIT_TARGET}", ratio <= EMIT_TARGET)


def _writer_rows(directory: Path, count: int, rounds: int) -> list[Row]:
    events = [_event(i) for i in range(count)]
    rows = []
    trial = itertools.count()
    for name, suffix in (("JSONL", "jsonl"), ("SQLite", "db")):

        def ours(suffix: str = suffix) -> float:
            event_log = EventLog(directory / f"ours{next(trial)}.{suffix}",
                                 queue_size=count + 10, redact=["inputs.email"])
            start = time.perf_counter()
            for event in events:
                event_log.emit(event)
            event_log.flush(120)
            seconds = (time.perf_counter() - start) / count
            event_log.close()
            return seconds

        def plain(suffix: str = suffix) -> float:
            return _plain_logging(directory / f"plain{next(trial)}.{suffix}", events, suffix)

        ours_seconds, plain_seconds = alternate(ours, plain, rounds)
        ratio = ours_seconds / plain_seconds
        baseline = ("json.dumps + logging.FileHandler" if suffix == "jsonl"
                    else "json.dumps + INSERT, same indexes, 1,000 per transaction")
        rows.append(Row(f"writer, {name}: events/s", f"{1 / ours_seconds:,.0f}/s",
                        f"{1 / plain_seconds:,.0f}/s ({baseline})", ratio,
                        f"<= {WRITER_TARGET}", ratio <= WRITER_TARGET))
    return rows


def _writer_parts(directory: Path, count: int, rounds: int) -> list[Row]:
    """Where the writer's time goes: encoding an event (cleaning, redaction, the size bound
    and its JSON line) against the baseline's ``json.dumps``, and the SQLite sink's write
    of encoded records (its bounded transactions and checkpoints) against the baseline's
    insert of lines already made, each timed alone, alternately."""
    events = [_event(i) for i in range(count)]
    log = EventLog(directory / "parts.db", queue_size=count + 10, redact=["inputs.email"])
    try:
        def encode() -> float:
            start = time.perf_counter()
            log._encode(list(events))
            return (time.perf_counter() - start) / count

        def dumps() -> float:
            start = time.perf_counter()
            for event in events:
                json.dumps(event, default=str)
            return (time.perf_counter() - start) / count

        encoding, dumping = alternate(encode, dumps, rounds)
        records = log._encode(list(events))
        sink = log._new_sink()
        lines = [(e["ts"], e["model"], e["request_id"], json.dumps(e, default=str))
                 for e in events]

        def write() -> float:
            start = time.perf_counter()
            sink.write(records)
            return (time.perf_counter() - start) / count

        def insert(path: Path = directory / "parts-plain.db") -> float:
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS events "
                             "(ts REAL, model TEXT, request_id TEXT, body TEXT)")
                for name, columns in (("ts", "ts"), ("model_ts", "model, ts"),
                                      ("request_id", "request_id")):
                    conn.execute(f"CREATE INDEX IF NOT EXISTS events_{name} ON events "
                                 f"({columns})")
                start = time.perf_counter()
                for i in range(0, len(lines), 1000):
                    with conn:
                        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                                         lines[i:i + 1000])
                return (time.perf_counter() - start) / count

        writing, inserting = alternate(write, insert, rounds)
        sink.close()
    finally:
        log.close()
    return [
        Row("  writer, of which encoding an event (clean, redact, bound, JSON)",
            fmt_seconds(encoding), f"json.dumps {fmt_seconds(dumping)}", encoding / dumping,
            "(decomposition)", True),
        Row("  writer, SQLite, of which the sink's write (bounded transactions)",
            fmt_seconds(writing), f"INSERT of made lines {fmt_seconds(inserting)}",
            writing / inserting, "(decomposition)", True),
    ]


def _plain_logging(path: Path, events: list[dict], suffix: str) -> float:
    start = time.perf_counter()
    if suffix == "jsonl":
        logger = logging.getLogger(f"bench-events-{path.name}")
        logger.propagate = False
        handler = logging.FileHandler(path)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            for event in events:
                logger.info(json.dumps(event, default=str))
        finally:
            logger.removeHandler(handler)
            handler.close()
    else:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("CREATE TABLE events (ts REAL, model TEXT, request_id TEXT, body TEXT)")
            conn.execute("CREATE INDEX events_ts ON events (ts)")
            conn.execute("CREATE INDEX events_model_ts ON events (model, ts)")
            conn.execute("CREATE INDEX events_request_id ON events (request_id)")
            for i in range(0, len(events), 1000):
                with conn:
                    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                                     [(e["ts"], e["model"], e["request_id"],
                                       json.dumps(e, default=str))
                                      for e in events[i:i + 1000]])
    return (time.perf_counter() - start) / len(events)


def run(quick: bool = False) -> list[Row]:
    """The event log's rows for the benchmark table."""
    directory = Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        rounds = 3 if quick else 7
        rows = [_emit_cost(directory, 5_000 if quick else 50_000, rounds)]
        rows += _writer_rows(directory, 2_000 if quick else 20_000, rounds)
        rows += _writer_parts(directory, 2_000 if quick else 5_000, rounds)
        return rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)
