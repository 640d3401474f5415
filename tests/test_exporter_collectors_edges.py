"""The exporter's process collector and scrape as an SRE meets them: long and non-ASCII
program names cut by the kernel, pidfiles naming dead pids, and a host out of threads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_binary
from inferwatch.standalone.collectors.process import ProcessCollector
from inferwatch.standalone.scrape import Scraper

PYTHON = os.path.realpath(sys.executable)
SLEEPER = "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"


def exposition(collector: ProcessCollector) -> str:
    registry = CollectorRegistry()
    registry.register(Scraper([collector], timeout=5.0))
    return generate_latest(registry).decode()


def labels_by_pid(text: str) -> dict[str, str]:
    """pid -> the `process` label, through prometheus_client's parser."""
    found: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "inferwatch_exporter_collector_success":
                assert sample.value == 1
            if "pid" in sample.labels:
                found[sample.labels["pid"]] = sample.labels["process"]
    return found


def run_as(program: Path) -> subprocess.Popen:
    """Python started under the file name `program` (a link to the interpreter), ready."""
    if not program.exists():
        program.symlink_to(PYTHON)
    process = subprocess.Popen([str(program), "-S", "-c", SLEEPER], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    process.stdout.close()


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


# --- names cut by the kernel --------------------------------------------------------------

@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=24)
       .filter(lambda n: len(n.encode()) > 15 and not n.isascii()))
def test_a_non_ascii_program_name_cut_by_the_kernel_is_shown_whole(bin_dir: Path,
                                                                     name: str) -> None:
    # The kernel keeps 15 bytes: 模型服务器推理 became 模型服务器 in the `process` label, and a
    # cut in the middle of a letter became U+FFFD, while an ASCII name was shown whole.
    process = run_as(bin_dir / name)
    try:
        text = exposition(ProcessCollector(pids=[process.pid], children=False))
    finally:
        stop(process)
    assert labels_by_pid(text)[str(process.pid)] == name


def test_a_name_cut_mid_letter_is_whole_and_passes_promtool(bin_dir: Path) -> None:
    name = "abcd-模型服务器"  # 15 bytes end inside 务
    process = run_as(bin_dir / name)
    try:
        text = exposition(ProcessCollector(names=[name]))
    finally:
        stop(process)
    assert labels_by_pid(text) == {str(process.pid): name}
    assert "\ufffd" not in text
    check = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_name_ps_shows_for_a_long_program_finds_it(bin_dir: Path) -> None:
    # `ps -e`, `top` and `pgrep` show the kernel's 15 bytes; that is the name an SRE copies.
    # Unique in those 15 bytes: any other process on the host cut to the same name (a
    # server called my-long-model-server, say) would match as well.
    name = f"iw{uuid.uuid4().hex[:13]}-server-bin"
    stub = name[:15]
    process = run_as(bin_dir / name)
    try:
        assert Path(f"/proc/{process.pid}/comm").read_text() == f"{stub}\n"
        found = labels_by_pid(exposition(ProcessCollector(names=[stub])))
        assert found == {str(process.pid): name}
        # Only the kernel's cut, not any prefix, nor 15 bytes that are not the start.
        assert labels_by_pid(exposition(ProcessCollector(names=[stub[:-1]]))) == {}
        assert labels_by_pid(exposition(ProcessCollector(names=[stub[:-1] + "x"]))) == {}
    finally:
        stop(process)


def test_a_multi_byte_name_as_ps_shows_it_finds_the_program(bin_dir: Path) -> None:
    process = run_as(bin_dir / "模型服务器推理")
    try:
        found = labels_by_pid(exposition(ProcessCollector(names=["模型服务器"])))
    finally:
        stop(process)
    assert found == {str(process.pid): "模型服务器推理"}


# --- pids asked for that are not running --------------------------------------------------

def gone_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "not running" in r.getMessage()]


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([PYTHON, "-S", "-c", "pass"])
    process.wait()
    return process.pid


def test_a_stale_pidfile_is_said_once_not_silently_empty(tmp_path: Path, dead_pid: int,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # The server crashed and left its pidfile: the exporter showed nothing, reported
    # success 1, and logged not one line.
    pidfile = tmp_path / "server.pid"
    pidfile.write_text(f"{dead_pid}\n")
    collector = ProcessCollector(pidfiles=[str(pidfile)])
    with caplog.at_level(logging.INFO, logger="inferwatch.standalone.process"):
        for _ in range(3):
            assert labels_by_pid(exposition(collector)) == {}
        assert gone_warnings(caplog) == [
            f"pidfile {pidfile}: pid {dead_pid} is not running (exited, or in another pid "
            "namespace); skipped until it runs"]
        # The restarted server writes its new pid: followed, and no more warnings.
        server = subprocess.Popen([PYTHON, "-S", "-c", SLEEPER], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout.readline() == "ready\n"
            pidfile.write_text(f"{server.pid}\n")
            assert str(server.pid) in labels_by_pid(exposition(collector))
            assert len(gone_warnings(caplog)) == 1
            # It dies too, unreaped: a zombie is not running either, and is said once more.
            server.kill()
            _wait_zombie(server.pid)
            assert labels_by_pid(exposition(collector)) == {}
            assert len(gone_warnings(caplog)) == 2
        finally:
            stop(server)


def test_a_pid_not_in_this_namespace_is_said_once(dead_pid: int,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    collector = ProcessCollector(pids=[dead_pid, os.getpid()], children=False)
    with caplog.at_level(logging.WARNING, logger="inferwatch.standalone.process"):
        for _ in range(2):
            assert set(labels_by_pid(exposition(collector))) == {str(os.getpid())}
    assert gone_warnings(caplog) == [
        f"--process.pid={dead_pid}: pid {dead_pid} is not running (exited, or in another "
        "pid namespace); skipped until it runs"]


def _wait_zombie(pid: int) -> None:
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            pytest.fail(f"pid {pid} never became a zombie")
        time.sleep(0.005)


# --- a host out of threads ----------------------------------------------------------------

OUT_OF_THREADS = textwrap.dedent("""
    import os, resource, sys
    from prometheus_client import CollectorRegistry, generate_latest
    from inferwatch.standalone.collectors.process import ProcessCollector
    from inferwatch.standalone.scrape import Scraper

    registry = CollectorRegistry()
    registry.register(Scraper([ProcessCollector(pids=[1])], timeout=5.0))
    # No thread of its own may start any more: what pids.max or RLIMIT_NPROC does to an
    # exporter beside a server caught in a fork loop.
    os.setgid(65534)
    os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
    sys.stdout.write(generate_latest(registry).decode())
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_a_collector_thread_that_cannot_start_costs_only_that_collector() -> None:
    result = subprocess.run([sys.executable, "-c", OUT_OF_THREADS], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    samples = {(s.name, s.labels.get("collector")): s.value
               for f in text_string_to_metric_families(result.stdout) for s in f.samples}
    assert samples[("inferwatch_exporter_collector_success", "process")] == 0
    assert ("inferwatch_exporter_build_info", None) in samples

