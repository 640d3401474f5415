"""A pickled instrumented model carries its setup as it is when pickled: the event log's
redaction, hashing and bounds (never its secret), the settings and reference configure() gave
since instrument(), and the registry it records into while that registry is alive; loading it
never raises for inferwatch's own reasons."""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.dummy import DummyClassifier

import inferwatch
from inferwatch import faults
from inferwatch.core.instrument import _restore, _Spec
from inferwatch.core.options import Settings
from inferwatch.core.registry import Registry, default_registry
from inferwatch.events import EventLog, hash_value

SECRET = "pickle-never-holds-" + uuid.uuid4().hex
ROWS = {"email": ["jane@example.org", "joe@example.org"], "ssn": [123456789.0, 987654321.0],
        "amount": [1.0, 2.0]}

# Loads the pickle named by argv[1] in a fresh interpreter (a deploy machine), predicts the
# rows of argv[2] and prints what the loaded model's monitor carries.
CHILD = r"""
import json, logging, pickle, sys
import pandas as pd
import inferwatch
from inferwatch import faults
logging.basicConfig(level=logging.WARNING, format="%(message)s")
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
model.predict(pd.DataFrame(json.loads(sys.argv[2])))
mon = inferwatch.monitor(sys.argv[3], "1")
mon.drain()
events = mon.events
options = getattr(events, "options", None)
if events is not None:
    events.flush(10.0)
s = mon.settings
print(json.dumps({
    "instrumented": "_inferwatch_monitor" in vars(model),
    "requests": mon.state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0),
    "events": None if events is None else (options() if callable(options) else "no options"),
    "faults": faults.internal_error_counts(),
    "reference": mon.features is not None,
    "settings": [list(s.output_range or ()), s.max_classes, s.window_seconds],
}, default=str))
"""


def _model() -> DummyClassifier:
    return DummyClassifier(strategy="prior").fit(pd.DataFrame(ROWS), [0, 1])


def _name() -> str:
    return f"pickled-{uuid.uuid4().hex[:8]}"


def _load_elsewhere(blob: bytes, tmp_path: Path, name: str, *,
                    secret: str | None = None) -> tuple[dict, str]:
    path = tmp_path / f"{uuid.uuid4().hex}.pkl"
    path.write_bytes(blob)
    env = {k: v for k, v in os.environ.items()
           if k not in ("INFERWATCH_EVENT_SECRET", "INFERWATCH_MULTIPROC_DIR")}
    if secret is not None:
        env["INFERWATCH_EVENT_SECRET"] = secret
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(ROWS), name],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _events(directory: Path) -> list[dict]:
    # events.jsonl is a link to the newest process's file: each file is read once.
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl*"))
            if not path.is_symlink() for line in path.read_text().splitlines() if line.strip()]


# --- the event log's options ---------------------------------------------------------------


def test_a_loaded_model_logs_through_its_event_logs_redaction_and_bounds(tmp_path):
    name = _name()
    logs = tmp_path / "logs"
    logs.mkdir()
    log = EventLog(logs / "events.jsonl", redact=["inputs.ssn", "inputs.email"],
                   max_bytes=2 * 1024 * 1024, rotate_bytes=512 * 1024, queue_size=500,
                   queue_bytes=8 * 1024 * 1024, max_event_bytes=32 * 1024,
                   error_messages=True, keep_unstructured=True, sample_rate=1.0)
    model = inferwatch.instrument(_model(), name=name, version="1", events=log)
    blob = pickle.dumps(model)
    log.close()
    loaded, _ = _load_elsewhere(blob, tmp_path, name)
    written = _events(logs)
    assert written, "the loaded model wrote no event"
    for event in written:
        for row in event["inputs"]:
            assert "ssn" not in row and "email" not in row, event
    assert loaded["events"] == json.loads(json.dumps(log.options(), default=str))
    assert loaded["events"]["redact"] == ["inputs.ssn", "inputs.email"]
    assert loaded["events"]["max_bytes"] == 2 * 1024 * 1024
    assert loaded["events"]["error_messages"] is True


