"""The shared snapshot directory as SREs meet it: a full or size-limited disk, a clock
stepped back, a directory left from an earlier deploy with odd entries in it.

Real processes and real files throughout; counts must never be lost or doubled, and
nothing may kill a worker or stop a server from starting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inferwatch.core.state import ModelState
from inferwatch.multiproc import clear_directory
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, LOCK, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId

NOW = 1_700_000_000.0


def dead_worker() -> WorkerId:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return WorkerId(process.pid, 1)


def publish(directory: SnapshotDirectory, owner: WorkerId, requests: int,
            in_flight: int = 0) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    if in_flight:
        state.gauges["inferwatch_requests_in_flight"] = {(): float(in_flight)}
    snapshot = Snapshot(models=[model_dict(state)], written_at=NOW)
    directory.write(owner.name, encode(snapshot), owner)


def totals(path: Path) -> tuple[float, float]:
    """(requests, in-flight) as a fresh reader (the exporter) merges them."""
    view = SnapshotDirectory(str(path)).read_view(time.time())
    requests = in_flight = 0.0
    for state in view.states:
        requests += sum(state.counters.get("inferwatch_requests_total", {}).values())
        in_flight += sum(state.gauges.get("inferwatch_requests_in_flight", {}).values())
    return requests, in_flight


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=60)


# --- a file-size limit (the stand-in for a full tmpfs) ----------------------------------------

_LIMITED_WORKER = """
import resource, signal, sys
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach
from inferwatch import faults

# As under an embedding server that leaves signals at their defaults (mod_wsgi).
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
registry = Registry(drain_interval=3600)
publisher = attach(registry, sys.argv[1])
registry.monitor("fraud", "1").record_call(0.01, 0.3)
registry.drain()
resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))
print("published", publisher.publish(force=True), flush=True)
print("write faults", faults.internal_error_counts().get("multiproc_write", 0), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX rlimits")
def test_a_snapshot_past_the_file_size_limit_is_a_failed_write_not_a_killed_worker(
        tmp_path: Path) -> None:
    done = run_child(_LIMITED_WORKER, str(tmp_path))
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert "published False" in done.stdout
    assert "write faults 0" not in done.stdout
    # Nothing half-written is left behind, and nothing was written elsewhere.
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


_LIMITED_FOLD = """
import resource, sys
from inferwatch.multiproc.store import SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId

directory = SnapshotDirectory(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.RLIM_INFINITY))
try:
    directory.fold(WorkerId.current())
except OSError as exc:
    print("fold failed", exc.errno, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX rlimits")
def test_a_fold_that_cannot_write_the_archive_still_frees_dead_writers_temp_files(
        tmp_path: Path) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    worker = dead_worker()
    publish(directory, worker, 7)
    orphan = tmp_path / f"{worker.name}.tmp-{worker.pid}-{worker.start}"
    orphan.write_bytes(b"x" * 4096)  # a write cut short when its worker was killed
    done = run_child(_LIMITED_FOLD, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "fold failed" in done.stdout
    # The space a dead writer held is given back even though the archive did not fit ...
    assert not orphan.exists()
    # ... and the dead worker's counts are kept for the next fold, never lost.
    assert (tmp_path / worker.name).exists()
    assert totals(tmp_path)[0] == 7
    assert directory.fold(WorkerId.current()) == [worker.name]
    assert totals(tmp_path)[0] == 7


# --- the clock stepped back ------------------------------------------------------------------

def test_a_dead_workers_gauges_go_even_when_the_clock_was_stepped_back(
        tmp_path: Path) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    worker = dead_worker()
    publish(directory, worker, 3, in_flight=2)
    # Written an hour "later" than now: the wall clock has since been stepped back.
    future = time.time() + 3600
    os.utime(tmp_path / worker.name, (future, future))
    assert totals(tmp_path) == (3, 0)


def test_a_recent_write_still_stands_for_a_live_writer(tmp_path: Path) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    worker = dead_worker()
    publish(directory, worker, 3, in_flight=2)  # written just now
    assert totals(tmp_path) == (3, 2)


# --- a directory left from an earlier deploy ----------------------------------------------------

def test_a_symlinked_lock_file_neither_stops_folds_nor_is_followed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep me")
    (shared / LOCK).symlink_to(elsewhere)
    directory = SnapshotDirectory(str(shared))
    worker = dead_worker()
    publish(directory, worker, 5)
    assert directory.fold(WorkerId.current()) == [worker.name]
    assert (shared / ARCHIVE).exists() and not (shared / worker.name).exists()
    assert totals(shared)[0] == 5
    assert elsewhere.read_bytes() == b"keep me"
    assert not (shared / LOCK).is_symlink()


def test_clear_directory_copes_with_a_symlinked_lock_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep me")
    (shared / LOCK).symlink_to(elsewhere)
    publish(SnapshotDirectory(str(shared)), dead_worker(), 5)
    assert clear_directory(str(shared)) == 1
    assert elsewhere.read_bytes() == b"keep me"
    assert totals(shared)[0] == 0


def test_clear_directory_copes_with_a_directory_under_the_lock_name(tmp_path: Path) -> None:
    (tmp_path / LOCK).mkdir()
    publish(SnapshotDirectory(str(tmp_path)), dead_worker(), 5)
    (tmp_path / ARCHIVE).write_bytes(b"")  # a zero-byte archive from a full disk
    assert clear_directory(str(tmp_path)) == 2
    assert totals(tmp_path)[0] == 0



# --- two apps (or a rolling deploy) sharing one directory ---------------------------------------

def test_drift_windows_of_a_reprofiled_reference_are_not_added_to_the_old_ones() -> None:
    import numpy as np

    from inferwatch.multiproc.merge import merge_view
    from inferwatch.multiproc.snapshot_format import decode
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker

    rng = np.random.default_rng(3)
    states = []
    # Same model version, same number of bins, other edges: profiled on other data.
    for loc in (0.0, 100.0):
        reference = Reference.from_data({"x": rng.normal(loc, 1, size=2000)},
                                        predictions=rng.random(2000))
        tracker = FeatureTracker(reference)
        tracker.check_inputs([{"x": float(v)} for v in rng.normal(loc, 1, 300)], NOW)
        state = ModelState("fraud", "1")
        state.inc("inferwatch_requests_total", ("ok",), 300)
        state.extras["drift"] = tracker.drift
        states.append(state)
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in states]
    errors: list[Exception] = []
    view = merge_view(raws, NOW, on_error=errors.append)
    _, _, rows = view.states[0].extras["drift"].scores(NOW)
    assert rows == 300  # the second worker's rows were binned by edges not scored here
    assert errors == [] and view.other_reference == 1  # normal operation, no fault
    assert sum(view.states[0].counters["inferwatch_requests_total"].values()) == 600
