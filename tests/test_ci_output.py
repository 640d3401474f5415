"""A CI failure is diagnosable from CI's output alone: names, reasons and log tails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFTEST = (Path(__file__).parent / "conftest.py").read_text()
REPORT_TEXT = (Path(__file__).parent / "report_text.py").read_text()  # a plugin it loads

pytest_plugins = ["pytester"]


def test_a_failing_test_shows_the_tail_of_the_logs_its_processes_wrote(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(report_text=REPORT_TEXT)
    pytester.makepyfile(test_server="""
        def test_server_answers(tmp_path):
            (tmp_path / "prometheus.log").write_text(
                "\\n".join(f"level=info msg=step-{i}" for i in range(100)))
            assert False, "no answer"
    """)
    result = pytester.runpytest_subprocess("-q", "-rfE")
    assert result.ret == 1
    out = result.stdout.str()
    assert "last 40 lines of prometheus.log" in out
    assert "step-99" in out and "step-60" in out and "step-59" not in out
    assert "FAILED test_server.py::test_server_answers" in out


@pytest.mark.integration
def test_ci_run_keeps_the_full_log_and_prints_the_failures(tmp_path):
    # .ci/run with a make that fails the way `make test` does.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    make = fake_bin / "make"
    make.write_text("#!/bin/sh\n"
                    "for i in $(seq 1 500); do echo \"progress line $i\"; done\n"
                    "echo 'FAILED tests/test_x.py::test_y - assert 1 == 2'\n"
                    "echo '1 failed, 9 passed'\n"
                    "exit 2\n")
    make.chmod(0o755)
    log_dir = tmp_path / "logs"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}",
           "CI_LOG_DIR": str(log_dir)}
    finished = subprocess.run([str(ROOT / ".ci" / "run")], capture_output=True, text=True,
                              env=env, timeout=60)
    assert finished.returncode == 2
    logs = list(log_dir.glob("*.log"))
    assert len(logs) == 1 and "progress line 1\n" in logs[0].read_text()
    summary = finished.stdout.split("make test failed", 1)[1]
    assert "FAILED tests/test_x.py::test_y" in summary
    assert str(logs[0]) in summary
    assert "progress line 500" in summary and "progress line 1\n" not in summary
