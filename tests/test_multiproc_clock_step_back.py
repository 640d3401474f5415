"""The registry and multi-worker mode used the way servers are run: a wall clock stepped
back under the status page's history and under a fold, lookups against full label caps."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from family_samples import samples
from inferwatch.catalogue import OTHER
from inferwatch.core.label_caps import LabelCap
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach
from inferwatch.multiproc.safe_read import read_entry
from inferwatch.multiproc.snapshot_format import Snapshot, decode, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.report.live import histogram_quantile


class SteppedClock:
    """time.time() as a host sees it after NTP steps its clock (or time.monotonic(),
    moved on by a test instead of sleeping)."""

    def __init__(self, real=time.time) -> None:
        self.offset = 0.0
        self.real = real

    def __call__(self) -> float:
        return self.real() + self.offset


# --- the status page's history across a wall clock step back -------------------------------

def _latency_p50_between(history, key, bounds: list[float], earlier: int, later: int
                         ) -> float:
    ring = history.samples(key)
    a, b = ring[earlier], ring[later]
    return histogram_quantile(0.5, bounds, (b.latency - a.latency).tolist())


@pytest.mark.parametrize("multiworker", [False, True], ids=["one process", "multi-worker"])
def test_history_keeps_its_samples_and_their_quantiles_after_a_step_back(
        tmp_path, monkeypatch, multiworker):
    clock, monotonic = SteppedClock(), SteppedClock(time.monotonic)
    monkeypatch.setattr(time, "time", clock)
    monkeypatch.setattr(time, "monotonic", monotonic)
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, str(tmp_path)) if multiworker else None
    try:
        history = registry.enable_history()
        monitor = registry.monitor("fraud", "1")
        key = ("fraud", "1")

        def calls(latency: float, n: int = 20) -> None:
            for _ in range(n):
                monitor.record_call(latency, 0.5)
            registry.drain()
            if publisher is not None:
                assert publisher.publish(force=True)

        calls(0.003)
        registry.sample_history(time.time())
        clock.offset += 20.0  # the next sample is due 20 s later
        monotonic.offset += 20.0
        calls(0.04)
        registry.sample_history(time.time())
        before_step = history.samples(key)[-1].at
        clock.offset += 20.0 - 3600.0  # 20 s on, NTP steps the clock back an hour
        monotonic.offset += 20.0
        calls(0.4)
        registry.sample_history(time.time())
        # A second drain pass right after: no sample is due yet.
        registry.sample_history(time.time())

        ring = history.samples(key)
        assert [s.totals["requests"] for s in ring] == [20.0, 40.0, 60.0]
        assert [s.at for s in ring] == sorted(s.at for s in ring)
        assert ring[-1].at >= before_step
        bounds = monitor.copy_state().histograms[
            "inferwatch_request_duration_seconds"][()].bounds.tolist()
        # The sparkline's p50 per interval: each interval holds its own calls.
        first, second = (_latency_p50_between(history, key, bounds, i, i + 1) for i in (0, 1))
        assert max(b for b in bounds if b < 0.04) < first <= min(b for b in bounds if b >= 0.04)
        assert max(b for b in bounds if b < 0.4) < second <= min(b for b in bounds if b >= 0.4)
    finally:
        if publisher is not None:
            publisher.close()
        registry.close()


def test_window_time_goes_on_at_the_monotonic_pace_after_a_step_back():
    registry = Registry(drain_interval=3600)
    try:
        start = registry.window_time(2_000_000.0)
        assert start == 2_000_000.0
        stepped = registry.window_time(2_000_000.0 - 3600)
        assert 2_000_000.0 <= stepped < 2_000_000.0 + 60
        # A time no clock reads is never kept: the next call is still a real time.
        assert math.isfinite(registry.window_time(math.nan))
        assert math.isfinite(registry.window_time(2_000_100.0))
    finally:
        registry.close()


# --- a fold after a wall clock step back ---------------------------------------------------

def test_a_fold_after_a_step_back_keeps_the_dead_workers_quantiles(tmp_path, monkeypatch):
    directory = SnapshotDirectory(str(tmp_path))
    registry = Registry(drain_interval=3600)
    try:
        monitor = registry.monitor("fraud", "1")
        for value in range(100):
            monitor.record_call(0.01, float(value))
        registry.drain()
        written = time.time()
        state = monitor.copy_state()
    finally:
        registry.close()
    dead = WorkerId(2 ** 22 + 7, 1, WorkerId.current().boot)  # no such pid
    directory.write(dead.name, encode(Snapshot(models=[model_dict(state)],
                                               written_at=written)), dead)

    clock = SteppedClock()
    clock.offset = -3600.0  # the folding worker's wall clock stepped back an hour
    monkeypatch.setattr(time, "time", clock)
    assert directory.fold(WorkerId.current(), also=[dead.name]) == [dead.name]
    monkeypatch.undo()

    data, _ = read_entry(str(tmp_path / ARCHIVE), directory.trusted_uids)
    assert decode(data).header["written_at"] >= written  # type: ignore[arg-type]
    now = time.time()
    families = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
    assert samples(families, "inferwatch_prediction_count", output="value") == [100]
    median = samples(families, "inferwatch_prediction", output="value", quantile="0.5")
    assert len(median) == 1 and not math.isnan(median[0])
    assert median[0] == pytest.approx(50, rel=0.05)


def test_a_fold_never_stamps_the_archive_earlier_than_it_was(tmp_path, monkeypatch):
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    first = WorkerId(2 ** 22 + 11, 1, me.boot)
    second = WorkerId(2 ** 22 + 13, 1, me.boot)
    later = time.time() + 600
    directory.write(first.name, encode(Snapshot(written_at=later)), first)
    assert directory.fold(me, also=[first.name], now=later) == [first.name]
    directory.write(second.name, encode(Snapshot(written_at=later - 7200)), second)
    # A later fold by a worker whose clock stepped back (and a dead file stamped early).
    assert directory.fold(me, also=[second.name], now=later - 3600) == [second.name]
    data, _ = read_entry(str(tmp_path / ARCHIVE), directory.trusted_uids)
    assert decode(data).header["written_at"] >= later  # type: ignore[arg-type]


# --- label caps: what a value is stored as, without recording it ---------------------------

labels = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.just(OTHER))


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(1, 4), admitted=st.lists(labels, max_size=8),
       asked=st.lists(labels, max_size=8))
def test_stored_as_tells_what_fold_would_store_and_records_nothing(limit, admitted, asked):
    cap = LabelCap(limit)
    for value in admitted:
        cap.fold(value)
    overflowed = cap.overflowed
    answers = [cap.stored_as(value) for value in asked]
    assert cap.overflowed == overflowed
    # Nothing was admitted by asking: the answers hold, and a copy that folded the same
    # values stores each asked value as the answer says.
    assert answers == [cap.stored_as(value) for value in asked]
    for value, answer in zip(asked, answers):
        twin = LabelCap(limit)
        for earlier in admitted:
            twin.fold(earlier)
        assert twin.fold(value) == answer


def test_existing_monitor_under_full_caps_creates_and_counts_nothing():
    registry = Registry(max_models=2, max_versions_per_model=2, drain_interval=3600)
    try:
        fraud = registry.monitor("fraud", "1")
        registry.monitor("churn", "1")
        registry.monitor("fraud", "2")
        # Both caps full, no __other__ monitor yet: nothing to find, nothing folded.
        assert registry.existing_monitor("spam") is None
        assert registry.existing_monitor("fraud", "3") is None
        assert registry.overflow_counts() == {}
        assert len(registry.monitors()) == 3
        assert registry.existing_monitor("fraud", " 1\n") is fraud
        other_model = registry.monitor("spam", "9")
        other_version = registry.monitor("fraud", "3")
        assert (other_model.name, other_version.version) == (OTHER, OTHER)
        folded = registry.overflow_counts()
        # Lookups of values past the caps find the __other__ monitors recording them...
        assert registry.existing_monitor("ham", "9") is other_model
        assert registry.existing_monitor("ham") is other_model
        assert registry.existing_monitor("fraud", "4") is other_version
        # ...and leave the caps as they were.
        assert registry.overflow_counts() == folded
        assert LabelCap.stored_as(registry._model_cap, "ham") == OTHER
    finally:
        registry.close()
