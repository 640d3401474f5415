"""Sampling: an event naming ``model_errors`` is kept whatever the rate, however the errors
are given (a numpy array or pandas Series too, which have no truth value); and a rate set on
a running log is checked as the constructor checks it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from event_log_helpers import stored_events
from inferwatch.events import EventLog
from inferwatch.events.sinks import has_model_errors


@pytest.mark.parametrize(("model_errors", "kept"), [
    (["ValueError"], True),
    (("ValueError",), True),
    (np.array(["ValueError", "KeyError"]), True),
    (np.array(["ValueError"]), True),
    (pd.Series(["ValueError"]), True),
    ("ValueError", True),
    (None, False),
    ([], False),
    ((), False),
    (np.array([], dtype=object), False),
    (pd.Series([], dtype=object), False),
])
def test_model_errors_of_any_collection_keep_the_event(tmp_path: Path, make_log,
                                                       model_errors, kept):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=0.0)
    event_log.emit({"model": "m", "request_id": "r-1", "model_errors": model_errors})
    assert event_log.flush(30)
    assert [event["request_id"] for event in stored_events(path)] == (["r-1"] if kept else [])
    assert event_log.dropped_counts()["serialize_error"] == 0
    assert has_model_errors(model_errors) is kept


def test_stored_model_errors_of_an_array_are_its_names(tmp_path: Path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path, sample_rate=0.0)
    event_log.emit({"model": "m", "model_errors": np.array(["ValueError", "KeyError"])})
    assert event_log.flush(30)
    [event] = stored_events(path)
    assert event["model_errors"] == ["ValueError", "KeyError"]


@pytest.mark.parametrize("rate", [-1, 2, -0.0001, 1.5, math.nan, math.inf, "0.5", None, True,
                                  np.bool_(True)])
def test_the_rate_setter_refuses_what_the_constructor_refuses(tmp_path: Path, make_log, rate):
    with pytest.raises(ValueError, match=r"^sample_rate: expected a number from 0 to 1, got "):
        EventLog(tmp_path / "refused.jsonl", sample_rate=rate)
    event_log = make_log(tmp_path / "events.jsonl", sample_rate=0.25)
    with pytest.raises(ValueError, match=r"^sample_rate: expected a number from 0 to 1, got "):
        event_log.sample_rate = rate
    assert event_log.sample_rate == 0.25  # the rate in force is left as it was


@pytest.mark.parametrize("rate", [0, 0.0, 0.5, 1, np.float32(0.5), np.int64(1)])
def test_the_rate_setter_takes_what_the_constructor_takes(tmp_path: Path, make_log, rate):
    event_log = make_log(tmp_path / "events.jsonl")
    event_log.sample_rate = rate
    assert event_log.sample_rate == float(rate)
    assert type(event_log.sample_rate) is float
    assert make_log(tmp_path / "other.jsonl", sample_rate=rate).sample_rate == float(rate)
