"""Shared fixtures: an isolated inferwatch registry and a scrape helper per test."""

from __future__ import annotations

import gc
import os
import random
import shutil
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

# No per-example deadline anywhere: on a loaded 2-core CI machine a slow example is not a
# failure (speed is measured in benchmarks/, never asserted in tests).
settings.register_profile("inferwatch", deadline=None)
# `make test` (what CI runs) draws the same examples on every run, seeded by each test: a
# landing never depends on the examples one run happened to draw. `make explore` (or any
# other run) draws new ones, to find what the fixed draw does not.
settings.register_profile("inferwatch-fixed", deadline=None, derandomize=True, database=None)
settings.load_profile(os.environ.get("INFERWATCH_HYPOTHESIS_PROFILE", "inferwatch"))

# Reports with text UTF-8 cannot encode still reach xdist's main process (report_text.py).
pytest_plugins = ["report_text"]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so tests can import the benchmarks package

# The Go programs the tests start (promtool above all, whose rule tests are the suite's
# largest use of CPU, and Prometheus, Alertmanager, amtool, the Pushgateway) hold little
# and live briefly, and the suite is CPU-bound on two cores: their garbage collector,
# run a quarter as often, costs promtool's run of alerts/tests/ about 40% less CPU (73 to
# 41 s here) for some 60 MB more. What they compute does not change. A GOGC of the
# caller's own stands.
os.environ.setdefault("GOGC", "400")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything collection loaded (every test module and the libraries they import:
    numpy, pandas, scikit-learn, ...) lives until the run ends, so the garbage collector's
    full passes need not walk it again: frozen, a test's ``gc.collect()`` and the
    interpreter's own full passes walk only what the tests made since. Some 480,000
    objects in each worker: 0.3 to 0.5 s a pass on this machine, a few hundred passes per
    worker in a run."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                   items: list[pytest.Item]) -> None:
    """Files that start real servers first, then the rest by their number of tests, most
    first.

    Under ``--dist loadfile`` each worker takes the next file in this order (the Makefile
    turns off xdist's own order, by number of tests alone). That order put the integration
    files last: few tests each, but the longest files of the suite (promtool's cases, the
    demo, the end-to-end stack), so the run ended on one or two of them while the other
    workers had nothing left. First, they overlap with the rest: their time is mostly
    waiting on their servers, which the files that keep a core busy fill."""
    per_file = Counter(item.path for item in items)
    integration = {item.path for item in items
                   if item.get_closest_marker("integration") is not None}
    # Among the integration files, those of few tests first: they are the ones whose every
    # test plays a scenario on its servers; a long file with one such test is mostly quick
    # unit tests.
    items.sort(key=lambda item: (0, per_file[item.path], str(item.path))
               if item.path in integration else (1, -per_file[item.path], str(item.path)))


