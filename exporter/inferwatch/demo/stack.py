"""Start and stop the demo's processes: the model, the exporter, Prometheus, Alertmanager.

Every process is a child started in its own session (so a Ctrl-C reaches only the demo,
which stops the children in order) and, on Linux, asked to receive SIGTERM if the demo
dies without cleaning up. :class:`Stack` stops everything it started, newest first.

>>> with Stack() as stack:
...     proc = stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
...     proc.alive()
True
>>> proc.alive()
False
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from inferwatch.generate.promql import quoted

STOP_TIMEOUT_SECONDS = 10.0
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
_PR_SET_PDEATHSIG = 1
# Left in every data directory the demo makes, so a later run knows it may empty it.
DATA_MARKER = ".inferwatch-demo-data"


# The demo's own processes are asked directly: urllib sends even 127.0.0.1 through an
# http_proxy set in the environment (Go, as Prometheus scrapes, does not), so behind a
# corporate proxy every component read as "not ready" and every query failed.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(RuntimeError):
    """A process did not start or did not become ready; the message says which and why."""


class PortInUse(StackError):
    """A process exited because another program took its port after the demo chose it."""


# What Linux and macOS print, through Go, Python and C alike, for EADDRINUSE.
_ADDRESS_IN_USE = "address already in use"


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """`preferred` when it can be bound on `host`, else a free port chosen by the kernel."""
    for port in ((preferred, 0) if preferred else (0,)):
        with socket.socket() as sock:
            # As the servers themselves bind: a port held only by connections in TIME_WAIT
            # (the previous demo's, for a minute after it stopped) is free for them, and
            # without this it read as taken, so a second run moved every port and said
            # another program listened there.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise StackError(f"no free port on {host}")


def find_alertmanager() -> str | None:
    """The Alertmanager binary: Debian's name first, then upstream's."""
    return shutil.which(ALERTMANAGER) or shutil.which("alertmanager")


# What stops the demo (runner.py): held while a child is started and recorded.
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP in the main thread, then deliver any that came.

    A stop signal's handler raises (KeyboardInterrupt, or the runner's stop): raised between
    the fork and the child's place in `Stack.processes`, it left a child no one stopped.
    Held as Python handlers, not a signal mask, which the child would inherit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only
        return
    arrived: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for sig in _HELD_SIGNALS:
            handler = signal.getsignal(sig)
            if handler is None:  # installed outside Python: cannot be put back
                continue
            previous[sig] = handler
            signal.signal(sig, lambda signum, frame: arrived.append(signum))
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in arrived:
            signal.raise_signal(signum)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Process:
    """One child process with its log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        try:
            self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        except OSError as exc:
            # A kept --workdir whose log is another user's file (an earlier `sudo` run) or a
            # directory: a traceback from deep in the start, not a line naming the file.
            raise StackError(f"cannot write the log of {name} at {log_path}: "
                             f"{exc.strerror or exc}") from exc
        try:
            self.popen = subprocess.Popen(
                self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        except OSError as exc:
            self._log.close()
            raise StackError(f"cannot start {name} ({self.argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        try:
            if self.popen.poll() is None:
                self.popen.terminate()
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout)
            return self.popen.returncode
        finally:
            self._log.close()


# The data directories `Stack.fresh_data_dir` empties at each run with the whole stack.
DATA_DIRS = ("prometheus-data", "alertmanager-data")


def data_dir_problem(data: Path) -> str | None:
    """Why the demo must not empty `data` for a fresh run, or None when it may.

    The CLI asks before anything starts: found only by `fresh_data_dir`, a foreign data
    directory stopped the demo after the model had trained and the children had started.
    """
    if data.is_symlink() or (data.exists() and not data.is_dir()):
        return f"{data} is not a directory the demo made; move it away or choose another --workdir"
    try:
        if data.is_dir() and not (data / DATA_MARKER).is_file() and any(data.iterdir()):
            return (f"{data} holds files the demo did not make; move it away or choose "
                    f"another --workdir")
    except OSError as exc:
        return f"cannot empty {data} for a fresh run: {exc.strerror or exc}"
    return None


class Stack:
    """The processes of one demo or test run, all stopped by `close()` (newest first)."""

    def __init__(self, workdir: str | os.PathLike[str] | None = None) -> None:
        # A directory the stack made for itself is its own to remove; one it was given is not.
        self._owns_workdir = workdir is None
        if workdir is None:
            import tempfile

            workdir = tempfile.mkdtemp(prefix="inferwatch-demo-")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes: list[Process] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
              ) -> Process:
        """Start `argv` with its output in ``<workdir>/<name>.log``."""
        with stop_signals_held():
            process = Process(name, argv, self.workdir / f"{name}.log", env)
            self.processes.append(process)
        return process

    def wait_ready(self, process: Process, url: str, timeout: float = 60.0) -> None:
        """Poll `url` until it answers 200; fail early when the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                tail = process.log_tail()
                error = PortInUse if _ADDRESS_IN_USE in tail.lower() else StackError
                raise error(f"{process.name} exited with status {process.popen.returncode}"
                            f"; last log lines:\n{tail}")
            try:
                with _DIRECT.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, http.client.HTTPException):
                # HTTPException: whatever answers there does not speak HTTP (yet).
                pass
            time.sleep(0.2)
        raise StackError(f"{process.name} not ready at {url} after {timeout:.0f}s; "
                         f"last log lines:\n{process.log_tail()}")

    # --- the components ----------------------------------------------------------------

    def start_model(self, name: str, host: str, api_port: int, metrics_port: int, *,
                    drift_window: float = 300.0) -> Process:
        process = self.start(name, [sys.executable, "-m", "inferwatch.demo.model",
                                    "--listen", f"{host}:{api_port}",
                                    "--metrics-listen", f"{host}:{metrics_port}",
                                    f"--drift-window={drift_window:g}"])
        self.wait_ready(process, f"http://{host}:{api_port}/healthz")
        return process

    def start_streaming_model(self, host: str, metrics_port: int, *, speed: float) -> Process:
        """The toy token generator, looping its time-to-first-token story."""
        process = self.start("streaming", [sys.executable, "-m", "inferwatch.demo.streaming",
                                           "--metrics-listen", f"{host}:{metrics_port}",
                                           f"--speed={speed:g}", "--loop"])
        self.wait_ready(process, f"http://{host}:{metrics_port}/metrics")
        return process

    def start_quiet_shift_model(self, host: str, metrics_port: int, *, speed: float,
                                on_signal: bool = False) -> Process:
        """The model without a reference, looping its quiet output-shift story (or, with
        `on_signal`, shifting once after SIGUSR1)."""
        process = self.start("quiet-shift", [sys.executable, "-m", "inferwatch.demo.quiet_shift",
                                             "--metrics-listen", f"{host}:{metrics_port}",
                                             f"--speed={speed:g}",
                                             "--shift-on-signal" if on_signal else "--loop"])
        self.wait_ready(process, f"http://{host}:{metrics_port}/metrics")
        return process

    def start_exporter(self, host: str, port: int, pids: Sequence[int], *, gpu: bool = False
                       ) -> Process:
        argv = [sys.executable, "-m", "inferwatch.standalone.cli",
                f"--web.listen-address={host}:{port}",
                "--collector.gpu" if gpu else "--no-collector.gpu"]
        argv += [f"--process.pid={pid}" for pid in pids]
        process = self.start("exporter", argv)
        self.wait_ready(process, f"http://{host}:{port}/metrics")
        return process

    def start_prometheus(self, name: str, config: Path, host: str, port: int,
                         extra: Sequence[str] = ()) -> Process:
        binary = shutil.which(PROMETHEUS)
        if binary is None:
            raise StackError("prometheus is not on PATH (Debian: apt-get install prometheus)")
        data = self.fresh_data_dir(f"{name}-data")
        process = self.start(name, [binary, f"--config.file={config}",
                                    f"--storage.tsdb.path={data}",
                                    f"--web.listen-address={host}:{port}",
                                    # Without it the links in alerts name this host's
                                    # name, which may resolve to another address.
                                    f"--web.external-url=http://{host}:{port}",
                                    "--enable-feature=exemplar-storage", *extra])
        self.wait_ready(process, f"http://{host}:{port}/-/ready")
        return process

    def start_alertmanager(self, config: Path, host: str, port: int) -> Process:
        binary = find_alertmanager()
        if binary is None:
            raise StackError("prometheus-alertmanager is not on PATH "
                             "(Debian: apt-get install prometheus-alertmanager)")
        data = self.fresh_data_dir("alertmanager-data")
        process = self.start("alertmanager", [binary, f"--config.file={config}",
                                              f"--storage.path={data}",
                                              f"--web.listen-address={host}:{port}",
                                              f"--web.external-url=http://{host}:{port}",
                                              "--cluster.listen-address="])
        self.wait_ready(process, f"http://{host}:{port}/-/ready")
        return process

    def fresh_data_dir(self, name: str) -> Path:
        """An empty ``<workdir>/<name>`` for a process's state.

        A kept --workdir held the previous run's data: Prometheus restored the `for:` state
        of its alerts (they fired early, even in the baseline) and Alertmanager's
        notification log took the new pages for ones already sent (no PAGE lines). Only a
        directory this demo made (it carries DATA_MARKER) or an empty one is emptied; any
        other is refused, since `--workdir ~` may well hold a real Prometheus's data.
        """
        data = self.workdir / name
        problem = data_dir_problem(data)
        if problem:
            raise StackError(problem)
        try:
            if data.is_dir() and (data / DATA_MARKER).is_file():
                shutil.rmtree(data)
            data.mkdir(exist_ok=True)
            (data / DATA_MARKER).write_text("made by inferwatch demo; emptied at each run\n",
                                            encoding="utf-8")
        except OSError as exc:
            raise StackError(f"cannot empty {data} for a fresh run: "
                             f"{exc.strerror or exc}") from exc
        return data

    def close(self) -> None:
        """Stop every process, newest first; safe to call twice.

        Every process is stopped even when one cannot be (a child stuck in the kernel
        outlives SIGKILL's wait): the first failure left every older process running.
        Raises StackError naming those that did not stop, once all were tried.
        """
        failures: list[tuple[str, Exception]] = []
        while self.processes:
            process = self.processes.pop()
            try:
                process.stop()
            except Exception as exc:  # whatever the stop raised: the others still go
                failures.append((f"{process.name} (pid {process.pid})", exc))
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if failures:
            raise StackError("could not stop " + "; ".join(
                f"{name}: {exc!r}" for name, exc in failures)) from failures[0][1]

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- configuration files ---------------------------------------------------------------------


def prometheus_config(*, model_targets: Sequence[str], exporter_targets: Sequence[str],
                      alertmanager: str | None, rule_files: Sequence[str],
                      interval: str = "1s", model_job: str = "inferwatch-model",
                      exporter_job: str = "inferwatch-exporter",
                      remote_write: str | None = None) -> dict[str, Any]:
    """A Prometheus config scraping the models and exporters under the generated jobs.

    >>> cfg = prometheus_config(model_targets=["127.0.0.1:8000"], exporter_targets=[],
    ...                         alertmanager=None, rule_files=[])
    >>> [job["job_name"] for job in cfg["scrape_configs"]]
    ['inferwatch-model', 'inferwatch-exporter']
    """
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {"job_name": model_job, "static_configs": [{"targets": list(model_targets)}]},
            {"job_name": exporter_job, "static_configs": [{"targets": list(exporter_targets)}]},
        ],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager]}]}]}
    if remote_write:
        # Raw series only: the receiver evaluates the recording rules itself, over every
        # shard's data, so recorded series and alert states must not arrive twice.
        config["remote_write"] = [{
            "url": remote_write,
            "write_relabel_configs": [{"source_labels": ["__name__"], "action": "drop",
                                       "regex": ".+:.+|ALERTS|ALERTS_FOR_STATE"}],
            "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms",
                             "max_backoff": "1s"}}]
    return config


def alertmanager_config(webhook_url: str, *, group_wait: str = "1s",
                        group_interval: str = "5s") -> dict[str, Any]:
    """An Alertmanager config sending every alert, and its resolution, to `webhook_url`.

    >>> alertmanager_config("http://127.0.0.1:9095/")["route"]["receiver"]
    'print-pages'
    """
    return {
        "route": {"receiver": "print-pages", "group_by": ["alertname", "model"],
                  "group_wait": group_wait, "group_interval": group_interval,
                  "repeat_interval": "4h"},
        "receivers": [{"name": "print-pages", "webhook_configs": [
            {"url": webhook_url, "send_resolved": True}]}],
    }


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# The alerts page: the new UI's (upstream Prometheus 2 and 3), then the classic UI's (Debian's
# Prometheus 2 builds only the classic one, whose /alerts is a 404).
ALERT_PAGES = ("/alerts", "/classic/alerts")


def alerts_page(prometheus_url: str) -> str:
    """The path of the alerts page this Prometheus serves; "/" (which every version
    redirects to its own start page) when none of ALERT_PAGES answers."""
    for path in ALERT_PAGES:
        try:
            with _DIRECT.open(prometheus_url.rstrip("/") + path, timeout=2) as response:
                if response.status == 200:
                    return path
        except (OSError, http.client.HTTPException):
            continue
    return "/"


def wait_scraped(prometheus_url: str, targets: Sequence[str], timeout: float = 30.0) -> bool:
    """Wait until Prometheus has scraped each of `targets` (host:port) once; False when it
    has not within `timeout`.

    Prometheus hands new targets to its scrapers only some seconds after it is ready: traffic
    started before then was counted before the first sample, and every rate over a window
    reaching back to the traffic's start read low (5 calls/s of 10) for the first minute.
    """
    wanted = quoted("|".join(re.escape(target) for target in targets))
    promql = f"count(up{{instance=~{wanted}}} == 1)"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = query(prometheus_url, promql, timeout=2)
        except StackError:
            result = []
        if result and float(result[0]["value"][1]) >= len(set(targets)):
            return True
        time.sleep(0.2)
    return False


def query(prometheus_url: str, promql: str, at: float | None = None,
          timeout: float = 5.0) -> list[dict[str, Any]]:
    """Run an instant query; returns the result vector (raises StackError on an error)."""
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        try:
            with _DIRECT.open(url, timeout=timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # An error page that is not Prometheus's JSON (a 503 while it starts or stops,
            # a proxy's page) raised JSONDecodeError into the live summary, a traceback.
            text = exc.read()
            try:
                body = json.loads(text or b"{}")
            except ValueError:
                raise StackError(f"query failed: {promql}: HTTP {exc.code}: "
                                 f"{text[:200].decode(errors='replace')}") from exc
        if not isinstance(body, dict):
            raise ValueError("the answer is not a JSON object")
        if body.get("status") != "success":
            raise StackError(f"query failed: {promql}: {body.get('error', body)}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as exc:
        raise StackError(f"query failed: {promql}: {exc}") from exc
