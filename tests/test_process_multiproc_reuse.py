"""Identities that outlive their process: reused pids (process collector), a directory that
survives a reboot, lookups per fold, and an archive across many redeploys."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferwatch.core.state import ModelState
from inferwatch.multiproc import store as store_module
from inferwatch.multiproc import worker_id as worker_id_module
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.standalone.collectors import process as process_module
from inferwatch.standalone.collectors.process import ProcessCollector
from processes import sleeping_child, watched_pids

NOW = 1_000_000.0


@pytest.fixture
def child():
    with sleeping_child() as process:
        yield process



# --- the process collector -----------------------------------------------------------------
def test_stale_pidfile_whose_pid_went_to_a_later_process_is_not_watched(
        child, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The server crashed an hour ago leaving its pidfile; the pid now belongs to `child`.
    pidfile = tmp_path / "server.pid"
    pidfile.write_text(f"{child.pid}\n")
    written = psutil.Process(child.pid).create_time() - 3600
    os.utime(pidfile, (written, written))
    collector = ProcessCollector(pidfiles=[str(pidfile)], children=False)
    assert str(child.pid) not in watched_pids(collector)
    assert "reused" in caplog.text


def test_pid_given_is_not_watched_once_another_process_has_it(
        child, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    collector = ProcessCollector(pids=[child.pid], children=False)
    assert str(child.pid) in watched_pids(collector)
    # The server exits and the kernel hands its pid to a process started later.
    real = process_module.process_started
    monkeypatch.setattr(process_module, "process_started",
                        lambda pid: real(pid) + (600 if pid == child.pid else 0))
    assert str(child.pid) not in watched_pids(collector)
    assert str(child.pid) not in watched_pids(collector)
    assert caplog.text.count("reused") == 1  # said once, not on every scrape


def test_pid_that_exits_then_runs_as_another_process_says_both(
        child, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The warning that the pid is not running ("skipped until it runs") silenced the one
    that it then ran as another process: the operator's last line promised it would be
    watched again."""
    collector = ProcessCollector(pids=[child.pid], children=False)
    assert str(child.pid) in watched_pids(collector)
    real_status, real_start = psutil.Process.status, process_module.process_started

    def gone(self):
        if self.pid == child.pid:
            raise psutil.NoSuchProcess(self.pid)
        return real_status(self)

    monkeypatch.setattr(psutil.Process, "status", gone)
    assert str(child.pid) not in watched_pids(collector)
    assert caplog.text.count("is not running") == 1
    monkeypatch.setattr(psutil.Process, "status", real_status)
    monkeypatch.setattr(process_module, "process_started",
                        lambda pid: real_start(pid) + (600 if pid == child.pid else 0))
    assert str(child.pid) not in watched_pids(collector)
    assert str(child.pid) not in watched_pids(collector)
    assert caplog.text.count("now belongs to another process") == 1


def test_a_name_matching_nothing_is_said_once_and_a_path_names_its_program(
        child, caplog: pytest.LogCaptureFixture) -> None:
    """A --process.name that matched nothing (a typo, a full path) gave an empty output
    with success 1 and not one log line."""
    missing = ProcessCollector(names=["no-such-server-x"], children=False)
    assert watched_pids(missing) == set()
    assert watched_pids(missing) == set()
    assert caplog.text.count("--process.name=no-such-server-x: no process matches") == 1
    by_path = ProcessCollector(names=[sys.executable], children=False)
    assert str(child.pid) in watched_pids(by_path)
    assert f"--process.name={sys.executable}: no process matches" not in caplog.text


def test_rewritten_pidfile_names_a_fresh_identity(child, tmp_path: Path) -> None:
    """A restarted server rewrites its pidfile: the new process is watched (and the old
    one's identity does not keep it out)."""
    with sleeping_child() as first:
        pidfile = tmp_path / "server.pid"
        pidfile.write_text(str(first.pid))
        collector = ProcessCollector(pidfiles=[str(pidfile)], children=False)
        assert watched_pids(collector) == {str(first.pid)}
    pidfile.write_text(str(child.pid))
    assert watched_pids(collector) == {str(child.pid)}


