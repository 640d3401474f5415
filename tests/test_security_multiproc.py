"""The multi-worker directory against hostile files and failing disks.

Anyone able to write to the directory can plant links, FIFOs, devices, directories or
other users' files under snapshot names; none of them is followed, blocks a scrape or
grows memory, each is counted, and folding keeps removing what it can.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch.multiproc.store as store
from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.core.state import ModelState
from inferwatch.multiproc import attach
from inferwatch.multiproc.merge import merge_view
from inferwatch.multiproc.snapshot_format import (
    MAX_SNAPSHOT_BYTES,
    Snapshot,
    decode,
    encode,
    model_dict,
)
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory, skipped_counts
from inferwatch.multiproc.worker_id import WorkerId

NOW = 1_700_000_000.0
HANG_GUARD = 30.0
OTHER_UID = 65534  # nobody
ME = WorkerId.current()
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="other users' files and device nodes "
                                "can only be planted as root")


def dead(n: int) -> WorkerId:
    """A worker name whose process is gone: this pid with another start time."""
    return WorkerId(ME.pid, ME.start + 10_000 + n)


def snapshot_bytes(requests: int) -> bytes:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    return encode(Snapshot(models=[model_dict(state)], written_at=NOW))


def requests_in(view) -> float:
    return sum(s.counters.get("inferwatch_requests_total", {}).get(("ok",), 0.0)
               for s in view.states)


def read_view_guarded(directory: SnapshotDirectory):
    """read_view in a thread: a hang (a FIFO read) fails the test instead of freezing it."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(directory.read_view(NOW)),
                              daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert result, "read_view hung"
    return result[0]


def skips_since(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in skipped_counts().items() if v != before[k]}


# --- item: links, FIFOs, devices, other users' files, oversize files ------------------------

def test_a_symlink_under_a_snapshot_name_is_not_followed(tmp_path):
    outside = tmp_path / "outside.snapshot"
    outside.write_bytes(snapshot_bytes(7))  # a valid snapshot: following it would count 7
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / ME.name).symlink_to(outside)
    (directory / dead(1).name).symlink_to("/etc/passwd")
    (directory / ARCHIVE).symlink_to("/etc/shadow")
    before = skipped_counts()
    view = read_view_guarded(SnapshotDirectory(str(directory)))
    assert requests_in(view) == 0
    assert skips_since(before) == {"symlink": 3}


def test_a_fifo_under_a_live_worker_name_neither_hangs_nor_fails_a_scrape(tmp_path):
    os.mkfifo(tmp_path / ME.name)
    (tmp_path / dead(1).name).write_bytes(snapshot_bytes(3))
    before = skipped_counts()
    view = read_view_guarded(SnapshotDirectory(str(tmp_path)))
    assert requests_in(view) == 3
    assert skips_since(before) == {"not_regular": 1}


@needs_root
def test_a_device_under_a_dead_worker_name_is_never_read_and_is_folded_away(tmp_path):
    device = tmp_path / dead(1).name
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless bytes
    before = skipped_counts()
    directory = SnapshotDirectory(str(tmp_path))
    assert requests_in(read_view_guarded(directory)) == 0
    assert directory.fold(ME) == [dead(1).name]
    assert not device.exists()
    assert skips_since(before) == {"not_regular": 2}  # once by the reader, once by the fold


@needs_root
def test_files_owned_by_another_user_are_refused(tmp_path):
    planted = tmp_path / dead(1).name
    planted.write_bytes(snapshot_bytes(1000))
    os.chown(planted, OTHER_UID, OTHER_UID)
    (tmp_path / dead(2).name).write_bytes(snapshot_bytes(2))
    before = skipped_counts()
    view = read_view_guarded(SnapshotDirectory(str(tmp_path)))
    assert requests_in(view) == 2
    assert skips_since(before) == {"foreign_owner": 1}


@needs_root
def test_the_directory_owner_is_trusted_so_an_exporter_may_read_as_another_user(tmp_path):
    os.chown(tmp_path, OTHER_UID, OTHER_UID)  # the workers' user owns the directory
    mine = tmp_path / dead(1).name
    mine.write_bytes(snapshot_bytes(4))
    os.chown(mine, OTHER_UID, OTHER_UID)
    assert requests_in(read_view_guarded(SnapshotDirectory(str(tmp_path)))) == 4


