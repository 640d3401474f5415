"""Multi-worker mode against a real gunicorn with 4 workers (sync and uvicorn workers).

Reliability requirement 9: counters stay exact and never go backwards across worker
restarts; files in the shared directory stay bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from inferwatch.multiproc.store import ARCHIVE, SnapshotDirectory

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "apps"
WORKERS = 4
SYNC = "sync"
UVICORN = "uvicorn.workers.UvicornWorker"


class Server:
    """A running gunicorn: its base URL, master process and metrics path."""

    def __init__(self, url: str, process: subprocess.Popen, metrics_path: str,
                 directory: Path, log: Path) -> None:
        self.url = url
        self.process = process
        self.metrics_path = metrics_path
        self.directory = directory
        self.log = log

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.read()

    def predict(self, value: float, hold: bool = False) -> int:
        """Call the model once; returns the pid of the worker that answered."""
        body = self.get(f"/predict?value={value!r}" + ("&hold=1" if hold else ""), timeout=90)
        return int(body.decode().split(":")[1].strip(" }\n"))

    def samples(self) -> list:
        text = self.get(self.metrics_path).decode()
        return [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        return metric_value(self.samples(), name, **labels)

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def wait_for(self, name: str, expected: float, timeout: float = 15.0, **labels: str) -> float:
        """Poll until the merged `name` equals `expected` (workers publish once a second)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.value(name, **labels)
            if value == expected:
                return value
            time.sleep(0.1)
        pytest.fail(f"{name}{labels} is {value}, expected {expected}\n{self.log.read_text()}")


def metric_value(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def snapshot_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != ".fold.lock")


