"""Three ways another party reached what it should not: wrong passwords that held connection
slots until no scraper got in, a reference's new content readable by other users while it
was written, and a read-only user stopping every fold of the multi-worker directory.

Real servers on loopback (serve() and the real `inferwatch-exporter`), real files, and a
real second user (nobody) in a forked child that drops root.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from inferwatch import faults
from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import ARCHIVE, LOCK, SnapshotDirectory, skipped_counts
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.quality.reference import Reference
from inferwatch.serving.server import serve
from processes import stop

# Upper bound on any wait: reached only when something is broken (hung).
HANG_GUARD = 30.0
# The good client's timeout: on loopback an answer takes milliseconds; a scraper locked out
# never gets one. Generous, so a loaded machine cannot fail a test.
GOOD_CLIENT_TIMEOUT = 5.0
OTHER_UID = 65534  # nobody
ME = WorkerId.current()
NOW = 1_700_000_000.0
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="a second user needs root to switch to it")


def wait_for(condition: Callable[[], bool], timeout: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the safety deadline"
        time.sleep(0.01)


# --- a second user -----------------------------------------------------------------------------

def _become_other_user() -> None:
    os.setgroups([])  # root's own groups would still open group-readable files
    os.setgid(OTHER_UID)
    os.setuid(OTHER_UID)


def as_other_user(action: Callable[[], str]) -> str:
    """What `action` returns when run by the user nobody in a forked child (the name of
    the exception when it raises)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's lines run in another process
        try:
            os.close(read_end)
            _become_other_user()
            result = action()
        except BaseException as exc:  # reported to the parent
            result = type(exc).__name__
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        result = answer.read().decode()
    os.waitpid(child, 0)
    return result


@contextlib.contextmanager
def held_by_other_user(path: str) -> Iterator[str]:
    """nobody opens `path` read-only and holds flock(LOCK_EX) on it until the block ends;
    yields "held", or the name of the error that stopped it."""
    report_read, report_write = os.pipe()
    release_read, release_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's lines run in another process
        os.close(report_read)
        os.close(release_write)
        try:
            _become_other_user()
            fd = os.open(path, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(report_write, b"held")
            os.read(release_read, 1)  # until the parent closes its end
        except BaseException as exc:  # reported to the parent
            os.write(report_write, type(exc).__name__.encode())
        os._exit(0)
    os.close(report_write)
    os.close(release_read)
    try:
        yield os.read(report_read, 100).decode()
    finally:
        os.close(release_write)
        os.close(report_read)
        os.waitpid(child, 0)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory made as the docs make it (mkdir: 0755), where nobody can reach it:
    pytest's own tmp_path lies under a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix="inferwatch-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- wrong passwords against the /metrics server ------------------------------------------------

def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("demo_scrapes", "Scrapes.", registry=reg).inc(5)
    return reg


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD = basic("prometheus", "s3cret")
WRONG = basic("prometheus", "guess")


def web_config(directory: Path, cost: int = 4) -> str:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=cost)).decode()
    path = directory / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    return str(path)


def request_bytes(authorization: str) -> bytes:
    return (f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\r\n"
            .encode())


