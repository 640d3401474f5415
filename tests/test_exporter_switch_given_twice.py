"""`--x` / `--no-x` switches of inferwatch-exporter given twice: refused like a one-value flag
given twice, instead of the last one silently winning."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inferwatch.standalone import cli

SWITCH_PAIRS = [("--collector.gpu", "--no-collector.gpu"),
                ("--collector.process", "--no-collector.process"),
                ("--collector.multiproc", "--no-collector.multiproc"),
                ("--process.children", "--no-process.children")]


def _switches(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions
            if isinstance(action, argparse.BooleanOptionalAction)]


def test_every_switch_pair_of_the_exporter_is_checked() -> None:
    names = {tuple(action.option_strings) for action in _switches(cli.build_parser())}
    assert names >= set(SWITCH_PAIRS)


@pytest.mark.parametrize("on, off", SWITCH_PAIRS)
@pytest.mark.parametrize("order", ["on-off", "off-on", "on-on", "off-off"])
def test_a_switch_given_twice_is_refused_naming_it(on: str, off: str, order: str,
                                                   run_main) -> None:
    first, second = {"on-off": (on, off), "off-on": (off, on), "on-on": (on, on),
                     "off-off": (off, off)}[order]
    code, err = run_main(["--web.listen-address=127.0.0.1:22501", first, second])
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("inferwatch-exporter: error: argument ")
    assert on in last and "more than once" in last
    if first != second:
        assert f"(as {first} and {second})" in last
    assert "Traceback" not in err


@pytest.mark.parametrize("on, off", SWITCH_PAIRS)
def test_a_switch_given_once_still_sets_it(on: str, off: str) -> None:
    parser = cli.build_parser()
    dest = next(action.dest for action in _switches(parser) if on in action.option_strings)
    assert getattr(parser.parse_args([on]), dest) is True
    assert getattr(parser.parse_args([off]), dest) is False
    # A parser is used again (tests, the help): what one command line gave is forgotten.
    assert getattr(parser.parse_args([on]), dest) is True


def _exporter() -> list[str]:
    found = shutil.which("inferwatch-exporter", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "inferwatch.standalone.cli"]


@pytest.mark.parametrize("switches", [["--collector.gpu", "--no-collector.gpu"],
                                      ["--no-collector.process", "--collector.process"]])
def test_the_installed_exporter_exits_2_before_listening(switches: list[str]) -> None:
    done = subprocess.run([*_exporter(), "--web.listen-address=127.0.0.1:22502", *switches],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "more than once" in done.stderr and switches[0].replace("no-", "") in done.stderr
    assert "serving" not in done.stderr