# --- the snapshot directory -----------------------------------------------------------------
def state(version: str, requests: float) -> ModelState:
    model = ModelState("fraud", version)
    model.inc("inferwatch_requests_total", ("ok",), requests)
    return model


def write(directory: SnapshotDirectory, name: str, states: list[ModelState],
          owner: WorkerId) -> None:
    snapshot = Snapshot(models=[model_dict(s) for s in states], written_at=NOW)
    directory.write(name, encode(snapshot), owner)


def requests(directory: SnapshotDirectory) -> dict[str, float]:
    view = directory.read_view(NOW)
    return {s.version: s.counters["inferwatch_requests_total"][("ok",)] for s in view.states}


@given(st.integers(1, 4_194_304), st.integers(0, 10**12),
       st.sampled_from(["", "0" * 32, "0123456789abcdef" * 2]))
def test_worker_names_read_back_as_written(pid: int, start: int, boot: str) -> None:
    worker = WorkerId(pid, start, boot)
    assert WorkerId.parse(worker.name) == worker
    temp = f"{worker.name}.tmp-{pid}-{start}"
    assert worker_id_module.temp_owner(temp) == worker


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/random/boot_id"),
                    reason="no kernel boot id here")
def test_previous_boots_worker_with_this_pid_and_start_is_folded_not_overwritten(
        tmp_path: Path) -> None:
    """The directory survived a reboot; a worker of the last boot had this worker's pid and
    start time (both count from boot): its counts stay, and it is not taken for us."""
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    earlier = WorkerId(me.pid, me.start, "f" * 32)
    assert earlier.name != me.name
    write(directory, earlier.name, [state("1", 3)], earlier)
    write(directory, me.name, [state("1", 2)], me)
    assert requests(directory) == {"1": 5.0}
    assert directory.fold(me) == [earlier.name]
    assert sorted(os.listdir(tmp_path)) == sorted([ARCHIVE, me.name, ".fold.lock"])
    assert requests(directory) == {"1": 5.0}


def test_fold_looks_each_pid_up_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 files of 50 pids (restarts reuse pids), each with a temp file a writer left."""
    calls: Counter[int] = Counter()
    real = worker_id_module._proc_stat

    def counting(pid: int):
        calls[pid] += 1
        return real(pid)

    monkeypatch.setattr(worker_id_module, "_proc_stat", counting)
    for n in range(200):
        worker = WorkerId(4_000_000 + n % 50, 1 + n)  # beyond any live pid: all dead
        (tmp_path / worker.name).write_bytes(b"")
        (tmp_path / f"{worker.name}.tmp-{worker.pid}-{worker.start}").write_bytes(b"")
    me = WorkerId.current()
    directory = SnapshotDirectory(str(tmp_path))
    write(directory, me.name, [state("1", 1)], me)
    calls.clear()
    assert len(directory.fold(me)) == 200
    assert set(calls) == {4_000_000 + n for n in range(50)}
    assert max(calls.values()) == 1  # and never this process itself
    assert os.listdir(tmp_path) and all(".tmp-" not in n for n in os.listdir(tmp_path))


def test_archive_drops_old_versions_but_never_a_live_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server redeployed many times: the archive keeps a bounded number of versions no
    live worker serves, most recently folded first, and every version a live worker has."""
    monkeypatch.setattr(store_module, "MAX_ARCHIVED_VERSIONS", 4, raising=False)
    directory = SnapshotDirectory(str(tmp_path))
    me = WorkerId.current()
    dead = iter(range(1, 1000))

    def fold_dead_worker(versions: list[str]) -> None:
        worker = WorkerId(me.pid, me.start + next(dead))  # exited
        write(directory, worker.name, [state(v, 1) for v in versions], worker)
        assert directory.fold(me) == [worker.name]

    fold_dead_worker(["live"])
    write(directory, me.name, [state("live", 10)], me)
    for n in range(10):
        fold_dead_worker([f"old{n}"])
    fold_dead_worker(["old3"])  # folded again: recent again
    seen = requests(directory)
    assert seen["live"] == 11.0  # the archive's share of a live version stays
    assert set(seen) == {"live", "old3", "old9", "old8"}
