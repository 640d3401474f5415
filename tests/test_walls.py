"""The walls of the design, checked package by package: what each part may load.

- ``import inferwatch`` (what a model server pays) loads only the version module;
- instrumenting a model loads the hot path (``inferwatch.core``) and nothing of the drift
  stack, the exporter, the generators, grafanalib, pyyaml or pynvml;
- ``inferwatch.quality`` depends only on the catalogue and fault counting;
- the generators load no runtime package and render deterministically;
- the standalone exporter never loads the hot path: of ``inferwatch.core`` it reads only
  the state model that worker files are merged into.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import inferwatch

PACKAGES = sorted(m.name for m in pkgutil.iter_modules(inferwatch.__path__) if m.ispkg)
RUNTIME = {"core", "quality", "serving", "multiproc", "standalone", "events", "demo"}
# The part of inferwatch.core a merged multi-worker view is made of (no recording code).
# The state model, and the one clock its windows are read at (a module of `time` alone).
STATE_MODEL = {"inferwatch.core", "inferwatch.core.state", "inferwatch.core.render",
               "inferwatch.core.rolling_sketch", "inferwatch.core.ddsketch",
               "inferwatch.core.sketch_store", "inferwatch.core.sketch_limits",
               "inferwatch.core.unit_sketch", "inferwatch.core.step_clock"}


def _loaded_after(code: str) -> set[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _packages(loaded: set[str]) -> set[str]:
    return {name.split(".")[1] for name in loaded
            if name.startswith("inferwatch.") and name.split(".")[1] in PACKAGES}


def _modules_of(package: str) -> list[str]:
    path = [f"{inferwatch.__path__[0]}/{package}"]
    return [f"inferwatch.{package}.{m.name}" for m in pkgutil.walk_packages(path)]


def test_the_layout_is_the_documented_one():
    assert set(PACKAGES) == RUNTIME | {"generate", "report"}


def test_import_inferwatch_loads_only_the_version_and_its_exit_hook():
    loaded = _loaded_after("import inferwatch")
    assert {m for m in loaded if m.startswith("inferwatch")} == {
        "inferwatch", "inferwatch._version", "inferwatch.exiting"}
    # The exit hook's module is a leaf: it imports nothing of inferwatch's, nor anything
    # beyond the standard library's interpreter services.
    assert not {"threading", "numpy", "prometheus_client"} & (
        loaded - _loaded_after(""))


def test_instrumenting_a_model_loads_the_hot_path_only():
    loaded = _loaded_after(
        "import inferwatch\n"
        "from inferwatch.core.registry import Registry\n"
        "predict = inferwatch.instrument(lambda x: 0.5, name='m', registry=Registry())\n"
        "predict([1.0])\n")
    assert _packages(loaded) == {"core"}
    assert not {"grafanalib", "yaml", "pynvml", "scipy"} & loaded


def test_a_reference_loads_the_drift_stack_when_used():
    loaded = _loaded_after(
        "import inferwatch, numpy as np\n"
        "from inferwatch.core.registry import Registry\n"
        "ref = inferwatch.Reference.from_data(np.ones((20, 2)))\n"
        "predict = inferwatch.instrument(lambda x: 0.5, name='m', registry=Registry(),\n"
        "                                reference=ref)\n"
        "predict(np.ones((1, 2)))\n")
    assert _packages(loaded) == {"core", "quality"}


def test_data_quality_depends_only_on_the_catalogue_and_fault_counting():
    modules = _modules_of("quality")
    assert "inferwatch.quality.drift" in modules
    loaded = _loaded_after("".join(f"import {m}\n" for m in modules))
    assert _packages(loaded) == {"quality"}
    top_level = {m for m in loaded if m.startswith("inferwatch.") and m.count(".") == 1}
    assert top_level - {f"inferwatch.{p}" for p in PACKAGES} <= {
        "inferwatch.catalogue", "inferwatch.faults", "inferwatch._version",
        "inferwatch.number_ranges",  # the catalogue's range checks, a leaf module
        "inferwatch.frame_values",  # how a call captured a DataFrame's values, a leaf module
        "inferwatch.frame_names",  # which frames name nothing, a leaf module
        "inferwatch.frame_joins",  # joining small pandas frames, a leaf module
        "inferwatch.exiting"}  # loaded by `import inferwatch` itself: its exit hook


def test_the_exporter_never_loads_the_instrumentation_hot_path():
    loaded = _loaded_after(
        "import inferwatch.standalone.cli\n"
        "from inferwatch.standalone import collectors\n"
        "collectors.load_all()\n")
    assert "inferwatch.standalone.collectors.multiproc" in loaded
    assert {m for m in loaded if m.startswith("inferwatch.core")} <= STATE_MODEL
    assert "quality" not in _packages(loaded)


def test_the_generators_are_pure_functions_of_the_config():
    loaded = _loaded_after(
        "from inferwatch.generate import render\n"
        "render()\n")
    assert not _packages(loaded) & RUNTIME
    assert "pynvml" not in loaded
    from inferwatch.generate import render

    assert render() == render()  # no clock, no state: the same config, the same files
