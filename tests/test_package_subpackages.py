"""The subpackages the docs call through the package work after a plain `import inferwatch`,
in a fresh interpreter (another test having imported them would hide the defect)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("call", [
    "inferwatch.multiproc.clear_directory",
    "inferwatch.multiproc.shutdown",
    "inferwatch.events.hash_value",
    "inferwatch.events.dropped_totals",
])
def test_a_documented_subpackage_call_resolves_after_import_inferwatch(call: str) -> None:
    code = f"import inferwatch\nassert callable({call}), {call!r}\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    import inferwatch

    with pytest.raises(AttributeError, match="no attribute 'multiprocs'"):
        inferwatch.multiprocs  # noqa: B018