def test_a_file_larger_than_any_snapshot_is_not_read(tmp_path):
    huge = tmp_path / dead(1).name
    with open(huge, "wb") as handle:
        handle.truncate(MAX_SNAPSHOT_BYTES + 1)  # sparse: costs no disk
    before = skipped_counts()
    assert requests_in(read_view_guarded(SnapshotDirectory(str(tmp_path)))) == 0
    assert skips_since(before) == {"too_large": 1}


def test_a_symlink_planted_at_the_writers_temp_name_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    directory = tmp_path / "dir"
    directory.mkdir()
    store = SnapshotDirectory(str(directory))
    (directory / f"{ME.name}.tmp-{ME.pid}-{ME.start}").symlink_to(victim)
    store.write(ME.name, snapshot_bytes(1), ME)
    assert victim.read_text() == "keep me"
    assert requests_in(read_view_guarded(store)) == 1


# --- item: a fold skips what it cannot delete and removes the rest --------------------------

def test_a_fold_removes_what_it_can_and_counts_what_it_cannot(tmp_path):
    (tmp_path / dead(1).name).mkdir()  # named like a snapshot; unlink() cannot remove it
    (tmp_path / dead(2).name).write_bytes(snapshot_bytes(5))
    directory = SnapshotDirectory(str(tmp_path))
    errors_before = sum(faults.internal_error_counts().values())
    before = skipped_counts()
    directory.fold(ME)
    assert not (tmp_path / dead(2).name).exists()
    assert requests_in(read_view_guarded(directory)) == 5  # folded into the archive
    # Later workers die and are folded; the directory entry never blocks them.
    for n in (3, 4):
        (tmp_path / dead(n).name).write_bytes(snapshot_bytes(1))
        directory.fold(ME)
        assert not (tmp_path / dead(n).name).exists()
    assert requests_in(read_view_guarded(directory)) == 7
    # With nothing new to fold, the stuck entry costs a count, not an archive rewrite.
    archive_written = (tmp_path / ARCHIVE).stat().st_mtime_ns
    directory.fold(ME)
    assert (tmp_path / ARCHIVE).stat().st_mtime_ns == archive_written
    counted = skips_since(before)
    assert counted["undeletable"] == 4 and counted["not_regular"] == 1
    assert sum(faults.internal_error_counts().values()) == errors_before


# --- item: a failing write still shows in this process's own /metrics -----------------------

def test_a_worker_that_cannot_write_its_snapshot_serves_the_shared_counts_and_the_fault(
        tmp_path):
    registry = Registry()
    publisher = attach(registry, str(tmp_path))
    try:
        monitor = registry.monitor("fraud", "1")
        monitor.record_call(0.01, 0.3)
        registry.drain()
        assert publisher.publish(force=True)
        # Its next write fails (a full disk): the published file stays as it was.
        for _ in range(4):
            monitor.record_call(0.01, 0.3)
        registry.drain()
        before = faults.internal_error_counts().get("multiproc_write", 0)
        with mock.patch.object(store, "_file_size_limit", lambda: 64):
            assert not publisher.publish(force=True)
            families = {f.name: f for f in publisher.collect()}
        requests = [s.value for s in families["inferwatch_requests"].samples
                    if s.name == "inferwatch_requests_total"]
        # What every other worker serves too (the file), never more: a scrape answered
        # by another worker next would otherwise read a drop.
        assert sum(requests) == 1.0
        errors = {s.labels["component"]: s.value
                  for s in families["inferwatch_internal_errors"].samples}
        assert errors["multiproc_write"] >= before + 1
        # Once a write succeeds again, the four unwritten calls show.
        assert publisher.publish(force=True)
        families = {f.name: f for f in publisher.collect()}
        assert sum(s.value for s in families["inferwatch_requests"].samples
                   if s.name == "inferwatch_requests_total") == 5.0
    finally:
        publisher.close()


# --- item: workers whose references have different bin layouts ------------------------------

