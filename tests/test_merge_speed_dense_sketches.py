"""The multi-worker read and merge, second pass: sketches built from trusted bins, and the
time a fold merges windows at.

The merge now builds each series' sketch with ``DDSketch.from_dense_bins``, which skips
the checks ``dense_bins`` already guarantees: the sketch (bins laid out alike) and the
errors must be those of ``from_bins``, and the merged ``/metrics`` text, errors and
refusals those of the modules before this change (``ORIGINAL``, in a process of their
own, as tests/test_merge_speed_cached_decoding.py compares).

A fold followed every folded snapshot's stamp up to a day ahead: one dead worker with a
clock far ahead moved the fold, and the archive's stamp, past every window the archive
held, and every later fold stayed there.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from family_samples import samples
from inferwatch import faults
from inferwatch.core import ddsketch
from inferwatch.core.ddsketch import DDSketch
from inferwatch.core.state import ModelState
from inferwatch.multiproc import merge, snapshot_format
from inferwatch.multiproc.safe_read import read_entry
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict
from inferwatch.multiproc.snapshot_layout import dense_bins
from inferwatch.multiproc.store import (
    ARCHIVE,
    MAX_STAMP_SPREAD_SECONDS,
    SnapshotDirectory,
)
from inferwatch.multiproc.worker_id import WorkerId
from test_merge_speed_cached_decoding import (
    MODELS,
    NOW,
    assert_alike,
    blobs_of,
    deployment,
    original_modules,
    worker_strategy,
)

# The commit before this pass, and the files it changed.
ORIGINAL = "40b45622b789834f4751b8c71dd902266d3c0381"
CHANGED = ("multiproc/snapshot_format.py", "multiproc/merge.py", "multiproc/store.py",
           "core/ddsketch.py")
HOUR = 3600.0


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory):
    """This tree with the changed files as they were at ORIGINAL."""
    yield from original_modules(tmp_path_factory.mktemp("original13"), ORIGINAL, CHANGED)


# --- the trusted constructor ------------------------------------------------------------------

def _state_of(sketch: DDSketch) -> tuple:
    """Everything a sketch holds, its stores' layout included."""
    stores = tuple((store.bins.tolist(), store.offset, store.min_key, store.max_key,
                    store.total, store.max_bins)
                   for store in (sketch._positive, sketch._negative))
    return (sketch.relative_accuracy, sketch.max_bins, sketch._log_gamma, sketch._multiplier,
            sketch.min_indexable, sketch._zero_count, sketch.sum, stores)


def _built(make, *args, **kwargs) -> tuple:
    try:
        return ("sketch", _state_of(make(*args, **kwargs)))
    except ValueError as exc:
        return ("refused", str(exc))


# Counts as files hold them (unsigned, or int64 below 2**53), and larger ones: 72 of them
# (6 runs of 12) add past 2**61, never past int64.
COUNT = st.one_of(st.integers(0, 9), st.integers(0, 2**53 - 1), st.just(2**56))
SEGMENTS = st.lists(st.tuples(st.one_of(st.integers(-40, 40), st.sampled_from(
    [-1500, 1400, -3000, 3000, 2**40])), st.lists(COUNT, max_size=12)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(positive=SEGMENTS, negative=SEGMENTS, max_bins=st.sampled_from([1, 4, 16, 2048]),
       accuracy=st.sampled_from([0.01, 0.05, 0.2]),
       zero=st.one_of(st.integers(0, 5), st.just(2**61), st.just(2**61 + 1)),
       total=st.floats(allow_nan=False))
def test_from_dense_bins_builds_what_from_bins_builds_or_refuses_alike(
        positive, negative, max_bins, accuracy, zero, total):
    runs = {name: dense_bins([(offset, np.array(counts, dtype=np.int64))
                              for offset, counts in segments], max_bins)
            for name, segments in (("positive", positive), ("negative", negative))}
    expected = _built(DDSketch.from_bins, accuracy, max_bins, zero_count=zero, total=total,
                      **runs)
    assert _built(DDSketch.from_dense_bins, accuracy, max_bins, zero_count=zero,
                  total=total, **runs) == expected
    # Again, from the settings cached by the first call.
    assert _built(DDSketch.from_dense_bins, accuracy, max_bins, zero_count=zero,
                  total=total, **runs) == expected


@pytest.mark.parametrize("counts", [
    [5, -(2**62), 7],  # int64 sums gone negative
    [2**61 + 1],  # past the bound, though its float is not
    [2**60, 2**60, 1],
    [2**60, 2**60 - 1],
    [2**52, 2**52, 3],  # a float sum past 2**53: the int64 one counts
])
def test_from_dense_bins_bounds_counts_and_checks_settings_as_from_bins(counts):
    run = (3, np.array(counts, dtype=np.int64))
    for args in ((0.01, 2048), (1.5, 2048), (0.01, 0), (0.01, True)):
        assert _built(DDSketch.from_dense_bins, *args, negative=run) == _built(
            DDSketch.from_bins, *args, negative=run)
    assert len(ddsketch._DENSE_TEMPLATES) <= 64


def test_a_merged_sketch_keeps_working_as_one_from_from_bins():
    run = dense_bins([(10, np.array([3, 0, 2], dtype=np.int64)),
                      (12, np.array([1, 4], dtype=np.int64))], 2048)
    mine = DDSketch.from_dense_bins(0.01, 2048, positive=run, zero_count=2, total=9.5)
    theirs = DDSketch.from_bins(0.01, 2048, positive=run, zero_count=2, total=9.5)
    for sketch in (mine, theirs):
        sketch.add(np.array([0.5, 3.0, 1e6, -2.0]))
    assert _state_of(mine) == _state_of(theirs)
    assert mine.quantiles([0.1, 0.5, 0.99]) == theirs.quantiles([0.1, 0.5, 0.99])


def test_the_merge_builds_its_sketches_without_the_checked_constructor(monkeypatch):
    raws = [snapshot_format.decode(blob) for blob in deployment(layouts=2, workers=4)]
    calls = {"from_bins": 0, "from_dense_bins": 0}
    for name in calls:
        method = getattr(DDSketch, name).__func__

        def counted(cls, *args, _method=method, _name=name, **kwargs):
            calls[_name] += 1
            return _method(cls, *args, **kwargs)

        monkeypatch.setattr(DDSketch, name, classmethod(counted))
    view = merge.merge_view(raws, NOW)
    assert calls == {"from_bins": 0, "from_dense_bins": len(MODELS)}  # one summary each
    for state in view.states:
        (summary,) = state.summaries["inferwatch_prediction"].values()
        assert summary.count == 4 * 7  # four workers' values, in the window
        assert not math.isnan(summary.quantiles([0.5], NOW)[0])


# --- the same text as before ------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.lists(worker_strategy, min_size=1, max_size=5),
       repeat=st.lists(st.integers(0, 4), max_size=3),
       now_offset=st.sampled_from([0.0, 5.0, -700.0]),
       exited=st.frozensets(st.integers(0, 7), max_size=2))
def test_the_merged_text_is_what_the_modules_before_this_pass_give(original, workers, repeat,
                                                                   now_offset, exited):
    blobs = blobs_of(workers)
    blobs += [blobs[i] for i in repeat if i < len(blobs)]
    assert_alike(original, blobs, NOW + now_offset, exited)


def test_the_benchmark_like_deployment_merges_as_before(original):
    assert_alike(original, deployment(layouts=3, workers=8), NOW, frozenset({2}))


# --- the fold's time ------------------------------------------------------------------------

def _faults(component: str) -> float:
    return faults.internal_error_counts().get(component, 0)


def _dead(n: int) -> WorkerId:
    return WorkerId(2**22 + 300 + n, 1, WorkerId.current().boot)  # no such pid


def _write_dead(directory: SnapshotDirectory, who: WorkerId, values_at: float,
                written_at: float) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), 1)
    state.summary("inferwatch_prediction", ("value",)).observe(np.arange(100.0),
                                                               now=values_at)
    directory.write(who.name, encode(Snapshot(models=[model_dict(state)],
                                              written_at=written_at)), who)


