"""The publishing side of multi-worker mode under many workers, failing writes and a
gunicorn USR2 upgrade (a new master started beside the old one, on one directory)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch.multiproc.store as store
import inferwatch.multiproc.worker as worker
import inferwatch.multiproc.worker_id as worker_id
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc import Publisher, clear_directory
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, LOCK, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId


def dead_worker() -> WorkerId:
    """The identity of a real process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return WorkerId(process.pid, 1)


def publish(directory: SnapshotDirectory, who: WorkerId, requests: int) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    snapshot = Snapshot(models=[model_dict(state)], written_at=time.time())
    directory.write(who.name, encode(snapshot), who)


def samples(families: list, name: str, **labels: str) -> float:
    """The sum of `name` (with `labels`) in rendered `families`; 0 when absent."""
    class Source:
        def collect(self) -> list:
            return families

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def files_view(path: str) -> list:
    """What another worker (or the exporter) serves: the directory's files merged."""
    now = time.time()
    return SnapshotDirectory(path).read_view(now).families(now)


# --- 1. dead-worker scans, all workers together ------------------------------------------

def test_many_workers_scan_for_dead_workers_about_once_a_second_in_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of N workers folded on every drain tick (about once a second), and each fold
    looked up every worker's pid in /proc: N * N lookups a second on the server. The
    workers together now scan about once a second; a worker's own exit fold still runs."""
    clock = [time.time() + 100.0]
    monkeypatch.setattr(worker, "_now", lambda: clock[0], raising=False)
    scans, lookups = [0], [0]
    real_fold, real_stat = store.SnapshotDirectory.fold, worker_id._proc_stat

    def fold(self: SnapshotDirectory, *args: object, **kwargs: object) -> list[str]:
        scans[0] += 1
        return real_fold(self, *args, **kwargs)  # type: ignore[arg-type]

    def proc_stat(pid: int) -> object:
        lookups[0] += 1
        return real_stat(pid)

    monkeypatch.setattr(store.SnapshotDirectory, "fold", fold)
    monkeypatch.setattr(worker_id, "_proc_stat", proc_stat)
    folder = SnapshotDirectory(str(tmp_path))
    (tmp_path / LOCK).touch()  # as a fold long ago left it
    os.utime(tmp_path / LOCK, (clock[0] - 3600, clock[0] - 3600))
    gone = dead_worker()
    publish(folder, gone, 7)
    registries = [Registry(drain_interval=3600) for _ in range(8)]
    publishers = [Publisher(registry, str(tmp_path)) for registry in registries]
    lookups[0] = 0  # each publisher looked up its own start time
    for _ in range(5):  # five drain ticks of eight workers within one second
        for publisher in publishers:
            publisher.fold_dead()
    assert scans[0] == 1
    assert lookups[0] <= 2  # the dead worker's pid, once
    # The one scan folded the dead worker.
    assert not folder.holds(gone.name)
    assert samples(files_view(str(tmp_path)), "inferwatch_requests_total") == 7
    clock[0] += 1.5
    for publisher in publishers:
        publisher.fold_dead()
    assert scans[0] == 2
    # Exiting within the second of a scan: its final snapshot is folded all the same.
    registries[0].monitor("fraud", "1").record_call(0.01, 0.5)
    publishers[0].close()
    assert scans[0] == 3
    assert not folder.holds(publishers[0].worker.name)
    assert samples(files_view(str(tmp_path)), "inferwatch_requests_total") == 8


def test_a_lock_marked_in_the_future_does_not_stop_scans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock stepped back leaves the last scan's mark ahead of now: waiting for the
    clock to catch up would leave dead workers unfolded for that long."""
    clock = [time.time()]
    monkeypatch.setattr(worker, "_now", lambda: clock[0], raising=False)
    (tmp_path / LOCK).touch()
    os.utime(tmp_path / LOCK, (clock[0] + 3600, clock[0] + 3600))
    folder = SnapshotDirectory(str(tmp_path))
    gone = dead_worker()
    publish(folder, gone, 3)
    publisher = Publisher(Registry(drain_interval=3600), str(tmp_path))
    publisher.fold_dead()
    assert not folder.holds(gone.name)
    assert samples(files_view(str(tmp_path)), "inferwatch_requests_total") == 3


# --- 3. gunicorn USR2: the new master clears beside the old one --------------------------

_OLD_WORKER = """
import sys
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach

registry = Registry(drain_interval=3600)
publisher = attach(registry, sys.argv[1])
monitor = registry.monitor("fraud", "1")
for _ in range(5):
    monitor.record_call(0.01, 0.5)