def scrape(port: int) -> int | str:
    """The status of one scrape with the good password, or the name of its error."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=GOOD_CLIENT_TIMEOUT)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": GOOD})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError as exc:
        return type(exc).__name__
    finally:
        connection.close()


def send_wrong_password(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    sock.sendall(request_bytes(WRONG))
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    sock.close()
    return data


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"^HTTP/1\.1 (\d{3}) ", answer, re.M)]


def waiting_for_a_password_check(server) -> int:
    """Connections whose request waits on bcrypt (the server's own view of them)."""
    return sum(c.busy or getattr(c, "checking_password", False)
               for c in list(server._connections.values()))


def test_a_refused_password_closes_the_connection_so_pipelined_guesses_do_not_queue(
        tmp_path):
    # Each 401 kept the connection alive: one socket carrying 50 pipelined guesses queued
    # 50 bcrypt checks one after another, and held its slot through all of them.
    with serve(port=0, addr="127.0.0.1", registry=registry(),
               web_config_file=web_config(tmp_path), idle_timeout=5.0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
        sock.sendall(request_bytes(WRONG) * 3)
        answer = read_to_end(sock)
        assert scrape(server.port) == 200

    assert statuses(answer) == [401]
    assert b"\r\nConnection: close\r\n" in answer
    assert b'WWW-Authenticate: Basic realm="inferwatch"' in answer


def test_connections_waiting_for_a_password_check_are_evicted_for_a_good_scraper(tmp_path):
    # Waiting for bcrypt counted as rendering: unevictable, so a budget's worth of wrong
    # passwords refused every newcomer, the good scraper with its cached password included.
    with serve(port=0, addr="127.0.0.1", registry=registry(), max_connections=8,
               web_config_file=web_config(tmp_path), read_timeout=60.0) as server:
        assert server.connection_budget == 8
        assert scrape(server.port) == 200  # the good password is accepted, then cached
        bcrypt_lock = server._web_config._bcrypt_lock
        with bcrypt_lock:  # a slow bcrypt, made certain: no check ends while it is held
            guesses = [send_wrong_password(server.port) for _ in range(8)]
            wait_for(lambda: waiting_for_a_password_check(server) == 8)
            good = scrape(server.port)
            # The evicted guess left the bcrypt queue with its connection: one more
            # guess is queued, not refused as one too many.
            wait_for(lambda: server.open_connections == 7)
            guesses.append(send_wrong_password(server.port))
            wait_for(lambda: waiting_for_a_password_check(server) == 8)
        answers = [statuses(read_to_end(sock)) for sock in guesses]

    assert good == 200
    assert server.evicted_connections >= 1
    assert sorted(answers) == [[]] + [[401]] * 8  # one evicted unanswered, the rest refused


def test_password_checks_waiting_are_bounded_and_a_cached_password_never_waits(tmp_path):
    # Nothing capped the checks waiting for bcrypt: every guess queued for up to
    # read_timeout, each holding its connection.
    with serve(port=0, addr="127.0.0.1", registry=registry(),
               web_config_file=web_config(tmp_path), read_timeout=60.0) as server:
        assert scrape(server.port) == 200
        with server._web_config._bcrypt_lock:
            guesses = [send_wrong_password(server.port) for _ in range(12)]
            first_bytes: dict[int, bytes] = {}  # socket index -> the first bytes it got

            def four_refused() -> bool:
                for index, sock in enumerate(guesses):
                    if index in first_bytes:
                        continue
                    sock.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        first_bytes[index] = sock.recv(65536)
                    sock.settimeout(HANG_GUARD)
                return len(first_bytes) >= 4

            wait_for(four_refused, timeout=15.0)
            good = scrape(server.port)
        later = [statuses(read_to_end(sock)) for sock in guesses]

    assert good == 200
    assert [statuses(data) for data in first_bytes.values()] == [[503]] * 4
    assert all(b"\r\nRetry-After: 1\r\n" in data for data in first_bytes.values())
    assert sorted(later) == [[]] * 4 + [[401]] * 8


class Guesser:
    """`count` threads, each opening connection after connection that pipelines 50 wrong
    passwords, as fast as the server lets it."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.sent = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self) -> Guesser:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HANG_GUARD)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                continue
            try:
                sock.sendall(request_bytes(WRONG) * 50)
                self.sent += 1
                while not self._stop.is_set() and sock.recv(65536):
                    pass
            except OSError:
                pass
            finally:
                sock.close()


def scrapes_under_guessing(port: int, budget: int) -> list[int | str]:
    with Guesser(port, budget) as guesser:
        wait_for(lambda: guesser.sent >= budget)
        results = []
        for _ in range(8):
            results.append(scrape(port))
            time.sleep(0.2)  # a scrape cadence; the assertion is on the answers alone
    return results


def test_every_good_scrape_succeeds_while_a_budget_of_clients_pipelines_wrong_passwords(
        tmp_path):
    with serve(port=0, addr="127.0.0.1", registry=registry(), max_connections=16,
               web_config_file=web_config(tmp_path, cost=10), read_timeout=5.0) as server:
        assert scrape(server.port) == 200
        results = scrapes_under_guessing(server.port, server.connection_budget)

    assert results == [200] * len(results)


@pytest.mark.integration
def test_every_good_scrape_of_the_exporter_succeeds_under_wrong_passwords(tmp_path):
    import resource

    config = web_config(tmp_path, cost=10)
    log_path = tmp_path / "exporter.log"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inferwatch.standalone.cli",
             "--web.listen-address=127.0.0.1:0", f"--web.config.file={config}",
             "--no-collector.gpu"],
            stdout=log, stderr=subprocess.STDOUT,
            # 128 files: the exporter's budget is 32 connections, read at start-up.
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard)))
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not (match := re.search(r"serving http://\S+?:(\d+)/", log_path.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, \
                log_path.read_text()
            time.sleep(0.05)
        port = int(match.group(1))
        assert "connection_budget=32" in log_path.read_text()
        assert scrape(port) == 200
        results = scrapes_under_guessing(port, 32)
        assert process.poll() is None
    finally:
        stop(process)

    assert results == [200] * len(results)


# --- a reference saved over a private one -------------------------------------------------------

def customers_reference(rows: int = 200) -> Reference:
    names = [f"Customer {i} Smith" for i in range(rows)]
    return Reference.from_data({"customer": names, "amount": np.linspace(0, 1, rows)},
                               categorical=["customer"])


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@needs_root
def test_another_user_cannot_open_the_new_reference_while_it_is_written(shared_dir,
                                                                       monkeypatch):
    # The temp file was made with the umask's mode (0644) and took the target's 0600 only
    # after it was written and synced: another user could open it meanwhile and read the
    # customers' names of a file kept from them.
    path = shared_dir / "reference.json"
    customers_reference(10).save(path)
    path.chmod(0o600)
    seen: list[tuple[str, int, str]] = []
    real_fsync = os.fsync

    def fsync_watched(fd: int) -> None:
        for name in os.listdir(shared_dir):
            if name.endswith(".tmp"):
                temp = str(shared_dir / name)

                def read_it(temp: str = temp) -> str:
                    with open(temp, "rb") as handle:
                        return f"read {len(handle.read())} bytes"

                seen.append((name, stat.S_IMODE(os.stat(temp).st_mode), as_other_user(read_it)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_watched)
    with umask(0o022):
        customers_reference().save(path)

    assert len(seen) == 1
    name, mode, attempt = seen[0]
    assert attempt == "PermissionError", f"nobody opened {name} (mode {oct(mode)}): {attempt}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert as_other_user(lambda: path.read_text()[:10]) == "PermissionError"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.integers(0, 0o777), mask=st.sampled_from([0o022, 0o077, 0o002, 0o000]))
def test_the_temp_file_never_grants_more_than_the_file_it_replaces(tmp_path, monkeypatch,
                                                                   mode, mask):
    if os.geteuid() != 0:
        mode |= 0o600  # this user must still read and replace it
    path = tmp_path / "reference.json"
    path.unlink(missing_ok=True)
    customers_reference(5).save(path)
    path.chmod(mode)
    modes_while_written: list[int] = []
    real_fsync = os.fsync

    def fsync_watched(fd: int) -> None:
        modes_while_written.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    with monkeypatch.context() as patch, umask(mask):
        patch.setattr(os, "fsync", fsync_watched)
        customers_reference(7).save(path)

    assert stat.S_IMODE(path.stat().st_mode) == mode  # save() keeps its permissions
    assert len(modes_while_written) == 1
    assert modes_while_written[0] & ~mode & 0o077 == 0
    assert Reference.load(path) == customers_reference(7)
    assert [p.name for p in tmp_path.iterdir()] == ["reference.json"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_new_reference_gets_the_umasks_mode(tmp_path, mask):
    path = tmp_path / "reference.json"
    with umask(mask):
        customers_reference(5).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


@needs_root
def test_a_reference_readable_by_its_group_keeps_that_group(tmp_path):
    # The same 0640 under the saving user's own group handed the group's access to
    # another group.
    path = tmp_path / "reference.json"
    customers_reference(5).save(path)
    os.chown(path, -1, OTHER_UID)
    path.chmod(0o640)
    customers_reference(6).save(path)
    assert path.stat().st_gid == OTHER_UID
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# --- the fold lock of the multi-worker directory ----------------------------------------------

def dead(n: int) -> WorkerId:
    """A worker name whose process is gone: this pid with another start time."""
    return WorkerId(ME.pid, ME.start + 10_000 + n)


def plant_dead_worker(directory: Path, n: int, requests: int = 1) -> None:
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    (directory / dead(n).name).write_bytes(
        encode(Snapshot(models=[model_dict(state)], written_at=NOW)))


def snapshots(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("worker-"))


@needs_root
def test_a_user_with_read_access_only_cannot_stop_the_folds(shared_dir):
    # The lock file was 0644: nobody opened it read-only, held flock(LOCK_EX), and every
    # fold was skipped while dead workers' snapshots piled up.
    directory = SnapshotDirectory(str(shared_dir))
    plant_dead_worker(shared_dir, 1)
    assert directory.fold(ME, now=NOW) == [dead(1).name]  # the first fold makes the lock

    with held_by_other_user(str(shared_dir / LOCK)) as holder:
        for n in range(2, 6):
            plant_dead_worker(shared_dir, n)
            directory.fold(ME, now=NOW)
        left = snapshots(shared_dir)

    assert holder == "PermissionError"
    assert left == []
    assert stat.S_IMODE((shared_dir / LOCK).stat().st_mode) == 0o600


def test_a_lock_left_readable_to_others_is_made_private_by_the_next_fold(tmp_path):
    # As an earlier release left it.
    lock = tmp_path / LOCK
    lock.touch()
    lock.chmod(0o644)
    plant_dead_worker(tmp_path, 1)
    assert SnapshotDirectory(str(tmp_path)).fold(ME, now=NOW) == [dead(1).name]
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@needs_root
def test_a_lock_file_of_an_untrusted_user_is_never_locked_and_is_reported(tmp_path,
                                                                         monkeypatch):
    from inferwatch.multiproc import fold_lock

    monkeypatch.setattr(fold_lock, "FOLD_LOCK_STALL_SECONDS", 0.0)
    lock = tmp_path / LOCK
    lock.touch()
    os.chown(lock, OTHER_UID, OTHER_UID)  # planted by someone who can write here
    plant_dead_worker(tmp_path, 1)
    directory = SnapshotDirectory(str(tmp_path))
    skipped = skipped_counts()["foreign_owner"]
    faulted = faults.internal_error_counts().get("multiproc_fold", 0)

    assert directory.fold(ME, now=NOW) == []
    assert directory.fold(ME, now=NOW) == []  # the second in a row is a stall

    assert skipped_counts()["foreign_owner"] == skipped + 2
    assert faults.internal_error_counts().get("multiproc_fold", 0) == faulted + 1
    assert snapshots(tmp_path) == [dead(1).name]
    lock.unlink()  # as the log line says: removing it cannot let two folds run
    assert directory.fold(ME, now=NOW) == [dead(1).name]
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and lock.stat().st_uid == os.geteuid()


def test_a_fold_lock_held_too_long_is_counted_once_per_stall(tmp_path, monkeypatch):
    # A fold skipped because another process held the lock was silent, however long that
    # lasted: the directory grew with nothing to say why.
    from inferwatch.multiproc import fold_lock

    monkeypatch.setattr(fold_lock, "FOLD_LOCK_STALL_SECONDS", 0.2)
    directory = SnapshotDirectory(str(tmp_path))
    directory.fold(ME, now=NOW)  # makes the lock
    plant_dead_worker(tmp_path, 1)
    faulted = faults.internal_error_counts().get("multiproc_fold", 0)
    read_end, write_end = os.pipe()
    holder = subprocess.Popen(  # another process of this user, stuck holding the lock
        [sys.executable, "-c", "import fcntl, sys\n"
         f"fd = open({str(tmp_path / LOCK)!r}, 'rb')\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n"],
        stdin=read_end, stdout=subprocess.PIPE, text=True)
    os.close(read_end)
    try:
        assert holder.stdout.readline().strip() == "held"
        tries = 0
        while faults.internal_error_counts().get("multiproc_fold", 0) == faulted:
            assert directory.fold(ME, now=NOW) == []
            tries += 1
            assert tries < HANG_GUARD / 0.05, "a fold stalled by the lock was never counted"
            time.sleep(0.05)
        assert faults.internal_error_counts().get("multiproc_fold", 0) == faulted + 1
    finally:
        os.close(write_end)
        holder.wait(HANG_GUARD)

    assert directory.fold(ME, now=NOW) == [dead(1).name]
    assert directory._fold_lock._blocked_since is None  # a fold that ran ends the stall


@needs_root
def test_the_exporter_reading_as_another_user_serves_the_merged_counts(shared_dir):
    # The lock is private now; the exporter (read-only, never folding) reads without it.
    from inferwatch.standalone.collectors.multiproc import MultiprocCollector

    plant_dead_worker(shared_dir, 1, requests=7)
    SnapshotDirectory(str(shared_dir)).fold(ME, now=NOW)
    plant_dead_worker(shared_dir, 2, requests=5)
    for entry in shared_dir.iterdir():
        if entry.name != LOCK:
            entry.chmod(0o644)

    def requests_served() -> str:
        total = 0.0
        for family in MultiprocCollector(str(shared_dir)).collect():
            for sample in family.samples:
                if sample.name == "inferwatch_requests_total":
                    total += sample.value
        return str(total)

    assert sorted(p.name for p in shared_dir.iterdir()) == sorted([ARCHIVE, LOCK,
                                                                   dead(2).name])
    assert as_other_user(requests_served) == "12.0"
