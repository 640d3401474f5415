"""`inferwatch generate`, `profile` and `report` started with stdout closed (`>&-`) or full
(`> /dev/full`), or stdin closed (`<&-`): one line naming the stream and status 2, as
`report -o -` and `events` answer, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inferwatch.generate import render
from inferwatch.quality.reference import Reference

COMMAND = [sys.executable, "-c",
           "import sys; from inferwatch.cli import main; sys.exit(main(sys.argv[1:]))"]
HAS_DEV_FULL = Path("/dev/full").exists()


def close_fd(fd: int):
    return lambda: os.close(fd)  # in the child: as `>&-` or `<&-` in a shell


def run(argv: list[str], *, close: int | None = None, stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *argv], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120,
                          preexec_fn=None if close is None else close_fd(close))


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.fixture()
def training(tmp_path: Path) -> Path:
    data = tmp_path / "train.csv"
    rng = np.random.default_rng(3)
    data.write_text("a,b\n" + "".join(f"{x:.5f},{i % 3}\n" for i, x in
                                      enumerate(rng.normal(size=200))), encoding="utf-8")
    return data


def test_generate_with_stdout_closed_writes_the_files_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run(["generate", "--out", str(out)], close=1)
    assert_one_line(done, "inferwatch generate: ", "stdout", "closed")
    assert f"cannot write {out}:" not in done.stderr  # the files are fine
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} \
        == set(render())


def test_profile_to_a_closed_stdout_is_refused_before_reading(training: Path) -> None:
    done = run(["profile", str(training), "-o", "-"], close=1)
    assert_one_line(done, "inferwatch profile: error: ", "stdout", "closed")


@pytest.mark.skipif(not HAS_DEV_FULL, reason="needs /dev/full")
def test_profile_to_a_full_stdout_names_the_error(training: Path) -> None:
    with open("/dev/full", "wb") as full:
        done = run(["profile", str(training), "-o", "-"], stdout=full)
    assert_one_line(done, "inferwatch profile: error: ", "No space left on device")


@pytest.mark.skipif(not HAS_DEV_FULL, reason="needs /dev/full")
def test_profile_to_a_file_with_a_full_stdout_keeps_the_reference(training: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "reference.json"
    with open("/dev/full", "wb") as full:
        done = run(["profile", str(training), "-o", str(out)], stdout=full)
    assert_one_line(done, "inferwatch profile: error: ", "stdout", "No space left on device")
    assert set(Reference.load(out).features) == {"a", "b"}


def test_profile_from_a_closed_stdin_names_stdin(tmp_path: Path) -> None:
    out = tmp_path / "reference.json"
    done = run(["profile", "-", "-o", str(out)], close=0)
    assert_one_line(done, "inferwatch profile: error: ", "stdin", "closed")
    assert not out.exists()


def test_report_from_a_closed_stdin_names_stdin(tmp_path: Path) -> None:
    reference = tmp_path / "reference.json"
    Reference.from_data({"a": np.random.default_rng(0).normal(size=200)}).save(reference)
    page = tmp_path / "report.html"
    done = run(["report", "--reference", str(reference), "-", "-o", str(page)], close=0)
    assert_one_line(done, "inferwatch report: error: ", "stdin", "closed")
    assert not page.exists()
