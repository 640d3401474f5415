"""The three walls of the design: what each part may load."""

from __future__ import annotations

import json
import subprocess
import sys

HOT_PATH = ["inferwatch.core.instrument", "inferwatch.core.monitor", "inferwatch.core.request",
            "inferwatch.core.registry", "inferwatch.core.prediction_batch"]


def _loaded_after(code: str) -> set[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_the_exporter_never_loads_the_instrumentation_hot_path():
    loaded = _loaded_after(
        "import inferwatch.standalone.cli\n"
        "from inferwatch.standalone import collectors\n"
        "collectors.load_all()\n")
    assert "inferwatch.standalone.collectors.multiproc" in loaded
    assert not loaded & set(HOT_PATH)


def test_the_generators_are_pure_functions_of_the_config():
    loaded = _loaded_after(
        "from inferwatch.generate import render\n"
        "render()\n")
    assert not loaded & set(HOT_PATH)
    assert not {"inferwatch.standalone", "inferwatch.serving.server", "pynvml"} & loaded
    from inferwatch.generate import render

    assert render() == render()  # no clock, no state: the same config, the same files
