"""Every command line answers `--help` under `python -OO`, which strips docstrings and
asserts: a help text read from a module docstring crashed there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HANG_GUARD = 60


@pytest.mark.parametrize("module", [
    "inferwatch.cli", "inferwatch.standalone.cli", "inferwatch.demo.snapshot",
    "inferwatch.multiproc", "inferwatch.demo.model", "inferwatch.demo.traffic",
])
def test_help_works_with_docstrings_stripped(module: str) -> None:
    env = {**os.environ, "PYTHONOPTIMIZE": "2"}
    result = subprocess.run([sys.executable, "-m", module, "--help"], env=env,
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert "Traceback" not in result.stderr
