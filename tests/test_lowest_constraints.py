"""The floors ``make test-lowest`` pins are read off pyproject.toml, and a floor it cannot
pin is an error naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lowest_constraints

ROOT = Path(__file__).resolve().parent.parent

_PROJECT = """
[project]
name = "x"
dependencies = [{dependencies}]
[project.optional-dependencies]
pandas = ["pandas>=2.0.3"]
parquet = ["pandas>=2.0.3", "pyarrow>=14.0.2"]
test = [{test}]
"""


def _pyproject(tmp_path: Path, dependencies: str, test: str = '"pytest>=7"') -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(_PROJECT.format(dependencies=dependencies, test=test), encoding="utf-8")
    return path


def test_every_runtime_and_floored_extra_dependency_is_pinned_at_its_floor(tmp_path):
    path = _pyproject(tmp_path, '"numpy>=1.24.4", "PyYAML >= 6.0"')
    assert lowest_constraints.floors(path) == {
        "numpy": "1.24.4", "pyyaml": "6.0", "pandas": "2.0.3", "pyarrow": "14.0.2"}


@pytest.mark.parametrize("dependencies, test, message", [
    ('"numpy"', '"pytest>=7"', "'numpy' has no plain '>=' floor"),
    ('"numpy>=1.24,<3"', '"pytest>=7"', "'numpy>=1.24,<3' has no plain '>=' floor"),
    ('"numpy>=1.24.4"', '"pandas>=1.5"', "the 'test' extra floors 'pandas>=1.5'"),
])
def test_a_floor_that_cannot_be_pinned_is_named(tmp_path, dependencies, test, message):
    with pytest.raises(SystemExit, match=message):
        lowest_constraints.floors(_pyproject(tmp_path, dependencies, test))


def test_the_projects_own_floors_are_pinned_and_checked_against_what_is_installed():
    pins = subprocess.run([sys.executable, str(ROOT / "tests" / "lowest_constraints.py")],
                          capture_output=True, text=True, check=True).stdout.split()
    names = {pin.split("==")[0] for pin in pins}
    assert {"numpy", "prometheus-client", "nvidia-ml-py", "pandas", "pyarrow"} <= names
    assert lowest_constraints.mismatches({"numpy": "0.1"}) == [
        f"numpy: {__import__('numpy').__version__} installed, the floor is 0.1"]
    assert lowest_constraints.mismatches({"no-such-distribution": "1.0"}) == [
        "no-such-distribution: not installed (floor 1.0)"]
