"""Multi-worker mode under real server lifecycles: recycled, reloaded and killed workers,
reused pids, racing scrapes and folds, a directory that cannot be written.

The merged counters must never go backwards (Prometheus would read a reset and count
everything again) and never count a call twice; gauges of dead workers must not linger.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch.multiproc.store as store
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc import attach
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.standalone.collectors.multiproc import MultiprocCollector
from inferwatch.standalone.scrape import CollectorError

# A worker with one finished call and one call held in flight until its stdin closes.
_HOLDING_WORKER = """
import sys, threading, time
import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach

registry = Registry(drain_interval=3600)
publisher = attach(registry, sys.argv[1])
model = registry.monitor("fraud", "1")
predict = inferwatch.instrument(lambda x: sys.stdin.read() if x else 0.5, name="fraud",
                                version="1", registry=registry)
predict(0)
threading.Thread(target=predict, args=(1,), daemon=True).start()
while model.in_flight_locked() < 1:  # the held call has started
    time.sleep(0.001)
registry.drain()
publisher.publish(force=True)
print("ready", flush=True)
sys.stdin.read()
"""


def merged(directory: Path, name: str, **labels: str) -> float:
    """`name` summed over the merged view a fresh reader (the exporter) serves."""
    now = time.time()

    class Source:
        def collect(self) -> list:
            return SnapshotDirectory(str(directory)).read_view(now).families(now)

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def holding_worker(directory: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _HOLDING_WORKER, str(directory)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_recent_write_stands_for_a_live_writer_as_the_workers_refresh_promises() -> None:
    from inferwatch.multiproc.worker import REFRESH_SECONDS

    assert store.RECENT_WRITE_SECONDS >= 2 * REFRESH_SECONDS


def test_a_killed_workers_in_flight_calls_do_not_linger_in_a_reader_that_never_folds(
        tmp_path: Path) -> None:
    """The exporter never folds: after `kill -9` of the whole server, its view kept the
    dead worker's in-flight calls for good (an alert on stuck calls fired forever)."""
    process = holding_worker(tmp_path)
    try:
        assert merged(tmp_path, "inferwatch_requests_in_flight") == 1
        process.kill()
        process.wait(timeout=10)
        # A file written lately has a live writer as far as a reader can cheaply tell (a
        # live worker rewrites it at least every 30 s): the gauge goes once it is older.
        (snapshot,) = tmp_path.glob("worker-*.snapshot")
        assert merged(tmp_path, "inferwatch_requests_in_flight") == 1
        aged = time.time() - store.RECENT_WRITE_SECONDS - 1
        os.utime(snapshot, (aged, aged))
        assert merged(tmp_path, "inferwatch_requests_in_flight") == 0
        # Its published counts stay: a counter never goes backwards.
        assert merged(tmp_path, "inferwatch_requests_total", outcome="ok") == 1
    finally:
        process.kill()
        process.wait(timeout=10)


def dead_worker() -> WorkerId:
    """The identity of a real process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return WorkerId(process.pid, 1)


def publish(directory: SnapshotDirectory, worker: WorkerId, requests: int,
            version: str = "1", in_flight: float = 0) -> None:
    state = ModelState("fraud", version)
    state.inc("inferwatch_requests_total", ("ok",), requests)
    if in_flight:
        state.set_gauge("inferwatch_requests_in_flight", (), in_flight)
    snapshot = Snapshot(models=[model_dict(state)], written_at=time.time())
    directory.write(worker.name, encode(snapshot), worker)


def total(families: list, name: str = "inferwatch_requests_total") -> float | None:
    """The sum of `name` in rendered `families`; None when the family is absent."""
    class Source:
        def collect(self) -> list:
            return families

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    found = [s.value for family in text_string_to_metric_families(text)
             for s in family.samples if s.name == name]
    return sum(found) if found else None


def test_a_passing_error_reading_the_archive_never_serves_a_lower_total(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape at the descriptor limit (EMFILE) opening the archive served the last
    archive it had read, from before the latest fold, while the folded snapshot was gone:
    the total dropped (Prometheus reads a reset and counts everything again). A reader
    that had never read the archive served none of the dead workers' counts."""
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, str(tmp_path))
    try:
        other = SnapshotDirectory(str(tmp_path))
        me = WorkerId.current()
        first, second = dead_worker(), dead_worker()
        publish(other, first, 7)
        assert other.fold(me) == [first.name]
        publish(other, second, 5)
        assert total(publisher.collect()) == 12
        assert other.fold(me) == [second.name]  # another worker folds it
        real = store.read_entry

        def read(path: str, *args: object, **kwargs: object) -> object:
            if os.path.basename(path) == ARCHIVE:
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            return real(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "read_entry", read)
        during = total(publisher.collect())
        assert during is None or during >= 12, during  # a failed scrape, never a reset
        exporter = MultiprocCollector(str(tmp_path))
        try:
            fresh = total(list(exporter.collect()))
        except CollectorError:
            fresh = None
        assert fresh is None or fresh >= 12, fresh
        monkeypatch.setattr(store, "read_entry", real)
        assert total(publisher.collect()) == 12
        assert total(list(exporter.collect())) == 12
    finally:
        publisher.close()
        registry.close()


