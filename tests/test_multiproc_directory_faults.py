"""Multi-worker mode when the shared directory fails under a running server, and an
application metric that takes an inferwatch name after the merged view was built.

1. A worker (re)started while a running server's directory cannot be written (remounted
   read-only, out of inodes) refused to start, and gunicorn stops the whole server when a
   worker fails to boot. It attaches now, counting ``multiproc_write``; a directory that
   holds no file of inferwatch's yet is still refused at startup.
2. A directory that cannot be listed (removed, replaced) answered 200 with every model
   series gone; the scrape fails now.
3. An application metric created under an inferwatch name after ``make_wsgi_app()`` was
   served beside inferwatch's family: a duplicate that Prometheus rejects with the whole
   scrape. It is left off now, counted and logged once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, require_binary
from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.multiproc import MultiprocError, attach, directory_from_env
from inferwatch.multiproc.snapshot_format import Snapshot, encode
from inferwatch.multiproc.store import ARCHIVE, LOCK, SnapshotDirectory
from inferwatch.multiproc.worker import ENV_VAR
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import make_wsgi_app
from inferwatch.standalone.collectors.multiproc import MultiprocCollector
from inferwatch.standalone.scrape import CollectorError

APPS = Path(__file__).parent / "apps"


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list, name: str, **labels: str) -> float:
    return sum(s.value for s in found
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# --- 1. a worker started while the directory cannot be written ------------------------------

@contextlib.contextmanager
def writes_refused(directory: Path) -> Iterator[None]:
    """Creating or writing a file in `directory` fails with EROFS, as on a read-only mount
    (permission bits would not stop root, who runs these tests)."""
    real_open = os.open
    target = os.path.realpath(directory)
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def read_only_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & writing and os.path.dirname(os.path.realpath(os.fsdecode(path))) == target:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    os.open = read_only_open  # type: ignore[assignment]
    try:
        yield
    finally:
        os.open = real_open


def test_an_unwritable_directory_with_no_file_of_a_server_is_refused_at_startup(
        tmp_path: Path) -> None:
    registry = Registry(drain_interval=3600)
    try:
        with writes_refused(tmp_path), \
                pytest.raises(MultiprocError, match=f"{ENV_VAR}=.*cannot create files in it "
                                                    r"\(Read-only file system\)"):
            attach(registry, str(tmp_path))
        with pytest.raises(MultiprocError, match="does not exist"):
            attach(registry, str(tmp_path / "missing"))  # no sign of a server: refused
    finally:
        registry.close()


@pytest.mark.parametrize("left", [ARCHIVE, LOCK, "worker"])
def test_a_running_servers_unwritable_directory_is_attached_and_the_write_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, left: str) -> None:
    """A server's directory, briefly unwritable when a worker starts: the worker attaches
    (counting multiproc_write) and publishes once the directory can be written again."""
    me = WorkerId.current()
    sibling = WorkerId(me.pid, me.start + 1, me.boot)
    name = sibling.name if left == "worker" else left
    SnapshotDirectory(str(tmp_path)).write(name, encode(Snapshot()), me)
    assert os.listdir(tmp_path) == [name]
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    registry = Registry(drain_interval=3600)
    try:
        before = faults.internal_error_counts().get("multiproc_write", 0)
        with writes_refused(tmp_path):
            with pytest.raises(MultiprocError, match="cannot create files"):
                directory_from_env()  # the check before a server starts stays strict
            publisher = attach(registry)
            assert faults.internal_error_counts()["multiproc_write"] == before + 1
            registry.monitor("fraud", "2").record_call(0.01, 0.5)
            registry.drain()
            assert not publisher.publish(force=True)
        assert publisher.publish(force=True)
        assert SnapshotDirectory(str(tmp_path)).holds(publisher.worker.name)
    finally:
        if registry.multiproc is not None:
            registry.multiproc.close()
        registry.close()


_READ_ONLY_HOOK = """
import errno, os

import inferwatch.multiproc

DIRECTORY = os.path.realpath(os.environ["INFERWATCH_MULTIPROC_DIR"])
READ_ONLY_MARK = os.environ["READ_ONLY_MARK"]


