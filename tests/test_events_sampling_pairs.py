"""A sampled event log keeps a prediction and its outcome together, decided by the request
id (the same in every process); an event's Decimal, Fraction or date `ts` is its time."""

from __future__ import annotations

import datetime
import decimal
import fractions
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.events import EventLog
from inferwatch.events.sampling import Sampler
from inferwatch.events.sinks import Encoder, Query, query_events

# The package this test imported, for the other process to import too.
PACKAGE_ROOT = Path(inferwatch.__file__).resolve().parents[1]
RATES = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# Ids as servers make them, and as users may type them: any text, control characters and
# lone surrogates included (the stored id is cleaned; the decision is made on the raw one).
# An empty id is no id (drawn at random, see below).
IDS = st.text(st.characters(exclude_categories=()), min_size=1, max_size=40) | \
    st.uuids().map(str) | st.integers(min_value=0, max_value=10**12).map(lambda n: f"req-{n}")


def _prediction(model: str, request_id: object) -> dict:
    return {"ts": 1.0, "model": model, "model_version": "1", "request_id": request_id,
            "inputs": [[1.0, 2.0]], "prediction": [0]}


def _outcome(model: str, request_id: object) -> dict:
    """An outcome event as ``Monitor.record_outcome`` emits it."""
    return {"ts": 2.0, "model": model, "model_version": "1", "request_id": request_id,
            "outcome": 1, "outcome_match": "joined"}


def _kept_ids(path: Path) -> tuple[list[str], list[str]]:
    """The stored request ids of the prediction events and of the outcome events."""
    predictions: list[str] = []
    outcomes: list[str] = []
    for line in query_events(path, Query()):
        event = json.loads(line)
        (outcomes if "outcome" in event else predictions).append(event["request_id"])
    return predictions, outcomes


def _within_binomial(kept: int, n: int, rate: float) -> bool:
    """Whether `kept` of `n` is within 6 standard deviations of Binomial(n, rate)."""
    return abs(kept - n * rate) <= 6 * math.sqrt(n * rate * (1 - rate)) + 1


# --- a prediction and its outcome are kept or dropped together ----------------------------

@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(IDS, min_size=1, max_size=30, unique=True), rate=RATES)
def test_a_prediction_is_kept_exactly_when_its_outcome_is(ids, rate):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.jsonl"
        event_log = EventLog(path, sample_rate=rate)
        try:
            for request_id in ids:
                event_log.emit(_prediction("fraud", request_id))
            for request_id in reversed(ids):  # labels come back in their own order
                event_log.emit(_outcome("fraud", request_id))
            assert event_log.flush(30)
            assert sum(event_log.dropped_counts().values()) == 0
        finally:
            event_log.close()
        predictions, outcomes = _kept_ids(path)
    assert sorted(predictions) == sorted(outcomes)
    if rate == 0.0:
        assert predictions == []
    if rate == 1.0:
        assert len(predictions) == len(ids)


@given(request_id=IDS, rate=RATES)
def test_the_decision_is_the_id_read_as_record_outcome_reads_it(request_id, rate):
    sampler = Sampler(rate)
    kept = sampler.keeps(request_id)
    assert Sampler(rate).keeps(request_id) == kept  # no state: a later outcome agrees

    class Text(str):
        def __str__(self) -> str:
            raise RuntimeError("only the characters count")

    assert sampler.keeps(Text(request_id)) == kept
    try:
        as_bytes = request_id.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no such bytes
        pass
    else:
        assert sampler.keeps(as_bytes) == kept
    number = request_id.removeprefix("req-")
    if number.isascii() and number.isdigit():
        assert sampler.keeps(int(number)) == Sampler(rate).keeps(str(int(number)))


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("ids", ["sequential", "uuid4"])
def test_the_kept_share_of_many_ids_is_the_rate(rate, ids):
    n = 50_000
    maker = random.Random(20240101)  # fixed: the same ids, and verdict, on every run
    names = [f"r-{i}" for i in range(n)] if ids == "sequential" else \
        [str(uuid.UUID(int=maker.getrandbits(128), version=4)) for _ in range(n)]
    sampler = Sampler(rate)
    kept = sum(map(sampler.keeps, names))
    assert _within_binomial(kept, n, rate), (kept, n * rate)


def test_the_kept_share_through_the_log_is_the_rate(tmp_path, make_log):
    n, rate = 20_000, 0.2
    path = tmp_path / "events.db"
    event_log = make_log(path, sample_rate=rate, queue_size=n * 2)
    for i in range(n):
        event_log.emit(_prediction("fraud", f"order-{i}"))
        event_log.emit(_outcome("fraud", f"order-{i}"))
    assert event_log.flush(120)
    predictions, outcomes = _kept_ids(path)
    assert sorted(predictions) == sorted(outcomes)
    assert _within_binomial(len(predictions), n, rate), len(predictions)


