"""The standalone exporter against what a host really holds: odd process names, damaged
snapshot text, wrapped pids, odd host names and paths, and log pipelines that parse JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter_process import ExporterProcess
from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.store import SnapshotDirectory
from inferwatch.multiproc.worker_id import WorkerId
from inferwatch.serving.exposition import render
from inferwatch.standalone.collectors import process as process_module
from inferwatch.standalone.collectors.multiproc import MultiprocCollector
from inferwatch.standalone.collectors.process import ProcessCollector
from inferwatch.standalone.scrape import Collector, MetricSet, Scraper


def registry_of(scraper: Scraper) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(scraper)
    return registry


def scrape_both(scraper: Scraper) -> str:
    """The text exposition, after checking that both formats render and parse."""
    registry = registry_of(scraper)
    text = generate_latest(registry).decode()
    list(text_string_to_metric_families(text))
    list(parse_openmetrics(generate_openmetrics(registry).decode()))
    return text


def success_of(text: str) -> dict[str, float]:
    return {s.labels["collector"]: s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "inferwatch_exporter_collector_success"}


def process_labels(text: str) -> dict[str, str]:
    """pid -> process name, from the threads series."""
    return {s.labels["pid"]: s.labels["process"]
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "inferwatch_process_threads"}


def wait_for(condition, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds  # a safety net: the condition ends the wait
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# --- process names that are not UTF-8 ----

# What a process can write into its own name (prctl / /proc/self/comm): any bytes but NUL,
# at most 15 of them.
RENAME_AND_WAIT = (
    "import sys\n"
    "open('/proc/self/comm', 'wb').write(bytes.fromhex(sys.argv[1]))\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def renamed() -> Iterator[Callable[[bytes], subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(name: bytes) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", RENAME_AND_WAIT, name.hex()],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(child)
        assert child.stdout.readline() == b"ready\n"
        return child

    yield start
    for child in started:
        child.stdin.close()
        child.wait(timeout=30)


class Counting(Collector):
    """Counts its runs: a scrape that collects everything twice shows as 2."""

    name = "counting"

    def __init__(self) -> None:
        self.runs = 0

    def collect(self) -> list[Metric]:
        self.runs += 1
        return []


def served(scraper: Scraper) -> str:
    """The body the exporter's HTTP server sends for one scrape, as text."""
    body, headers = render(registry_of(scraper), None, None)
    assert headers["Content-Type"].startswith("text/plain")
    return body.decode("utf-8")


@pytest.mark.parametrize("name", [b"bad\xff) (x", b"\xc3(", b"model\xe9v2", b"\xed\xa0\x80"])
def test_a_process_named_with_bytes_that_are_not_utf8_is_shown_from_one_collect(
        renamed, name: bytes) -> None:
    child = renamed(name)
    counting = Counting()
    scraper = Scraper([ProcessCollector(pids=[child.pid, os.getpid()], children=False),
                       counting], timeout=30)
    text = served(scraper)
    # One scrape runs each collector once, however odd a name it meets.
    assert counting.runs == 1
    assert success_of(text) == {"process": 1, "counting": 1}
    # Both processes are there; the bad bytes read as U+FFFD, the rest as written.
    names = process_labels(text)
    assert set(names) == {str(child.pid), str(os.getpid())}
    assert names[str(child.pid)] == name.decode("utf-8", "replace")
    assert process_labels(scrape_both(scraper))[str(child.pid)] == names[str(child.pid)]


# --- a collector whose text cannot be written out ----

def publish(directory: Path, worker: WorkerId, model: str, version: str) -> None:
    state = ModelState(model, version, info={"framework": "sklearn"}, loaded_at=100.0)
    state.inc("inferwatch_requests_total", ("ok",), 3)
    snapshot = Snapshot(models=[model_dict(state)], written_at=time.time())
    SnapshotDirectory(str(directory)).write(worker.name, encode(snapshot), worker)


def test_a_snapshot_with_text_that_is_not_unicode_is_shown_from_one_collect(
        tmp_path: Path) -> None:
    # A worker that named its model from a file name of Latin-1 bytes (os.listdir hands
    # those over with surrogates), or a damaged file whose checksum still holds.
    publish(tmp_path, WorkerId(os.getpid(), 1), "fraud\udce9", "v1")
    counting = Counting()
    scraper = Scraper([MultiprocCollector(str(tmp_path)), counting], timeout=30)
    text = served(scraper)
    assert counting.runs == 1
    assert success_of(text) == {"multiproc": 1, "counting": 1}
    models = {s.labels.get("model") for family in text_string_to_metric_families(text)
              for s in family.samples if s.name == "inferwatch_requests_total"}
    assert models == {"fraud\ufffd"}
    scrape_both(scraper)


