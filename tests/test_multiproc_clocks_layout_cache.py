"""Multi-worker mode with wrong clocks and odd snapshot contents: drift buckets from a clock
running ahead folded into the archive, one live worker stamped hours ahead of the others,
info labels that are numbers, and many live snapshot layouts at once."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from family_samples import samples
from inferwatch import faults
from inferwatch.core.state import ModelState
from inferwatch.multiproc import snapshot_format
from inferwatch.multiproc.safe_read import read_entry
from inferwatch.multiproc.snapshot_format import (
    Snapshot,
    decode,
    encode,
    exact_models,
    model_dict,
)
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.quality.drift_window import DriftWindow
from inferwatch.quality.reference import Reference
from inferwatch.quality.tracker import FeatureTracker

HOUR = 3600.0
BUCKET = 600.0  # a drift window of an hour in six buckets
REF = Reference.from_data({"amount": np.arange(100.0), "country": np.array(["de", "fr"] * 50)},
                          predictions=np.linspace(0.0, 1.0, 100))


def _faults(component: str) -> float:
    return faults.internal_error_counts().get(component, 0)


def _bucket_start(at: float) -> float:
    """The start of the drift bucket holding `at`, plus a second (never on an edge)."""
    return math.floor(at / BUCKET) * BUCKET + 1.0


def _state(rows: int, drift_at: float, quantile_at: float | None = None) -> ModelState:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), rows)
    if quantile_at is not None:
        state.summary("inferwatch_prediction", ("value",)).observe(
            np.arange(100.0), now=quantile_at)
    tracker = FeatureTracker(REF, window_seconds=HOUR, age_buckets=6)
    tracker.check_inputs([{"amount": 5.0, "country": "de"}] * rows, now=drift_at)
    state.extras["drift"] = tracker.drift
    return state


def _write(directory: SnapshotDirectory, who: WorkerId, state: ModelState,
           written_at: float) -> None:
    directory.write(who.name, encode(Snapshot(models=[model_dict(state)],
                                              written_at=written_at)), who)


def _archived_drift(directory: SnapshotDirectory):
    data, _ = read_entry(f"{directory.path}/{ARCHIVE}", directory.trusted_uids)
    (state,) = exact_models(decode(data))  # type: ignore[arg-type]
    return state.extras["drift"]


# --- 1. folding drift buckets from a clock running ahead -----------------------------------

def test_a_fold_drops_a_far_ahead_drift_bucket_and_keeps_later_current_rows(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    first, ahead, later = (WorkerId(2**22 + n, 1, me.boot) for n in (101, 103, 107))
    t = _bucket_start(time.time())
    # The archive holds a dead worker's rows of the current bucket.
    _write(directory, first, _state(2, t), t)
    assert directory.fold(me, also=[first.name], now=t) == [first.name]
    # A dead worker whose drift rows were timed 3 h 10 min ahead (its stamp is right): that
    # bucket lands in the slot of the next bucket, which is empty in the archive.
    _write(directory, ahead, _state(5, t + 3 * HOUR + BUCKET), t)
    before = _faults("drift")
    assert directory.fold(me, also=[ahead.name], now=t) == [ahead.name]
    assert _faults("drift") > before
    drift = _archived_drift(directory)
    current = drift.features.bucket_id(t)
    assert all(b["id"] <= current for b in drift.features.to_dict()["buckets"])
    assert drift.rows(t) == 2
    # Ten minutes on, another dead worker's rows of the (then) current bucket are folded in.
    _write(directory, later, _state(3, t + BUCKET), t + BUCKET)
    assert directory.fold(me, also=[later.name], now=t + BUCKET) == [later.name]
    assert _archived_drift(directory).rows(t + BUCKET) == 5


def test_a_merge_at_now_replaces_a_held_bucket_ahead_of_now():
    window = DriftWindow([2], max_age_seconds=60, age_buckets=6)
    t0 = 1_000_020.0
    # Held ahead of `now` (merged earlier without a time, as a view merges).
    window.merge_buckets([int(t0 // 10) + 7], [9], [np.array([0, 9])])
    before = _faults("drift")
    window.merge_buckets([int(t0 // 10) + 1], [4], [np.array([4, 0])], now=t0 + 10.0)
    assert window.counts(now=t0 + 10.0)[1] == 4
    assert window.future_buckets_dropped == 1
    assert _faults("drift") == before + 1


@settings(max_examples=80, deadline=None)
@given(held=st.lists(st.integers(0, 40), max_size=8), foreign=st.lists(st.integers(0, 40),
       min_size=1, max_size=8), at=st.integers(0, 30))
def test_a_merge_at_now_never_keeps_a_bucket_ahead_and_takes_every_one_in_the_window(
        held, foreign, at):
    t0 = 1_000_000.0
    local = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    # Whatever the window held before (buckets merged without a time, some ahead of `now`).
    for b in held:
        local.merge_buckets([int(t0 // 10) + b], [1], [np.array([1])])
    other = DriftWindow([1], max_age_seconds=60, age_buckets=6)
    for b in foreign:
        other.add([np.array([1])], rows=1, now=t0 + 10.0 * b)
    now = t0 + 10.0 * at
    local_in_window = local.counts(now=now)[1]
    current = local.bucket_id(now)

    def ahead() -> set[int]:
        return {b["id"] for b in local.to_dict()["buckets"] if b["id"] > current}

    held_ahead = ahead()
    local.merge(other, now=now)
    assert ahead() <= held_ahead  # none merged in; a held one may give way
    # Every foreign row in the window at `now` is counted, and no local one is lost.
    assert local.counts(now=now)[1] >= max(other.counts(now=now)[1], local_in_window)


# --- 2. one live worker stamped hours ahead of the others ----------------------------------

def _live_workers(me: WorkerId, n: int) -> list[WorkerId]:
    # No such pids, but written a moment ago: taken as live.
    return [WorkerId(2**22 + 200 + n_, 1, me.boot) for n_ in range(n)]


@pytest.mark.parametrize("correct", [1, 2, 3])
def test_one_live_worker_hours_ahead_does_not_empty_the_others_windows(tmp_path, correct):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    now = time.time()
    *right, wrong = _live_workers(me, correct + 1)
    for who in right:
        _write(directory, who, _state(10, now, quantile_at=now), now)
    _write(directory, wrong, _state(1, now + 3 * HOUR), now + 3 * HOUR)
    before = _faults("multiproc_read")
    view = SnapshotDirectory(str(tmp_path)).read_view(now)
    assert view.at < now + 60
    assert _faults("multiproc_read") > before
    (state,) = view.states
    assert state.extras["drift"].rows(view.at) == 10 * correct
    families = view.families(now)
    assert samples(families, "inferwatch_requests_total", outcome="ok") == [10 * correct + 1]
    median = samples(families, "inferwatch_prediction", output="value", quantile="0.5")
    assert len(median) == 1 and median[0] == pytest.approx(50, rel=0.05)


def test_after_a_step_back_the_view_follows_every_worker_still_ahead(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    now = time.time()
    # The wall clock stepped back an hour: all three workers' windows go on ahead of it,
    # their stamps a refresh apart.
    stamps = [now + HOUR, now + HOUR + 12, now + HOUR + 25]
    for who, stamp in zip(_live_workers(me, 3), stamps):
        _write(directory, who, _state(4, stamp, quantile_at=stamp), stamp)
    before = _faults("multiproc_read")
    view = SnapshotDirectory(str(tmp_path)).read_view(now)
    assert view.at == stamps[-1]
    assert _faults("multiproc_read") == before
    assert view.states[0].extras["drift"].rows(view.at) == 12


# --- 3. info labels that are numbers -------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.integers(-10**6, 10**6), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_a_number_in_info_is_read_as_its_text_not_a_refused_file(value):
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), 3)
    state.info["build"] = value
    state.info["task"] = "classification"
    raw = decode(encode(Snapshot(models=[model_dict(state)], written_at=1.0)))
    assert raw.header["models"][0]["info"] == {"build": str(value), "task": "classification"}
    (folded,) = exact_models(raw)
    assert folded.info["build"] == str(value)


def test_a_worker_with_a_number_in_info_still_counts_in_the_merged_view(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    now = time.time()
    state = _state(3, now)
    state.info["replicas"] = 3
    _write(directory, _live_workers(me, 1)[0], state, now)
    families = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
    assert samples(families, "inferwatch_requests_total", outcome="ok") == [3]
    assert samples(families, "inferwatch_model_info", replicas="3") == [1.0]


@pytest.mark.parametrize("value", [None, [1, 2], {"a": "b"}])
def test_any_info_value_is_written_as_its_text(value):
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), 1)
    state.info["k"] = value
    raw = decode(encode(Snapshot(models=[model_dict(state)], written_at=1.0)))
    assert raw.header["models"][0]["info"] == {"k": str(value)}
    assert state.info["k"] == value  # the state itself is left as it is


# --- 4. many live layouts ------------------------------------------------------------------

def _layout_file(n: int) -> bytes:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_errors_total", (f"Error{n}",), 1)  # each worker its own series
    return encode(Snapshot(models=[model_dict(state)], written_at=1.0))


def _counting_parses(monkeypatch, limit: int, max_bytes: int = 1 << 30) -> list[bytes]:
    monkeypatch.setattr(snapshot_format, "_by_crc", type(snapshot_format._by_crc)())
    monkeypatch.setattr(snapshot_format, "_layout_bytes", 0)
    monkeypatch.setattr(snapshot_format, "MAX_LAYOUTS", limit)
    monkeypatch.setattr(snapshot_format, "MAX_LAYOUT_BYTES", max_bytes)
    parsed: list[bytes] = []
    real = snapshot_format.parse_layout

    def counting(text: bytes):
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(snapshot_format, "parse_layout", counting)
    return parsed


def test_the_layout_cache_evicts_the_least_recently_used_not_all(monkeypatch):
    limit = 4
    parsed = _counting_parses(monkeypatch, limit)
    files = [_layout_file(n) for n in range(limit + 1)]
    for data in files[:limit]:
        decode(data)
    assert len(parsed) == limit
    decode(files[0])  # used again: now the most recent
    decode(files[limit])  # one past the limit: the least recently used (files[1]) goes
    assert len(parsed) == limit + 1
    for data in files[2:limit]:
        decode(data)
    decode(files[0])
    decode(files[limit])
    assert len(parsed) == limit + 1  # all still held
    decode(files[1])
    assert len(parsed) == limit + 2
    assert len(snapshot_format._by_crc) == limit


def test_the_layout_cache_holds_every_layout_of_a_scrape_of_many_workers(monkeypatch):
    # 17 workers that each saw another error type: one more than the cache used to hold,
    # which then parsed every file's layout on every scrape.
    parsed = _counting_parses(monkeypatch, snapshot_format.MAX_LAYOUTS)
    files = [_layout_file(n) for n in range(17)]
    for _ in range(3):
        for data in files:
            decode(data)
    assert len(parsed) == 17


def test_the_layout_cache_is_bounded_by_bytes_too(monkeypatch):
    files = [_layout_file(n) for n in range(6)]
    _counting_parses(monkeypatch, 100)
    size = len(decode(files[0]).layout.text)  # type: ignore[union-attr]
    parsed = _counting_parses(monkeypatch, 100, max_bytes=3 * size + size // 2)
    for data in files:
        decode(data)
    assert len(snapshot_format._by_crc) == 3
    assert snapshot_format._layout_bytes <= 3 * size + size // 2
    decode(files[-1])
    assert len(parsed) == 6


def test_more_live_layouts_than_the_cache_once_held_still_merge(tmp_path):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    workers = _live_workers(me, 20)
    for n, who in enumerate(workers):
        directory.write(who.name, _layout_file(n), who)
    now = time.time()
    for _ in range(2):
        families = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
        assert sum(samples(families, "inferwatch_errors_total")) == len(workers)
