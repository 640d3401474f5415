"""Print pip constraints pinning each declared dependency floor: the runtime dependencies
and the ``pandas`` and ``parquet`` extras, each at the version its ``>=`` names.

``make test-lowest`` installs the package with these constraints and runs the suite, so
every floor in pyproject.toml is one the suite passed on. The other extras and the test
tools are left to resolve to their newest versions.

    python3 tests/lowest_constraints.py > constraints.txt
    .venv-lowest/bin/python tests/lowest_constraints.py --check   # what pip installed
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
FLOORED_EXTRAS = ("pandas", "parquet")
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*$")


def floors(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """{distribution: lowest version} of the runtime dependencies and the floored extras.

    A requirement with no ``>=`` floor, or one with more than a floor, is an error: the
    lowest version it allows cannot be read off it.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in FLOORED_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = _FLOOR.match(requirement)
        if match is None:
            raise SystemExit(f"pyproject.toml: {requirement!r} has no plain '>=' floor to pin")
        name, version = match.group(1).lower(), match.group(2)
        if pins.get(name, version) != version:
            raise SystemExit(f"pyproject.toml: {name} has two floors, {pins[name]} and {version}")
        pins[name] = version
    # The same distribution in another extra (the test tools') must not claim another floor.
    for extra, listed in project["optional-dependencies"].items():
        for requirement in listed:
            match = _FLOOR.match(requirement)
            if match and pins.get(match.group(1).lower(), match.group(2)) != match.group(2):
                raise SystemExit(f"pyproject.toml: the {extra!r} extra floors {requirement!r}, "
                                 f"the runtime floor is {pins[match.group(1).lower()]}")
    return pins


def mismatches(pins: dict[str, str]) -> list[str]:
    """The pinned distributions not installed at their pinned version, as lines to print."""
    from importlib import metadata

    from packaging.version import Version

    wrong = []
    for name, version in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (floor {version})")
            continue
        if Version(installed) != Version(version):
            wrong.append(f"{name}: {installed} installed, the floor is {version}")
    return wrong


def main(argv: list[str]) -> int:
    pins = floors()
    if argv == ["--check"]:
        wrong = mismatches(pins)
        for line in wrong:
            sys.stderr.write(f"lowest_constraints: {line}\n")
        return 1 if wrong else 0
    if argv:
        sys.stderr.write("usage: lowest_constraints.py [--check]\n")
        return 2
    for name, version in sorted(pins.items()):
        sys.stdout.write(f"{name}=={version}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
