"""The process collector on real processes: this test's own, and children it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.standalone.collectors import process as process_module
from inferwatch.standalone.collectors.process import (
    ProcessCollector,
    descendants,
    matches_name,
    read_pidfile,
)
from inferwatch.standalone.scrape import Scraper

SLEEPER = "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"


def scrape(collector: ProcessCollector) -> dict[str, dict[str, float]]:
    """pid -> {metric: value}, through a Scraper and prometheus_client's parser."""
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=5.0))
    text = generate_latest(registry).decode()
    by_pid: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "inferwatch_exporter_collector_success":
                assert sample.value == 1, "the process collector must never fail"
            if "pid" in sample.labels:
                by_pid.setdefault(sample.labels["pid"], {})[sample.name] = sample.value
                by_pid[sample.labels["pid"]]["process=" + sample.labels["process"]] = 1
    return by_pid


@pytest.fixture
def child():
    """A sleeping child process of this test, ready once it has printed."""
    process = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline() == "ready\n"
    yield process
    process.kill()
    process.wait()


def test_own_process_values_match_psutil() -> None:
    pid = str(os.getpid())
    me = psutil.Process()
    # A deliberately opened descriptor must be counted.
    fds_before = me.num_fds()
    with open(__file__, "rb"):
        result = scrape(ProcessCollector(pids=[os.getpid()], children=False))[pid]
    assert result["inferwatch_process_open_fds"] == fds_before + 1
    assert result["inferwatch_process_threads"] >= 1
    assert result["inferwatch_process_resident_memory_bytes"] > 10 * 2**20
    cpu = me.cpu_times()
    assert 0 < result["inferwatch_process_cpu_seconds_total"] <= cpu.user + cpu.system
    assert result[f"process={me.name()}"] == 1


def test_children_are_included_and_dropped_once_they_exit(child: subprocess.Popen) -> None:
    collector = ProcessCollector(pids=[os.getpid()])
    assert str(child.pid) in scrape(collector)
    child.kill()
    # Exited but not reaped: a zombie, already gone for the collector.
    _wait_zombie(child.pid)
    result = scrape(collector)
    assert str(child.pid) not in result
    assert str(os.getpid()) in result
    child.wait()
    result = scrape(collector)
    assert str(child.pid) not in result
    assert str(os.getpid()) in result


def test_children_can_be_left_out(child: subprocess.Popen) -> None:
    result = scrape(ProcessCollector(pids=[os.getpid()], children=False))
    assert set(result) == {str(os.getpid())}


def test_vanished_pid_is_dropped_never_an_error(child: subprocess.Popen) -> None:
    pid = child.pid
    child.kill()
    child.wait()
    assert scrape(ProcessCollector(pids=[pid])) == {}


def test_pidfile_is_reread_every_scrape(tmp_path: Path, child: subprocess.Popen) -> None:
    pidfile = tmp_path / "serving.pid"
    collector = ProcessCollector(pidfiles=[str(pidfile)], children=False)
    assert scrape(collector) == {}  # missing: nothing yet, no failure
    pidfile.write_text(f"{child.pid}\n")
    assert set(scrape(collector)) == {str(child.pid)}
    pidfile.write_text(f"{os.getpid()}\n")
    assert set(scrape(collector)) == {str(os.getpid())}
    pidfile.write_text("garbage")
    assert scrape(collector) == {}


