"""``Monitor.record_call`` / ``record_error``: what a server that times its own calls hands
over. A wrong value must never raise into the caller, nor break the drain for the other
calls folded with it, nor leave the latency histogram NaN for good."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inferwatch
from conftest import Scraper
from inferwatch import faults

BAD_DURATIONS = st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                          st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                          st.none(), st.text(max_size=3).filter(lambda t: not _is_number(t)),
                          st.just([0.1]), st.just(object()))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _latency(scraper: Scraper) -> tuple[float | None, float | None]:
    return (scraper.value("inferwatch_request_duration_seconds_count"),
            scraper.value("inferwatch_request_duration_seconds_sum"))


@settings(max_examples=40)
@given(BAD_DURATIONS, st.booleans())
def test_a_bad_duration_is_counted_and_keeps_the_latency_histogram_whole(duration, failed):
    scraper = Scraper()
    try:
        mon = inferwatch.monitor("m", "1", registry=scraper.registry)
        mon.record_call(0.25, 0.5)
        if failed:
            mon.record_error(duration, ValueError)
        else:
            mon.record_call(duration, 0.5)
        mon.record_call(0.25, 0.5)
        count, total = _latency(scraper)
        assert count == 3
        assert total is not None and math.isfinite(total) and total >= 0.5
        assert scraper.total("inferwatch_requests_total") == 3
        assert scraper.value("inferwatch_requests_in_flight") == 0
    finally:
        scraper.registry.close()


@pytest.mark.parametrize(("error", "label"), [(ValueError("boom"), "ValueError"),
                                              (KeyError, "KeyError"),
                                              ("ValueError", "Exception"),
                                              (None, "Exception"),
                                              (int, "Exception")])
def test_record_error_takes_an_exception_or_its_class_and_loses_no_other_call(
        scraper, error, label):
    """Before, an exception object (``record_error(t, exc)``) broke the whole drain: the
    calls recorded with it were all lost."""
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    before = faults.internal_error_counts().get("drain", 0)
    mon.record_call(0.1, 0.5)
    mon.record_error(0.1, error)
    mon.record_call(0.1, 0.5)
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_requests_total", outcome="error") == 1
    assert scraper.value("inferwatch_errors_total", error_type=label) == 1
    assert scraper.value("inferwatch_prediction_count", output="value") == 2
    assert faults.internal_error_counts().get("drain", 0) == before


def test_good_durations_of_any_numeric_type_are_recorded_as_given(scraper):
    import numpy as np

    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    for duration in (1, 0.5, np.float32(0.25), np.int64(2), 0.0):
        mon.record_call(duration, 0.5)
    assert _latency(scraper) == (5, 3.75)
