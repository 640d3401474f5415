"""The snapshot directory and the publisher, used the way servers do: clears beside live
workers, attaching twice, a wall clock stepped back under running workers."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from family_samples import samples
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc import MultiprocError, attach, clear_directory
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId, _proc_stat


def publish(directory: SnapshotDirectory, who: WorkerId, requests: int) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    snapshot = Snapshot(models=[model_dict(state)], written_at=time.time())
    directory.write(who.name, encode(snapshot), who)


@pytest.fixture
def other_process() -> Iterator[WorkerId]:
    """The identity of another live process (an old master's worker, on USR2)."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        found = None
        deadline = time.monotonic() + 30
        while found is None and time.monotonic() < deadline:
            found = _proc_stat(process.pid)
        assert found is not None
        yield WorkerId(process.pid, found[1], WorkerId.current().boot)
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(30)


# --- SnapshotDirectory.clear() keeps live writers' files -------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times from /proc")
def test_directory_clear_keeps_a_live_workers_snapshot(tmp_path, other_process):
    directory = SnapshotDirectory(str(tmp_path))
    publish(directory, other_process, 7)
    publish(directory, WorkerId(2**22 + 12345, 1), 3)  # no such process: a dead one
    directory.write(ARCHIVE, encode(Snapshot()), WorkerId.current())

    removed = directory.clear()

    assert removed == 2
    assert sorted(os.listdir(tmp_path)) == [other_process.name]
    now = time.time()
    assert samples(directory.read_view(now).families(now),
                   "inferwatch_requests_total", outcome="ok") == [7.0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times from /proc")
def test_directory_clear_without_keep_live_removes_everything(tmp_path, other_process):
    directory = SnapshotDirectory(str(tmp_path))
    publish(directory, other_process, 7)
    assert directory.clear(keep_live=False) == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times from /proc")
def test_clear_directory_and_directory_clear_agree(tmp_path, other_process):
    for path in (tmp_path / "a", tmp_path / "b"):
        path.mkdir()
        directory = SnapshotDirectory(str(path))
        publish(directory, other_process, 1)
        publish(directory, WorkerId.current(), 1)  # this process publishes again anyway
    assert clear_directory(str(tmp_path / "a")) == SnapshotDirectory(str(tmp_path / "b")).clear()
    assert os.listdir(tmp_path / "a") == os.listdir(tmp_path / "b") == [other_process.name]


# --- attach() twice ---------------------------------------------------------------------------

def test_attaching_twice_to_one_directory_keeps_one_publisher(tmp_path):
    registry = Registry(drain_interval=3600)
    first = attach(registry, str(tmp_path))
    try:
        again = attach(registry, str(tmp_path) + os.sep)  # the same directory, spelt otherwise
        assert again is first
        assert registry.multiproc is first
    finally:
        first.close()


def test_attaching_to_another_directory_is_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    registry = Registry(drain_interval=3600)
    first = attach(registry, str(tmp_path / "a"))
    try:
        with pytest.raises(MultiprocError, match=r"already publishes to .*a'"):
            attach(registry, str(tmp_path / "b"))
        assert registry.multiproc is first
    finally:
        first.close()


def test_attaching_after_close_starts_a_new_publisher(tmp_path):
    registry = Registry(drain_interval=3600)
    first = attach(registry, str(tmp_path))
    first.close()
    second = attach(registry, str(tmp_path))
    try:
        assert second is not first and registry.multiproc is second
    finally:
        second.close()


# --- a wall clock stepped back ----------------------------------------------------------------

class SteppedClock:
    """time.time() as a host sees it after NTP steps its clock back."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.real = time.time

    def __call__(self) -> float:
        return self.real() + self.offset


def test_merged_quantiles_survive_a_wall_clock_step_back(tmp_path, monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(time, "time", clock)
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, str(tmp_path))
    try:
        monitor = registry.monitor("fraud", "1")
        for value in range(100):
            monitor.record_call(0.01, float(value))
        registry.drain()
        assert publisher.publish(force=True)
        clock.offset = -3600.0  # NTP steps the clock back an hour
        for value in range(100, 200):
            monitor.record_call(0.01, float(value))
        registry.drain()
        assert publisher.publish(force=True)

        now = time.time()
        exporter_view = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
        for families in (exporter_view, publisher.collect()):
            assert samples(families, "inferwatch_prediction_count", output="value") == [200]
            median = samples(families, "inferwatch_prediction", output="value",
                             quantile="0.5")
            assert len(median) == 1 and not math.isnan(median[0])
            assert median[0] == pytest.approx(100, rel=0.03)
    finally:
        publisher.close()
