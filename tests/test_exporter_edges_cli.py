"""The exporter's command line as an SRE meets it: odd values, contradictions, signals."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from inferwatch.standalone import cli
from inferwatch.standalone.collectors import process

# --- values ----------------------------------------------------------------------------------

# No Linux pid is above this (PID_MAX_LIMIT, the ceiling of kernel.pid_max).
LINUX_PID_MAX_LIMIT = 4_194_304
_CLEAN_HOST = re.compile(r"[^\s\x00-\x1f\x7f]*")


@given(text=st.text(max_size=30))
@example(text=":\u00b2")  # a superscript two: str.isdigit() says yes, int() says no
@example(text=":\u0669\u0664\u0660\u0660")  # Arabic-Indic 9400
@example(text=" :9400")
@example(text="127.0.0.1 :9400")
@example(text="local host:9400")
def test_listen_address_accepts_only_plain_ascii_ports_and_hosts(text: str) -> None:
    try:
        host, port = cli.listen_address(text)
    except argparse.ArgumentTypeError as refused:
        assert repr(text) in str(refused)  # the message shows what was given
        return
    digits = text.rpartition(":")[2]
    assert digits.isascii() and digits.isdigit() and 0 <= port <= 65535
    assert _CLEAN_HOST.fullmatch(host), host


@given(text=st.text(max_size=12))
@example(text="\u00b2")
@example(text="\u0663")
@example(text="99999999999999999999")
def test_number_flags_accept_only_plain_ascii_numbers(text: str) -> None:
    for parse, upper in ((cli._positive_int, None), (process._pid, LINUX_PID_MAX_LIMIT)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as refused:
            assert repr(text) in str(refused)
            continue
        assert text.isascii() and text.isdigit() and value >= 1
        assert upper is None or value <= upper


@given(text=st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=0, max_value=10**30).map(str)))
@example(text="1e10")
@example(text="1e300")
@example(text="9223372037")
def test_scrape_timeout_is_a_wait_the_exporter_can_make(text: str) -> None:
    try:
        seconds = cli._seconds(text)
    except argparse.ArgumentTypeError as refused:
        assert repr(text) in str(refused)
        return
    # The scrape waits this long on a thread, the server one second more.
    assert seconds > 0 and seconds + cli.SERVER_TIMEOUT_MARGIN_SECONDS <= threading.TIMEOUT_MAX


@pytest.mark.parametrize(("argv", "flag"), [
    (["--web.listen-address=:\u00b2"], "--web.listen-address"),
    (["--web.listen-address=:\u0669\u0664\u0660\u0660"], "--web.listen-address"),
    (["--web.listen-address= :9400"], "--web.listen-address"),
    (["--web.max-requests=\u00b2"], "--web.max-requests"),
    (["--process.pid=\u0663"], "--process.pid"),
    (["--process.pid=99999999999999999999"], "--process.pid"),
    (["--process.pidfile="], "--process.pidfile"),  # an unset $PIDFILE
    (["--scrape.timeout=1e10"], "--scrape.timeout"),
])
def test_bad_values_exit_2_with_a_line_that_says_what_is_wrong(
        argv: list[str], flag: str, run_main) -> None:
    code, err = run_main(["--no-collector.gpu", *argv])
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"inferwatch-exporter: error: argument {flag}: ")
    assert "invalid" not in last  # argparse's own "invalid <function> value" says nothing
    assert "Traceback" not in err


# --- flags that are not the exporter's -----------------------------------------------------------

@pytest.mark.parametrize("flag", [
    "--web.listen=127.0.0.1:0", "--log.l=debug", "--process.pidf=/run/app.pid",
    "--collector.disable", "--no-collector.g", "--scrape.time=5",
])
def test_an_abbreviated_flag_is_an_unknown_flag(flag: str, run_main) -> None:
    code, err = run_main([flag])
    assert code == 2
    assert flag in err.strip().splitlines()[-1]


@pytest.mark.parametrize(("argv", "flag", "because"), [
    (["--no-collector.process", "--process.pid=1"], "--process.pid", "--no-collector.process"),
    (["--no-collector.process", "--process.name=gunicorn"], "--process.name",
     "--no-collector.process"),
    (["--no-collector.process", "--process.pidfile=/run/app.pid"], "--process.pidfile",
     "--no-collector.process"),
    (["--no-collector.process", "--no-process.children"], "--no-process.children",
     "--no-collector.process"),
    (["--collector.disable-defaults", "--collector.gpu", "--process.name=python"],
     "--process.name", "--collector.disable-defaults"),
    (["--no-collector.gpu", "--collector.gpu.process-memory"],
     "--collector.gpu.process-memory", "--no-collector.gpu"),
    (["--collector.disable-defaults", "--collector.gpu.process-memory"],
     "--collector.gpu.process-memory", "--collector.disable-defaults"),
    # A directory given on the command line was meant to be read.
    (["--collector.disable-defaults", "--collector.gpu", "--multiproc.dir=/run/inferwatch"],
     "--multiproc.dir", "--collector.disable-defaults"),
])
def test_flags_of_a_collector_that_is_off_are_refused(
        argv: list[str], flag: str, because: str, run_main) -> None:
    code, err = run_main(argv)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert f"argument {flag}" in last and because in last
    assert "Traceback" not in err


_TOGGLES = st.lists(st.sampled_from([
    "--collector.disable-defaults", "--collector.gpu", "--no-collector.gpu",
    "--collector.process", "--no-collector.process"]), max_size=4,
    # A switch given twice is refused by the parser (test_exporter_switch_given_twice.py).
    unique_by=lambda flag: flag.replace("--no-", "--"))
_OWN_FLAGS = st.lists(st.sampled_from([
    "--process.pid=1", "--process.name=gunicorn", "--process.pidfile=/run/app.pid",
    "--no-process.children", "--collector.gpu.process-memory"]), max_size=3, unique=True)


@given(toggles=_TOGGLES, own=_OWN_FLAGS, order=st.randoms(use_true_random=False))
def test_a_collector_flag_is_either_used_or_refused(toggles: list[str], own: list[str],
                                                    order) -> None:
    from inferwatch.standalone.scrape import registered_collectors

    argv = toggles + own
    order.shuffle(argv)
    args = cli.build_parser().parse_args(argv)
    try:
        names = [c.name for c in cli.enabled_collectors(args, registered_collectors())]
    except ValueError as refused:
        message = str(refused)
        assert message.startswith("argument --") and "collector is off" in message
        assert any(message.startswith(f"argument {flag.split('=')[0]}:")
                   for flag in own)
        return
    for flag in own:
        owner = "gpu" if flag.startswith("--collector.gpu.") else "process"
        assert owner in names, (argv, names)


def test_flags_of_a_collector_that_is_on_are_taken(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.standalone.scrape import registered_collectors

    def names(*argv: str) -> list[str]:
        args = cli.build_parser().parse_args(list(argv))
        return [c.name for c in cli.enabled_collectors(args, registered_collectors())]

    assert names("--collector.disable-defaults", "--collector.process",
                 "--process.pid=1") == ["process"]
    assert names("--no-collector.gpu", "--process.name=python") == ["process"]
    assert names("--no-collector.process", "--collector.gpu.process-memory") == ["gpu"]
    # The directory is what turns multiproc on; an explicit --no- keeps it off (documented).
    assert "multiproc" not in names(f"--multiproc.dir={tmp_path}", "--no-collector.multiproc")
    assert names("--collector.disable-defaults", "--collector.multiproc",
                 f"--multiproc.dir={tmp_path}") == ["multiproc"]
    # The environment variable alone (set for the workers) leaves it off under
    # --collector.disable-defaults, as documented.
    monkeypatch.setenv("INFERWATCH_MULTIPROC_DIR", str(tmp_path))
    assert names("--collector.disable-defaults", "--collector.process") == ["process"]


# --- the real process --------------------------------------------------------------------------

def start(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen, Path, str | None]:
    """The exporter on a loopback port; its url once it serves, None if it exited first."""
    log_path = tmp_path / f"exporter-{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        exporter = subprocess.Popen(
            [sys.executable, "-m", "inferwatch.standalone.cli",
             "--web.listen-address=127.0.0.1:0", "--no-collector.gpu", *argv],
            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60  # a safety net: the log line or the exit ends the wait
    while time.monotonic() < deadline:
        match = re.search(r"serving (http\S+)", log_path.read_text())
        if match:
            return exporter, log_path, match.group(1)
        if exporter.poll() is not None:
            return exporter, log_path, None
        time.sleep(0.02)
    exporter.kill()
    exporter.wait()
    raise AssertionError(f"exporter neither served nor exited: {log_path.read_text()}")


def stop(exporter: subprocess.Popen) -> None:
    if exporter.poll() is None:
        exporter.kill()
        exporter.wait()


@pytest.mark.integration
def test_a_huge_scrape_timeout_never_turns_scrapes_into_500s(tmp_path: Path) -> None:
    exporter, log_path, url = start(tmp_path, "--scrape.timeout=1e10")
    try:
        if url is None:
            assert exporter.returncode == 2
            assert "--scrape.timeout" in log_path.read_text()
            return
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == 200, log_path.read_text()[-2000:]
    finally:
        stop(exporter)


@pytest.mark.integration
def test_sighup_stops_the_exporter_cleanly(tmp_path: Path) -> None:
    exporter, log_path, url = start(tmp_path)
    try:
        assert url is not None, log_path.read_text()
        exporter.send_signal(signal.SIGHUP)
        assert exporter.wait(timeout=30) == 0, log_path.read_text()
        text = log_path.read_text()
        assert "shutting down" in text and "SIGHUP" in text
    finally:
        stop(exporter)