def test_an_instrumented_model_logs_each_kept_prediction_with_its_outcome(scraper, tmp_path):
    n, rate = 3_000, 0.1
    path = tmp_path / "events.jsonl"
    event_log = EventLog(path, sample_rate=rate, queue_size=n * 2)

    class Model:
        def predict(self, rows):
            return np.zeros(len(rows))

    model = inferwatch.instrument(Model(), name="churn", version="3", events=event_log,
                                  registry=scraper.registry)
    monitor = inferwatch.monitor("churn", registry=scraper.registry)
    try:
        for i in range(n):
            with monitor.request(request_id=f"r-{i}"):
                model.predict(np.ones((1, 2)))
        for i in range(n):
            monitor.record_outcome(f"r-{i}", 0)
        scraper.registry.drain()
        assert event_log.flush(60)
    finally:
        event_log.close()
    predictions, outcomes = _kept_ids(path)
    assert len(set(predictions)) == len(predictions)
    assert set(predictions) == set(outcomes)
    assert _within_binomial(len(predictions), n, rate), len(predictions)


_OTHER_PROCESS = """
import json, sys
from pathlib import Path
from inferwatch.events import EventLog
log = EventLog(Path(sys.argv[1]), sample_rate=float(sys.argv[2]))
for request_id in json.loads(sys.argv[3]):
    log.emit({"model": "fraud", "request_id": request_id, "outcome": 1})
assert log.flush(60)
log.close()
"""


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_an_outcome_logged_by_another_process_follows_its_prediction(tmp_path, make_log,
                                                                     hash_seed):
    """The label joiner runs in another worker, or another job hours later: Python's own
    str hash differs there (PYTHONHASHSEED), the decision must not."""
    rate = 0.3
    ids = [f"txn-{i}" for i in range(600)]
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=rate)
    for request_id in ids:
        event_log.emit(_prediction("fraud", request_id))
    assert event_log.flush(30)
    env = dict(os.environ, PYTHONHASHSEED=hash_seed,
               PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                       os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(path), str(rate),
                    json.dumps(ids)], env=env, check=True, timeout=120)
    predictions, outcomes = _kept_ids(path)
    assert predictions and sorted(predictions) == sorted(outcomes)


def test_events_without_an_id_are_drawn_at_random(tmp_path, make_log):
    draws = random.Random(7)
    sampler = Sampler(0.5, draw=draws.random)
    for missing in (None, ""):
        kept = sum(sampler.keeps(missing) for _ in range(4_000))
        assert _within_binomial(kept, 4_000, 0.5), kept  # not all of them, nor none

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    # An id with no text costs nothing: drawn like an event without one, never lost.
    event_log = make_log(tmp_path / "events.jsonl", sample_rate=0.5)
    for _ in range(400):
        event_log.emit({"model": "m", "request_id": Unprintable()})
    assert event_log.flush(30)
    assert event_log.dropped_counts()["serialize_error"] == 0


def test_a_rate_changed_at_run_time_takes_effect(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=1.0)
    event_log.emit(_prediction("fraud", "before"))
    event_log.sample_rate = 0.0
    event_log.emit(_prediction("fraud", "after"))
    assert event_log.flush(30)
    assert _kept_ids(path)[0] == ["before"] and event_log.sample_rate == 0.0


def test_an_error_is_kept_whatever_its_id(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=0.0)
    ids = [f"r-{i}" for i in range(50)]
    for request_id in ids:
        event_log.emit({**_prediction("fraud", request_id), "error": ValueError("x")})
    assert event_log.flush(30)
    assert sorted(_kept_ids(path)[0]) == sorted(ids)


# --- a ts given as a Decimal, a Fraction or a date ----------------------------------------

def test_a_decimal_fraction_or_date_ts_is_kept_not_replaced_by_the_write_time(tmp_path,
                                                                              make_log):
    path = tmp_path / "events.db"
    event_log = make_log(path)
    forms = {
        "decimal": (decimal.Decimal("1700000000.25"), 1700000000.25),
        "fraction": (fractions.Fraction(6800000001, 4), 1700000000.25),
        "date": (datetime.date(2024, 1, 1), 1704067200.0),
    }
    for name, (ts, _) in forms.items():
        event_log.emit({"ts": ts, "model": "m", "request_id": name})
    assert event_log.flush(30)
    for name, (_, expected) in forms.items():
        (body,) = list(query_events(path, Query(request_id=name)))
        assert json.loads(body)["ts"] == expected
    # The indexed column holds it too: --until finds the backfilled events.
    assert len(list(query_events(path, Query(until=1704067200.0)))) == len(forms)


@given(st.decimals(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_any_finite_decimal_ts_is_that_many_seconds(seconds):
    record = Encoder(max_event_bytes=4096).encode({"ts": seconds}, now=-1.0)
    assert record.ts == float(seconds)
    assert json.loads(record.line)["ts"] == float(seconds)


@given(st.dates())
def test_any_date_ts_is_its_midnight_utc(day):
    midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc)
    record = Encoder(max_event_bytes=4096).encode({"ts": day}, now=-1.0)
    assert record.ts == midnight.timestamp()
    assert json.loads(record.line)["ts"] == midnight.timestamp()


@pytest.mark.parametrize("ts", [decimal.Decimal("NaN"), decimal.Decimal("sNaN"),
                                decimal.Decimal("Infinity"), decimal.Decimal("1e400"),
                                fractions.Fraction(10**400, 3)])
def test_a_decimal_or_fraction_that_is_no_time_is_the_write_time(ts):
    assert Encoder(max_event_bytes=4096).encode({"ts": ts}, now=42.0).ts == 42.0
