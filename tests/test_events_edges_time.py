"""Event log edges: times and durations from numpy and pandas are stored as what they mean.

pandas keeps datetimes as ``datetime64[ns]``, whose ``tolist()`` is an int of nanoseconds,
and durations as ``timedelta64``: a timestamp column taken with ``.to_numpy()`` must still
read as a time in the log, and a duration as seconds (the project's base unit).
"""

from __future__ import annotations

import datetime
import json

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.events.clean import clean
from inferwatch.events.jsonl import event_files
from inferwatch.events.sinks import Encoder, Query, query_events

# Every unit a datetime64 may carry, coarse to fine.
DATETIME_UNITS = ("Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as")
LINEAR_TIMEDELTA_UNITS = ("W", "D", "h", "m", "s", "ms", "us", "ns")


def test_a_pandas_timestamp_column_is_logged_as_iso_text(tmp_path, make_log):
    path = tmp_path / "events.jsonl"
    event_log = make_log(path)
    frame = pd.DataFrame({"seen": pd.to_datetime(["2024-05-01 08:00:00.123456789", None]),
                          "wait": pd.to_timedelta(["1.5s", None])})
    event_log.emit({"request_id": "r-1", "inputs": {"seen": frame["seen"].to_numpy(),
                                                   "wait": frame["wait"].to_numpy()},
                    "features": frame, "first": np.datetime64("2024-05-01T08:00:00", "ns")})
    assert event_log.flush(60)
    (line,) = event_files(path)[0].read_bytes().splitlines()
    event = json.loads(line)
    assert event["inputs"] == {"seen": ["2024-05-01T08:00:00.123456789", None],
                               "wait": [1.5, None]}
    assert event["features"] == [{"seen": "2024-05-01T08:00:00.123456789", "wait": 1.5},
                                 {"seen": None, "wait": None}]
    assert event["first"] == "2024-05-01T08:00:00.000000000"
    assert event_log.dropped_counts() == dict.fromkeys(event_log.dropped_counts(), 0)


def test_durations_are_seconds():
    cleaned = clean({"td": datetime.timedelta(minutes=2, microseconds=5),
                     "pd": pd.Timedelta("250ms"), "np": np.timedelta64(3, "ms"),
                     "nat": np.timedelta64("NaT"),
                     "grid": np.array([[1, 2]], dtype="timedelta64[s]")})
    assert cleaned == {"td": 120.000005, "pd": 0.25, "np": 0.003, "nat": None,
                       "grid": [[1.0, 2.0]]}


def _assert_stored_as(values: np.ndarray, expected: list) -> None:
    """The array, and its first element as a scalar, are stored as `expected`, nothing
    dropped."""
    encoder = Encoder(max_event_bytes=1 << 20)
    stored = json.loads(encoder.encode({"ts": 1.0, "array": values,
                                        "scalar": values[0]}).line)
    assert stored["array"] == expected
    assert stored["scalar"] == expected[0]
    assert not encoder.values_dropped


@given(unit=st.sampled_from(DATETIME_UNITS),
       ticks=st.lists(st.one_of(st.integers(-(2 ** 62), 2 ** 62), st.none()),
                      min_size=1, max_size=5))
def test_any_datetime64_is_its_iso_text(unit, ticks):
    values = np.array([np.datetime64("NaT", unit) if t is None else np.datetime64(t, unit)
                       for t in ticks], dtype=f"datetime64[{unit}]")
    expected = [None if t is None else str(np.datetime_as_string(v))
                for t, v in zip(ticks, values)]
    _assert_stored_as(values, expected)


@given(unit=st.sampled_from(LINEAR_TIMEDELTA_UNITS),
       ticks=st.lists(st.one_of(st.integers(-(2 ** 40), 2 ** 40), st.none()),
                      min_size=1, max_size=5))
def test_any_linear_timedelta64_is_seconds(unit, ticks):
    values = np.array([np.timedelta64("NaT", unit) if t is None else np.timedelta64(t, unit)
                       for t in ticks], dtype=f"timedelta64[{unit}]")
    expected = [None if t is None else float(v / np.timedelta64(1, "s"))
                for t, v in zip(ticks, values)]
    _assert_stored_as(values, expected)


def test_a_datetime_ts_is_kept_as_unix_seconds(tmp_path, make_log):
    path = tmp_path / "events.db"
    event_log = make_log(path)
    moment = datetime.datetime(2021, 3, 4, 5, 6, 7, 250000, tzinfo=datetime.timezone.utc)
    expected = moment.timestamp()
    forms = {
        "aware": moment.astimezone(datetime.timezone(datetime.timedelta(hours=-7))),
        "naive-utc": moment.replace(tzinfo=None),
        "pandas": pd.Timestamp(moment),
        "pandas-naive": pd.Timestamp(moment.replace(tzinfo=None)),
        "numpy": np.datetime64(moment.replace(tzinfo=None), "ns"),
    }
    for name, ts in forms.items():
        event_log.emit({"ts": ts, "request_id": name})
    assert event_log.flush(60)
    found = {}
    for name in forms:
        (body,) = list(query_events(path, Query(request_id=name)))
        found[name] = json.loads(body)["ts"]
    assert found == dict.fromkeys(forms, expected)
    # A stored ts is the row's ts column, so --since finds a backfilled event.
    lines = list(query_events(path, Query(until=expected + 1)))
    assert len(lines) == len(forms)


@given(seconds=st.floats(min_value=0, max_value=4e9, allow_nan=False),
       offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_any_aware_datetime_ts_is_its_unix_time(seconds, offset_minutes):
    zone = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    moment = datetime.datetime.fromtimestamp(seconds, zone)
    record = Encoder(max_event_bytes=4096).encode({"ts": moment}, now=-1.0)
    assert record.ts == moment.timestamp()
    assert json.loads(record.line)["ts"] == moment.timestamp()


def test_a_missing_or_unreadable_ts_is_the_write_time():
    encoder = Encoder(max_event_bytes=4096)
    for ts in (None, "soon", pd.NaT, np.datetime64("NaT"), float("nan")):
        assert encoder.encode({"ts": ts}, now=42.0).ts == 42.0
