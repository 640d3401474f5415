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
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def cases() -> list:
    """Every typed form with every way to switch its collector off, each on its own port."""
    return [pytest.param(name, option, words, off_way.format(name=name), 33500 + index,
                         id=f"{' '.join(words)} with {off_way.format(name=name)}")
            for index, ((name, option, words), off_way)
            in enumerate(itertools.product(typed_forms(), OFF_WAYS))]


@pytest.mark.parametrize(("name", "option", "words", "off", "port"), cases())
def test_a_flag_of_a_collector_that_is_off_stops_the_exporter_naming_it_as_typed(
        tmp_path: Path, name: str, option: str, words: list[str], off: str,
        port: int) -> None:
    words = [word.replace("{tmp}", str(tmp_path)) for word in words]
    argv = [*_exporter(), f"--web.listen-address=127.0.0.1:{port}", off, *words]
    if off != "--collector.disable-defaults" and name == "multiproc":
        # The documented exception: --no-collector.multiproc keeps it off despite its
        # directory flag, and the exporter runs.
        assert_serves(argv)
        return
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} ran on instead of stopping with status 2")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"inferwatch-exporter: error: argument {option}: the {name} collector is off ({off}); "
        f"add --collector.{name} or drop {option}")


def assert_serves(argv: list[str]) -> None:
    server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line, f"{argv} exited with {server.wait()}: {lines}"
            lines.append(line)
            if "serving http://" in line:
                return
        pytest.fail(f"{argv} did not start serving: {lines}")
    finally:
        server.terminate()
        server.wait(30)
        server.stderr.close()


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