class Scraper:
    """Renders an isolated registry the way /metrics does and indexes the samples."""

    def __init__(self, drain_interval: float = 1.0) -> None:
        from inferwatch.core.registry import Registry
        from inferwatch.serving.bridge import InferwatchCollector

        self.registry = Registry(drain_interval=drain_interval)
        self.prometheus = CollectorRegistry()
        self.prometheus.register(InferwatchCollector(self.registry))

    def text(self) -> str:
        return generate_latest(self.prometheus).decode()

    def samples(self) -> list:
        return [s for family in text_string_to_metric_families(self.text()) for s in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample named `name` whose labels include `labels`."""
        matches = [s.value for s in self.samples()
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        if not matches:
            return None
        assert len(matches) == 1, f"{name}{labels} matches {len(matches)} samples"
        return matches[0]

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample named `name` whose labels include `labels`."""
        return sum(s.value for s in self.samples()
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def series(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples() if s.name == name]


@pytest.fixture
def scraper() -> Scraper:
    scraper = Scraper()
    yield scraper
    scraper.registry.close()


@pytest.fixture
def registry():
    """A registry of the test's own, its drain thread stopped afterwards."""
    from inferwatch.core.registry import Registry

    registry = Registry()
    yield registry
    registry.close()


# Where free_port() looks: below the range the system hands out to outgoing connections
# (32768 and up here), one of which could take a port between its choice and the server's
# bind, and clear of the ranges tests keep for themselves (20000 and up).
FREE_PORTS = range(10000, 20000)


def free_port() -> int:
    """A free loopback port for a server that binds its own (Prometheus, a web app)."""
    return free_port_in(FREE_PORTS)


# Its own generator: hypothesis seeds the module's one for each example, the same in both
# test processes, which would then try the same ports in the same order.
_port_order = random.Random()


def free_port_in(ports: range) -> int:
    """A free loopback port of `ports`, tried in random order: a server that binds its own
    port needs a number before it starts, and a range of a test's own keeps it clear of the
    ports the system hands out (and of another test's range)."""
    for port in _port_order.sample(ports, len(ports)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free loopback port in {ports.start}-{ports.stop - 1}")


def sleeps_of(monkeypatch: pytest.MonkeyPatch, module) -> list[float]:
    """The seconds each ``time.sleep`` that `module`'s own code calls asks for, recorded
    instead of slept; any other code sleeps as ever. Patching a module's ``time.sleep``
    patches the time module for the whole process: a list's ``append`` in its place also
    recorded (and skipped) a background drain thread's ``time.sleep(0)`` between its
    chunks, one more wait than the code under test made, whenever that thread ran."""
    real = time.sleep
    recorded: list[float] = []

    def sleep(seconds: float) -> None:
        if sys._getframe(1).f_globals.get("__name__") == module.__name__:
            recorded.append(seconds)
        else:
            real(seconds)

    monkeypatch.setattr(module.time, "sleep", sleep)
    return recorded


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (apt-get install)")
    return path


# --- failures diagnosable from CI's output alone ----------------------------------------------

LOG_TAIL_LINES = 40
LOG_SUFFIXES = (".log", ".out", ".err")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, add the last lines of every log file the test's processes wrote.

    Integration tests send the output of Prometheus, Alertmanager, gunicorn and the exporter
    to files under the test's ``tmp_path``; CI's output then shows why they failed.
    """
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if tmp_path is None:
        return
    for log in sorted(Path(tmp_path).rglob("*")):
        if log.suffix not in LOG_SUFFIXES or not log.is_file():
            continue
        try:
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            continue
        report.sections.append((f"last {len(lines)} lines of {log.relative_to(tmp_path)}",
                                "\n".join(lines)))


@pytest.fixture
def make_log():
    """Opens event logs for a test (``make_log(path, **options)``) and closes them after."""
    from inferwatch.events.log import EventLog

    logs: list[EventLog] = []

    def make(path, **kwargs) -> EventLog:
        event_log = EventLog(path, **kwargs)
        logs.append(event_log)
        return event_log

    yield make
    for event_log in logs:
        event_log.close()


@pytest.fixture
def exporters() -> Iterator[list]:
    """A list a test appends its ``exporter_process.ExporterProcess`` exporters to: any
    still running at the end are killed."""
    import signal

    started: list = []
    yield started
    for exporter in started:
        exporter.stop(signal.SIGKILL)


class Served(Exception):
    """The command line was taken: the exporter went on to listen."""


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The exporter's ``cli.main`` for a command line that must be refused before anything
    listens: (exit status, stderr)."""
    import threading

    import inferwatch.serving.server
    from inferwatch.standalone import cli

    def serve(*args: object, **kwargs: object) -> None:
        raise Served("the exporter accepted the command line and started serving")

    monkeypatch.setattr(inferwatch.serving.server, "serve", serve)
    monkeypatch.setattr(cli, "configure_logging", lambda level, fmt: None)
    monkeypatch.setattr(cli, "_stop_on_signals", threading.Event)  # pytest keeps its own

    def run(argv: list[str]) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        return int(exit_info.value.code or 0), capsys.readouterr().err

    return run


@pytest.fixture(autouse=True)
def _no_request_left_open_in_the_context():
    """Each test starts, as a server's request does, with no open request in its context.
    A test that opens a request and has it closed from another thread (the middleware's
    close, a response body closed by the server) leaves it current in the context pytest
    runs every test in: the tests after it would make their calls inside it, on the slow
    path (a huge batch there drains in one piece, not slice by slice)."""
    from inferwatch.core.request import _current

    token = _current.set(None)
    yield
    _current.reset(token)
