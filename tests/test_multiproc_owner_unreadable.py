"""The exporter reading the workers' directory as another user: a directory chowned after
the exporter started (docs/multiprocess.md step 1), and snapshots it may not open (the
workers' umask 077)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferwatch.core.state import ModelState
from inferwatch.multiproc.snapshot_format import Snapshot, encode, model_dict
from inferwatch.multiproc.worker_id import WorkerId

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="three users take root to set up")

EXPORTER_UID = 65534  # nobody: the exporter's own user
APP_UID = 1000  # the workers' user
STRANGER_UID = 2000  # neither
NOW = 1_700_000_000.0
ME = WorkerId.current()

# The exporter: builds its collector (and so its directory) at once, says "ready", then
# scrapes once per line read from stdin and prints what the scrape showed.
EXPORTER = textwrap.dedent("""
    import json, logging, os, sys
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from inferwatch.standalone.collectors.multiproc import MultiprocCollector
    from inferwatch.standalone.scrape import Scraper
    # Imported first: this interpreter lives under root's home, closed to other users.
    os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    registry = CollectorRegistry()
    registry.register(Scraper([MultiprocCollector(sys.argv[1])], timeout=10.0))
    print("ready", flush=True)
    for _ in sys.stdin:
        found = {"requests": 0.0, "skipped": {}, "faults": {}}
        text = generate_latest(registry).decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "inferwatch_requests_total" and s.labels["outcome"] == "ok":
                    found["requests"] += s.value
                elif s.name == "inferwatch_multiproc_files_skipped_total" and s.value:
                    found["skipped"][s.labels["reason"]] = s.value
                elif s.name == "inferwatch_internal_errors_total" and s.value:
                    found["faults"][s.labels["component"]] = s.value
                elif s.name == "inferwatch_exporter_collector_success":
                    found["success"] = s.value
        print(json.dumps(found), flush=True)
""")


class Exporter:
    """The exporter's collector in a process of its own user, scraped on demand."""

    def __init__(self, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", EXPORTER, str(directory), str(EXPORTER_UID)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        assert self.process.stdout.readline() == "ready\n", self.stop()

    def scrape(self) -> dict:
        self.process.stdin.write("scrape\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, self.stop()
        return json.loads(line)

    def stop(self) -> str:
        """Its log, once it has exited."""
        self.process.stdin.close()
        self.process.wait(timeout=60)
        log = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return log


@pytest.fixture
def directory() -> Iterator[Path]:
    # Under /tmp itself: pytest's tmp_path is private to root, and no other user gets in.
    path = Path(tempfile.mkdtemp(prefix="iw-owner-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def publish(directory: Path, worker: WorkerId, requests: int, uid: int,
            mode: int = 0o644) -> None:
    """A worker's snapshot, as that worker's user (and umask) leaves it."""
    state = ModelState("fraud", "1")
    state.inc("inferwatch_requests_total", ("ok",), requests)
    path = directory / worker.name
    path.write_bytes(encode(Snapshot(models=[model_dict(state)], written_at=NOW)))
    os.chown(path, uid, uid)
    path.chmod(mode)


def worker(n: int) -> WorkerId:
    return WorkerId(ME.pid, ME.start + n, ME.boot)


# --- the directory chowned after the exporter started ---------------------------------------

def test_the_owner_a_directory_is_given_after_start_is_trusted(directory: Path) -> None:
    exporter = Exporter(directory)  # the directory is still root's, as a fresh volume is
    try:
        os.chown(directory, APP_UID, APP_UID)  # the app's entrypoint: chown app: DIR
        publish(directory, worker(1), 7, APP_UID)
        publish(directory, worker(2), 5, STRANGER_UID)
        first, second = exporter.scrape(), exporter.scrape()
    finally:
        log = exporter.stop()
    for found in (first, second):
        assert found["requests"] == 7, log
        assert found["success"] == 1
    # Anyone else's file is still refused: the rule is this user and the directory's owner.
    assert (first["skipped"], second["skipped"]) == ({"foreign_owner": 1}, {"foreign_owner": 2})


def test_the_previous_owner_is_not_trusted_once_the_directory_changed_hands(
        directory: Path) -> None:
    os.chown(directory, APP_UID, APP_UID)
    exporter = Exporter(directory)
    try:
        os.chown(directory, STRANGER_UID, STRANGER_UID)
        publish(directory, worker(1), 7, APP_UID)
        publish(directory, worker(2), 5, STRANGER_UID)
        found = exporter.scrape()
    finally:
        exporter.stop()
    assert found["requests"] == 5
    assert found["skipped"] == {"foreign_owner": 1}


# --- snapshots the exporter may not open ----------------------------------------------------

def test_unreadable_snapshots_are_skipped_counted_and_said_once_with_the_cure(
        directory: Path) -> None:
    os.chown(directory, APP_UID, APP_UID)
    publish(directory, worker(1), 7, APP_UID)  # umask 022
    publish(directory, worker(2), 5, APP_UID, mode=0o600)  # umask 077
    exporter = Exporter(directory)
    try:
        first, second = exporter.scrape(), exporter.scrape()
    finally:
        log = exporter.stop()
    assert (first["requests"], second["requests"]) == (7, 7)
    assert (first["success"], second["success"]) == (1, 1)
    assert (first["skipped"], second["skipped"]) == ({"unreadable": 1}, {"unreadable": 2})
    assert first["faults"] == second["faults"] == {}
    assert log.count(worker(2).name) == 1, log
    assert "umask" in log
    assert "Traceback" not in log


def test_a_directory_of_nothing_but_unreadable_snapshots_fails_the_collector(
        directory: Path) -> None:
    os.chown(directory, APP_UID, APP_UID)
    publish(directory, worker(1), 7, APP_UID, mode=0o600)
    publish(directory, worker(2), 5, APP_UID, mode=0o600)
    exporter = Exporter(directory)
    try:
        failed = exporter.scrape()
        for name in (worker(1).name, worker(2).name):
            (directory / name).chmod(0o644)  # the workers restarted with umask 022
        recovered = exporter.scrape()
    finally:
        log = exporter.stop()
    assert failed["success"] == 0
    assert "umask" in log
    assert "Traceback" not in log
    assert recovered["success"] == 1
    assert recovered["requests"] == 12