def drifting_worker(categories: list[str], rows: list[str]) -> ModelState:
    from inferwatch.quality.reference import Reference
    from inferwatch.quality.tracker import FeatureTracker

    rng = np.random.default_rng(0)
    reference = Reference.from_data({"x": rng.normal(size=500),
                                     "color": [categories[i % len(categories)]
                                               for i in range(500)]})
    tracker = FeatureTracker(reference)
    tracker.check_inputs([{"x": 0.1, "color": c} for c in rows], NOW)
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), len(rows))
    state.extras["drift"] = tracker.drift
    return state


def test_a_bin_layout_mismatch_is_skipped_per_series_and_counted(tmp_path):
    a = drifting_worker(["red", "green"], ["red"] * 3)
    b = drifting_worker(["red", "green", "blue"], ["blue"] * 4)  # profiled on other data
    raws = [decode(encode(Snapshot(models=[model_dict(s)], written_at=NOW))) for s in (a, b)]
    errors: list[Exception] = []
    view = merge_view(raws, NOW, on_error=errors.append)
    assert requests_in(view) == 7  # every other series still merges
    assert view.states[0].extras["drift"] is not None
    assert errors == [] and view.other_reference == 1
    # The same through a fold: the archive keeps the model's series.
    directory = SnapshotDirectory(str(tmp_path))
    for n, raw_state in enumerate((a, b)):
        (tmp_path / dead(n).name).write_bytes(
            encode(Snapshot(models=[model_dict(raw_state)], written_at=NOW)))
    directory.fold(ME)
    assert requests_in(read_view_guarded(directory)) == 7


# --- property: any directory contents ---------------------------------------------------------

ENTRY_KINDS = ("snapshot", "garbage", "empty", "link_outside", "link_passwd", "dangling",
               "fifo", "directory", "truncated") + (("foreign", "device") if ROOT else ())


def plant(path: Path, kind: str, outside: Path, requests: int) -> int:
    """Create one entry of `kind` at `path`; the requests a correct reader counts from it."""
    if kind == "snapshot":
        path.write_bytes(snapshot_bytes(requests))
        return requests
    if kind == "garbage":
        path.write_bytes(os.urandom(requests))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(snapshot_bytes(requests)[:-3])
    elif kind == "link_outside":
        path.symlink_to(outside)
    elif kind == "link_passwd":
        path.symlink_to("/etc/passwd")
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "foreign":
        path.write_bytes(snapshot_bytes(requests))
        os.chown(path, OTHER_UID, OTHER_UID)
    elif kind == "device":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    return 0


names = st.one_of(st.builds(lambda n: dead(n).name, st.integers(0, 5)), st.just(ME.name),
                  st.just(ARCHIVE),
                  st.builds(lambda n: f"{dead(n).name}.tmp-{ME.pid}-{ME.start + 99_999}",
                            st.integers(0, 2)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.dictionaries(names, st.tuples(st.sampled_from(ENTRY_KINDS), st.integers(1, 50)),
                       max_size=8))
def test_any_directory_contents_are_read_and_folded_without_harm(tmp_path_factory, entries):
    root = tmp_path_factory.mktemp("prop")
    outside = root / "outside.snapshot"
    outside.write_bytes(snapshot_bytes(10_000))
    path = root / "dir"
    path.mkdir()
    expected = 0
    for name, (kind, requests) in entries.items():
        counted = plant(path / name, kind, outside, requests)
        if name != ARCHIVE and ".tmp-" not in name:
            expected += counted
    if entries.get(ARCHIVE, ("",))[0] == "snapshot":
        expected += entries[ARCHIVE][1]
    directory = SnapshotDirectory(str(path))
    view = read_view_guarded(directory)
    assert requests_in(view) == expected  # only valid regular files of ours count
    directory.fold(ME)
    after = read_view_guarded(directory)
    # Folding loses nothing readable, and leaves no dead worker's entry it could remove.
    assert requests_in(after) == expected
    for entry in os.listdir(path):
        worker = WorkerId.parse(entry)
        if worker is not None and worker != ME:
            assert (path / entry).is_dir() and not (path / entry).is_symlink()
    assert outside.read_bytes() == snapshot_bytes(10_000)
    assert Path("/etc/passwd").exists()