class Echo(Collector):
    """Exposes one gauge whose label value is whatever the test gives it."""

    name = "echo"

    def __init__(self, value: object) -> None:
        self.value = value

    def collect(self) -> list[Metric]:
        metrics = MetricSet()
        metrics.add("inferwatch_process_threads", {"pid": "1", "process": self.value}, 1)
        return metrics.families()


class Steady(Collector):
    name = "steady"

    def collect(self) -> list[Metric]:
        metrics = MetricSet()
        metrics.add("inferwatch_process_open_fds", {"pid": "2", "process": "steady"}, 1)
        return metrics.families()


class NotAFamily(Collector):
    name = "broken"

    def collect(self) -> list[object]:
        return [None]


def _surrogate(c: str) -> bool:
    return 0xD800 <= ord(c) <= 0xDFFF


@settings(deadline=None, max_examples=60)
# Any text, with the lone surrogates that surrogateescape leaves for bytes not UTF-8.
@given(value=st.text(alphabet=st.one_of(st.characters(),
                                        st.integers(0xD800, 0xDFFF).map(chr)), max_size=20))
def test_a_label_value_never_fails_the_scrape_and_keeps_every_character_it_can(
        value: str) -> None:
    scraper = Scraper([Echo(value), Steady()], timeout=30)
    text = scrape_both(scraper)
    assert success_of(text) == {"echo": 1, "steady": 1}
    shown = process_labels(text)["1"]
    if not any(map(_surrogate, value)):
        assert shown == value
    kept = [c for c in value if not _surrogate(c) and c != "\ufffd"]
    assert [c for c in shown if c != "\ufffd"] == kept
    assert "inferwatch_process_open_fds{pid=\"2\",process=\"steady\"} 1.0" in text
    assert process_labels(served(scraper)) == {"1": shown}


@pytest.mark.parametrize("collector", [Echo(42), NotAFamily()], ids=["int-label", "none"])
def test_a_collector_returning_what_cannot_be_rendered_shows_success_0(
        collector: Collector) -> None:
    text = scrape_both(Scraper([collector, Steady()], timeout=30))
    assert success_of(text) == {collector.name: 0, "steady": 1}


# --- the cap on processes keeps the ones asked for ----

PARENT_OF_ONE = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],"
    " stdin=subprocess.PIPE)\n"
    "print(child.pid, flush=True)\n"
    "sys.stdin.read()\n"
    "child.stdin.close(); child.wait()\n"
)


def test_the_cap_keeps_every_process_asked_for_before_any_descendant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A master with a worker, then a second server started later: its pid is above the
    # worker's, as a master's is above its workers' once pids wrap around.
    first = subprocess.Popen([sys.executable, "-c", PARENT_OF_ONE],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    second = None
    try:
        worker = int(first.stdout.readline())
        second = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                  stdin=subprocess.PIPE)
        monkeypatch.setattr(process_module, "MAX_PROCESSES", 2)
        collector = ProcessCollector(pids=[first.pid, second.pid])
        shown = set(process_labels(scrape_both(Scraper([collector], timeout=30))))
        assert shown == {str(first.pid), str(second.pid)}
        # Room for everyone: the worker is back.
        monkeypatch.setattr(process_module, "MAX_PROCESSES", 3)
        shown = set(process_labels(scrape_both(Scraper([collector], timeout=30))))
        assert shown == {str(first.pid), str(second.pid), str(worker)}
    finally:
        for child in (first, second):
            if child is not None:
                child.stdin.close()
                child.wait(timeout=30)


# --- command-line values the socket or the HTTP client reads otherwise ----



@pytest.mark.parametrize("address", [
    "model..internal:9400",          # a doubled dot from a template
    "gpu-host-1..:9400",
    ".:9400",
    f"{'x' * 64}.example:9400",      # a label over 63 characters
])
def test_a_host_name_the_socket_cannot_encode_is_a_usage_error(address: str, run_main) -> None:
    code, err = run_main(["--no-collector.gpu", f"--web.listen-address={address}"])
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("inferwatch-exporter: error: argument --web.listen-address: ")
    assert "Traceback" not in err


