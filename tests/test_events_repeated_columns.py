"""A DataFrame whose columns repeat a name, logged as a call's input.

``DataFrame.to_dict(orient="records")`` keeps one column of a repeated name and prints a
``UserWarning`` into the model server's log (from the drain's thread). Every column must
reach the event, the repeats named as ``pandas.read_csv`` names them, with no warning.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.events import EventLog
from inferwatch.events.fields import _records_of_repeated_columns
from inferwatch.events.jsonl import event_files


class _Model:
    def predict(self, frame):
        return np.zeros(len(frame))


def _events(tmp_path, frame):
    registry = Registry(drain_interval=3600)
    log = EventLog(tmp_path / "events.jsonl")
    try:
        model = inferwatch.instrument(_Model(), name="m", version="1", registry=registry,
                                      events=log)
        model.predict(frame)
        registry.drain()
    finally:
        registry.close()
        log.close()
    return [json.loads(line) for path in event_files(tmp_path / "events.jsonl")
            for line in path.read_text().splitlines()]


def test_every_repeated_column_reaches_the_event_without_a_warning(tmp_path):
    frame = pd.DataFrame([[1, 2, 3], [4, 5, 6]], columns=["a", "a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = _events(tmp_path, frame)
    assert [event["inputs"] for event in events] == [
        [{"a": 1, "a.1": 2, "b": 3}, {"a": 4, "a.1": 5, "b": 6}]]
    assert list(frame.columns) == ["a", "a", "b"]  # the caller's frame is left as it was


def test_a_renamed_repeat_never_takes_an_existing_columns_name():
    frame = pd.DataFrame([[1, 2, 3]], columns=["a", "a.1", "a"])
    assert _records_of_repeated_columns(frame) == [{"a": 1, "a.1": 2, "a.2": 3}]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "a.1", "a.2", "b.1", 0, 1]), min_size=1,
                max_size=8))
def test_every_column_keeps_its_value_under_a_name_of_its_own(names):
    frame = pd.DataFrame([list(range(len(names)))], columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = _records_of_repeated_columns(frame) if not frame.columns.is_unique \
            else frame.to_dict(orient="records")
    assert len(records) == 1
    assert sorted(records[0].values()) == list(range(len(names)))
    assert len({str(key) for key in records[0]}) == len(names)


@pytest.mark.parametrize("columns", [["x", "y"], [0, 1]])
def test_unique_columns_are_recorded_as_before(tmp_path, columns):
    frame = pd.DataFrame([[1, 2]], columns=columns)
    events = _events(tmp_path, frame)
    assert events[0]["inputs"] == [{str(c): v for c, v in zip(columns, (1, 2))}]