def test_name_matches_the_program_run_by_an_interpreter(tmp_path: Path) -> None:
    # Like `python /venv/bin/gunicorn app:app`: the name is an argument, not the process name.
    program = tmp_path / "fake-model-server"
    program.write_text("import sys, time\nsys.stdout.write('ready\\n')\nsys.stdout.flush()\n"
                       "time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, str(program), "--workers", "2"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        result = scrape(ProcessCollector(names=["fake-model-server"], children=False))
        assert set(result) == {str(process.pid)}
    finally:
        process.kill()
        process.wait()


def test_name_never_matches_the_exporter_itself() -> None:
    me = psutil.Process()
    result = scrape(ProcessCollector(names=[me.name()], children=False))
    assert str(os.getpid()) not in result


def test_a_wrapper_that_started_the_exporter_is_never_taken_for_the_server(
        tmp_path: Path) -> None:
    """Started as `timeout 60 inferwatch-exporter --process.name fake-model-server` (tini,
    docker-init and sudo alike), the wrapper's command line holds the name as a word of its
    own, and the wrapper was watched as the server."""
    script = tmp_path / "exporter.py"
    script.write_text(
        "import json, sys\n"
        "from inferwatch.standalone.collectors.process import ProcessCollector\n"
        "watched = ProcessCollector(names=['fake-model-server'])._watched()\n"
        "print(json.dumps([p.pid for p in watched]))\n")
    wrapped = subprocess.run(["timeout", "60", sys.executable, str(script), "--process.name",
                              "fake-model-server"], capture_output=True, text=True, timeout=60)
    assert wrapped.returncode == 0, wrapped.stderr
    assert wrapped.stdout.strip() == "[]"


@given(name=st.text(min_size=1, max_size=20).filter(lambda n: "/" not in n))
def test_option_arguments_never_match(name: str) -> None:
    cmdline = ["python3", f"--process.name={name}", f"-{name}"]
    assert not matches_name(name, "python3-not-" + name, cmdline)
    assert matches_name(name, "python3-not-" + name, [*cmdline, f"/opt/bin/{name}"])


def test_read_pidfile_rejects_non_numbers(tmp_path: Path) -> None:
    path = tmp_path / "pid"
    for text, expected in (("123\n", 123), ("", None), ("-5", None), ("12 34", None)):
        path.write_text(text)
        assert read_pidfile(str(path)) == expected


def _wait_zombie(pid: int) -> None:
    process = psutil.Process(pid)
    deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
    while time.monotonic() < deadline:
        if process.status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit")


MASTER = """\
import subprocess, sys, time
if "--worker" in sys.argv:
    print("ready", flush=True)
else:
    workers = [subprocess.Popen([sys.executable, __file__, "--worker"], stdout=subprocess.PIPE,
                                text=True) for _ in range(5)]
    for worker in workers:
        worker.stdout.readline()
    print(" ".join(str(worker.pid) for worker in workers), flush=True)
time.sleep(60)
"""


def test_one_process_table_pass_per_scrape_however_many_processes_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every worker matches the name, like gunicorn's: walking the table once per matched
    # process made a scrape quadratic in their number.
    program = tmp_path / "fake-model-server"
    program.write_text(MASTER)
    master = subprocess.Popen([sys.executable, str(program)], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in master.stdout.readline().split()]
    passes = []
    real_iter = psutil.process_iter
    monkeypatch.setattr(process_module.psutil, "process_iter",
                        lambda *a, **k: passes.append(1) or real_iter(*a, **k))
    monkeypatch.setattr(psutil.Process, "children",
                        lambda *a, **k: pytest.fail("a table walk per process"))
    try:
        collector = ProcessCollector(names=["fake-model-server"])
        for scrapes in (1, 2):
            assert set(scrape(collector)) == {str(master.pid), *map(str, workers)}
            assert len(passes) == scrapes
    finally:
        for pid in workers:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        master.kill()
        master.wait()


def _naive_descendants(root: int, parents: dict[int, int], seen: set[int]) -> set[int]:
    found = set()
    for pid, ppid in parents.items():
        if ppid == root and pid != root and pid not in seen:
            seen.add(pid)
            found |= {pid} | _naive_descendants(pid, parents, seen)
    return found


@given(parents=st.dictionaries(st.integers(1, 40), st.integers(0, 40), max_size=40),
       roots=st.sets(st.integers(0, 40), max_size=5))
def test_descendants_match_a_walk_from_every_root(parents: dict[int, int],
                                                  roots: set[int]) -> None:
    expected: set[int] = set()
    for root in roots:
        expected |= _naive_descendants(root, parents, set())
    assert descendants(roots, parents) == expected
