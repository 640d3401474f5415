"""instrument(events=...): one redacted event per prediction, written off the request path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import inferwatch
from inferwatch.events import EventLog


def _read(directory: Path) -> list[dict]:
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        if not path.is_symlink():  # the link at the configured path names a file read here
            lines.extend(path.read_text().splitlines())
    return [json.loads(line) for line in lines]


def test_every_call_logs_inputs_prediction_and_timings(scraper, tmp_path):
    log = EventLog(tmp_path / "events.jsonl", redact=["inputs.ssn"])

    class Model:
        classes_ = np.array(["legit", "fraud"])

        def predict_proba(self, rows):
            if rows[0]["amount"] < 0:
                raise ValueError("negative amount for card-secret")
            return np.array([[0.3, 0.7]])

    model = inferwatch.instrument(Model(), name="fraud", version="2", events=log,
                                  registry=scraper.registry)
    model.predict_proba([{"amount": 10.0, "ssn": "123-45-6789"}], request_id="r-1")
    with pytest.raises(ValueError):
        model.predict_proba([{"amount": -1.0, "ssn": "987-65-4321"}], request_id="r-2")
    mon = inferwatch.monitor("fraud", "2", registry=scraper.registry)
    with mon.request(request_id="r-3") as r:
        r.inputs({"raw": "line one\r\nforged record"})
        with r.stage("preprocess"):
            features = [{"amount": 3.0}]
        r.features(features)
        r.stage_output("preprocess", {"n": 1})
        model.predict_proba(features)
        r.action("blocked")
    mon.record_outcome("r-1", "fraud")
    scraper.registry.drain()
    assert log.flush(5)
    events = {(e["request_id"], "outcome" in e): e for e in _read(tmp_path)}
    first = events[("r-1", False)]
    assert first["model"] == "fraud" and first["model_version"] == "2"
    assert first["inputs"] == [{"amount": 10.0}]  # ssn dropped before it reached disk
    assert first["probabilities"] == [[0.3, 0.7]]
    assert first["duration_seconds"] > 0
    failed = events[("r-2", False)]
    assert failed["error"] == {"type": "ValueError"}
    assert "card-secret" not in json.dumps(failed)  # exception messages stay out
    third = events[("r-3", False)]
    assert set(third["stages"]) == {"preprocess", "inference"}
    assert third["action"] == "blocked" and third["stage_outputs"] == {"preprocess": {"n": 1}}
    assert "\n" not in third["inputs"]["raw"] and "\r" not in third["inputs"]["raw"]
    assert events[("r-1", True)]["outcome"] == "fraud"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl"))
    assert b"123-45-6789" not in raw and b"987-65-4321" not in raw
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1
    log.close()


def test_event_log_from_a_path(scraper, tmp_path):
    model = inferwatch.instrument(lambda x: x * 2.0, name="m", version="1",
                                  events=str(tmp_path / "events.db"), registry=scraper.registry)
    for i in range(20):
        model(float(i))
    scraper.registry.drain()
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    assert mon.events.flush(5)
    import sqlite3

    with sqlite3.connect(tmp_path / "events.db") as db:
        assert db.execute("select count(*) from events").fetchone()[0] == 20
    mon.events.close()


def test_dropped_events_are_counted_in_metrics(scraper, tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    model = inferwatch.instrument(lambda x: 1.0, name="m", version="1", events=log,
                                  registry=scraper.registry)
    log.close()
    before = scraper.total("inferwatch_events_dropped_total", reason="closed")
    for i in range(3):
        assert model(i) == 1.0
    scraper.registry.drain()
    assert scraper.total("inferwatch_events_dropped_total", reason="closed") == before + 3


def test_buffers_handed_to_a_request_are_recorded_as_they_were_then(scraper, tmp_path):
    """A server refilling one features buffer and one output buffer per request: each
    request's event and its outcome join hold its own values."""
    log = EventLog(tmp_path / "events.jsonl")
    mon = inferwatch.monitor("m", "1", registry=scraper.registry).configure(events=log)
    features, prediction, stage = np.zeros((1, 2)), np.zeros(1), np.zeros(3)
    for i in range(3):
        with mon.request(request_id=f"r-{i}") as r:
            features[:] = i
            prediction[:] = i / 10
            stage[:] = i
            r.features(features)
            r.inputs(features)
            r.stage_output("candidates", stage)
            r.prediction(prediction)
    mon.drain()
    log.flush(5)
    seen = sorted((e["request_id"], e["inputs"], e["features"], e["prediction"],
                   e["stage_outputs"]["candidates"]) for e in _read(tmp_path))
    log.close()
    assert seen == [(f"r-{i}", [[float(i)] * 2], [[float(i)] * 2], [i / 10], [float(i)] * 3)
                    for i in range(3)]
    mon.record_outcome("r-0", 0.0)
    assert scraper.value("inferwatch_outcome_error_sum", model="m") == 0.0
