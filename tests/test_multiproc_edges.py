"""Multi-worker lifecycle edges: a stepped clock, passing I/O errors while folding."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import inferwatch.multiproc.store as store
from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, CORRUPT_ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId

NOW = 1_700_000_000.0

_CHILD = ("import sys\n"
          "from inferwatch.multiproc.worker_id import WorkerId\n"
          "print(WorkerId.current().name, flush=True)\n"
          "sys.stdin.read()\n")


def publish(directory: SnapshotDirectory, name: str, requests: int) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    owner = WorkerId.parse(name)
    assert owner is not None
    snapshot = Snapshot(models=[model_dict(state)], written_at=NOW)
    directory.write(name, encode(snapshot), owner)


def requests_total(directory: SnapshotDirectory) -> float:
    """The merged ``inferwatch_requests_total``, read back through prometheus_client's parser."""
    from prometheus_client import generate_latest

    class Source:
        def collect(self) -> list:
            return directory.read_view(NOW).families(NOW)

    text = generate_latest(Source()).decode()  # type: ignore[arg-type]
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "inferwatch_requests_total")


def dead_name() -> str:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return WorkerId(process.pid, 1).name


@contextlib.contextmanager
def live_worker() -> Iterator[str]:
    """A real process that stays alive until the block ends; yields its snapshot name."""
    process = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil's Linux clock")
def test_a_stepped_clock_never_makes_live_workers_look_dead(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """psutil adds the wall-clock boot time to a process's start: after an NTP step (or a
    resumed VM) every live worker looked like a dead one whose pid was reused. Each was
    folded, and all it published afterwards was skipped as already folded: frozen counters."""
    import psutil._pslinux as pslinux

    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    with live_worker() as name:
        publish(directory, name, 3)
        stepped = pslinux.boot_time() + 5.0
        monkeypatch.setattr(pslinux, "boot_time", lambda: stepped)
        assert WorkerId.parse(name).alive()  # type: ignore[union-attr]
        assert directory.fold(me, now=NOW) == []
        assert (tmp_path / name).exists()
        publish(directory, name, 10)  # the worker's next publish still counts
        assert requests_total(directory) == 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="exact start times")
def test_a_pid_reused_within_two_seconds_is_a_new_process() -> None:
    """A process holding a dead worker's pid, started a moment after it, passed for it
    (a 2 s tolerance): the dead worker was never folded while the new one lived."""
    live = WorkerId.current()
    assert live.alive()
    assert not WorkerId(live.pid, live.start - 50).alive()
    assert not WorkerId(live.pid, live.start + 50).alive()


def failing_read(monkeypatch: pytest.MonkeyPatch, failing: str, error: int) -> object:
    """Make reading the entry named `failing` fail with `error`; returns the real reader."""
    real = store.read_entry

    def read(path: str, *args: object, **kwargs: object) -> object:
        if os.path.basename(path) == failing:
            raise OSError(error, os.strerror(error))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "read_entry", read)
    return real


def test_a_passing_error_reading_the_archive_never_discards_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EMFILE (a busy server at its descriptor limit) reading the archive set it aside
    as corrupt: every dead worker's counts were gone and the counters went backwards."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    first, second = dead_name(), dead_name()
    publish(directory, first, 7)
    assert directory.fold(me, now=NOW) == [first]
    publish(directory, second, 5)
    assert requests_total(directory) == 12
    real = failing_read(monkeypatch, ARCHIVE, errno.EMFILE)
    with contextlib.suppress(OSError):
        directory.fold(me, now=NOW)
    monkeypatch.setattr(store, "read_entry", real)
    assert not (tmp_path / CORRUPT_ARCHIVE).exists()
    assert requests_total(SnapshotDirectory(str(tmp_path))) == 12
    assert directory.fold(me, now=NOW) == [second]
    assert requests_total(SnapshotDirectory(str(tmp_path))) == 12
    assert sorted(os.listdir(tmp_path)) == [".fold.lock", ARCHIVE]


def test_a_passing_error_reading_a_dead_workers_file_keeps_it_for_the_next_fold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EIO or EMFILE reading a dead worker's snapshot dropped its counts and deleted the
    file, although every scrape had counted them: the counters went backwards."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    name = dead_name()
    publish(directory, name, 9)
    assert requests_total(directory) == 9
    real = failing_read(monkeypatch, name, errno.EIO)
    assert directory.fold(me, now=NOW) == []
    monkeypatch.setattr(store, "read_entry", real)
    assert (tmp_path / name).exists()
    assert requests_total(SnapshotDirectory(str(tmp_path))) == 9
    assert directory.fold(me, now=NOW) == [name]
    assert requests_total(SnapshotDirectory(str(tmp_path))) == 9


def test_clear_waits_for_a_fold_in_progress_and_keeps_the_lock_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn --preload: the master's drain thread may be folding the previous run's
    workers when on_starting clears the directory. The clear deleted the files (the lock
    file too) under the fold, which then wrote the previous run's archive back."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    old_run = dead_name()
    publish(directory, old_run, 4)
    reached, release = threading.Event(), threading.Event()
    real = store.decode

    def slow_decode(data: bytes) -> object:
        reached.set()
        assert release.wait(30)
        return real(data)

    monkeypatch.setattr(store, "decode", slow_decode)
    folding = threading.Thread(target=directory.fold, args=(me,), kwargs={"now": NOW})
    folding.start()
    try:
        assert reached.wait(30)
        clearing = threading.Thread(target=SnapshotDirectory(str(tmp_path)).clear)
        clearing.start()
        clearing.join(0.5)  # room for a clear that does not wait to run first
    finally:
        release.set()
        folding.join(30)
    clearing.join(30)
    assert not folding.is_alive() and not clearing.is_alive()
    monkeypatch.setattr(store, "decode", real)
    assert sorted(os.listdir(tmp_path)) == [".fold.lock"]
    assert requests_total(SnapshotDirectory(str(tmp_path))) == 0