@contextlib.contextmanager
def gunicorn(tmp_path: Path, app: str, worker_class: str = SYNC, *, preload: bool = False,
             env: dict[str, str] | None = None, workers: int = WORKERS) -> Iterator[Server]:
    """gunicorn serving `app` from tests/apps in multi-worker mode, once every worker is up."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class",
               worker_class, "--bind", f"127.0.0.1:{port}", "--chdir", str(APPS),
               "--graceful-timeout", "5", "--log-level", "warning",
               # A worker held at a test's barrier must not be killed as hung: with both
               # cores busy, gathering four workers there has taken past the default 30 s.
               "--timeout", "120", app]
    if preload:
        command.insert(3, "--preload")
    environment = {**os.environ, "INFERWATCH_MULTIPROC_DIR": str(directory),
                   "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, env=environment, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    metrics_path = "/metrics/" if worker_class != SYNC else "/metrics"
    server = Server(f"http://127.0.0.1:{port}", process, metrics_path, directory, log)
    try:
        # A safety limit, not a speed check: with both cores busy, starting workers that
        # import numpy, FastAPI and inferwatch has taken over 30 s here.
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                server.get(metrics_path, timeout=2)
                if len(server.workers()) == workers:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM gunicorn (its workers exit gracefully), SIGKILL the group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only what it started
    process.wait(timeout=5)


@pytest.mark.parametrize(("app", "worker_class"), [("wsgi_app:app", SYNC),
                                                   ("asgi_app:app", UVICORN)])
def test_n_requests_count_exactly_n_and_the_merged_p99_is_the_p99_of_all(tmp_path, app,
                                                                          worker_class):
    values = np.random.default_rng(7).lognormal(mean=0.0, sigma=1.0, size=600).round(6)
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    env = {"HOLD_DIR": str(arrived), "HOLD_FOR": str(WORKERS)}
    with gunicorn(tmp_path, app, worker_class, env=env) as server:
        with ThreadPoolExecutor(WORKERS * 32) as pool:
            # Holding calls first, a new one each 50 ms until every worker has served one
            # and sits blocked: then the merge covers all workers by construction. A worker
            # that boots late finds the others blocked, holding every connection they took
            # before they blocked: new ones must still come for it (at most one a thread).
            held, sent = [], 0
            deadline = time.monotonic() + 60
            while len(list(arrived.iterdir())) < WORKERS:
                assert time.monotonic() < deadline, f"{list(arrived.iterdir())} arrived"
                if sent < WORKERS * 32 - 1:
                    held.append(pool.submit(server.predict, float(values[sent]), hold=True))
                    sent += 1
                time.sleep(0.05)
            pids = [future.result() for future in held]
            pids += pool.map(server.predict, values[sent:].tolist())
        assert {int(p.name) for p in arrived.iterdir()} <= set(pids)
        assert len(set(pids)) == WORKERS
        n = float(len(values))
        server.wait_for("inferwatch_requests_total", n, outcome="ok")
        time.sleep(1.5)  # every worker has published again: still exactly n, never more
        samples = server.samples()
        assert metric_value(samples, "inferwatch_requests_total", outcome="ok") == n
        assert metric_value(samples, "inferwatch_request_duration_seconds_count") == n
        # Default value buckets start below zero: no _count (OpenMetrics), the +Inf bucket.
        assert metric_value(samples, "inferwatch_prediction_value_bucket", output="value",
                            le="+Inf") == n
        assert metric_value(samples, "inferwatch_prediction_count", output="value") == n
        for q in ("0.5", "0.9", "0.99"):
            merged = metric_value(samples, "inferwatch_prediction", output="value", quantile=q)
            exact = float(np.quantile(values, float(q), method="lower"))
            assert merged == pytest.approx(exact, rel=0.01), q
        assert sum(name.startswith("worker-") for name in snapshot_files(server.directory)) \
            == len(set(pids) | {p.pid for p in server.workers()})
    # Stopped: each worker folded its final snapshot into the archive at exit (the uvicorn
    # app does it in its lifespan shutdown).
    assert snapshot_files(server.directory) == [ARCHIVE]
    view = SnapshotDirectory(str(server.directory)).read_view(time.time())
    assert view.states[0].counters["inferwatch_requests_total"][("ok",)] == n


def test_kill_9_never_loses_published_counts_and_50_restarts_keep_the_directory_bounded(
        tmp_path):
    rng = random.Random(3)
    # --preload: the master calls the model once before forking; the workers must not
    # count that call again, however often they are forked.
    with gunicorn(tmp_path, "wsgi_app:app", preload=True, env={"WARMUP": "1"}) as server:
        sent = 1
        server.wait_for("inferwatch_requests_total", sent, outcome="ok")
        with ThreadPoolExecutor(4) as pool:
            # Published counts of a killed worker stay, before and after it is folded.
            for _ in range(5):
                sent += len(list(pool.map(server.predict, [0.5] * 8)))
                server.wait_for("inferwatch_requests_total", sent, outcome="ok")
                victim = kill_a_worker(server, rng)
                assert server.value("inferwatch_requests_total", outcome="ok") == sent
                dead = f"worker-{victim.pid}-"
                wait_until(lambda dead=dead: not any(name.startswith(dead)
                                                     for name in snapshot_files(server.directory)))
                assert server.value("inferwatch_requests_total", outcome="ok") == sent
                wait_until(lambda: live_workers(server) == WORKERS)
            # Rapid restarts: a kill may lose what the worker had not yet published, but
            # the merged counters never go backwards and never count a call twice.
            last_total, most_files = float(sent), 0
            for _ in range(50):
                sent += len(list(pool.map(server.predict, [0.5] * 4)))
                total = server.value("inferwatch_requests_total", outcome="ok")
                assert last_total <= total <= sent, "counters went backwards or double counted"
                last_total = total
                kill_a_worker(server, rng)
                most_files = max(most_files, len(snapshot_files(server.directory)))
                wait_until(lambda: live_workers(server) == WORKERS)
        time.sleep(1.5)
        assert last_total <= server.value("inferwatch_requests_total", outcome="ok") <= sent

        # Dead workers are folded within a second or two: one file per live process.
        def only_live_files() -> bool:
            live = {str(p.pid) for p in [psutil.Process(server.process.pid), *server.workers()]}
            files = snapshot_files(server.directory)
            return all(name.split("-")[1] in live for name in files
                       if name.startswith("worker-")) and not any(".tmp-" in n for n in files)

        wait_until(only_live_files)
        files = snapshot_files(server.directory)
        workers = [name for name in files if name.startswith("worker-")]
        assert len(workers) <= WORKERS + 1  # the workers and the preloading master
        assert set(files) - set(workers) == {ARCHIVE}
        # While kills outpace the once-a-second fold, a few dead workers' files wait their
        # turn; what matters is that they never pile up with the number of restarts (55 here).
        assert most_files <= 4 * WORKERS + 4, f"{most_files} files during 55 restarts"


def kill_a_worker(server: Server, rng: random.Random) -> psutil.Process:
    """SIGKILL one live worker. A victim of an earlier kill may still be listed (a zombie)
    or be reaped between the listing and the kill: another one is chosen then."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        live = []
        for process in server.workers():
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.status() != psutil.STATUS_ZOMBIE:
                    live.append(process)
        if live:
            victim = rng.choice(live)
            try:
                victim.kill()
                return victim
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError("no live worker to kill in 10 s")


def live_workers(server: Server) -> int:
    alive = 0
    for process in server.workers():
        with contextlib.suppress(psutil.NoSuchProcess):
            alive += process.status() != psutil.STATUS_ZOMBIE
    return alive


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