def _archive_stamp(directory: SnapshotDirectory) -> float:
    data, _ = read_entry(f"{directory.path}/{ARCHIVE}", directory.trusted_uids)
    return decode(data).header["written_at"]  # type: ignore[arg-type]


def _median_and_count(directory: SnapshotDirectory, now: float) -> tuple[list, list]:
    families = SnapshotDirectory(directory.path).read_view(now).families(now)
    return (samples(families, "inferwatch_prediction", output="value", quantile="0.5"),
            samples(families, "inferwatch_prediction_count", output="value"))


@pytest.mark.parametrize("ahead", [20 * HOUR, 3 * HOUR])
def test_one_dead_worker_far_ahead_does_not_move_the_fold_past_the_archive(tmp_path, ahead):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    t = time.time()
    _write_dead(directory, _dead(1), t, t)
    assert directory.fold(me, also=[_dead(1).name], now=t) == [_dead(1).name]
    # A dead worker whose clock ran hours ahead (believed up to a day).
    _write_dead(directory, _dead(2), t + ahead, t + ahead)
    before = _faults("multiproc_fold")
    assert directory.fold(me, also=[_dead(2).name], now=t) == [_dead(2).name]
    # The archive's window still holds the first worker's values.
    median, count = _median_and_count(directory, t)
    assert count == [200]
    assert len(median) == 1 and median[0] == pytest.approx(50, rel=0.05)
    assert _archive_stamp(directory) <= t + MAX_STAMP_SPREAD_SECONDS
    assert _faults("multiproc_fold") > before
    # A later fold, two minutes on, keeps the next dead worker's values in the window too.
    _write_dead(directory, _dead(3), t + 120, t + 120)
    assert directory.fold(me, also=[_dead(3).name], now=t + 120) == [_dead(3).name]
    median, count = _median_and_count(directory, t + 120)
    assert count == [300]
    assert len(median) == 1 and median[0] == pytest.approx(50, rel=0.05)


def test_dead_workers_of_one_stepped_clock_still_move_the_fold(tmp_path):
    # The folder's clock stepped back an hour; the dead workers (and the archive) ran
    # before the step, a refresh apart: their windows are followed, as before.
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    t = time.time()
    _write_dead(directory, _dead(4), t, t)
    assert directory.fold(me, also=[_dead(4).name], now=t) == [_dead(4).name]
    _write_dead(directory, _dead(5), t + 20, t + 20)
    _write_dead(directory, _dead(6), t + 45, t + 45)
    before = _faults("multiproc_fold")
    assert directory.fold(me, also=[_dead(5).name, _dead(6).name], now=t - HOUR) == sorted(
        [_dead(5).name, _dead(6).name])
    assert _faults("multiproc_fold") == before
    assert _archive_stamp(directory) == t + 45
    median, count = _median_and_count(directory, t + 45)
    assert count == [300]
    assert len(median) == 1 and median[0] == pytest.approx(50, rel=0.05)
