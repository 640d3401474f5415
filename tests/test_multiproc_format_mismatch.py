"""Snapshot files of another format in the shared directory: what a server running the
previous release (format 1) leaves beside this one during an upgrade.

That release named its workers ``worker-<pid>-<start>.snapshot`` with ``start`` the
process's wall-clock start in centiseconds since the epoch; this one, on Linux, counts
from boot. Read as a since-boot time, a live old worker's start never matched: it was
taken for dead, its file decoded by a fold, counted as a fold fault and deleted. The
documented behaviour (docs/multiprocess.md, Limits) is that such a file is skipped and
counted once as ``multiproc_read``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch import faults
from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import (
    FORMAT_VERSION,
    MAGIC,
    Snapshot,
    decode,
    encode,
    model_dict,
)
from inferwatch.multiproc.store import ARCHIVE, CORRUPT_ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId, temp_owner

# The components a file of another format must never be counted under, and the one it is.
FOLD_FAULTS = ("multiproc_fold", "multiproc_archive")
READ_FAULT = "multiproc_read"


def format1_frame(requests: int = 3, version: int = 1) -> bytes:
    """A snapshot as the previous release wrote it: magic, format byte, the lengths of a
    JSON header and a blob of bin counts, both, then a CRC-32 of all that."""
    header = {"format": version, "written_at": time.time(),
              "models": [{"model": "fraud", "version": "1",
                          "counters": {"inferwatch_requests_total": [[["ok"], requests]]}}],
              "shared": [], "internal_errors": {}, "overflow": {}, "events_dropped": {},
              "event_values_dropped": {}, "files_skipped": {}, "dependencies": {},
              "folded": [], "dtype": "uint8"}
    head = json.dumps(header, separators=(",", ":")).encode()
    body = MAGIC + struct.pack(">BQQ", version, len(head), 0) + head
    return body + struct.pack(">I", zlib.crc32(body))


def epoch_name(pid: int) -> str:
    """The snapshot name the previous release gave process `pid`: its wall-clock start."""
    start = round(psutil.Process(pid).create_time() * 100)
    return f"worker-{pid}-{start}.snapshot"


def publish(directory: SnapshotDirectory, who: WorkerId, requests: int) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    snapshot = Snapshot(models=[model_dict(state)], written_at=time.time())
    directory.write(who.name, encode(snapshot), who)


def plant(path: Path, name: str, data: bytes) -> None:
    (path / name).write_bytes(data)


def requests_total(directory: SnapshotDirectory) -> float:
    now = time.time()
    return sum(sample.value for family in directory.read_view(now).families(now)
               for sample in family.samples
               if sample.name == "inferwatch_requests_total"
               and sample.labels.get("outcome") == "ok")


def fault_deltas(before: dict[str, int]) -> dict[str, int]:
    after = faults.internal_error_counts()
    return {component: after.get(component, 0) - before.get(component, 0)
            for component in (*FOLD_FAULTS, READ_FAULT)}


@pytest.fixture
def old_worker() -> Iterator[subprocess.Popen]:
    """A live process standing for a worker of the previous release."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        yield process
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(30)