def on_starting(server):
    inferwatch.multiproc.clear_directory()


def post_fork(server, worker):
    # While the mark exists, the directory behaves as a read-only mount in this worker:
    # the lowest layer every write of inferwatch's (and tempfile's) goes through.
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def read_only_open(path, flags, *args, **kwargs):
        if flags & writing and os.path.exists(READ_ONLY_MARK) and \\
                os.path.dirname(os.path.realpath(os.fsdecode(path))) == DIRECTORY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    os.open = read_only_open
"""


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.mark.integration
def test_a_worker_restarted_while_the_directory_is_read_only_keeps_the_server_up(
        tmp_path: Path) -> None:
    """gunicorn (no --preload) recycles a worker while the directory is read-only: the new
    worker failed its directory check, exited 3, and gunicorn stopped every worker."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    mark = tmp_path / "read-only"
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(_READ_ONLY_HOOK)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync",
               "--bind", f"127.0.0.1:{port}", "--chdir", str(APPS), "--config", str(config),
               "--graceful-timeout", "5", "--timeout", "120", "--log-level", "warning",
               "wsgi_app:app"]
    environment = {**os.environ, ENV_VAR: str(directory), "READ_ONLY_MARK": str(mark),
                   "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "wb") as log_file:
        master = subprocess.Popen(command, env=environment, stdout=log_file,
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def running() -> None:
        if master.poll() is not None:
            pytest.fail(f"gunicorn exited with {master.returncode}:\n{log.read_text()}")

    def predict() -> int | None:
        running()
        try:
            body = _get(f"{url}/predict?value=1.0")
        except OSError:
            return None
        return int(body.decode().split(":")[1].strip(" }\n"))

    def merged_requests() -> float | None:
        running()
        try:
            text = _get(f"{url}/metrics").decode()
        except OSError:
            return None
        return value(samples(text), "inferwatch_requests_total", outcome="ok")

    try:
        wait_until(lambda: predict() and len(psutil.Process(master.pid).children()) == 2,
                   "gunicorn's two workers")
        calls = 1 + sum(predict() is not None for _ in range(5))
        wait_until(lambda: merged_requests() == calls, f"{calls} calls merged")
        assert any(name.startswith("worker-") for name in os.listdir(directory))

        mark.touch()
        recycled = psutil.Process(master.pid).children()[0].pid
        os.kill(recycled, signal.SIGTERM)  # as --max-requests or a crash would

        def replaced() -> set[int] | None:
            running()
            pids = {child.pid for child in psutil.Process(master.pid).children()}
            return pids if len(pids) == 2 and recycled not in pids else None

        workers = wait_until(replaced, "the recycled worker's replacement")
        # The new worker imported the app (instrumenting at import) and answers.
        answered: set[int | None] = set()

        def both_answered() -> bool:
            answered.add(predict())
            return workers <= answered

        wait_until(both_answered, "both workers answering")
        running()

        mark.unlink()
        written = wait_until(lambda: _merged_write_faults(url), "multiproc_write merged")
        assert written >= 1
        assert "holds a running server's files" in log.read_text()
        assert "Worker failed to boot" not in log.read_text()
    finally:
        if master.poll() is None:
            master.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                master.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, signal.SIGKILL)


def _merged_write_faults(url: str) -> float:
    try:
        text = _get(f"{url}/metrics").decode()
    except OSError:
        return 0.0
    return value(samples(text), "inferwatch_internal_errors_total",
                 component="multiproc_write")


# --- 2. a directory that cannot be listed -----------------------------------------------------

def _scrape(app: Callable, query: str = "") -> tuple[str, str]:
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": query,
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1"}
    body = b"".join(app(environ, lambda line, headers: status.append(line)))
    return status[0], body.decode()


def _remove(path: Path) -> None:
    shutil.rmtree(path)


def _replace_by_a_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("")


@pytest.mark.parametrize("damage", [_remove, _replace_by_a_file], ids=["removed", "a file"])
def test_a_directory_that_cannot_be_listed_fails_the_scrape(
        tmp_path: Path, damage: Callable[[Path], None]) -> None:
    """The directory removed under a running worker: /metrics answered 200 with no model
    series at all (and no sign but a fault counter), where a read that would serve lower
    sums fails the scrape."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    registry = Registry(drain_interval=3600)
    publisher = attach(registry, str(directory))
    served = CollectorRegistry()
    served.register(InferwatchCollector(registry))
    app = make_wsgi_app(served)
    exporter = MultiprocCollector(str(directory))
    try:
        for _ in range(3):
            registry.monitor("fraud", "1").record_call(0.01, 0.5)
        status, body = _scrape(app)
        assert status == "200 OK"
        assert value(samples(body), "inferwatch_requests_total", outcome="ok") == 3

        damage(directory)
        before = faults.internal_error_counts().get("multiproc_read", 0)
        for query in ("", "name[]=inferwatch_requests_total"):  # pre-rendered and families
            status, body = _scrape(app, query)
            assert status.startswith("500"), (status, body)
            assert "DirectoryUnreadable" in body
        assert faults.internal_error_counts()["multiproc_read"] == before + 2
        with pytest.raises(OSError):  # status pages and pushes fail as before
            publisher.merged_view()
        with pytest.raises(CollectorError, match="cannot read the snapshot directory"):
            exporter.collect()  # collector_success 0 in the standalone exporter, as before

        if directory.is_file():
            directory.unlink()
        directory.mkdir()
        registry.monitor("fraud", "1").record_call(0.01, 0.5)

        def recovered() -> bool:
            # A scrape publishes this worker's file once a second has passed since its last
            # write, as the drain thread's tick does.
            status, body = _scrape(app)
            return status == "200 OK" and \
                value(samples(body), "inferwatch_requests_total", outcome="ok") == 4

        wait_until(recovered, "the recreated directory served", timeout=10.0)
    finally:
        publisher.close()
        registry.close()


# --- 3. an application metric under an inferwatch name, created late --------------------------

_LATE_CLASH = """
import logging, urllib.request
import prometheus_client
import inferwatch

logging.basicConfig(level=logging.WARNING)
model = inferwatch.instrument(lambda x: 0.5, name="fraud", version="1")
orders = prometheus_client.Counter("shop_orders", "Orders.")
server = inferwatch.serve({port}, addr="127.0.0.1")  # builds the merged view: no clash yet
clash = prometheus_client.Counter("inferwatch_requests", "The app's own.", ["model"])
clash.labels("fraud").inc()
orders.inc()
model([1.0])
for attempt in range(300):
    with urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=30) as response:
        body = response.read().decode()
    if 'component="collect"' in body:
        break
    time.sleep(0.05)
