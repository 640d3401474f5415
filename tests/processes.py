"""Start real processes (Prometheus, web servers, a sleeping child) on loopback for
integration tests, and always stop them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import free_port, require_binary


def wait_ready(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving_app(args: Sequence[str], port: int, *, app_dir: Path, log_dir: Path,
                ready_path: str, env: dict | None = None) -> Iterator[str]:
    """A web server (gunicorn, uvicorn, ...) run by `args` from `app_dir` (also its
    PYTHONPATH), its output in `log_dir`/server.log; yields its URL once `ready_path`
    answers, and stops it after."""
    log = log_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(list(args), cwd=app_dir, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(app_dir), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        # A generous safety deadline: with both cores busy, importing FastAPI alone can take
        # longer than 20 s. The wait ends as soon as the server answers at all.
        deadline = time.monotonic() + 120
        while True:
            try:
                # Another test's server may hold the port (it was free when chosen): only
                # an answer from a socket this server listens on counts.
                if not _listens_on(process.pid, port):
                    raise ConnectionRefusedError(f"server not listening on {port} yet")
                urllib.request.urlopen(url + ready_path, timeout=30).close()
                break
            except urllib.error.HTTPError:
                break  # it answered
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        stop(process)


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` or one of its descendants (a pre-fork server's workers, a
    master that binds for them) listens on TCP `port`."""
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return False
    for member in family:
        try:
            # net_connections since psutil 6; connections before
            read = getattr(member, "net_connections", None) or member.connections
            connections = read(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
               for c in connections):
            return True
    return False


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"no data for {expr!r} after {timeout}s")


@contextmanager
def prometheus(tmp_path: Path, targets: Sequence[str], *, flags: Sequence[str] = (),
               scrape_interval: str = "1s", job_name: str = "inferwatch-model",
               honor_labels: bool = False, rule_files: Sequence[str] = ()
               ) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` as `job_name` (a Pushgateway with `honor_labels`),
    evaluating `rule_files`, every `scrape_interval`."""
    binary = require_binary("prometheus")
    port = free_port()
    scrape = {"job_name": job_name, "static_configs": [{"targets": list(targets)}]}
    if honor_labels:
        scrape["honor_labels"] = True
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": list(rule_files),
        "scrape_configs": [scrape],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config_path}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", *flags],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", process=process)
        yield Prometheus(url)
    finally:
        stop(process)
        log.close()


def process_gone(pid: int) -> bool:
    """Whether process `pid` has exited: no longer in /proc, or dead and not yet reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# A child that says it is running, then sleeps: a process for the process collector to watch.
_SLEEPER = "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"


@contextmanager
def sleeping_child() -> Iterator[subprocess.Popen]:
    """A sleeping child process of this test, yielded once it has started; killed after."""
    process = subprocess.Popen([sys.executable, "-c", _SLEEPER], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait()


def watched_pids(collector: object) -> set[str]:
    """The pids a process collector exports series for."""
    return {sample.labels["pid"] for family in collector.collect()  # type: ignore[attr-defined]
            for sample in family.samples}
