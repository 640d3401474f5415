"""`inferwatch demo` at the edges a first-day user meets: bad arguments, ports taken by
another program (often a second demo), a relative --workdir, a closed terminal, and the
figures of the live summary line."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from inferwatch.demo import cli

HOST = "127.0.0.1"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def demo_cli(*argv: str, tmp: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "inferwatch.cli", "demo", *argv],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)


def demo_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("inferwatch-demo-*"))


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["nan", "inf", "0", "1e9"])
def test_a_rate_the_traffic_cannot_keep_is_a_usage_error(
        rate: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--rate", rate)
    assert exit_info.value.code == 2
    assert "--rate" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["::1", "no-such-host.invalid", ""])
def test_a_host_the_demo_cannot_listen_on_is_one_line_and_status_2(
        host: str, tmp_path: Path) -> None:
    finished = demo_cli("--host", host, "--no-stack", tmp=tmp_path)
    assert finished.returncode == 2, finished.stderr
    assert finished.stdout == ""
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert finished.stderr.startswith("inferwatch demo: --host")
    assert demo_dirs(tmp_path) == []


def test_a_workdir_that_cannot_be_made_is_one_line_and_status_2(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory")
    finished = demo_cli("--workdir", str(a_file), "--no-stack", tmp=tmp_path)
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.count("\n") == 1, finished.stderr
    assert "--workdir" in finished.stderr
    assert a_file.read_text() == "not a directory"


def test_a_relative_workdir_is_made_absolute(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Prometheus resolves rule_files against its config file's directory: a relative
    # workdir would make it look in <workdir>/<workdir>/alerts and load no rule at all.
    from inferwatch.demo.runner import Demo

    monkeypatch.chdir(tmp_path)
    demo = Demo(scenario="short", workdir=Path("kept"), with_stack=False)
    assert demo.workdir == tmp_path / "kept"


# --- ports ---------------------------------------------------------------------------------


def test_a_port_taken_after_it_was_chosen_is_chosen_again(
        tmp_path: Path, held_port: int) -> None:
    from inferwatch.demo.receiver import PageReceiver
    from inferwatch.demo.runner import Demo
    from inferwatch.demo.stack import Stack

    demo = Demo(scenario="short", workdir=tmp_path, with_stack=True)
    # What a second demo does when it starts at the same moment: it takes the ports this
    # one chose, before this one gets to bind them.
    demo.ports["exporter"] = demo.ports["receiver"] = held_port
    with Stack(tmp_path) as stack:
        exporter = demo._on_free_port(("exporter",), lambda: stack.start_exporter(
            HOST, demo.ports["exporter"], [os.getpid()]))
        assert exporter.alive()
        assert demo.ports["exporter"] != held_port
        receiver = demo._on_free_port(("receiver",), lambda: PageReceiver(
            HOST, demo.ports["receiver"], out=lambda line: None))
        try:
            assert demo.ports["receiver"] != held_port
            assert receiver.url == f"http://{HOST}:{demo.ports['receiver']}/"
        finally:
            receiver.close()


def test_the_banner_says_which_usual_ports_were_taken(tmp_path: Path, held_port: int) -> None:
    from inferwatch.demo.runner import Demo

    lines: list[str] = []
    demo = Demo(scenario="short", workdir=tmp_path, with_stack=True, out=lines.append,
                preferred_ports={"prometheus": held_port})
    demo._banner()
    moved = [line for line in lines if str(held_port) in line]
    assert moved and f"prometheus {held_port} -> {demo.ports['prometheus']}" in moved[0], lines
    assert f"  Prometheus     http://{HOST}:{demo.ports['prometheus']}/alerts" in lines


def test_a_stack_removes_the_temporary_directory_it_made(own_tempdir: Path) -> None:
    from inferwatch.demo.stack import Stack

    with Stack() as stack:
        stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        assert stack.workdir.is_dir()
    assert not stack.workdir.exists()


# --- what the live summary says ----------------------------------------------------------


def test_the_summary_figures_are_those_of_the_model_the_traffic_reaches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The streaming and quiet-shift models serve calls of their own: summed in, they made
    # 10 requests/s read as 35 calls/s.
    from inferwatch.demo import runner
    from inferwatch.demo.model import MODEL_NAME
    from inferwatch.demo.traffic import TrafficStats

    asked: list[str] = []

    def fake_query(url: str, promql: str, at: float | None = None,
                   timeout: float = 5.0) -> list[dict[str, Any]]:
        asked.append(promql)
        return []

    monkeypatch.setattr(runner, "query", fake_query)
    demo = runner.Demo(scenario="short", workdir=tmp_path, with_stack=True,
                       out=lambda line: None)
    demo.traffic_started = time.monotonic() - 30

    class Generator:
        stats = TrafficStats(sent=300, ok=300)

    demo._summary(Generator())
    figures = [q for q in asked if "ALERTS" not in q]
    assert len(figures) == 4
    for promql in figures:
        selectors = promql.count("inferwatch_")
        assert promql.count(f'model="{MODEL_NAME}"') == selectors, promql


# --- stopping ------------------------------------------------------------------------------


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_stop_signal_while_starting_leaves_no_process_and_no_directory(
        sig: signal.Signals, tmp_path: Path) -> None:
    # A closed terminal sends SIGHUP; without a handler the demo died on the spot, its
    # children followed (parent-death signal), but its temporary directory stayed.
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "inferwatch.cli", "demo", "--no-stack", "--scenario", "short"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not children and time.monotonic() < deadline and demo.poll() is None:
            try:
                seen.append(lines.get(timeout=0.2))
            except queue.Empty:
                pass
            if any(line.startswith("training the demo model") for line in seen):
                children = psutil.Process(demo.pid).children(recursive=True)
        assert children, seen
        assert demo_dirs(tmp_path), "the demo has made its temporary directory"
        demo.send_signal(sig)
        assert demo.wait(30) == 0, seen
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        for child in children:
            if child.is_running():
                child.kill()
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    assert seen[-1] == "stopped: every demo process has exited", seen
    gone_by = time.monotonic() + 10
    while time.monotonic() < gone_by and any(
            c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        time.sleep(0.1)
    assert [c.pid for c in children
            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    assert demo_dirs(tmp_path) == []