print(body)
server.shutdown()
"""


@pytest.mark.integration
def test_an_application_metric_taking_an_inferwatch_name_late_is_left_off(
        tmp_path: Path) -> None:
    prometheus_dir, inferwatch_dir = tmp_path / "prometheus", tmp_path / "inferwatch"
    prometheus_dir.mkdir()
    inferwatch_dir.mkdir()
    script = "import time\n" + textwrap.dedent(_LATE_CLASH).format(port=free_port())
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": os.pathsep.join(sys.path), "PATH": os.environ.get("PATH", ""),
             ENV_VAR: str(inferwatch_dir), "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir)})
    assert done.returncode == 0, done.stderr
    body = done.stdout
    names = [family.name for family in text_string_to_metric_families(body)]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    found = samples(body)
    assert value(found, "shop_orders_total") == 1  # the app's other metrics still served
    assert [s.labels for s in found if s.name == "inferwatch_requests_total"
            and "model_version" not in s.labels] == []
    assert value(found, "inferwatch_requests_total", model="fraud", outcome="ok") == 1
    assert value(found, "inferwatch_internal_errors_total", component="collect") >= 1
    logged = [line for line in done.stderr.splitlines() if "shares names" in line]
    assert len(logged) == 1 and "'inferwatch_requests'" in logged[0], done.stderr
    lint = subprocess.run([require_binary("promtool"), "check", "metrics"], input=body,
                          capture_output=True, text=True, timeout=60)
    assert "parsing error" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
