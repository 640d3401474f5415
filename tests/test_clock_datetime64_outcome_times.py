"""record_outcome(at=np.datetime64(...)) in any unit and year: read as the same Unix seconds
as the same instant given as a datetime, never wrapped around through datetime64[ns]'s
1677..2262 range."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch import faults
from inferwatch.core.timestamps import seconds_of

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
# Units and how many microseconds one of them is (those a datetime can hold exactly).
_UNIT_MICROSECONDS = {"D": 86_400_000_000, "h": 3_600_000_000, "m": 60_000_000,
                      "s": 1_000_000, "ms": 1_000, "us": 1}
# Ticks per microsecond of each unit finer than a microsecond.
_FINE_UNITS = {"ns": 10**3, "ps": 10**6, "fs": 10**9, "as": 10**12}


@settings(max_examples=300, deadline=None)
@given(instant=st.datetimes(), unit=st.sampled_from(sorted(_UNIT_MICROSECONDS)))
def test_datetime64_reads_as_the_same_instant_as_a_datetime(instant, unit):
    instant = instant.replace(tzinfo=UTC)
    step = _UNIT_MICROSECONDS[unit]
    micros = (instant - _EPOCH) // dt.timedelta(microseconds=1)
    micros -= micros % step  # an instant the unit can hold
    instant = _EPOCH + dt.timedelta(microseconds=micros)
    stamp = np.datetime64(micros // step, unit)
    assert seconds_of(stamp) == seconds_of(instant) == instant.timestamp()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), unit=st.sampled_from(sorted(_FINE_UNITS)))
def test_sub_microsecond_units_read_as_the_same_instant(data, unit):
    per_micro = _FINE_UNITS[unit]
    limit = (2**63 - 1) // per_micro
    micros = data.draw(st.integers(-limit, limit))
    instant = _EPOCH + dt.timedelta(microseconds=micros)
    assert seconds_of(np.datetime64(micros * per_micro, unit)) == seconds_of(instant)


@pytest.mark.parametrize("text", ["3000-01-01", "9999-12-31", "1600-01-01", "2262-04-12",
                                  "1677-09-21"])
def test_years_outside_nanoseconds_range_are_not_wrapped(text):
    day = dt.date.fromisoformat(text)
    for unit in ("D", "s", "ms", "us"):
        assert seconds_of(np.datetime64(text).astype(f"datetime64[{unit}]")) == \
            seconds_of(day) == dt.datetime(day.year, day.month, day.day,
                                           tzinfo=UTC).timestamp()
    assert seconds_of(np.datetime64(text[:4], "Y")) == seconds_of(dt.date(day.year, 1, 1))


def test_a_year_past_what_seconds_count_is_no_time_and_counted():
    before = faults.internal_error_counts().get("outcome", 0)
    assert math.isnan(seconds_of(np.datetime64(10**15, "Y")))
    assert faults.internal_error_counts().get("outcome", 0) == before + 1
    # Still a time when seconds can count it.
    assert seconds_of(np.datetime64(300_000 - 1970, "Y")) > 9e12


def test_outcome_at_a_far_future_datetime64_expires_like_the_same_datetime():
    registry = inferwatch.Registry(drain_interval=3600)
    try:
        model = inferwatch.instrument(lambda rows: np.array([1]), name="m", version="1",
                                      registry=registry)
        monitor = inferwatch.monitor("m", registry=registry)
        for i, at in enumerate([np.datetime64("3000-01-01"), dt.datetime(3000, 1, 1)]):
            model([1.0], request_id=f"r-{i}")
            registry.drain()
            monitor.record_outcome(f"r-{i}", 1, at=at)
        state = registry.monitors()[0].copy_state()
        assert not state.counters.get("inferwatch_outcomes_total")
        assert dict(state.counters["inferwatch_outcomes_unmatched_total"]) == {("expired",): 2.0}
    finally:
        registry.close()
