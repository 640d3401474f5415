"""Worker snapshots written, read and merged the way servers produce them: label values
that are not strings, drift buckets of clocks running ahead, damaged and changing files."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from family_samples import samples
from inferwatch import faults
from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict
from inferwatch.multiproc.store import SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from snapshot_frames import framed, sections


def _write(directory: SnapshotDirectory, who: WorkerId, state: ModelState,
           written_at: float | None = None) -> None:
    at = time.time() if written_at is None else written_at
    directory.write(who.name, encode(Snapshot(models=[model_dict(state)], written_at=at)), who)


def _others(me: WorkerId, *offsets: int) -> list[WorkerId]:
    """Workers of this boot whose files were written a moment ago: taken as live."""
    return [WorkerId(2**22 + offset, 1, me.boot) for offset in offsets]


# --- label values that are not strings ------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(label=st.one_of(st.integers(-1000, 1000), st.booleans(),
                       st.floats(-1e6, 1e6, allow_nan=False)),
       first=st.integers(1, 10**6), second=st.integers(0, 10**6))
def test_a_worker_with_a_label_value_that_is_not_text_keeps_all_its_counts(
        tmp_path_factory, label: object, first: int, second: int) -> None:
    path = tmp_path_factory.mktemp("snapshots")
    directory = SnapshotDirectory(str(path))
    me = WorkerId.current()
    (other,) = _others(me, 31)
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), 7)
    state.inc("inferwatch_outcomes_total", (label,), first)  # type: ignore[arg-type]
    state.inc("inferwatch_outcomes_total", (str(label),), second)
    _write(directory, me, state)
    healthy = ModelState("fraud", "1")
    healthy.inc("inferwatch_requests_total", ("ok",), 5)
    healthy.inc("inferwatch_outcomes_total", (str(label),), 1)
    _write(directory, other, healthy)

    before = faults.internal_error_counts().get("multiproc_read", 0)
    now = time.time()
    view = SnapshotDirectory(str(path)).read_view(now)
    families = view.families(now)
    assert faults.internal_error_counts().get("multiproc_read", 0) == before
    assert samples(families, "inferwatch_requests_total", outcome="ok") == [12]
    (merged,) = view.states
    assert merged.counters["inferwatch_outcomes_total"] == {
        (str(label),): float(first + second + 1)}


def test_histograms_and_summaries_with_int_labels_merge_with_their_text_twins(
        tmp_path) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    (other,) = _others(me, 37)
    now = time.time()
    state = ModelState("fraud", "1")
    state.histogram("inferwatch_request_latency_seconds", (3,), [0.1, 1.0]).observe(
        np.array([0.05, 0.5]))  # type: ignore[arg-type]
    state.histogram("inferwatch_request_latency_seconds", ("3",), [0.1, 1.0]).observe(
        np.array([5.0]))
    state.summary("inferwatch_prediction", (0,)).observe(  # type: ignore[arg-type]
        np.arange(1.0, 51.0), now=now)
    state.summary("inferwatch_prediction", ("0",)).observe(np.arange(51.0, 101.0), now=now)
    _write(directory, me, state, now)
    healthy = ModelState("fraud", "1")
    healthy.histogram("inferwatch_request_latency_seconds", ("3",), [0.1, 1.0]).observe(
        np.array([0.5]))
    _write(directory, other, healthy, now)

    view = SnapshotDirectory(str(tmp_path)).read_view(now)
    (merged,) = view.states
    assert merged.histograms["inferwatch_request_latency_seconds"][("3",)].counts.tolist() \
        == [1, 2, 1]
    summary = merged.summaries["inferwatch_prediction"][("0",)]
    assert summary.count == 100
    median = summary.quantiles([0.5], now=now)[0]
    assert median == pytest.approx(50, rel=0.05)


def test_a_worker_file_packs_sketch_bins_taken_as_arrays_as_it_packs_them_as_lists() -> None:
    """model_dict hands the packer each summary's bins as a copy of the int64 array: the
    file is byte for byte the file of the JSON form (lists), and what the drain adds to the
    state after model_dict (outside the lock, while encode runs) is not in it."""
    now = 1_700_000_000.0
    rng = np.random.default_rng(3)
    state = ModelState("fraud", "1")
    for output in ("score", "eta"):
        summary = state.summary("inferwatch_prediction", (output,))
        for age in range(5):
            summary.observe(rng.lognormal(0.0, 2.0, 300), now - 60 * age)
    state.summary("inferwatch_prediction_confidence").observe(rng.random(200), now)
    packed = model_dict(state)
    bins = packed["summaries"]["inferwatch_prediction"][0][1]["sketch"]["buckets"][0][1]
    assert bins["positive"]["counts"].__class__ is np.ndarray
    as_lists = json.loads(json.dumps(state.to_dict()))
    state.summary("inferwatch_prediction", ("score",)).observe(np.full(1000, 1.0), now)
    state.to_dict()  # folds those values into the bins
    assert encode(Snapshot(models=[packed], written_at=now)) == \
        encode(Snapshot(models=[as_lists], written_at=now))


# --- drift buckets ahead of the merged view's time ----------------------------------------

NOW = 1_700_000_000.0


def _drift_snapshot(reference, values: np.ndarray, at: float, stamp: float = NOW):
    from inferwatch.quality.tracker import FeatureTracker

    tracker = FeatureTracker(reference)
    tracker.check_inputs([{"x": float(v)} for v in values], at)
    state = ModelState("fraud", "1")
    state.extras["drift"] = tracker.drift
    return decode(encode(Snapshot(models=[model_dict(state)], written_at=stamp))), tracker.drift


@pytest.mark.parametrize("ahead_first", [False, True], ids=["live first", "ahead first"])
@pytest.mark.parametrize("windows_ahead", [1, 3, 50])
def test_a_drift_bucket_far_ahead_does_not_take_the_slot_of_live_rows(
        ahead_first: bool, windows_ahead: int) -> None:
    from inferwatch.multiproc.merge import merge_view
    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(5)
    reference = Reference.from_data({"x": rng.normal(size=500)})
    live, drift = _drift_snapshot(reference, rng.normal(size=40), NOW)
    # An archive whose fold kept a bucket of a clock running ahead: the same slot.
    window = drift.features.max_age_seconds
    ahead, _ = _drift_snapshot(reference, rng.normal(size=7), NOW + windows_ahead * window)
    errors: list[Exception] = []
    raws = [ahead, live] if ahead_first else [live, ahead]
    view = merge_view(raws, NOW, on_error=errors.append)
    merged = view.states[0].extras["drift"]
    assert merged.rows(NOW) == 40
    assert merged.scores(NOW) == drift.scores(NOW)
    assert any("ahead" in str(error) for error in errors)


def test_drift_buckets_of_an_earlier_window_are_left_out_without_a_fault() -> None:
    from inferwatch.multiproc.merge import merge_view
    from inferwatch.quality.reference import Reference

    rng = np.random.default_rng(6)
    reference = Reference.from_data({"x": rng.normal(size=500)})
    live, drift = _drift_snapshot(reference, rng.normal(size=30), NOW)
    window = drift.features.max_age_seconds
    expired, _ = _drift_snapshot(reference, rng.normal(size=9), NOW - 2 * window)
    recent, _ = _drift_snapshot(reference, rng.normal(size=4), NOW - window / 3)
    errors: list[Exception] = []
    for raws in ([expired, live, recent], [live, recent, expired]):
        view = merge_view(raws, NOW, on_error=errors.append)
        assert view.states[0].extras["drift"].rows(NOW) == 34
    assert errors == []


# --- crafted bin arrays -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["<u8", ">u2", ">i8"])
def test_a_file_with_bins_of_a_type_the_writer_never_uses_is_skipped_not_the_scrape(
        tmp_path, dtype: str) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    (crafted,) = _others(me, 41)
    now = time.time()
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), 3)
    state.summary("inferwatch_prediction", ("value",)).observe(np.arange(1.0, 101.0), now=now)
    _write(directory, me, state, now)
    parts = sections(encode(Snapshot(models=[model_dict(state)], written_at=now)))
    header = json.loads(parts["state"])
    bins = np.frombuffer(parts["bins"], dtype=header["dtype"])
    header["dtype"] = dtype
    parts["state"], parts["bins"] = json.dumps(header).encode(), bins.astype(dtype).tobytes()
    directory.write(crafted.name, framed(parts), crafted)

    before = faults.internal_error_counts().get("multiproc_read", 0)
    view = SnapshotDirectory(str(tmp_path)).read_view(now)
    families = view.families(now)
    assert faults.internal_error_counts().get("multiproc_read", 0) > before
    assert samples(families, "inferwatch_requests_total", outcome="ok") == [3]
    median = samples(families, "inferwatch_prediction", output="value", quantile="0.5")
    assert median == [pytest.approx(50, rel=0.05)]