@pytest.fixture
def exited_old_worker_name() -> str:
    """The previous release's snapshot name of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    name = epoch_name(process.pid)
    process.stdin.close()  # type: ignore[union-attr]
    process.wait(30)
    return name


def test_a_live_previous_release_worker_is_alive_by_its_own_reading_of_its_name(
        old_worker: subprocess.Popen) -> None:
    name = epoch_name(old_worker.pid)
    worker = WorkerId.parse(name)
    assert worker is not None and worker.alive()
    # Its write in progress too: deleting it would fail that worker's next write.
    temp = temp_owner(f"{name}.tmp-{worker.pid}-{worker.start}")
    assert temp is not None and temp.alive()
    # A pid reused by another process (started well before or after) is still told apart.
    assert not WorkerId(worker.pid, worker.start - 1000).alive()
    assert not WorkerId(worker.pid, worker.start + 1000).alive()


def test_a_live_previous_release_workers_snapshot_is_kept_and_counted_once_as_a_read(
        tmp_path: Path, old_worker: subprocess.Popen) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    publish(directory, me, 7)
    name = epoch_name(old_worker.pid)
    worker = WorkerId.parse(name)
    assert worker is not None
    temp = f"{name}.tmp-{worker.pid}-{worker.start}"
    frame = format1_frame()
    plant(tmp_path, name, frame)
    plant(tmp_path, temp, b"IWSNAP\n\x01")  # the old worker's write in progress
    before = faults.internal_error_counts()

    for _ in range(3):  # a worker folds about once a second
        assert directory.fold(me) == []
        assert requests_total(directory) == 7

    assert (tmp_path / name).read_bytes() == frame
    assert sorted(os.listdir(tmp_path)) == sorted([".fold.lock", me.name, name, temp])
    assert fault_deltas(before) == {"multiproc_fold": 0, "multiproc_archive": 0,
                                    READ_FAULT: 1}


def test_an_exited_previous_release_workers_snapshot_goes_without_a_fold_fault(
        tmp_path: Path, exited_old_worker_name: str) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    publish(directory, me, 7)
    plant(tmp_path, exited_old_worker_name, format1_frame())
    before = faults.internal_error_counts()

    assert requests_total(directory) == 7  # a scrape first: the reader counts it
    assert directory.fold(me) == [exited_old_worker_name]  # its counts are unreadable here
    assert not (tmp_path / exited_old_worker_name).exists()
    assert requests_total(directory) == 7
    assert directory.fold(me) == []

    assert fault_deltas(before) == {"multiproc_fold": 0, "multiproc_archive": 0,
                                    READ_FAULT: 1}


def test_an_exited_previous_release_workers_snapshot_is_counted_once_by_a_fold_alone(
        tmp_path: Path, exited_old_worker_name: str) -> None:
    """A worker that folds before it is ever scraped still says what it skipped."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    publish(directory, me, 7)
    plant(tmp_path, exited_old_worker_name, format1_frame())
    before = faults.internal_error_counts()

    assert directory.fold(me) == [exited_old_worker_name]
    assert requests_total(directory) == 7

    assert fault_deltas(before) == {"multiproc_fold": 0, "multiproc_archive": 0,
                                    READ_FAULT: 1}


def test_a_previous_release_archive_is_set_aside_and_counted_once_as_a_read(
        tmp_path: Path, exited_old_worker_name: str) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    publish(directory, me, 7)
    dead = WorkerId(2**22 + 4321, 1, me.boot)  # no such pid: a dead worker of this release
    publish(directory, dead, 5)
    old_archive = format1_frame(requests=11)
    plant(tmp_path, ARCHIVE, old_archive)
    before = faults.internal_error_counts()

    assert requests_total(directory) == 12  # the old archive skipped
    assert directory.fold(me) == [dead.name]
    assert requests_total(directory) == 12

    assert (tmp_path / CORRUPT_ARCHIVE).read_bytes() == old_archive
    with open(tmp_path / ARCHIVE, "rb") as handle:
        assert decode(handle.read()).header["format"] == FORMAT_VERSION
    assert fault_deltas(before) == {"multiproc_fold": 0, "multiproc_archive": 0,
                                    READ_FAULT: 1}


def test_clear_keeps_a_live_previous_release_workers_snapshot_and_removes_an_exited_ones(
        tmp_path: Path, old_worker: subprocess.Popen, exited_old_worker_name: str) -> None:
    directory = SnapshotDirectory(str(tmp_path))
    live = epoch_name(old_worker.pid)
    plant(tmp_path, live, format1_frame())
    plant(tmp_path, exited_old_worker_name, format1_frame())

    assert directory.clear() == 1
    assert sorted(name for name in os.listdir(tmp_path) if not name.startswith(".")) == [live]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.integers(0, 255).filter(lambda version: version != FORMAT_VERSION),
       tail=st.binary(max_size=64))
def test_a_file_of_any_other_format_is_never_a_fold_fault(version: int, tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as path:
        directory = SnapshotDirectory(path)
        me = WorkerId.current()
        publish(directory, me, 2)
        dead = WorkerId(2**22 + 977, 1, me.boot)
        frame = format1_frame(version=version) + tail
        plant(Path(path), dead.name, frame)
        before = faults.internal_error_counts()

        assert requests_total(directory) == 2
        assert requests_total(directory) == 2
        assert directory.fold(me) == [dead.name]

        assert fault_deltas(before) == {"multiproc_fold": 0, "multiproc_archive": 0,
                                        READ_FAULT: 1}