registry.drain()
assert publisher.publish(force=True)
print(publisher.worker.name, flush=True)
sys.stdin.read()
"""


def test_a_new_master_clearing_the_directory_keeps_the_old_masters_live_workers(
        tmp_path: Path) -> None:
    """gunicorn USR2 starts a new master beside the old one, whose workers keep serving
    until the new ones are up. Its on_starting clear_directory() deleted the live old
    workers' snapshots: their counts vanished from every scrape (a reset), and came back
    when they next published (another one)."""
    process = subprocess.Popen([sys.executable, "-c", _OLD_WORKER, str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        live = process.stdout.readline().strip()
        assert live.startswith("worker-")
        folder = SnapshotDirectory(str(tmp_path))
        gone = dead_worker()
        publish(folder, gone, 100)  # the previous run's: cleared
        assert folder.fold(WorkerId.current()) == [gone.name]
        publish(folder, dead_worker(), 50)  # killed, not yet folded: cleared too
        assert clear_directory(str(tmp_path)) == 2
        assert sorted(os.listdir(tmp_path)) == sorted([LOCK, live])
        assert samples(files_view(str(tmp_path)), "inferwatch_requests_total") == 5
    finally:
        process.communicate("", timeout=30)
    assert process.returncode == 0
    # The old worker exits: its counts are folded into a fresh archive, never lost.
    assert os.listdir(tmp_path).count(ARCHIVE) == 1
    assert samples(files_view(str(tmp_path)), "inferwatch_requests_total") == 5


def test_clear_directory_removes_this_processes_own_snapshot(tmp_path: Path) -> None:
    """docs: a preloading master's own file goes (it writes it again within a second)."""
    registry = Registry(drain_interval=3600)
    publisher = Publisher(registry, str(tmp_path))
    registry.monitor("fraud", "1").record_call(0.01, 0.5)
    registry.drain()
    assert publisher.publish(force=True)
    assert clear_directory(str(tmp_path)) == 1
    assert not SnapshotDirectory(str(tmp_path)).holds(publisher.worker.name)
    assert publisher.publish(force=False, min_interval=0.0)


# --- 4. shutdown() from a lifespan whose worker never used the default registry ---------

_LIFESPAN = """
import os, shutil, sys
import inferwatch
import inferwatch.multiproc

if sys.argv[2] == "used":
    predict = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
    predict(1)
elif sys.argv[2] == "gone":
    shutil.rmtree(sys.argv[1])  # a tmpfs cleaned under the server
elif sys.argv[2] == "own":
    # An app's own registry, no background publishing: shutdown() alone writes its counts.
    from inferwatch.core.registry import Registry

    mine = Registry(drain_interval=3600)
    inferwatch.multiproc.attach(mine)
    predict = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1", registry=mine)
    for _ in range(3):
        predict(1)
inferwatch.multiproc.shutdown()  # the lifespan's shutdown
print("done", flush=True)
os._exit(0)  # as uvicorn's worker ends: no exit handler runs
"""


@pytest.mark.parametrize("case", ["unused", "gone", "used", "own"])
def test_shutdown_in_a_lifespan_never_raises_nor_publishes_an_unused_registry(
        tmp_path: Path, case: str) -> None:
    """shutdown() created the default registry when nothing had used it: in multi-worker
    mode it attached a publisher at shutdown, wrote an empty snapshot and archive, and
    raised MultiprocError into the app's shutdown when the directory had gone since. An
    app's own attached registry was not published by it at all ("own")."""
    directory = tmp_path / "snapshots"
    directory.mkdir()
    result = subprocess.run([sys.executable, "-c", _LIFESPAN, str(directory), case],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    if case == "unused":
        assert os.listdir(directory) == []
    elif case == "used":
        assert samples(files_view(str(directory)), "inferwatch_requests_total") == 1
    elif case == "own":
        assert samples(files_view(str(directory)), "inferwatch_requests_total") == 3


# --- 2. a worker that cannot write -------------------------------------------------------

OPS = st.lists(st.sampled_from(["call", "fill", "free", "mine", "other"]), max_size=30)


@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_scrapes_alternating_between_workers_never_read_a_drop_while_writes_fail(
        ops: list[str]) -> None:
    """A worker whose snapshot write failed (a full disk) served its current counts from
    memory while every other worker served its older file: a scrape answered by it, then
    one answered by another worker, read a drop, which Prometheus takes for a reset."""
    full = [False]
    limit = lambda: 64 if full[0] else math.inf  # noqa: E731  (RLIMIT_FSIZE: EFBIG)
    with tempfile.TemporaryDirectory() as path, \
            mock.patch.object(store, "_file_size_limit", limit):
        registry = Registry(drain_interval=3600)
        publisher = Publisher(registry, path, interval=0.0)
        monitor = registry.monitor("fraud", "1")
        seen = 0.0
        for op in [*ops, "mine", "other", "free", "mine", "other"]:
            if op == "call":
                monitor.record_call(0.01, 0.5)
            elif op in ("fill", "free"):
                full[0] = op == "fill"
            else:
                families = publisher.collect() if op == "mine" else files_view(path)
                now = samples(families, "inferwatch_requests_total")
                assert now >= seen, (op, seen, now)
                seen = now
        # Once the disk has room again, nothing recorded is lost.
        assert seen == ops.count("call")


def test_a_worker_that_cannot_write_still_shows_its_write_faults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(drain_interval=3600)
    publisher = Publisher(registry, str(tmp_path), interval=0.0)
    monitor = registry.monitor("fraud", "1")
    monitor.record_call(0.01, 0.5)
    before = samples(publisher.collect(), "inferwatch_internal_errors_total",
                     component="multiproc_write")
    monkeypatch.setattr(store, "_file_size_limit", lambda: 64)
    monitor.record_call(0.01, 0.5)
    families = publisher.collect()
    assert samples(families, "inferwatch_internal_errors_total",
                   component="multiproc_write") > before
    # The same counts as the other workers serve.
    assert samples(families, "inferwatch_requests_total") == \
        samples(files_view(str(tmp_path)), "inferwatch_requests_total") == 1
    monkeypatch.undo()
    assert samples(publisher.collect(), "inferwatch_requests_total") == 2