# --- the real process ----

def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.integration
def test_every_log_line_is_json_from_the_first_one_on(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Turned on with no directory: the collector says so while it is being set up.
    monkeypatch.delenv("INFERWATCH_MULTIPROC_DIR", raising=False)
    exporter = ExporterProcess(tmp_path, "--no-collector.gpu", "--collector.multiproc",
                               "--log.format=json")
    try:
        assert get(exporter.url) == 200
    finally:
        assert exporter.stop() == 0
    lines = exporter.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # a plain line fails here
    assert any("no snapshot directory" in r["msg"] and r["level"] == "error"
               for r in records), lines
    assert any(r["msg"] == "received SIGTERM" for r in records), lines


@pytest.mark.integration
def test_a_telemetry_path_with_non_ascii_letters_is_served_where_clients_ask(
        tmp_path: Path) -> None:
    exporter = ExporterProcess(tmp_path, "--no-collector.gpu",
                               "--web.telemetry-path=/m\u00e9triques")
    try:
        # curl, browsers and Prometheus all send the path UTF-8 percent-encoded.
        base = exporter.url.rsplit("/", 1)[0]
        assert get(f"{base}/m%C3%A9triques") == 200, exporter.log_path.read_text()
        assert exporter.url == f"{base}/m%C3%A9triques"
    finally:
        assert exporter.stop() == 0


# --- ?name[]= selects every family the exporter serves ----

def test_every_family_served_can_be_selected_by_name(tmp_path: Path) -> None:
    from inferwatch.serving.exposition import metrics_response

    publish(tmp_path, WorkerId(os.getpid(), 1), "fraud", "v1")
    # A planted link: counted in inferwatch_multiproc_files_skipped_total.
    (tmp_path / "worker-1-1.snapshot").symlink_to("/etc/passwd")
    scraper = Scraper([MultiprocCollector(str(tmp_path)),
                       ProcessCollector(pids=[os.getpid()], children=False)], timeout=30)
    registry = registry_of(scraper)
    status, body, _ = metrics_response(registry, None, None)
    assert status == 200
    served_families = {f.name: f for f in text_string_to_metric_families(body.decode())
                       if f.samples}
    assert "inferwatch_multiproc_files_skipped" in served_families
    for family in served_families.values():
        wanted = family.samples[0].name
        status, body, _ = metrics_response(registry, None, None, f"name[]={wanted}")
        assert status == 200
        selected = {s.name for f in text_string_to_metric_families(body.decode())
                    for s in f.samples}
        assert wanted in selected, f"?name[]={wanted} selects nothing"


# --- servers that retitle their processes ----

# What setproctitle does for gunicorn: argv rewritten to the title, the kernel's name
# (15 bytes at most) set to its start. The server is named apart from gunicorn, as long
# ("gunicorn" is 8 bytes): the tests running beside this one start real gunicorns, which
# `--process.name gunicorn` rightly finds.
SERVER = f"gu{os.getpid() % 1_000_000:06d}"
WORKER = (
    "import sys\n"
    f"open('/proc/self/comm', 'w').write('{SERVER}: worke')\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)
MASTER = (
    "import subprocess, sys\n"  # sys.executable is unknown under such an argv[0]
    f"open('/proc/self/comm', 'w').write('{SERVER}: maste')\n"
    f"worker = subprocess.Popen(['{SERVER}: worker [app:app]', '-c', sys.argv[1]],"
    " executable=sys.argv[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
    "worker.stdout.readline()\n"
    "print(worker.pid, flush=True)\n"
    "sys.stdin.read()\n"
    "worker.stdin.close(); worker.wait()\n"
)


@pytest.mark.parametrize("children", [False, True])
def test_a_gunicorn_titled_by_setproctitle_is_found_by_its_name(children: bool) -> None:
    master = subprocess.Popen([f"{SERVER}: master [app:app]", "-c", MASTER, WORKER,
                               sys.executable],
                              executable=sys.executable,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        worker = int(master.stdout.readline())
        collector = ProcessCollector(names=[SERVER], children=children)
        text = scrape_both(Scraper([collector], timeout=30))
        assert success_of(text) == {"process": 1}
        names = process_labels(text)
        assert set(names) == {str(master.pid), str(worker)}, names
        assert names[str(master.pid)].startswith(f"{SERVER}: master")
    finally:
        master.stdin.close()
        master.wait(timeout=30)
