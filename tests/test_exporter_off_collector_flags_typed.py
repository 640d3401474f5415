"""A flag of a switched-off collector stops inferwatch-exporter with status 2, whatever its
value, and the message names the flag as it was typed: `--process.children` (its default)
used to go unseen, and `--no-process.children` was reported as `--process.children`."""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import free_port_in
from inferwatch.standalone import cli
from inferwatch.standalone.scrape import registered_collectors

# A value each of the collectors' flags accepts; a flag added without one here fails
# test_every_collector_flag_has_a_value_here, so it cannot go unchecked.
VALUES = {"process_pids": "1", "process_pidfiles": "/run/app.pid",
          "process_names": "gunicorn", "multiproc_dir": "{tmp}"}
OFF_WAYS = ("--no-collector.{name}", "--collector.disable-defaults")


def collector_actions() -> list[tuple[str, argparse.Action]]:
    found = []
    for name, cls in registered_collectors().items():
        group = argparse.ArgumentParser(add_help=False).add_argument_group(name)
        before = len(group._group_actions)
        cls.add_arguments(group)
        found += [(name, action) for action in group._group_actions[before:]]
    return found


def typed_forms() -> list[tuple[str, str, list[str]]]:
    """(collector, option string as typed, the words on the command line) for every option
    string of every collector flag, a value given as `--flag=V` and as `--flag V`."""
    forms = []
    for name, action in collector_actions():
        for option in action.option_strings:
            if action.nargs == 0:
                forms.append((name, option, [option]))
            else:
                value = VALUES.get(action.dest, "")
                forms.append((name, option, [f"{option}={value}"]))
                forms.append((name, option, [option, value]))
    return forms


def test_every_collector_flag_has_a_value_here() -> None:
    takes_value = {action.dest for _, action in collector_actions() if action.nargs != 0}
    assert takes_value <= set(VALUES)
    # Both forms of each switch are covered.
    options = {option for _, option, _ in typed_forms()}
    assert {"--process.children", "--no-process.children"} <= options


def _exporter() -> list[str]:
    found = shutil.which("inferwatch-exporter", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "inferwatch.standalone.cli"]


# The loopback ports the exporter may listen on here: below the range the system hands out
# to outgoing connections (32768 and up), which may take a port between its choice and the
# exporter's bind, and clear of the other tests' ranges.
PORTS = range(30500, 31000)


def cases() -> list:
    """Every typed form with every way to switch its collector off."""
    return [pytest.param(name, option, words, off_way.format(name=name),
                         id=f"{' '.join(words)} with {off_way.format(name=name)}")
            for (name, option, words), off_way in itertools.product(typed_forms(), OFF_WAYS)]


@pytest.mark.parametrize(("name", "option", "words", "off"), cases())
def test_a_flag_of_a_collector_that_is_off_stops_the_exporter_naming_it_as_typed(
        tmp_path: Path, name: str, option: str, words: list[str], off: str) -> None:
    words = [word.replace("{tmp}", str(tmp_path)) for word in words]
    if off != "--collector.disable-defaults" and name == "multiproc":
        # The documented exception: --no-collector.multiproc keeps it off despite its
        # directory flag, and the exporter runs.
        assert_serves(lambda port: [*_exporter(), f"--web.listen-address=127.0.0.1:{port}",
                                    off, *words])
        return
    # Refused while the arguments are read, before any port is bound.
    argv = [*_exporter(), f"--web.listen-address=127.0.0.1:{free_port_in(PORTS)}", off,
            *words]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} ran on instead of stopping with status 2")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"inferwatch-exporter: error: argument {option}: the {name} collector is off ({off}); "
        f"add --collector.{name} or drop {option}")


def assert_serves(command: Callable[[int], list[str]]) -> None:
    """The exporter `command(port)` starts serving; a port another test's server took
    between its choice and the bind is given up for the next one."""
    for _ in range(5):
        argv = command(free_port_in(PORTS))
        server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            lines = []
            while time.monotonic() < deadline:
                line = server.stderr.readline()
                if not line and "address already in use" in "".join(lines):
                    break
                assert line, f"{argv} exited with {server.wait()}: {lines}"
                lines.append(line)
                if "serving http://" in line:
                    return
            else:
                pytest.fail(f"{argv} did not start serving: {lines}")
        finally:
            server.terminate()
            server.wait(30)
            server.stderr.close()
    pytest.fail(f"no port of {PORTS} could be bound in five tries")


# --- every combination, in process ------------------------------------------------------------

_TOGGLES = st.lists(st.sampled_from([
    "--collector.disable-defaults", "--collector.gpu", "--no-collector.gpu",
    "--collector.process", "--no-collector.process", "--collector.multiproc",
    "--no-collector.multiproc"]), max_size=4, unique_by=lambda flag: flag.replace("--no-", "--"))
_OWN = st.lists(st.sampled_from([
    ["--process.pid=1"], ["--process.pid", "2"], ["--process.name=gunicorn"],
    ["--process.pidfile", "/run/app.pid"], ["--process.children"], ["--no-process.children"],
    ["--collector.gpu.process-memory"], [f"--multiproc.dir={tempfile.gettempdir()}"]]), max_size=4,
    unique_by=lambda words: words[0].split("=")[0].replace("--no-", "--"))


def _off(name: str, argv: list[str]) -> bool:
    if f"--no-collector.{name}" in argv:
        # Multiproc's directory flag is what turns it on; --no- keeps it off (documented).
        return name != "multiproc"
    return "--collector.disable-defaults" in argv and f"--collector.{name}" not in argv


@settings(max_examples=300, deadline=None)
@given(toggles=_TOGGLES, own=_OWN, order=st.randoms(use_true_random=False))
def test_a_flag_typed_for_a_collector_that_is_off_is_always_refused_by_its_typed_name(
        toggles: list[str], own: list[list[str]], order) -> None:
    order.shuffle(own)
    argv = toggles + [word for words in own for word in words]
    typed = {words[0].split("=")[0]: words[0].split("=")[0].removeprefix("--no-")
             .removeprefix("--").split(".")[0] for words in own}
    owner = {option: ("gpu" if collector == "collector" else collector)
             for option, collector in typed.items()}
    refused_for = {option for option, name in owner.items() if _off(name, argv)}
    args = cli.build_parser().parse_args(argv)
    try:
        cli.enabled_collectors(args, registered_collectors())
    except ValueError as refused:
        option = str(refused).removeprefix("argument ").split(":")[0]
        assert option in refused_for, (argv, str(refused))
        assert str(refused).endswith(f"drop {option}")
        return
    assert not refused_for, argv
