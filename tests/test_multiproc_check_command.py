"""`python -m inferwatch.multiproc`: the check docs/multiprocess.md gives before
`uvicorn --workers N` prints one line naming the problem (it printed a traceback), exits 1
for an unusable or unset directory, 0 for a usable one, 2 on an argument."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HANG_GUARD = 60


def _check(env_dir: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "INFERWATCH_MULTIPROC_DIR"}
    if env_dir is not None:
        env["INFERWATCH_MULTIPROC_DIR"] = env_dir
    return subprocess.run([sys.executable, "-m", "inferwatch.multiproc", *args], env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD)


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp: str(tmp / "missing"), id="missing"),
    pytest.param(lambda tmp: str((tmp / "file").write_text("x") and tmp / "file"),
                 id="a-file"),
    pytest.param(lambda tmp: "", id="empty"),
])
def test_an_unusable_directory_is_one_line_and_status_1(tmp_path: Path, make) -> None:
    result = _check(make(tmp_path))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inferwatch.multiproc: "
                                                   "INFERWATCH_MULTIPROC_DIR="), lines
    assert result.stdout == ""


def test_an_unset_variable_is_named(tmp_path: Path) -> None:
    result = _check(None)
    assert result.returncode == 1
    assert result.stderr.strip() == ("inferwatch.multiproc: INFERWATCH_MULTIPROC_DIR is not "
                                     "set; set it to the directory every worker publishes to")


def test_a_usable_directory_passes_and_is_left_empty(tmp_path: Path) -> None:
    result = _check(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"INFERWATCH_MULTIPROC_DIR={tmp_path}: workers can "
                                     "publish there")
    assert list(tmp_path.iterdir()) == []  # the write probe leaves nothing behind


def test_an_argument_is_a_usage_error(tmp_path: Path) -> None:
    result = _check(str(tmp_path), "check")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m inferwatch.multiproc")


def test_help_prints_the_usage_and_exits_0(tmp_path: Path) -> None:
    """`--help` is a question, not a mistake: the usage on stdout, status 0."""
    for flag in ("-h", "--help"):
        result = _check(str(tmp_path), flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: python -m inferwatch.multiproc")
        assert result.stderr == ""