def test_the_secret_is_never_pickled_and_no_event_goes_unhashed_without_it(tmp_path):
    name = _name()
    logs = tmp_path / "logs"
    logs.mkdir()
    log = EventLog(logs / "events.jsonl", hash_fields=["inputs.email"], redact=["inputs.ssn"],
                   secret=SECRET)
    model = inferwatch.instrument(_model(), name=name, version="1", events=log)
    blob = pickle.dumps(model)
    log.close()
    assert SECRET.encode() not in blob
    assert b"pickle-never-holds" not in blob

    # Loaded where INFERWATCH_EVENT_SECRET is not set: served and counted, nothing logged.
    loaded, stderr = _load_elsewhere(blob, tmp_path, name)
    assert loaded["instrumented"] and loaded["requests"] == 1
    assert loaded["events"] is None
    assert loaded["faults"].get("restore", 0) >= 1
    assert "INFERWATCH_EVENT_SECRET" in stderr and name in stderr
    assert _events(logs) == []

    # Loaded where it is set: the fields are hashed with it, as in the process that pickled.
    loaded, _ = _load_elsewhere(blob, tmp_path, name, secret=SECRET)
    assert loaded["events"]["hash_fields"] == ["inputs.email"]
    assert "secret" not in log.options() and "secret" not in loaded["events"]
    written = _events(logs)
    emails = [row["email"] for event in written for row in event["inputs"]]
    assert emails == [hash_value(SECRET, "jane@example.org"),
                      hash_value(SECRET, "joe@example.org")]
    assert all("ssn" not in row for event in written for row in event["inputs"])


@settings(max_examples=25)
@given(redact=st.lists(st.sampled_from(["inputs.ssn", "inputs.name", "output", "inputs.a.b"]),
                       unique=True, max_size=3),
       sample_rate=st.floats(0.0, 1.0),
       max_mib=st.integers(1, 64),
       queue_size=st.integers(1, 100_000),
       flags=st.tuples(st.booleans(), st.booleans()))
def test_event_log_options_open_the_same_log_again(tmp_path_factory, redact, sample_rate,
                                                   max_mib, queue_size, flags):
    path = tmp_path_factory.mktemp("opts") / "events.jsonl"
    first = EventLog(path, redact=iter(redact), sample_rate=sample_rate,
                     max_bytes=max_mib * 1024 * 1024, queue_size=queue_size,
                     error_messages=flags[0], keep_unstructured=flags[1])
    try:
        options = first.options()
        again = EventLog(path, **options)
        try:
            assert again.options() == options
            assert options["redact"] == redact and options["sample_rate"] == sample_rate
        finally:
            again.close()
    finally:
        first.close()


# --- settings and reference ----------------------------------------------------------------


def test_a_loaded_model_carries_what_configure_set_since_instrument(tmp_path):
    name = _name()
    rng = np.random.default_rng(0)
    reference = inferwatch.Reference.from_data(
        pd.DataFrame({"email": ["a@x.org"] * 50, "ssn": rng.random(50), "amount": rng.random(50)}))
    reference_path = tmp_path / "reference.json"
    reference.save(reference_path)
    model = inferwatch.instrument(_model(), name=name, version="1", output_range=(0, 1))
    monitor = inferwatch.monitor(name, "1")
    monitor.configure(reference=str(reference_path), output_range=(0, 0.5), max_classes=5,
                      window_seconds=60)
    blob = pickle.dumps(model)
    reference_path.unlink()  # the deploy machine has the pickle alone
    loaded, _ = _load_elsewhere(blob, tmp_path, name)
    assert loaded["settings"] == [[0, 0.5], 5, 60]
    assert loaded["reference"] is True
    assert loaded["requests"] == 1


def test_loading_in_the_same_process_after_configure_changes_nothing(caplog):
    name = _name()
    model = inferwatch.instrument(_model(), name=name, version="1", window_seconds=300)
    monitor = inferwatch.monitor(name, "1")
    model.predict(pd.DataFrame(ROWS))
    monitor.configure(window_seconds=60, output_range=(0, 1))
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        loaded = pickle.loads(pickle.dumps(model))
    assert "other settings" not in caplog.text
    assert loaded.__dict__["_inferwatch_monitor"] is monitor
    assert (monitor.settings.window_seconds, monitor.settings.output_range) == (60, (0, 1))


def test_a_reference_given_as_a_path_travels_as_the_reference(tmp_path):
    reference = inferwatch.Reference.from_data(pd.DataFrame({"amount": np.arange(20.0)}))
    path = tmp_path / "reference.json"
    reference.save(path)
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_model(), name="m", version="1", reference=str(path),
                                      registry=registry)
        spec = model.__reduce_ex__(4)[1][1]
        assert spec.reference == reference and not isinstance(spec.reference, (str, Path))
    finally:
        registry.close()


