"""A failing test whose report holds a lone surrogate is reported as failed under xdist.

Without tests/report_text.py, xdist cannot send such a report to its main process: the run
stops with an INTERNALERROR, the failure is not counted and pytest exits 0, so CI would
land a failing change. Each case runs a real pytest with two xdist workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CASES = '''
import pytest

def test_assertion_with_a_lone_surrogate():
    assert "label \\udc80" == "label"

def test_output_with_a_lone_surrogate():
    print("captured \\udcff")
    assert False

@pytest.mark.skip(reason="skipped \\ud800")
def test_skip_reason_with_a_lone_surrogate():
    pass

def test_plain():
    assert True
'''


def _run(directory: Path, *plugin: str) -> subprocess.CompletedProcess:
    (directory / "test_surrogates.py").write_text(CASES)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", *plugin,
         "-rfEs", str(directory)],
        capture_output=True, text=True, errors="backslashreplace", env=env, cwd=directory,
        timeout=120)


@pytest.mark.integration
def test_failures_with_lone_surrogates_are_counted_and_fail_the_run(tmp_path):
    run = _run(tmp_path, "-p", "report_text")
    assert "INTERNALERROR" not in run.stdout + run.stderr
    assert run.returncode == 1, run.stdout[-2000:]
    assert "2 failed, 1 passed, 1 skipped" in run.stdout
    assert "label \\udc80" in run.stdout  # the text, escaped, still says what failed
    assert "captured \\udcff" in run.stdout
    assert "skipped \\ud800" in run.stdout


def test_the_conftest_loads_the_plugin():
    import conftest

    assert "report_text" in conftest.pytest_plugins


def test_text_utf8_can_encode_is_kept_as_it_is():
    from report_text import utf8_safe

    kept = "café ✓ label"
    assert utf8_safe(kept) is kept
    assert utf8_safe("a\udc80b") == "a\\udc80b"
    assert utf8_safe("a\udc80b").encode("utf-8")
