"""NVML calls per scrape per device, with the identity cache and without it.

The GPU collector caches each device's handle, uuid, name and PCI bus id until NVML is
initialized again or the device is lost. Every scrape read them before; now only the
first does. The baseline is the same collector with the cache switched off. Both run
against the fake libnvidia-ml of the test suite (the real pynvml binding on top), which
counts every C call: on 8 plain GPUs, and on 8 GPUs with per-process memory, half in MIG.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from benchmarks.common import Row
from inferwatch.standalone.collectors.gpu import GpuCollector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
fake_nvml = importlib.import_module("fake_nvml")
FakeGpu, FakeMigInstance, FakeNVML = (fake_nvml.FakeGpu, fake_nvml.FakeMigInstance,
                                      fake_nvml.FakeNVML)

DEVICES = 8


class _NoCache(dict):
    """A device cache that forgets at once: every scrape reads the identity again."""

    def __setitem__(self, key: object, value: object) -> None:
        pass


def _calls_per_device(gpus: list, process_memory: bool, cached: bool) -> float:
    """NVML calls of a steady-state scrape (the third), per device."""
    patch = pytest.MonkeyPatch()
    try:
        fake = FakeNVML(gpus).install(patch)
        collector = GpuCollector(process_memory=process_memory)
        if not cached:
            collector._devices = _NoCache()
        for _ in range(3):
            before = sum(fake.calls.values())
            list(collector.collect())
            calls = sum(fake.calls.values()) - before
        collector.close()
    finally:
        patch.undo()
    return calls / len(gpus)


def run(quick: bool = False) -> list[Row]:
    plain = [FakeGpu(uuid=f"GPU-{i}") for i in range(DEVICES)]
    busy = [FakeGpu(uuid=f"GPU-{i}", processes=[(100 + i, 2**30, 0xFFFFFFFF, 0xFFFFFFFF)],
                    mig=[FakeMigInstance(1, 0, 2**33), FakeMigInstance(2, 0, 2**33)] if i % 2
                    else None) for i in range(DEVICES)]
    rows = []
    for case, gpus, process_memory in (("plain GPUs", plain, False),
                                       ("MIG + per-process memory", busy, True)):
        uncached = _calls_per_device(gpus, process_memory, cached=False)
        steady = _calls_per_device(gpus, process_memory, cached=True)
        rows.append(Row(f"NVML calls per scrape per device, {case} ({DEVICES} devices)",
                        f"{steady:.3g} cached", f"{uncached:.3g} uncached",
                        steady / uncached, "< 1: identity cached", steady < uncached))
    return rows