def test_restoring_never_raises_for_a_missing_reference_file(tmp_path, caplog):
    """A pickle of an earlier release names its reference by path: where the file is gone
    the model loads and records all the same, without the reference checks."""
    name = _name()
    spec = _Spec(name, "1", Settings(), None, str(tmp_path / "gone.json"), None, None)
    before = faults.internal_error_counts().get("restore", 0)
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        loaded = _restore(_model(), spec)
    assert loaded.predict(pd.DataFrame(ROWS)).tolist() == [0, 0]
    monitor = inferwatch.monitor(name, "1")
    monitor.drain()
    assert monitor.state.counters["inferwatch_requests_total"][("ok",)] == 1
    assert monitor.features is None
    assert faults.internal_error_counts().get("restore", 0) == before + 1
    assert "gone.json" in caplog.text and name in caplog.text


def test_restoring_never_raises_for_an_event_log_it_cannot_open(tmp_path, caplog):
    name = _name()
    # A path whose format cannot be told: EventLog() refuses it.
    spec = _Spec(name, "1", Settings(), None, None, None, str(tmp_path / "events.txt"))
    with caplog.at_level(logging.WARNING, logger="inferwatch"):
        loaded = _restore(_model(), spec)
    assert loaded.predict(pd.DataFrame(ROWS)).tolist() == [0, 0]
    assert inferwatch.monitor(name, "1").events is None
    assert "events.txt" in caplog.text


# --- the registry --------------------------------------------------------------------------


def _requests(registry: Registry, name: str) -> int:
    monitor = registry.existing_monitor(name, "1")
    if monitor is None:
        return 0
    monitor.drain()
    return monitor.state.counters.get("inferwatch_requests_total", {}).get(("ok",), 0)


@pytest.mark.parametrize("round_trip", [
    pytest.param(lambda m: pickle.loads(pickle.dumps(m)), id="pickle"),
    pytest.param(copy.copy, id="copy"),
    pytest.param(copy.deepcopy, id="deepcopy"),
])
def test_a_model_on_its_own_registry_records_there_when_loaded_in_its_process(round_trip):
    name = _name()
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_model(), name=name, version="1", registry=registry)
        round_trip(model).predict(pd.DataFrame(ROWS))
        assert _requests(registry, name) == 1
        assert _requests(default_registry(), name) == 0
    finally:
        registry.close()


def test_joblib_round_trip_keeps_registry_settings_and_event_log(tmp_path):
    name = _name()
    registry = Registry(drain_interval=3600)
    log = EventLog(tmp_path / "events.jsonl", redact=["inputs.ssn"], max_bytes=4 * 1024 * 1024)
    try:
        model = inferwatch.instrument(_model(), name=name, version="1", registry=registry,
                                      events=log)
        registry.monitor(name, "1").configure(max_classes=7)
        joblib.dump(model, tmp_path / "model.joblib")
        loaded = joblib.load(tmp_path / "model.joblib")
        loaded.predict(pd.DataFrame(ROWS))
        monitor = registry.monitor(name, "1")
        assert loaded.__dict__["_inferwatch_monitor"] is monitor
        assert monitor.events is log and monitor.settings.max_classes == 7
        assert _requests(registry, name) == 1
    finally:
        registry.close()
        log.close()


def test_a_registry_gone_or_in_another_process_is_the_default_one(tmp_path):
    name = _name()
    registry = Registry(drain_interval=3600)
    model = inferwatch.instrument(_model(), name=name, version="1", registry=registry)
    blob = pickle.dumps(model)
    loaded, _ = _load_elsewhere(blob, tmp_path, name)  # the child's default registry
    assert loaded["requests"] == 1
    registry.close()
    del model, registry
    gc.collect()
    pickle.loads(blob).predict(pd.DataFrame(ROWS))
    assert _requests(default_registry(), name) == 1


def test_an_event_log_opened_on_loading_is_closed_when_switched_off(tmp_path):
    """The loaded model's monitor opened it: configure(events=False) must close it, as it
    closes a log it opened from a path, or its writer thread and file stay behind."""
    name = _name()
    log = EventLog(tmp_path / "first.jsonl", redact=["inputs.ssn"])
    registry = Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(_model(), name=name, version="1", events=log,
                                      registry=registry)
        spec = model.__reduce_ex__(4)[1][1]
        # As loaded in another process: another registry, the log at a path not open here.
        spec = spec._replace(name=f"{name}-loaded", registry=None,
                             events=str(tmp_path / "second.jsonl"))
        loaded = _restore(_model(), spec)
        monitor = loaded.__dict__["_inferwatch_monitor"]
        reopened = monitor.events
        assert reopened is not None and reopened is not log
        assert reopened.options() == log.options()
        monitor.configure(events=False)
        assert reopened._closed and not log._closed
    finally:
        registry.close()
        log.close()