def test_concurrent_scrapes_of_one_worker_take_turns_with_its_file_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scrapes at once in one worker (gthread workers, two Prometheus servers) shared
    the reader's cache unguarded: one pruning it while the other added a new worker's file
    raised 'dictionary changed size during iteration', and that scrape served no model
    series. Each scrape here waits (2 s at most) inside a file read for the other one."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    for offset in (1, 2):
        publish(directory, WorkerId(me.pid, me.start + offset), 3)
    meeting = threading.Barrier(2, timeout=2.0)
    inside, most = [0], [0]
    guard = threading.Lock()
    real = store.read_entry

    def read(path: str, *args: object, **kwargs: object) -> object:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                meeting.wait()
            return real(path, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(store, "read_entry", read)
    totals: list[float | None] = []
    scrapes = [threading.Thread(target=lambda: totals.append(
        total(directory.read_view(time.time()).families(time.time())))) for _ in range(2)]
    for scrape in scrapes:
        scrape.start()
    for scrape in scrapes:
        scrape.join(30)
    assert totals == [6, 6]
    assert most[0] == 1, "two reads of one directory ran at once"


def model_info(families: list) -> list[dict[str, str]]:
    class Source:
        def collect(self) -> list:
            return families

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return [s.labels for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "inferwatch_model_info"]


def test_a_redeploys_info_labels_replace_those_of_exited_workers(tmp_path: Path) -> None:
    """A restart of the same model version with a new info label (threshold 0.7): the
    archive, always merged first, kept the exited workers' label (0.5) for good."""
    directory = SnapshotDirectory(str(tmp_path))
    old = ModelState("fraud", "1", info={"threshold": "0.5"})
    old.inc("inferwatch_requests_total", ("ok",), 4)
    first = dead_worker()
    directory.write(first.name, encode(Snapshot(models=[model_dict(old)])), first)
    assert directory.fold(WorkerId.current()) == [first.name]
    new = ModelState("fraud", "1", info={"threshold": "0.7"})
    new.inc("inferwatch_requests_total", ("ok",), 1)
    me = WorkerId.current()  # a live worker
    directory.write(me.name, encode(Snapshot(models=[model_dict(new)])), me)
    now = time.time()
    families = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
    assert [labels["threshold"] for labels in model_info(families)] == ["0.7"]
    assert total(families) == 5
    # The redeployed workers exit in turn: the archive then holds their label.
    second = dead_worker()
    directory.write(second.name, encode(Snapshot(models=[model_dict(new)])), second)
    (tmp_path / me.name).unlink()
    assert directory.fold(WorkerId.current()) == [second.name]
    families = SnapshotDirectory(str(tmp_path)).read_view(now).families(now)
    assert [labels["threshold"] for labels in model_info(families)] == ["0.7"]
    assert total(families) == 5


# A worker whose directory fills up (a file size limit: writes fail with EFBIG, as on a
# full disk) between its last publish and its exit.
_FILLING_WORKER = """
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.multiproc import attach

registry = Registry(drain_interval=3600)
publisher = attach(registry, sys.argv[1])
monitor = registry.monitor("fraud", "1")
monitor.record_call(0.01, 0.5)
registry.drain()
assert publisher.publish(force=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))
monitor.record_call(0.01, 0.5)
publisher.close()
print(json.dumps(faults.internal_error_counts()), flush=True)
"""


def test_a_final_snapshot_that_cannot_be_written_counts_as_a_write_fault(
        tmp_path: Path) -> None:
    """docs/multiprocess.md: a full or read-only directory while writing counts
    `multiproc_write`. The final write at exit counted `multiproc_fold` instead, pointing
    whoever reads the fault at folding, which had not even been tried."""
    directory = tmp_path / "snapshots"
    directory.mkdir()
    result = subprocess.run([sys.executable, "-c", _FILLING_WORKER, str(directory)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    faults = json.loads(result.stdout)
    assert faults.get("multiproc_write") == 1, faults
    # What it published before the directory filled up still counts.
    assert merged(directory, "inferwatch_requests_total", outcome="ok") == 1


def test_a_scrape_that_folds_keep_racing_never_serves_a_lower_total(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers recycled faster than a scrape reads (`--max-requests` with many workers):
    each time the reader opened a dead worker's snapshot, another worker had just folded
    it. After five tries the scrape served the partial read, without the counts folded
    meanwhile: the total dropped, which Prometheus reads as a reset."""
    me = WorkerId.current()
    folder = SnapshotDirectory(str(tmp_path))
    first = dead_worker()
    publish(folder, first, 10)
    assert folder.fold(me) == [first.name]
    # Exited workers named like this process with earlier starts sort before its own
    # (live) snapshot, which a read that stops at a vanished file never reached.
    starts = itertools.count(1)
    current = [WorkerId(me.pid, me.start - next(starts))]
    publish(folder, current[0], 1)
    publish(folder, me, 100)
    reader = SnapshotDirectory(str(tmp_path))
    now = time.time()
    before = total(reader.read_view(now).families(now))
    assert before == 111
    real = store.read_entry

    def read(path: str, *args: object, **kwargs: object) -> object:
        name = os.path.basename(path)
        if name == current[0].name:
            # Another worker recycles: a new one published, the last one folded (unless
            # this reader holds folds off), just before this read.
            successor = WorkerId(me.pid, me.start - next(starts))  # exited
            if folder.fold(me) == [name]:
                publish(folder, successor, 1)
                current[0] = successor
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "read_entry", read)
    seen = total(reader.read_view(now).families(now))
    monkeypatch.setattr(store, "read_entry", real)
    after = total(SnapshotDirectory(str(tmp_path)).read_view(now).families(now))
    assert seen is not None and before <= seen <= after, (before, seen, after)
