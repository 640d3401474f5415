"""Drift windows copied through dicts, label values equal only as text, and snapshot stamps
from a clock running far ahead."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from family_samples import samples
from inferwatch import faults
from inferwatch.core.state import ModelState, SummarySettings
from inferwatch.multiproc.safe_read import read_entry
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.quality.drift_window import DriftWindow

TEN_YEARS = 10 * 365 * 86400.0
WEEK = 7 * 86400.0
# The most a snapshot's stamp is believed ahead of the reader's clock (a step back of the
# wall clock leaves live workers ahead by the step).
MAX_CLOCK_LEAD_SECONDS = 86400.0


# --- a drift window copied after a step back keeps refusing what the original refuses -----

@settings(max_examples=60, deadline=None)
@given(age_buckets=st.integers(1, 12), windows_back=st.integers(1, 5),
       start=st.integers(10_000, 10**9), offset=st.integers(0, 11))
def test_a_copied_window_refuses_late_rows_as_the_original_does(
        age_buckets: int, windows_back: int, start: int, offset: int) -> None:
    window = DriftWindow([2, 3], max_age_seconds=60.0 * age_buckets, age_buckets=age_buckets)
    now = float(start) * 60.0
    assert window.add([np.array([4, 1]), np.array([0, 2, 3])], rows=5, now=now)
    copy = DriftWindow.from_dict(window.to_dict())
    # The wall clock stepped back a whole window or more: a late add lands in a slot the
    # window itself filled for a newer bucket.
    late = now - windows_back * window.max_age_seconds - (offset % age_buckets) * 60.0
    original = window.add([np.array([1, 0]), np.array([0, 0, 1])], rows=1, now=late)
    copied = copy.add([np.array([1, 0]), np.array([0, 0, 1])], rows=1, now=late)
    assert copied == original
    assert copy.to_dict() == window.to_dict()
    assert [c.tolist() for c in copy.counts(now=now)[0]] == [[4, 1], [0, 2, 3]]


def test_a_window_dict_of_an_earlier_release_still_loads() -> None:
    window = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    window.add(np.array([1, 2]), rows=3, now=1000.0)
    data = window.to_dict()
    assert data["newest_added"] == 100
    del data["newest_added"]
    restored = DriftWindow.from_dict(data)
    assert restored.counts(now=1000.0)[1] == 3
    for bad in (True, 2.5, -2, "100", 2**63):
        with pytest.raises(ValueError, match="newest_added"):
            DriftWindow.from_dict({**data, "newest_added": bad})


# --- label values equal only as text are one series ---------------------------------------

@settings(max_examples=40, deadline=None)
@given(first=st.integers(0, 10**6), second=st.integers(0, 10**6),
       value=st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)))
def test_counters_equal_only_as_text_are_summed_not_lost(first: int, second: int,
                                                         value: float) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_outcomes_total", (value,), first)  # type: ignore[arg-type]
    state.inc("inferwatch_outcomes_total", (str(value),), second)
    restored = ModelState.from_dict(state.to_dict())
    assert restored.counters["inferwatch_outcomes_total"] == {
        (str(value),): float(first + second)}


def test_gauges_and_histograms_equal_only_as_text_combine_by_their_rules() -> None:
    state = ModelState("fraud", "1")
    state.set_gauge("inferwatch_requests_in_flight", (1,), 2.0)  # type: ignore[arg-type]
    state.set_gauge("inferwatch_requests_in_flight", ("1",), 3.0)
    state.set_gauge("inferwatch_some_level", (1,), 7.0)  # type: ignore[arg-type]
    state.set_gauge("inferwatch_some_level", ("1",), 4.0)
    state.histogram("h", (1,), [1.0]).observe(np.array([0.5]))  # type: ignore[arg-type]
    state.histogram("h", ("1",), [1.0]).observe(np.array([2.0, 0.1]))
    restored = ModelState.from_dict(state.to_dict())
    assert restored.gauges["inferwatch_requests_in_flight"] == {("1",): 5.0}
    assert restored.gauges["inferwatch_some_level"] == {("1",): 7.0}
    assert restored.histograms["h"][("1",)].counts.tolist() == [2, 1]
    merged = ModelState("fraud", "1")
    merged.merge_gauges_of(state.to_dict())
    assert merged.gauges["inferwatch_requests_in_flight"] == {("1",): 5.0}


# --- a snapshot stamped far ahead does not move every merged window -------------------------

def _week_state(values: range) -> ModelState:
    state = ModelState("fraud", "1", summary_settings=SummarySettings(
        max_age_seconds=WEEK, age_buckets=7))
    state.summary("inferwatch_prediction", ("value",)).observe(
        np.array([float(v) for v in values]), now=time.time())
    state.inc("inferwatch_requests_total", ("ok",), len(values))
    return state


def _write(directory: SnapshotDirectory, who: WorkerId, state: ModelState,
           written_at: float) -> None:
    directory.write(who.name, encode(Snapshot(models=[model_dict(state)],
                                              written_at=written_at)), who)


def test_a_live_worker_stamped_years_ahead_does_not_empty_the_merged_quantiles(
        tmp_path) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    wrong = WorkerId(2**22 + 17, 1, me.boot)  # written a moment ago: taken as live
    _write(directory, me, _week_state(range(100)), time.time())
    ahead = ModelState("fraud", "1", summary_settings=SummarySettings(
        max_age_seconds=WEEK, age_buckets=7))
    ahead.inc("inferwatch_requests_total", ("ok",), 1)
    _write(directory, wrong, ahead, time.time() + TEN_YEARS)
    before = faults.internal_error_counts().get("multiproc_read", 0)
    now = time.time()
    view = SnapshotDirectory(str(tmp_path)).read_view(now)
    assert view.at <= now + MAX_CLOCK_LEAD_SECONDS
    assert faults.internal_error_counts().get("multiproc_read", 0) > before
    families = view.families(now)
    assert samples(families, "inferwatch_requests_total", outcome="ok") == [101]
    median = samples(families, "inferwatch_prediction", output="value", quantile="0.5")
    assert len(median) == 1 and not math.isnan(median[0])
    assert median[0] == pytest.approx(50, rel=0.05)


def test_a_dead_worker_stamped_years_ahead_does_not_poison_later_folds(tmp_path) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    wrong = WorkerId(2**22 + 19, 1, me.boot)  # no such pid
    later = WorkerId(2**22 + 23, 1, me.boot)
    ahead = ModelState("fraud", "1", summary_settings=SummarySettings(
        max_age_seconds=WEEK, age_buckets=7))
    ahead.inc("inferwatch_requests_total", ("ok",), 1)
    _write(directory, wrong, ahead, time.time() + TEN_YEARS)
    assert directory.fold(me, also=[wrong.name], now=time.time()) == [wrong.name]
    _write(directory, later, _week_state(range(100)), time.time())
    assert directory.fold(me, also=[later.name], now=time.time()) == [later.name]

    data, _ = read_entry(str(tmp_path / ARCHIVE), directory.trusted_uids)
    assert decode(data).header["written_at"] <= time.time() + MAX_CLOCK_LEAD_SECONDS
    now = time.time()
    families = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
    assert samples(families, "inferwatch_requests_total", outcome="ok") == [101]
    median = samples(families, "inferwatch_prediction", output="value", quantile="0.5")
    assert len(median) == 1 and not math.isnan(median[0])
    assert median[0] == pytest.approx(50, rel=0.05)
