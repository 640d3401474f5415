"""The exporter's collectors against files and settings an SRE can get wrong."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.standalone.collectors.multiproc import MultiprocCollector
from inferwatch.standalone.collectors.process import ProcessCollector, read_pidfile
from inferwatch.standalone.scrape import Scraper


def scrape_text(scraper: Scraper) -> str:
    registry = CollectorRegistry()
    registry.register(scraper)
    return generate_latest(registry).decode()


def success_of(text: str) -> dict[str, float]:
    return {s.labels["collector"]: s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "inferwatch_exporter_collector_success"}


def pids_in(text: str) -> set[str]:
    return {s.labels["pid"] for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "inferwatch_process_threads"}


def finishes(work, seconds: float = 30.0) -> bool:
    """Run `work` in a thread: whether it returned within `seconds` (a safety net)."""
    done = threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


@contextlib.contextmanager
def fifo(path: Path):
    """A named pipe with no writer; a reader parked on it is let go on the way out."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        # A reader blocked in open() is released by a writer opening the other end.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_pidfile_that_is_not_a_regular_file_never_parks_the_collector(
        tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "app.pid"
    with contextlib.ExitStack() as stack:
        if kind == "fifo":
            stack.enter_context(fifo(path))
        else:
            path.mkdir()
        read: list[int | None] = []
        assert finishes(lambda: read.append(read_pidfile(str(path)))), \
            f"reading a {kind} as a pidfile blocked"
        assert read == [None]
        collector = ProcessCollector(pidfiles=[str(path)], children=False)
        with caplog.at_level(logging.WARNING, logger="inferwatch.standalone"):
            text = scrape_text(Scraper([collector], timeout=30))
        assert success_of(text) == {"process": 1}
        assert any(str(path) in r.getMessage() for r in caplog.records)
    # Once the server writes a real pidfile there, it is followed.
    if kind == "directory":
        path.rmdir()
    else:
        path.unlink()
    path.write_text(f"{os.getpid()}\n")
    assert pids_in(scrape_text(Scraper([collector], timeout=30))) == {str(os.getpid())}


def test_a_snapshot_directory_that_goes_away_is_a_one_line_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "snapshots"
    directory.mkdir()
    collector = MultiprocCollector(str(directory))
    scraper = Scraper([collector, ProcessCollector(pids=[os.getpid()], children=False)],
                      timeout=30)
    assert success_of(scrape_text(scraper)) == {"multiproc": 1, "process": 1}
    shutil.rmtree(directory)
    with caplog.at_level(logging.WARNING, logger="inferwatch.standalone"):
        text = scrape_text(scraper)
    assert success_of(text) == {"multiproc": 0, "process": 1}
    assert pids_in(text) == {str(os.getpid())}
    records = [r for r in caplog.records if "multiproc" in r.getMessage()]
    assert len(records) == 1
    # An operational condition, said in one line that names the directory: no traceback.
    assert records[0].exc_info is None
    assert records[0].levelno == logging.WARNING
    assert str(directory) in records[0].getMessage()
    directory.mkdir()
    assert success_of(scrape_text(scraper)) == {"multiproc": 1, "process": 1}


@pytest.mark.parametrize("timeout", [1e10, 1e300])
def test_a_scraper_with_a_huge_timeout_still_answers(timeout: float) -> None:
    scraper = Scraper([ProcessCollector(pids=[os.getpid()], children=False)], timeout=timeout)
    text = scrape_text(scraper)
    assert success_of(text) == {"process": 1}
    assert pids_in(text) == {str(os.getpid())}


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_scraper_refuses_a_timeout_it_cannot_keep(timeout: float) -> None:
    with pytest.raises(ValueError, match="scrape timeout"):
        Scraper([], timeout=timeout)


def test_too_many_processes_is_said_once_not_on_every_scrape(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import subprocess
    import sys

    from inferwatch.standalone.collectors import process as process_module

    monkeypatch.setattr(process_module, "MAX_PROCESSES", 1)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        collector = ProcessCollector(pids=[os.getpid(), child.pid], children=False)
        scraper = Scraper([collector], timeout=30)
        with caplog.at_level(logging.WARNING, logger="inferwatch.standalone"):
            for _ in range(5):
                assert len(pids_in(scrape_text(scraper))) == 1
        warnings = [r for r in caplog.records if "processes" in r.getMessage()]
        # A scrape every 15 s would otherwise write 5,760 such lines a day.
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
    finally:
        child.stdin.close()
        child.wait(timeout=30)
